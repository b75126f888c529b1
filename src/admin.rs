//! The admin HTTP port: `/healthz` (the process is up), `/readyz` (policies loaded and every
//! issuer has keys; the JSON body says which issuer is missing and why), `/policy` (active
//! policy-set version and load time), `/metrics` (Prometheus text, see `metrics`) and
//! `/.well-known/jwks.json` (the public keys of minted upstream tokens; 404 when
//! `upstream_token` is off).
//!
//! Read-only: nothing here changes state, and nothing here sits on the Check path.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::json;

use crate::decision_log::rfc3339;
use crate::gate::Gate;
use crate::reload::Reloader;

/// `Cache-Control: max-age` of cedargate's JWKS: upstream verifiers refetch at most every five
/// minutes, and the key-rotation procedure (`docs/operations.md`) waits this long between
/// publishing a new key and signing with it.
pub const JWKS_MAX_AGE_SECS: u64 = 300;

/// Shared admin state.
#[derive(Clone)]
pub struct Admin {
    /// The pipeline, for key and policy status.
    pub gate: Arc<Gate>,
    /// Set when draining: readiness turns false so load balancers stop sending.
    pub draining: Arc<AtomicBool>,
    /// Hot-reload state, for `/policy`.
    pub reload: Arc<Reloader>,
}

/// The admin router.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/policy", get(policy))
        .route("/metrics", get(prometheus))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(admin)
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    let issuers: Vec<_> = admin
        .gate
        .verifier
        .jwks()
        .issuers()
        .iter()
        .map(|k| k.status())
        .collect();
    let keys_ready = issuers.iter().all(|s| s.usable);
    let draining = admin.draining.load(Ordering::Relaxed);
    let ready = keys_ready && !draining;
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
                        "policy_version": &*admin.gate.active.load().policies.version,
            "decision_log": {
                "queued": admin.gate.log.queued(),
                "dropped": admin.gate.log.dropped(),
            },
            "issuers": issuers,
        })),
    )
}

async fn policy(State(admin): State<Admin>) -> impl IntoResponse {
    let active = admin.gate.active.load();
    let snapshot = &active.policies;
    Json(json!({
        "version": &*snapshot.version,
        "loaded_at": rfc3339(snapshot.loaded_at),
        "policies": snapshot.info.len(),
        "files": snapshot.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "reload": admin.reload.status(),
        // Shadow mode: the candidate set evaluated beside this one (null when off).
        "shadow": active.shadow.as_ref().map(|shadow| json!({
            "version": &*shadow.version,
            "loaded_at": rfc3339(shadow.loaded_at),
            "policies": shadow.info.len(),
            "files": shadow.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        })),
    }))
}

/// The upstream-token public keys in force (they follow hot reloads).
async fn jwks(State(admin): State<Admin>) -> axum::response::Response {
    let config = admin.gate.config();
    let Some(upstream) = &config.upstream_token else {
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
        upstream.keys.jwks().to_string(),
    )
        .into_response()
}

async fn prometheus(State(admin): State<Admin>) -> impl IntoResponse {
    let state = crate::metrics::State::read(
        &admin.gate,
        admin.reload.status(),
        admin.draining.load(Ordering::Relaxed),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&state),
    )
}
