//! End to end through the real Envoy with tokens from the real oidc-provider: what users get.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::Value;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::stack::{Stack, envoy_bin};
use crate::support::{bearer, jwt_part, record_in, repo};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(
    stack: &Stack,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().get(stack.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let h = r.headers().clone();
    (status, h, r.text().await.unwrap())
}

/// A WebSocket upgrade through Envoy; on 101 sends one masked text frame and returns the echo.
fn websocket(stack: &Stack, path: &str, token: &str) -> (u16, Option<String>) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", stack.listener)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status != 101 {
        return (status, None);
    }
    let payload = b"hello through envoy";
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut header = [0u8; 2];
    s.read_exact(&mut header).unwrap();
    let mut body = vec![0u8; (header[1] & 0x7f) as usize];
    s.read_exact(&mut body).unwrap();
    (status, Some(String::from_utf8(body).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_with_real_idp_end_to_end() {
    let stack = Stack::start();
    let alice = stack.idp.user("alice");
    let bob = stack.idp.user("bob");
    let mallory = stack.idp.user("mallory");

    // Allowed user: 200; the upstream sees cedargate's identity headers, and a client-sent
    // x-cedargate-principal never reaches it.
    let (status, _, body) = get(
        &stack,
        "/orders/1",
        &[
            ("authorization", &bearer(&alice)),
            ("x-cedargate-principal", "User::\"root\""),
            ("cookie", "session=e2e-secret-cookie"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["x-cedargate-principal"], "User::\"alice\"");
    let decision_id = echo["headers"]["x-cedargate-decision-id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = stack.record(&decision_id);
    assert_eq!(record["decision"], "allow");
    assert_eq!(record["principal"], "User::\"alice\"");
    assert_eq!(record["token"]["iss"], stack.idp.issuer);

    // Denied by policy: 403 with the JSON body.
    let (status, headers, body) =
        get(&stack, "/orders/1", &[("authorization", &bearer(&mallory))]).await;
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "application/json");
    let denied: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denied["error"], "forbidden");
    assert_eq!(
        stack.record(denied["decision_id"].as_str().unwrap())["reason"],
        "no_permit"
    );

    // No token on a protected route: 401 with a challenge.
    let (status, headers, _) = get(&stack, "/orders/1", &[]).await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Bearer realm=\"cedargate\"");

    // Malformed, foreign-issuer, wrong-audience and expired tokens: 401 invalid_token.
    let foreign = stack.foreign_idp.user("alice");
    let wrong_aud = stack.idp.token(&[
        "--user",
        "alice",
        "--resource",
        "https://other.cedargate.test",
    ]);
    let short = stack.short_idp.user("alice");
    let exp = jwt_part(&short, 1)["exp"].as_u64().unwrap();
    let cases = [
        ("malformed", "not-a-jwt".to_string(), "token_malformed"),
        ("foreign issuer", foreign, "token_unknown_issuer"),
        ("wrong audience", wrong_aud, "token_wrong_audience"),
    ];
    for (name, token, reason) in cases {
        let (status, headers, body) =
            get(&stack, "/orders/1", &[("authorization", &bearer(&token))]).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(
            headers["www-authenticate"], "Bearer realm=\"cedargate\", error=\"invalid_token\"",
            "{name}"
        );
        let id = serde_json::from_str::<Value>(&body).unwrap()["decision_id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(stack.record(&id)["reason"], reason, "{name}");
    }
    // The short-lived token works until it expires, then gets 401 token_expired.
    let (status, _, _) = get(&stack, "/orders/1", &[("authorization", &bearer(&short))]).await;
    assert_eq!(status, 200, "short-lived token before expiry");
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs(exp + 1);
    if let Ok(wait) = expired_at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
    let (status, _, body) = get(&stack, "/orders/1", &[("authorization", &bearer(&short))]).await;
    assert_eq!(status, 401, "expired token");
    let id = serde_json::from_str::<Value>(&body).unwrap()["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(stack.record(&id)["reason"], "token_expired");

    // Service tokens (client_credentials): allowed only where service policies allow.
    let orders_service = stack
        .idp
        .service("orders-service", "orders:read orders:write");
    let r = client()
        .post(stack.url("/payments"))
        .header("authorization", bearer(&orders_service))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        echo["headers"]["x-cedargate-principal"],
        "Service::\"orders-service\""
    );
    let (status, _, _) = get(
        &stack,
        "/orders/1",
        &[("authorization", &bearer(&orders_service))],
    )
    .await;
    assert_eq!(status, 403);

    // The public route: no token, cedargate never asked, spoofed identity headers stripped.
    let asked = |s: &Stack| {
        ["ok", "denied", "error"]
            .iter()
            .map(|k| s.envoy_stat(&format!("http.ingress_http.ext_authz.{k}")))
            .sum::<u64>()
    };
    let before = asked(&stack);
    let (status, _, body) = get(
        &stack,
        "/public/hello",
        &[("x-cedargate-principal", "User::\"root\"")],
    )
    .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert!(
        echo["headers"].get("x-cedargate-principal").is_none(),
        "spoofed header reached upstream: {echo}"
    );
    assert_eq!(asked(&stack), before, "ext_authz was consulted for /public");
    assert!(before > 0, "ext_authz stats are not being read");

    // gRPC through Envoy: decided on the gRPC service and method.
    let channel = tonic::transport::Endpoint::from_shared(stack.url(""))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut()
        .insert("authorization", bearer(&bob).parse().unwrap());
    let reply = health.check(req).await.expect("bob may call Health/Check");
    assert_eq!(reply.into_inner().status, 1);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut()
        .insert("authorization", bearer(&bob).parse().unwrap());
    let err = health
        .watch(req)
        .await
        .expect_err("Health/Watch is not allowed");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut()
        .insert("authorization", bearer(&mallory).parse().unwrap());
    let err = health.check(req).await.expect_err("mallory is not staff");
    assert_eq!(err.code(), tonic::Code::PermissionDenied);

    // WebSocket upgrade: allowed for staff (and echoes), denied otherwise.
    let (status, echo) = websocket(&stack, "/chat/ws", &bob);
    assert_eq!(status, 101);
    assert_eq!(echo.as_deref(), Some("hello through envoy"));
    let (status, _) = websocket(&stack, "/chat/ws", &mallory);
    assert_eq!(status, 403);

    // Nothing secret in any decision record.
    let log = stack.cedargate.lines.lock().unwrap().join("\n");
    assert!(!log.contains("e2e-secret-cookie"));
    for t in [&alice, &bob, &mallory, &orders_service] {
        assert!(
            !log.contains(t.as_str()),
            "a token reached the decision log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_fails_closed_when_cedargate_stops() {
    let mut stack = Stack::start();
    let alice = stack.idp.user("alice");
    let (status, _, _) = get(&stack, "/orders/1", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(status, 200);
    assert!(
        stack.cedargate.terminate(),
        "cedargate did not exit cleanly on SIGTERM"
    );
    let (status, _, body) = get(&stack, "/orders/1", &[("authorization", &bearer(&alice))]).await;
    assert_eq!(
        status, 503,
        "Envoy must deny (status_on_error) when cedargate is down: {body}"
    );
    let (status, _, _) = get(&stack, "/public/x", &[]).await;
    assert_eq!(status, 200, "routes without ext_authz keep working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_key_rotation_needs_no_restart() {
    let stack = Stack::start();
    let before = stack.idp.user("alice");
    let (status, _, _) = get(&stack, "/orders/1", &[("authorization", &bearer(&before))]).await;
    assert_eq!(status, 200);

    // The IdP starts signing with a brand-new key (published at the same moment).
    let new_key = stack.idp.rotate_signing_key().await;

    let after = stack.idp.user("alice");
    assert_eq!(
        jwt_part(&after, 0)["kid"],
        new_key["kid"],
        "the IdP did not sign with the new key"
    );
    let started = Instant::now();
    let (status, _, body) = get(&stack, "/orders/1", &[("authorization", &bearer(&after))]).await;
    assert_eq!(status, 200, "first new-kid token must be accepted: {body}");
    eprintln!(
        "first new-kid request took {:?} (includes the JWKS refetch)",
        started.elapsed()
    );
    let (status, _, _) = get(&stack, "/orders/1", &[("authorization", &bearer(&before))]).await;
    assert_eq!(
        status, 200,
        "old-key tokens keep working while the old key is published"
    );
}

#[test]
fn every_shipped_envoy_config_passes_validate() {
    let envoy = envoy_bin();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("envoy")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = std::process::Command::new(&envoy)
                .current_dir(repo())
                .args(["--mode", "validate", "--base-id"])
                .arg((std::process::id() % 10_000 * 16 + 15).to_string())
                .arg("-c")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} failed validation:\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 2,
        "expected the shipped Envoy configs, found {checked}"
    );
}

/// No Docker engine runs here, so keep docker-compose.yml honest another way: every file it
/// mounts or builds from exists, and the cedargate config it mounts is valid.
#[test]
fn docker_compose_references_real_files_and_a_valid_config() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let compose: Value = serde_saphyr::from_str(&text).unwrap();
    let services = compose["services"].as_object().expect("services");
    let mut mounts = 0;
    for (name, service) in services {
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let host = volume.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(
                    repo().join(host).exists(),
                    "service {name} mounts missing {host}"
                );
                mounts += 1;
            }
        }
        if let Some(context) = service["build"].as_str() {
            assert!(
                repo().join(context).join("Dockerfile").is_file(),
                "{name}: no Dockerfile"
            );
        }
    }
    assert!(
        mounts >= 4,
        "expected the config, policy and Envoy mounts, found {mounts}"
    );
    let config =
        cedargate_core::config::Config::load(&repo().join("deploy/compose/cedargate.yaml"))
            .unwrap_or_else(|e| panic!("deploy/compose/cedargate.yaml is invalid:\n{e}"));
    assert_eq!(config.issuers.len(), 1);
    assert!(
        compose["services"]["envoy"]["image"]
            .as_str()
            .unwrap()
            .ends_with("v1.40.0")
    );
}

/// mTLS through `envoy/envoy-mtls.yaml`: a workload with a client certificate and no token is
/// `Workload::"<SPIFFE ID>"`, decided by policy; without a certificate the TLS handshake fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_workload_identity_through_envoy() {
    let stack = Stack::start();
    let listener = crate::stack::free_port();
    let admin = crate::stack::free_port();
    let config = crate::stack::render_envoy(
        "envoy/envoy-mtls.yaml",
        &[
            (10443, listener),
            (9901, admin),
            (9191, stack.cedargate_grpc),
            (8081, stack.app_port),
            (8082, stack.grpc_app_port),
        ],
    );
    let _envoy = crate::stack::start_envoy(stack.dir.path(), &config, admin);
    let certs = repo().join("envoy/certs");
    let read = |f: &str| std::fs::read(certs.join(f)).unwrap();
    let mut identity_pem = read("client.crt");
    identity_pem.extend(read("client.key"));
    let ca = reqwest::Certificate::from_pem(&read("ca.crt")).unwrap();
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(ca.clone())
        .identity(reqwest::Identity::from_pem(&identity_pem).unwrap())
        .build()
        .unwrap();
    let url = |p: &str| format!("https://localhost:{listener}{p}");

    let r = with_cert.get(url("/reports/daily")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echo: Value = r.json().await.unwrap();
    let spiffe = "spiffe://cedargate.test/ns/default/sa/orders";
    assert_eq!(
        echo["headers"]["x-cedargate-principal"],
        format!("Workload::\"{spiffe}\"")
    );
    let record = stack.record(echo["headers"]["x-cedargate-decision-id"].as_str().unwrap());
    assert_eq!(record["cedar"]["context"]["source"]["principal"], spiffe);
    assert_eq!(record["policies"][0]["id"], "orders-workload-reads-reports");

    let r = with_cert.get(url("/orders/1")).send().await.unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "the workload may only read reports"
    );

    // The public route asks nobody, so identity headers a client forges there are stripped.
    let r = with_cert
        .get(url("/public/x"))
        .header("x-cedargate-principal", "User::\"admin\"")
        .header("x-cedargate-decision-id", "forged")
        .header("x-cedargate-token", "forged.jwt.token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let echo: Value = r.json().await.unwrap();
    for forged in [
        "x-cedargate-principal",
        "x-cedargate-decision-id",
        "x-cedargate-token",
    ] {
        assert!(
            echo["headers"].get(forged).is_none(),
            "{forged} reached the upstream: {echo}"
        );
    }

    let without_cert = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    assert!(
        without_cert
            .get(url("/reports/daily"))
            .send()
            .await
            .is_err(),
        "a client without a certificate must not get through the TLS handshake"
    );
}

/// Without trace export (no `telemetry.otlp`), a decision record's `trace_id` is the trace id of
/// the client's W3C `traceparent`, which reaches cedargate because the shipped Envoy config
/// lists it in ext_authz's `allowed_headers`. A malformed `traceparent` is ignored: the request
/// is decided as usual and its record has no `trace_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_take_the_trace_id_from_the_clients_traceparent() {
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("decisions.jsonl");
    let stack = Stack::start_with(|yaml| {
        assert!(!yaml.contains("\ntelemetry:"), "trace export must be off");
        assert!(yaml.contains("output: stdout "));
        yaml.replacen(
            "output: stdout ",
            &format!("output: file\n  path: {}\n ", log_path.display()),
            1,
        )
    });
    let alice = bearer(&stack.idp.user("alice"));
    let mallory = bearer(&stack.idp.user("mallory"));
    // Through Envoy; the record of the decision, read from cedargate's log file.
    let decide = async |token: &str, traceparents: &[&str]| {
        let mut request = client()
            .get(stack.url("/orders/1"))
            .header("authorization", token);
        for t in traceparents {
            request = request.header("traceparent", *t);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        // Allowed: the upstream echoes the headers Envoy sent it; denied: cedargate's body.
        let decision_id = match status {
            200 => &body["headers"]["x-cedargate-decision-id"],
            _ => &body["decision_id"],
        };
        let record = record_in(&log_path, decision_id.as_str().unwrap()).await;
        (status, body, record)
    };

    // A sampled trace on an allowed request: the record names the client's trace, and Envoy
    // (no tracer configured) passes the header on unchanged.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, echo, record) = decide(&alice, &[&traceparent]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(record["trace_id"], trace);
    assert_eq!(echo["headers"]["traceparent"], traceparent.as_str());
    // An unsampled one on a denied request: the sampled flag doesn't matter to the record.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, _, record) = decide(&mallory, &[&format!("00-{trace}-b7ad6b7169203331-00")]).await;
    assert_eq!(status, 403);
    assert_eq!(record["trace_id"], trace);
    assert_eq!(record["reason"], "no_permit");
    // No traceparent: no trace id.
    let (status, _, record) = decide(&alice, &[]).await;
    assert_eq!(status, 200);
    assert!(record.get("trace_id").is_none(), "{record}");

    // Malformed: decided as usual, and no trace id rather than a wrong one.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let malformed = [
        "not-a-traceparent".to_string(),
        // All-zero trace id and parent id are invalid by the W3C spec.
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_string(),
        format!("00-{trace}-0000000000000000-01"),
        // Upper-case hex, a short trace id, a fifth field in version 00, version ff.
        format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase()),
        format!("00-{}-00f067aa0ba902b7-01", &trace[..30]),
        format!("00-{trace}-00f067aa0ba902b7-01-extra"),
        format!("ff-{trace}-00f067aa0ba902b7-01"),
        // Anything but text: `"` and a JSON-looking tail must not leak into the record.
        format!("00-{trace}\"}}-00f067aa0ba902b7-01"),
    ];
    for bad in &malformed {
        let (status, _, record) = decide(&alice, &[bad]).await;
        assert_eq!(status, 200, "{bad}");
        assert_eq!(record["decision"], "allow", "{bad}");
        assert!(record.get("trace_id").is_none(), "{bad}: {record}");
    }
    // Two traceparent headers: Envoy hands cedargate one comma-joined value, which is not a
    // traceparent, so neither trace is picked.
    let (status, _, record) = decide(
        &alice,
        &[
            &format!("00-{trace}-00f067aa0ba902b7-01"),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(record.get("trace_id").is_none(), "{record}");
    // And nothing went to stdout: the records are in the file.
    assert!(stack.records().is_empty());
}
