//! Differential conformance (issue 12, part 7): cedargate's answers through the real Envoy equal
//! what `cedar_policy::Authorizer` says when handed the complete entity set directly.
//!
//! Each set in `tests/fixtures/conformance/<set>/` is a policy set in the style of a published
//! Cedar example, with its data split on purpose between the token's claims (`claims.json`), the
//! static `policies/entities.json` and the HTTP entity provider (`provider.json`, served by
//! `upstream/upstream.mjs --entities`); `complete-entities.json` is the whole entity set as such
//! an example would ship it, the truth. For every set the test:
//!
//! 1. checks the fixture itself: the policies validate strictly against the schema, and the
//!    documented merge rule applied to the three sources gives exactly the truth (parents: union;
//!    attributes: entities.json, overlaid by the provider, overlaid by claim-mapped attributes);
//! 2. draws requests from a seeded PRNG, in rounds of every user (with and without entity data,
//!    anonymous included) on every route, with existing and missing resources, and computes each
//!    answer with Cedar alone: the `(principal, action, resource, context)` the request means
//!    under the set's routes (written out again in `sets.rs`, independently of cedargate's
//!    mapping), authorized against the truth (`oracle.rs`);
//! 3. draws on until the requests can tell a wrong implementation apart: every `forbid`
//!    overrides a permit in a few of them (so a wrong allow is caught as surely as a wrong deny),
//!    and leaving out any one source (the provider, the claims, the users' static entries)
//!    changes a few answers;
//! 4. starts the upstream (echo + entity provider), cedargate and Envoy, sends every request with
//!    the user's token (none for anonymous), and compares: 200 ⇔ Allow, 401/403 ⇔ Deny. Every
//!    disagreement is printed with cedargate's decision-record reason, then the test fails.
//!
//! cedargate asks the provider about the principal and the resource only, so every entity a
//! policy reaches through another entity's attribute (an issue's repository, a document owner's
//! `blocked` list, a project's tenant) is static in these sets. Forbids never fail to evaluate
//! where a permit applies (checked), so cedargate's fail-closed `policy_error` can't differ from
//! Cedar on them.

mod oracle;
mod sets;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value, json};

use crate::stack::{Proc, free_port, render_envoy, start_envoy};
use crate::support::{fixture, key, now, repo, sign_raw};
use oracle::{Fixture, Probe, plan};
use sets::{DOCSHARE, GITHUB, Spec, TENANTS};

/// The issuer and audience of the tokens the test signs (a local JWKS file, no IdP).
const ISSUER: &str = "https://issuer.conformance.test";
const AUDIENCE: &str = "https://api.conformance.test";
/// Deadline for cedargate's readiness and for a decision record to reach the log.
const DEADLINE: Duration = Duration::from_secs(30);

/// Steps 1–3 alone for every set: no processes, so a fixture change is checked in a second.
#[test]
fn fixtures() {
    for spec in [&GITHUB, &DOCSHARE, &TENANTS] {
        let fx = Fixture::load(spec.name);
        plan(spec, &fx);
    }
}

#[test]
fn github() {
    run(&GITHUB);
}

#[test]
fn docshare() {
    run(&DOCSHARE);
}

#[test]
fn tenants() {
    run(&TENANTS);
}

/// A token whose claims are exactly the user's `claims.json` entry (plus the registered ones).
fn token_for(user: &str, claims: &Map<String, Value>) -> String {
    let mut all = json!({
        "iss": ISSUER, "sub": user, "aud": AUDIENCE,
        "iat": now(), "exp": now() + 3600, "jti": format!("conformance-{user}"),
    });
    for (k, v) in claims {
        all[k] = v.clone();
    }
    sign_raw(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-ec"}),
        &all,
        &key("ec"),
        Algorithm::ES256,
    )
}

/// What came back through Envoy for one probe.
struct Got {
    status: u16,
    decision_id: Option<String>,
}

fn run(spec: &Spec) {
    let fx = Fixture::load(spec.name);
    let probes = plan(spec, &fx);

    let tmp = tempfile::tempdir().unwrap();
    let mut up = Command::new("node");
    up.arg(repo().join("upstream/upstream.mjs"))
        .args(["--port", "0", "--entities"])
        .arg(fx.dir.join("provider.json"));
    let (_upstream, line) = Proc::spawn("upstream", up, Some("upstream listening on "));
    let app_port: u16 = line.rsplit(':').next().unwrap().trim().parse().unwrap();

    let grpc = free_port();
    let admin = free_port();
    let log = tmp.path().join("decisions.jsonl");
    let config = std::fs::read_to_string(fx.dir.join("cedargate.yaml"))
        .unwrap()
        .replace("@GRPC@", &format!("127.0.0.1:{grpc}"))
        .replace("@ADMIN@", &format!("127.0.0.1:{admin}"))
        .replace("@JWKS_FILE@", &fixture("jwks.json").display().to_string())
        .replace(
            "@PROVIDER_URL@",
            &format!("http://127.0.0.1:{app_port}/entities"),
        )
        .replace(
            "@POLICY_DIR@",
            &fx.dir.join("policies").display().to_string(),
        )
        .replace("@DECISION_LOG@", &log.display().to_string());
    assert!(
        !config.contains("\"@"),
        "{}: a placeholder is left in cedargate.yaml",
        spec.name
    );
    let config_path = tmp.path().join("cedargate.yaml");
    std::fs::write(&config_path, config).unwrap();

    let validate = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["validate", "-c"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "{}: cedargate validate refuses the set's config:\n{}{}",
        spec.name,
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
    let mut serve = Command::new(env!("CARGO_BIN_EXE_cedargate"));
    serve
        .args(["serve", "-c"])
        .arg(&config_path)
        .env("RUST_LOG", "warn");
    let (_cedargate, _) = Proc::spawn("cedargate", serve, None);

    let listener = free_port();
    let envoy_admin = free_port();
    let envoy_config = render_envoy(
        "tests/fixtures/conformance/envoy.yaml",
        &[
            (10000, listener),
            (9901, envoy_admin),
            (9191, grpc),
            (8081, app_port),
        ],
    )
    .replace("@SERVICE@", spec.name);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(wait_ready(admin));
    let _envoy = start_envoy(tmp.path(), &envoy_config, envoy_admin);
    let got = runtime.block_on(send_all(&fx, &probes, listener));

    let decided = got.iter().filter(|g| g.decision_id.is_some()).count();
    let records = records(&log, decided);
    let mut disagreements = Vec::new();
    for (probe, got) in probes.iter().zip(&got) {
        let record = got.decision_id.as_ref().and_then(|id| records.get(id));
        let mut problems = Vec::new();
        let status_agrees = match probe.allow() {
            true => got.status == 200,
            false => got.status == 401 || got.status == 403,
        };
        if !status_agrees {
            let expected = match &probe.expected {
                Some(v) => format!(
                    "{} (cedar: {:?}{})",
                    if v.allow { "allow" } else { "deny" },
                    v.reasons,
                    if v.errors.is_empty() {
                        String::new()
                    } else {
                        format!(", errors {:?}", v.errors)
                    }
                ),
                None => "deny (no route)".to_string(),
            };
            let without: Vec<String> = probe
                .flipped_without
                .iter()
                .map(|s| format!("{s:?}"))
                .collect();
            let diagnosis = if without.is_empty() {
                String::new()
            } else {
                format!(
                    " [Cedar's answer without the {} data]",
                    without.join(" or the ")
                )
            };
            problems.push(format!(
                "expected {expected}, got {}{diagnosis}",
                got.status
            ));
        }
        // The right answer must come from the right question: the Cedar request cedargate
        // built is the one the route table means.
        match (&probe.query, record) {
            (_, None) => problems.push("no decision record".to_string()),
            (Some(q), Some(r)) => {
                let built = [&r["principal"], &r["action"], &r["resource"]].map(|v| v.as_str());
                let meant = q.uids();
                if built != meant.each_ref().map(|s| Some(s.as_str())) {
                    problems.push(format!(
                        "cedargate asked {built:?}, the routes mean {meant:?}"
                    ));
                }
            }
            (None, Some(r)) if r["reason"] != "no_route" => {
                problems.push("no route matches, yet cedargate found one".to_string());
            }
            (None, Some(_)) => {}
        }
        if !problems.is_empty() {
            let cedargate = record.map_or_else(String::new, |r| {
                let policies: Vec<&str> = r["policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["id"].as_str())
                    .collect();
                let errors = r["errors"].as_array().map_or(0, Vec::len);
                let first = r["errors"][0].as_str().map_or_else(String::new, |e| {
                    format!(
                        ", {e}{}",
                        if errors > 1 {
                            format!(" (+{} more)", errors - 1)
                        } else {
                            String::new()
                        }
                    )
                });
                format!(" (cedargate: {} {policies:?}{first})", r["reason"])
            });
            disagreements.push(format!(
                "  user {}, {} {}{}: {}{cedargate}",
                probe.user.as_deref().unwrap_or("<anonymous>"),
                probe.method,
                probe.path,
                probe
                    .region
                    .map(|r| format!(" [x-region: {r}]"))
                    .unwrap_or_default(),
                problems.join("; "),
            ));
        }
    }
    let allowed = probes.iter().filter(|p| p.allow()).count();
    println!(
        "{}: {}/{} agree (allow {allowed}, deny {})",
        spec.name,
        probes.len() - disagreements.len(),
        probes.len(),
        probes.len() - allowed
    );
    assert!(
        disagreements.is_empty(),
        "{}: cedargate disagrees with Cedar on {} of {} requests:\n{}",
        spec.name,
        disagreements.len(),
        probes.len(),
        disagreements.join("\n")
    );
}

async fn wait_ready(admin: u16) {
    let url = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Ok(r) = reqwest::get(&url).await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cedargate did not become ready ({url})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send_all(fx: &Fixture, probes: &[Probe], listener: u16) -> Vec<Got> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let tokens: BTreeMap<&String, String> = fx
        .claims
        .iter()
        .map(|(u, c)| (u, token_for(u, c)))
        .collect();
    let mut out = Vec::with_capacity(probes.len());
    for probe in probes {
        let method = reqwest::Method::from_bytes(probe.method.as_bytes()).unwrap();
        let mut req = client.request(method, format!("http://127.0.0.1:{listener}{}", probe.path));
        if let Some(user) = &probe.user {
            req = req.bearer_auth(&tokens[user]);
        }
        if let Some(region) = probe.region {
            req = req.header("x-region", region);
        }
        let response = req.send().await.unwrap();
        let status = response.status().as_u16();
        let header = response
            .headers()
            .get("x-cedargate-decision-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response.text().await.unwrap_or_default();
        // On allow the id reached the upstream, which echoes the request headers it got.
        let echoed = serde_json::from_str::<Value>(&body).ok().and_then(|v| {
            v["headers"]["x-cedargate-decision-id"]
                .as_str()
                .map(str::to_string)
        });
        out.push(Got {
            status,
            decision_id: header.or(echoed),
        });
    }
    out
}

/// The decision records by id, once the log holds `count` of them (the writer is asynchronous).
fn records(log: &Path, count: usize) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        // Complete lines only: the writer may be in the middle of the last one.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        let records: BTreeMap<String, Value> = complete
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|r| (r["decision_id"].as_str().unwrap().to_string(), r))
            .collect();
        if records.len() >= count || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
