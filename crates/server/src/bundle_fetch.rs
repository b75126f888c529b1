//! Policies from a signed bundle (`policy_bundle`): fetching it over HTTP(S) with ETag polling,
//! checking it ([`cedargate_core::bundle_signature::verify`] before a byte is decompressed, then
//! [`cedargate_core::bundle::unpack`]), unpacking it into its own folder, and keeping the last
//! good one on disk so a restart with the bundle server unreachable still enforces it.
//!
//! Owns `policy_bundle.cache_dir`:
//!
//! - `bundle.tar.gz`, `bundle.tar.gz.sig` — the last good bundle and its signature, re-verified
//!   with the configured keys on every start that falls back to them;
//! - `current.json` — what is enforced (revision, digest, signer, ETag), for the reloader and
//!   for people;
//! - `unpacked/<digest>/` — bundles as folders; `current` links to the one in force, so
//!   `cedargate validate` and `test` on the same config read what is enforced.
//!
//! Never swaps policies itself: the reloader validates the unpacked folder exactly as it
//! validates a local policy folder and swaps it in ([`crate::reload`]); only then is the bundle
//! recorded here as the last good one. Never on the Check path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use cedargate_core::bundle::{self, Bundle, BundleError, Limits};
use cedargate_core::bundle_signature::{self, PublicKey, SignatureError};
use cedargate_core::config::{Config, PolicyBundleConfig};
use cedargate_core::record::rfc3339;

/// The last good bundle in the cache folder.
const CACHED_BUNDLE: &str = "bundle.tar.gz";
/// Its signature.
const CACHED_SIGNATURE: &str = "bundle.tar.gz.sig";
/// What is enforced, as JSON ([`Enforced`]).
const CURRENT_JSON: &str = "current.json";
/// The link to the unpacked bundle in force (the config's `policy_dir`).
const CURRENT_LINK: &str = "current";
/// Unpacked bundles, one folder per digest.
const UNPACKED: &str = "unpacked";

/// Why a bundle could not be fetched or was refused.
#[derive(Debug, thiserror::Error)]
pub enum BundleFetchError {
    /// The bundle server could not be asked, or answered with an error.
    #[error("fetching {url}: {why}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// What went wrong.
        why: String,
    },
    /// The signature was refused.
    #[error("refused: {0}")]
    Signature(#[from] SignatureError),
    /// The archive was refused.
    #[error("refused: {0}")]
    Bundle(#[from] BundleError),
    /// The bundle's policies did not validate (as a hot reload validates them).
    #[error("refused: the bundle's policy set is invalid: {0}")]
    Policies(String),
    /// A public key file is unreadable.
    #[error("policy_bundle.public_key_files: {0}")]
    Keys(String),
    /// The cache folder could not be written or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// At start: no bundle from the server and none usable in the cache.
    #[error(
        "no policy bundle to enforce: the server gave none ({fetch}) and the cache has none ({cache})"
    )]
    NoBundle {
        /// Why the fetch failed.
        fetch: String,
        /// Why the cache could not be used.
        cache: String,
    },
}

impl BundleFetchError {
    /// Whether the bundle was refused (`rejected`), rather than not obtained (`error`).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            BundleFetchError::Signature(_)
                | BundleFetchError::Bundle(_)
                | BundleFetchError::Policies(_)
        )
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BundleFetchError {
    let what = what.into();
    move |source| BundleFetchError::Io { what, source }
}

/// The bundle in force, as recorded in `current.json` and shown on `/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforced {
    /// The manifest's revision.
    pub revision: String,
    /// SHA-256 of the archive, hex.
    pub digest: String,
    /// When it was built (manifest).
    pub created: String,
    /// The id of the key that signed it.
    pub signed_by: String,
    /// `server` (fetched) or `cache` (the last good bundle, at a start without the server).
    pub source: String,
    /// The server's ETag for it, sent as `If-None-Match`.
    pub etag: Option<String>,
    /// Its unpacked folder.
    pub dir: PathBuf,
}

/// Bundle status for `/policy`.
#[derive(Debug, Clone, Serialize)]
pub struct BundleStatus {
    /// Where bundles come from.
    pub url: String,
    /// The bundle in force.
    pub enforced: Option<Enforced>,
    /// When the last poll ended, and how (`updated`, `not_modified`, `error`, `rejected`).
    pub last_poll: Option<(String, &'static str)>,
    /// When a poll last confirmed or replaced the bundle in force.
    pub last_success: Option<String>,
    /// Why the last poll failed (cleared by a success).
    pub last_error: Option<String>,
    /// Seconds between polls.
    pub poll_interval_seconds: u64,
}

/// A checked, unpacked bundle waiting to be validated and swapped in.
pub struct Candidate {
    /// The archive.
    archive: Vec<u8>,
    /// Its signature file.
    signature: Vec<u8>,
    /// What it is.
    pub enforced: Enforced,
}

/// One policy bundle source: the settings, the HTTP client and what is enforced.
pub struct BundleSource {
    /// Settings from start; `url`, `signature_url` and `cache_dir` need a restart to change.
    settings: PolicyBundleConfig,
    /// No redirects (a redirect could lead to a URL the config rules refuse).
    http: reqwest::Client,
    /// The bundle in force.
    enforced: ArcSwap<Option<Enforced>>,
    /// Last poll: when, result, error; last success.
    polls: Mutex<PollState>,
}

#[derive(Default)]
struct PollState {
    last: Option<(SystemTime, &'static str)>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

/// What one poll found.
pub enum Poll {
    /// 304, or the same digest again: nothing to do.
    NotModified,
    /// A new bundle, checked and unpacked.
    New(Box<Candidate>),
}

impl BundleSource {
    /// The source for `settings`, with what `prepare` recorded as enforced in the cache folder.
    pub fn new(settings: PolicyBundleConfig) -> Result<BundleSource, BundleFetchError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| BundleFetchError::Fetch {
                url: settings.url.clone(),
                why: e.to_string(),
            })?;
        let enforced = std::fs::read(settings.cache_dir.join(CURRENT_JSON))
            .ok()
            .and_then(|b| serde_json::from_slice::<Enforced>(&b).ok());
        if let Some(e) = &enforced {
            crate::metrics::bundle_enforced(&e.revision, &e.digest);
        }
        Ok(BundleSource {
            settings,
            http,
            enforced: ArcSwap::from_pointee(enforced),
            polls: Mutex::new(PollState::default()),
        })
    }

    /// Settings from start.
    pub fn settings(&self) -> &PolicyBundleConfig {
        &self.settings
    }

    /// The unpacked folder in force, if any.
    pub fn enforced_dir(&self) -> Option<PathBuf> {
        self.enforced
            .load()
            .as_ref()
            .as_ref()
            .map(|e| e.dir.clone())
    }

    /// The status for `/policy`.
    pub fn status(&self, poll_interval: Duration) -> BundleStatus {
        let polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        BundleStatus {
            url: self.settings.url.clone(),
            enforced: self.enforced.load().as_ref().clone(),
            last_poll: polls.last.map(|(at, r)| (rfc3339(at), r)),
            last_success: polls.last_success.map(rfc3339),
            last_error: polls.last_error.clone(),
            poll_interval_seconds: poll_interval.as_secs(),
        }
    }

    /// Asks the server for a bundle newer than the one in force (`If-None-Match`), and checks
    /// and unpacks it. `settings` are those of the config in force (keys, timeout and size
    /// follow reloads; the URLs and the cache folder are this source's); the key files are read
    /// now, so a replaced key applies to the next poll.
    pub async fn poll(&self, settings: &PolicyBundleConfig) -> Result<Poll, BundleFetchError> {
        let etag = self
            .enforced
            .load()
            .as_ref()
            .as_ref()
            .and_then(|e| e.etag.clone());
        let limits = Limits {
            max_archive_bytes: settings.max_bytes,
            ..bundle::DEFAULT_LIMITS
        };
        let timeout = settings.fetch_timeout;
        let Some((archive, etag)) = self.fetch_bundle(etag.as_deref(), &limits, timeout).await?
        else {
            return Ok(Poll::NotModified);
        };
        let current = self.enforced.load().as_ref().clone();
        if let Some(current) = current
            && current.digest == bundle::sha256_hex(&archive)
        {
            // The same bytes under a new ETag (or a server without ETags): remember the tag.
            self.record_enforced(Enforced { etag, ..current })?;
            return Ok(Poll::NotModified);
        }
        let signature = self.fetch_signature(timeout).await?;
        let keys = load_keys(&settings.public_key_files)?;
        let candidate = check(
            archive,
            signature,
            &keys,
            &limits,
            etag,
            "server",
            &self.settings.cache_dir,
        )?;
        Ok(Poll::New(Box::new(candidate)))
    }

    /// Notes the outcome of a poll for `/policy` and the metrics.
    pub fn note_poll(&self, outcome: Result<&'static str, &BundleFetchError>) {
        let now = SystemTime::now();
        let mut polls = self.polls.lock().unwrap_or_else(|p| p.into_inner());
        let result = match outcome {
            Ok(result) => {
                polls.last_success = Some(now);
                polls.last_error = None;
                crate::metrics::bundle_success(now);
                result
            }
            Err(e) => {
                polls.last_error = Some(e.to_string());
                if e.is_rejection() {
                    "rejected"
                } else {
                    "error"
                }
            }
        };
        polls.last = Some((now, result));
        crate::metrics::bundle_fetch(result);
    }

    /// Records `candidate` as the bundle in force, after the reloader swapped it in: the last
    /// good bundle in the cache, `current` pointing at it, older unpacked folders removed.
    pub fn commit(&self, candidate: &Candidate) -> Result<(), BundleFetchError> {
        let dir = &self.settings.cache_dir;
        write_atomically(&dir.join(CACHED_BUNDLE), &candidate.archive)?;
        write_atomically(&dir.join(CACHED_SIGNATURE), &candidate.signature)?;
        self.record_enforced(candidate.enforced.clone())?;
        remove_other_unpacked(dir, &candidate.enforced.dir);
        Ok(())
    }

    /// Forgets a refused candidate's folder.
    pub fn discard(&self, candidate: &Candidate) {
        if self.enforced_dir().as_deref() != Some(candidate.enforced.dir.as_path()) {
            let _ = std::fs::remove_dir_all(&candidate.enforced.dir);
        }
    }

    fn record_enforced(&self, enforced: Enforced) -> Result<(), BundleFetchError> {
        // In memory first: a reload that follows reads the new folder even if the disk fails.
        self.enforced
            .store(std::sync::Arc::new(Some(enforced.clone())));
        crate::metrics::bundle_enforced(&enforced.revision, &enforced.digest);
        let dir = &self.settings.cache_dir;
        let json = serde_json::to_vec_pretty(&enforced).map_err(|e| BundleFetchError::Io {
            what: "encoding current.json".into(),
            source: std::io::Error::other(e),
        })?;
        write_atomically(&dir.join(CURRENT_JSON), &json)?;
        point_current(dir, &enforced.dir)
    }

    /// GET the bundle; `None` on 304.
    async fn fetch_bundle(
        &self,
        etag: Option<&str>,
        limits: &Limits,
        timeout: Duration,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, BundleFetchError> {
        let url = &self.settings.url;
        let mut request = self.http.get(url).timeout(timeout);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(fetch_error(url))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_body(response, url, limits.max_archive_bytes).await?;
        Ok(Some((body, etag)))
    }

    /// GET the signature; a 404 means an unsigned bundle.
    async fn fetch_signature(
        &self,
        timeout: Duration,
    ) -> Result<Option<Vec<u8>>, BundleFetchError> {
        let url = &self.settings.signature_url;
        let response = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(fetch_error(url))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        read_body(response, url, bundle_signature::MAX_SIGNATURE_BYTES)
            .await
            .map(Some)
    }
}

fn fetch_error(url: &str) -> impl FnOnce(reqwest::Error) -> BundleFetchError {
    let url = url.to_string();
    move |e| {
        let why = if e.is_timeout() {
            "timed out".to_string()
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            e.to_string()
        };
        BundleFetchError::Fetch { url, why }
    }
}

/// A 200 answer's body, at most `max` bytes.
async fn read_body(
    mut response: reqwest::Response,
    url: &str,
    max: u64,
) -> Result<Vec<u8>, BundleFetchError> {
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(BundleFetchError::Fetch {
            url: url.to_string(),
            why: format!("answered {status}"),
        });
    }
    let too_large = || {
        BundleFetchError::Bundle(BundleError::TooLarge {
            what: format!("the answer from {url}"),
            limit: max,
        })
    };
    if response.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_error(url))? {
        if body.len() as u64 + chunk.len() as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The configured public keys.
pub fn load_keys(files: &[PathBuf]) -> Result<Vec<PublicKey>, BundleFetchError> {
    files
        .iter()
        .map(|f| {
            let pem = std::fs::read(f)
                .map_err(|e| BundleFetchError::Keys(format!("{}: {e}", f.display())))?;
            PublicKey::from_pem(&pem)
                .map_err(|e| BundleFetchError::Keys(format!("{}: {e}", f.display())))
        })
        .collect()
}

/// Verifies the signature, then unpacks and checks the archive, then writes its files into
/// `unpacked/<digest>` under `cache_dir`.
fn check(
    archive: Vec<u8>,
    signature: Option<Vec<u8>>,
    keys: &[PublicKey],
    limits: &Limits,
    etag: Option<String>,
    source: &str,
    cache_dir: &Path,
) -> Result<Candidate, BundleFetchError> {
    if archive.len() as u64 > limits.max_archive_bytes {
        return Err(BundleError::TooLarge {
            what: "the bundle".into(),
            limit: limits.max_archive_bytes,
        }
        .into());
    }
    let signed_by = bundle_signature::verify(&archive, signature.as_deref(), keys)?;
    let bundle = bundle::unpack(&archive, limits)?;
    let dir = write_unpacked(cache_dir, &bundle)?;
    Ok(Candidate {
        archive,
        signature: signature.unwrap_or_default(),
        enforced: Enforced {
            revision: bundle.manifest.revision.clone(),
            digest: bundle.digest.clone(),
            created: bundle.manifest.created.clone(),
            signed_by,
            source: source.to_string(),
            etag,
            dir,
        },
    })
}

/// Writes the bundle's files into a fresh `unpacked/<digest>` (through a temporary folder and a
/// rename, so a folder under that name is always complete).
fn write_unpacked(cache_dir: &Path, bundle: &Bundle) -> Result<PathBuf, BundleFetchError> {
    let unpacked = cache_dir.join(UNPACKED);
    std::fs::create_dir_all(&unpacked).map_err(io(format!("creating {}", unpacked.display())))?;
    let name: String = bundle.digest.chars().take(16).collect();
    let target = unpacked.join(&name);
    let temp = unpacked.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    for (path, content) in &bundle.files {
        // `path` passed `bundle::path_problem`: relative, no `..`, no empty parts.
        let file = temp.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&file, content).map_err(io(format!("writing {}", file.display())))?;
    }
    std::fs::create_dir_all(&temp).map_err(io(format!("creating {}", temp.display())))?;
    if target.exists() {
        std::fs::remove_dir_all(&target).map_err(io(format!("replacing {}", target.display())))?;
    }
    std::fs::rename(&temp, &target).map_err(io(format!("renaming to {}", target.display())))?;
    Ok(target)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), BundleFetchError> {
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&temp, bytes).map_err(io(format!("writing {}", temp.display())))?;
    std::fs::rename(&temp, path).map_err(io(format!("renaming to {}", path.display())))
}

/// Points `cache_dir/current` at `dir` (a relative link, replaced by a rename).
fn point_current(cache_dir: &Path, dir: &Path) -> Result<(), BundleFetchError> {
    let target = dir.strip_prefix(cache_dir).unwrap_or(dir);
    let temp = cache_dir.join(format!(".current-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp).map_err(io(format!("linking {}", temp.display())))?;
    let link = cache_dir.join(CURRENT_LINK);
    std::fs::rename(&temp, &link).map_err(io(format!("renaming to {}", link.display())))
}

fn remove_other_unpacked(cache_dir: &Path, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(cache_dir.join(UNPACKED)) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != keep {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// At start: the bundle to enforce. A fresh one from the server when it answers with a bundle
/// that passes every check (and, when the cache has a different one to fall back on, that
/// validates as a policy set); otherwise the cached last good bundle, re-verified with the
/// configured keys. Returns `config` with `policy_dir` pointing at the chosen bundle's folder.
pub async fn prepare(mut config: Config) -> Result<Config, BundleFetchError> {
    let Some(settings) = config.policy_bundle.clone() else {
        return Ok(config);
    };
    let cache_dir = &settings.cache_dir;
    std::fs::create_dir_all(cache_dir).map_err(io(format!("creating {}", cache_dir.display())))?;
    let keys = load_keys(&settings.public_key_files)?;
    let source = BundleSource::new(settings.clone())?;
    let limits = Limits {
        max_archive_bytes: settings.max_bytes,
        ..bundle::DEFAULT_LIMITS
    };
    let fetched = async {
        let (archive, etag) = source
            .fetch_bundle(None, &limits, settings.fetch_timeout)
            .await?
            .ok_or_else(|| BundleFetchError::Fetch {
                url: settings.url.clone(),
                why: "answered 304 to a request without If-None-Match".into(),
            })?;
        let signature = source.fetch_signature(settings.fetch_timeout).await?;
        check(
            archive, signature, &keys, &limits, etag, "server", cache_dir,
        )
    }
    .await;
    let cached = (|| {
        let archive = std::fs::read(cache_dir.join(CACHED_BUNDLE)).map_err(io(format!(
            "reading {}",
            cache_dir.join(CACHED_BUNDLE).display()
        )))?;
        let signature = std::fs::read(cache_dir.join(CACHED_SIGNATURE)).ok();
        let etag = source
            .enforced
            .load()
            .as_ref()
            .as_ref()
            .and_then(|e| e.etag.clone());
        check(archive, signature, &keys, &limits, etag, "cache", cache_dir)
    })();
    let chosen = match (fetched, cached) {
        (Ok(fresh), Ok(cached)) if fresh.enforced.digest == cached.enforced.digest => fresh,
        (Ok(fresh), Ok(cached)) => {
            let mut trial = config.clone();
            trial.policy_dir = fresh.enforced.dir.clone();
            match cedargate_core::shapes::load_checked(&trial.policy_dir, &trial) {
                Ok(_) => fresh,
                Err(e) => {
                    tracing::error!(revision = %fresh.enforced.revision, digest = %fresh.enforced.digest, error = %e,
                        "policy_bundle.rejected: the fetched bundle's policies are invalid; enforcing the cached last good bundle");
                    source.discard(&fresh);
                    cached
                }
            }
        }
        (Ok(fresh), Err(_)) => fresh,
        (Err(fetch), Ok(cached)) => {
            tracing::warn!(error = %fetch, revision = %cached.enforced.revision, digest = %cached.enforced.digest,
                "policy_bundle.fetch_failed: enforcing the cached last good bundle");
            cached
        }
        (Err(fetch), Err(cache)) => {
            return Err(BundleFetchError::NoBundle {
                fetch: fetch.to_string(),
                cache: cache.to_string(),
            });
        }
    };
    source.commit(&chosen)?;
    tracing::info!(
        revision = %chosen.enforced.revision,
        digest = %chosen.enforced.digest,
        signed_by = %chosen.enforced.signed_by,
        source = %chosen.enforced.source,
        "policy_bundle.loaded"
    );
    config.policy_dir = chosen.enforced.dir.clone();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedargate_core::bundle_signature::{Algorithm, generate};
    use std::collections::BTreeMap;

    #[test]
    fn a_checked_bundle_is_unpacked_and_committed_as_the_last_good_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path();
        let (private, public) = generate(Algorithm::Ed25519).unwrap();
        let keys = [PublicKey::from_pem(public.as_bytes()).unwrap()];
        let files: BTreeMap<String, Vec<u8>> = [
            (
                "a.cedar".to_string(),
                b"permit(principal, action, resource);".to_vec(),
            ),
            ("tests/a.yaml".to_string(), b"cases: []".to_vec()),
        ]
        .into();
        let archive =
            bundle::build("r7", SystemTime::now(), &files, &bundle::DEFAULT_LIMITS).unwrap();
        let sig = bundle_signature::sign(&archive, private.as_bytes()).unwrap();
        let limits = bundle::DEFAULT_LIMITS;
        // Unsigned and tampered: refused before anything is written.
        let err = check(archive.clone(), None, &keys, &limits, None, "server", cache)
            .err()
            .unwrap();
        assert!(err.to_string().contains("not signed"), "{err}");
        let mut tampered = archive.clone();
        *tampered.last_mut().unwrap() ^= 1;
        let err = check(
            tampered,
            Some(sig.clone()),
            &keys,
            &limits,
            None,
            "server",
            cache,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("altered or truncated"), "{err}");
        assert!(!cache.join(UNPACKED).exists());

        let candidate = check(
            archive.clone(),
            Some(sig),
            &keys,
            &limits,
            Some("\"e1\"".into()),
            "server",
            cache,
        )
        .unwrap();
        assert_eq!(candidate.enforced.revision, "r7");
        let dir = candidate.enforced.dir.clone();
        assert_eq!(
            std::fs::read(dir.join("tests/a.yaml")).unwrap(),
            b"cases: []"
        );
        let settings = PolicyBundleConfig {
            url: "http://127.0.0.1:1/b.tar.gz".into(),
            signature_url: "http://127.0.0.1:1/b.tar.gz.sig".into(),
            public_key_files: vec![],
            cache_dir: cache.to_path_buf(),
            poll_interval: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(1),
            max_bytes: 1 << 20,
        };
        std::fs::create_dir_all(cache.join(UNPACKED).join("stale")).unwrap();
        let source = BundleSource::new(settings.clone()).unwrap();
        source.commit(&candidate).unwrap();
        assert_eq!(std::fs::read(cache.join(CACHED_BUNDLE)).unwrap(), archive);
        assert_eq!(
            std::fs::canonicalize(cache.join(CURRENT_LINK)).unwrap(),
            std::fs::canonicalize(&dir).unwrap()
        );
        assert!(!cache.join(UNPACKED).join("stale").exists());
        // A new source (a restart) knows what is enforced.
        let again = BundleSource::new(settings).unwrap();
        assert_eq!(again.enforced_dir(), Some(dir));
        assert_eq!(
            again
                .status(Duration::from_secs(1))
                .enforced
                .unwrap()
                .etag
                .as_deref(),
            Some("\"e1\"")
        );
    }
}
