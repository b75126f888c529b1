//! The entity provider (`entity_provider` in the config): an HTTP service cedargate asks, at
//! decision time, for the entities of a request's principal and resource, with the answers cached
//! per uid.
//!
//! Owns the HTTP client, the protocol (`GET {url}?type=T&id=I` → `200` with a JSON array of Cedar
//! entities; `404` or `[]`: nothing known about that uid, which is an answer, not an error), the
//! bounds on an answer (its size, counted while it is read; the time budget of one Check) and the
//! answer cache (moka: TTL, capacity, one fetch in flight per uid, failures never cached). A fetch
//! runs in the Check's task; one that outlives the Check's budget moves to a task of its own, so
//! that its answer still fills the cache for the next Check.
//!
//! It checks an answer's shape (an array of objects, each with a `uid`) and nothing more: what the
//! entities say, and whether they conform to the schema, is `policy`'s business when they are
//! merged. It must not decide anything: a failure goes back to the gate, which denies
//! `entities_unavailable` through `decision`. It never logs or returns a response body, and its
//! error texts carry the uid and the failure, never credentials (the configured URL has none:
//! `config` refuses user info).

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::metrics::{self, FetchResult};
use cedargate_core::config::EntityProviderConfig;
use cedargate_core::mapping::EntityRef;

/// How long one fetch may run, as a multiple of the per-Check budget. A fetch outlives the Checks
/// that gave up on it so that a provider slower than the budget fills the cache and later Checks
/// are served from it; the bound keeps a provider that never answers from holding tasks and
/// connections forever.
const FETCH_LIMIT_FACTOR: u32 = 10;

/// One uid's answer: the entities as received, possibly none. Shared by the cache and the Checks.
type Answer = Arc<[Value]>;

/// Why the provider client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configured URL does not parse (config validated it, so this is a bug).
    #[error("entity_provider.url: {0}")]
    Url(#[from] url::ParseError),
    /// The HTTP client could not be built (TLS roots).
    #[error("entity provider http client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why a Check could not have its entities. Every variant denies `entities_unavailable`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The budget (`timeout_ms`) passed before every answer arrived.
    #[error("entity provider: no answer within the {} ms budget", .0.as_millis())]
    Budget(Duration),
    /// A fetch failed.
    #[error("entity provider: {uid}: {source}")]
    Fetch {
        /// The uid asked about, as Cedar prints it.
        uid: String,
        /// Why (shared by every Check that waited for the same fetch).
        source: Arc<FetchError>,
    },
}

/// Why one fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No response: connection refused, reset, DNS, TLS.
    #[error("request failed: {0}")]
    Request(String),
    /// No complete answer within the fetch limit.
    #[error("no answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// A status other than 200 and 404 (redirects are not followed).
    #[error("answered HTTP {0} (expected 200, or 404 for no data)")]
    Status(u16),
    /// The body passed `max_body_bytes`; reading stopped there.
    #[error("answer larger than max_body_bytes ({0} bytes)")]
    TooLarge(usize),
    /// The body is not JSON (the parser's message: a position, never the body).
    #[error("answer is not JSON: {0}")]
    Json(String),
    /// The body is JSON but not an array.
    #[error("answer is not a JSON array of entities")]
    NotArray,
    /// An element is not an object with a `uid` object.
    #[error("element {0} of the answer is not an entity with a uid")]
    NoUid(usize),
}

impl FetchError {
    /// The `result` label of the fetch metric.
    fn result(&self) -> FetchResult {
        match self {
            FetchError::Timeout(_) => FetchResult::Timeout,
            _ => FetchResult::Error,
        }
    }
}

/// The entity provider client and its answer cache.
pub struct EntityProvider {
    /// Entity types asked about; a request's uids of other types are never fetched.
    types: BTreeSet<String>,
    /// Budget for all fetches of one Check.
    timeout: Duration,
    /// Answers per uid (keyed as Cedar prints it: `User::"alice"`), each kept `cache_ttl`, at most
    /// `cache_capacity` of them.
    cache: moka::future::Cache<String, Answer>,
    /// What a fetch needs, cloned into the task that runs it.
    fetcher: Fetcher,
}

/// One fetch's settings and client; cheap to clone (the client and URL are shared).
#[derive(Clone)]
struct Fetcher {
    /// Connection pool shared by all fetches; follows no redirects.
    http: reqwest::Client,
    /// The endpoint, without query.
    url: Arc<url::Url>,
    /// How long one fetch may run in all ([`FETCH_LIMIT_FACTOR`] × the budget).
    limit: Duration,
    /// Largest body read.
    max_body_bytes: usize,
    /// Set while fetches fail, so that an outage is logged once, not once per Check.
    failing: Arc<AtomicBool>,
}

impl EntityProvider {
    /// A provider client for `config`.
    pub fn new(config: &EntityProviderConfig) -> Result<EntityProvider, BuildError> {
        let url = url::Url::parse(&config.url)?;
        // Like the key fetcher's client: rustls, no redirects. The URL is configuration, and a
        // redirect could downgrade https to http or leave the operator's service.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(EntityProvider {
            types: config.types.clone(),
            timeout: config.timeout,
            cache: moka::future::Cache::builder()
                .max_capacity(config.cache_capacity)
                .time_to_live(config.cache_ttl)
                .build(),
            fetcher: Fetcher {
                http,
                url: Arc::new(url),
                limit: config.timeout.saturating_mul(FETCH_LIMIT_FACTOR),
                max_body_bytes: config.max_body_bytes,
                failing: Arc::new(AtomicBool::new(false)),
            },
        })
    }

    /// The entity types this provider is asked about.
    pub fn types(&self) -> &BTreeSet<String> {
        &self.types
    }

    /// The entities the provider knows about `uids`, each answer once, in order: from the cache,
    /// or fetched side by side, all within the budget. Any failure fails the whole lookup: a
    /// Check is never decided on part of its data.
    ///
    /// The fetches run inside the Check's own task: a task per fetch would cost a hand-off to
    /// the runtime and back on every miss (on a VM, an idle vCPU's wake-up each way). When the
    /// budget runs out first, the unfinished fetches are handed to tasks of their own, so that a
    /// provider slower than the budget still fills the cache for the next Check.
    pub async fn fetch(&self, uids: &[EntityRef]) -> Result<Vec<Value>, ProviderError> {
        let mut slots = Vec::with_capacity(uids.len());
        for uid in uids {
            let key = uid.to_string();
            if let Some(answer) = self.cache.get(&key).await {
                metrics::entity_cache_lookup(true);
                slots.push(Slot::Answered(Ok(answer)));
                continue;
            }
            metrics::entity_cache_lookup(false);
            let (cache, fetcher, uid) = (self.cache.clone(), self.fetcher.clone(), uid.clone());
            // `try_get_with` makes concurrent Checks for one uid share one fetch, and caches
            // only a success. Owned and boxed, so that it can move into a task if it outlives
            // the budget.
            let fetch: Fetch = Box::pin(async move {
                let answer = cache.try_get_with(key.clone(), fetcher.fetch(&uid)).await;
                answer.map_err(|source| ProviderError::Fetch { uid: key, source })
            });
            slots.push(Slot::Fetching(fetch));
        }
        let all_answered = std::future::poll_fn(|cx| {
            let mut waiting = false;
            for slot in slots.iter_mut() {
                if let Slot::Fetching(fetch) = slot {
                    match fetch.as_mut().poll(cx) {
                        Poll::Ready(answer) => *slot = Slot::Answered(answer),
                        Poll::Pending => waiting = true,
                    }
                }
            }
            if waiting {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        });
        if tokio::time::timeout(self.timeout, all_answered)
            .await
            .is_err()
        {
            for slot in slots {
                if let Slot::Fetching(fetch) = slot {
                    tokio::spawn(fetch);
                }
            }
            return Err(ProviderError::Budget(self.timeout));
        }
        let mut entities: Vec<Value> = Vec::new();
        for slot in slots {
            let Slot::Answered(answer) = slot else {
                return Err(ProviderError::Budget(self.timeout));
            };
            // Both answers may bring the same related entity; record it once.
            for entity in answer?.iter() {
                if !entities.contains(entity) {
                    entities.push(entity.clone());
                }
            }
        }
        Ok(entities)
    }
}

/// One uid's fetch, owned so that it can be handed to a task of its own.
type Fetch = Pin<Box<dyn Future<Output = Result<Answer, ProviderError>> + Send>>;

/// One uid's answer: at hand, or being fetched.
enum Slot {
    /// From the cache, or fetched.
    Answered(Result<Answer, ProviderError>),
    /// Being fetched (polled by the Check until answered or the budget runs out).
    Fetching(Fetch),
}

impl Fetcher {
    /// Fetches, times and counts one uid's answer.
    async fn fetch(self, uid: &EntityRef) -> Result<Answer, FetchError> {
        let started = Instant::now();
        let answer = match tokio::time::timeout(self.limit, self.get(uid)).await {
            Ok(answer) => answer,
            Err(_) => Err(FetchError::Timeout(self.limit)),
        };
        let result = match &answer {
            Ok(entities) if entities.is_empty() => FetchResult::NotFound,
            Ok(_) => FetchResult::Ok,
            Err(e) => e.result(),
        };
        metrics::entity_fetch(result, started.elapsed());
        match &answer {
            // The uid stays out of operational logs (it may be a redacted claim); the decision
            // record carries it with the error.
            Err(e) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(entity_type = %uid.entity_type, error = %e, "entity_provider.failing: Checks that need its data are denied entities_unavailable");
            }
            Ok(_) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!("entity_provider.recovered");
            }
            _ => {}
        }
        answer
    }

    /// `GET {url}?type=T&id=I`, the body read up to `max_body_bytes`.
    async fn get(&self, uid: &EntityRef) -> Result<Answer, FetchError> {
        let mut url = (*self.url).clone();
        url.query_pairs_mut()
            .append_pair("type", &uid.entity_type)
            .append_pair("id", &uid.id);
        let mut response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(request_error)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(Arc::from([])),
            status => return Err(FetchError::Status(status)),
        }
        let max = self.max_body_bytes;
        let announced = response.content_length().unwrap_or(0);
        if announced > u64::try_from(max).unwrap_or(u64::MAX) {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(max).min(max));
        while let Some(chunk) = response.chunk().await.map_err(request_error)? {
            if body.len().saturating_add(chunk.len()) > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        parse(&body)
    }
}

/// An answer body: a JSON array of objects, each with a `uid` object.
fn parse(body: &[u8]) -> Result<Answer, FetchError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| FetchError::Json(e.to_string()))?;
    let Value::Array(entities) = value else {
        return Err(FetchError::NotArray);
    };
    if let Some(i) = entities
        .iter()
        .position(|e| !e.get("uid").is_some_and(Value::is_object))
    {
        return Err(FetchError::NoUid(i));
    }
    Ok(entities.into())
}

/// A transport error with its causes ("connection refused" is a source of a source), without
/// the URL (the uid it names is already in the message).
fn request_error(e: reqwest::Error) -> FetchError {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    FetchError::Request(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<usize, String> {
        parse(body.as_bytes())
            .map(|a| a.len())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn answers_are_arrays_of_entities_with_a_uid() {
        assert_eq!(parsed("[]"), Ok(0));
        assert_eq!(
            parsed(r#"[{"uid":{"type":"User","id":"alice"},"attrs":{},"parents":[]}]"#),
            Ok(1)
        );
        // Cedar's escape form is an object too; what it says is the schema's business.
        assert_eq!(
            parsed(
                r#"[{"uid":{"__entity":{"type":"User","id":"a"}}},{"uid":{"type":"T","id":"b"}}]"#
            ),
            Ok(2)
        );
        for (body, error) in [
            (
                "not json",
                "answer is not JSON: expected ident at line 1 column 2",
            ),
            (
                "",
                "answer is not JSON: EOF while parsing a value at line 1 column 0",
            ),
            (
                r#"{"uid":{"type":"User","id":"alice"}}"#,
                "answer is not a JSON array of entities",
            ),
            (
                r#"[{"uid":{"type":"User","id":"a"}},{"attrs":{}}]"#,
                "element 1 of the answer is not an entity with a uid",
            ),
            (
                r#"[{"uid":"User::\"a\""}]"#,
                "element 0 of the answer is not an entity with a uid",
            ),
            ("[1]", "element 0 of the answer is not an entity with a uid"),
        ] {
            assert_eq!(parsed(body), Err(error.to_string()), "{body}");
        }
    }

    #[test]
    fn errors_say_what_failed_and_for_which_uid() {
        let e = ProviderError::Fetch {
            uid: r#"User::"alice""#.into(),
            source: Arc::new(FetchError::Status(500)),
        };
        assert_eq!(
            e.to_string(),
            r#"entity provider: User::"alice": answered HTTP 500 (expected 200, or 404 for no data)"#
        );
        assert_eq!(
            ProviderError::Budget(Duration::from_millis(100)).to_string(),
            "entity provider: no answer within the 100 ms budget"
        );
        assert_eq!(
            FetchError::Timeout(Duration::ZERO).result(),
            FetchResult::Timeout
        );
        assert_eq!(FetchError::NotArray.result(), FetchResult::Error);
    }
}
