//! Key sets without an IdP process: parsing and matching on fixed JWKs, and fetching, refresh,
//! rotation, unknown-`kid` refetch, backoff and readiness against a small IdP on a real socket
//! (`127.0.0.1:0`) whose answers each test changes while it runs.

use std::sync::Mutex;
use std::sync::atomic::AtomicU16;

use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode, Uri, header};

use super::*;

#[test]
fn discovery_documents_are_read_as_openid_provider_metadata() {
    let full = r#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks",
            "authorization_endpoint":"https://idp.test/auth","response_types_supported":["code"],
            "subject_types_supported":["public"],"id_token_signing_alg_values_supported":["ES256"],
            "end_session_endpoint":"https://idp.test/end"}"#;
    let doc = parse_discovery(full).unwrap();
    assert_eq!(doc.issuer, "https://idp.test");
    assert_eq!(doc.jwks_uri, "https://idp.test/jwks");
    // Not an OpenID configuration: the required fields are named.
    let bare = r#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/jwks"}"#;
    let e = parse_discovery(bare).err().unwrap();
    assert!(e.contains("authorization_endpoint"), "{e}");
    assert!(parse_discovery(r#"{"issuer":"https://idp.test"}"#).is_err());
    assert!(parse_discovery("not json").is_err());
}

const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"ec1","alg":"ES256","use":"sig",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

/// A P-384 key with neither `kid` nor `alg`: only its curve says what it verifies.
const P384_JWK: &str = r#"{"kty":"EC","crv":"P-384",
        "x":"Z2J5zptd9NNsCpogMfrIwu5vgYFzMxdzdsiyeH68H7hE_FBzP10wf_oC4S2Iqo8W",
        "y":"1j8-kuPnPiAA1_TPuJGGSU_aqQoiQzowOL3BfeVzRLlvOAPAf1tRo24-bS3-xdkc"}"#;

#[test]
fn cache_control_max_age_is_read() {
    assert_eq!(
        max_age("public, max-age=600"),
        Some(Duration::from_secs(600))
    );
    assert_eq!(
        max_age("Max-Age=\"60\", must-revalidate"),
        Some(Duration::from_secs(60))
    );
    assert_eq!(max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(max_age("public"), None);
    assert_eq!(max_age("max-age=soon"), None);
}

#[test]
fn unusable_keys_are_skipped_and_usable_ones_kept() {
    let jwks = format!(
        r#"{{"keys":[{EC_JWK},
            {{"kty":"oct","k":"c2VjcmV0","kid":"hmac"}},
            {{"kty":"EC","crv":"P-256","kid":"enc","use":"enc",
              "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"weird"}}]}}"#
    );
    let keys = match parse_jwks("t", &jwks, &[Algorithm::ES256]) {
        Ok(k) => k,
        Err(e) => unreachable!("{e}"),
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(keys.first().and_then(|k| k.kid.as_deref()), Some("ec1"));
}

#[test]
fn a_jwks_without_keys_for_the_allowed_algorithms_is_an_error() {
    let jwks = format!(r#"{{"keys":[{EC_JWK}]}}"#);
    assert!(matches!(
        parse_jwks("t", &jwks, &[Algorithm::RS256]),
        Err(JwksError::NoUsableKeys { .. })
    ));
    assert!(matches!(
        parse_jwks("t", "{nope", &[Algorithm::RS256]),
        Err(JwksError::Document { .. })
    ));
}

#[test]
fn key_pinned_alg_and_curve_must_fit_the_token_alg() {
    let jwks = format!(r#"{{"keys":[{EC_JWK}]}}"#);
    let keys = parse_jwks("t", &jwks, &[Algorithm::ES256]).unwrap_or_default();
    let key = keys.first();
    assert!(key.is_some_and(|k| k.fits(Algorithm::ES256)));
    assert!(key.is_some_and(|k| !k.fits(Algorithm::ES384)));
    assert!(key.is_some_and(|k| !k.fits(Algorithm::RS256)));
    assert!(key.is_some_and(|k| !k.fits(Algorithm::HS256)));
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/keys")
        .join(name)
}

/// The test keys (`test-rsa` RS256, `test-ec` ES256, `test-ed` EdDSA), as one line.
fn test_jwks() -> String {
    let text = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .to_string()
}

/// The test keys without `test-ed`.
fn test_jwks_without_ed() -> String {
    let mut doc: serde_json::Value = serde_json::from_str(&test_jwks()).unwrap();
    doc["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "test-ed");
    doc.to_string()
}

fn key_set(jwks: &str, allowed: &[Algorithm]) -> KeySet {
    KeySet {
        keys: parse_jwks("t", jwks, allowed).unwrap(),
        version: 1,
        content: [0; 32],
        fetched_at: SystemTime::now(),
        max_age: None,
    }
}

fn kids<'a>(keys: impl Iterator<Item = &'a Key>) -> Vec<Option<&'a str>> {
    keys.map(|k| k.kid.as_deref()).collect()
}

#[test]
fn every_key_type_is_kept_and_fits_only_its_algorithms() {
    let mut doc: serde_json::Value = serde_json::from_str(&test_jwks()).unwrap();
    let keys = doc["keys"].as_array_mut().unwrap();
    keys.push(serde_json::from_str(P384_JWK).unwrap());
    // The test RSA key again, with no `alg`: any RSA algorithm may use it.
    let mut rsa = keys[0].clone();
    rsa["kid"] = "rsa-any".into();
    rsa.as_object_mut().unwrap().remove("alg");
    keys.push(rsa);
    let all = [
        Algorithm::RS256,
        Algorithm::PS384,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    let set = key_set(&doc.to_string(), &all);
    assert_eq!(
        kids(set.keys.iter()),
        [
            Some("test-rsa"),
            Some("test-ec"),
            Some("test-ed"),
            None,
            Some("rsa-any")
        ]
    );
    // (algorithm, the keys that fit it)
    for (alg, want) in [
        (Algorithm::RS256, vec![Some("test-rsa"), Some("rsa-any")]),
        (Algorithm::PS512, vec![Some("rsa-any")]),
        (Algorithm::ES256, vec![Some("test-ec")]),
        (Algorithm::ES384, vec![None]),
        (Algorithm::EdDSA, vec![Some("test-ed")]),
        (Algorithm::HS256, vec![]),
    ] {
        assert_eq!(kids(set.candidates(None, alg)), want, "{alg:?}");
    }
}

#[test]
fn candidates_are_the_keys_with_the_tokens_kid_that_fit_its_algorithm() {
    let mut doc: serde_json::Value = serde_json::from_str(&test_jwks()).unwrap();
    // A second ES256 key without a kid.
    let mut anonymous: serde_json::Value = serde_json::from_str(EC_JWK).unwrap();
    anonymous.as_object_mut().unwrap().remove("kid");
    doc["keys"].as_array_mut().unwrap().push(anonymous);
    let set = key_set(&doc.to_string(), &[Algorithm::ES256, Algorithm::RS256]);
    for (kid, alg, want) in [
        (Some("test-ec"), Algorithm::ES256, vec![Some("test-ec")]),
        (Some("test-rsa"), Algorithm::RS256, vec![Some("test-rsa")]),
        // A kid names one key; a token of another algorithm gets nothing from it.
        (Some("test-ec"), Algorithm::RS256, vec![]),
        (Some("test-rsa"), Algorithm::ES256, vec![]),
        (Some("forged"), Algorithm::ES256, vec![]),
        // No kid: every key of the algorithm.
        (None, Algorithm::ES256, vec![Some("test-ec"), None]),
    ] {
        assert_eq!(kids(set.candidates(kid, alg)), want, "{kid:?} {alg:?}");
    }
    assert!(set.has_kid("test-rsa") && set.has_kid("test-ec"));
    // Any algorithm: `test-ed` is in the document but no allowed algorithm kept it.
    assert!(!set.has_kid("test-ed"));
    assert!(!set.has_kid("forged"));
}

/// What the test IdP serves; tests change it while it runs.
struct Served {
    /// The discovery document's `issuer` (the IdP's URL unless a test says otherwise).
    issuer: Mutex<String>,
    /// The discovery document's `jwks_uri`.
    jwks_uri: Mutex<String>,
    /// The JWKS, at `/jwks` and `/jwks2`.
    jwks: Mutex<String>,
    /// Status of the JWKS answers.
    status: AtomicU16,
    /// `Cache-Control` of the JWKS answers.
    cache_control: Mutex<Option<String>>,
    /// How long a JWKS answer takes.
    delay: Mutex<Duration>,
    discovery_hits: AtomicU64,
    jwks_hits: AtomicU64,
}

/// An IdP on a real socket: discovery, the JWKS at `/jwks` and `/jwks2`, and `/moved`, a
/// redirect to `/jwks`.
struct Idp {
    url: String,
    served: Arc<Served>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn answer(State(served): State<Arc<Served>>, uri: Uri) -> Response<Body> {
    let reply = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .unwrap()
    };
    match uri.path() {
        "/.well-known/openid-configuration" => {
            served.discovery_hits.fetch_add(1, Ordering::SeqCst);
            let issuer = served.issuer.lock().unwrap().clone();
            let jwks_uri = served.jwks_uri.lock().unwrap().clone();
            let doc = serde_json::json!({
                "issuer": issuer,
                "jwks_uri": jwks_uri,
                "authorization_endpoint": format!("{issuer}/auth"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
            });
            reply(StatusCode::OK, doc.to_string())
        }
        "/jwks" | "/jwks2" => {
            served.jwks_hits.fetch_add(1, Ordering::SeqCst);
            let delay = *served.delay.lock().unwrap();
            tokio::time::sleep(delay).await;
            let status = StatusCode::from_u16(served.status.load(Ordering::SeqCst)).unwrap();
            let mut response = reply(status, served.jwks.lock().unwrap().clone());
            if let Some(value) = served.cache_control.lock().unwrap().as_deref() {
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, value.parse().unwrap());
            }
            response
        }
        "/moved" => {
            let mut response = reply(StatusCode::FOUND, String::new());
            response
                .headers_mut()
                .insert(header::LOCATION, "/jwks".parse().unwrap());
            response
        }
        _ => reply(StatusCode::NOT_FOUND, String::new()),
    }
}

impl Idp {
    /// Serves the test keys.
    async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::new(Served {
            issuer: Mutex::new(url.clone()),
            jwks_uri: Mutex::new(format!("{url}/jwks")),
            jwks: Mutex::new(test_jwks()),
            status: AtomicU16::new(200),
            cache_control: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            discovery_hits: AtomicU64::new(0),
            jwks_hits: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(served.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Idp {
            url,
            served,
            server,
        }
    }

    fn set_jwks(&self, jwks: String) {
        *self.served.jwks.lock().unwrap() = jwks;
    }

    fn jwks_hits(&self) -> u64 {
        self.served.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> u64 {
        self.served.discovery_hits.load(Ordering::SeqCst)
    }

    /// An issuer of this IdP's URL, its keys by discovery (`keys` empty) or from `keys`
    /// (`jwks_uri: ...`), with `options` (YAML lines of the issuer).
    fn issuer(&self, keys: &str, options: &[&str]) -> Arc<IssuerConfig> {
        issuer_config(&self.url, keys, options)
    }
}

fn issuer_config(issuer: &str, keys: &str, options: &[&str]) -> Arc<IssuerConfig> {
    let mut yaml = format!(
        "issuers:\n  - issuer: {issuer}\n    audiences: [aud]\n    algorithms: [ES256, RS256, EdDSA]\n"
    );
    for line in (!keys.is_empty())
        .then_some(keys)
        .into_iter()
        .chain(options.iter().copied())
    {
        yaml.push_str(&format!("    {line}\n"));
    }
    let config = cedargate_core::config::Config::parse(&yaml, &fixture("cedargate.yaml"))
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    config.issuers[0].clone()
}

fn keys_of(config: Arc<IssuerConfig>) -> Arc<IssuerKeys> {
    Arc::new(IssuerKeys::new(config, http_client().unwrap()))
}

/// Waits (deadline 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn keys_come_by_discovery_and_only_a_changed_jwks_gets_a_new_version() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer("", &[]));
    assert!(keys.snapshot().is_none());
    assert!(matches!(keys.usable(), Err(Unusable::Missing)));
    let status = keys.status();
    assert_eq!(
        (status.keys, status.usable, status.stale),
        (None, false, false)
    );

    let set = keys.refresh().await.unwrap();
    assert_eq!(
        kids(set.keys.iter()),
        [Some("test-rsa"), Some("test-ec"), Some("test-ed")]
    );
    assert_eq!(set.version, 1);
    assert_eq!(keys.snapshot().map(|s| s.version), Some(1));
    assert!(keys.usable().is_ok());
    let status = keys.status();
    assert_eq!(status.keys, Some(3));
    assert_eq!(status.fetches, 1);
    assert!(status.usable && !status.stale && status.last_error.is_none());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));

    // Unchanged: same version (cached tokens stay valid), the learned jwks_uri reused.
    assert_eq!(keys.refresh().await.unwrap().version, 1);
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 2));

    // A key leaves: a new version without it, and it stays so.
    idp.set_jwks(test_jwks_without_ed());
    let set = keys.refresh().await.unwrap();
    assert_eq!(set.version, 2);
    assert_eq!(kids(set.keys.iter()), [Some("test-rsa"), Some("test-ec")]);
    assert_eq!(keys.refresh().await.unwrap().version, 2);
    assert_eq!(keys.snapshot().map(|s| s.keys.len()), Some(2));
}

#[tokio::test]
async fn discovery_must_name_this_issuer_and_a_secure_jwks_uri() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer("", &[]));
    *idp.served.issuer.lock().unwrap() = format!("{}/other", idp.url);
    let e = keys.refresh().await.err().unwrap().to_string();
    assert!(e.contains("discovery says issuer"), "{e}");

    *idp.served.issuer.lock().unwrap() = idp.url.clone();
    *idp.served.jwks_uri.lock().unwrap() = "http://keys.example/jwks".into();
    let e = keys.refresh().await.err().unwrap().to_string();
    assert!(
        e.contains("jwks_uri `http://keys.example/jwks` must be https"),
        "{e}"
    );
    assert!(keys.snapshot().is_none());
    assert_eq!(idp.jwks_hits(), 0);
    assert!(keys.status().last_error.is_some());
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_keys_and_the_next_one_rediscovers() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer("", &[]));
    keys.refresh().await.unwrap();

    idp.served.status.store(500, Ordering::SeqCst);
    let e = keys.refresh().await.err().unwrap();
    assert!(matches!(e, JwksError::Status { status: 500, .. }), "{e}");
    assert_eq!(
        keys.snapshot().map(|s| (s.version, s.keys.len())),
        Some((1, 3))
    );
    assert!(keys.usable().is_ok());
    let status = keys.status();
    assert!(status.usable);
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("HTTP 500"))
    );

    // The keys moved: the failed fetch forgot the old jwks_uri, so discovery is asked again.
    idp.served.status.store(200, Ordering::SeqCst);
    *idp.served.jwks_uri.lock().unwrap() = format!("{}/jwks2", idp.url);
    assert_eq!(idp.discovery_hits(), 1);
    keys.refresh().await.unwrap();
    assert_eq!(idp.discovery_hits(), 2);
    assert!(keys.status().last_error.is_none());
}

#[tokio::test]
async fn a_jwks_larger_than_the_cap_is_refused_and_one_of_exactly_the_cap_is_not() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(&format!("jwks_uri: {}/jwks", idp.url), &[]));
    let padded = |len: usize| {
        let head = format!(
            r#"{{"keys":{},"pad":""#,
            &test_jwks()[8..test_jwks().len() - 1]
        );
        let pad = "x".repeat(len - head.len() - 2);
        let doc = format!("{head}{pad}\"}}");
        assert_eq!(doc.len(), len);
        doc
    };
    idp.set_jwks(padded(MAX_DOCUMENT_BYTES));
    assert_eq!(keys.refresh().await.unwrap().keys.len(), 3);
    idp.set_jwks(padded(MAX_DOCUMENT_BYTES + 1));
    let e = keys.refresh().await.err().unwrap().to_string();
    assert!(e.contains("larger than 1048576 bytes"), "{e}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(&format!("jwks_uri: {}/moved", idp.url), &[]));
    let e = keys.refresh().await.err().unwrap();
    assert!(matches!(e, JwksError::Status { status: 302, .. }), "{e}");
    assert_eq!(idp.jwks_hits(), 0);
    assert!(keys.snapshot().is_none());
}

#[tokio::test]
async fn max_age_sets_the_next_refresh_within_its_bounds() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(
        &format!("jwks_uri: {}/jwks", idp.url),
        &["refresh_seconds: 300", "min_refresh_seconds: 30"],
    ));
    *idp.served.cache_control.lock().unwrap() = Some("public, max-age=60".into());
    let set = keys.refresh().await.unwrap();
    assert_eq!(set.max_age, Some(Duration::from_secs(60)));
    for (max_age, want) in [
        (None, 300),
        (Some(60), 60),
        (Some(5), 30),
        (Some(1000), 300),
    ] {
        assert_eq!(
            keys.next_refresh(max_age.map(Duration::from_secs)),
            Duration::from_secs(want),
            "{max_age:?}"
        );
    }
}

#[tokio::test]
async fn keys_older_than_max_staleness_are_unusable_until_a_fetch_succeeds() {
    let idp = Idp::start().await;
    let config = idp.issuer(
        &format!("jwks_uri: {}/jwks", idp.url),
        &["refresh_seconds: 5", "max_staleness_seconds: 6"],
    );
    let jwks = Jwks::new(&[config], http_client().unwrap());
    let keys = jwks.issuers()[0].clone();
    let aged = |seconds: u64| {
        let mut set = key_set(&test_jwks(), &[Algorithm::ES256]);
        set.fetched_at = SystemTime::now() - Duration::from_secs(seconds);
        keys.current.store(Some(Arc::new(set)));
    };
    aged(3);
    assert!(keys.usable().is_ok());
    assert!(jwks.ready());
    aged(10);
    assert!(matches!(keys.usable(), Err(Unusable::Stale)));
    let status = keys.status();
    assert!(status.stale && !status.usable, "{status:?}");
    assert!(!jwks.ready());
    keys.refresh().await.unwrap();
    assert!(keys.usable().is_ok());
    assert!(jwks.ready());
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(&format!("jwks_uri: {}/jwks", idp.url), &[]));
    idp.set_jwks(test_jwks_without_ed());
    keys.refresh().await.unwrap();
    assert_eq!(idp.jwks_hits(), 1);

    // The IdP publishes a new key: a token signed with it brings it in at once.
    idp.set_jwks(test_jwks());
    let set = keys.refetch_for_kid("test-ed").await.unwrap();
    assert_eq!(set.keys.len(), 3);
    assert_eq!(idp.jwks_hits(), 2);
    // A kid the set already has needs no fetch.
    let set = keys.refetch_for_kid("test-ed").await.unwrap();
    assert_eq!(set.keys.len(), 3);
    // A forged kid right after: refused without asking the IdP (10 s between refetches).
    assert!(keys.refetch_for_kid("forged").await.is_none());
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn concurrent_unknown_kids_share_one_fetch() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(&format!("jwks_uri: {}/jwks", idp.url), &[]));
    keys.refresh().await.unwrap();
    let askers: Vec<_> = (0..8)
        .map(|i| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.refetch_for_kid(&format!("forged-{i}")).await })
        })
        .collect();
    let mut fetched = 0;
    for asker in askers {
        // The one that fetched gets the new set to retry with; the rest are turned away.
        if asker.await.unwrap().is_some() {
            fetched += 1;
        }
    }
    assert_eq!(fetched, 1);
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn a_slow_refetch_is_not_waited_for_but_still_lands() {
    let idp = Idp::start().await;
    let keys = keys_of(idp.issuer(
        &format!("jwks_uri: {}/jwks", idp.url),
        &["kid_refetch_wait_ms: 50"],
    ));
    idp.set_jwks(test_jwks_without_ed());
    keys.refresh().await.unwrap();
    idp.set_jwks(test_jwks());
    *idp.served.delay.lock().unwrap() = Duration::from_millis(500);
    let asked = Instant::now();
    assert!(keys.refetch_for_kid("test-ed").await.is_none());
    assert!(
        asked.elapsed() < Duration::from_millis(450),
        "{:?}",
        asked.elapsed()
    );
    until("the refetch lands", || {
        keys.snapshot().is_some_and(|s| s.has_kid("test-ed"))
    })
    .await;
}

#[tokio::test]
async fn failed_fetches_are_retried_with_a_doubling_delay() {
    let idp = Idp::start().await;
    idp.served.status.store(503, Ordering::SeqCst);
    let keys = keys_of(idp.issuer(&format!("jwks_uri: {}/jwks", idp.url), &[]));
    let task = keys.spawn_refresh();
    // Fetches at 0, 0.25 and 0.75 s; the next would be at 1.75 s.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    task.abort();
    let hits = idp.jwks_hits();
    assert!((2..=4).contains(&hits), "{hits} fetches in 1.2 s");
    assert!(keys.snapshot().is_none());
}

#[tokio::test]
async fn issuers_are_found_by_exact_iss_and_ready_once_all_have_keys() {
    let idp = Idp::start().await;
    let first = idp.issuer(&format!("jwks_uri: {}/jwks", idp.url), &[]);
    let second = issuer_config(
        "https://other.example",
        &format!("jwks_uri: {}/jwks", idp.url),
        &[],
    );
    let jwks = Jwks::new(&[first, second], http_client().unwrap());
    let names: Vec<&str> = jwks.issuers().iter().map(|k| &*k.config.issuer).collect();
    assert_eq!(names, [idp.url.as_str(), "https://other.example"]);
    assert_eq!(
        jwks.issuer("https://other.example")
            .map(|k| &*k.config.issuer),
        Some("https://other.example")
    );
    assert!(jwks.issuer("https://other.example/").is_none());
    assert!(jwks.issuer("https://OTHER.example").is_none());
    assert!(!jwks.ready());
    let tasks = jwks.spawn_refresh();
    until("every issuer has keys", || jwks.ready()).await;
    for task in tasks {
        task.abort();
    }
}

/// Log output, for the one test that checks an operational event.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn staleness_is_logged_once_per_episode() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let keys = keys_of(issuer_config(
        "https://idp.example",
        "jwks_uri: https://idp.example/jwks",
        &["refresh_seconds: 5", "max_staleness_seconds: 6"],
    ));
    let mut set = key_set(&test_jwks(), &[Algorithm::ES256]);
    set.fetched_at = SystemTime::now() - Duration::from_secs(10);
    keys.current.store(Some(Arc::new(set)));
    for _ in 0..3 {
        assert!(matches!(keys.usable(), Err(Unusable::Stale)));
    }
    let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert_eq!(logged.matches("jwks.stale").count(), 1, "{logged}");
}
