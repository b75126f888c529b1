//! Decision records to an OpenTelemetry collector (`decision_log.otlp`): a real OTLP/gRPC logs
//! receiver in-process (the logs service's tonic server from `opentelemetry-proto`), cedargate
//! exporting to it, and the same records on disk to compare with. Also: a collector that is
//! down costs no Check and loses nothing silently.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use serde_json::Value;

use crate::decision_logs::metric;
use crate::observability::text;
use crate::support::*;

/// One received log record, with its resource's `service.name`.
#[derive(Debug, Clone)]
pub struct ReceivedLog {
    pub service: String,
    pub scope: String,
    pub event_name: String,
    pub severity_text: String,
    pub body: String,
    pub trace_id: String,
    pub time_unix_nano: u64,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// An OTLP/gRPC logs receiver on a real socket. Keeps the decoded records and, for leak checks,
/// every request re-encoded as the protobuf bytes that crossed the wire.
#[derive(Clone, Default)]
pub struct LogsReceiver {
    logs: Arc<Mutex<Vec<ReceivedLog>>>,
    bytes: Arc<Mutex<Vec<u8>>>,
}

#[tonic::async_trait]
impl LogsService for LogsReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.bytes.lock().unwrap().extend(request.encode_to_vec());
        let mut got = self.logs.lock().unwrap();
        for rl in request.resource_logs {
            let service = rl
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .map(text)
                .unwrap_or_default();
            for sl in rl.scope_logs {
                let scope = sl.scope.map(|s| s.name).unwrap_or_default();
                for log in sl.log_records {
                    let body = match log.body.and_then(|b| b.value) {
                        Some(AnyValue::StringValue(s)) => s,
                        other => format!("{other:?}"),
                    };
                    got.push(ReceivedLog {
                        service: service.clone(),
                        scope: scope.clone(),
                        event_name: log.event_name,
                        severity_text: log.severity_text,
                        body,
                        trace_id: log.trace_id.iter().map(|b| format!("{b:02x}")).collect(),
                        time_unix_nano: log.time_unix_nano,
                        attributes: log
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), text(a)))
                            .collect(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

impl LogsReceiver {
    pub async fn start() -> (LogsReceiver, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = LogsReceiver::default();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(LogsServiceServer::new(receiver.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, addr)
    }

    pub fn logs(&self) -> Vec<ReceivedLog> {
        self.logs.lock().unwrap().clone()
    }

    /// Every export request received, as protobuf bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.bytes.lock().unwrap().clone()
    }

    /// Waits (deadline 20 s) until at least `n` records arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedLog> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.logs();
            if logs.len() >= n {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} records reached the collector",
                logs.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The config edit that turns the OTLP output on, towards `endpoint`, with `extra` settings.
pub fn with_otlp(yaml: String, endpoint: &str, extra: &str) -> String {
    let edited = yaml.replacen(
        "decision_log:\n",
        &format!("decision_log:\n  otlp: {{ endpoint: \"http://{endpoint}\"{extra} }}\n"),
        1,
    );
    assert_ne!(edited, yaml, "no decision_log section to edit");
    edited
}

/// Method, path, expected decision, headers.
type Sent<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_reach_the_collector_as_the_lines_written_to_disk() {
    let idp = FakeIdp::start().await;
    let (receiver, collector) = LogsReceiver::start().await;
    let mut gate = Gate::start_with(&idp.issuer, |yaml| {
        with_otlp(
            yaml,
            &collector.to_string(),
            ", batch_delay_ms: 50, resource_attributes: { deployment.environment: test }",
        )
    })
    .await;
    let alice = user(&idp, "alice", &["admins"], "acme");
    let mallory = user(&idp, "mallory", &[], "acme");
    let requests: [Sent; 4] = [
        (
            "GET",
            "/orders/7",
            "allow",
            &[("authorization", &alice), ("traceparent", TRACEPARENT)],
        ),
        ("GET", "/orders/1", "deny", &[("authorization", &mallory)]),
        (
            "GET",
            "/orders/1",
            "deny",
            &[("authorization", "Bearer x.y.z")],
        ),
        ("GET", "/nowhere", "deny", &[]),
    ];
    for (method, path, expected, headers) in requests {
        let answer = gate
            .check(check_request("orders", method, path, headers))
            .await;
        assert_eq!(answer.status == 200, expected == "allow", "{method} {path}");
    }
    // Flushing the log also flushes the collector's queue.
    crate::decision_logs::flush(&gate).await;
    let logs = receiver.wait_for(requests.len()).await;
    let lines: Vec<String> = gate.log_bytes().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), requests.len());
    assert_eq!(logs.len(), requests.len(), "each record exactly once");

    for (line, log) in lines.iter().zip(&logs) {
        // The body is the line on disk, byte for byte: the collector's copy replays the same.
        assert_eq!(&log.body, line);
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(log.service, "cedargate");
        assert_eq!(log.scope, "cedargate.decision_log");
        assert_eq!(log.event_name, "cedargate.decision");
        assert_eq!(log.severity_text, "INFO");
        let attr = |k: &str| log.attributes.get(k).cloned();
        assert_eq!(
            attr("cedargate.decision_id"),
            record["decision_id"].as_str().map(String::from)
        );
        assert_eq!(
            attr("cedargate.decision"),
            record["decision"].as_str().map(String::from)
        );
        assert_eq!(
            attr("cedargate.reason"),
            record["reason"].as_str().map(String::from)
        );
        assert_eq!(
            attr("http.response.status_code"),
            Some(record["status"].to_string())
        );
        assert_eq!(
            attr("cedargate.principal"),
            record["principal"].as_str().map(String::from)
        );
        assert_eq!(
            attr("cedargate.action"),
            record["action"].as_str().map(String::from)
        );
        assert_eq!(
            attr("cedargate.policy_version"),
            record["policy_version"].as_str().map(String::from)
        );
        // The log's time is the record's.
        let time = humantime::parse_rfc3339(record["time"].as_str().unwrap()).unwrap();
        let nanos = time
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(u128::from(log.time_unix_nano), nanos);
    }
    // The traced request's record joins its trace; the others carry none.
    assert_eq!(logs[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert!(logs[1..].iter().all(|l| l.trace_id.is_empty()), "{logs:#?}");
    assert_eq!(logs[0].attributes["cedargate.decision"], "allow");
    assert_eq!(logs[1].attributes["cedargate.reason"], "no_permit");
    assert_eq!(logs[3].attributes["cedargate.reason"], "no_route");

    // (The export counters are checked in the next test, by a process of its own: metrics are
    // process-wide and tests here run side by side.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_no_check_and_every_lost_record_is_counted() {
    use crate::decision_logs::{Served, contains, without_ansi};
    let idp = FakeIdp::start().await;
    // A black hole: the kernel completes TCP handshakes on a listening socket nobody accepts
    // from, so each export waits out its timeout, the queue fills, and records are dropped.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("decisions.jsonl");
    let (grpc, admin) = (crate::stack::free_port(), crate::stack::free_port());
    // The test config listens on `127.0.0.1:0` twice: grpc first, then admin.
    let yaml = test_config_yaml(&idp.issuer, &log_path)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{grpc}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1);
    let yaml = with_otlp(
        yaml,
        &hole.local_addr().unwrap().to_string(),
        ", queue: 16, batch_delay_ms: 20, timeout_ms: 200",
    );
    let config = dir.path().join("cedargate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    // A process of its own: the metrics below count this server's records only.
    let served = Served::start_with_log(&config, grpc, admin, "warn").await;
    let mut client = served.client().await;
    let bob = user(&idp, "bob", &["staff"], "acme");
    let total = 300;
    let mut slowest = Duration::ZERO;
    for _ in 0..total {
        let started = Instant::now();
        let answer = Answer::from(
            client
                .check(check_request(
                    "orders",
                    "GET",
                    "/orders/1",
                    &[("authorization", &bob)],
                ))
                .await
                .unwrap()
                .into_inner(),
        );
        slowest = slowest.max(started.elapsed());
        assert_eq!(answer.status, 200);
    }
    println!("{total} Checks with the collector black-holed, slowest {slowest:?}");

    // Every record sent to the collector is accounted for: failed (export error) or dropped
    // (queue full); none exported, none vanished.
    let admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let series = |r: &str| format!("cedargate_decision_log_otlp_records_total{{result=\"{r}\"}}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let (failed, dropped) = loop {
        let failed = metric(admin, &series("failed")).await;
        let dropped = metric(admin, &series("dropped")).await;
        if failed + dropped >= total as f64 {
            break (failed, dropped);
        }
        assert!(
            Instant::now() < deadline,
            "{failed} failed + {dropped} dropped of {total}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("collector black-holed: {failed} failed, {dropped} dropped of {total}");
    assert_eq!(failed + dropped, total as f64);
    assert!(failed > 0.0 && dropped > 0.0, "both paths were taken");
    assert_eq!(metric(admin, &series("exported")).await, 0.0);
    // Said in the log, once per episode, not once per batch.
    let (_, stderr) = served.stop();
    drop(hole);
    let stderr = without_ansi(&String::from_utf8_lossy(&stderr));
    assert_eq!(
        stderr.matches("decision_log.otlp_export_failed").count(),
        1,
        "{stderr}"
    );
    let last = stderr
        .lines()
        .rfind(|l| l.contains("decision_log.otlp_dropped"))
        .unwrap_or_else(|| panic!("no drop report:\n{stderr}"));
    assert!(last.contains(&format!("dropped_total={dropped}")), "{last}");
    // The file output is unaffected: every record is on disk.
    let lines = std::fs::read_to_string(&log_path).unwrap().lines().count();
    assert_eq!(lines, total);
    assert!(!contains(stderr.as_bytes(), "panicked"));
}
