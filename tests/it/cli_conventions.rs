//! Command-line conventions of the real binary (issue 15): `--version` names the build commit and
//! the Cedar it decides with; `CEDARGATE_CONFIG` stands in for `-c`; colour only when asked for
//! or on a terminal, never with `NO_COLOR`; `validate`, `test` and `check --format json` are one
//! document on stdout; shell completions and the man page name every subcommand.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{CliRun, cli, repo};

/// Runs the binary in `dir` with `env` set, `NO_COLOR` and `CEDARGATE_CONFIG` unset.
fn cedargate(args: &[&str], env: &[(&str, &str)], dir: &Path) -> CliRun {
    env.iter()
        .fold(cli(args).dir(dir).env_remove("NO_COLOR"), |cmd, (k, v)| {
            cmd.env(k, v)
        })
        .run()
}

#[test]
fn version_names_the_commit_and_the_cedar_versions() {
    let out = cedargate(&["--version"], &[], &repo());
    assert!(out.success());
    let text = out.stdout;
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .unwrap();
    let commit = String::from_utf8(commit.stdout).unwrap();
    assert!(
        text.starts_with(&format!("cedargate {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The test binary and cedargate are built from the same checkout.
    assert!(
        text.contains(&format!("commit {}", commit.trim())),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Cedar SDK {}, language {}",
            cedar_policy::get_sdk_version(),
            cedar_policy::get_lang_version()
        )),
        "{text}"
    );
}

#[test]
fn cedargate_config_stands_in_for_dash_c_and_dash_c_wins() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = repo().join("cedargate.yaml");
    let shipped = shipped.to_str().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "realm: a\nrealm: b\n").unwrap();
    let broken = broken.to_str().unwrap();

    // From an empty folder, without -c, the default `cedargate.yaml` does not exist there.
    let out = cedargate(&["validate"], &[], dir.path());
    assert!(!out.success());
    let out = cedargate(&["validate"], &[("CEDARGATE_CONFIG", shipped)], dir.path());
    assert!(out.success(), "{}", out.stderr);
    assert!(out.stdout.contains(&format!("{shipped}: ok")));
    let out = cedargate(
        &["validate", "-c", broken],
        &[("CEDARGATE_CONFIG", shipped)],
        dir.path(),
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("`realm` appears twice"));
}

#[test]
fn validate_format_json_is_one_document_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "realm: a\nrealm: b\n").unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/all.cedar"),
        "permit(principal, action, resource);\n",
    )
    .unwrap();
    let shipped = repo().join("cedargate.yaml");
    for (config, ok) in [(shipped.as_path(), true), (broken.as_path(), false)] {
        let out = cedargate(
            &[
                "validate",
                "--format",
                "json",
                "-c",
                config.to_str().unwrap(),
            ],
            &[],
            &repo(),
        );
        assert_eq!(out.success(), ok);
        assert!(out.stderr.is_empty(), "{}", out.stderr);
        let doc: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(doc["ok"], ok, "{doc}");
        if ok {
            assert_eq!(doc["errors"], 0);
            assert!(
                doc["summary"].as_str().unwrap().contains("policies"),
                "{doc}"
            );
        } else {
            assert_eq!(doc["errors"], 1);
            assert_eq!(doc["diagnostics"][0]["line"], 2);
            assert_eq!(doc["diagnostics"][0]["column"], 1);
            assert_eq!(doc["diagnostics"][0]["severity"], "error");
            assert!(
                doc["diagnostics"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains("`realm` appears twice")
            );
        }
    }
}

/// `serve`'s first log lines (until it listens) with `extra` arguments and `env`; then stops it.
fn serve_logs(extra: &[&str], env: &[(&str, &str)]) -> String {
    serve_logs_with(
        "listen: { grpc: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }\ndecision_log: { output: off }\n",
        extra,
        env,
    )
}

/// `serve`'s log lines until it listens, with `config` (ephemeral ports, please) beside a
/// permit-all policy folder; then stops it.
pub(crate) fn serve_logs_with(config: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(
        dir.path().join("policies/all.cedar"),
        "permit(principal, action, resource);\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("c.yaml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
    cmd.args(extra)
        .args(["serve", "-c", "c.yaml"])
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("cedargate.listening") {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                panic!("serve did not start:\n{seen}");
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    seen
}

#[test]
fn colour_only_when_asked_for_or_on_a_terminal_and_never_with_no_color() {
    const ESC: char = '\u{1b}';
    // stderr is a pipe here: `auto` means no colour.
    assert!(!serve_logs(&[], &[]).contains(ESC));
    assert!(serve_logs(&["--color", "always"], &[]).contains(ESC));
    assert!(!serve_logs(&["--color", "never"], &[]).contains(ESC));
    assert!(!serve_logs(&[], &[("NO_COLOR", "1")]).contains(ESC));
}

#[test]
fn check_format_json_is_one_document_on_stdout() {
    let out = cedargate(
        &[
            "check",
            "--format",
            "json",
            "-c",
            "cedargate.yaml",
            "--service",
            "orders",
            "--path",
            "/orders/1",
            "--issuer",
            "demo-idp",
            "--claim",
            "sub=alice",
            "--claim",
            "groups=[\"staff\"]",
        ],
        &[],
        &repo(),
    );
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["decision"], "allow", "{doc}");
    assert_eq!(doc["status"], 200);
    assert_eq!(doc["reason"], "allow");
    assert_eq!(doc["cedar"]["principal"]["id"], "alice", "{doc}");
    assert!(!doc["policies"].as_array().unwrap().is_empty(), "{doc}");
    assert_eq!(doc["expect"], Value::Null);

    let out = cedargate(
        &[
            "check",
            "--format",
            "json",
            "-c",
            "cedargate.yaml",
            "--path",
            "/orders/1",
        ],
        &[],
        &repo(),
    );
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["decision"], "deny", "{doc}");
    assert_eq!(doc["status"], 401, "anonymous: {doc}");
}

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    let subcommands = [
        "serve", "validate", "test", "check", "schema", "logs", "replay",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = cedargate(&["completions", shell], &[], &repo());
        assert!(out.success(), "{shell}");
        let script = out.stdout;
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} completion lacks {sub}");
        }
        assert!(script.contains("format"), "{shell}");
    }
    let out = cedargate(&["man"], &[], &repo());
    assert!(out.success());
    let page = out.stdout;
    assert!(page.contains(".TH cedargate 1"), "{page}");
    assert!(page.contains("Cedar SDK"), "the version line: {page}");
    for sub in subcommands {
        assert!(
            page.contains(&format!("cedargate\\-{sub}")),
            "man page lacks {sub}"
        );
    }
}

#[test]
fn test_format_json_is_one_document_on_stdout() {
    let out = cedargate(
        &[
            "test",
            "--format",
            "json",
            "--require-full-coverage",
            "-c",
            "cedargate.yaml",
        ],
        &[],
        &repo(),
    );
    assert!(out.success(), "{}", out.stdout);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["failed"], 0);
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(doc["passed"].as_u64().unwrap() as usize, cases.len());
    assert!(cases.len() > 10, "{doc}");
    assert!(
        cases
            .iter()
            .all(|c| c["ok"] == true && c["line"].as_u64().unwrap() > 0)
    );
    assert_eq!(doc["coverage"]["uncovered"], serde_json::json!([]));

    // A failing case: its mismatch in the document, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let case = dir.path().join("wrong.yaml");
    std::fs::write(
        &case,
        "version: 1\ncases:\n  - name: anonymous reads an order\n    request: { service: orders, path: /orders/1 }\n    expect: { decision: allow }\n",
    )
    .unwrap();
    let out = cedargate(
        &[
            "test",
            "--format",
            "json",
            "-c",
            "cedargate.yaml",
            case.to_str().unwrap(),
        ],
        &[],
        &repo(),
    );
    assert_eq!(out.code, 1);
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert_eq!(doc["failed"], 1, "{doc}");
    assert_eq!(doc["cases"][0]["name"], "anonymous reads an order");
    assert!(
        !doc["cases"][0]["mismatches"].as_array().unwrap().is_empty(),
        "{doc}"
    );
}

#[test]
fn a_broken_config_is_reported_on_stderr_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "realm: a\nrealm: b\n").unwrap();
    let broken = broken.to_str().unwrap();
    for args in [
        vec!["test", "-c", broken],
        vec!["check", "-c", broken, "--path", "/orders/1"],
        vec!["schema", "-c", broken],
        vec!["replay", "-c", broken, "--policies", "policies"],
    ] {
        let out = cedargate(&args, &[], &repo());
        assert!(!out.success(), "{args:?}");
        assert!(
            out.stdout.is_empty(),
            "{args:?} wrote to stdout:\n{}",
            out.stdout
        );
        assert!(
            out.stderr.contains("`realm` appears twice"),
            "{args:?}:\n{}",
            out.stderr
        );
    }
}
