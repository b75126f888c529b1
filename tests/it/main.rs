//! cedargate's integration tests: one binary, real sockets on 127.0.0.1, ephemeral ports.
//!
//! - `check`, `tokens`: the Check API through a tonic client with keys served over HTTP.

mod check;
mod support;
mod tokens;
