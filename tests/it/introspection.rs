//! Opaque access tokens from the real oidc-provider (resource https://opaque.cedargate.test),
//! introspected by cedargate at the IdP's RFC 7662 endpoint (found by discovery, client
//! authentication with a secret from a file), through the real Envoy.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::Stack;
use crate::support::bearer;

const OPAQUE: &str = "https://opaque.cedargate.test";

fn start(max_ttl: u32) -> (Stack, tempfile::TempDir) {
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("introspection-secret");
    std::fs::write(&secret, "cedargate-introspector-secret\n").unwrap();
    let stack = Stack::start_with(|yaml| {
        let demo = "    audiences: [https://api.cedargate.test]\n    algorithms: [ES256, RS256]\n";
        assert_eq!(yaml.matches(demo).count(), 1);
        yaml.replace(
            demo,
            &format!(
                "    audiences: [https://api.cedargate.test, {OPAQUE}]\n    algorithms: [ES256, RS256]\n    introspection:\n      client_id: cedargate-introspector\n      client_secret_file: {}\n      cache_max_ttl_seconds: {max_ttl}\n      timeout_ms: 300\n",
                secret.display()
            ),
        )
    });
    (stack, secrets)
}

fn opaque_user(stack: &Stack, user: &str) -> String {
    let token = stack.idp.token(&[
        "--user",
        user,
        "--scope",
        "openid orders:read",
        "--resource",
        OPAQUE,
    ]);
    assert!(!token.contains('.'), "an opaque token, not a JWT: {token}");
    token
}

/// RFC 7009 revocation by the token's public client.
fn revocation(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("token", token)
        .append_pair("client_id", "webapp")
        .finish()
}

fn introspection_hits(stack: &Stack) -> u64 {
    let body = std::process::Command::new("curl")
        .args([
            "-s",
            &format!("{}/test/introspection-hits", stack.idp.issuer),
        ])
        .output()
        .unwrap()
        .stdout;
    serde_json::from_slice::<Value>(&body).unwrap()["hits"]
        .as_u64()
        .unwrap()
}

async fn get(stack: &Stack, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .get(stack.url(path))
        .header("authorization", bearer(token))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let challenge = r
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let id = body["decision_id"]
        .as_str()
        .or_else(|| body["headers"]["x-cedargate-decision-id"].as_str())
        .unwrap()
        .to_string();
    (status, challenge, stack.record(&id))
}

/// One series of cedargate's `/metrics` (every introspection family has zero series from start).
async fn metric(stack: &Stack, series: &str) -> f64 {
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], stack.cedargate_admin));
    crate::decision_logs::metric(admin, series).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_cached_and_fail_closed() {
    let (mut stack, _secrets) = start(60);

    // A person's opaque token: allowed per policy (alice is an admin), mapped from the
    // introspected claims exactly as from a JWT (sub → User, groups → parents).
    let alice = opaque_user(&stack, "alice");
    let before = introspection_hits(&stack);
    let (status, _, record) = get(&stack, "/orders/1", &alice).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["principal"], "User::\"alice\"");
    assert_eq!(record["policies"][0]["id"], "admins-everything");
    assert_eq!(record["token"]["iss"], stack.idp.issuer);
    assert_eq!(record["token"]["cached"], false);
    assert_eq!(record["cedar"]["context"]["token"]["aud"][0], OPAQUE);
    // Repeated Checks are answered from the cache: the IdP sees one introspection.
    let started = Instant::now();
    for _ in 0..5 {
        let (status, _, record) = get(&stack, "/orders/1", &alice).await;
        assert_eq!(
            (status, &record["token"]["cached"]),
            (200, &Value::Bool(true))
        );
    }
    let repeated = started.elapsed() / 5;
    assert_eq!(
        introspection_hits(&stack) - before,
        1,
        "one introspection for six Checks"
    );
    assert!(
        metric(
            &stack,
            "cedargate_introspection_cache_lookups_total{result=\"hit\"}"
        )
        .await
            >= 5.0
    );
    println!(
        "introspection: 6 Checks of one opaque token, 1 IdP request; a cached Check through Envoy takes {repeated:?}"
    );

    // Allowed or not is the policies' call: mallory (no groups) is denied with 403.
    let mallory = opaque_user(&stack, "mallory");
    let (status, _, record) = get(&stack, "/orders/1", &mallory).await;
    assert_eq!(
        (status, record["reason"].as_str()),
        (403, Some("no_permit"))
    );

    // A service's opaque token: scopes reach context.token.scopes as from a JWT.
    let service = stack.idp.token(&[
        "--client-credentials",
        "--client",
        "orders-service",
        "--scope",
        "orders:write",
        "--resource",
        OPAQUE,
    ]);
    let (status, _, record) = reqwest_post(&stack, "/payments", &service).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["principal"], "Service::\"orders-service\"");

    // Revoked at the IdP before first use: inactive → 401 invalid_token.
    let bob = opaque_user(&stack, "bob");
    let revoked = reqwest::Client::new()
        .post(format!("{}/token/revocation", stack.idp.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(revocation(&bob))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let (status, challenge, record) = get(&stack, "/orders/1", &bob).await;
    assert_eq!(
        (status, record["reason"].as_str()),
        (401, Some("token_inactive"))
    );
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    // A token the IdP never issued: inactive too.
    let (status, _, record) = get(&stack, "/orders/1", "never-issued-token-0123456789").await;
    assert_eq!(
        (status, record["reason"].as_str()),
        (401, Some("token_inactive"))
    );

    // IdP down: a token not yet seen can't be introspected → introspection_unavailable, within
    // the time budget, with a bare challenge; the cached one still works until its entry ends.
    let carol = opaque_user(&stack, "carol");
    stack.idp.stop();
    let started = Instant::now();
    let (status, challenge, record) = get(&stack, "/orders/1", &carol).await;
    let outage = started.elapsed();
    assert_eq!(
        (status, record["reason"].as_str()),
        (401, Some("introspection_unavailable"))
    );
    assert!(
        !challenge.unwrap().contains("error="),
        "the token may be fine: bare challenge"
    );
    assert!(
        outage < Duration::from_millis(450),
        "denied within the budget: {outage:?}"
    );
    assert_eq!(get(&stack, "/orders/1", &alice).await.0, 200);
    assert!(
        metric(
            &stack,
            "cedargate_introspection_requests_total{issuer=\"demo-idp\",result=\"error\"}"
        )
        .await
            >= 1.0
    );
    println!("introspection: IdP down → introspection_unavailable in {outage:?} (budget 300 ms)");
    stack.idp.restart();
    let (status, _, _) = get(&stack, "/orders/1", &carol).await;
    // The in-memory adapter forgot carol's token on restart: inactive now, never allowed.
    assert_eq!(status, 401);
}

async fn reqwest_post(stack: &Stack, path: &str, token: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(stack.url(path))
        .header("authorization", bearer(token))
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    let id = body["decision_id"]
        .as_str()
        .or_else(|| body["headers"]["x-cedargate-decision-id"].as_str())
        .unwrap()
        .to_string();
    (status, None, stack.record(&id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_once_its_cache_entry_ends() {
    let (stack, _secrets) = start(1);
    let alice = opaque_user(&stack, "alice");
    assert_eq!(get(&stack, "/orders/1", &alice).await.0, 200);
    let revoked = reqwest::Client::new()
        .post(format!("{}/token/revocation", stack.idp.issuer))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(revocation(&alice))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    // cache_max_ttl_seconds: 1 bounds how long the revoked token keeps working.
    let deadline = Instant::now() + Duration::from_secs(5);
    let flipped = loop {
        let (status, _, record) = get(&stack, "/orders/1", &alice).await;
        if status == 401 {
            assert_eq!(record["reason"], "token_inactive");
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "the revoked token kept working");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "introspection: revoked token refused {:?} before the deadline",
        deadline - flipped
    );
}

/// An introspection endpoint that misbehaves in the way the token names (in-process, real
/// socket): every failure is `introspection_unavailable` within the budget, never an allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_endpoint_fails_closed_within_the_budget() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};

    use crate::support::{FakeIdp, Gate, check_request};

    let idp = FakeIdp::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/introspect", listener.local_addr().unwrap());
    let auth_seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = auth_seen.clone();
    let issuer = idp.issuer.clone();
    let app = axum::Router::new().route(
        "/introspect",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            let issuer = issuer.clone();
            async move {
                if let Some(a) = headers.get("authorization") {
                    seen.lock().unwrap().push(a.to_str().unwrap().to_string());
                }
                let active = format!(
                    r#"{{"active":true,"sub":"alice","iss":"{issuer}","aud":"{}","exp":{},"groups":["admins"]}}"#,
                    crate::support::AUDIENCE,
                    crate::support::now() + 600
                );
                let (status, answer) = if body.contains("slow") {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    (200, active)
                } else if body.contains("garbage") {
                    (200, "<html>sign in</html>".to_string())
                } else if body.contains("noactive") {
                    (200, r#"{"sub":"alice"}"#.to_string())
                } else if body.contains("error") {
                    (500, "{}".to_string())
                } else {
                    (200, active)
                };
                (
                    axum::http::StatusCode::from_u16(status).unwrap(),
                    [("content-type", "application/json")],
                    answer,
                )
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "s3cret:&=\n").unwrap();
    let mut gate = Gate::start_with(&idp.issuer, |yaml| {
        yaml.replace(
            "    algorithms: [ES256, RS256, EdDSA]\n",
            &format!(
                "    algorithms: [ES256, RS256, EdDSA]\n    introspection:\n      endpoint: {endpoint}\n      client_id: cedar gate\n      client_secret_file: {}\n      timeout_ms: 200\n",
                secret.display()
            ),
        )
    })
    .await;

    let check = |token: &str| {
        check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &bearer(token))],
        )
    };
    let answer = gate.check(check("good-opaque-token-1")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
    let expected = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            "cedar+gate:s3cret%3A%26%3D"
        )
    );
    assert_eq!(auth_seen.lock().unwrap().first(), Some(&expected));

    for token in ["slow-1", "garbage-1", "noactive-1", "error-1"] {
        let started = Instant::now();
        let answer = gate.check(check(token)).await;
        let took = started.elapsed();
        let body: Value = serde_json::from_str(&answer.body).unwrap();
        let record = gate.record(body["decision_id"].as_str().unwrap()).await;
        assert_eq!(
            (answer.status, record["reason"].as_str()),
            (401, Some("introspection_unavailable")),
            "{token}"
        );
        assert!(took < Duration::from_millis(1000), "{token}: {took:?}");
        if token == "slow-1" {
            assert!(
                took >= Duration::from_millis(200),
                "cut at timeout_ms: {took:?}"
            );
        }
    }
    let log = gate.log_bytes();
    for token in ["good-opaque-token-1", "garbage-1", "s3cret"] {
        assert!(!log.contains(token), "{token} in the decision log");
    }
}
