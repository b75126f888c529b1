//! The ext_authz floor for the system benchmark: a tonic `Authorization` server that answers OK
//! at once, doing nothing. What Envoy + this server cost is the price of the hop itself; cedargate
//! is measured against it (configuration F in BENCHMARKS.md).
//!
//! `cargo run --release --example noop_authz -- 127.0.0.1:9291`

use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpResponse, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};

struct Noop;

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(&self, _: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        Ok(Response::new(CheckResponse {
            status: Some(rpc::Status::default()),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse::default())),
            ..CheckResponse::default()
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9291".into())
        .parse()?;
    println!("noop_authz listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(Noop))
        .serve(addr)
        .await?;
    Ok(())
}
