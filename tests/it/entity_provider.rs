//! The entity provider end to end: cedargate in-process (tonic client → Check → decision log)
//! asking the real upstream process (`upstream/upstream.mjs --entities`) for the entities of each
//! request's principal and resource, with the policy folder `tests/fixtures/entity-provider/`,
//! whose every allow and forbid depends on what only the provider knows. Faults are the
//! upstream's own (`/entities/<fault>`) and a closed port; fetches are counted at the upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cedargate_cli::records::FilterArgs;
use cedargate_cli::replay::{self, FailOn, ReplayArgs, ReplayStatus};
use serde_json::{Value, json};

use crate::stack::{Proc, free_port, node};
use crate::support::*;

/// The provider's budget per Check in these tests, unless a case says otherwise.
const TIMEOUT_MS: u64 = 2000;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/entity-provider")
}

/// The real upstream serving `provider-entities.json`, killed on drop.
struct Provider {
    _proc: Proc,
    /// `http://127.0.0.1:PORT`
    base: String,
}

impl Provider {
    fn start(delay_ms: u64) -> Provider {
        let mut cmd = node("upstream/upstream.mjs");
        cmd.args(["--port", "0", "--entities"])
            .arg(fixture().join("provider-entities.json"))
            .args(["--entities-delay-ms", &delay_ms.to_string()]);
        let (proc, line) = Proc::spawn("upstream", cmd, Some("upstream listening on "));
        let addr = line.rsplit(' ').next().unwrap().trim().to_string();
        Provider {
            _proc: proc,
            base: format!("http://{addr}"),
        }
    }

    /// Entity requests the upstream has served, per uid (`User::"alice"` → n).
    async fn hits(&self) -> Value {
        reqwest::get(format!("{}/entities/hits", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// The test config: one issuer, the documents route, the fixture policies, and `provider` (an
/// `entity_provider` section's body, or nothing). With a provider, the same policies are also
/// the shadow candidate, which must see the same data.
fn config(issuer: &str, log: &Path, provider: Option<&str>) -> String {
    let mut yaml = format!(
        r#"
listen: {{ grpc: "127.0.0.1:0", admin: "127.0.0.1:0" }}
issuers:
  - name: test-idp
    issuer: {issuer}
    audiences: [{AUDIENCE}]
    algorithms: [ES256]
    principal: {{ type: User, id_claim: sub }}
routes:
  - service: docs
    methods: [GET]
    path: "/docs/{{id}}"
    resource: {{ type: Document, id: "{{id}}" }}
policy_dir: {policies}
decision_log:
  output: file
  path: {log}
"#,
        policies = fixture().join("policies").display(),
        log = log.display(),
    );
    if let Some(provider) = provider {
        yaml.push_str(&format!(
            "shadow:\n  policy_dir: {}\n",
            fixture().join("policies").display()
        ));
        yaml.push_str("entity_provider:\n");
        for line in provider.lines() {
            yaml.push_str("  ");
            yaml.push_str(line.trim());
            yaml.push('\n');
        }
    }
    yaml
}

/// The `entity_provider` section for `url`, with a small body limit.
fn provider_section(url: &str, timeout_ms: u64) -> String {
    format!("url: {url}\ntypes: [User, Document]\ntimeout_ms: {timeout_ms}\nmax_body_bytes: 65536")
}

async fn gate(idp: &FakeIdp, provider: Option<String>) -> Gate {
    let issuer = idp.issuer.clone();
    Gate::start_config(move |log| config(&issuer, log, provider.as_deref())).await
}

/// `user` asks for document `doc`; the answer and its decision record.
async fn read(gate: &mut Gate, idp: &FakeIdp, user: &str, doc: &str) -> (Answer, Value) {
    let auth = bearer(&token(&claims(&idp.issuer, user, &[])));
    let path = format!("/docs/{doc}");
    let answer = gate
        .check(check_request(
            "docs",
            "GET",
            &path,
            &[("authorization", &auth)],
        ))
        .await;
    let record = gate.record(answer.decision_id()).await;
    (answer, record)
}

fn policy_ids(record: &Value) -> Vec<String> {
    record["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// The entity the provider serves for `uid_type::id`, if any.
fn provider_entity(uid_type: &str, id: &str) -> Option<Value> {
    let all: Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("provider-entities.json")).unwrap(),
    )
    .unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .find(|e| e["uid"]["type"] == uid_type && e["uid"]["id"] == id)
        .cloned()
}

fn replay_args(config: &Path, log: &Path) -> ReplayArgs {
    ReplayArgs {
        config: config.to_path_buf(),
        policies: fixture().join("policies"),
        files: vec![log.to_path_buf()],
        filter: FilterArgs::default(),
        fail_on: vec![FailOn::Change],
        examples: 1,
        json: true,
    }
}

fn run_replay(args: &ReplayArgs) -> (ReplayStatus, Value) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = replay::run(args, &mut out, &mut err).unwrap();
    let report = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "replay report ({e}): {}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    });
    (status, report)
}

/// (user, document, decision, reason, deciding policies): each explained by provider data only.
const DECISIONS: &[(&str, &str, &str, &str, &[&str])] = &[
    // A parent from the provider (Team::"editors"), in Team::"staff" through entities.json.
    ("alice", "d2", "allow", "allow", &["staff-read-docs"]),
    // A resource attribute from the provider.
    ("bob", "d1", "allow", "allow", &["public-docs"]),
    ("bob", "d2", "deny", "no_permit", &[]),
    // A principal attribute from the provider fires a forbid over two permits.
    ("mallory", "d1", "deny", "forbid", &["suspended-locked-out"]),
    // The provider knows nothing about dave (`[]`): not an error; the document names its owner.
    ("dave", "d2", "allow", "allow", &["owners-read"]),
    // Nothing known about either uid.
    ("erin", "d3", "deny", "no_permit", &[]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_data_decides_is_recorded_and_replays() {
    let idp = FakeIdp::start().await;
    let provider = Provider::start(0);
    let url = format!("{}/entities", provider.base);
    let mut with = gate(&idp, Some(provider_section(&url, TIMEOUT_MS))).await;
    let mut without = gate(&idp, None).await;

    for (user, doc, decision, reason, policies) in DECISIONS {
        let (answer, r) = read(&mut with, &idp, user, doc).await;
        let case = format!("{user} reads {doc}: {r}");
        assert_eq!(r["decision"], *decision, "{case}");
        assert_eq!(r["reason"], *reason, "{case}");
        assert_eq!(policy_ids(&r), *policies, "{case}");
        assert_eq!(
            answer.status,
            if *decision == "allow" { 200 } else { 403 },
            "{case}"
        );
        // The record carries what the provider answered, as received.
        let expected: Vec<Value> = [("User", *user), ("Document", *doc)]
            .into_iter()
            .filter_map(|(t, id)| provider_entity(t, id))
            .collect();
        let fetched = r["cedar"]["fetched"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(fetched, expected, "{case}");
        // The shadow candidate decided with the same fetched data.
        assert_eq!(r["shadow"]["agrees"], true, "{case}");
        assert_eq!(r["shadow"]["reason"], *reason, "{case}");

        // The same request without the provider: nothing allows, nothing forbids.
        let (answer, r) = read(&mut without, &idp, user, doc).await;
        assert_eq!(
            answer.status, 403,
            "{user} reads {doc} without provider: {r}"
        );
        assert_eq!(
            r["reason"], "no_permit",
            "{user} reads {doc} without provider: {r}"
        );
        assert!(r["cedar"].get("fetched").is_none(), "{r}");
    }

    // Replay with the config's own policies reproduces every recorded decision, from the
    // fetched entities in the records.
    let config = with.log_path.parent().unwrap().join("cedargate.yaml");
    let log = with.log_path.clone();
    let (status, report) = run_replay(&replay_args(&config, &log));
    assert_eq!(status, ReplayStatus::Pass, "{report:#}");
    assert_eq!(report["replayed"], DECISIONS.len(), "{report:#}");
    assert_eq!(report["unchanged"], DECISIONS.len(), "{report:#}");
    assert_eq!(report["irreproducible"], 0, "{report:#}");

    // Without the fetched entities the records do not reproduce: every decision that read
    // provider data changes (bob's deny on d2 too: it now errs on a missing attribute); only
    // erin's, where the provider knew nothing, stays.
    let stripped = log.with_file_name("stripped.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let mut r: Value = serde_json::from_str(l).unwrap();
            r["cedar"].as_object_mut().unwrap().remove("fetched");
            r.to_string()
        })
        .collect();
    std::fs::write(&stripped, lines.join("\n") + "\n").unwrap();
    let (status, report) = run_replay(&replay_args(&config, &stripped));
    assert_eq!(status, ReplayStatus::Fail, "{report:#}");
    assert_eq!(report["irreproducible"], 5, "{report:#}");
    assert_eq!(report["unchanged"], 1, "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_failure_denies_entities_unavailable() {
    let idp = FakeIdp::start().await;
    let provider = Provider::start(1500);
    let closed = format!("http://127.0.0.1:{}/entities", free_port());
    let at = |fault: &str| format!("{}/entities/{fault}", provider.base);
    // (what, url, budget in ms, the error the record must carry)
    let cases: Vec<(&str, String, u64, &str)> = vec![
        (
            "down",
            closed,
            TIMEOUT_MS,
            "request failed: error sending request",
        ),
        (
            "slow",
            at("slow"),
            100,
            "entity provider: no answer within the 100 ms budget",
        ),
        (
            "garbage",
            at("garbage"),
            TIMEOUT_MS,
            "answer is not JSON: expected value at line 1 column 1",
        ),
        (
            "huge",
            at("huge"),
            TIMEOUT_MS,
            "answer larger than max_body_bytes (65536 bytes)",
        ),
        (
            "500",
            at("500"),
            TIMEOUT_MS,
            "answered HTTP 500 (expected 200, or 404 for no data)",
        ),
        (
            "not an array",
            at("notarray"),
            TIMEOUT_MS,
            "answer is not a JSON array of entities",
        ),
        (
            "no uid",
            at("nouid"),
            TIMEOUT_MS,
            "element 1 of the answer is not an entity with a uid",
        ),
        (
            "undeclared type",
            at("undeclared"),
            TIMEOUT_MS,
            "provider entity Undeclared::\"alice\"",
        ),
    ];
    for (what, url, budget, error) in cases {
        let mut gate = gate(&idp, Some(provider_section(&url, budget))).await;
        let started = Instant::now();
        let (answer, r) = read(&mut gate, &idp, "alice", "d2").await;
        let took = started.elapsed();
        assert_eq!(answer.status, 403, "{what}: {r}");
        assert_eq!(answer.grpc_code, 7, "{what}: PERMISSION_DENIED");
        assert!(
            answer.body.contains("\"forbidden\""),
            "{what}: {}",
            answer.body
        );
        assert!(
            !answer.body.contains("provider"),
            "{what}: the body says nothing inside"
        );
        assert_eq!(r["decision"], "deny", "{what}: {r}");
        assert_eq!(r["reason"], "entities_unavailable", "{what}: {r}");
        assert_eq!(r["policies"], json!([]), "{what}: {r}");
        let errors = r["errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{what}: {r}");
        let message = errors[0].as_str().unwrap();
        assert!(
            message.contains(error),
            "{what}: `{error}` not in `{message}`"
        );
        if what == "slow" {
            // The budget, not the provider's 1.5 s, bounds the Check.
            assert!(took < Duration::from_millis(1000), "{what} took {took:?}");
        }
        if what != "undeclared type" {
            // A failed fetch records nothing fetched; the request itself is kept.
            assert!(r["cedar"].get("fetched").is_none(), "{what}: {r}");
            assert_eq!(r["cedar"]["principal"]["id"], "alice", "{what}: {r}");
            // The policies never saw it; nor does the shadow candidate.
            assert!(r.get("shadow").is_none(), "{what}: {r}");
        } else {
            // Entities that the schema refuses are recorded: the record says what was refused.
            assert_eq!(r["cedar"]["fetched"][1]["uid"]["type"], "Undeclared", "{r}");
            assert_eq!(r["shadow"]["reason"], "entities_unavailable", "{r}");
        }

        // A record of a provider failure is not replayable (there is no data to replay with);
        // one whose answer the schema refused reproduces its deny.
        let config = gate.log_path.parent().unwrap().join("cedargate.yaml");
        let (status, report) = run_replay(&replay_args(&config, &gate.log_path));
        assert_eq!(status, ReplayStatus::Pass, "{what}: {report:#}");
        if what == "undeclared type" {
            assert_eq!(report["replayed"], 1, "{what}: {report:#}");
            assert_eq!(report["irreproducible"], 0, "{what}: {report:#}");
        } else {
            assert_eq!(
                report["not_replayable"],
                json!({"entities_unavailable": 1}),
                "{what}: {report:#}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_share_one_fetch_and_later_ones_hit_the_cache() {
    const N: usize = 16;
    let idp = FakeIdp::start().await;
    let provider = Provider::start(0);
    let url = format!("{}/entities", provider.base);
    let mut gate = gate(&idp, Some(provider_section(&url, TIMEOUT_MS))).await;
    let auth = bearer(&token(&claims(&idp.issuer, "alice", &[])));

    // N at once: one fetch per uid, shared.
    let mut tasks = Vec::new();
    for _ in 0..N {
        let mut client = gate.client.clone();
        let req = check_request("docs", "GET", "/docs/d2", &[("authorization", &auth)]);
        tasks.push(tokio::spawn(async move {
            Answer::from(client.check(req).await.unwrap().into_inner())
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().status, 200);
    }
    // N more, one after the other: from the cache.
    for _ in 0..N {
        let (answer, r) = read(&mut gate, &idp, "alice", "d2").await;
        assert_eq!(answer.status, 200, "{r}");
    }
    assert_eq!(
        provider.hits().await,
        json!({r#"User::"alice""#: 1, r#"Document::"d2""#: 1})
    );

    // The metrics count it (the recorder is process-wide: other tests may add to it).
    let text = reqwest::get(format!("http://{}/metrics", gate.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };
    assert!(value("cedargate_entity_provider_fetches_total{result=\"ok\"}") >= 2.0);
    assert!(
        value("cedargate_entity_provider_cache_lookups_total{result=\"hit\"}") >= 2.0 * N as f64
    );
    assert!(value("cedargate_entity_provider_fetch_duration_seconds_count") >= 2.0);

    // The provider is built at start: a reload that changes it is refused, whole.
    let config = gate.log_path.parent().unwrap().join("cedargate.yaml");
    let yaml = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, yaml.replace("timeout_ms: 2000", "timeout_ms: 50")).unwrap();
    let running = gate.running.as_ref().unwrap();
    let refused = running.reload.reload("api").unwrap_err().to_string();
    assert_eq!(
        refused,
        "entity_provider changed: restart cedargate to apply it (nothing from this change was applied)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_the_check_gave_up_on_still_fills_the_cache() {
    let idp = FakeIdp::start().await;
    // The provider answers after 400 ms; the budget is 100 ms (the fetch itself may run 1 s).
    let provider = Provider::start(400);
    let url = format!("{}/entities/slow", provider.base);
    let mut gate = gate(&idp, Some(provider_section(&url, 100))).await;

    let (answer, r) = read(&mut gate, &idp, "alice", "d2").await;
    assert_eq!(answer.status, 403, "{r}");
    assert_eq!(r["reason"], "entities_unavailable", "{r}");

    // Later Checks join the fetch in flight (they may be denied too) until its answer lands in
    // the cache; then they are allowed, without another fetch.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (answer, r) = read(&mut gate, &idp, "alice", "d2").await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(r["reason"], "entities_unavailable", "{r}");
        assert!(
            Instant::now() < deadline,
            "the slow answer never reached the cache"
        );
    }
    assert_eq!(
        provider.hits().await,
        json!({r#"User::"alice""#: 1, r#"Document::"d2""#: 1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetched_entities_are_redacted_like_the_rest_of_the_record() {
    let idp = FakeIdp::start().await;
    let provider = Provider::start(0);
    let url = format!("{}/entities", provider.base);
    let section = provider_section(&url, TIMEOUT_MS);
    let issuer = idp.issuer.clone();
    let mut gate = Gate::start_config(move |log| {
        config(&issuer, log, Some(&section))
            .replace("output: file", "output: file\n  redact_claims: [sub]")
    })
    .await;
    let (answer, r) = read(&mut gate, &idp, "mallory", "d1").await;
    assert_eq!(answer.status, 403);
    assert_eq!(r["reason"], "forbid", "decided on the real values: {r}");
    let fetched = r["cedar"]["fetched"].to_string();
    assert!(fetched.contains("redacted:"), "{fetched}");
    assert!(
        !gate.log_bytes().contains("mallory"),
        "{}",
        gate.log_bytes()
    );
}
