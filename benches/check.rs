//! Micro-benchmarks of the in-process Check path (criterion):
//!
//! - `verify/*`: bearer JWT verification (ES256, RS256, EdDSA), cache miss vs hit;
//! - `map`: request + identity → Cedar request;
//! - `evaluate`: Cedar evaluation with the example policy set, and with generated sets of 10 to
//!   1,000 policies (`…/unindexed`: the whole set, without the scope index, for comparison);
//! - `check/*`: the whole `Gate::check` (identity → decision → record), decision log off;
//! - `mint/*` and `check/es256/mint-*`: minting the upstream token (`upstream_token`) alone and
//!   inside a Check, fresh every time vs reused within `reuse_seconds`;
//! - `check/es256/provider-warm` against `check/es256/cache-hit`: a Check whose principal's
//!   entity comes from a warm `entity_provider` cache vs one without a provider;
//!   `check/es256/tenant-fetch` against `check/es256/tenant-none`: a Check whose resource is a
//!   new uid every time (a fetch per Check from an in-process provider) vs the same Checks
//!   without a provider, and `check/es256/tenant-none+get`, that Check followed by a plain GET
//!   of the provider in the same task (the bound's other side: a Check plus the provider's own
//!   latency); `provider/fetch`, the provider client's part of that (one fetch of a
//!   new uid); `evaluate/fetched-new`, the policy side (merging a fetched entity of a new uid);
//!   and `provider/get`, the provider's own round trip through a plain reqwest GET.
//!
//! Run: `cargo bench --bench check` (results in BENCHMARKS.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cedargate_core::config::Config;
use cedargate_core::identity::Identity;
use cedargate_core::policy::PolicySnapshot;
use cedargate_core::request::HttpRequest;
use cedargate_server::decision_log::DecisionLog;
use cedargate_server::gate::Gate;
use cedargate_server::jwks::Jwks;
use cedargate_server::jwt::Verifier;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

/// The allocator the `cedargate` binary ships with (src/main.rs), so that the figures are the
/// binary's: with glibc's, a fetching Check measured ~2× slower (arena trimming and re-faulting
/// pages between the worker and the HTTP client's task).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://issuer.bench.test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn config(cache: u64) -> Config {
    config_with(cache, "")
}

/// The bench config with `extra` appended (e.g. an `upstream_token` section).
fn config_with(cache: u64, extra: &str) -> Config {
    let example = std::fs::read_to_string(repo().join("cedargate.yaml")).unwrap();
    let yaml = example
        .replace("http://127.0.0.1:9400", ISSUER)
        .replace(
            "algorithms: [ES256, RS256]",
            &format!(
                "algorithms: [ES256, RS256, EdDSA]\n    jwks_file: {}",
                repo().join("tests/fixtures/keys/jwks.json").display()
            ),
        )
        .replace("capacity: 10000", &format!("capacity: {cache}"))
        .replace("output: stdout ", "output: off ")
        + extra;
    Config::parse(&yaml, &repo().join("cedargate.yaml")).unwrap()
}

fn token(alg: Algorithm, key: &str, kid: &str, n: u64) -> String {
    let pem = std::fs::read(repo().join(format!("tests/fixtures/keys/{key}.pem"))).unwrap();
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": format!("{alg:?}"), "typ": "at+jwt", "kid": kid});
    let claims = json!({
        "iss": ISSUER, "sub": "alice", "aud": "https://api.cedargate.test", "exp": now + 3600,
        "iat": now, "jti": format!("bench-{n}"), "client_id": "webapp",
        "scope": "orders:read orders:write", "groups": ["admins"], "tenant": "acme",
    });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap();
    format!("{message}.{sig}")
}

fn request(token: &str) -> HttpRequest {
    let mut headers = std::collections::HashMap::new();
    headers.insert("authorization".to_string(), format!("Bearer {token}"));
    headers.insert("user-agent".to_string(), "bench/1".to_string());
    headers.insert("x-request-id".to_string(), "bench".to_string());
    HttpRequest {
        request_id: "bench".into(),
        method: "GET".into(),
        path: "/orders/42".into(),
        query: "limit=5".into(),
        host: "api.example.test".into(),
        scheme: "http".into(),
        protocol: "HTTP/1.1".into(),
        headers,
        context_extensions: [("service".to_string(), "orders".to_string())]
            .into_iter()
            .collect(),
        source_ip: "127.0.0.1".parse().ok(),
        source_principal: None,
        header_bytes: 1200,
    }
}

fn gate(rt: &tokio::runtime::Runtime, cache: u64) -> Gate {
    gate_with(rt, config(cache))
}

fn gate_with(rt: &tokio::runtime::Runtime, config: Config) -> Gate {
    let provider = config
        .entity_provider
        .as_ref()
        .map(|p| cedargate_server::entity_provider::EntityProvider::new(p).unwrap());
    let cache = config.token_cache.capacity;
    let config = Arc::new(config);
    let jwks = Arc::new(Jwks::new(
        &config.issuers,
        cedargate_server::jwks::http_client().unwrap(),
    ));
    for issuer in jwks.issuers() {
        rt.block_on(issuer.refresh()).unwrap();
    }
    let policies = PolicySnapshot::load(&repo().join("policies")).unwrap();
    let log = rt
        .block_on(async { DecisionLog::start(&config.decision_log.output, 16) })
        .unwrap();
    let verifier = Verifier::new(jwks, cache, config.limits.max_token_bytes);
    let keys = config
        .upstream_token
        .as_ref()
        .map(|u| cedargate_server::mint::upstream_keys(u, None).unwrap());
    Gate::new(config, policies, keys, verifier, log).with_entity_provider(provider)
}

/// An entity provider on loopback, served by the bench's runtime: `GET /entities?type=T&id=I`
/// answers a `User` in `Group::"staff"` with a tenant, or a `Tenant` with its slug, as
/// `upstream/upstream.mjs --entities` would. Returns its URL.
/// The provider runs on a runtime of its own (its own thread), as a separate service would:
/// the bench's runtime only carries cedargate's side of a fetch.
fn provider() -> String {
    let rt = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap(),
    ));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = |uri: axum::http::Uri| async move {
        let query: std::collections::HashMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let (ty, id) = (&query["type"], &query["id"]);
        let entity = if ty == "Tenant" {
            json!({"uid": {"type": ty, "id": id}, "attrs": {"slug": "acme"}, "parents": []})
        } else {
            json!({"uid": {"type": ty, "id": id}, "attrs": {"tenant": "acme"},
                   "parents": [{"type": "Group", "id": "staff"}]})
        };
        axum::Json(json!([entity]))
    };
    let app = axum::Router::new().route("/entities", axum::routing::get(answer));
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/entities")
}

/// The example schema and entities with `rbac.cedar` (5 policies) and `generated`, loaded like
/// a policy folder.
fn policy_set(generated: &str) -> PolicySnapshot {
    let dir = tempfile::tempdir().unwrap();
    for file in ["cedargate.cedarschema", "entities.json", "rbac.cedar"] {
        std::fs::copy(repo().join("policies").join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(dir.path().join("generated.cedar"), generated).unwrap();
    PolicySnapshot::load(dir.path()).unwrap()
}

/// `n` policies over the schema's actions with mixed principal scopes (see `evaluate/1000-mixed`).
fn mixed_policies(n: usize) -> String {
    const ACTIONS: [&str; 10] = [
        "GET /orders/status",
        "GET /orders",
        "GET /orders/{id}",
        "POST /orders",
        "DELETE /orders/{id}",
        "GET /payments/{id}",
        "POST /payments",
        "GET /reports/{name}",
        "POST /grpc.health.v1.Health/{method}",
        "GET /chat/ws",
    ];
    (0..n)
        .map(|i| {
            let action = match i % 50 {
                0 => "action".to_string(),
                1 => format!(
                    "action in [Action::\"{}\", Action::\"{}\"]",
                    ACTIONS[i % 10],
                    ACTIONS[(i / 10) % 10]
                ),
                _ => format!("action == Action::\"{}\"", ACTIONS[(i / 3) % 10]),
            };
            match i % 3 {
                0 => format!(
                    "@id(\"user-{i}\")\npermit (principal == User::\"user-{i}\", {action}, resource == Service::\"orders\");\n"
                ),
                1 => format!(
                    "@id(\"team-{i}\")\npermit (principal in Group::\"team-{i}\", {action}, resource);\n"
                ),
                _ => format!(
                    "@id(\"tenant-{i}\")\npermit (principal is User, {action}, resource is Service)\nwhen {{ principal has tenant && principal.tenant == \"tenant-{i}\" }};\n"
                ),
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cached = gate(&rt, 10_000);
    let uncached = gate(&rt, 0);

    for (alg, key, kid) in [
        (Algorithm::ES256, "ec", "test-ec"),
        (Algorithm::RS256, "rsa", "test-rsa"),
        (Algorithm::EdDSA, "ed", "test-ed"),
    ] {
        let t = token(alg, key, kid, 1);
        c.bench_function(&format!("verify/{alg:?}/miss"), |b| {
            b.iter(|| {
                rt.block_on(uncached.verifier.verify(black_box(&t)))
                    .unwrap()
            })
        });
        c.bench_function(&format!("verify/{alg:?}/hit"), |b| {
            b.iter(|| rt.block_on(cached.verifier.verify(black_box(&t))).unwrap())
        });
    }

    let t = token(Algorithm::ES256, "ec", "test-ec", 2);
    let req = request(&t);
    let (verified, _) = rt.block_on(cached.verifier.verify(&t)).unwrap();
    let identity = Identity::Token {
        token: verified,
        cached: true,
    };
    let now = SystemTime::now();
    let config = cached.config();
    c.bench_function("map", |b| {
        b.iter(|| cedargate_core::mapping::map(&config, black_box(&identity), &req, now).unwrap())
    });
    let (cedar, _) = cedargate_core::mapping::map(&config, &identity, &req, now).unwrap();
    let policies = cached.active.load().policies.clone();
    c.bench_function("evaluate", |b| {
        b.iter(|| policies.evaluate(black_box(&cedar)).unwrap())
    });
    c.bench_function("evaluate/unindexed", |b| {
        b.iter(|| policies.evaluate_unindexed(black_box(&cedar)).unwrap())
    });

    // Cedar decision cost against policy-set size: N permits for N distinct users (none of them
    // the caller), on the action the request asks for, plus the example set.
    for n in [10usize, 100, 1_000] {
        let generated: String = (0..n.saturating_sub(5))
            .map(|i| {
                format!(
                    "@id(\"gen-{i}\")\npermit (principal == User::\"user-{i}\", action == Action::\"GET /orders/{{id}}\", resource == Service::\"orders\");\n"
                )
            })
            .collect();
        let snapshot = policy_set(&generated);
        assert_eq!(snapshot.info.len(), n);
        c.bench_function(&format!("evaluate/{n}-policies"), |b| {
            b.iter(|| snapshot.evaluate(black_box(&cedar)).unwrap())
        });
        if n == 1_000 {
            c.bench_function("evaluate/1000-policies/unindexed", |b| {
                b.iter(|| snapshot.evaluate_unindexed(black_box(&cedar)).unwrap())
            });
        }
    }

    // The realistic large set: 1,000 policies spread over every action of the schema, with
    // per-user (`principal ==`), per-team (`principal in`) and per-tenant (`principal is User`
    // + condition) scopes, a few of them on every action.
    let mixed = policy_set(&mixed_policies(995));
    assert_eq!(mixed.info.len(), 1_000);
    c.bench_function("evaluate/1000-mixed", |b| {
        b.iter(|| mixed.evaluate(black_box(&cedar)).unwrap())
    });
    c.bench_function("evaluate/1000-mixed/unindexed", |b| {
        b.iter(|| mixed.evaluate_unindexed(black_box(&cedar)).unwrap())
    });

    c.bench_function("check/es256/cache-hit", |b| {
        b.iter(|| {
            let v = rt.block_on(cached.check(black_box(req.clone())));
            assert!(v.decision.allowed);
        })
    });
    c.bench_function("check/es256/cache-off", |b| {
        b.iter(|| {
            let v = rt.block_on(uncached.check(black_box(req.clone())));
            assert!(v.decision.allowed);
        })
    });
    let anonymous = {
        let mut r = request("");
        r.headers.remove("authorization");
        r.path = "/orders/status".into();
        r
    };
    c.bench_function("check/anonymous", |b| {
        b.iter(|| rt.block_on(cached.check(black_box(anonymous.clone()))))
    });

    // The entity provider: a warm cache against no provider, then a fetch on every Check (a new
    // tenant each time) against the same Checks without a provider, and the provider's own
    // round trip.
    let url = provider();
    let section = |types: &str| {
        format!("\nentity_provider:\n  url: {url}\n  types: [{types}]\n  timeout_ms: 1000\n")
    };
    let warm = gate_with(&rt, config_with(10_000, &section("User")));
    assert!(rt.block_on(warm.check(req.clone())).decision.allowed);
    c.bench_function("check/es256/provider-warm", |b| {
        b.iter(|| {
            let v = rt.block_on(warm.check(black_box(req.clone())));
            assert!(v.decision.allowed);
        })
    });
    let fetching = Arc::new(gate_with(&rt, config_with(10_000, &section("Tenant"))));
    let not_fetching = Arc::new(gate(&rt, 10_000));
    let tenant = std::sync::atomic::AtomicU64::new(0);
    let tenant_request = || {
        let mut r = req.clone();
        let n = tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        r.path = format!("/tenants/t{n}/orders/42");
        r
    };
    // These Checks run as tasks on the runtime's worker, as the gRPC server runs them (a fetch
    // is then a task spawned from a worker, not from a thread outside the runtime); the hop onto
    // the worker and back is the same in every row of this group, `provider/get` included.
    for (name, gate) in [
        ("check/es256/tenant-none", &not_fetching),
        ("check/es256/tenant-fetch", &fetching),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let (gate, request) = (Arc::clone(gate), black_box(tenant_request()));
                let v = rt
                    .block_on(rt.spawn(async move { gate.check(request).await }))
                    .unwrap();
                assert!(v.decision.allowed, "{:?}", v.decision);
            })
        });
    }
    // The bound's other side, measured the same way: the same Check without a provider, then
    // the provider's own round trip (a plain GET of one answer), in one task. A fetching Check
    // may cost at most this plus 100 µs; the difference is cedargate's share of a fetch.
    let plain = cedargate_server::jwks::http_client().unwrap();
    c.bench_function("check/es256/tenant-none+get", |b| {
        b.iter(|| {
            let (gate, request) = (Arc::clone(&not_fetching), black_box(tenant_request()));
            let (http, n) = (
                plain.clone(),
                tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            );
            let target = format!("{url}?type=Tenant&id=t{n}");
            let v = rt
                .block_on(rt.spawn(async move {
                    let v = gate.check(request).await;
                    let body = http.get(target).send().await.unwrap().bytes().await;
                    assert!(!body.unwrap().is_empty());
                    v
                }))
                .unwrap();
            assert!(v.decision.allowed, "{:?}", v.decision);
        })
    });
    // The provider's part of that: one fetch of a new uid (task, cache insert, request, answer
    // read and checked), without the Check around it.
    c.bench_function("provider/fetch", |b| {
        b.iter(|| {
            let n = tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let uid = cedargate_core::mapping::EntityRef {
                entity_type: "Tenant".into(),
                id: format!("t{n}"),
            };
            let gate = Arc::clone(&fetching);
            let entities = rt
                .block_on(rt.spawn(async move {
                    let provider = gate.entity_provider.as_ref().unwrap();
                    provider.fetch(black_box(&[uid])).await
                }))
                .unwrap()
                .unwrap();
            assert_eq!(entities.len(), 1);
        })
    });
    // The policy side of it: evaluating with a fetched entity of a new uid (merged with the
    // static and credential entities and schema-checked, no cache hit), against `evaluate`.
    let (tenant_cedar, _) = cedargate_core::mapping::map(
        &config,
        &identity,
        &{
            let mut r = req.clone();
            r.path = "/tenants/acme/orders/42".into();
            r
        },
        now,
    )
    .unwrap();
    c.bench_function("evaluate/fetched-new", |b| {
        b.iter(|| {
            let n = tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut cedar = tenant_cedar.clone();
            cedar.resource.id = format!("t{n}");
            cedar.fetched = vec![json!({"uid": {"type": "Tenant", "id": format!("t{n}")},
                "attrs": {"slug": "acme"}, "parents": []})];
            policies.evaluate(black_box(&cedar)).unwrap()
        })
    });
    // The hop onto the runtime's worker and back that every row of this group pays (on a VM an
    // idle vCPU's wake-up dominates it): the provider's own latency is `provider/get` minus this.
    c.bench_function("runtime/hop", |b| {
        b.iter(|| rt.block_on(rt.spawn(async { black_box(1) })).unwrap())
    });
    let http = cedargate_server::jwks::http_client().unwrap();
    c.bench_function("provider/get", |b| {
        b.iter(|| {
            let n = tenant.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (http, url) = (http.clone(), url.clone());
            let body = rt
                .block_on(rt.spawn(async move {
                    http.get(format!("{url}?type=Tenant&id=t{n}"))
                        .send()
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap()
                }))
                .unwrap();
            assert!(!body.is_empty());
        })
    });

    // Upstream tokens: the signature alone (aws-lc-rs key parsed once, as `mint` does, against
    // `jsonwebtoken::encode`, which re-parses the PKCS#8 key per call), then inside a Check.
    let upstream = |reuse: u64, alg: &str| {
        format!(
            "\nupstream_token:\n  issuer: https://cedargate.internal\n  audience: internal\n  claims: [groups, tenant, scope]\n  reuse_seconds: {reuse}\n  algorithm: {alg}\n"
        )
    };
    let Identity::Token {
        token: verified, ..
    } = &identity
    else {
        unreachable!()
    };
    let subject = cedargate_server::mint::Subject {
        principal_type: "User",
        principal_id: "alice",
        token: Some(&**verified),
    };
    for (name, reuse, alg) in [
        ("mint/es256/fresh", 0, "ES256"),
        ("mint/eddsa/fresh", 0, "EdDSA"),
        ("mint/es256/reused", 30, "ES256"),
    ] {
        let settings = config_with(10_000, &upstream(reuse, alg))
            .upstream_token
            .unwrap();
        let minter = cedargate_server::mint::Minter::new();
        let keys = cedargate_server::mint::upstream_keys(&settings, None).unwrap();
        c.bench_function(name, |b| {
            b.iter(|| {
                minter
                    .mint(
                        &settings,
                        &keys,
                        black_box(&subject),
                        Some("orders"),
                        "d",
                        cedargate_core::token::now_secs(),
                    )
                    .unwrap()
            })
        });
    }
    let pkcs8 = std::fs::read(repo().join("tests/fixtures/upstream-keys/es256-a.pem")).unwrap();
    let encoding = EncodingKey::from_ec_pem(&pkcs8).unwrap();
    let header = jsonwebtoken::Header::new(Algorithm::ES256);
    let claims = json!({"iss": "https://cedargate.internal", "sub": "alice", "aud": "internal",
        "exp": 4_000_000_000u64, "groups": ["admins"], "tenant": "acme"});
    c.bench_function("mint/es256/jsonwebtoken-encode", |b| {
        b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding).unwrap())
    });
    for (name, reuse) in [
        ("check/es256/mint-reused", 30),
        ("check/es256/mint-fresh", 0),
    ] {
        let minting = gate_with(&rt, config_with(10_000, &upstream(reuse, "ES256")));
        c.bench_function(name, |b| {
            b.iter(|| {
                let v = rt.block_on(minting.check(black_box(req.clone())));
                assert!(v.upstream.is_some());
            })
        });
    }
}

criterion_group! {
    name = check;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(check);
