//! Fault injection with the real Envoy and the real IdP: IdP outage and recovery, key rotation
//! under traffic, a flood of forged `kid`s, and a broken policy pushed during traffic. Each test
//! waits on conditions with deadlines and prints the figures it measured (`--nocapture`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::stack::Stack;
use crate::support::{key, repo, sign_raw};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

async fn status(client: &reqwest::Client, url: &str, token: &str) -> u16 {
    client
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn admin(stack: &Stack, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("http://127.0.0.1:{}{path}", stack.cedargate_admin))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Steady traffic in the background: one request at a time, statuses with their times.
struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, u16)>>,
}

impl Traffic {
    fn start(url: String, token: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let c = client();
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                seen.push((Instant::now(), status(&c, &url, &token).await));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        });
        Traffic { stop, task }
    }

    async fn finish(self) -> Vec<(Instant, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_outage_keeps_keys_until_max_staleness_then_fails_closed_and_recovers() {
    let mut stack = Stack::start_with(|yaml| {
        yaml.replace(
            "    leeway_seconds: 30\n",
            "    leeway_seconds: 30\n    refresh_seconds: 1\n    min_refresh_seconds: 1\n    max_staleness_seconds: 4\n",
        )
    });
    let alice = stack.idp.user("alice");
    let url = stack.url("/orders/1");
    let traffic = Traffic::start(url.clone(), alice.clone());
    tokio::time::sleep(Duration::from_millis(500)).await; // some traffic before the fault

    let killed = Instant::now();
    stack.idp.stop();
    // Wait for the issuer to fail closed (deadline: staleness 4 s + refresh 1 s + slack).
    let deadline = killed + Duration::from_secs(15);
    let c = client();
    while status(&c, &url, &alice).await != 401 {
        assert!(
            Instant::now() < deadline,
            "tokens never failed closed after the IdP died"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failed_closed_after = killed.elapsed();
    let (ready, body) = admin(&stack, "/readyz").await;
    assert_eq!(
        ready, 503,
        "readiness must be false while keys are stale: {body}"
    );
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("stale") && reasons.contains("demo-idp"),
        "{reasons}"
    );

    stack.idp.restart();
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(15);
    while status(&c, &url, &alice).await != 200 {
        assert!(
            Instant::now() < deadline,
            "no recovery after the IdP came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_after = restarted.elapsed();
    assert_eq!(admin(&stack, "/readyz").await.0, 200);
    let seen = traffic.finish().await;

    // Until the keys went stale every request succeeded; no 5xx from Envoy at any point.
    let stale_at = killed + failed_closed_after;
    let before: Vec<u16> = seen
        .iter()
        .filter(|(t, _)| *t < stale_at - Duration::from_millis(300))
        .map(|(_, s)| *s)
        .collect();
    assert!(before.len() > 20, "too little traffic: {}", before.len());
    assert!(
        before.iter().all(|s| *s == 200),
        "a request failed before max staleness: {before:?}"
    );
    assert!(
        seen.iter().all(|(_, s)| *s == 200 || *s == 401),
        "unexpected statuses"
    );
    let during_outage = seen
        .iter()
        .filter(|(t, s)| *t > killed && *t < stale_at && *s == 200)
        .count();
    eprintln!(
        "idp outage: {} requests OK during the outage before staleness; failed closed {:?} after the kill \
         (max_staleness 4 s); recovered {:?} after the IdP restarted; {} requests in all",
        during_outage,
        failed_closed_after,
        recovered_after,
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_under_traffic_fails_no_request() {
    let stack = Stack::start();
    let before = stack.idp.user("alice");
    let url = stack.url("/orders/1");
    let traffic = Traffic::start(url.clone(), before.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;

    stack.idp.rotate_signing_key().await;

    let after = stack.idp.user("alice");
    let started = Instant::now();
    assert_eq!(
        status(&client(), &url, &after).await,
        200,
        "first new-kid request"
    );
    let first = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = traffic.finish().await;
    assert!(
        seen.iter().all(|(_, s)| *s == 200),
        "a request failed during rotation"
    );
    eprintln!(
        "key rotation: first new-kid request {first:?}; {} old-key requests during rotation, all 200",
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_kids_does_not_reach_the_idp() {
    let stack = Stack::start();
    let alice = stack.idp.user("alice");
    let hits_before = stack.idp.jwks_hits();
    let url = stack.url("/orders/1");
    let traffic = Traffic::start(url.clone(), alice.clone());

    let now = crate::support::now();
    let claims = json!({"iss": stack.idp.issuer, "sub": "mallory", "aud": "https://api.cedargate.test", "exp": now + 600});
    let signer = key("ec");
    let c = client();
    let total = 10_000u64;
    let unauthorized = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    let workers_n = 40u64;
    for w in 0..workers_n {
        let (c, url, claims, unauthorized) =
            (c.clone(), url.clone(), claims.clone(), unauthorized.clone());
        let tokens: Vec<String> = (0..total / workers_n)
            .map(|i| {
                let kid = format!("forged-{w}-{i}");
                sign_raw(
                    &json!({"alg": "ES256", "kid": kid}),
                    &claims,
                    &signer,
                    jsonwebtoken::Algorithm::ES256,
                )
            })
            .collect();
        workers.push(tokio::spawn(async move {
            for t in tokens {
                if status(&c, &url, &t).await == 401 {
                    unauthorized.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let seen = traffic.finish().await;
    let fetches = stack.idp.jwks_hits() - hits_before;
    let sent = total / workers_n * workers_n;
    assert_eq!(
        unauthorized.load(Ordering::Relaxed),
        sent,
        "every forged kid must get 401"
    );
    // One refetch per kid_refetch_min_interval (10 s) at most, plus one in flight at the start.
    let bound = elapsed.as_secs() / 10 + 2;
    assert!(
        fetches <= bound,
        "{fetches} JWKS fetches for {sent} forged kids (bound {bound})"
    );
    assert!(
        seen.iter().all(|(_, s)| *s == 200),
        "legitimate traffic was affected"
    );
    eprintln!(
        "kid flood: {sent} forged-kid requests in {elapsed:?} ({:.0}/s) -> {fetches} JWKS fetches at the IdP; \
         {} legitimate requests meanwhile, all 200",
        sent as f64 / elapsed.as_secs_f64(),
        seen.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_policy_during_traffic_keeps_the_last_good_set() {
    let policies = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let dir = policies.path().to_path_buf();
    let stack = Stack::start_with(|yaml| {
        let from = format!("policy_dir: {}", repo().join("policies").display());
        assert!(yaml.contains(&from));
        yaml.replace(&from, &format!("policy_dir: {}", dir.display()))
    });
    let alice = stack.idp.user("alice");
    let mallory = stack.idp.user("mallory");
    let url = stack.url("/orders/1");
    let traffic = Traffic::start(url.clone(), alice.clone());
    let (_, policy) = admin(&stack, "/policy").await;
    let version = policy["version"].as_str().unwrap().to_string();

    // A broken file lands: the old set stays in force and the error is visible.
    std::fs::write(
        dir.join("broken.cedar"),
        "permit (principal, action, resource) when { principal.x ==  };\n",
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let error = loop {
        let (_, p) = admin(&stack, "/policy").await;
        if let Some(e) = p["reload"]["last_error"].as_str() {
            break e.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the broken policy was never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        error.contains("broken.cedar:1:"),
        "error must name file:line: {error}"
    );
    let (_, p) = admin(&stack, "/policy").await;
    assert_eq!(p["version"], version, "the old set must stay in force");
    assert_eq!(admin(&stack, "/readyz").await.0, 200, "still ready");
    assert_eq!(status(&client(), &url, &mallory).await, 403);

    // The corrected file (which also opens orders to mallory) takes effect within 2 s.
    let fixed_at = Instant::now();
    std::fs::write(
        dir.join("broken.cedar"),
        "@id(\"mallory-reads-orders\")\npermit (principal == User::\"mallory\", action == Action::\"GET /orders/{id}\", resource == Service::\"orders\");\n",
    )
    .unwrap();
    let deadline = fixed_at + Duration::from_secs(2);
    while status(&client(), &url, &mallory).await != 200 {
        assert!(
            Instant::now() < deadline,
            "the corrected policy did not take effect within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = fixed_at.elapsed();
    let (_, p) = admin(&stack, "/policy").await;
    assert_ne!(p["version"], version);
    assert!(p["reload"]["last_error"].is_null());
    assert!(p["reload"]["failed"].as_u64().unwrap() >= 1);

    // SIGHUP reloads too (here: nothing changed, the version stays).
    let ok_before = p["reload"]["ok"].as_u64().unwrap();
    stack.cedargate.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, p) = admin(&stack, "/policy").await;
        if p["reload"]["ok"].as_u64().unwrap() > ok_before {
            assert_eq!(p["reload"]["last_trigger"], "sighup");
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let seen = traffic.finish().await;
    assert!(
        seen.iter().all(|(_, s)| *s == 200),
        "a request failed during the policy push"
    );
    eprintln!(
        "policy push: broken file kept version {version}; fix took effect after {took:?}; {} requests, all 200",
        seen.len()
    );
}
