//! Signed policy bundles (`policy_bundle`) through the real stack: bundles made with the real
//! `cedargate bundle keygen / build / sign`, served by a real HTTP server (a thread with a
//! TcpListener speaking HTTP/1.1 with ETag and If-None-Match) to the real `cedargate serve`
//! behind the real Envoy. What a client sees: the bundle's policies decide; an update applies
//! within the poll interval; a 304 costs no reload; tampered, unsigned, truncated and
//! wrongly signed bundles are refused with their reason while the last good set keeps
//! answering; a restart with the bundle server down enforces the cached last good bundle.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{Proc, Stack};
use crate::support::repo;

/// How often cedargate polls in this test.
const POLL_SECONDS: u64 = 1;
/// Deadline for anything that should happen within a poll interval (with slack for 2 busy cores).
const WITHIN: Duration = Duration::from_secs(15);

/// What the bundle server serves and has answered.
#[derive(Default)]
pub struct Served {
    bundle: Vec<u8>,
    /// `None`: the signature answers 404.
    signature: Option<Vec<u8>>,
    /// Answers by (path, status).
    answers: BTreeMap<(String, u16), u64>,
}

/// A real HTTP/1.1 server on a loopback port, one request per connection.
pub struct BundleServer {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BundleServer {
    pub fn start(port: u16, served: Arc<Mutex<Served>>) -> BundleServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, served2) = (stop.clone(), served.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(conn) = conn {
                    answer(conn, &served2);
                }
            }
        });
        BundleServer {
            addr,
            served,
            stop,
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/policies.tar.gz", self.addr)
    }

    pub fn publish(&self, bundle: Vec<u8>, signature: Option<Vec<u8>>) {
        let mut served = self.served.lock().unwrap();
        served.bundle = bundle;
        served.signature = signature;
    }

    fn answers(&self, path: &str, status: u16) -> u64 {
        let served = self.served.lock().unwrap();
        served
            .answers
            .get(&(path.to_string(), status))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for BundleServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(mut conn: TcpStream, served: &Mutex<Served>) {
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let if_none_match = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("if-none-match")
            .then(|| v.trim().to_string())
    });
    let mut served = served.lock().unwrap();
    let (status, body, etag) = match path.as_str() {
        "/policies.tar.gz" => {
            let etag = format!("\"{}\"", &sha256(&served.bundle)[..16]);
            if if_none_match.as_deref() == Some(etag.as_str()) {
                (304, Vec::new(), Some(etag))
            } else {
                (200, served.bundle.clone(), Some(etag))
            }
        }
        "/policies.tar.gz.sig" => match &served.signature {
            Some(s) => (200, s.clone(), None),
            None => (404, b"not found".to_vec(), None),
        },
        _ => (404, b"not found".to_vec(), None),
    };
    *served.answers.entry((path, status)).or_default() += 1;
    drop(served);
    let reason = match status {
        200 => "OK",
        304 => "Not Modified",
        _ => "Not Found",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    if let Some(etag) = etag {
        out.push_str(&format!("ETag: {etag}\r\n"));
    }
    if status != 304 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let _ = conn.write_all(out.as_bytes());
    let _ = conn.write_all(&body);
}

pub fn sha256(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `cedargate ARGS`; asserts success; returns stdout.
fn cedargate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cedargate {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The example policies, edited by `edit(folder)`, built as revision `revision` and signed with
/// `key` (when given): (bundle bytes, signature bytes).
pub fn make_bundle(
    dir: &Path,
    revision: &str,
    key: Option<&Path>,
    edit: impl FnOnce(&Path),
) -> (Vec<u8>, Vec<u8>) {
    let folder = dir.join(format!("policies-{revision}"));
    copy_dir(&repo().join("policies"), &folder);
    edit(&folder);
    let file = dir.join(format!("{revision}.tar.gz"));
    let file_s = file.to_str().unwrap();
    let built = cedargate(&[
        "bundle",
        "build",
        "--policies",
        folder.to_str().unwrap(),
        "-o",
        file_s,
        "--revision",
        revision,
    ]);
    assert!(built.contains(&format!("revision {revision}")), "{built}");
    let signature = match key {
        Some(key) => {
            cedargate(&["bundle", "sign", "--key", key.to_str().unwrap(), file_s]);
            std::fs::read(format!("{file_s}.sig")).unwrap()
        }
        None => Vec::new(),
    };
    (std::fs::read(&file).unwrap(), signature)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

pub fn keygen(dir: &Path, name: &str, algorithm: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    let out = cedargate(&[
        "bundle",
        "keygen",
        "--algorithm",
        algorithm,
        "--out",
        prefix.to_str().unwrap(),
    ]);
    assert!(out.starts_with("key "), "{out}");
    (
        dir.join(format!("{name}.key.pem")),
        dir.join(format!("{name}.pub.pem")),
    )
}

async fn status_of(stack: &Stack, path: &str) -> u16 {
    reqwest::Client::new()
        .get(stack.url(path))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn admin(admin_port: u16, path: &str) -> Option<String> {
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{admin_port}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    r.text().await.ok()
}

async fn policy(admin_port: u16) -> Value {
    serde_json::from_str(&admin(admin_port, "/policy").await.unwrap()).unwrap()
}

/// Waits (deadline [`WITHIN`]) until `/policy` satisfies `done`; returns it and the time taken.
async fn wait_policy(
    admin_port: u16,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let p = policy(admin_port).await;
        if done(&p) {
            return (p, started.elapsed());
        }
        assert!(
            started.elapsed() < WITHIN,
            "{what}: /policy is still\n{p:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
}

/// Starts `cedargate serve -c config` with its stderr appended to `log`; waits for `/readyz`.
async fn serve(config: &Path, log: &Path, admin_port: u16) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec '{}' serve -c '{}' 2>>'{}'",
        env!("CARGO_BIN_EXE_cedargate"),
        config.display(),
        log.display()
    ));
    cmd.env("RUST_LOG", "info");
    let (proc, _) = Proc::spawn("cedargate", cmd, None);
    let started = Instant::now();
    let ready = || async {
        reqwest::get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
    };
    while !ready().await {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cedargate did not become ready:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_bundles_through_envoy() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (key_a, pub_a) = keygen(dir, "a", "ed25519");
    let (key_b, pub_b) = keygen(dir, "b", "es256");
    let (key_untrusted, _) = keygen(dir, "untrusted", "ed25519");
    // r1: the example policies (the order status page is public); r2: without that permit.
    let (r1, r1_sig) = make_bundle(dir, "r1", Some(&key_a), |_| {});
    let no_public = |f: &Path| std::fs::remove_file(f.join("public.cedar")).unwrap();
    let (r2, r2_sig) = make_bundle(dir, "r2", Some(&key_b), no_public);

    let served = Arc::new(Mutex::new(Served::default()));
    let server = BundleServer::start(0, served.clone());
    server.publish(r1.clone(), Some(r1_sig));
    let cache = dir.join("cache");
    let bundle_yaml = format!(
        "policy_bundle:\n  url: {}\n  public_key_files: [{}, {}]\n  cache_dir: {}\n  poll_interval_seconds: {POLL_SECONDS}\n",
        server.url(),
        pub_a.display(),
        pub_b.display(),
        cache.display()
    );
    // The stack starts on the example folder; its cedargate is then replaced by one on the
    // bundle, whose stderr (operational logs) goes to a file the test reads.
    let mut stack = Stack::start();
    assert!(
        stack.cedargate.terminate(),
        "cedargate did not exit cleanly"
    );
    let stack_config = std::fs::read_to_string(stack.dir.path().join("cedargate.yaml")).unwrap();
    let line = stack_config
        .lines()
        .find(|l| l.starts_with("policy_dir:"))
        .unwrap()
        .to_string();
    let config = dir.join("cedargate.yaml");
    std::fs::write(
        &config,
        stack_config.replacen(&format!("\n{line}\n"), &format!("\n{bundle_yaml}"), 1),
    )
    .unwrap();
    let log = dir.join("cedargate.log");
    let port = stack.cedargate_admin;
    stack.cedargate = serve(&config, &log, port).await;

    // r1 is enforced: the public permit answers 200.
    assert_eq!(status_of(&stack, "/orders/status").await, 200);
    let p = policy(port).await;
    assert_eq!(p["bundle"]["enforced"]["revision"], "r1", "{p:#}");
    assert_eq!(p["bundle"]["enforced"]["digest"], sha256(&r1));
    assert_eq!(p["bundle"]["enforced"]["source"], "server");

    // An update signed with the second trusted key (a rotation) applies within the poll
    // interval; r2 has no public permit, so the same request is now denied.
    server.publish(r2.clone(), Some(r2_sig.clone()));
    let (p, took) = wait_policy(port, "r2 applied", |p| {
        p["bundle"]["enforced"]["revision"] == "r2"
    })
    .await;
    println!("bundle update applied {took:?} after publishing (poll interval {POLL_SECONDS} s)");
    assert!(
        took < Duration::from_secs(POLL_SECONDS * 3),
        "took {took:?}"
    );
    assert_eq!(p["bundle"]["enforced"]["digest"], sha256(&r2));
    assert_eq!(status_of(&stack, "/orders/status").await, 401);
    let metrics = admin(port, "/metrics").await.unwrap();
    assert_eq!(
        metric(
            &metrics,
            &format!(
                "cedargate_policy_bundle_info{{revision=\"r2\",digest=\"{}\"}} ",
                sha256(&r2)
            )
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metric(
            &metrics,
            "cedargate_policy_bundle_fetches_total{result=\"updated\"} "
        )
        .unwrap()
            >= 1.0
    );

    // Not modified: the server answers 304 to every poll; no reload happens.
    let reloads = p["reload"]["ok"].as_u64().unwrap();
    let not_modified = server.answers("/policies.tar.gz", 304);
    let deadline = Instant::now() + WITHIN;
    while server.answers("/policies.tar.gz", 304) < not_modified + 3 {
        assert!(Instant::now() < deadline, "no 304 answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = policy(port).await;
    assert_eq!(
        p["reload"]["ok"].as_u64().unwrap(),
        reloads,
        "a 304 reloaded: {p:#}"
    );
    assert_eq!(p["bundle"]["last_poll"][1], "not_modified");
    let metrics = admin(port, "/metrics").await.unwrap();
    assert!(
        metric(
            &metrics,
            "cedargate_policy_bundle_fetches_total{result=\"not_modified\"} "
        )
        .unwrap()
            >= 3.0
    );
    assert!(
        metric(
            &metrics,
            "cedargate_policy_bundle_last_success_timestamp_seconds "
        )
        .unwrap()
            > 1.7e9
    );

    // Restart with the bundle server down: the cached last good bundle (r2) is enforced.
    assert!(
        stack.cedargate.terminate(),
        "cedargate did not exit cleanly"
    );
    let server_port = server.addr.port();
    drop(server);
    stack.cedargate = serve(&config, &log, port).await;
    let p = policy(port).await;
    assert_eq!(p["bundle"]["enforced"]["revision"], "r2", "{p:#}");
    assert_eq!(p["bundle"]["enforced"]["source"], "cache");
    assert_eq!(status_of(&stack, "/orders/status").await, 401);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("policy_bundle.fetch_failed") && text.contains("could not connect"),
        "{text}"
    );

    // The server is back with bad bundles, one after another: each is refused with its
    // reason (in /policy and the log), and r2 keeps answering.
    let server = BundleServer::start(server_port, served.clone());
    let (r3, r3_sig) = make_bundle(dir, "r3", Some(&key_a), |_| {});
    let untrusted_sig = {
        let file = dir.join("r3.tar.gz");
        cedargate(&[
            "bundle",
            "sign",
            "--key",
            key_untrusted.to_str().unwrap(),
            file.to_str().unwrap(),
            "-o",
            dir.join("r3.untrusted.sig").to_str().unwrap(),
        ]);
        std::fs::read(dir.join("r3.untrusted.sig")).unwrap()
    };
    let mut tampered = r3.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    let truncated = r3[..r3.len() - 100].to_vec();
    let cases = [
        (
            "tampered",
            tampered,
            Some(r3_sig.clone()),
            "the bundle was altered or truncated",
        ),
        ("unsigned", r3.clone(), None, "the bundle is not signed"),
        (
            "truncated",
            truncated,
            Some(r3_sig.clone()),
            "the bundle was altered or truncated",
        ),
        (
            "wrong key",
            r3.clone(),
            Some(untrusted_sig),
            "which is not a trusted key",
        ),
    ];
    for (name, bundle, signature, reason) in cases {
        let before = std::fs::read_to_string(&log)
            .unwrap()
            .matches(reason)
            .count();
        server.publish(bundle, signature);
        let (p, _) = wait_policy(port, name, |p| {
            p["bundle"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains(reason))
        })
        .await;
        assert_eq!(p["bundle"]["enforced"]["revision"], "r2", "{name}: {p:#}");
        assert_eq!(p["bundle"]["last_poll"][1], "rejected", "{name}");
        assert_eq!(
            status_of(&stack, "/orders/status").await,
            401,
            "{name}: the old policies answer"
        );
        let deadline = Instant::now() + WITHIN;
        loop {
            let text = std::fs::read_to_string(&log).unwrap();
            if text.matches(reason).count() > before && text.contains("policy_bundle.rejected") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: no refusal in the log:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let metrics = admin(port, "/metrics").await.unwrap();
    assert!(
        metric(
            &metrics,
            "cedargate_policy_bundle_fetches_total{result=\"rejected\"} "
        )
        .unwrap()
            >= 4.0
    );

    // The good r3 (public permit back) applies: the refusals left nothing behind.
    server.publish(r3.clone(), Some(r3_sig));
    wait_policy(port, "r3 applied", |p| {
        p["bundle"]["enforced"]["revision"] == "r3"
    })
    .await;
    assert_eq!(status_of(&stack, "/orders/status").await, 200);
    let unpacked: Vec<_> = std::fs::read_dir(cache.join("unpacked")).unwrap().collect();
    assert_eq!(
        unpacked.len(),
        1,
        "old or refused bundles left in the cache"
    );
    assert_eq!(std::fs::read(cache.join("bundle.tar.gz")).unwrap(), r3);
}

#[test]
fn bundle_cli_refuses_what_serve_would() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (key, public) = keygen(dir, "k", "ed25519");
    let (_, other) = keygen(dir, "other", "es256");
    let (bundle, _) = make_bundle(dir, "v1", Some(&key), |f| {
        std::fs::write(f.join("README.md"), "not packed").unwrap();
    });
    let file = dir.join("v1.tar.gz");
    let verify = |keys: &[&Path]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cmd.args(["bundle", "verify"]);
        for k in keys {
            cmd.arg("--key").arg(k);
        }
        cmd.arg(&file).output().unwrap()
    };
    let ok = verify(&[&public]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(
        stdout.contains("revision v1") && stdout.contains(&sha256(&bundle)),
        "{stdout}"
    );
    let wrong = verify(&[&other]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("which is not a trusted key"));
    std::fs::write(&file, &bundle[..bundle.len() / 2]).unwrap();
    let cut = verify(&[&public, &other]);
    assert_eq!(cut.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cut.stderr).contains("altered or truncated"));
    // A policy folder that doesn't load is never packed; a key is never overwritten.
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("bad.cedar"), "permit(").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["bundle", "build", "--policies"])
        .arg(&broken)
        .args(["-o"])
        .arg(dir.join("x.tar.gz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.cedar"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!dir.join("x.tar.gz").exists());
    let again = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["bundle", "keygen", "--out"])
        .arg(dir.join("k"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}
