//! `cedargate health` against the real binary and a real `cedargate serve` (issue 16): exit 0 with
//! one line when ready, exit 1 with one line saying why not (keys missing, shutting down,
//! nothing listening), `--live` for liveness; and liveness that answers while a large policy
//! set is still loading, when readiness says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::stack::{Proc, free_port};
use crate::support::{CliRun, FakeIdp, cli, repo};

/// The example config with `issuer`, ports (admin on 0.0.0.0, which `health` must ask on
/// loopback) and the drain period set; records off.
fn config(dir: &Path, issuer: &str, admin: u16, drain_seconds: u64) -> PathBuf {
    let yaml = std::fs::read_to_string(repo().join("cedargate.yaml"))
        .unwrap()
        .replace("http://127.0.0.1:9400", issuer)
        .replace("127.0.0.1:9191", &format!("127.0.0.1:{}", free_port()))
        .replace(
            "  admin: 127.0.0.1:9192",
            &format!("  drain_seconds: {drain_seconds}\n  admin: 0.0.0.0:{admin}"),
        )
        .replace(
            "policy_dir: policies",
            &format!("policy_dir: {}", repo().join("policies").display()),
        )
        .replace("output: stdout", "output: off");
    assert!(yaml.contains(&format!("0.0.0.0:{admin}")));
    let path = dir.join("cedargate.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn serve(config: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
    cmd.args(["serve", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn");
    Proc::spawn("cedargate", cmd, None).0
}

/// `cedargate health ARGS`, with `CEDARGATE_CONFIG` set to `config` if given (unset otherwise).
fn health(args: &[&str], config: Option<&Path>) -> CliRun {
    let all: Vec<&str> = ["health"].into_iter().chain(args.iter().copied()).collect();
    match config {
        Some(config) => cli(&all).env("CEDARGATE_CONFIG", config.to_str().unwrap()),
        None => cli(&all),
    }
    .run()
}

/// Exit code and the one line on stdout (0) or stderr (1); anything else fails the test.
fn verdict(out: &CliRun) -> (i32, String) {
    let code = out.code;
    let (said, other) = if code == 0 {
        (&out.stdout, &out.stderr)
    } else {
        (&out.stderr, &out.stdout)
    };
    assert_eq!(said.lines().count(), 1, "one line, got {said:?}");
    assert!(
        !other.contains("http"),
        "the verdict goes to one stream only"
    );
    (code, said.trim().to_string())
}

/// Polls `health` (deadline 15 s) until `done` holds for its verdict; returns that verdict.
fn poll(args: &[&str], config: Option<&Path>, done: impl Fn(i32, &str) -> bool) -> (i32, String) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, line) = verdict(&health(args, config));
        if done(code, &line) {
            return (code, line);
        }
        assert!(Instant::now() < until, "last verdict: {code} {line}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn health_says_down_in_one_line() {
    let url = format!("http://127.0.0.1:{}/readyz", free_port());
    let (code, line) = verdict(&health(&["--url", &url], None));
    assert_eq!(code, 1);
    assert!(
        line.contains(&url) && line.contains("cannot connect"),
        "{line}"
    );
    // A config that can't be read is an error too, naming the file.
    let out = health(&["-c", "/nonexistent/cedargate.yaml"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("/nonexistent/cedargate.yaml"));
}

#[test]
fn health_is_not_ready_without_keys_yet_alive() {
    let dir = tempfile::tempdir().unwrap();
    // An issuer nobody answers for: keys never arrive.
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let admin = free_port();
    let config = config(dir.path(), &issuer, admin, 0);
    let _server = serve(&config);
    // The config from CEDARGATE_CONFIG, as in the image's HEALTHCHECK.
    let (code, line) = poll(&[], Some(&config), |_, line| line.contains("has no keys"));
    assert_eq!(code, 1);
    assert!(
        line.contains(&format!("http://127.0.0.1:{admin}/readyz"))
            && line.contains("503")
            && line.contains("issuer demo-idp has no keys"),
        "{line}"
    );
    let (code, line) = verdict(&health(&["--live", "-c", config.to_str().unwrap()], None));
    assert_eq!(code, 0);
    assert_eq!(line, format!("http://127.0.0.1:{admin}/healthz: 200 ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_ready_then_shutting_down_while_draining() {
    let idp = FakeIdp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let admin = free_port();
    let config = config(dir.path(), &idp.issuer, admin, 3);
    let server = serve(&config);
    let c = config.clone();
    let (code, line) = tokio::task::spawn_blocking(move || {
        poll(&["-c", c.to_str().unwrap()], None, |code, _| code == 0)
    })
    .await
    .unwrap();
    assert_eq!(code, 0);
    assert!(
        line.starts_with(&format!(
            "http://127.0.0.1:{admin}/readyz: 200 ready (policy "
        )),
        "{line}"
    );

    // SIGTERM: not ready at once (shutting down), still alive, and the process keeps serving
    // for the drain period.
    let pid = crate::fleet::pid_of(&config).unwrap();
    let term_at = Instant::now();
    server.signal("TERM");
    let c = config.clone();
    let (_, line) = tokio::task::spawn_blocking(move || {
        poll(&["-c", c.to_str().unwrap()], None, |code, _| code == 1)
    })
    .await
    .unwrap();
    assert!(line.contains("not ready: shutting down"), "{line}");
    assert!(
        term_at.elapsed() < Duration::from_secs(3),
        "readiness must turn at once"
    );
    let (code_live, _) = verdict(&health(&["--live", "-c", config.to_str().unwrap()], None));
    assert_eq!(code_live, 0, "alive while draining");
    tokio::task::block_in_place(|| crate::fleet::wait_exit(pid));
    assert!(
        term_at.elapsed() >= Duration::from_secs(3),
        "exited before drain_seconds: {:?}",
        term_at.elapsed()
    );
}

/// A policy set large enough to take a while to load: the example folder plus generated
/// per-user policies.
fn large_policy_folder(dir: &Path, policies: usize) -> PathBuf {
    let folder = dir.join("policies");
    std::fs::create_dir(&folder).unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, folder.join(path.file_name().unwrap())).unwrap();
        }
    }
    let generated: String = (0..policies)
        .map(|i| {
            format!(
                "@id(\"generated-{i}\")\npermit (\n  principal == User::\"user-{i}\",\n  action in [Action::\"GET /orders\", Action::\"GET /orders/{{id}}\"],\n  resource == Service::\"orders\"\n) when {{ context.request.method == \"GET\" }};\n\n"
            )
        })
        .collect();
    std::fs::write(folder.join("generated.cedar"), generated).unwrap();
    folder
}

#[test]
fn liveness_answers_while_policies_load() {
    let dir = tempfile::tempdir().unwrap();
    let folder = large_policy_folder(dir.path(), 300);
    let admin = free_port();
    let issuer = format!("http://127.0.0.1:{}", free_port());
    let config = config(dir.path(), &issuer, admin, 0);
    let yaml = std::fs::read_to_string(&config).unwrap().replace(
        &format!("policy_dir: {}", repo().join("policies").display()),
        &format!("policy_dir: {}", folder.display()),
    );
    std::fs::write(&config, yaml).unwrap();
    let started = Instant::now();
    let _server = serve(&config);
    let live = format!("http://127.0.0.1:{admin}/healthz");
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    // Seen: liveness 200 while readiness says the policies are loading.
    let until = started + Duration::from_secs(30);
    let mut seen_loading = None;
    while seen_loading.is_none() {
        assert!(
            Instant::now() < until,
            "never saw /healthz 200 with /readyz `policies loading`"
        );
        let r = get(&ready);
        if r.0 == 503 && r.1.contains("policies loading") && get(&live).0 == 200 {
            seen_loading = Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // The CLI says the same in its line.
    let (code, line) = verdict(&health(&["--url", &ready], None));
    assert_eq!(code, 1);
    // Loading may just have finished; then the issuer's missing keys are the reason.
    assert!(
        line.contains("policies loading") || line.contains("has no keys"),
        "{line}"
    );
    // Once loaded, the reason is the issuer (no IdP here), and /policy shows the set.
    let until = Instant::now() + Duration::from_secs(60);
    while get(&format!("http://127.0.0.1:{admin}/policy")).0 != 200 {
        assert!(Instant::now() < until, "policies never loaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let loaded_after = started.elapsed();
    let r = get(&ready);
    assert_eq!(r.0, 503);
    assert!(
        r.1.contains("has no keys") && !r.1.contains("loading"),
        "{}",
        r.1
    );
    eprintln!(
        "health: /healthz 200 with /readyz `policies loading` {:.2} s after start; 300 extra \
         policies loaded after {:.2} s (debug build)",
        seen_loading.unwrap().as_secs_f64(),
        loaded_after.as_secs_f64()
    );
}

/// One blocking HTTP/1.1 GET: (status, body); (0, "") when nothing answers.
fn get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap();
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    if write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return (0, String::new());
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
