//! Hot reload of the config and the policy folder: file watching (inotify via `notify`) plus
//! SIGHUP, debounced. The new config and policy set are validated in full and swapped into the
//! gate as one [`Active`] snapshot; anything invalid leaves the last good set in force, is logged
//! with file:line, counted, and shown on the admin `/policy` endpoint. The service stays ready.
//!
//! Settings that other components were built from at start (listen addresses, issuers, the
//! decision-log output, cache size, token size limit, policy folder, telemetry) are not
//! swapped: a change to them is refused with "restart needed" and nothing else from that change
//! applies, so a reload is all or nothing. This module never touches the Check path beyond one atomic store.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::decision_log::rfc3339;
use crate::gate::{Active, Gate};
use crate::policy::PolicySnapshot;

/// Quiet time after a file event before reloading: editors write files in several steps.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Reload state for the admin endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    /// Successful reloads since start.
    pub ok: u64,
    /// Failed reloads since start.
    pub failed: u64,
    /// When the last reload was attempted.
    pub last_attempt: Option<String>,
    /// What triggered it (`file`, `sighup`, `api`).
    pub last_trigger: Option<String>,
    /// The error of the last attempt, if it failed (cleared by a success).
    pub last_error: Option<String>,
}

/// Reloads config + policies into a gate.
pub struct Reloader {
    /// The gate whose `active` snapshot is replaced.
    gate: Arc<Gate>,
    /// The config file, re-read on every reload.
    config_path: PathBuf,
    /// Successful reloads.
    ok: AtomicU64,
    /// Failed reloads.
    failed: AtomicU64,
    /// Last attempt and trigger.
    last_attempt: ArcSwapOption<(SystemTime, String)>,
    /// Last error (None after a success).
    last_error: ArcSwapOption<String>,
    /// Serializes reloads (file events and signals may race).
    running: Mutex<()>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The policy folder is invalid.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyLoadError),
    /// The shadow (candidate) policy folder is invalid.
    #[error("shadow policy set: {0}")]
    Shadow(crate::policy::PolicyLoadError),
    /// A setting changed that only a restart can apply.
    #[error("{0} changed: restart cedargate to apply it (nothing from this change was applied)")]
    RestartNeeded(&'static str),
}

impl Reloader {
    /// A reloader for `gate`, reading `config_path`.
    pub fn new(gate: Arc<Gate>, config_path: PathBuf) -> Reloader {
        Reloader {
            gate,
            config_path,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_attempt: ArcSwapOption::empty(),
            last_error: ArcSwapOption::empty(),
            running: Mutex::new(()),
        }
    }

    /// Current status.
    pub fn status(&self) -> ReloadStatus {
        let attempt = self.last_attempt.load_full();
        ReloadStatus {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_attempt: attempt.as_ref().map(|a| rfc3339(a.0)),
            last_trigger: attempt.as_ref().map(|a| a.1.clone()),
            last_error: self.last_error.load_full().map(|e| e.to_string()),
        }
    }

    /// Validates the config and policy folder and swaps them in; on any problem keeps the last
    /// good set. Returns the new policy-set version.
    pub fn reload(&self, trigger: &str) -> Result<Arc<str>, ReloadError> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.last_attempt
            .store(Some(Arc::new((SystemTime::now(), trigger.to_string()))));
        match self.load() {
            Ok(active) => {
                let version = active.policies.version.clone();
                let previous = self.gate.active.load().policies.version.clone();
                self.gate.active.store(Arc::new(active));
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.last_error.store(None);
                tracing::info!(%trigger, %version, %previous, changed = version != previous, "policy.reloaded");
                Ok(version)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.last_error.store(Some(Arc::new(e.to_string())));
                tracing::error!(%trigger, error = %e, "policy.reload_failed: the last good policy set stays in force");
                Err(e)
            }
        }
    }

    fn load(&self) -> Result<Active, ReloadError> {
        let config = Config::load(&self.config_path)?;
        let current = self.gate.config();
        if let Some(what) = restart_only_change(&current, &config) {
            return Err(ReloadError::RestartNeeded(what));
        }
        let policies = PolicySnapshot::load(&config.policy_dir)?;
        let shadow = crate::shadow::load(&config).map_err(ReloadError::Shadow)?;
        Ok(Active {
            config: Arc::new(config),
            policies: Arc::new(policies),
            shadow,
        })
    }

    /// Spawns the reload task: reloads after file changes in the policy folder or to the config
    /// file (debounced), and on SIGHUP.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let (tx, mut rx) = mpsc::channel::<&'static str>(64);
            let _watcher = self.watch(tx.clone());
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                let trigger = tokio::select! {
                    Some(t) = rx.recv() => t,
                    Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => "sighup",
                    else => return,
                };
                if trigger == "file" {
                    // Let the writer finish: wait until the folder is quiet.
                    while let Ok(Some(_)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                }
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload(trigger)).await;
            }
        })
    }

    /// Watches the policy folder and the config file's folder (editors replace files by rename,
    /// so the folder is watched, filtered to the config file).
    fn watch(&self, tx: mpsc::Sender<&'static str>) -> Option<notify::RecommendedWatcher> {
        let config_file = self.config_path.file_name().map(ToOwned::to_owned);
        let policy_dir = self.gate.config().policy_dir.clone();
        let watched_policy_dir = policy_dir.clone();
        // The shadow folder in force at start; one named later is picked up by the config
        // change that names it, and by SIGHUP.
        let shadow_dir = self
            .gate
            .config()
            .shadow
            .as_ref()
            .map(|s| s.policy_dir.clone());
        let watched_shadow_dir = shadow_dir.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let relevant = event.paths.iter().any(|p| {
                p.parent() == Some(watched_policy_dir.as_path())
                    || watched_shadow_dir
                        .as_deref()
                        .is_some_and(|d| p.parent() == Some(d))
                    || p.file_name().is_some() && p.file_name() == config_file.as_deref()
            });
            if relevant {
                let _ = tx.try_send("file");
            }
        };
        let mut watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "reload.watch_unavailable: use SIGHUP to reload");
                return None;
            }
        };
        let config_dir = self
            .config_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for dir in [
            Some(policy_dir.as_path()),
            shadow_dir.as_deref(),
            Some(config_dir),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "reload.watch_failed");
            }
        }
        Some(watcher)
    }
}

/// The first setting that changed and needs a restart, if any.
fn restart_only_change(old: &Config, new: &Config) -> Option<&'static str> {
    if old.grpc_listen != new.grpc_listen || old.admin_listen != new.admin_listen {
        return Some("listen");
    }
    if old.issuers.len() != new.issuers.len()
        || old
            .issuers
            .iter()
            .zip(&new.issuers)
            .any(|(a, b)| **a != **b)
    {
        return Some("issuers");
    }
    if old.decision_log.output != new.decision_log.output
        || old.decision_log.queue != new.decision_log.queue
        || old.decision_log.rotate != new.decision_log.rotate
        || old.decision_log.otlp != new.decision_log.otlp
    {
        return Some("decision_log");
    }
    if old.token_cache.capacity != new.token_cache.capacity {
        return Some("token_cache");
    }
    if old.limits.max_token_bytes != new.limits.max_token_bytes {
        return Some("limits.max_token_bytes");
    }
    if old.limits.max_concurrent_checks != new.limits.max_concurrent_checks {
        return Some("limits.max_concurrent_checks");
    }
    if old.policy_dir != new.policy_dir {
        return Some("policy_dir");
    }
    if old.telemetry != new.telemetry {
        return Some("telemetry");
    }
    None
}
