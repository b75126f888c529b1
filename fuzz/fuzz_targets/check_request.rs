//! Envoy's side of the gRPC edge: arbitrary bytes, prost-decoded as a `CheckRequest`, mapped by
//! `grpc::http_request` into cedargate's `HttpRequest`. Nothing may panic, and the mapping keeps
//! its promises: the path never carries the query, the header byte count is the headers kept.
#![no_main]

use cedargate_server::grpc;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(check) = CheckRequest::decode(data) else {
        return;
    };
    let request = grpc::http_request(check);
    assert!(
        !request.path.contains('?') && !request.path.contains('#'),
        "{:?}",
        request.path
    );
    let kept: usize = request.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert_eq!(request.header_bytes, kept);
});
