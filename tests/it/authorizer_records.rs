//! The Authorizer API's decision records as a public contract (issue 18), from the real
//! `cedargate serve` binary with real IdP tokens: an `IsAuthorized` allow, a `BatchIsAuthorized`
//! item and a refused caller check against the golden file
//! `tests/fixtures/decision-logs/api-records.golden.jsonl` (volatile fields masked by
//! `decision_logs::mask`, the batch id by name; `UPDATE_GOLDEN=1` rewrites it); and the API call
//! joining its caller's W3C trace: records carry the `traceparent` metadata's trace id with OTLP
//! off, and with OTLP on (the span parented on it) too.

use serde_json::{Value, json};
use tonic::Code;
use tonic::transport::Channel;

use crate::authorizer_support::filter::{Filter, uid};
use crate::authorizer_support::{Served, alice_views_plan, question, request};
use crate::decision_logs::{golden, mask};
use crate::stack::{Idp, free_port};
use cedargate_api::v1::authorizer_client::AuthorizerClient;
use cedargate_api::v1::{BatchIsAuthorizedRequest, BatchItem, Decision, Effect};

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Asks whether alice may view the plan with the caller's `token` and trace context: the
/// decision, or the status of a refused call.
async fn alice_views_plan_traced(
    client: &mut AuthorizerClient<Channel>,
    token: &str,
    traceparent: Option<&str>,
) -> Result<Decision, tonic::Status> {
    let answer = client
        .is_authorized(request(
            question("User::\"alice\"", "Document::\"plan\""),
            Some(token),
            traceparent,
        ))
        .await?;
    Ok(answer.into_inner().decision.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_records_match_the_golden_file() {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(dir.path(), "idp", 3600);
    let served = Served::start(dir.path(), &idp, |y| y).await;
    let app = idp.service("orders-service", "orders:read");
    let reporting = idp.service("reporting-service", "reports:read");
    let mut client = AuthorizerClient::connect(served.addr()).await.unwrap();
    // Raw lines as written, and the golden text (masked).
    let mut raw_lines = Vec::new();
    let mut lines = String::new();

    // IsAuthorized, allowed.
    let d = alice_views_plan_traced(&mut client, &app, Some(TRACEPARENT))
        .await
        .unwrap();
    assert_eq!(d.effect, Effect::Allow as i32);
    raw_lines.push(served.line(&d.decision_id).await);

    // BatchIsAuthorized: its second item (public-view allows bob the handbook).
    let items = ["plan", "handbook"]
        .iter()
        .map(|id| BatchItem {
            action: Some(uid("Action::\"view\"")),
            resource: Some(uid(&format!("Document::\"{id}\""))),
        })
        .collect();
    let batch = client
        .batch_is_authorized(request(
            BatchIsAuthorizedRequest {
                principal: Some(uid("User::\"bob\"")),
                items,
                context_json: json!({"mfa": false}).to_string(),
                entities_json: String::new(),
            },
            Some(&app),
            Some(TRACEPARENT),
        ))
        .await
        .unwrap()
        .into_inner();
    let item = &batch.results[1];
    assert_eq!(item.effect, Effect::Allow as i32);
    raw_lines.push(served.line(&item.decision_id).await);

    // A refused caller check: reporting-service may not ask about documents.
    let e = alice_views_plan_traced(&mut client, &reporting, Some(TRACEPARENT))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let refused = e.message().rsplit("decision ").next().unwrap().to_string();
    raw_lines.push(served.line(&refused).await);

    // The caller's trace, with OTLP off: the `traceparent` metadata's trace id.
    for l in &raw_lines {
        let record: Value = serde_json::from_str(l).unwrap();
        assert_eq!(record["trace_id"], TRACE_ID, "{l}");
        assert!(matches!(
            cedargate_cli::records::parse_line(l),
            cedargate_cli::records::Line::Record(_)
        ));
    }
    for l in &raw_lines {
        lines.push_str(&mask(l).replace(&batch.batch_id, "<batch_id>"));
        lines.push('\n');
    }
    golden("api-records.golden.jsonl", &lines);
    let log = std::fs::read_to_string(&served.log).unwrap();
    for token in [&app, &reporting] {
        assert!(!log.contains(token.rsplit('.').next().unwrap()));
    }
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
        let d = alice_views_plan_traced(&mut client, &token, traceparent)
            .await
            .unwrap();
        let record: Value = serde_json::from_str(&served.line(&d.decision_id).await).unwrap();
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
    let d = alice_views_plan(&mut app).await.unwrap();
    assert_eq!(d.effect, Effect::Allow as i32);
}
