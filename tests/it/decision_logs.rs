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

use cedargate_cli::logs::{self, LogsArgs};
use cedargate_cli::records::FilterArgs;
use cedargate_cli::replay::{self, FailOn, ReplayArgs, ReplayStatus};
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

/// Masks the values that change from run to run (times, ids, ports, token hashes) in a raw
/// record line, keeping every other byte, field order included.
pub fn mask(line: &str) -> String {
    let mut out = line.to_string();
    for key in [
        "time",
        "decision_id",
        "latency_us",
        "hash",
        "jti",
        "iss",
        "exp",
        "iat",
        "epoch",
        "hour",
        "weekday",
        "policy_version",
    ] {
        let needle = format!("\"{key}\":");
        let mut masked = String::with_capacity(out.len());
        let mut rest = out.as_str();
        while let Some(at) = rest.find(&needle) {
            let (before, after) = rest.split_at(at + needle.len());
            masked.push_str(before);
            if after.starts_with(['{', '[']) {
                // An object or array (`context.time`): its own fields are masked by name.
                rest = after;
                continue;
            }
            let end = if let Some(quoted) = after.strip_prefix('"') {
                let mut escaped = false;
                let close = quoted
                    .char_indices()
                    .find(|(_, c)| {
                        let done = !escaped && *c == '"';
                        escaped = !escaped && *c == '\\';
                        done
                    })
                    .map(|(i, _)| i)
                    .unwrap();
                close + 2
            } else {
                after.find([',', '}']).unwrap()
            };
            masked.push_str(&format!("\"<{key}>\""));
            rest = &after[end..];
        }
        masked.push_str(rest);
        out = masked;
    }
    out
}

/// A config edit adding claim redaction (`extra`) and a redaction key to the test config; the
/// example config already keeps `user-agent` and `x-forwarded-for` in records.
fn with_record_settings(yaml: String, extra: &str) -> String {
    let key = fixtures().join("redaction.key");
    let marker = "output: file\n  path: ";
    let at = yaml.find(marker).unwrap();
    let end = at + yaml[at..].find('\n').unwrap();
    format!(
        "{}\n  redaction_key_file: {}\n{extra}{}",
        &yaml[..end],
        key.display(),
        &yaml[end..]
    )
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_match_the_golden_files() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start_with(&idp.issuer, |y| {
        with_record_settings(y, "  redact_claims: [tenant, email]\n")
    })
    .await;
    let mut alice = claims(&idp.issuer, "alice", &["admins"]);
    alice["email"] = json!("alice@example.com");
    let alice = bearer(&token(&alice));
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let mut carol = claims(&idp.issuer, "carol", &["staff"]);
    carol["tenant"] = json!("globex");
    let carol = bearer(&token(&carol));
    let mut expired = claims(&idp.issuer, "bob", &["staff"]);
    expired["exp"] = json!(now() - 3600);
    let expired = bearer(&token(&expired));
    let common = [
        ("user-agent", "curl/8.5.0"),
        ("x-forwarded-for", "203.0.113.7"),
        ("traceparent", TRACEPARENT),
        ("cookie", "session=never-logged"),
    ];
    let cases: Vec<(&str, Option<&str>, &str, &str, &str)> = vec![
        (
            "allow",
            Some(&alice),
            "orders",
            "GET",
            "/orders/42?limit=5&other=x",
        ),
        ("forbid", Some(&carol), "payments", "GET", "/payments/7"),
        (
            "redacted-path",
            Some(&bob),
            "orders",
            "GET",
            "/tenants/acme/orders/7",
        ),
        ("anonymous", None, "orders", "GET", "/orders/1"),
        (
            "token-expired",
            Some(&expired),
            "orders",
            "GET",
            "/orders/1",
        ),
        ("no-route", Some(&bob), "orders", "GET", "/nowhere"),
    ];
    let mut lines = String::new();
    for (name, auth, svc, method, path) in &cases {
        let mut headers: Vec<(&str, &str)> = common.to_vec();
        let id = format!("req-{name}");
        headers.push(("x-request-id", &id));
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let answer = gate.check(check_request(svc, method, path, &headers)).await;
        gate.record(answer.decision_id()).await;
        let raw = gate
            .log_bytes()
            .lines()
            .find(|l| l.contains(answer.decision_id()))
            .unwrap()
            .to_string();
        lines.push_str(&mask(&raw));
        lines.push('\n');
    }
    golden("records.golden.jsonl", &lines);
    // Every golden record reads back as a v1 record.
    for line in gate.log_bytes().lines() {
        assert!(matches!(
            cedargate_cli::records::parse_line(line),
            cedargate_cli::records::Line::Record(_)
        ));
    }
    assert!(!gate.log_bytes().contains("never-logged"));
}

/// The `cedargate` binary serving a config, with everything it writes to stdout and stderr.
pub struct Served {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    pub stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    grpc: u16,
}

impl Served {
    async fn start(config: &Path, grpc: u16, admin: u16) -> Served {
        Served::start_with_log(config, grpc, admin, "debug").await
    }

    pub async fn start_with_log(config: &Path, grpc: u16, admin: u16, level: &str) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        command.args(["serve", "-c"]).arg(config);
        Served::run(command, grpc, admin, level).await
    }

    /// Serving `dir/cedargate.yaml` the way the docs show it: from its folder, with the config
    /// named by a relative path (so relative folders in it stay relative).
    async fn start_in(dir: &Path, grpc: u16, admin: u16) -> Served {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        command
            .current_dir(dir)
            .args(["serve", "-c", "cedargate.yaml"]);
        Served::run(command, grpc, admin, "info").await
    }

    async fn run(mut command: Command, grpc: u16, admin: u16, level: &str) -> Served {
        use std::io::Read as _;
        let mut child = command
            .env("RUST_LOG", level)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut readers = Vec::new();
        let mut collect = |mut pipe: Box<dyn std::io::Read + Send>| {
            let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
            let into = buffer.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    into.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }));
            buffer
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{admin}/readyz")).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "cedargate not ready: {}",
                String::from_utf8_lossy(&stderr.lock().unwrap())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Served {
            child,
            stdout,
            stderr,
            readers,
            grpc,
        }
    }

    pub async fn client(
        &self,
    ) -> envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    > {
        envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(
            format!("http://127.0.0.1:{}", self.grpc),
        )
        .await
        .unwrap()
    }

    /// SIGTERM (the log is flushed on the way out), then everything written.
    pub fn stop(mut self) -> (Vec<u8>, Vec<u8>) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "cedargate exited with {exit}");
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (out, err)
    }
}

/// Every file under `dir`, concatenated.
fn all_bytes_under(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_cookie_or_redacted_claim_reaches_any_output() {
    let idp = FakeIdp::start().await;
    // The OTLP output too: an OTLP/gRPC logs receiver keeps every byte it is sent.
    let (collector, collector_addr) = crate::decision_otlp::LogsReceiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log_path = logs.join("decisions.jsonl");
    let (grpc, admin) = (crate::stack::free_port(), crate::stack::free_port());
    // The test config listens on `127.0.0.1:0` twice: grpc first, then admin.
    let yaml = test_config_yaml(&idp.issuer, &log_path)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{grpc}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1);
    let yaml = with_record_settings(
        yaml,
        "  redact_claims: [email, phone_number, tenant, sub]\n",
    )
    // Map the email claim onto the principal, so that redaction has something to hide there.
    .replace(
        "        tenant: tenant\n",
        "        tenant: tenant\n        email: email\n",
    );
    let yaml =
        crate::decision_otlp::with_otlp(yaml, &collector_addr.to_string(), ", batch_delay_ms: 50");
    let config = dir.path().join("cedargate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let served = Served::start(&config, grpc, admin).await;
    let mut client = served.client().await;

    // Secrets, as a client or an IdP would send them.
    let email = "alice.private@example.com";
    let phone = "+1-555-0100-7788";
    let tenant = "tenant-unit-secret";
    let subject = "subject-alice-8b1f";
    let mut claims_alice = claims(&idp.issuer, subject, &["admins"]);
    claims_alice["email"] = json!(email);
    claims_alice["phone_number"] = json!(phone);
    claims_alice["tenant"] = json!(tenant);
    let good = token(&claims_alice);
    let bad_signature = {
        // Change one character in the middle of the signature (the last one may only carry
        // padding bits).
        let at = good.len() - 20;
        let c = if &good[at..=at] == "A" { "B" } else { "A" };
        format!("{}{c}{}", &good[..at], &good[at + 1..])
    };
    let mut old = claims_alice.clone();
    old["exp"] = json!(now() - 3600);
    let expired = token(&old);
    let mut foreign = claims_alice.clone();
    foreign["iss"] = json!("https://elsewhere.example");
    let foreign = token(&foreign);
    let cookie = "session=COOKIE-VALUE-9d2c41";
    let basic = "Basic QmFzaWNTZWNyZXQ6cGFzc3dvcmQ=";
    let proxy = "Bearer PROXY-CREDENTIAL-51ae";
    let api_key = "APIKEY-VALUE-77f0e2";
    let query_token = "QUERYTOKEN-3c9a0b";

    let bearer_good = bearer(&good);
    let requests: Vec<(String, &str, &str, String)> = vec![
        (
            bearer_good.clone(),
            "orders",
            "GET",
            format!("/orders/42?limit=5&access_token={query_token}"),
        ),
        (bearer_good.clone(), "orders", "GET", "/orders/42".into()),
        (
            bearer_good.clone(),
            "orders",
            "GET",
            format!("/orders/{email}"),
        ),
        (
            bearer_good.clone(),
            "orders",
            "GET",
            format!("/tenants/{tenant}/orders/1"),
        ),
        (bearer_good.clone(), "orders", "GET", "/nowhere".into()),
        (bearer(&bad_signature), "orders", "GET", "/orders/1".into()),
        (bearer(&expired), "orders", "GET", "/orders/1".into()),
        (bearer(&foreign), "orders", "GET", "/orders/1".into()),
        (basic.to_string(), "orders", "GET", "/orders/1".into()),
        (
            format!("Bearer {}", "x".repeat(9000)),
            "orders",
            "GET",
            "/orders/1".into(),
        ),
    ];
    let mut allowed_with_redaction = 0;
    for (auth, svc, method, path) in &requests {
        let request = check_request(
            svc,
            method,
            path,
            &[
                ("authorization", auth),
                ("cookie", cookie),
                ("proxy-authorization", proxy),
                ("x-api-key", api_key),
                ("user-agent", "curl/8.5.0"),
                ("x-forwarded-for", "203.0.113.7"),
                ("traceparent", TRACEPARENT),
            ],
        );
        let answer = Answer::from(client.check(request).await.unwrap().into_inner());
        if answer.status == 200 {
            allowed_with_redaction += 1;
        }
    }
    // Oversized headers: the token is not even verified.
    let big = "y".repeat(70_000);
    client
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[
                ("authorization", &bearer_good),
                ("x-big", &big),
                ("cookie", cookie),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(allowed_with_redaction, 4, "alice is an admin");

    let (stdout, stderr) = served.stop();
    let log = all_bytes_under(&logs);
    let records: Vec<Value> = String::from_utf8(log.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), requests.len() + 1, "one record per Check");
    // The collector got every record before cedargate exited (SIGTERM flushes it).
    assert_eq!(
        collector.logs().len(),
        records.len(),
        "one OTLP record per Check"
    );
    let exported = collector.bytes();

    let mut secrets: Vec<String> = vec![
        email.into(),
        phone.into(),
        tenant.into(),
        subject.into(),
        cookie.into(),
        "COOKIE-VALUE-9d2c41".into(),
        basic.into(),
        "QmFzaWNTZWNyZXQ6cGFzc3dvcmQ".into(),
        proxy.into(),
        "PROXY-CREDENTIAL-51ae".into(),
        api_key.into(),
        query_token.into(),
    ];
    for t in [&good, &bad_signature, &expired, &foreign] {
        secrets.push(t.to_string());
        // Each part of a JWT on its own (the payload carries the claims, base64url-encoded).
        secrets.extend(t.split('.').filter(|p| p.len() >= 16).map(str::to_string));
    }
    for (name, bytes) in [
        ("decision log", &log),
        ("OTLP collector", &exported),
        ("stdout", &stdout),
        ("stderr", &stderr),
    ] {
        for secret in &secrets {
            assert!(
                !contains(bytes, secret),
                "{name} contains `{secret}`:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
    assert!(
        !stderr.is_empty(),
        "operational logs were captured (RUST_LOG=debug)"
    );

    // Not vacuous: the redacted values are there, as hashes, where the claims went.
    let first = &records[0];
    assert!(
        first["principal"]
            .as_str()
            .unwrap()
            .starts_with("User::\"redacted:")
    );
    assert!(
        first["token"]["sub"]
            .as_str()
            .unwrap()
            .starts_with("redacted:")
    );
    let principal_entity = &first["cedar"]["entities"][0];
    assert!(
        principal_entity["attrs"]["email"]
            .as_str()
            .unwrap()
            .starts_with("redacted:")
    );
    assert!(
        principal_entity["attrs"]["tenant"]
            .as_str()
            .unwrap()
            .starts_with("redacted:")
    );
    assert_eq!(
        first["headers"],
        json!({"user-agent": "curl/8.5.0", "x-forwarded-for": "203.0.113.7"})
    );
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(
        first["cedar"]["context"]["request"]["query"],
        json!({"limit": "5"})
    );
    // The same value hashes the same everywhere (records still correlate).
    assert_eq!(
        records[2]["cedar"]["context"]["request"]["params"]["id"],
        principal_entity["attrs"]["email"]
    );
    assert!(
        records[3]["cedar"]["context"]["request"]["path"]
            .as_str()
            .unwrap()
            .starts_with("/tenants/redacted:")
    );
    // Rejected credentials leave only their reason.
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons[5..],
        [
            "token_bad_signature",
            "token_expired",
            "token_unknown_issuer",
            "unsupported_auth_scheme",
            "token_too_large",
            "headers_too_large"
        ]
    );
    for r in &records[5..] {
        assert!(r.get("token").is_none(), "{r}");
    }
}

/// Lines a child process prints on stdout, collected by a thread.
struct Lines {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lines {
    fn spawn(args: &[&str]) -> Lines {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let into = lines.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                into.lock().unwrap().push(line);
            }
        });
        Lines { child, lines }
    }

    /// Waits (deadline 10 s) until `n` lines have been printed.
    async fn wait_for(&self, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.lines.lock().unwrap().len() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of {n} lines after 10 s",
                self.lines.lock().unwrap().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_reads_across_rotation() {
    let idp = FakeIdp::start().await;
    // About three records per file, and room for every rotated file.
    let mut gate = Gate::start_with(&idp.issuer, |y| {
        y.replace(
            "output: file\n",
            "output: file\n  rotate: { max_bytes: 5000, keep: 200 }\n",
        )
    })
    .await;
    let log = gate.log_path.clone();
    let follower = Lines::spawn(&["logs", "--follow", "--json", log.to_str().unwrap()]);
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let mut ids = Vec::new();
    // Paced rounds (the follower sees every rotation as it happens), then a burst that rotates
    // several times between two of its polls.
    for round in [2, 2, 3, 1, 4, 2, 3, 30] {
        for _ in 0..round {
            let answer = gate
                .check(check_request(
                    "orders",
                    "GET",
                    "/orders/1",
                    &[("authorization", &bob)],
                ))
                .await;
            ids.push(answer.decision_id().to_string());
        }
        flush(&gate).await;
        follower.wait_for(ids.len()).await;
    }
    let followed: Vec<String> = follower
        .lines
        .lock()
        .unwrap()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["decision_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(followed, ids, "every record once, in order");

    // The files: rotated by size, whole records in each, none lost.
    let mut files = cedargate_cli::records::with_rotated(&log);
    assert!(files.len() > 10, "{} files", files.len());
    let mut on_disk = Vec::new();
    for file in files.drain(..) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.len() <= 5000,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            on_disk.push(
                serde_json::from_str::<Value>(line).unwrap()["decision_id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
    }
    assert_eq!(on_disk, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_drops_at_normal_load() {
    let idp = FakeIdp::start().await;
    let gate = Gate::start(&idp.issuer).await;
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let (clients, per_client) = (8, 250);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let mut client = gate.client.clone();
        let bob = bob.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                let request =
                    check_request("orders", "GET", "/orders/1", &[("authorization", &bob)]);
                client.check(request).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    flush(&gate).await;
    let total = clients * per_client;
    let readyz: Value = reqwest::get(format!("http://{}/readyz", gate.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!(
        "normal load: {total} Checks from {clients} clients in {elapsed:?} ({:.0}/s), decision_log {}",
        total as f64 / elapsed.as_secs_f64(),
        readyz["decision_log"]
    );
    assert_eq!(
        readyz["decision_log"],
        json!({"queued": total, "dropped": 0})
    );
    assert_eq!(gate.log_bytes().lines().count(), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_output_drops_counts_and_reports_but_never_blocks_a_check() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The log is a FIFO that nobody reads for a while: the writer blocks once the pipe is full.
    let fifo = dir.path().join("decisions.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            use std::io::Read as _;
            // Opening blocks until cedargate opens the write end.
            let mut pipe = std::fs::File::open(&fifo).unwrap();
            drain_rx.recv().unwrap();
            let mut all = Vec::new();
            pipe.read_to_end(&mut all).unwrap();
            all
        })
    };
    let (grpc, admin) = (crate::stack::free_port(), crate::stack::free_port());
    let yaml = test_config_yaml(&idp.issuer, &fifo)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{grpc}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1)
        .replace("output: file\n", "output: file\n  queue: 8\n");
    let config = dir.path().join("cedargate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let served = Served::start_with_log(&config, grpc, admin, "warn").await;
    let mut client = served.client().await;
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let total = 400;
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..total {
        let t = std::time::Instant::now();
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
        assert_eq!(answer.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "{total} Checks with a stalled log in {:?}, slowest {slowest:?}",
        started.elapsed()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a Check waited for the log: {slowest:?}"
    );

    // Counted at once, reported periodically while the writer is still stuck.
    let readyz: Value = reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dropped = readyz["decision_log"]["dropped"].as_u64().unwrap();
    assert!(dropped > 100, "{readyz}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !contains(
        &served.stderr.lock().unwrap(),
        "decision_log.records_dropped",
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "no drop report within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = String::from_utf8_lossy(&served.stderr.lock().unwrap()).into_owned();
    println!(
        "{}",
        report
            .lines()
            .find(|l| l.contains("records_dropped"))
            .unwrap()
    );

    // Unstall: everything not dropped arrives; nothing is lost silently.
    drain_tx.send(()).unwrap();
    let (_, stderr) = served.stop();
    let written = reader.join().unwrap();
    let lines = String::from_utf8(written).unwrap().lines().count() as u64;
    assert_eq!(
        lines + dropped,
        total as u64,
        "{lines} written + {dropped} dropped"
    );
    let stderr = without_ansi(&String::from_utf8_lossy(&stderr));
    let last = stderr
        .lines()
        .rfind(|l| l.contains("records_dropped"))
        .unwrap();
    assert!(last.contains(&format!("dropped_total={dropped}")), "{last}");
}

/// Text without ANSI colour escapes (`ESC [ … m`), as a terminal would show it.
pub fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of one Prometheus sample line `name{labels} value` in a scrape.
pub async fn metric(admin: std::net::SocketAddr, series: &str) -> f64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .unwrap_or_else(|| panic!("{series} not in /metrics:\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_disagreements_and_follows_reloads() {
    let idp = FakeIdp::start().await;
    let risky = risky_candidate();
    let shadow = format!("\nshadow:\n  policy_dir: {}\n", risky.path().display());
    let mut gate = Gate::start_with(&idp.issuer, |y| format!("{y}{shadow}")).await;
    let admin = gate.admin;
    let series = |result: &str| format!("cedargate_shadow_decisions_total{{result=\"{result}\"}}");
    let before = [
        metric(admin, &series("agree")).await,
        metric(admin, &series("would_allow")).await,
        metric(admin, &series("would_deny")).await,
    ];
    let checks = traffic(&mut gate, &idp).await;
    let records: Vec<Value> = gate
        .log_bytes()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), checks);

    // The answers are the enforced set's; the candidate's decisions are beside them.
    let candidate_version = records[0]["shadow"]["policy_version"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(
        candidate_version,
        records[0]["policy_version"].as_str().unwrap()
    );
    let deletes: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["principal"] == "User::\"bob\"" && r["action"] == "Action::\"DELETE /orders/{id}\""
        })
        .collect();
    assert_eq!(deletes.len(), 2);
    for r in &deletes {
        assert_eq!(
            (r["decision"].as_str(), r["status"].as_u64()),
            (Some("deny"), Some(403))
        );
        assert_eq!(
            r["shadow"],
            json!({
                "policy_version": candidate_version,
                "decision": "allow",
                "status": 200,
                "reason": "allow",
                "policies": [{"id": "staff-delete-orders", "reason": "staff may delete orders"}],
                "errors": [],
                "agrees": false,
            })
        );
    }
    let chat = records
        .iter()
        .find(|r| r["principal"] == "User::\"bob\"" && r["route"] == "/chat/ws")
        .unwrap();
    assert_eq!(chat["decision"], "allow");
    assert_eq!(chat["shadow"]["decision"], "deny");
    // Decided before the policies: nothing for the candidate to change.
    for r in records.iter().filter(|r| r.get("cedar").is_none()) {
        assert!(r.get("shadow").is_none(), "{r}");
    }
    let disagreements = records
        .iter()
        .filter(|r| r["shadow"]["agrees"] == false)
        .count();
    assert_eq!(
        disagreements, 4,
        "3 deletes by staff would be allowed, bob's chat denied"
    );
    let after = [
        metric(admin, &series("agree")).await,
        metric(admin, &series("would_allow")).await,
        metric(admin, &series("would_deny")).await,
    ];
    assert_eq!(
        [
            after[0] - before[0],
            after[1] - before[1],
            after[2] - before[2]
        ],
        [13.0, 3.0, 1.0]
    );
    let policy: Value = reqwest::get(format!("http://{admin}/policy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["shadow"]["version"], candidate_version.as_str());

    // `logs` shows the disagreements.
    let args = LogsArgs {
        files: vec![gate.log_path.clone()],
        top: 10,
        filter: FilterArgs {
            disagreements: true,
            ..FilterArgs::default()
        },
        ..LogsArgs::default()
    };
    let (_, shown, _) = run_logs(&args);
    assert_eq!(shown.lines().count(), 4, "{shown}");
    assert!(shown.lines().all(|l| l.contains(" SHADOW ")), "{shown}");
    let (_, summary, _) = run_logs(&LogsArgs {
        summary: true,
        filter: FilterArgs::default(),
        ..args
    });
    assert!(
        summary.contains(&format!(
            "shadow       17 evaluated against {candidate_version} (17): 4 disagree (3 would allow, 1 would deny)"
        )),
        "{summary}"
    );

    // Reloads: a broken candidate is refused and the last good pair (with its shadow) stays.
    let config = config_path(&gate);
    let yaml = std::fs::read_to_string(&config).unwrap();
    let reloader = gate.running.as_ref().unwrap().reload.clone();
    let reload = || reloader.clone();
    let broken = candidate(|name, text| {
        if name == "rbac.cedar" {
            format!("{text}\npermit (principal, action == Action::\"GET /nope\", resource);\n")
        } else {
            text
        }
    });
    std::fs::write(
        &config,
        yaml.replace(
            &risky.path().display().to_string(),
            &broken.path().display().to_string(),
        ),
    )
    .unwrap();
    let refused = reload().reload("test").unwrap_err().to_string();
    assert!(refused.starts_with("shadow policy set: "), "{refused}");
    assert!(refused.contains("rbac.cedar"), "{refused}");
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let delete = || check_request("orders", "DELETE", "/orders/9", &[("authorization", &bob)]);
    let answer = gate.check(delete()).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        gate.record(answer.decision_id()).await["shadow"]["decision"],
        "allow"
    );

    // Off by reload: no shadow evaluation any more, and /policy says so.
    std::fs::write(&config, yaml.replace(&shadow, "\n")).unwrap();
    reload().reload("test").unwrap();
    let answer = gate.check(delete()).await;
    assert_eq!(answer.status, 403);
    assert!(
        gate.record(answer.decision_id())
            .await
            .get("shadow")
            .is_none()
    );
    let policy: Value = reqwest::get(format!("http://{admin}/policy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(policy["shadow"], Value::Null);

    // And on again, with the enforced set itself as the candidate: everything agrees.
    std::fs::write(
        &config,
        yaml.replace(
            &risky.path().display().to_string(),
            &repo().join("policies").display().to_string(),
        ),
    )
    .unwrap();
    reload().reload("test").unwrap();
    let answer = gate.check(delete()).await;
    let r = gate.record(answer.decision_id()).await;
    assert_eq!(r["shadow"]["agrees"], true);
    assert_eq!(r["shadow"]["policy_version"], r["policy_version"]);
}

/// A copy of the shipped policy folder's files (not its tests) in `to`.
fn copy_policies(to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// `/policy` once `done` holds for it (deadline 10 s: a file-triggered reload waits 250 ms of
/// quiet first).
async fn policy_when(admin: u16, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let policy: Value = reqwest::get(format!("http://127.0.0.1:{admin}/policy"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&policy) {
            return policy;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen; /policy: {policy:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Shadow mode turned on by a reload, in the real binary started as the docs show (from the
/// config's folder, `-c cedargate.yaml`, relative folders): the candidate folder that reload
/// named is watched, so an edit there applies without a restart. Pointed at another folder, the
/// new one is watched from the attempt on (fixing a broken candidate there applies by itself)
/// and the old one is dropped once the switch succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_folder_named_by_a_reload_is_watched() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    // The binary runs in `dir`; the watcher reports folders as the OS names the working folder.
    let root = dir.path().canonicalize().unwrap();
    let log_path = root.join("decisions.jsonl");
    let (grpc, admin) = (crate::stack::free_port(), crate::stack::free_port());
    let yaml = test_config_yaml(&idp.issuer, &log_path)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{grpc}"), 1)
        .replacen("127.0.0.1:0", &format!("127.0.0.1:{admin}"), 1)
        .replace(
            &format!("policy_dir: {}", repo().join("policies").display()),
            "policy_dir: policies",
        );
    assert!(yaml.contains("\npolicy_dir: policies\n") && !yaml.contains("\nshadow:"));
    copy_policies(&root.join("policies"));
    let config = root.join("cedargate.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let served = Served::start_in(&root, grpc, admin).await;
    let mut client = served.client().await;
    let bob = bearer(&token(&claims(&idp.issuer, "bob", &["staff"])));
    let mut decide = async |method: &str, path: &str, service: &str| {
        let request = check_request(service, method, path, &[("authorization", &bob)]);
        let answer = Answer::from(client.check(request).await.unwrap().into_inner());
        (
            answer.status,
            record_in(&log_path, answer.decision_id()).await,
        )
    };
    let watching = |policy: &Value| -> Vec<String> {
        serde_json::from_value(policy["reload"]["watching"].clone()).unwrap()
    };
    let folder = |name: &str| root.join(name).display().to_string();
    let series = |result: &str| format!("cedargate_shadow_decisions_total{{result=\"{result}\"}}");
    let admin_addr: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();

    // Started without shadow mode: the policy folder and the config's folder are watched.
    let (status, record) = decide("DELETE", "/orders/9", "orders").await;
    assert_eq!(status, 403);
    assert!(record.get("shadow").is_none(), "{record}");
    let policy = policy_when(admin, "start", |_| true).await;
    assert_eq!(policy["shadow"], Value::Null);
    assert_eq!(
        watching(&policy),
        [root.display().to_string(), folder("policies")]
    );

    // Shadow mode on by editing the config (a file-triggered reload), candidate = a copy.
    copy_policies(&root.join("next"));
    std::fs::write(&config, format!("{yaml}\nshadow:\n  policy_dir: next\n")).unwrap();
    let policy = policy_when(admin, "shadow mode on", |p| !p["shadow"].is_null()).await;
    assert!(watching(&policy).contains(&folder("next")), "{policy:#}");
    let first = policy["shadow"]["version"].as_str().unwrap().to_string();
    let (status, record) = decide("DELETE", "/orders/9", "orders").await;
    assert_eq!(status, 403);
    assert_eq!(record["shadow"]["decision"], "deny");
    assert_eq!(record["shadow"]["agrees"], true);
    let would_allow = metric(admin_addr, &series("would_allow")).await;

    // An edit in the candidate folder that reload named applies by itself, without a restart.
    let rbac = root.join("next/rbac.cedar");
    let text = std::fs::read_to_string(&rbac).unwrap();
    std::fs::write(
        &rbac,
        format!(
            "{text}\n@id(\"staff-delete-orders\")\n@reason(\"staff may delete orders\")\npermit (principal in Group::\"staff\", action == Action::\"DELETE /orders/{{id}}\", resource == Service::\"orders\");\n"
        ),
    )
    .unwrap();
    let policy = policy_when(admin, "the candidate edit", |p| {
        p["shadow"]["version"].as_str() != Some(first.as_str())
    })
    .await;
    assert_eq!(policy["reload"]["last_trigger"], "file");
    let second = policy["shadow"]["version"].as_str().unwrap().to_string();
    let (status, record) = decide("DELETE", "/orders/9", "orders").await;
    assert_eq!(status, 403, "the candidate never answers");
    assert_eq!(
        record["shadow"],
        json!({
            "policy_version": second,
            "decision": "allow",
            "status": 200,
            "reason": "allow",
            "policies": [{"id": "staff-delete-orders", "reason": "staff may delete orders"}],
            "errors": [],
            "agrees": false,
        })
    );
    assert_eq!(
        metric(admin_addr, &series("would_allow")).await - would_allow,
        1.0
    );

    // Another candidate folder, broken: refused, the last good pair (with `next`) stays, and
    // the new folder is watched already, so fixing it applies by itself.
    copy_policies(&root.join("other"));
    let extra = root.join("other/extra.cedar");
    std::fs::write(
        &extra,
        "forbid (principal, action, resource) when { principal.x ==  };\n",
    )
    .unwrap();
    std::fs::write(&config, format!("{yaml}\nshadow:\n  policy_dir: other\n")).unwrap();
    let policy = policy_when(admin, "the broken candidate's refusal", |p| {
        p["reload"]["last_error"].is_string()
    })
    .await;
    let error = policy["reload"]["last_error"].as_str().unwrap();
    assert!(error.starts_with("shadow policy set: "), "{error}");
    assert!(error.contains("extra.cedar:1:"), "{error}");
    assert_eq!(policy["shadow"]["version"], second.as_str());
    assert!(watching(&policy).contains(&folder("other")), "{policy:#}");
    let (_, record) = decide("DELETE", "/orders/9", "orders").await;
    assert_eq!(record["shadow"]["policy_version"], second.as_str());

    std::fs::write(
        &extra,
        "@id(\"no-chat\")\nforbid (principal, action == Action::\"GET /chat/ws\", resource);\n",
    )
    .unwrap();
    let policy = policy_when(admin, "the fixed candidate", |p| {
        p["reload"]["last_error"].is_null() && p["shadow"]["version"].as_str() != Some(&second)
    })
    .await;
    assert_eq!(
        watching(&policy),
        [
            root.display().to_string(),
            folder("other"),
            folder("policies")
        ],
        "`next` is named by no config any more"
    );
    let (status, record) = decide("GET", "/chat/ws", "chat").await;
    assert_eq!(status, 200);
    assert_eq!(record["shadow"]["decision"], "deny");
    assert_eq!(record["shadow"]["agrees"], false);
    assert_eq!(
        record["shadow"]["policy_version"],
        policy["shadow"]["version"]
    );

    // The enforced folder, named relatively too, is watched as well.
    let enforced = policy["version"].as_str().unwrap().to_string();
    std::fs::copy(&rbac, root.join("policies/rbac.cedar")).unwrap();
    policy_when(admin, "the enforced edit", |p| {
        p["version"].as_str() != Some(enforced.as_str())
    })
    .await;
    let (status, record) = decide("DELETE", "/orders/9", "orders").await;
    assert_eq!(status, 200);
    assert_eq!(record["policies"][0]["id"], "staff-delete-orders");

    let (_, stderr) = served.stop();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(stderr.contains("reload.unwatched"), "{stderr}");
}
