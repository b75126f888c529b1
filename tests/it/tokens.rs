//! Token checks, data-driven, through a real gRPC Check against cedargate with keys served over
//! HTTP: every bad token is a 401 with `error="invalid_token"` and its own reason code in the
//! decision record; good tokens of every allowed algorithm are accepted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::support::*;

fn header(alg: &str, kid: &str) -> Value {
    json!({"alg": alg, "typ": "at+jwt", "kid": kid})
}

/// Cases: name, token, expected status, expected reason.
fn cases(iss: &str) -> Vec<(&'static str, String, u16, &'static str)> {
    let good = claims(iss, "alice", &["admins"]);
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        edit(&mut c);
        c
    };
    let es = |c: &Value| token(c);
    let rsa_public_pem = std::fs::read(fixture("rsa.pub.pem")).unwrap();
    let altered = {
        let t = es(&good);
        let parts: Vec<&str> = t.split('.').collect();
        let mut forged = good.clone();
        forged["sub"] = json!("root");
        use base64::Engine as _;
        let payload =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string().as_bytes());
        format!("{}.{}.{}", parts[0], payload, parts[2])
    };
    let unsigned = {
        use base64::Engine as _;
        let e = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        format!("{}.{}.", e(&json!({"alg": "none", "typ": "JWT"})), e(&good))
    };
    vec![
        ("valid ES256", es(&good), 200, "allow"),
        (
            "valid RS256",
            sign_raw(
                &header("RS256", "test-rsa"),
                &good,
                &key("rsa"),
                Algorithm::RS256,
            ),
            200,
            "allow",
        ),
        (
            "valid EdDSA",
            sign_raw(
                &header("EdDSA", "test-ed"),
                &good,
                &key("ed"),
                Algorithm::EdDSA,
            ),
            200,
            "allow",
        ),
        (
            "no kid: tried against the keys that fit the alg",
            sign_raw(
                &json!({"alg": "ES256"}),
                &good,
                &key("ec"),
                Algorithm::ES256,
            ),
            200,
            "allow",
        ),
        (
            "expired beyond leeway",
            es(&with(&|c| c["exp"] = json!(now() - 120))),
            401,
            "token_expired",
        ),
        (
            "nbf in the future",
            es(&with(&|c| c["nbf"] = json!(now() + 600))),
            401,
            "token_not_yet_valid",
        ),
        (
            "wrong aud",
            es(&with(&|c| c["aud"] = json!("https://other.example"))),
            401,
            "token_wrong_audience",
        ),
        (
            "aud missing",
            es(&with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            })),
            401,
            "token_missing_claim",
        ),
        (
            "wrong iss (an issuer we do not trust)",
            es(&with(&|c| c["iss"] = json!("https://evil.example"))),
            401,
            "token_unknown_issuer",
        ),
        (
            "unknown kid",
            sign_raw(
                &header("ES256", "nobody-knows"),
                &good,
                &key("ec"),
                Algorithm::ES256,
            ),
            401,
            "token_unknown_kid",
        ),
        ("alg none", unsigned, 401, "token_alg_not_allowed"),
        (
            "HS256 signed with the RSA public key",
            sign_raw(
                &header("HS256", "test-rsa"),
                &good,
                &EncodingKey::from_secret(&rsa_public_pem).unwrap(),
                Algorithm::HS256,
            ),
            401,
            "token_alg_not_allowed",
        ),
        (
            "ES384 is not in the allow-list",
            sign_raw(
                &header("ES384", "test-ec"),
                &good,
                &key("ec"),
                Algorithm::ES256,
            ),
            401,
            "token_alg_not_allowed",
        ),
        (
            "claims altered after signing",
            altered,
            401,
            "token_bad_signature",
        ),
        (
            "signed by a key that is not the kid's",
            sign_raw(
                &header("RS256", "test-rsa"),
                &good,
                &key("foreign-rsa"),
                Algorithm::RS256,
            ),
            401,
            "token_bad_signature",
        ),
        (
            "jku pointing at the attacker's key is ignored",
            sign_raw(
                &json!({"alg": "RS256", "kid": "attacker", "jku": "http://127.0.0.1:1/jwks"}),
                &good,
                &key("foreign-rsa"),
                Algorithm::RS256,
            ),
            401,
            "token_unknown_kid",
        ),
        (
            "crit header",
            sign_raw(
                &json!({"alg": "ES256", "kid": "test-ec", "crit": ["exp"]}),
                &good,
                &key("ec"),
                Algorithm::ES256,
            ),
            401,
            "token_crit_unsupported",
        ),
        (
            "exp missing",
            es(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            })),
            401,
            "token_missing_claim",
        ),
        (
            "exp as a string",
            es(&with(&|c| c["exp"] = json!((now() + 3600).to_string()))),
            401,
            "token_invalid_claim",
        ),
        ("not a JWT", "abc.def".into(), 401, "token_malformed"),
        ("garbage parts", "a.b.c".into(), 401, "token_malformed"),
        (
            "exactly limits.max_token_bytes: accepted (the bound is inclusive)",
            exactly(&good, 8192),
            200,
            "allow",
        ),
        (
            "one byte over limits.max_token_bytes",
            exactly(&good, 8193),
            401,
            "token_too_large",
        ),
        (
            "larger than the limit",
            format!("{}.{}.x", "a".repeat(9000), "b"),
            401,
            "token_too_large",
        ),
        (
            "principal id claim missing",
            es(&with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
                c.as_object_mut().unwrap().remove("client_id");
            })),
            401,
            "token_missing_principal_claim",
        ),
    ]
}

/// A valid ES256 token of exactly `len` bytes: `good` with a `pad` claim (and, where base64
/// skips a length, a padded header) sized to fit.
fn exactly(good: &Value, len: usize) -> String {
    for extra in 0..3 {
        for pad in 0..len {
            let mut c = good.clone();
            c["pad"] = json!("p".repeat(pad));
            let t = sign_raw(
                &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-ec", "x": "h".repeat(extra)}),
                &c,
                &key("ec"),
                Algorithm::ES256,
            );
            if t.len() == len {
                return t;
            }
            if t.len() > len {
                break;
            }
        }
    }
    panic!("no token of exactly {len} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_token_case_gets_its_status_and_reason() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let mut failures = Vec::new();
    let cases = cases(&idp.issuer);
    let count = cases.len();
    for (name, token, status, reason) in cases {
        let auth = bearer(&token);
        let answer = gate
            .check(check_request(
                "orders",
                "GET",
                "/orders/1",
                &[("authorization", &auth)],
            ))
            .await;
        let record = gate.record(answer.decision_id()).await;
        let challenge = answer.headers.get("www-authenticate").cloned();
        let ok = answer.status == status
            && record["reason"] == reason
            && record["status"] == status
            && (status != 401
                || (challenge.as_deref()
                    == Some(r#"Bearer realm="cedargate", error="invalid_token""#)
                    && answer.grpc_code == 16));
        if !ok {
            failures.push(format!(
                "{name}: want {status} {reason}, got {} {} (challenge {challenge:?})",
                answer.status, record["reason"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // No token ever reaches the decision log.
    let log = gate.log_bytes();
    for (_, token, _, _) in super::tokens::cases(&idp.issuer) {
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(
                !log.contains(signature),
                "a token signature leaked into the log"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_a_401_challenge_not_anonymous() {
    let idp = FakeIdp::start().await;
    let mut gate = Gate::start(&idp.issuer).await;
    let answer = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/status",
            &[("authorization", "Basic dXNlcjpwYXNzd29yZA==")],
        ))
        .await;
    assert_eq!(answer.status, 401);
    // RFC 6750 §3.1: another scheme gets a bare challenge, no error code.
    assert_eq!(
        answer.headers["www-authenticate"],
        r#"Bearer realm="cedargate""#
    );
    let record = gate.record(answer.decision_id()).await;
    assert_eq!(record["reason"], "unsupported_auth_scheme");
    assert!(!gate.log_bytes().contains("dXNlcjpwYXNzd29yZA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_kid_is_fetched_once_and_a_kid_flood_does_not_reach_the_idp() {
    use std::sync::atomic::Ordering;
    let idp = FakeIdp::start().await;
    // Start with the EdDSA key unpublished.
    let full: Value = serde_json::from_str(&idp.jwks.read().unwrap()).unwrap();
    let without_ed = json!({"keys": full["keys"].as_array().unwrap().iter()
        .filter(|k| k["kid"] != "test-ed").cloned().collect::<Vec<_>>()});
    *idp.jwks.write().unwrap() = without_ed.to_string();
    // Room for the whole flood on the one connection: this test is about key fetching, not
    // shedding (checks.rs proves that beyond the limit Checks are shed, not queued). With the
    // default 256, a slow machine keeps more than 256 of the 500 in flight and sheds the rest.
    let mut gate = Gate::start_with(&idp.issuer, |yaml| {
        let raised = yaml.replace(
            "max_concurrent_checks: 256 ",
            "max_concurrent_checks: 1024 ",
        );
        assert_ne!(raised, yaml, "no limits.max_concurrent_checks to raise");
        raised
    })
    .await;
    let hits_at_start = idp.jwks_hits.load(Ordering::SeqCst);
    assert_eq!(hits_at_start, 1);

    // The IdP publishes and signs with a new key: the first token is accepted via one refetch.
    *idp.jwks.write().unwrap() = full.to_string();
    let good = claims(&idp.issuer, "alice", &["admins"]);
    let rotated = sign_raw(
        &header("EdDSA", "test-ed"),
        &good,
        &key("ed"),
        Algorithm::EdDSA,
    );
    let auth = bearer(&rotated);
    let answer = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &auth)],
        ))
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(idp.jwks_hits.load(Ordering::SeqCst), 2);

    // 500 concurrent requests with random kids: at most one more fetch (rate limit), and a
    // legitimate token keeps working meanwhile.
    let mut tasks = Vec::new();
    for i in 0..500 {
        let mut client = gate.client.clone();
        let t = sign_raw(
            &header("ES256", &format!("bogus-{i}")),
            &good,
            &key("ec"),
            Algorithm::ES256,
        );
        tasks.push(tokio::spawn(async move {
            let auth = bearer(&t);
            let r = client
                .check(check_request(
                    "orders",
                    "GET",
                    "/orders/1",
                    &[("authorization", &auth)],
                ))
                .await;
            Answer::from(r.unwrap().into_inner()).status
        }));
    }
    let legit = gate
        .check(check_request(
            "orders",
            "GET",
            "/orders/1",
            &[("authorization", &auth)],
        ))
        .await;
    assert_eq!(legit.status, 200);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let hits = idp.jwks_hits.load(Ordering::SeqCst);
    assert!(hits <= 3, "a kid flood caused {hits} JWKS fetches");
}

/// The `check_request` fuzz target's seeds (`fuzz/seeds/check_request/`) are the Envoy-shaped
/// requests these tests send, prost-encoded: with `UPDATE_SEEDS=1` they are rewritten; otherwise
/// each must decode and map to the request it was made from.
#[test]
fn check_request_fuzz_seeds_are_the_test_requests() {
    use prost::Message as _;
    let dir = repo().join("fuzz/seeds/check_request");
    let token = token(&claims("http://127.0.0.1:9400", "alice", &["admins"]));
    let auth = bearer(&token);
    let seeds = [
        (
            "get-order",
            check_request("orders", "GET", "/orders/1", &[("authorization", &auth)]),
        ),
        (
            "anonymous-status",
            check_request("orders", "GET", "/orders/status?limit=5#top", &[]),
        ),
        (
            "lowercase-method",
            check_request("orders", "get", "/orders/1", &[("user-agent", "curl")]),
        ),
        (
            "grpc",
            check_request(
                "health",
                "POST",
                "/grpc.health.v1.Health/Check",
                &[("content-type", "application/grpc")],
            ),
        ),
        (
            "basic",
            check_request(
                "payments",
                "POST",
                "/payments",
                &[("authorization", "Basic dXNlcjpwdw==")],
            ),
        ),
    ];
    if std::env::var_os("UPDATE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, request) in &seeds {
            std::fs::write(dir.join(name), request.encode_to_vec()).unwrap();
        }
    }
    for (name, request) in seeds {
        let bytes = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("seed {name}: {e} (UPDATE_SEEDS=1 writes it)"));
        let decoded =
            envoy_types::pb::envoy::service::auth::v3::CheckRequest::decode(&bytes[..]).unwrap();
        let mapped = cedargate_server::grpc::http_request(decoded);
        let want = cedargate_server::grpc::http_request(request);
        assert_eq!(
            (
                &mapped.method,
                &mapped.path,
                &mapped.query,
                &mapped.context_extensions
            ),
            (
                &want.method,
                &want.path,
                &want.query,
                &want.context_extensions
            ),
            "seed {name}"
        );
    }
}
