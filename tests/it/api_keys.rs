//! API keys end to end: keys made by the real `cedargate apikey`, presented in `x-api-key`
//! through the real Envoy (the header allow-listed for ext_authz and removed before the
//! upstream) to the real `cedargate serve`, whose key file is edited while it runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{Proc, free_port, node, render_envoy, start_envoy};
use crate::support::repo;

/// Envoy + cedargate (stderr kept in a file) + the echo upstream, with `api_keys` on.
struct KeyStack {
    dir: tempfile::TempDir,
    keys: PathBuf,
    log: PathBuf,
    cedargate: Proc,
    _upstream: Proc,
    _envoy: Proc,
    listener: u16,
}

impl KeyStack {
    fn start() -> KeyStack {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("api-keys.json");
        std::fs::write(&keys, "{\"version\": 1, \"keys\": []}\n").unwrap();
        let mut up = node("upstream/upstream.mjs");
        up.args(["--port", "0", "--grpc-port", "0"]);
        let (upstream, line) = Proc::spawn("upstream", up, Some("upstream listening on "));
        let app_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();

        let (grpc, admin) = (free_port(), free_port());
        let config = std::fs::read_to_string(repo().join("cedargate.yaml"))
            .unwrap()
            .replace("127.0.0.1:9191", &format!("127.0.0.1:{grpc}"))
            .replace("127.0.0.1:9192", &format!("127.0.0.1:{admin}"))
            .replace(
                "policy_dir: policies",
                &format!("policy_dir: {}", repo().join("policies").display()),
            )
            .replace(
                "\nmtls:",
                &format!(
                    "\napi_keys:\n  header: x-api-key\n  file: {}\n\nmtls:",
                    keys.display()
                ),
            );
        let config_path = dir.path().join("cedargate.yaml");
        std::fs::write(&config_path, config).unwrap();
        // Operational logs to a file, so that the test can search every byte cedargate wrote.
        let log = dir.path().join("cedargate.stderr");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec \"$0\" serve -c \"$1\" 2>\"$2\""])
            .arg(env!("CARGO_BIN_EXE_cedargate"))
            .arg(&config_path)
            .arg(&log)
            .env("RUST_LOG", "info");
        let (cedargate, _) = Proc::spawn("cedargate", cmd, None);
        wait_until("cedargate healthy", || {
            std::net::TcpStream::connect(("127.0.0.1", admin)).is_ok()
                && std::fs::read_to_string(&log)
                    .is_ok_and(|l| l.contains("cedargate.listening") || l.contains("listening"))
        });

        let (listener, envoy_admin) = (free_port(), free_port());
        let envoy_config = render_envoy(
            "envoy/envoy.yaml",
            &[
                (10000, listener),
                (9901, envoy_admin),
                (9191, grpc),
                (8081, app_port),
                (8082, free_port()),
            ],
        );
        // The Envoy side of API keys: the header goes to cedargate, and not to the upstream.
        let envoy_config = envoy_config
            .replacen(
                "- exact: authorization        # bearer token to verify",
                "- exact: authorization        # bearer token to verify\n                - exact: x-api-key",
                1,
            )
            .replacen(
                "- match: { prefix: \"/orders\" }\n                route: { cluster: app }",
                "- match: { prefix: \"/orders\" }\n                route: { cluster: app }\n                request_headers_to_remove: [x-api-key]",
                1,
            );
        assert!(envoy_config.contains("- exact: x-api-key"));
        assert!(envoy_config.contains("request_headers_to_remove: [x-api-key]"));
        let envoy = start_envoy(dir.path(), &envoy_config, envoy_admin);
        KeyStack {
            dir,
            keys,
            log,
            cedargate,
            _upstream: upstream,
            _envoy: envoy,
            listener,
        }
    }

    /// `cedargate apikey ARGS --file <the key file>`; stdout.
    fn apikey(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .arg("apikey")
            .args(args)
            .arg("--file")
            .arg(&self.keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apikey {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    fn create(&self, principal: &str, extra: &[&str]) -> String {
        let mut args = vec!["create", "--principal", principal];
        args.extend_from_slice(extra);
        let key = self.apikey(&args);
        assert!(key.starts_with("cgk_"), "{key}");
        key
    }

    /// GET through Envoy with `headers`: status, body, and the decision record.
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value, Value) {
        let (status, body) = self.send(path, headers).await;
        let id = body["decision_id"]
            .as_str()
            .or_else(|| body["headers"]["x-cedargate-decision-id"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            !id.is_empty(),
            "an answer cedargate did not give: {status} {body}"
        );
        (status, body, self.record(&id))
    }

    fn record(&self, decision_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .cedargate
                .lines
                .lock()
                .unwrap()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|r| r["decision_id"] == decision_id);
            if let Some(r) = found {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "no decision record {decision_id}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// GET through Envoy with `headers`: status and body only.
    async fn send(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut req = client.get(format!("http://127.0.0.1:{}{path}", self.listener));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null);
        (status, body)
    }

    /// Waits until a key's Check comes out with `status` (the key file was reloaded). Answers
    /// on the way need no record: while a reload is under way Envoy may answer on its own.
    async fn wait_for(&self, key: &str, status: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.send("/orders", &[("x-api-key", key)]).await.0 == status {
                return;
            }
            assert!(Instant::now() < deadline, "the key never answered {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not ready in time");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The secret part: after `cgk_<12 hex>_` (the secret is base64url, so it may hold `_` too).
fn secret_of(key: &str) -> &str {
    key.get(17..).unwrap()
}

fn id_of(key: &str) -> &str {
    key.get(4..16).unwrap()
}

fn refused(status: u16, body: &Value, record: &Value, reason: &str, key: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(record["reason"], reason, "{record}");
    assert_eq!(record["status"], 401);
    if let Some(id) = key.strip_prefix("cgk_").and_then(|k| k.get(..12)) {
        assert!(
            record["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e.as_str().unwrap().contains(&format!("api key {id}"))),
            "the record names the key id: {record}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_through_envoy_rotation_revocation_and_reload() {
    let stack = KeyStack::start();
    let mut all_keys = Vec::new();

    // A key for a service the shipped policies know: allowed on GET /orders, mapped principal.
    let old = stack.create(
        r#"Service::"reporting-service""#,
        &["--note", "rotation: old"],
    );
    all_keys.push(old.clone());
    stack.wait_for(&old, 200).await;
    let (status, body, record) = stack.get("/orders", &[("x-api-key", &old)]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["headers"]["x-cedargate-principal"],
        "Service::\"reporting-service\""
    );
    assert!(
        body["headers"].get("x-api-key").is_none(),
        "Envoy removed the key before the upstream: {body}"
    );
    assert_eq!(record["principal"], "Service::\"reporting-service\"");
    assert_eq!(record["cedar"]["context"]["api_key"]["id"], id_of(&old));
    assert_eq!(record["cedar"]["context"]["authenticated"], true);
    // The same key where the policies don't allow it: 403, not 401.
    let (status, _, record) = stack.get("/payments/1", &[("x-api-key", &old)]).await;
    assert_eq!(
        (status, record["reason"].as_str()),
        (403, Some("no_permit"))
    );

    // Attributes and parents from the key file merge with the entity data: the parent
    // Group::"staff" is what the staff-read-orders policy allows.
    let kiosk = stack.create(
        r#"User::"kiosk""#,
        &["--parent", r#"Group::"staff""#, "--attr", "tenant=acme"],
    );
    all_keys.push(kiosk.clone());
    stack.wait_for(&kiosk, 200).await;
    let (_, _, record) = stack.get("/orders/7", &[("x-api-key", &kiosk)]).await;
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["policies"][0]["id"], "staff-read-orders", "{record}");
    let entity = &record["cedar"]["entities"][0];
    assert_eq!(entity["attrs"]["tenant"], "acme");
    assert_eq!(entity["parents"][0]["id"], "staff");

    // Rotation: a second key for the same principal; both work during the change.
    let new = stack.create(
        r#"Service::"reporting-service""#,
        &["--note", "rotation: new"],
    );
    all_keys.push(new.clone());
    stack.wait_for(&new, 200).await;
    assert_eq!(stack.get("/orders", &[("x-api-key", &old)]).await.0, 200);
    // Then the old one is removed: unknown from then on, the new one still works.
    stack.apikey(&["remove", "--id", id_of(&old)]);
    stack.wait_for(&old, 401).await;
    let (status, body, record) = stack.get("/orders", &[("x-api-key", &old)]).await;
    refused(status, &body, &record, "api_key_unknown", &old);
    assert_eq!(stack.get("/orders", &[("x-api-key", &new)]).await.0, 200);

    // Wrong secret for a known id, a malformed key, an expired key, a revoked key.
    let wrong = format!("cgk_{}_{}", id_of(&new), "A".repeat(43));
    let (status, body, record) = stack.get("/orders", &[("x-api-key", &wrong)]).await;
    refused(status, &body, &record, "api_key_invalid", &wrong);
    let (status, body, record) = stack.get("/orders", &[("x-api-key", "hunter2")]).await;
    refused(status, &body, &record, "api_key_malformed", "hunter2");
    let expired = stack.create(
        r#"Service::"reporting-service""#,
        &["--expires", "2020-01-01T00:00:00Z"],
    );
    all_keys.push(expired.clone());
    stack.wait_for(&expired, 401).await;
    let (status, body, record) = stack.get("/orders", &[("x-api-key", &expired)]).await;
    refused(status, &body, &record, "api_key_expired", &expired);
    stack.apikey(&["revoke", "--id", id_of(&kiosk)]);
    stack.wait_for(&kiosk, 401).await;
    let (status, body, record) = stack.get("/orders/7", &[("x-api-key", &kiosk)]).await;
    refused(status, &body, &record, "api_key_revoked", &kiosk);
    let listed = stack.apikey(&["list"]);
    assert!(
        listed.contains(&format!("{}  User::\"kiosk\"", id_of(&kiosk))),
        "{listed}"
    );
    assert!(listed.contains("revoked"), "{listed}");

    // Two credentials at once: refused, whichever is good.
    let (status, _, record) = stack
        .get(
            "/orders",
            &[("x-api-key", &new), ("authorization", "Bearer x.y.z")],
        )
        .await;
    assert_eq!(
        (status, record["reason"].as_str()),
        (401, Some("credentials_ambiguous"))
    );

    let file = std::fs::read_to_string(&stack.keys).unwrap();
    for key in &all_keys {
        assert!(
            !file.contains(secret_of(key)),
            "the key file holds hashes only"
        );
    }

    // A broken key file keeps the last good keys in force, and says so.
    std::fs::write(&stack.keys, "{\"version\": 1, \"keys\": [").unwrap();
    wait_until("load_failed logged", || {
        std::fs::read_to_string(&stack.log).is_ok_and(|l| l.contains("api_keys.load_failed"))
    });
    assert_eq!(stack.get("/orders", &[("x-api-key", &new)]).await.0, 200);

    // No key's secret in anything cedargate or Envoy wrote, and no key text either.
    let mut written = std::fs::read_to_string(&stack.log).unwrap();
    written.push_str(&stack.cedargate.lines.lock().unwrap().join("\n"));
    for entry in std::fs::read_dir(stack.dir.path()).unwrap() {
        let path: &Path = &entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            written.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
    }
    assert!(written.contains(id_of(&new)), "records name key ids");
    for key in &all_keys {
        assert!(
            !written.contains(secret_of(key)),
            "a key's secret was written"
        );
        assert!(!written.contains(key.as_str()));
    }
}
