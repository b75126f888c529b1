//! The admin HTTP port: `/healthz` (liveness: the process serves HTTP, its background loops
//! run and the decision-log writer makes progress; it answers while policies are still loading), `/readyz` (policies loaded, every issuer
//! has keys and not draining; the JSON body says what is missing and why), `/policy` (active
//! policy-set version and load time), `/metrics` (Prometheus text, see `metrics`) and
//! `/.well-known/jwks.json` (the public keys of minted upstream tokens; 404 when
//! `upstream_token` is off).
//!
//! The port is bound before the policies load (`server::start`), so until then only `/healthz`
//! says yes: everything that needs the gate answers 503 `policies loading`.
//!
//! Read-only: nothing here changes state, and nothing here sits on the Check path.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::json;

use crate::gate::Gate;
use crate::jwks::IssuerStatus;
use crate::metrics;
use crate::reload::Reloader;
use cedargate_core::record::rfc3339;

/// `Cache-Control: max-age` of cedargate's JWKS: upstream verifiers refetch at most every five
/// minutes, and the key-rotation procedure (`docs/operations.md`) waits this long between
/// publishing a new key and signing with it.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// Why the admin port can't answer for the gate yet.
const LOADING: &str = "policies loading";

/// Shared admin state, as the router holds it from the moment the port is bound.
#[derive(Clone, Default)]
pub struct Admin {
    /// Set once, when policies are loaded and the Check port is bound; empty while loading.
    /// A `OnceLock`: read without a lock on every probe, written once by `server::start`.
    pub started: Arc<OnceLock<Started>>,
    /// Set when draining: readiness turns false so load balancers stop sending.
    pub draining: Arc<AtomicBool>,
}

/// What the admin port reports on once serving has started.
pub struct Started {
    /// The pipeline, for key and policy status.
    pub gate: Arc<Gate>,
    /// Hot-reload state, for `/policy`.
    pub reload: Arc<Reloader>,
    /// The background loops liveness watches (Check server, key refresh per issuer, reload):
    /// each should run until shutdown, so one that has ended means the process is broken.
    pub loops: Vec<Loop>,
}

/// A background task that must not end before shutdown.
pub struct Loop {
    /// What it is, for `/healthz` (`grpc`, `jwks demo-idp`, `reload`).
    pub name: String,
    /// Its task, asked only whether it has finished.
    pub task: tokio::task::AbortHandle,
}

/// The admin router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/policy", get(policy))
        .route("/metrics", get(prometheus))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(admin)
}

/// Liveness: `200 ok` while every background loop runs and the decision-log writer makes
/// progress (and while policies load: a large set takes time, and restarting the process would
/// not make it faster); `503` naming what stopped otherwise (a loop that ended, a writer that
/// ended or is stuck with records waiting: decisions would go unaudited). Once draining, loops
/// stop on purpose and are not judged.
async fn healthz(State(admin): State<Admin>) -> axum::response::Response {
    let ended: Vec<String> = match admin.started.get() {
        Some(started) if !admin.draining.load(Ordering::Relaxed) => started
            .loops
            .iter()
            .filter(|l| l.task.is_finished())
            .map(|l| l.name.clone())
            .chain(started.gate.log.writer_problem())
            .collect(),
        _ => Vec::new(),
    };
    if ended.is_empty() {
        return "ok\n".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("stopped: {}\n", ended.join(", ")),
    )
        .into_response()
}

/// The 503 every gate-backed endpoint answers while policies load.
fn loading() -> axum::response::Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"ready": false, "reasons": [LOADING], "error": LOADING})),
    )
        .into_response()
}

/// Whether this replica should get traffic, and why not: every issuer's keys usable (fetched and
/// not stale) and not draining. The one readiness computation: `/readyz` answers with it and
/// `/metrics` reports it (`cedargate_ready`).
struct Readiness {
    /// Ready for traffic.
    ready: bool,
    /// Why not, one line per cause.
    reasons: Vec<String>,
    /// Key status per issuer, in config order.
    issuers: Vec<IssuerStatus>,
}

fn readiness(admin: &Admin, started: &Started) -> Readiness {
    let issuers: Vec<IssuerStatus> = started
        .gate
        .verifier
        .jwks()
        .issuers()
        .iter()
        .map(|k| k.status())
        .collect();
    let draining = admin.draining.load(Ordering::Relaxed);
    let ready = issuers.iter().all(|s| s.usable) && !draining;
    let reasons: Vec<String> = issuers
        .iter()
        .filter(|s| !s.usable)
        .map(|s| {
            let why = s.last_error.as_deref().unwrap_or("first fetch pending");
            if s.stale {
                format!(
                    "issuer {} keys are stale ({} s old, beyond max_staleness): {why}",
                    s.name,
                    s.age_seconds.unwrap_or_default()
                )
            } else {
                format!("issuer {} has no keys: {why}", s.name)
            }
        })
        .chain(draining.then(|| "shutting down".to_string()))
        .collect();
    Readiness {
        ready,
        reasons,
        issuers,
    }
}

async fn readyz(State(admin): State<Admin>) -> axum::response::Response {
    let Some(started) = admin.started.get() else {
        return loading();
    };
    let Readiness {
        ready,
        reasons,
        issuers,
    } = readiness(&admin, started);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "ready": ready,
            "reasons": reasons,
            "policy_version": &*started.gate.active.load().policies.version,
            "decision_log": {
                "queued": started.gate.log.queued(),
                "dropped": started.gate.log.dropped(),
            },
            "issuers": issuers,
        })),
    )
        .into_response()
}

/// The state `/metrics` reports beside the recorded events, read now.
fn scrape_state(admin: &Admin, started: &Started) -> metrics::State {
    let active = started.gate.active.load();
    let readiness = readiness(admin, started);
    let reload = started.reload.status();
    let issuers = started
        .gate
        .verifier
        .jwks()
        .issuers()
        .iter()
        .zip(&readiness.issuers)
        .map(|(keys, status)| metrics::IssuerState {
            name: status.name.clone(),
            key_age: keys.snapshot().map(|s| {
                SystemTime::now()
                    .duration_since(s.fetched_at)
                    .unwrap_or_default()
                    .as_secs_f64()
            }),
            max_staleness: keys.config.max_staleness.as_secs_f64(),
            usable: status.usable,
        })
        .collect();
    metrics::State {
        ready: readiness.ready,
        policy_version: active.policies.version.to_string(),
        policy_loaded_at: active.policies.loaded_at,
        policies: active.policies.info.len(),
        reload: metrics::ReloadCounts {
            ok: reload.ok,
            failed: reload.failed,
            last_ok: reload.last_error.is_none(),
        },
        issuers,
        log_queued: started.gate.log.queued(),
        log_dropped: started.gate.log.dropped(),
    }
}

async fn policy(State(admin): State<Admin>) -> axum::response::Response {
    let Some(started) = admin.started.get() else {
        return loading();
    };
    let active = started.gate.active.load();
    let snapshot = &active.policies;
    Json(json!({
        "version": &*snapshot.version,
        "loaded_at": rfc3339(snapshot.loaded_at),
        "policies": snapshot.info.len(),
        "files": snapshot.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "reload": started.reload.status(),
        // With `policy_bundle`: the bundle in force (revision, digest, signer) and the last poll
        // (null when policies come from policy_dir).
        "bundle": started.reload.bundle_status(),
        // Shadow mode: the candidate set evaluated beside this one (null when off).
        "shadow": active.shadow.as_ref().map(|shadow| json!({
            "version": &*shadow.version,
            "loaded_at": rfc3339(shadow.loaded_at),
            "policies": shadow.info.len(),
            "files": shadow.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        })),
    }))
    .into_response()
}

/// The upstream-token public keys in force (they follow hot reloads).
async fn jwks(State(admin): State<Admin>) -> axum::response::Response {
    let Some(started) = admin.started.get() else {
        return loading();
    };
    let active = started.gate.active.load();
    let Some(keys) = &active.upstream_keys else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "upstream_token is not configured"})),
        )
            .into_response();
    };
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/json".to_string(),
            ),
            (
                axum::http::header::CACHE_CONTROL,
                format!("public, max-age={JWKS_MAX_AGE_SECS}"),
            ),
        ],
        keys.jwks().to_string(),
    )
        .into_response()
}

async fn prometheus(State(admin): State<Admin>) -> axum::response::Response {
    let Some(started) = admin.started.get() else {
        return loading();
    };
    let state = scrape_state(&admin, started);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(&state),
    )
        .into_response()
}
