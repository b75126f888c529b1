//! The decision log as a product: records written by a real in-process cedargate (tonic client →
//! Check → log file), read back by `cedargate logs` and replayed by `cedargate replay` against
//! candidate policy sets, through the library and through the real binary (exit codes).
//!
//! Golden files live in `tests/fixtures/decision-logs/`; `UPDATE_GOLDEN=1` rewrites them.
//! `recorded.jsonl` there was written by a real run (`regenerate_recorded_fixture`, ignored by
//! default: `cargo test --test it decision_logs::regenerate -- --ignored`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cedargate::cli::logs::{self, LogsArgs};
use cedargate::cli::records::FilterArgs;
use cedargate::cli::replay::{self, FailOn, ReplayArgs, ReplayStatus};
use serde_json::{Value, json};

use crate::support::*;

pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/decision-logs")
}

/// Compares `actual` with the golden file `name`, or rewrites it under `UPDATE_GOLDEN=1`.
pub fn golden(name: &str, actual: &str) {
    let path = fixtures().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(e, a)| e != a)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the output (first difference at line {}; UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display(),
            first + 1
        );
    }
}

fn user(idp: &FakeIdp, sub: &str, groups: &[&str], tenant: &str) -> String {
    let mut c = claims(&idp.issuer, sub, groups);
    c["tenant"] = json!(tenant);
    bearer(&token(&c))
}

fn service(idp: &FakeIdp, client: &str, scope: &str) -> String {
    bearer(&token(&json!({
        "iss": idp.issuer, "sub": client, "client_id": client, "aud": AUDIENCE,
        "exp": now() + 600, "iat": now(), "jti": format!("cc-{client}"), "scope": scope,
    })))
}

/// Realistic traffic against the shipped policies: allows, policy denials, forbids, a service
/// token, anonymous callers, an expired token and an unknown route. Returns how many Checks.
pub async fn traffic(gate: &mut Gate, idp: &FakeIdp) -> usize {
    let alice = user(idp, "alice", &["admins"], "acme");
    let bob = user(idp, "bob", &["staff"], "acme");
    let carol = user(idp, "carol", &["staff"], "globex");
    let mallory = user(idp, "mallory", &[], "acme");
    let reporting = service(idp, "reporting-service", "reports:read");
    let mut expired = claims(&idp.issuer, "bob", &["staff"]);
    expired["exp"] = json!(now() - 3600);
    let expired = bearer(&token(&expired));
    let requests: Vec<(Option<&str>, &str, &str, &str)> = vec![
        (Some(&alice), "orders", "DELETE", "/orders/1"),
        (Some(&alice), "orders", "GET", "/orders/7"),
        (Some(&bob), "orders", "GET", "/orders"),
        (Some(&bob), "orders", "GET", "/orders/42"),
        (Some(&bob), "orders", "DELETE", "/orders/42"),
        (Some(&bob), "orders", "DELETE", "/orders/43"),
        (Some(&bob), "chat", "GET", "/chat/ws"),
        (Some(&bob), "payments", "GET", "/payments/9"),
        (Some(&carol), "payments", "GET", "/payments/9"),
        (Some(&carol), "orders", "DELETE", "/orders/5"),
        (Some(&mallory), "orders", "GET", "/orders/1"),
        (Some(&mallory), "orders", "GET", "/orders/2"),
        (Some(&mallory), "chat", "GET", "/chat/ws"),
        (Some(&reporting), "reports", "GET", "/reports/daily"),
        (Some(&reporting), "orders", "DELETE", "/orders/1"),
        (None, "orders", "GET", "/orders/status"),
        (None, "orders", "GET", "/orders/1"),
        (None, "orders", "GET", "/nowhere"),
        (Some(&expired), "orders", "GET", "/orders/1"),
        (Some(&bob), "orders", "GET", "/nowhere"),
    ];
    for (auth, svc, method, path) in &requests {
        let mut headers = vec![("user-agent", "curl/8.5.0")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        gate.check(check_request(svc, method, path, &headers)).await;
    }
    flush(gate).await;
    requests.len()
}

/// Waits until every record queued so far is on disk.
pub async fn flush(gate: &Gate) {
    gate.running
        .as_ref()
        .unwrap()
        .gate
        .log
        .flush(Duration::from_secs(5))
        .await;
}

/// The config file `Gate::start` wrote (beside the log).
pub fn config_path(gate: &Gate) -> PathBuf {
    gate.log_path.parent().unwrap().join("cedargate.yaml")
}

/// A copy of the shipped policy folder (without its tests), edited by `edit(file name, text)`.
fn candidate(edit: impl Fn(&str, String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(dir.path().join(&name), edit(&name, text)).unwrap();
        }
    }
    dir
}

/// Staff may delete orders (an escalation for bob), the chat permit is gone (a restriction).
fn risky_candidate() -> tempfile::TempDir {
    candidate(|name, text| {
        if name != "rbac.cedar" {
            return text;
        }
        let start = text.find("@id(\"staff-chat\")").unwrap();
        let end = start + text[start..].find(");").unwrap() + 2;
        let mut text = format!("{}{}", &text[..start], &text[end..]);
        text.push_str(
            "\n@id(\"staff-delete-orders\")\n@reason(\"staff may delete orders\")\npermit (principal in Group::\"staff\", action == Action::\"DELETE /orders/{id}\", resource == Service::\"orders\");\n",
        );
        text
    })
}

fn replay_args(config: &Path, policies: &Path, files: Vec<PathBuf>) -> ReplayArgs {
    ReplayArgs {
        config: config.to_path_buf(),
        policies: policies.to_path_buf(),
        files,
        filter: FilterArgs::default(),
        fail_on: vec![FailOn::Escalation],
        examples: 1,
        json: false,
    }
}

fn run_replay(args: &ReplayArgs) -> (ReplayStatus, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = replay::run(args, &mut out, &mut err).unwrap();
    (
        status,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn run_logs(args: &LogsArgs) -> (bool, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let matched = logs::run(args, &mut out, &mut err).unwrap();
    (
        matched,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn binary(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_what_a_candidate_would_change_on_recorded_traffic() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let checks = traffic(&mut gate, &idp).await;
    let config = config_path(&gate);
    let log = gate.log_path.clone();
    assert_eq!(gate.log_bytes().lines().count(), checks);

    // The enforced set itself: every record reproduces, nothing changes.
    let same = replay_args(&config, &repo().join("policies"), vec![log.clone()]);
    let (status, report, err) = run_replay(&same);
    assert_eq!(status, ReplayStatus::Pass, "{report}{err}");
    assert!(
        report.contains("result: 0 escalations, 0 restrictions, 0 changed, 17 unchanged"),
        "{report}"
    );
    assert!(
        report.contains(
            "not replayable 3 (decided before the policies: no_route 2, token_expired 1)"
        ),
        "{report}"
    );
    assert!(!report.contains("NOT REPRODUCIBLE"), "{report}");
    assert!(!report.contains("SCHEMA"), "{report}");

    // A risky candidate: escalations are listed first and fail the run.
    let risky = risky_candidate();
    let (status, report, _) = run_replay(&replay_args(&config, risky.path(), vec![log.clone()]));
    println!("{report}");
    assert_eq!(status, ReplayStatus::Fail);
    let escalations = report
        .find("ESCALATIONS (deny -> allow): 3 decisions in 1 group")
        .unwrap();
    let restrictions = report
        .find("RESTRICTIONS (allow -> deny): 1 decision in 1 group")
        .unwrap();
    let changed = report.find("CHANGED (").unwrap();
    assert!(
        escalations < restrictions && restrictions < changed,
        "{report}"
    );
    assert!(report.contains(
        "  3 decisions (2 principals): DELETE /orders/{id} on Service::\"orders\"\n    recorded:  deny 403 no_permit\n    candidate: allow 200 allow by staff-delete-orders\n    example:   "
    ), "{report}");
    assert!(
        report.contains("User::\"bob\" DELETE /orders/42 (decision "),
        "{report}"
    );
    assert!(
        report.contains(
            "    recorded:  allow 200 allow by staff-chat\n    candidate: deny 403 no_permit\n"
        ),
        "{report}"
    );
    // alice (an admin, so staff) is now also allowed by the new permit: same decision, new reason.
    assert!(report.contains(
        "    recorded:  allow 200 allow by admins-everything\n    candidate: allow 200 allow by admins-everything, staff-delete-orders\n"
    ), "{report}");
    // A service token still may not delete: the guardrail wins over every permit.
    assert!(!report.contains("reporting-service\" DELETE"), "{report}");
    assert!(
        report.contains("result: 3 escalations, 1 restriction, 1 changed, 12 unchanged"),
        "{report}"
    );
    assert!(
        report.ends_with("FAIL (--fail-on escalation)\n"),
        "{report}"
    );

    // --fail-on chooses what fails; `never` only reports.
    let mut args = replay_args(&config, risky.path(), vec![log.clone()]);
    args.fail_on = vec![FailOn::Never];
    assert_eq!(run_replay(&args).0, ReplayStatus::Pass);
    args.fail_on = vec![FailOn::Restriction];
    assert_eq!(run_replay(&args).0, ReplayStatus::Fail);
    // Filters narrow the replay: bob's chat record alone is a restriction, not an escalation.
    args.fail_on = vec![FailOn::Escalation];
    args.filter.action = vec!["GET /chat/ws".into()];
    let (status, report, _) = run_replay(&args);
    assert_eq!(status, ReplayStatus::Pass, "{report}");
    assert!(
        report.contains("result: 0 escalations, 1 restriction, 0 changed, 1 unchanged"),
        "{report}"
    );

    // The JSON report carries the same groups, escalations first.
    let mut args = replay_args(&config, risky.path(), vec![log.clone()]);
    args.json = true;
    let (_, json, _) = run_replay(&args);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["groups"][0]["change"], "escalation");
    assert_eq!(json["groups"][0]["count"], 3);
    assert_eq!(json["failed"], true);
    assert_eq!(json["replayed"], 17);

    // The binary: exit 1 on an escalation, 0 with --fail-on never, 2 when it can't replay.
    let config_arg = config.to_str().unwrap();
    let log_arg = log.to_str().unwrap();
    let risky_arg = risky.path().to_str().unwrap();
    let (code, stdout, _) = binary(&["replay", "-c", config_arg, "--policies", risky_arg, log_arg]);
    assert_eq!(code, 1, "{stdout}");
    let (code, _, _) = binary(&[
        "replay",
        "-c",
        config_arg,
        "--policies",
        risky_arg,
        "--fail-on",
        "never",
        log_arg,
    ]);
    assert_eq!(code, 0);
    // The log named by the config is the default input.
    let (code, stdout, _) = binary(&[
        "replay",
        "-c",
        config_arg,
        "--policies",
        risky_arg,
        "--fail-on",
        "flip",
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("from {log_arg} against")),
        "{stdout}"
    );

    // A candidate that does not validate against its schema is refused before anything runs.
    let broken = candidate(|name, text| {
        if name == "rbac.cedar" {
            format!("{text}\npermit (principal, action == Action::\"GET /nope\", resource);\n")
        } else {
            text
        }
    });
    let (code, stdout, stderr) = binary(&[
        "replay",
        "-c",
        config_arg,
        "--policies",
        broken.path().to_str().unwrap(),
        log_arg,
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("rbac.cedar:"), "{stderr}");
    assert!(
        stderr.contains("does not validate; nothing was replayed"),
        "{stderr}"
    );
    let (code, _, stderr) = binary(&[
        "replay",
        "-c",
        config_arg,
        "--policies",
        risky_arg,
        "/no/such/log.jsonl",
    ]);
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_flags_records_a_candidate_schema_rejects() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    traffic(&mut gate, &idp).await;
    // The candidate opens the chat only to workloads (and drops the staff policy for it).
    let candidate = candidate(|name, text| match name {
        "rbac.cedar" => {
            let start = text.find("@id(\"staff-chat\")").unwrap();
            let end = start + text[start..].find(");").unwrap() + 2;
            format!("{}{}", &text[..start], &text[end..])
        }
        "cedargate.cedarschema" => {
            let before = "action \"GET /chat/ws\" appliesTo {\n  principal: [User, Service, Workload, Anonymous],";
            assert!(text.contains(before));
            text.replace(
                before,
                "action \"GET /chat/ws\" appliesTo {\n  principal: [Workload],",
            )
        }
        _ => text,
    });
    let mut args = replay_args(
        &config_path(&gate),
        candidate.path(),
        vec![gate.log_path.clone()],
    );
    args.fail_on = vec![FailOn::Schema];
    let (status, report, _) = run_replay(&args);
    assert_eq!(status, ReplayStatus::Fail, "{report}");
    println!("{report}");
    assert!(
        report.contains("SCHEMA: 2 records the candidate schema rejects"),
        "{report}"
    );
    assert!(report.contains("GET /chat/ws"), "{report}");
}

#[test]
fn logs_filter_and_summarize_a_recorded_file() {
    let recorded = fixtures().join("recorded.jsonl");
    let args = |edit: &dyn Fn(&mut LogsArgs)| {
        let mut a = LogsArgs {
            files: vec![recorded.clone()],
            top: 10,
            ..LogsArgs::default()
        };
        edit(&mut a);
        a
    };

    let (matched, summary, err) = run_logs(&args(&|a| a.summary = true));
    assert!(matched);
    assert_eq!(err, "");
    golden("summary.txt", &summary);

    let (_, all, _) = run_logs(&args(&|_| {}));
    golden("all.txt", &all);
    let lines = std::fs::read_to_string(&recorded).unwrap().lines().count();
    assert_eq!(all.lines().count(), lines);

    // Filters: one flag's values are alternatives, different flags must all hold.
    let (_, denied, _) = run_logs(&args(&|a| {
        a.filter.decision = Some("deny".into());
        a.filter.principal = vec!["bob".into(), "User::\"mallory\"".into()];
    }));
    golden("deny-bob-mallory.txt", &denied);
    assert!(denied.lines().all(|l| l.contains(" deny ")));

    let (_, forbids, _) = run_logs(&args(&|a| a.filter.policy = vec!["suspended-*".into()]));
    assert_eq!(forbids.lines().count(), 1, "{forbids}");
    assert!(forbids.contains("User::\"carol\" GET /payments/{id} on Service::\"payments\""));

    let (_, unauthenticated, _) = run_logs(&args(&|a| a.filter.status = vec![401]));
    assert!(
        unauthenticated.lines().all(|l| l.contains(" 401 ")),
        "{unauthenticated}"
    );
    assert_eq!(unauthenticated.lines().count(), 3, "{unauthenticated}");

    let (_, deletes, _) = run_logs(&args(&|a| {
        a.filter.action = vec!["DELETE *".into()];
        a.filter.resource = vec!["orders".into()];
    }));
    assert_eq!(deletes.lines().count(), 5, "{deletes}");

    // --json passes matching lines through byte for byte.
    let (_, json, _) = run_logs(&args(&|a| {
        a.json = true;
        a.filter.reason = vec!["forbid".into()];
    }));
    let source = std::fs::read_to_string(&recorded).unwrap();
    for line in json.lines() {
        assert!(source.lines().any(|l| l == line));
        assert_eq!(
            serde_json::from_str::<Value>(line).unwrap()["reason"],
            "forbid"
        );
    }
    assert_eq!(json.lines().count(), 2, "{json}");

    // Time bounds: timestamps (durations count back from now).
    let times: Vec<String> = source
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["time"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let (_, later, _) = run_logs(&args(&|a| a.filter.since = Some(times[10].clone())));
    assert_eq!(later.lines().count(), times.len() - 10);
    let (_, earlier, _) = run_logs(&args(&|a| a.filter.until = Some(times[10].clone())));
    assert_eq!(earlier.lines().count(), 10);
    let (matched, nothing, _) = run_logs(&args(&|a| a.filter.since = Some("1s".into())));
    assert!(
        !matched && nothing.is_empty(),
        "old records are not within the last second"
    );

    // Through the binary: stdin, exit status like grep, unreadable lines reported.
    let mut with_noise = source.clone();
    with_noise.push_str("this is not a record\n{\"v\":9,\"what\":\"future\"}\n");
    let noisy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(noisy.path(), &with_noise).unwrap();
    let path = noisy.path().to_str().unwrap();
    let (code, stdout, stderr) = binary(&["logs", "--summary", path]);
    assert_eq!(code, 0);
    assert_eq!(stdout, summary);
    assert!(
        stderr.contains(&format!("{path}:{}: not JSON", lines + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped 1 records of format v9 (written by a newer cedargate"),
        "{stderr}"
    );
    let (code, stdout, _) = binary(&["logs", "--principal", "nobody", path]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    let (code, _, stderr) = binary(&["logs", "--since", "last tuesday", path]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--since `last tuesday`"), "{stderr}");
}

/// Rewrites `tests/fixtures/decision-logs/recorded.jsonl` from a real run of cedargate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "regenerates a checked-in fixture"]
async fn regenerate_recorded_fixture() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    traffic(&mut gate, &idp).await;
    std::fs::write(fixtures().join("recorded.jsonl"), gate.log_bytes()).unwrap();
}
