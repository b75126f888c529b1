//! The verified-token cache through the real Envoy and a real oidc-provider (issue 15): a token
//! that cedargate verified and then served from its cache (`token.cached` in the record) is
//! refused once it expires, and once its signing key leaves the IdP's JWKS. These are the two
//! promises of the cache-hit check in `crates/server/src/jwt.rs` (`exp` and the key-set
//! version); without them a cached token would outlive its `exp` or its key by up to the cache's
//! 300 s bound.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::stack::{Idp, Stack, node};
use crate::support::{bearer, get_decided, jwt_part};

/// Starts the stack with one more issuer, `cache-idp` (a real oidc-provider whose access tokens
/// live `ttl_seconds`), trusted with no leeway and keys refreshed every second.
fn stack_with_cache_idp(ttl_seconds: u32) -> (Stack, Idp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let idp = Idp::start(dir.path(), "cache-idp", ttl_seconds);
    let issuer = idp.issuer.clone();
    let stack = Stack::start_with(|yaml| {
        let edited = yaml.replacen(
            "\n\nmtls:",
            &format!(
                "\n  - name: cache-idp\n    issuer: {issuer}\n    audiences: [https://api.cedargate.test]\n    algorithms: [ES256]\n    leeway_seconds: 0\n    refresh_seconds: 1\n    min_refresh_seconds: 1\n    principal: {{ groups_claim: groups }}\n\nmtls:"
            ),
            1,
        );
        assert_ne!(edited, yaml, "no place for the cache-idp issuer");
        edited
    });
    (stack, idp, dir)
}

/// `GET /orders/1` with `token` through Envoy: the status and the decision record.
async fn ask(stack: &Stack, token: &str) -> (u16, Value) {
    let (status, id) = get_decided(
        &stack.url("/orders/1"),
        &[("authorization", &bearer(token))],
    )
    .await;
    (status, stack.record(&id))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_once_it_expires() {
    let (stack, idp, _dir) = stack_with_cache_idp(5);
    let token = idp.user("alice");
    let exp = jwt_part(&token, 1)["exp"].as_u64().unwrap();

    // Ask every 100 ms until refused (deadline: 3 s past `exp`).
    let mut served_from_cache = 0;
    let mut verified = 0;
    let refused = loop {
        let sent = unix_now();
        let (status, record) = ask(&stack, &token).await;
        if status != 200 {
            break (sent, status, record);
        }
        // An allow is only ever given while `exp` has not passed (no leeway: the second of
        // `exp` itself is still valid).
        assert!(
            sent < (exp + 1) as f64,
            "allowed at {sent:.3}, after exp {exp}: {record}"
        );
        if record["token"]["cached"] == true {
            served_from_cache += 1;
        } else {
            verified += 1;
        }
        assert!(
            unix_now() < (exp + 3) as f64,
            "the token is still accepted 3 s after its exp"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (sent, status, record) = refused;
    assert!(
        served_from_cache > 0,
        "no Check was served from the token cache ({verified} verified): the test proves nothing"
    );
    assert_eq!(status, 401, "{record}");
    assert_eq!(record["reason"], "token_expired", "{record}");
    // Refused no earlier than the token's own `exp` says.
    assert!(sent >= exp as f64, "refused at {sent:.3}, before exp {exp}");
    eprintln!(
        "token_cache: {verified} verified + {served_from_cache} cached allows, then refused \
         {:.0} ms after exp",
        (sent - exp as f64) * 1000.0
    );
    // And it stays refused.
    let (status, record) = ask(&stack, &token).await;
    assert_eq!(
        (status, record["reason"].clone()),
        (401, json!("token_expired"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_token_is_refused_once_its_key_leaves_the_jwks() {
    let (stack, idp, _dir) = stack_with_cache_idp(3600);
    let token = idp.user("alice");
    let (status, first) = ask(&stack, &token).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token"]["cached"], false, "{first}");
    let (status, second) = ask(&stack, &token).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["token"]["cached"], true, "{second}");

    // The IdP now signs with a new key and publishes only that one.
    let out = node("idp/keys/gen-key.mjs").output().unwrap();
    let new_key: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(&idp.keys, json!({ "keys": [new_key] }).to_string()).unwrap();
    let reloaded = reqwest::Client::new()
        .post(format!("{}/test/reload-keys", idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(reloaded.status().is_success());
    let removed = Instant::now();

    // cedargate refreshes every second: within a few seconds the cached token must be refused
    // (the cache alone would keep it for 300 s).
    let deadline = removed + Duration::from_secs(10);
    let record = loop {
        let (status, record) = ask(&stack, &token).await;
        if status != 200 {
            assert_eq!(status, 401, "{record}");
            break record;
        }
        assert!(
            Instant::now() < deadline,
            "the cached token is still accepted 10 s after its key left the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "token_cache: cached token refused {:?} after its key left the JWKS",
        removed.elapsed()
    );
    assert_eq!(record["reason"], "token_unknown_kid", "{record}");
    // A token signed with the new key is accepted: the refusal is about the old key only.
    let fresh = idp.user("alice");
    assert_eq!(jwt_part(&fresh, 0)["kid"], new_key["kid"]);
    let (status, record) = ask(&stack, &fresh).await;
    assert_eq!(status, 200, "{record}");
}
