//! The Authorizer API at the decision-core level (criterion), in process, no gRPC:
//!
//! - `authorizer/batch-100`: one `BatchIsAuthorized` of 100 documents (`authorizer::ask::ask`:
//!   caller verification from the token cache, one policy-snapshot load, 100 caller checks and
//!   100 decisions, 100 records into a decision log that is off);
//! - `authorizer/single-x100`: the same 100 questions as 100 `IsAuthorized` calls;
//! - each also `…/no-cache` with the decision cache off (`decision_cache.capacity: 0`): every
//!   caller check and every decision evaluated by Cedar, as for a first page view.
//!
//! Run: `cargo bench --bench authorizer` (results in BENCHMARKS.md, "Authorizer API").

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../examples/authorizer-filter/filter.rs"]
#[allow(dead_code)]
mod filter;

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cedargate_core::config::Config;
use cedargate_core::mapping::EntityRef;
use cedargate_core::policy::PolicySnapshot;
use cedargate_server::authorizer::ask::{self, Caller, Method, Question};
use cedargate_server::decision_log::DecisionLog;
use cedargate_server::gate::Gate;
use cedargate_server::jwks::Jwks;
use cedargate_server::jwt::Verifier;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

/// The binary's allocator: results under glibc's differ (see BENCHMARKS.md, "Entity provider").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ISSUER: &str = "https://issuer.bench.test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn gate(rt: &tokio::runtime::Runtime, decision_cache: u64) -> Gate {
    let path = repo().join("examples/authorizer-cedargate.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap()
        .replace("http://127.0.0.1:9400", ISSUER)
        .replace(
            "algorithms: [ES256, RS256]",
            &format!(
                "algorithms: [ES256]\n    jwks_file: {}",
                repo().join("tests/fixtures/keys/jwks.json").display()
            ),
        )
        .replace("output: stdout", "output: off")
        + &format!("decision_cache: {{ capacity: {decision_cache} }}\n");
    let config = Arc::new(Config::parse(&yaml, &path).unwrap());
    let jwks = Arc::new(Jwks::new(
        &config.issuers,
        cedargate_server::jwks::http_client().unwrap(),
    ));
    for issuer in jwks.issuers() {
        rt.block_on(issuer.refresh()).unwrap();
    }
    let policies = PolicySnapshot::load(&config.policy_dir)
        .unwrap()
        .with_decision_cache(decision_cache);
    let log = rt
        .block_on(async { DecisionLog::start(&config.decision_log.output, 16) })
        .unwrap();
    let verifier = Verifier::new(jwks, 100, config.limits.max_token_bytes);
    Gate::new(config, policies, None, verifier, log)
}

/// A client_credentials-shaped token for `orders-service`, the caller the policies permit.
fn token() -> String {
    let pem = std::fs::read(repo().join("tests/fixtures/keys/ec.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-ec"});
    let claims = json!({
        "iss": ISSUER, "sub": "orders-service", "client_id": "orders-service",
        "aud": "https://api.cedargate.test", "exp": now + 3600, "iat": now,
    });
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::ES256).unwrap();
    format!("{message}.{sig}")
}

fn r(ty: &str, id: &str) -> EntityRef {
    EntityRef {
        entity_type: ty.into(),
        id: id.into(),
    }
}

fn question(documents: &[Value]) -> Question {
    Question {
        principal: r("User", "bob"),
        items: documents
            .iter()
            .map(|d| {
                (
                    r("Action", "view"),
                    r("Document", d["uid"]["id"].as_str().unwrap()),
                )
            })
            .collect(),
        context: "{}".into(),
        entities: Value::Array(documents.to_vec()).to_string(),
    }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let caller = Caller {
        authorization: Some(format!("Bearer {}", token())),
        source_ip: None,
        peer: None,
        trace_id: None,
    };
    let documents = filter::documents(100);
    let batch = question(&documents);
    let singles: Vec<Question> = documents
        .iter()
        .map(|d| question(std::slice::from_ref(d)))
        .collect();
    for (suffix, cache) in [("", 10_000), ("/no-cache", 0)] {
        let gate = gate(&rt, cache);
        // Sanity: the batch is answered, with both answers in it.
        let answered = rt
            .block_on(ask::ask(
                &gate,
                Method::BatchIsAuthorized,
                caller.clone(),
                batch.clone(),
            ))
            .unwrap();
        assert_eq!(answered.items.len(), 100);
        assert!(answered.items.iter().any(|i| i.decision.allowed));
        assert!(answered.items.iter().any(|i| !i.decision.allowed));
        c.bench_function(&format!("authorizer/batch-100{suffix}"), |b| {
            b.iter(|| {
                rt.block_on(ask::ask(
                    &gate,
                    Method::BatchIsAuthorized,
                    caller.clone(),
                    black_box(batch.clone()),
                ))
                .unwrap()
            });
        });
        c.bench_function(&format!("authorizer/single-x100{suffix}"), |b| {
            b.iter(|| {
                for q in &singles {
                    rt.block_on(ask::ask(
                        &gate,
                        Method::IsAuthorized,
                        caller.clone(),
                        black_box(q.clone()),
                    ))
                    .unwrap();
                }
            });
        });
    }
}

criterion_group!(authorizer, benches);
criterion_main!(authorizer);
