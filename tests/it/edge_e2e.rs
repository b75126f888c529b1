//! Hardening at the edge, through the real Envoy and the real oidc-provider (issue 15): header
//! names with `_` refused by Envoy before they can reach the upstream beside cedargate's identity
//! header; the per-issuer token options (`require_typ`, `max_token_lifetime_seconds`,
//! `reject_future_iat`) judged on real RFC 9068 access tokens; a cached token refused once its
//! signing key leaves the IdP's JWKS; and probes refused before a Cedar request exists
//! (`no_route`, a malformed token, `headers_too_large`) recorded with their method and path.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{Stack, node};
use crate::support::{bearer, jwt_part};

fn client(http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

async fn get(stack: &Stack, http2: bool, headers: &[(&str, &str)]) -> (u16, String) {
    try_get(stack, http2, headers).await.unwrap()
}

async fn try_get(
    stack: &Stack,
    http2: bool,
    headers: &[(&str, &str)],
) -> Result<(u16, String), reqwest::Error> {
    let mut req = client(http2).get(stack.url("/orders/1"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await?;
    Ok((r.status().as_u16(), r.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_with_underscores_never_reach_the_upstream() {
    let stack = Stack::start();
    let alice = stack.idp.user("alice");
    let upstream = "cluster.app.upstream_rq_total";
    for http2 in [false, true] {
        // The control: the same request without the smuggled header reaches the upstream.
        let before = stack.envoy_stat(upstream);
        let (status, body) = get(&stack, http2, &[("authorization", &bearer(&alice))]).await;
        assert_eq!(status, 200, "http2={http2}: {body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["headers"]["x-cedargate-principal"], "User::\"alice\"");
        assert_eq!(stack.envoy_stat(upstream), before + 1, "http2={http2}");
        // Its record is written (the log is asynchronous) before the count below is taken.
        let control = echo["headers"]["x-cedargate-decision-id"].as_str().unwrap();
        stack.record(control);

        for smuggled in ["x_cedargate_principal", "x-cedargate_principal"] {
            let records = stack.records().len();
            let before = stack.envoy_stat(upstream);
            let answer = try_get(
                &stack,
                http2,
                &[
                    ("authorization", &bearer(&alice)),
                    (smuggled, "User::\"root\""),
                ],
            )
            .await;
            // HTTP/1.1 gets a 400; over HTTP/2 Envoy resets the stream.
            match answer {
                // The body is never printed: on a regression it is the upstream's echo, with
                // the caller's token in it.
                Ok((status, body)) => {
                    assert_eq!(
                        status, 400,
                        "http2={http2} {smuggled} was answered {status}"
                    );
                    assert!(
                        !body.contains("root"),
                        "http2={http2} {smuggled} reached the upstream"
                    );
                }
                Err(e) => assert!(http2, "HTTP/1.1 {smuggled}: {e}"),
            }
            assert_eq!(
                stack.envoy_stat(upstream),
                before,
                "http2={http2} {smuggled} reached the upstream"
            );
            // Refused by Envoy's codec, before ext_authz: cedargate was never asked.
            assert_eq!(stack.records().len(), records, "http2={http2} {smuggled}");
        }
    }
    let rejected = stack.envoy_stat("http1.requests_rejected_with_underscores_in_headers")
        + stack.envoy_stat("http2.requests_rejected_with_underscores_in_headers");
    assert_eq!(rejected, 4, "Envoy's own count of rejections");
}

/// The reason in the record of a 401 answer.
fn reason(stack: &Stack, status: u16, body: &str) -> String {
    assert_eq!(status, 401, "{body}");
    let id = serde_json::from_str::<Value>(body).unwrap()["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    stack.record(&id)["reason"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_options_and_cached_tokens_through_the_real_idp() {
    let stack = Stack::start_with(|yaml| {
        yaml
            // The demo IdP: every option on, at the edge its real tokens meet (lifetime 3600 s);
            // keys refreshed every second so a key's removal is seen at once.
            .replacen(
                "    leeway_seconds: 30\n",
                "    leeway_seconds: 30\n    require_typ: at+jwt\n    max_token_lifetime_seconds: 3600\n    reject_future_iat: true\n    refresh_seconds: 1\n    min_refresh_seconds: 1\n",
                1,
            )
            // The short IdP's tokens live 2 s: longer than this allows.
            .replace(
                "    leeway_seconds: 0\n",
                "    leeway_seconds: 0\n    max_token_lifetime_seconds: 1\n",
            )
            // The foreign IdP, trusted here, but only for plain `JWT`s, which it never issues.
            .replace(
                "\n\nmtls:",
                "\n  - name: foreign\n    issuer: ${FOREIGN_ISSUER}\n    audiences: [https://api.cedargate.test]\n    algorithms: [ES256]\n    require_typ: JWT\n\nmtls:",
            )
    });

    let alice = stack.idp.user("alice");
    assert_eq!(jwt_part(&alice, 0)["typ"], "at+jwt");
    let claims = jwt_part(&alice, 1);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );
    let (status, body) = get(&stack, false, &[("authorization", &bearer(&alice))]).await;
    assert_eq!(status, 200, "a real at+jwt within every bound: {body}");

    let short = stack.short_idp.user("alice");
    let (status, body) = get(&stack, false, &[("authorization", &bearer(&short))]).await;
    assert_eq!(reason(&stack, status, &body), "token_lifetime_too_long");

    let foreign = stack.foreign_idp.user("alice");
    let (status, body) = get(&stack, false, &[("authorization", &bearer(&foreign))]).await;
    assert_eq!(reason(&stack, status, &body), "token_wrong_typ");

    // alice's token is cached now (it was accepted). Its key leaves the JWKS: the IdP signs
    // with a new key and publishes only that one.
    let out = node("idp/keys/gen-key.mjs").output().unwrap();
    let new_key: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(
        &stack.idp.keys,
        serde_json::json!({ "keys": [new_key] }).to_string(),
    )
    .unwrap();
    let reloaded = reqwest::Client::new()
        .post(format!("{}/test/reload-keys", stack.idp.issuer))
        .send()
        .await
        .unwrap();
    assert!(reloaded.status().is_success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let started = Instant::now();
    let refused = loop {
        let (status, body) = get(&stack, false, &[("authorization", &bearer(&alice))]).await;
        if status != 200 {
            break reason(&stack, status, &body);
        }
        assert!(
            Instant::now() < deadline,
            "the cached token is still accepted after its key left the JWKS"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "cached token refused {:?} after its key left the JWKS",
        started.elapsed()
    );
    assert_eq!(refused, "token_unknown_kid");
    let fresh = stack.idp.user("alice");
    assert_eq!(jwt_part(&fresh, 0)["kid"], new_key["kid"]);
    let (status, body) = get(&stack, false, &[("authorization", &bearer(&fresh))]).await;
    assert_eq!(status, 200, "a token signed with the new key: {body}");
}

/// Over HTTP/2 a client can send a lowercase method, and Envoy forwards it as sent: cedargate
/// must decide on that method, not an upper-cased copy (issue 15). Before the gRPC edge kept the
/// method as forwarded, alice's `get /orders/1` was allowed as `GET` and reached the upstream as
/// `get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lowercase_method_over_http2_is_decided_as_forwarded() {
    let stack = Stack::start();
    let alice = stack.idp.user("alice");
    let upstream = "cluster.app.upstream_rq_total";
    let before = stack.envoy_stat(upstream);
    let r = client(true)
        .request(
            reqwest::Method::from_bytes(b"get").unwrap(),
            stack.url("/orders/1"),
        )
        .header("authorization", bearer(&alice))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    // The routes name `GET`; `get` is another method, which no route takes: denied, and the
    // upstream never sees it.
    assert_eq!(status, 403, "lowercase get was answered {status}");
    assert_eq!(stack.envoy_stat(upstream), before);
    let id = serde_json::from_str::<Value>(&body).unwrap()["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = stack.record(&id);
    assert_eq!(record["reason"], "no_route", "{record}");
}

/// The decision cache through the real Envoy: a repeated Check (another request id, another
/// time: facts the shipped policies don't read) is answered from the cache and its record says
/// so, with the first answer's decision and policies; another principal's Check is evaluated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_checks_are_answered_from_the_decision_cache_and_say_so() {
    let stack = Stack::start();
    // The record of one GET /orders/1 with this token (the upstream echoes the decision id).
    let check = |token: String| {
        let stack = &stack;
        async move {
            let r = client(false)
                .get(stack.url("/orders/1"))
                .header("authorization", bearer(&token))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let id = body["headers"]["x-cedargate-decision-id"]
                .as_str()
                .or(body["decision_id"].as_str())
                .unwrap()
                .to_string();
            (status, stack.record(&id))
        }
    };
    let alice = stack.idp.user("alice");
    let mut records = Vec::new();
    for _ in 0..3 {
        let (status, record) = check(alice.clone()).await;
        assert_eq!(status, 200, "{record}");
        records.push(record);
    }
    let cached: Vec<bool> = records
        .iter()
        .map(|r| r["from_cache"].as_bool().unwrap_or(false))
        .collect();
    // The first is evaluated; the repeats (another decision id, another time) are served, with
    // the first answer.
    assert_eq!(cached, [false, true, true], "{records:#?}");
    for r in &records {
        assert_eq!(r["decision"], "allow");
        assert_eq!(r["policies"], records[0]["policies"]);
    }
    // Another principal: evaluated, not served from alice's answer.
    let (status, record) = check(stack.idp.user("mallory")).await;
    assert!(!record["from_cache"].as_bool().unwrap_or(false), "{record}");
    assert_eq!(Some(u64::from(status)), record["status"].as_u64());
}

/// The record of a Check refused before a Cedar request was built, by the decision id in the
/// JSON body of the answer.
fn refused_record(stack: &Stack, status: u16, body: &str, want: u16) -> Value {
    assert_eq!(status, want, "{body}");
    let id = serde_json::from_str::<Value>(body).unwrap()["decision_id"]
        .as_str()
        .unwrap()
        .to_string();
    let record = stack.record(&id);
    assert!(record.get("cedar").is_none(), "{record}");
    record
}

/// `no_route`, a malformed token and `headers_too_large` are denied before any Cedar request
/// exists; their records still say what was asked for (method, host, raw path, allow-listed query
/// only), cut like header values, with no secret from the query string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_probes_record_method_and_path() {
    let stack = Stack::start_with(|yaml| {
        assert!(yaml.contains("  max_header_bytes: 65536\n"));
        yaml.replace("  max_header_bytes: 65536\n", "  max_header_bytes: 16384\n")
            .replace(
                "\ndecision_log:\n",
                "\ndecision_log:\n  max_header_value_bytes: 1024\n",
            )
    });
    let http = client(false);
    let secret = "s3cr3t-query-token";
    let send = |path: String, headers: Vec<(&'static str, String)>| {
        let mut req = http.get(stack.url(&path));
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // An Envoy route (service orders) with no cedargate route: no_route, anonymous → 401.
    let (status, body) = send(
        format!("/orders/1/items/2?limit=5&access_token={secret}&limit=9"),
        vec![],
    )
    .await;
    let record = refused_record(&stack, status, &body, 401);
    assert_eq!(record["reason"], "no_route");
    assert_eq!(record["request"]["method"], "GET");
    assert_eq!(record["request"]["host"], "127.0.0.1");
    assert_eq!(record["request"]["path"], "/orders/1/items/2");
    // Only the allow-listed parameter (`context.query: [limit]`), first value, as in `cedar`.
    assert_eq!(
        record["request"]["query"],
        serde_json::json!({"limit": "5"})
    );
    assert!(!record.to_string().contains(secret), "{record}");

    // A malformed credential: 401 before mapping; the path it probed is in the record.
    let (status, body) = send(
        format!("/payments/7?access_token={secret}"),
        vec![("authorization", "Bearer not-a-jwt".to_string())],
    )
    .await;
    let record = refused_record(&stack, status, &body, 401);
    assert!(
        record["reason"].as_str().unwrap().starts_with("token_"),
        "{record}"
    );
    assert_eq!(record["request"]["method"], "GET");
    assert_eq!(record["request"]["path"], "/payments/7");
    assert!(record["request"].get("query").is_none(), "{record}");
    assert!(!record.to_string().contains(secret), "{record}");
    assert!(!record.to_string().contains("not-a-jwt"), "{record}");

    // Headers over `limits.max_header_bytes`: 403 headers_too_large, with its request line, and
    // the 20 KB header itself cut to 1 KiB in the record.
    let (status, body) = send(
        "/orders/42".to_string(),
        vec![("user-agent", "u".repeat(20_000))],
    )
    .await;
    let record = refused_record(&stack, status, &body, 403);
    assert_eq!(record["reason"], "headers_too_large");
    assert_eq!(record["request"]["path"], "/orders/42");
    assert_eq!(
        record["headers"]["user-agent"],
        format!("{}…[cut from 20000 bytes]", "u".repeat(1024))
    );
    assert_eq!(
        record["truncated"],
        serde_json::json!(["/headers/user-agent"])
    );

    // A long probing path is cut like a header value, and marked.
    let long = format!("/orders/1/{}", "a".repeat(3_000));
    let (status, body) = send(long.clone(), vec![]).await;
    let record = refused_record(&stack, status, &body, 401);
    assert_eq!(record["reason"], "no_route");
    assert_eq!(
        record["request"]["path"],
        format!("{}…[cut from {} bytes]", &long[..1024], long.len())
    );
    assert_eq!(record["truncated"], serde_json::json!(["/request/path"]));
}
