//! Browser sessions, the pure parts: the sealed cookie format (AES-256-GCM from `aws-lc-rs`,
//! several keys with ids for rotation), what a session and a pending login hold, return-URL
//! checks (no open redirect), the CSRF rule, and reading/removing one cookie from a `cookie`
//! header.
//!
//! A sealed value is `<kid>.<base64url(nonce ‖ ciphertext ‖ tag)>`. The purpose of the value
//! (`session` or `login`) is the AEAD's associated data, so a login cookie can never be opened as
//! a session, and every expiry is inside the sealed data, never in a cookie attribute alone.
//! This module does no IO and never awaits: the server reads key files and talks to the IdP
//! (`cedargate_server::sso`).

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The reason codes of browser-route answers decided before the policies (a session cookie that
/// is refused is an identity error: [`SessionError::reason`]).
pub mod reasons {
    /// Redirected to the IdP: no credential on a browser navigation the policies would answer
    /// 401, or the login path.
    pub const LOGIN_REQUIRED: &str = "login_required";
    /// A state-changing request with a session cookie from another origin (403).
    pub const CSRF_ORIGIN: &str = "csrf_origin";
    /// The callback's `state` is not the login cookie's, or there is no login cookie (403).
    pub const STATE_MISMATCH: &str = "sso_state_mismatch";
    /// The IdP answered the callback with an error, or the code exchange or ID token check
    /// failed (403).
    pub const CALLBACK_FAILED: &str = "sso_callback_failed";
    /// A return URL that is not a path nor on `sso.allowed_return_hosts` (400).
    pub const RETURN_URL_REFUSED: &str = "sso_return_url_refused";
    /// The IdP's discovery document could not be had (503): nobody can log in.
    pub const UNAVAILABLE: &str = "sso_unavailable";
    /// The callback succeeded: the session cookie is set, redirected to the return URL (302).
    pub const LOGIN_COMPLETE: &str = "sso_login";
    /// The logout path: the cookie is cleared, redirected to the IdP's logout (302).
    pub const LOGGED_OUT: &str = "sso_logout";
}

/// Bytes of an AES-256 key.
pub const KEY_BYTES: usize = 32;
/// Longest sealed value accepted: browsers keep at most 4096 bytes per cookie, so anything longer
/// was never ours (and is not worth decrypting).
pub const MAX_SEALED_BYTES: usize = 4096;

/// What is sealed into a value: bound as associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The session cookie.
    Session,
    /// The short-lived cookie of a login in progress (state, nonce, PKCE verifier, return URL).
    Login,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"cedargate-session-v1",
            Purpose::Login => b"cedargate-login-v1",
        }
    }
}

/// Why a sealed cookie was refused. Each maps to one reason code (`IdentityError::reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not `<kid>.<base64url>`, too long, or not our JSON after decryption.
    #[error("session cookie is malformed")]
    Malformed,
    /// Sealed with a key id that is not configured (retired, or never ours).
    #[error("session cookie key id is not configured")]
    UnknownKey,
    /// The authentication tag does not verify: tampered with, or sealed with another key.
    #[error("session cookie does not authenticate")]
    Tampered,
    /// Its sealed expiry is past.
    #[error("session expired")]
    Expired,
    /// Its session id was logged out (deny-list) or cut off.
    #[error("session was logged out")]
    LoggedOut,
    /// The access token in it can no longer be used and could not be refreshed.
    #[error("session could not be refreshed")]
    RefreshFailed,
}

impl SessionError {
    /// Stable reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            SessionError::Malformed | SessionError::UnknownKey | SessionError::Tampered => {
                "session_invalid"
            }
            SessionError::Expired | SessionError::RefreshFailed => "session_expired",
            SessionError::LoggedOut => "session_logged_out",
        }
    }
}

/// A key file's content was not a base64 AES-256 key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {KEY_BYTES} random bytes in base64 (e.g. `openssl rand -base64 32`), got {0}")]
pub struct KeyFormatError(String);

/// One cookie key and its id.
struct CookieKey {
    /// Id written in front of every value it seals.
    id: Arc<str>,
    /// The AEAD key (random 96-bit nonces: at most ~2^32 seals per key, far beyond a rotation
    /// period).
    key: RandomizedNonceKey,
}

/// The cookie keys: the first seals, any opens.
pub struct CookieKeys {
    /// In config order; never empty once built.
    keys: Vec<CookieKey>,
}

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| &*k.id).collect();
        f.debug_struct("CookieKeys").field("ids", &ids).finish()
    }
}

/// Decodes a key file's text: 32 bytes in standard or URL-safe base64, whitespace around allowed.
pub fn parse_key(text: &str) -> Result<[u8; KEY_BYTES], KeyFormatError> {
    let text = text.trim();
    let bytes = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .map_err(|_| KeyFormatError("text that is not base64".to_string()))?;
    <[u8; KEY_BYTES]>::try_from(bytes.as_slice())
        .map_err(|_| KeyFormatError(format!("{} bytes", bytes.len())))
}

impl CookieKeys {
    /// Keys from `(id, key bytes)`, the first sealing. `None` when `keys` is empty.
    pub fn new(keys: &[(Arc<str>, [u8; KEY_BYTES])]) -> Option<CookieKeys> {
        let keys: Vec<CookieKey> = keys
            .iter()
            .filter_map(|(id, bytes)| {
                RandomizedNonceKey::new(&AES_256_GCM, bytes)
                    .ok()
                    .map(|key| CookieKey {
                        id: id.clone(),
                        key,
                    })
            })
            .collect();
        (!keys.is_empty()).then_some(CookieKeys { keys })
    }

    /// Seals `value` for `purpose` with the first key.
    pub fn seal<T: Serialize>(&self, purpose: Purpose, value: &T) -> Option<String> {
        let first = self.keys.first()?;
        let mut data = serde_json::to_vec(value).ok()?;
        let nonce = first
            .key
            .seal_in_place_append_tag(Aad::from(purpose.aad()), &mut data)
            .ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + data.len());
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&data);
        Some(format!("{}.{}", first.id, URL_SAFE_NO_PAD.encode(out)))
    }

    /// Opens a value sealed for `purpose` with any configured key. Expiry is the caller's (it is
    /// a field of `T`).
    pub fn open<T: DeserializeOwned>(
        &self,
        purpose: Purpose,
        sealed: &str,
    ) -> Result<T, SessionError> {
        if sealed.len() > MAX_SEALED_BYTES {
            return Err(SessionError::Malformed);
        }
        let (kid, body) = sealed.split_once('.').ok_or(SessionError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| &*k.id == kid)
            .ok_or(SessionError::UnknownKey)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SessionError::Malformed);
        }
        let mut data = bytes.split_off(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SessionError::Malformed)?;
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(purpose.aad()), &mut data)
            .map_err(|_| SessionError::Tampered)?;
        serde_json::from_slice(plain).map_err(|_| SessionError::Malformed)
    }
}

/// What the session cookie holds. The access token is the credential: each request verifies it
/// exactly as a bearer token (same issuer config → same principal).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random session id: what logout puts on the deny-list.
    pub sid: String,
    /// When the session ends whatever the tokens say (unix seconds): `sso.session_lifetime`
    /// after login; a refresh never extends it.
    pub exp: u64,
    /// The IdP's access token (a JWT its issuer config verifies).
    pub at: String,
    /// The refresh token, when the IdP gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt: Option<String>,
    /// The ID token, for `id_token_hint` at logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idt: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("exp", &self.exp)
            .field("tokens", &"[redacted]")
            .finish()
    }
}

/// A login in progress, kept in the login cookie between the redirect to the IdP and the
/// callback: binds the callback to the browser that started it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// OAuth `state` sent to the IdP; the callback's must equal it.
    pub state: String,
    /// OIDC `nonce`; the ID token's must equal it.
    pub nonce: String,
    /// PKCE code verifier (S256).
    pub verifier: String,
    /// Where to go after the login (checked against the allow-list when it was made).
    pub return_to: String,
    /// The redirect URI the authorization request used (the token request repeats it).
    pub redirect_uri: String,
    /// When this login expires (unix seconds).
    pub exp: u64,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("return_to", &self.return_to)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// Whether `url` may be redirected to after a login or logout. A path on this origin (`/x`,
/// never `//host` or `/\host`, which browsers read as another host) is fine; an absolute
/// `http(s)` URL only when its host (or `host:port`) is in `allowed_hosts`. Anything with
/// credentials, control characters or another scheme is refused.
pub fn return_url_allowed(url: &str, allowed_hosts: &[String]) -> bool {
    if url.is_empty() || url.chars().any(|c| c.is_control() || c == '\\') {
        return false;
    }
    if url.starts_with('/') {
        return !url.starts_with("//");
    }
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    if !matches!(parsed.scheme(), "http" | "https")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return false;
    }
    let Some(host) = parsed.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let with_port = parsed.port().map(|p| format!("{host}:{p}"));
    allowed_hosts.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        allowed == host || with_port.as_deref() == Some(allowed.as_str())
    })
}

/// Whether a request is state-changing (POST, PUT, PATCH, DELETE, any case).
pub fn state_changing(method: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// The CSRF rule for a state-changing request that carries a session cookie: the browser says
/// it is same-origin (`sec-fetch-site: same-origin`), or its `origin` is this request's own
/// `scheme://authority`. A missing `origin` without `sec-fetch-site` is refused (fail closed).
pub fn same_origin(origin: Option<&str>, sec_fetch_site: Option<&str>, own_origin: &str) -> bool {
    if let Some(site) = sec_fetch_site {
        return site.eq_ignore_ascii_case("same-origin")
            && origin.is_none_or(|o| o.eq_ignore_ascii_case(own_origin));
    }
    origin.is_some_and(|o| o.eq_ignore_ascii_case(own_origin))
}

/// The value of cookie `name` in a `cookie` header (the first, as RFC 6265 orders them).
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// The `cookie` header without the cookies named in `names`: what the upstream gets, so that
/// the application's own cookies reach it and ours never do. `None` when nothing is left.
pub fn without_cookies(header: &str, names: &[&str]) -> Option<String> {
    let kept: Vec<&str> = header
        .split(';')
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && !names
                    .iter()
                    .any(|n| pair.split_once('=').is_some_and(|(k, _)| k.trim() == *n))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Whether a request is a browser navigation that may be redirected to a login: it accepts HTML
/// and is not a script's request (`sec-fetch-mode: cors`, `x-requested-with`).
pub fn wants_html(
    accept: Option<&str>,
    sec_fetch_mode: Option<&str>,
    requested_with: Option<&str>,
) -> bool {
    accept.is_some_and(|a| a.to_ascii_lowercase().contains("text/html"))
        && !sec_fetch_mode.is_some_and(|m| m.eq_ignore_ascii_case("cors"))
        && requested_with.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[(&str, u8)]) -> CookieKeys {
        let list: Vec<(Arc<str>, [u8; KEY_BYTES])> = ids
            .iter()
            .map(|(id, b)| (Arc::from(*id), [*b; KEY_BYTES]))
            .collect();
        CookieKeys::new(&list).unwrap()
    }

    fn session() -> Session {
        Session {
            sid: "s1".into(),
            exp: 10,
            at: "a.b.c".into(),
            rt: Some("rt".into()),
            idt: None,
        }
    }

    #[test]
    fn seal_open_round_trip_and_rotation() {
        let old = keys(&[("k1", 1)]);
        let sealed = old.seal(Purpose::Session, &session()).unwrap();
        assert!(sealed.starts_with("k1."));
        assert!(
            !sealed.contains("a.b.c"),
            "sealed value must not show the token"
        );
        // After rotation: k2 seals, k1 still opens.
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            rotated.open::<Session>(Purpose::Session, &sealed),
            Ok(session())
        );
        assert!(
            rotated
                .seal(Purpose::Session, &session())
                .unwrap()
                .starts_with("k2.")
        );
        // k1 retired: refused by id.
        let retired = keys(&[("k2", 2)]);
        assert_eq!(
            retired.open::<Session>(Purpose::Session, &sealed),
            Err(SessionError::UnknownKey)
        );
    }

    #[test]
    fn tampering_other_purpose_and_wrong_key_are_refused() {
        let k = keys(&[("k1", 1)]);
        let sealed = k.seal(Purpose::Session, &session()).unwrap();
        let (kid, body) = sealed.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(body).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("{kid}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            k.open::<Session>(Purpose::Session, &tampered),
            Err(SessionError::Tampered)
        );
        assert_eq!(
            k.open::<Session>(Purpose::Login, &sealed),
            Err(SessionError::Tampered)
        );
        let same_id_other_key = keys(&[("k1", 9)]);
        assert_eq!(
            same_id_other_key.open::<Session>(Purpose::Session, &sealed),
            Err(SessionError::Tampered)
        );
        for bad in [
            "",
            "k1",
            "k1.!!",
            "k1.AAAA",
            &"x".repeat(MAX_SEALED_BYTES + 1),
        ] {
            assert_eq!(
                k.open::<Session>(Purpose::Session, bad).map(|_| ()),
                Err(SessionError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_files_are_base64_of_32_bytes() {
        assert_eq!(parse_key(&STANDARD.encode([7u8; 32])), Ok([7u8; 32]));
        assert_eq!(
            parse_key(&format!(" {}\n", URL_SAFE_NO_PAD.encode([7u8; 32]))),
            Ok([7u8; 32])
        );
        assert!(parse_key(&STANDARD.encode([7u8; 16])).is_err());
        assert!(parse_key("not base64 at all!").is_err());
    }

    #[test]
    fn return_urls() {
        let allowed = vec!["app.example".to_string(), "127.0.0.1:8080".to_string()];
        for ok in [
            "/",
            "/orders?x=1",
            "https://app.example/x",
            "http://app.example:9/",
            "http://127.0.0.1:8080/a",
        ] {
            assert!(return_url_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "",
            "//evil.example/",
            "/\\evil.example",
            "https://evil.example/",
            "https://app.example.evil.example/",
            "https://user:pw@app.example/",
            "javascript:alert(1)",
            "http://127.0.0.1:9999/",
            "/x\r\nSet-Cookie: a=b",
            "evil.example",
        ] {
            assert!(!return_url_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn csrf_rule() {
        let own = "http://127.0.0.1:10000";
        assert!(same_origin(Some(own), None, own));
        assert!(same_origin(None, Some("same-origin"), own));
        assert!(!same_origin(None, None, own));
        assert!(!same_origin(Some("https://evil.example"), None, own));
        assert!(!same_origin(Some(own), Some("cross-site"), own));
        assert!(!same_origin(
            Some("https://evil.example"),
            Some("same-origin"),
            own
        ));
        assert!(state_changing("post") && state_changing("DELETE") && !state_changing("GET"));
    }

    #[test]
    fn cookies() {
        let h = "a=1; __Host-cg=xyz; b=2";
        assert_eq!(cookie(h, "__Host-cg"), Some("xyz"));
        assert_eq!(cookie(h, "c"), None);
        assert_eq!(
            without_cookies(h, &["__Host-cg"]).as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without_cookies("__Host-cg=1", &["__Host-cg"]), None);
    }

    #[test]
    fn html_navigation() {
        assert!(wants_html(
            Some("text/html,application/xhtml+xml"),
            Some("navigate"),
            None
        ));
        assert!(!wants_html(Some("application/json"), None, None));
        assert!(!wants_html(None, None, None));
        assert!(!wants_html(Some("text/html"), Some("cors"), None));
        assert!(!wants_html(Some("text/html"), None, Some("XMLHttpRequest")));
    }
}
