//! Hot reload of the config and the policy folder: file watching (inotify via `notify`) plus
//! SIGHUP, debounced. The new config and policy set are validated in full and swapped into the
//! gate as one [`Active`] snapshot; anything invalid leaves the last good set in force, is logged
//! with file:line, counted, and shown on the admin `/policy` endpoint. The service stays ready.
//!
//! Settings that other components were built from at start (listen addresses, issuers, the
//! decision-log output, cache size, token size limit, policy folder, telemetry, the entity
//! provider with its client and cache) are not swapped: a change to them is refused with
//! "restart needed" and nothing else from that change applies, so a reload is all or nothing.
//! This module never touches the Check path beyond one atomic store.
//!
//! `upstream_token` reloads, key files included (re-read by the config's validation): a bad key
//! file refuses the whole reload and the old keys stay. A key generated at start is carried over.
//!
//! With `policy_bundle`, the policy folder is the unpacked bundle in force: a file or SIGHUP
//! reload re-reads it, and a new bundle found by the poller (`bundle_fetch`) is validated here
//! like a policy folder and swapped in the same way; only a bundle that loads is recorded as the
//! last good one. The bundle's `url`, `signature_url` and `cache_dir`, and switching between
//! `policy_dir` and `policy_bundle`, need a restart; keys, poll interval, timeout and size
//! bound reload.
//!
//! The watched folders follow the config: the policy folder, the shadow candidate's folder (which
//! a reload may name, change or drop), the config file's folder and the folders of the key files
//! it names (`upstream_token.key_files`, `decision_log.redaction_key_file`: replacing a key
//! reloads it). A reload watches the folders its config names before it reads them, so no edit
//! falls between the read and the watch.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use notify::{RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bundle_fetch::{BundleFetchError, BundleSource, BundleStatus, Candidate, Poll};
use crate::gate::{Active, Gate};
use cedargate_core::config::Config;
use cedargate_core::record::rfc3339;

/// Quiet time after a file event before reloading: editors write files in several steps. A
/// `tokio::time::timeout` loop on the event channel (below) rather than `notify-debouncer-*`:
/// events from several watchers and SIGHUP share one channel and one debounce, which the
/// debouncer crates (one per watcher) don't offer.
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
    /// The folders watched for changes now (absolute; empty without a watcher), so that an
    /// operator can see why an edit did or did not reload.
    pub watching: Vec<String>,
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
    /// The config file as the watcher reports it (absolute), to tell its events from those of
    /// its neighbours.
    config_file: PathBuf,
    /// The files whose events trigger a reload (absolute): the config file and the key files
    /// the config names (upstream-token signing keys, the redaction key). Their folders are
    /// watched, since editors and secret managers replace files by rename. Read lock-free by
    /// the event handler, like `policy_dirs`.
    files: Arc<ArcSwap<BTreeSet<PathBuf>>>,
    /// The file watcher, once [`Reloader::spawn`] started it; re-pointed by every reload.
    watch: Mutex<Option<Watch>>,
    /// The policy folders (enforced and shadow, absolute) whose every file event triggers a
    /// reload. The watcher's event handler reads it, lock-free on purpose: `notify` runs the
    /// handler on the thread that `watch`/`unwatch` wait for, so a handler taking `watch`'s
    /// lock would deadlock a reload that is changing the watched folders.
    policy_dirs: Arc<ArcSwap<BTreeSet<PathBuf>>>,
    /// The folders actually watched, for [`ReloadStatus::watching`] (read without `watch`'s
    /// lock, which a reload holds while it waits for `notify`).
    watching: ArcSwap<Vec<PathBuf>>,
    /// The policy bundle source, with `policy_bundle`.
    bundle: Option<Arc<BundleSource>>,
}

/// A running file watcher and what it watches.
struct Watch {
    /// The inotify watcher; dropping it stops watching.
    watcher: notify::RecommendedWatcher,
    /// The folders it watches, so that a new config adds and drops only the difference.
    dirs: BTreeSet<PathBuf>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config file is invalid.
    #[error(transparent)]
    Config(#[from] cedargate_core::config::ConfigError),
    /// The policy folder is invalid.
    #[error(transparent)]
    Policy(#[from] cedargate_core::policy::PolicyLoadError),
    /// The shadow (candidate) policy folder is invalid.
    #[error("shadow policy set: {0}")]
    Shadow(cedargate_core::policy::PolicyLoadError),
    /// An upstream-token key file is unusable.
    #[error("upstream_token.key_files: {0}")]
    Keys(#[from] crate::mint::MintError),
    /// A setting changed that only a restart can apply.
    #[error("{0} changed: restart cedargate to apply it (nothing from this change was applied)")]
    RestartNeeded(&'static str),
}

impl Reloader {
    /// A reloader for `gate`, reading `config_path`.
    pub fn new(gate: Arc<Gate>, config_path: PathBuf) -> Reloader {
        let config_file = absolute(&config_path);
        let bundle = gate.config().policy_bundle.clone().and_then(|settings| {
            BundleSource::new(settings)
                .map(Arc::new)
                .map_err(|e| tracing::error!(error = %e, "policy_bundle.unavailable: bundle polling is off"))
                .ok()
        });
        Reloader {
            bundle,
            gate,
            config_path,
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_attempt: ArcSwapOption::empty(),
            last_error: ArcSwapOption::empty(),
            running: Mutex::new(()),
            config_file,
            watch: Mutex::new(None),
            policy_dirs: Arc::new(ArcSwap::from_pointee(BTreeSet::new())),
            files: Arc::new(ArcSwap::from_pointee(BTreeSet::new())),
            watching: ArcSwap::from_pointee(Vec::new()),
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
            watching: self
                .watching
                .load()
                .iter()
                .map(|d| d.display().to_string())
                .collect(),
        }
    }

    /// The policy bundle's status for `/policy`; `None` without `policy_bundle`.
    pub fn bundle_status(&self) -> Option<BundleStatus> {
        let source = self.bundle.as_ref()?;
        let interval = self
            .gate
            .config()
            .policy_bundle
            .as_ref()
            .map_or(source.settings().poll_interval, |b| b.poll_interval);
        Some(source.status(interval))
    }

    /// Validates the config and policy folder and swaps them in; on any problem keeps the last
    /// good set. Returns the new policy-set version.
    pub fn reload(&self, trigger: &str) -> Result<Arc<str>, ReloadError> {
        self.reload_with(trigger, None)
    }

    /// [`Reloader::reload`], with a new bundle's folder as the policy folder when `candidate` is
    /// given; on success the bundle becomes the one in force (and the last good one on disk).
    fn reload_with(
        &self,
        trigger: &str,
        candidate: Option<&Candidate>,
    ) -> Result<Arc<str>, ReloadError> {
        let _one_at_a_time = self.running.lock().unwrap_or_else(|p| p.into_inner());
        self.last_attempt
            .store(Some(Arc::new((SystemTime::now(), trigger.to_string()))));
        match self.load(candidate.map(|c| c.enforced.dir.as_path())) {
            Ok(active) => {
                let version = active.policies.version.clone();
                let previous = self.gate.active.load().policies.version.clone();
                let config = active.config.clone();
                self.gate.active.store(Arc::new(active));
                // Counted with the swap, before anything else `/policy` shows of this reload
                // (the bundle in force): a reader that sees it also sees the reload counted.
                self.ok.fetch_add(1, Ordering::Relaxed);
                self.last_error.store(None);
                // Only after the swap: `/policy` and the bundle metric say what Checks are
                // decided with, never a bundle that is not enforced yet.
                if let (Some(source), Some(candidate)) = (&self.bundle, candidate)
                    && let Err(e) = source.commit(candidate)
                {
                    // Enforced in memory all the same; a restart falls back to the previous
                    // last good bundle.
                    tracing::error!(error = %e, "policy_bundle.cache_failed");
                }
                // Folders the previous config named and this one doesn't are no longer read.
                self.follow(&[&config]);
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

    fn load(&self, bundle_dir: Option<&Path>) -> Result<Active, ReloadError> {
        let mut config = Config::load(&self.config_path)?;
        if config.policy_bundle.is_some() {
            // The bundle in force (or the new one being tried), never the `current` link, so the
            // folder read is the one recorded as enforced.
            let enforced = self.bundle.as_ref().and_then(|b| b.enforced_dir());
            if let Some(dir) = bundle_dir.map(Path::to_path_buf).or(enforced) {
                config.policy_dir = dir;
            }
        }
        log_config_warnings(&config);
        let current = self.gate.config();
        if let Some(what) = restart_only_change(&current, &config) {
            return Err(ReloadError::RestartNeeded(what));
        }
        // Watch the folders this config names before reading them: an edit that lands while or
        // after they are read then triggers another reload instead of being missed. If this
        // reload fails, the folders of the config in force stay watched too, and fixing the
        // newly named folder reloads by itself.
        self.follow(&[&current, &config]);
        let policies = cedargate_core::shapes::load_checked(&config.policy_dir, &config)?;
        let shadow = crate::shadow::load(&config).map_err(ReloadError::Shadow)?;
        // A key generated at start stays (`upstream_keys` keeps it): upstreams trust it, and no
        // file holds it.
        let upstream_keys = match &config.upstream_token {
            Some(settings) => Some(crate::mint::upstream_keys(
                settings,
                self.gate.active.load().upstream_keys.as_ref(),
            )?),
            None => None,
        };
        Ok(Active {
            config: Arc::new(config),
            policies: Arc::new(policies),
            shadow,
            upstream_keys,
        })
    }

    /// Spawns the reload task: reloads after file changes in the watched folders or to the config
    /// file (debounced), and on SIGHUP. Stopping the task (abort) stops the watcher too.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        let (tx, mut rx) = mpsc::channel::<&'static str>(64);
        self.start_watching(tx);
        let poller = self
            .bundle
            .clone()
            .map(|source| tokio::spawn(self.clone().poll_bundles(source)));
        tokio::spawn(async move {
            let _stop_watching = StopWatching(self.clone());
            let _stop_polling = poller.map(StopPolling);
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

    /// Polls the bundle server every `poll_interval` (read from the config in force each time);
    /// a new bundle that passes every check is tried as a reload.
    async fn poll_bundles(self: Arc<Self>, source: Arc<BundleSource>) {
        loop {
            let settings = self
                .gate
                .config()
                .policy_bundle
                .clone()
                .unwrap_or_else(|| source.settings().clone());
            tokio::time::sleep(settings.poll_interval).await;
            let outcome = match source.poll(&settings).await {
                Ok(Poll::NotModified) => Ok("not_modified"),
                Ok(Poll::New(candidate)) => {
                    let this = self.clone();
                    let tried = tokio::task::spawn_blocking(move || {
                        let result = this.reload_with("bundle", Some(&candidate));
                        (result, candidate)
                    })
                    .await;
                    match tried {
                        Ok((Ok(_), _)) => Ok("updated"),
                        Ok((Err(e), candidate)) => {
                            source.discard(&candidate);
                            Err(BundleFetchError::Policies(e.to_string()))
                        }
                        Err(e) => Err(BundleFetchError::Policies(e.to_string())),
                    }
                }
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(result) => tracing::debug!(result, "policy_bundle.polled"),
                Err(e) if e.is_rejection() => tracing::error!(
                    url = %settings.url,
                    error = %e,
                    "policy_bundle.rejected: the last good policy set stays in force"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "policy_bundle.fetch_failed: the last good policy set stays in force"
                ),
            }
            source.note_poll(outcome.as_ref().map(|r| *r));
        }
    }

    /// Starts the watcher on the folders of the config in force. Events in a policy folder
    /// trigger a reload; in the config file's folder only those of the config file do (editors
    /// replace files by rename, so the folder is watched, not the file).
    fn start_watching(&self, tx: mpsc::Sender<&'static str>) {
        let files = self.files.clone();
        let policy_dirs = self.policy_dirs.clone();
        let handler = move |event: notify::Result<notify::Event>| {
            let Ok(event) = event else { return };
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            let dirs = policy_dirs.load();
            let files = files.load();
            let relevant = event
                .paths
                .iter()
                .any(|p| files.contains(p) || p.parent().is_some_and(|d| dirs.contains(d)));
            if relevant {
                let _ = tx.try_send("file");
            }
        };
        let watcher = match notify::recommended_watcher(handler) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "reload.watch_unavailable: use SIGHUP to reload");
                return;
            }
        };
        // Under the reload lock, so that a reload racing this start can't be overtaken by the
        // config it replaced.
        let _one_at_a_time = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *self.watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(Watch {
            watcher,
            dirs: BTreeSet::new(),
        });
        self.follow(&[&self.gate.config()]);
    }

    /// Points the watcher at the policy folders `configs` name (the enforced one and the shadow
    /// candidate's) and the config file's folder: watches the new ones, drops the rest. A folder
    /// that can't be watched is logged and tried again by the next reload; SIGHUP still works.
    fn follow(&self, configs: &[&Config]) {
        let policy_dirs: BTreeSet<PathBuf> = configs
            .iter()
            .flat_map(|c| {
                // A bundle's folder changes only through the poller, which reloads by itself.
                let local = c.policy_bundle.is_none().then_some(&c.policy_dir);
                local
                    .into_iter()
                    .chain(c.shadow.as_ref().map(|s| &s.policy_dir))
            })
            .map(|d| absolute(d))
            .collect();
        let files: BTreeSet<PathBuf> = std::iter::once(self.config_file.clone())
            .chain(configs.iter().flat_map(|c| watched_files(c)))
            .collect();
        let mut wanted = policy_dirs.clone();
        wanted.extend(
            files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf)),
        );
        // Before watching: a new folder's events count from its first one.
        self.policy_dirs.store(Arc::new(policy_dirs));
        self.files.store(Arc::new(files));
        let mut guard = self.watch.lock().unwrap_or_else(|p| p.into_inner());
        let Some(watch) = guard.as_mut() else {
            return;
        };
        let dropped: Vec<PathBuf> = watch.dirs.difference(&wanted).cloned().collect();
        for dir in dropped {
            // Fails only when the folder is gone, and with it the kernel's watch.
            if let Err(e) = watch.watcher.unwatch(&dir) {
                tracing::debug!(dir = %dir.display(), error = %e, "reload.unwatch_failed");
            }
            watch.dirs.remove(&dir);
            tracing::info!(dir = %dir.display(), "reload.unwatched");
        }
        let added: Vec<PathBuf> = wanted.difference(&watch.dirs).cloned().collect();
        for dir in added {
            match watch.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::info!(dir = %dir.display(), "reload.watching");
                    watch.dirs.insert(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "reload.watch_failed");
                }
            }
        }
        self.watching
            .store(Arc::new(watch.dirs.iter().cloned().collect()));
    }
}

/// Stops the bundle poller when the reload task ends (or is aborted on shutdown).
struct StopPolling(tokio::task::JoinHandle<()>);

impl Drop for StopPolling {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stops the watcher when the reload task ends (or is aborted on shutdown).
struct StopWatching(Arc<Reloader>);

impl Drop for StopWatching {
    fn drop(&mut self) {
        *self.0.watch.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.0.watching.store(Arc::new(Vec::new()));
    }
}

/// The key files `config` reads (absolute): replacing one reloads, like editing the config.
fn watched_files(config: &Config) -> Vec<PathBuf> {
    let upstream = config
        .upstream_token
        .iter()
        .flat_map(|u| u.key_files.iter());
    upstream
        .chain(config.decision_log.redaction_key_file.iter())
        .map(|f| absolute(f))
        .collect()
}

/// `path` made absolute against the working directory, as the watcher reports paths (it joins
/// relative ones to the working directory), so that events and configured folders compare equal
/// even for a config given as `-c cedargate.yaml` with `policy_dir: policies`.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
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
    match (&old.policy_bundle, &new.policy_bundle) {
        (None, None) if old.policy_dir != new.policy_dir => return Some("policy_dir"),
        (None, None) => {}
        (Some(a), Some(b))
            if a.url != b.url
                || a.signature_url != b.signature_url
                || a.cache_dir != b.cache_dir =>
        {
            return Some("policy_bundle");
        }
        (Some(_), Some(_)) => {}
        _ => return Some("policy_dir / policy_bundle"),
    }
    if old.telemetry != new.telemetry {
        return Some("telemetry");
    }
    if old.entity_provider != new.entity_provider {
        return Some("entity_provider");
    }
    // The Authorizer API is mounted, and its listener bound with its certificate, at start. A
    // reload may still turn it off (calls are then refused `UNAVAILABLE`), or change its limits
    // and caller action, which are read per call.
    match (&old.authorizer_api, &new.authorizer_api) {
        (None, Some(_)) => return Some("authorizer_api"),
        (Some(a), Some(b)) if a.listen != b.listen => return Some("authorizer_api.listen"),
        (Some(a), Some(b)) if a.tls != b.tls => return Some("authorizer_api.tls"),
        _ => {}
    }
    None
}

/// Logs the config's warnings (routes that overlap): legal, so they never stop a load, but an
/// operator should see them where the load is reported.
pub fn log_config_warnings(config: &Config) {
    for w in &config.warnings {
        tracing::warn!(
            file = %config.source.display(),
            line = w.line,
            column = w.column,
            message = %w.message,
            "config.warning"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedargate_core::config::ApiTlsConfig;

    /// The Authorizer API is mounted and bound at start: turning it on, moving its listener or
    /// changing its certificate needs a restart; turning it off or changing what is read per
    /// call does not.
    #[test]
    fn authorizer_api_listener_and_certificate_need_a_restart() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/authorizer-cedargate.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        let with = Config::parse(&yaml, &path).unwrap();
        let api = with.authorizer_api.clone().unwrap();
        let mut without = with.clone();
        without.authorizer_api = None;
        assert_eq!(restart_only_change(&with, &with), None);
        assert_eq!(restart_only_change(&without, &with), Some("authorizer_api"));
        assert_eq!(restart_only_change(&with, &without), None);

        let mut moved = with.clone();
        let mut settings = api.clone();
        settings.listen = Some("127.0.0.1:1".parse().unwrap());
        moved.authorizer_api = Some(settings);
        assert_eq!(restart_only_change(&moved, &without), None);
        let mut other = with.clone();
        let mut settings = api.clone();
        settings.listen = Some("127.0.0.1:2".parse().unwrap());
        other.authorizer_api = Some(settings);
        assert_eq!(
            restart_only_change(&moved, &other),
            Some("authorizer_api.listen")
        );

        let mut tls = moved.clone();
        let mut settings = moved.authorizer_api.clone().unwrap();
        settings.tls = Some(ApiTlsConfig {
            cert_file: "server.pem".into(),
            key_file: "server.key".into(),
            client_ca_file: None,
            require_client_cert: false,
        });
        tls.authorizer_api = Some(settings);
        assert_eq!(
            restart_only_change(&moved, &tls),
            Some("authorizer_api.tls")
        );

        let mut limits = with.clone();
        let mut settings = api;
        settings.max_batch_items += 1;
        limits.authorizer_api = Some(settings);
        assert_eq!(restart_only_change(&with, &limits), None);
    }
}
