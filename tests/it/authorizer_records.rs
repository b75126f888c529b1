//! The Authorizer API's decision records as a public contract (issue 18), from the real
//! `cedargate serve` binary with real IdP tokens: an `IsAuthorized` allow, a `BatchIsAuthorized`
//! item and a refused caller check against the golden file
//! `tests/fixtures/decision-logs/api-records.golden.jsonl` (volatile fields masked by
//! `decision_logs::mask`, the batch id by name; `UPDATE_GOLDEN=1` rewrites it); and the API call
//! joining its caller's W3C trace: records carry the `traceparent` metadata's trace id with OTLP
//! off, and with OTLP on (the span parented on it) too.

use serde_json::{Value, json};

use crate::authorizer_api::Served;
use crate::authorizer_api::filter::{Filter, uid};
use crate::stack::{Idp, free_port};
use cedargate_api::v1::authorizer_client::AuthorizerClient;
use cedargate_api::v1::{Effect, IsAuthorizedRequest};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// `message` with the caller's token and, when given, its trace context.
fn request<T>(message: T, token: &str, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert("authorization", format!("Bearer {token}").parse().unwrap());
    if let Some(parent) = traceparent {
        metadata.insert("traceparent", parent.parse().unwrap());
    }
    request
}

fn question(principal: &str, resource: &str) -> IsAuthorizedRequest {
    IsAuthorizedRequest {
        principal: Some(uid(principal)),
        action: Some(uid("Action::\"view\"")),
        resource: Some(uid(resource)),
        context_json: String::new(),
        entities_json: String::new(),
    }
}

/// The raw line of the record `decision_id` (waiting for it, deadline 5 s).
async fn line(served: &Served, decision_id: &str) -> String {
    served
        .wait_records(1, |r| r["decision_id"] == decision_id)
        .await;
    std::fs::read_to_string(&served.log)
        .unwrap()
        .lines()
        .find(|l| l.contains(decision_id))
        .unwrap()
        .to_string()
}

/// With OTLP on, the API's span is the caller's child: the records' trace id (taken from the
/// span then, not from the metadata) is the caller's; without a `traceparent` the call starts a
/// trace of its own. The collector is a closed port: export fails, which never touches answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_span_joins_the_callers_trace_with_otlp_on() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(dir.path(), "idp", 3600);
    let collector = free_port();
    let served = Served::start(dir.path(), &idp, |y| {
        format!("{y}\ntelemetry:\n  otlp:\n    endpoint: http://127.0.0.1:{collector}\n")
    })
    .await;
    let token = idp.service("orders-service", "orders:read");
    let mut app = Filter::connect(&served.addr(), &token).await.unwrap();
    let mut client = AuthorizerClient::connect(served.addr()).await.unwrap();
    let mut trace_of = async |traceparent: Option<&str>| {
        let d = client
            .is_authorized(request(
                question("User::\"alice\"", "Document::\"plan\""),
                &token,
                traceparent,
            ))
            .await
            .unwrap()
            .into_inner()
            .decision
            .unwrap();
        let record: Value = serde_json::from_str(&line(&served, &d.decision_id).await).unwrap();
        record["trace_id"].as_str().map(str::to_string)
    };
    assert_eq!(trace_of(Some(TRACEPARENT)).await.as_deref(), Some(TRACE_ID));
    let own = trace_of(None).await.expect("a trace of its own");
    assert!(own.len() == 32 && own != TRACE_ID, "{own}");
    // A malformed traceparent is ignored (a new root), never an error.
    let fresh = trace_of(Some("00-garbage"))
        .await
        .expect("a trace of its own");
    assert!(fresh != TRACE_ID && fresh != own, "{fresh}");
    // The example client (no trace context) is answered alike.
    let d = app
        .is_authorized(
            "User::\"alice\"",
            "Action::\"view\"",
            "Document::\"plan\"",
            &json!({}),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(d.effect, Effect::Allow as i32);
}
