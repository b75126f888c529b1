//! The API key store of `serve`: the key file (`api_keys.file`) loaded into an immutable
//! [`KeyIndex`] behind `ArcSwap`, reloaded when the file changes (inotify via `notify`; the last
//! good index stays in force when a change does not parse), and the check of a presented key.
//!
//! A Check loads the index pointer and does one hash-map lookup and one constant-time HMAC
//! comparison (`cedargate_core::api_keys`); it never takes a lock a reload holds. The key text is
//! never logged or recorded: errors carry the key's public id at most.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use notify::{RecursiveMode, Watcher};

use crate::metrics::API_KEY_RELOADS;
use cedargate_core::api_keys::{ApiKey, ApiKeyError, KeyFile, KeyIndex, presented_id};
use cedargate_core::config::ApiKeysConfig;
use cedargate_core::identity::IdentityError;
use cedargate_core::token::now_secs;

/// The keys of `api_keys.file`, kept current.
pub struct ApiKeys {
    /// The file, absolute (as the watcher reports paths).
    file: PathBuf,
    /// The last index that loaded; `None` until one did (every key refused meanwhile).
    index: Arc<ArcSwapOption<KeyIndex>>,
    /// Dropping it stops watching.
    _watcher: Option<notify::RecommendedWatcher>,
}

impl ApiKeys {
    /// Loads the key file and starts watching its folder (editors and `cedargate apikey`
    /// replace the file by rename, so the folder is watched, not the file). A file that can't
    /// be loaded leaves every key refused (`api_keys_unavailable`) until it can.
    pub fn start(config: &ApiKeysConfig) -> ApiKeys {
        let file = std::path::absolute(&config.file).unwrap_or_else(|_| config.file.clone());
        let index = Arc::new(ArcSwapOption::empty());
        load(&file, &index, "start");
        let watcher = watch(&file, &index);
        ApiKeys {
            file,
            index,
            _watcher: watcher,
        }
    }

    /// Checks the key presented for a request under `config` (the config in force: a reload
    /// that points `api_keys.file` elsewhere needs a restart, and until then keys are refused
    /// rather than checked against the wrong file).
    pub fn verify(
        &self,
        config: &ApiKeysConfig,
        presented: &str,
    ) -> Result<Arc<ApiKey>, IdentityError> {
        let refused = |error| IdentityError::ApiKey {
            id: presented_id(presented).map(str::to_string),
            error,
        };
        let same_file = std::path::absolute(&config.file).is_ok_and(|f| f == self.file);
        let index = self.index.load();
        match (&*index, same_file) {
            (Some(index), true) => index.verify(presented, now_secs()).map_err(refused),
            _ => Err(refused(ApiKeyError::Unavailable)),
        }
    }

    /// Keys in force (for tests and logs).
    pub fn len(&self) -> usize {
        self.index.load().as_ref().map_or(0, |i| i.len())
    }

    /// Whether no key is in force.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reads and parses `file` into `index`; on failure keeps the index in force and says why.
fn load(file: &Path, index: &ArcSwapOption<KeyIndex>, trigger: &'static str) {
    let parsed = std::fs::read_to_string(file)
        .map_err(|e| {
            format!(
                "{}: {}",
                file.display(),
                cedargate_core::config::io_words(&e)
            )
        })
        .and_then(|text| KeyFile::parse(&text, file).map_err(|e| e.to_string()));
    match parsed {
        Ok(parsed) => {
            let loaded = KeyIndex::new(&parsed);
            tracing::info!(file = %file.display(), keys = loaded.len(), trigger, "api_keys.loaded");
            index.store(Some(Arc::new(loaded)));
            metrics::counter!(API_KEY_RELOADS, "result" => "ok").increment(1);
        }
        Err(error) => {
            let kept = index.load().as_ref().map(|i| i.len());
            tracing::error!(%error, trigger, kept_keys = ?kept, "api_keys.load_failed: the last good keys stay in force");
            metrics::counter!(API_KEY_RELOADS, "result" => "failed").increment(1);
        }
    }
}

fn watch(file: &Path, index: &Arc<ArcSwapOption<KeyIndex>>) -> Option<notify::RecommendedWatcher> {
    let dir = file.parent()?.to_path_buf();
    let target = file.to_path_buf();
    let index = index.clone();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        if event.paths.contains(&target) && target.is_file() {
            load(&target, &index, "file");
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "api_keys.watch_unavailable: key file changes need a restart");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "api_keys.watch_failed: key file changes need a restart");
        return None;
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedargate_core::api_keys::{generate, parse_uid};

    #[test]
    fn keys_reload_when_the_file_changes_and_a_bad_file_keeps_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys.json");
        let (first, entry) = generate(parse_uid(r#"Service::"a""#).unwrap()).unwrap();
        let mut keys = KeyFile::new();
        keys.keys.push(entry);
        std::fs::write(&file, keys.to_text()).unwrap();
        let config = ApiKeysConfig {
            header: "x-api-key".into(),
            file: file.clone(),
        };
        let store = ApiKeys::start(&config);
        assert_eq!(store.verify(&config, &first).unwrap().principal.id, "a");

        let (second, entry) = generate(parse_uid(r#"Service::"b""#).unwrap()).unwrap();
        keys.keys.push(entry);
        let tmp = dir.path().join("keys.json.tmp");
        std::fs::write(&tmp, keys.to_text()).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while store.verify(&config, &second).is_err() {
            assert!(std::time::Instant::now() < deadline, "no reload");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::fs::write(&file, "{ not json").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(store.len(), 2, "a bad file keeps the last good keys");
        assert!(store.verify(&config, &first).is_ok());
        let other = ApiKeysConfig {
            header: "x-api-key".into(),
            file: dir.path().join("elsewhere.json"),
        };
        assert_eq!(
            store.verify(&other, &first).unwrap_err().reason(),
            "api_keys_unavailable"
        );
    }
}
