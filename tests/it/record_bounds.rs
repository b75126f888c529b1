//! What a decision record keeps of an oversized request (issue 15), in-process with the real
//! Check API and the real log file: a long header value is cut in the record (`headers` and
//! `cedar.context`) to `decision_log.max_header_value_bytes`, on a UTF-8 boundary and marked,
//! while Cedar decides on the whole value; `cedargate replay` then reports the record as not
//! replayable exactly instead of evaluating the cut copy (which would invent an escalation and
//! call the record irreproducible).

use std::path::Path;

use cedargate_cli::records::FilterArgs;
use cedargate_cli::replay::{self, FailOn, ReplayArgs, ReplayStatus};
use cedargate_core::redaction::CUT_MARKER;
use serde_json::Value;

use crate::decision_logs::{config_path, flush};
use crate::support::*;

/// A forbid that reads the *end* of the user-agent: it only fires if Cedar sees the whole value.
const TAIL_FORBID: &str = r#"
@id("no-tail-agents")
@reason("user agents ending in -TAIL are refused")
forbid (principal, action, resource)
when { context.request.headers has "user-agent" && context.request.headers["user-agent"] like "*-TAIL" };
"#;

/// The shipped policies plus [`TAIL_FORBID`], in a temp folder.
fn policies_with_tail_forbid() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.path().join("tail.cedar"), TAIL_FORBID).unwrap();
    dir
}

fn with_cap(yaml: String, policies: &Path, cap: usize) -> String {
    let shipped = format!("policy_dir: {}", repo().join("policies").display());
    assert!(yaml.contains(&shipped));
    let yaml = yaml.replace(&shipped, &format!("policy_dir: {}", policies.display()));
    assert!(yaml.contains("\ndecision_log:\n"));
    yaml.replace(
        "\ndecision_log:\n",
        &format!("\ndecision_log:\n  max_header_value_bytes: {cap}\n"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_header_values_are_cut_in_the_record_but_decided_whole() {
    let idp = FakeIdp::start().await;
    let policies = policies_with_tail_forbid();
    // 255: the cut lands inside a two-byte character.
    let mut gate = Gate::start_with(&idp.issuer, |y| with_cap(y, policies.path(), 255)).await;
    let alice = user(&idp, "alice", &["admins"], "acme");

    // 58,005 bytes, like the header of the security report; only its end says -TAIL.
    let long = format!("{}-TAIL", "é".repeat(29_000));
    assert_eq!(long.len(), 58_005);
    let denied = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &alice), ("user-agent", &long)],
        ))
        .await;
    // Cedar saw the whole value: the forbid on its tail fired.
    assert_eq!(denied.status, 403, "{}", denied.body);
    let record = gate.record(denied.decision_id()).await;
    assert_eq!(record["reason"], "forbid");
    assert_eq!(record["policies"][0]["id"], "no-tail-agents");

    let cut = format!("{}{CUT_MARKER}58005 bytes]", "é".repeat(127));
    assert_eq!(record["headers"]["user-agent"], cut.as_str());
    assert_eq!(
        record["cedar"]["context"]["request"]["headers"]["user-agent"],
        cut.as_str()
    );
    assert_eq!(
        record["truncated"],
        serde_json::json!([
            "/headers/user-agent",
            "/cedar/context/request/headers/user-agent"
        ])
    );
    let line = gate
        .log_bytes()
        .lines()
        .find(|l| l.contains(denied.decision_id()))
        .unwrap()
        .to_string();
    assert!(
        line.len() < 4096,
        "the record is {} bytes: the header was not cut",
        line.len()
    );

    // A short header is recorded whole and nothing is listed as cut.
    let allowed = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &alice), ("user-agent", "curl/8.5.0")],
        ))
        .await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let record = gate.record(allowed.decision_id()).await;
    assert_eq!(record["headers"]["user-agent"], "curl/8.5.0");
    assert!(record.get("truncated").is_none(), "{record}");
    flush(&gate).await;

    // Replay against the very set that decided: the cut record is reported apart, never
    // evaluated (its prefix does not end in -TAIL: evaluating it would "allow" and report an
    // escalation and an irreproducible record).
    let args = |json| ReplayArgs {
        config: config_path(&gate),
        policies: policies.path().to_path_buf(),
        files: vec![gate.log_path.clone()],
        filter: FilterArgs::default(),
        fail_on: vec![FailOn::Flip],
        examples: 1,
        json,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = replay::run(&args(false), &mut out, &mut err).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(status, ReplayStatus::Pass, "{text}");
    assert!(
        text.contains(
            "not replayable exactly 1 record: a header value in the recorded Cedar request was cut"
        ),
        "{text}"
    );
    assert!(text.contains(denied.decision_id()), "{text}");
    assert!(!text.contains("ESCALATIONS"), "{text}");
    assert!(!text.contains("NOT REPRODUCIBLE"), "{text}");

    let (mut out, mut err) = (Vec::new(), Vec::new());
    replay::run(&args(true), &mut out, &mut err).unwrap();
    let report: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(report["records"], 2);
    assert_eq!(report["replayed"], 1);
    assert_eq!(report["truncated"], 1);
    assert_eq!(report["irreproducible"], 0);
    assert_eq!(report["unchanged"], 1);
}
