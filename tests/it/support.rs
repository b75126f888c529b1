//! Test support: test keys and token minting, a JWKS/discovery server on a real socket, an
//! in-process cedargate on ephemeral ports, a tonic Check client, and decision-record reading.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress, address};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tonic::transport::Channel;

pub const AUDIENCE: &str = "https://api.cedargate.test";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/keys").join(name)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `header` + `claims` (both JSON) with a fixture key; the header is used verbatim, so tests
/// can put anything in it (`crit`, `jku`, `alg: none`, …).
pub fn sign_raw(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

pub fn key(name: &str) -> EncodingKey {
    let pem = std::fs::read(fixture(&format!("{name}.pem"))).unwrap();
    match name {
        "ec" => EncodingKey::from_ec_pem(&pem).unwrap(),
        "ed" => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    }
}

/// Standard claims for `sub` from `issuer`, valid for an hour.
pub fn claims(issuer: &str, sub: &str, groups: &[&str]) -> Value {
    json!({
        "iss": issuer,
        "sub": sub,
        "aud": AUDIENCE,
        "exp": now() + 3600,
        "iat": now(),
        "jti": format!("jti-{sub}-{}", now()),
        "client_id": "webapp",
        "scope": "orders:read orders:write",
        "groups": groups,
        "tenant": "acme",
    })
}

/// An ES256 token from the test key.
pub fn token(claims: &Value) -> String {
    sign_raw(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-ec"}),
        claims,
        &key("ec"),
        Algorithm::ES256,
    )
}

/// A discovery + JWKS server on a real socket that counts JWKS fetches.
pub struct FakeIdp {
    pub issuer: String,
    pub jwks_hits: Arc<AtomicU64>,
    pub jwks: Arc<std::sync::RwLock<String>>,
}

impl FakeIdp {
    pub async fn start() -> FakeIdp {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let jwks_hits = Arc::new(AtomicU64::new(0));
        let jwks = Arc::new(std::sync::RwLock::new(
            std::fs::read_to_string(fixture("jwks.json")).unwrap(),
        ));
        // A real OpenID configuration: OIDC Discovery §3's required fields (cedargate reads it
        // with openidconnect's provider metadata, which requires them).
        let discovery = json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/jwks"),
            "authorization_endpoint": format!("{issuer}/auth"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        })
        .to_string();
        let hits = jwks_hits.clone();
        let served = jwks.clone();
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let d = discovery.clone();
                    async move { ([("content-type", "application/json")], d) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let body = served.read().unwrap().clone();
                    async move { ([("content-type", "application/json")], body) }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeIdp {
            issuer,
            jwks_hits,
            jwks,
        }
    }
}

/// A cedargate running in-process with a decision log in a temp folder.
pub struct Gate {
    pub running: Option<cedargate_server::server::Running>,
    pub client: AuthorizationClient<Channel>,
    pub log_path: PathBuf,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The example config with the issuer, ports and log redirected for a test.
pub fn test_config_yaml(issuer: &str, log_path: &Path) -> String {
    let example = std::fs::read_to_string(repo().join("cedargate.yaml")).unwrap();
    let yaml = example
        .replace("http://127.0.0.1:9400", issuer)
        .replace("127.0.0.1:9191", "127.0.0.1:0")
        .replace("127.0.0.1:9192", "127.0.0.1:0")
        .replace(
            "algorithms: [ES256, RS256]",
            "algorithms: [ES256, RS256, EdDSA]",
        )
        .replace(
            "output: stdout ",
            &format!("output: file\n  path: {}\n ", log_path.display()),
        )
        .replace(
            "policy_dir: policies",
            &format!("policy_dir: {}", repo().join("policies").display()),
        );
    assert!(
        yaml.contains(issuer) && yaml.contains("output: file"),
        "test config rewrite failed"
    );
    yaml
}

impl Gate {
    pub async fn start(issuer: &str) -> Gate {
        Gate::start_with(issuer, |y| y).await
    }

    pub async fn start_with(issuer: &str, edit: impl FnOnce(String) -> String) -> Gate {
        Gate::start_config(|log_path| edit(test_config_yaml(issuer, log_path))).await
    }

    /// Starts with the config `yaml(decision-log path)` writes, in a fresh temp folder.
    pub async fn start_config(yaml: impl FnOnce(&Path) -> String) -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("decisions.jsonl");
        let yaml = yaml(&log_path);
        let config_path = dir.path().join("cedargate.yaml");
        std::fs::write(&config_path, &yaml).unwrap();
        let config = cedargate_core::config::Config::load(&config_path).unwrap();
        let running = cedargate_server::server::start(config).await.unwrap();
        let client = AuthorizationClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .unwrap();
        let admin = running.admin_addr;
        let gate = Gate {
            running: Some(running),
            client,
            log_path,
            admin,
            _dir: dir,
        };
        gate.wait_ready().await;
        gate
    }

    /// Waits until every issuer has keys (readiness), with a deadline.
    pub async fn wait_ready(&self) {
        let url = format!("http://{}/readyz", self.admin);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "cedargate not ready in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn check(&mut self, req: CheckRequest) -> Answer {
        let response = self.client.check(req).await.unwrap().into_inner();
        Answer::from(response)
    }

    /// The decision record with this id, waiting for the writer (deadline 5 s).
    pub async fn record(&self, decision_id: &str) -> Value {
        record_in(&self.log_path, decision_id).await
    }

    pub fn log_bytes(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

/// The decision record with this id in the log file `log`, waiting for the writer (deadline
/// 5 s).
pub async fn record_in(log: &Path, decision_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Complete lines only: the writer may be in the middle of the last one. A complete line
        // that isn't a record is a real failure.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in complete.lines() {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: not a record ({e}): {line}", log.display()));
            if v["decision_id"] == decision_id {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no record for {decision_id}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A CheckResponse, flattened.
#[derive(Debug)]
pub struct Answer {
    pub grpc_code: i32,
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn decision_id(&self) -> &str {
        &self.headers["x-cedargate-decision-id"]
    }
}

impl From<CheckResponse> for Answer {
    fn from(r: CheckResponse) -> Answer {
        let grpc_code = r.status.map(|s| s.code).unwrap_or(-1);
        let (status, headers, body) = match r.http_response {
            Some(HttpResponse::OkResponse(ok)) => (200, ok.headers, String::new()),
            Some(HttpResponse::DeniedResponse(d)) => (
                d.status.map(|s| s.code as u16).unwrap_or(0),
                d.headers,
                d.body,
            ),
            _ => (0, Vec::new(), String::new()),
        };
        let headers = headers
            .into_iter()
            .filter_map(|h| h.header)
            .map(|h| (h.key, h.value))
            .collect();
        Answer {
            grpc_code,
            status,
            headers,
            body,
        }
    }
}

/// An Envoy-shaped CheckRequest.
pub fn check_request(
    service: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    let mut h: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    h.insert(":method".into(), method.into());
    h.insert(":path".into(), path.into());
    h.insert(":authority".into(), "api.example.test".into());
    h.entry("x-request-id".into())
        .or_insert_with(|| format!("req-{}", uuid_like()));
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(Peer {
                address: Some(Address {
                    address: Some(address::Address::SocketAddress(SocketAddress {
                        address: "127.0.0.1".into(),
                        ..SocketAddress::default()
                    })),
                }),
                ..Peer::default()
            }),
            request: Some(Request {
                http: Some(HttpRequest {
                    id: "1".into(),
                    method: method.into(),
                    path: path.into(),
                    host: "api.example.test".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: h,
                    ..HttpRequest::default()
                }),
                ..Request::default()
            }),
            context_extensions: [("service".to_string(), service.to_string())]
                .into_iter()
                .collect(),
            ..AttributeContext::default()
        }),
    }
}

fn uuid_like() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// One part of a JWT (0: header, 1: payload), decoded.
pub fn jwt_part(token: &str, index: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(index).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An HTTP/1.1 body sent with `Transfer-Encoding: chunked`, its chunks joined.
pub fn dechunk(body: &str) -> String {
    let mut rest = body;
    let mut decoded = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        decoded.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    decoded
}

/// `Authorization` value for a user token (groups and tenant claims) from `idp`.
pub fn user(idp: &FakeIdp, sub: &str, groups: &[&str], tenant: &str) -> String {
    let mut c = claims(&idp.issuer, sub, groups);
    c["tenant"] = json!(tenant);
    bearer(&token(&c))
}

/// `Authorization` value for a client_credentials-style token (`sub` == `client_id`).
pub fn service(idp: &FakeIdp, client: &str, scope: &str) -> String {
    bearer(&token(&json!({
        "iss": idp.issuer, "sub": client, "client_id": client, "aud": AUDIENCE,
        "exp": now() + 600, "iat": now(), "jti": format!("cc-{client}"), "scope": scope,
    })))
}

/// One GET through Envoy (HTTP/1.1, headers sent as given, repeats included): the status and the
/// decision id, from the upstream's echo of `x-cedargate-decision-id` on an allow and from the
/// JSON body of a deny. A response with neither (Envoy answering by itself) panics.
pub async fn get_decided(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client = reqwest::Client::builder()
        .http1_only()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let id = body["headers"]["x-cedargate-decision-id"]
        .as_str()
        .or(body["decision_id"].as_str())
        .unwrap_or_else(|| panic!("{status} without a decision id"))
        .to_string();
    (status, id)
}

/// What one run of the real `cedargate` binary produced.
pub struct CliRun {
    /// Exit code; -1 when it was killed by a signal.
    pub code: i32,
    /// Standard output, as text.
    pub stdout: String,
    /// Standard error, as text.
    pub stderr: String,
}

impl CliRun {
    /// True when it exited with 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Standard output followed by standard error.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// One run of the real `cedargate` binary with `args`, to be set up and then [`Cli::run`]: the
/// one place the command-line tests start it and capture what it said. By default it runs in
/// the test's folder, with no stdin, `CEDARGATE_CONFIG` removed (the caller's environment never
/// picks a config) and a 120 s deadline.
pub fn cli(args: &[&str]) -> Cli {
    Cli {
        args: args.iter().map(|a| (*a).to_string()).collect(),
        dir: None,
        env: vec![("CEDARGATE_CONFIG".to_string(), None)],
        stdin: None,
        deadline: Duration::from_secs(120),
    }
}

/// See [`cli`].
pub struct Cli {
    args: Vec<String>,
    dir: Option<PathBuf>,
    /// Set (`Some`) or removed (`None`), in order.
    env: Vec<(String, Option<String>)>,
    stdin: Option<String>,
    deadline: Duration,
}

impl Cli {
    /// Runs in `dir`.
    pub fn dir(mut self, dir: &Path) -> Cli {
        self.dir = Some(dir.to_path_buf());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Cli {
        self.env.push((key.to_string(), Some(value.to_string())));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Cli {
        self.env.push((key.to_string(), None));
        self
    }

    /// Feeds `text` on stdin.
    pub fn stdin(mut self, text: &str) -> Cli {
        self.stdin = Some(text.to_string());
        self
    }

    /// Fails the test if the binary has not exited after `deadline` (e.g. a `serve` that started
    /// instead of refusing its input).
    pub fn deadline(mut self, deadline: Duration) -> Cli {
        self.deadline = deadline;
        self
    }

    /// Runs it to the end and returns what it said; fails the test if it panicked or outlived
    /// the deadline. Output is read while it runs, so a chatty run can't block on a full pipe.
    pub fn run(self) -> CliRun {
        use std::io::{Read as _, Write as _};
        use std::process::{Command, Stdio};
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        let mut child = cmd.spawn().expect("start cedargate");
        let drain = |mut from: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                from.read_to_end(&mut bytes).unwrap();
                String::from_utf8_lossy(&bytes).into_owned()
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        if let Some(text) = &self.stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        let args = &self.args;
        let until = Instant::now() + self.deadline;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!(
                    "cedargate {args:?} did not exit within {:?}:\n{}",
                    self.deadline,
                    stderr.join().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let run = CliRun {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        assert!(
            !run.stderr.contains("panicked"),
            "cedargate {args:?} panicked:\n{}",
            run.stderr
        );
        run
    }
}
