//! Upstream tokens (`upstream_token`): what the upstream receives on allow, checked against the
//! JWKS cedargate publishes on its admin port, fetched over HTTP.
//!
//! The Check API in-process (`support::Gate`): the default `authorization` header, denials,
//! decision records that name the token's `jti` but never hold it, key rotation and a bad key file
//! on hot reload. Then the real Envoy + the real oidc-provider + the echo upstream (`stack`): the
//! minted token in `x-cedargate-token`, the caller's `authorization` gone, a forged token header
//! overwritten, none on a denial.

use std::path::{Path, PathBuf};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::CheckResponse;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::stack::Stack;
use crate::support::*;

const ISSUER: &str = "https://cedargate.internal";

fn key_fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/upstream-keys").join(name)
}

/// cedargate's published keys, fetched over HTTP from its admin port, with the Cache-Control.
async fn fetch_jwks(admin: &str) -> (JwkSet, String) {
    let r = reqwest::get(format!("http://{admin}/.well-known/jwks.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cache = r.headers()["cache-control"].to_str().unwrap().to_string();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("\"d\""),
        "private key material published: {text}"
    );
    (serde_json::from_str(&text).unwrap(), cache)
}

/// Verifies `token` against `jwks` for `aud`: signature, `iss`, `aud`, `exp`, `nbf`.
fn verify(token: &str, jwks: &JwkSet, aud: &str) -> Map<String, Value> {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let kid = header.kid.clone().expect("kid");
    let jwk = jwks
        .find(&kid)
        .unwrap_or_else(|| panic!("kid {kid} not published"));
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[aud]);
    validation.validate_nbf = true;
    validation.leeway = 0;
    jsonwebtoken::decode::<Map<String, Value>>(
        token,
        &DecodingKey::from_jwk(jwk).unwrap(),
        &validation,
    )
    .unwrap()
    .claims
}

fn ok_parts(r: &CheckResponse) -> (Vec<(String, String, i32)>, Vec<String>) {
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => (
            ok.headers
                .iter()
                .filter_map(|h| {
                    h.header
                        .as_ref()
                        .map(|v| (v.key.clone(), v.value.clone(), h.append_action))
                })
                .collect(),
            ok.headers_to_remove.clone(),
        ),
        _ => panic!("not an allow: {r:?}"),
    }
}

fn upstream_section(key_files: &[&Path], extra: &str) -> String {
    let files: Vec<String> = key_files
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        "\nupstream_token:\n  issuer: {ISSUER}\n  audience: internal\n  service_audiences: {{ orders: https://orders.internal }}\n  claims: [groups, tenant]\n  key_files: [{}]\n{extra}",
        files.join(", ")
    )
}

#[tokio::test]
async fn allows_carry_a_minted_token_that_verifies_against_the_published_jwks() {
    let idp = FakeIdp::start().await;
    let keys = tempfile::tempdir().unwrap();
    let current = keys.path().join("current.pem");
    let previous = keys.path().join("previous.pem");
    std::fs::copy(key_fixture("es256-a.pem"), &current).unwrap();
    std::fs::copy(key_fixture("ed25519.pem"), &previous).unwrap();
    let section = upstream_section(&[&current, &previous], "  reuse_seconds: 0\n");
    let mut gate = Gate::start_with(&idp.issuer, |y| y + &section).await;
    let admin = gate.admin.to_string();
    let (jwks, cache) = fetch_jwks(&admin).await;
    assert_eq!(
        jwks.keys.len(),
        2,
        "current and previous keys are both published"
    );
    assert_eq!(cache, "public, max-age=300");

    let auth = user(&idp, "alice", &["admins"], "acme");
    let raw_token = auth.trim_start_matches("Bearer ").to_string();
    let req = check_request(
        "orders",
        "GET",
        "/orders/42",
        &[("authorization", &auth), ("x-request-id", "req-mint-1")],
    );
    let response = gate.client.check(req).await.unwrap().into_inner();
    let (headers, remove) = ok_parts(&response);
    let minted: Vec<_> = headers
        .iter()
        .filter(|(k, _, _)| k == "authorization")
        .collect();
    assert_eq!(minted.len(), 1, "{headers:?}");
    let (_, value, action) = minted[0];
    // OVERWRITE_IF_EXISTS_OR_ADD: the caller's own authorization header cannot survive beside it.
    assert_eq!(
        *action, 2,
        "append_action must be OVERWRITE_IF_EXISTS_OR_ADD"
    );
    // The default header replaces the caller's credential, so there is nothing left to remove.
    assert!(remove.is_empty(), "{remove:?}");
    let token = value.strip_prefix("Bearer ").unwrap();
    assert_ne!(token, raw_token);
    let now = now();
    let claims = verify(token, &jwks, "https://orders.internal");
    let decision_id = headers
        .iter()
        .find(|(k, _, _)| k == "x-cedargate-decision-id")
        .unwrap()
        .1
        .clone();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["principal_type"], "User");
    assert_eq!(claims["decision_id"], decision_id.as_str());
    assert_eq!(claims["groups"], serde_json::json!(["admins"]));
    assert_eq!(claims["tenant"], "acme");
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp >= now + 58 && exp <= now + 61, "exp {exp}, now {now}");
    assert_eq!(claims["iat"], claims["nbf"]);
    assert!(!claims.contains_key("email") && !claims.contains_key("client_id"));
    // Signed by the first key file.
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), jwks.keys[0].common.key_id.as_deref());

    // The record names the token by jti, never holds it.
    let record = gate.record(&decision_id).await;
    assert_eq!(record["upstream_token"]["jti"], claims["jti"]);
    assert_eq!(record["upstream_token"]["aud"], "https://orders.internal");
    assert_eq!(record["upstream_token"]["reused"], false);

    // Without reuse, every allow gets its own token.
    let again = gate
        .client
        .check(check_request(
            "orders",
            "GET",
            "/orders/42",
            &[("authorization", &auth)],
        ))
        .await
        .unwrap()
        .into_inner();
    let (headers2, _) = ok_parts(&again);
    let token2 = &headers2
        .iter()
        .find(|(k, _, _)| k == "authorization")
        .unwrap()
        .1;
    let claims2 = verify(
        token2.strip_prefix("Bearer ").unwrap(),
        &jwks,
        "https://orders.internal",
    );
    assert_ne!(claims2["jti"], claims["jti"]);

    // An anonymous allow (the public status route) gets a token for the anonymous principal, on
    // the default audience for a service without its own... here orders has one.
    let anon = gate
        .check(check_request("orders", "GET", "/orders/status", &[]))
        .await;
    assert_eq!(anon.status, 200);
    let anon_claims = verify(
        anon.headers["authorization"]
            .strip_prefix("Bearer ")
            .unwrap(),
        &jwks,
        "https://orders.internal",
    );
    assert_eq!(anon_claims["principal_type"], "Anonymous");
    assert!(!anon_claims.contains_key("groups"));

    // A deny never mints.
    let mallory = user(&idp, "mallory", &[], "acme");
    let denied = gate
        .check(check_request(
            "orders",
            "DELETE",
            "/orders/42",
            &[("authorization", &mallory)],
        ))
        .await;
    assert_eq!(denied.status, 403);
    assert!(
        !denied.headers.contains_key("authorization"),
        "{:?}",
        denied.headers
    );
    let denied_record = gate.record(denied.decision_id()).await;
    assert!(denied_record.get("upstream_token").is_none());

    // No minted token in the decision log, byte for byte.
    let log = gate.log_bytes();
    for t in [token, token2.as_str(), raw_token.as_str()] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token reached the decision log");
    }
}

#[tokio::test]
async fn key_rotation_and_a_bad_key_file_on_hot_reload() {
    let idp = FakeIdp::start().await;
    let keys = tempfile::tempdir().unwrap();
    let a = keys.path().join("a.pem");
    let b = keys.path().join("b.pem");
    std::fs::copy(key_fixture("es256-a.pem"), &a).unwrap();
    std::fs::copy(key_fixture("es256-b.pem"), &b).unwrap();
    let config_text = std::cell::RefCell::new(String::new());
    let mut gate = Gate::start_with(&idp.issuer, |y| {
        let y = y + &upstream_section(&[&a], "");
        *config_text.borrow_mut() = y.clone();
        y
    })
    .await;
    let config_text = config_text.into_inner();
    let config_path = gate.log_path.parent().unwrap().join("cedargate.yaml");
    let admin = gate.admin.to_string();
    let reloader = gate.running.as_ref().unwrap().reload.clone();
    let auth = user(&idp, "alice", &["admins"], "acme");
    let kid_of = |r: &crate::support::Answer| {
        let t = r.headers["authorization"]
            .strip_prefix("Bearer ")
            .unwrap()
            .to_string();
        jsonwebtoken::decode_header(&t).unwrap().kid.unwrap()
    };
    let first = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &auth)],
        ))
        .await;
    let (jwks_a, _) = fetch_jwks(&admin).await;
    let kid_a = jwks_a.keys[0].common.key_id.clone().unwrap();
    assert_eq!(kid_of(&first), kid_a);

    // Step 1 of a rotation: publish b (second, not signing yet).
    let announce = config_text.replace(
        &format!("key_files: [\"{}\"]", a.display()),
        &format!("key_files: [\"{}\", \"{}\"]", a.display(), b.display()),
    );
    assert_ne!(announce, config_text);
    std::fs::write(&config_path, &announce).unwrap();
    reloader.reload("test").unwrap();
    let (jwks, _) = fetch_jwks(&admin).await;
    assert_eq!(jwks.keys.len(), 2);
    let kid_b = jwks.keys[1].common.key_id.clone().unwrap();
    // Step 2: b signs, a stays published for tokens still in flight.
    let switch = config_text.replace(
        &format!("key_files: [\"{}\"]", a.display()),
        &format!("key_files: [\"{}\", \"{}\"]", b.display(), a.display()),
    );
    std::fs::write(&config_path, &switch).unwrap();
    reloader.reload("test").unwrap();
    let after = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/2",
            &[("authorization", &auth)],
        ))
        .await;
    assert_eq!(kid_of(&after), kid_b, "the first key file signs");
    let (jwks, _) = fetch_jwks(&admin).await;
    verify(
        after.headers["authorization"]
            .strip_prefix("Bearer ")
            .unwrap(),
        &jwks,
        "https://orders.internal",
    );

    // A key file that turns bad refuses the reload: the old keys stay, signing and published.
    std::fs::write(
        &b,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let refused = reloader.reload("test").unwrap_err().to_string();
    assert!(refused.contains(&b.display().to_string()), "{refused}");
    assert!(
        refused.contains("is not a P-256 (ES256) or Ed25519"),
        "{refused}"
    );
    assert!(
        !refused.contains("bm90IGEga2V5"),
        "key bytes in the error: {refused}"
    );
    let (still, _) = fetch_jwks(&admin).await;
    assert_eq!(still.keys, jwks.keys);
    let kept = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/3",
            &[("authorization", &auth)],
        ))
        .await;
    assert_eq!(kid_of(&kept), kid_b);
    // /policy shows why.
    let policy: Value = reqwest::get(format!("http://{admin}/policy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        policy["reload"]["last_error"]
            .as_str()
            .unwrap()
            .contains("b.pem")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_key_file_reloads_it_without_a_signal() {
    let idp = FakeIdp::start().await;
    let keys = tempfile::tempdir().unwrap();
    let signing = keys.path().join("signing.pem");
    std::fs::copy(key_fixture("es256-a.pem"), &signing).unwrap();
    let gate = Gate::start_with(&idp.issuer, |y| y + &upstream_section(&[&signing], "")).await;
    let admin = gate.admin.to_string();
    let kid = |jwks: &JwkSet| jwks.keys[0].common.key_id.clone().unwrap();
    let (before, _) = fetch_jwks(&admin).await;
    let policy: Value = reqwest::get(format!("http://{admin}/policy"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        policy["reload"]["watching"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d.as_str() == keys.path().to_str()),
        "the key file's folder is watched: {policy}"
    );

    // The way a secret manager or `kubectl` replaces a file: write beside it, rename over it.
    let staged = keys.path().join(".signing.pem.new");
    std::fs::copy(key_fixture("es256-b.pem"), &staged).unwrap();
    std::fs::rename(&staged, &signing).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (now, _) = fetch_jwks(&admin).await;
        if kid(&now) != kid(&before) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced key was not picked up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn without_upstream_token_nothing_is_minted_or_published() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let r = reqwest::get(format!("http://{}/.well-known/jwks.json", gate.admin))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let auth = user(&idp, "alice", &["admins"], "acme");
    let response = gate
        .client
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &auth)],
        ))
        .await
        .unwrap()
        .into_inner();
    let (headers, remove) = ok_parts(&response);
    assert!(headers.iter().all(|(k, _, _)| k != "authorization"));
    assert!(remove.is_empty());
}

/// Through the real Envoy, with tokens from the real oidc-provider, to the echo upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_a_minted_token_and_never_the_callers() {
    let key = key_fixture("es256-a.pem");
    let stack = Stack::start_with(|yaml| {
        yaml + &format!(
            "\nupstream_token:\n  issuer: {ISSUER}\n  audience: internal\n  service_audiences: {{ orders: https://orders.internal }}\n  header: x-cedargate-token\n  claims: [groups, tenant, scope]\n  key_files: [\"{}\"]\n",
            key.display()
        )
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let admin = format!("127.0.0.1:{}", stack.cedargate_admin);
    let (jwks, _) = fetch_jwks(&admin).await;
    let alice = stack.idp.user("alice");

    // Allowed: the upstream sees cedargate's token, not alice's, and not the forged one.
    let r = client
        .get(stack.url("/orders/1"))
        .header("authorization", format!("Bearer {alice}"))
        .header("x-cedargate-token", "forged.by.client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    let headers = &echo["headers"];
    assert!(
        headers.get("authorization").is_none(),
        "the caller's token reached the upstream: {echo}"
    );
    let seen = echo.to_string();
    assert!(
        !seen.contains(&alice),
        "the caller's token reached the upstream"
    );
    assert!(
        !seen.contains("forged.by.client"),
        "a forged token header survived: {echo}"
    );
    let token = headers["x-cedargate-token"].as_str().unwrap();
    let claims = verify(token, &jwks, "https://orders.internal");
    assert_eq!(claims["sub"], jwt_claims(&alice)["sub"]);
    assert_eq!(claims["principal_type"], "User");
    assert_eq!(claims["groups"], serde_json::json!(["admins", "staff"]));
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(claims["decision_id"], headers["x-cedargate-decision-id"]);
    let exp = claims["exp"].as_u64().unwrap();
    assert!(exp > now() && exp <= now() + 61, "exp {exp}");
    let record = stack.record(headers["x-cedargate-decision-id"].as_str().unwrap());
    assert_eq!(record["upstream_token"]["jti"], claims["jti"]);

    // A service token (client_credentials) to a service without its own audience: the default
    // audience, the service as principal, its scope copied.
    let svc = stack
        .idp
        .service("orders-service", "orders:read orders:write");
    let r = client
        .post(stack.url("/payments"))
        .header("authorization", format!("Bearer {svc}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    let claims = verify(
        echo["headers"]["x-cedargate-token"].as_str().unwrap(),
        &jwks,
        "internal",
    );
    assert_eq!(claims["principal_type"], "Service");
    assert_eq!(claims["sub"], "orders-service");
    assert_eq!(claims["scope"], "orders:read orders:write");

    // Denied: no token anywhere in the answer.
    let mallory = stack.idp.user("mallory");
    let r = client
        .get(stack.url("/orders/1"))
        .header("authorization", format!("Bearer {mallory}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("x-cedargate-token").is_none());
    let body = r.text().await.unwrap();
    assert!(!body.contains("eyJ"), "{body}");

    // The public route (ext_authz off): Envoy strips a forged token header.
    let r = client
        .get(stack.url("/public/hello"))
        .header("x-cedargate-token", "forged.by.client")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert!(echo["headers"].get("x-cedargate-token").is_none(), "{echo}");

    // Nothing cedargate wrote (decision records, operational logs) holds a minted token.
    let written = stack.cedargate.lines.lock().unwrap().join("\n");
    assert!(!written.contains(token.rsplit('.').next().unwrap()));
}

/// The claims of a JWT, unverified (to read the real IdP's `sub`).
fn jwt_claims(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}
