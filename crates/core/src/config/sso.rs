//! `sso`: browser single sign-on, one self-contained block (raw mirror, defaults, typed value,
//! validation). Browser routes (path prefixes) log people in at an OIDC issuer that is also in
//! `issuers` (its access tokens are verified and mapped exactly as bearer tokens), keep them in a
//! sealed session cookie, and log them out. Reads the files it names only to check them (the
//! client secret is readable and not empty, each cookie key is a base64 AES-256 key); the server
//! loads them itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::IssuerConfig;
use super::problems::Collected;
use super::urls::{resolve, url_problem};

// ---- defaults ----------------------------------------------------------------------------------

/// The callback path: under a prefix applications are unlikely to use.
const DEFAULT_CALLBACK_PATH: &str = "/_cedargate/callback";
/// The logout path.
const DEFAULT_LOGOUT_PATH: &str = "/_cedargate/logout";
/// The login path (`?return_to=` optional): a link target for "sign in".
const DEFAULT_LOGIN_PATH: &str = "/_cedargate/login";
/// The scopes: an ID token (`openid`) and the user's claims (`profile`).
const DEFAULT_SCOPES: [&str; 2] = ["openid", "profile"];
/// A working day: long enough not to annoy, short enough that a stolen cookie ages out.
const DEFAULT_SESSION_LIFETIME_SECS: u64 = 8 * 3600;
/// How long a login may take between the redirect to the IdP and the callback.
const DEFAULT_LOGIN_TIMEOUT_SECS: u64 = 600;
/// Logged-out sessions remembered per replica (~100 bytes each).
const DEFAULT_LOGOUT_DENY_LIST_CAPACITY: u64 = 100_000;
/// Budget for one back-channel call to the IdP (token exchange, refresh, discovery): below
/// Envoy's 500 ms ext_authz deadline in `envoy/envoy.yaml`... for a refresh on the request path;
/// the callback gets the same.
const DEFAULT_IDP_TIMEOUT_MS: u64 = 400;
/// Cookie names: `__Host-` makes browsers insist on `Secure`, `Path=/` and no `Domain`.
pub const SESSION_COOKIE: &str = "__Host-cedargate-session";
/// The login-in-progress cookie.
pub const LOGIN_COOKIE: &str = "__Host-cedargate-login";

// ---- raw ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSso {
    pub(super) issuer: Spanned<String>,
    pub(super) client_id: Spanned<String>,
    pub(super) client_secret_file: Option<Spanned<String>>,
    pub(super) scopes: Option<Vec<Spanned<String>>>,
    pub(super) browser_paths: Option<Vec<Spanned<String>>>,
    pub(super) callback_path: Option<Spanned<String>>,
    pub(super) login_path: Option<Spanned<String>>,
    pub(super) logout_path: Option<Spanned<String>>,
    pub(super) post_logout_url: Option<Spanned<String>>,
    pub(super) external_url: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) allowed_return_hosts: Vec<Spanned<String>>,
    pub(super) cookie_keys: Spanned<Vec<RawCookieKey>>,
    pub(super) session_lifetime_seconds: Option<Spanned<u64>>,
    pub(super) login_timeout_seconds: Option<Spanned<u64>>,
    pub(super) logout_deny_list_capacity: Option<Spanned<u64>>,
    pub(super) idp_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) refresh: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCookieKey {
    pub(super) id: Spanned<String>,
    pub(super) file: Spanned<String>,
}

// ---- typed -------------------------------------------------------------------------------------

/// `sso`: browser single sign-on.
#[derive(Debug, Clone, PartialEq)]
pub struct SsoConfig {
    /// The `issuers` entry people log in at: discovery, token verification and principal
    /// mapping are that issuer's.
    pub issuer: Arc<IssuerConfig>,
    /// The OAuth client id cedargate uses at the IdP.
    pub client_id: Arc<str>,
    /// File holding the client secret; `None`: a public client (PKCE alone).
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for (`openid` always among them).
    pub scopes: Vec<String>,
    /// Path prefixes that are browser routes (`/` = the whole listener).
    pub browser_paths: Vec<String>,
    /// Where the IdP sends the browser back.
    pub callback_path: String,
    /// Starts a login (`?return_to=`).
    pub login_path: String,
    /// Ends the session and logs out at the IdP.
    pub logout_path: String,
    /// Where the IdP sends the browser after logout (a path is made absolute on the request's
    /// origin).
    pub post_logout_url: String,
    /// `scheme://host[:port]` browsers reach Envoy at; `None`: the request's own scheme and
    /// authority (its host must then be in `allowed_return_hosts`).
    pub external_url: Option<String>,
    /// Hosts (`host` or `host:port`) cedargate may redirect to after login or logout.
    pub allowed_return_hosts: Vec<String>,
    /// Cookie keys `(id, file)`: the first seals, any opens.
    pub cookie_keys: Vec<(Arc<str>, PathBuf)>,
    /// Longest a session lasts after login (refresh never extends it).
    pub session_lifetime: Duration,
    /// Longest a login may take.
    pub login_timeout: Duration,
    /// Logged-out sessions remembered (per replica).
    pub logout_deny_list_capacity: u64,
    /// Budget of one back-channel call to the IdP.
    pub idp_timeout: Duration,
    /// Ask for a refresh token (`offline_access`, `prompt=consent`) and refresh expired access
    /// tokens with it; otherwise an expired access token means a new login.
    pub refresh: bool,
}

impl SsoConfig {
    /// Whether `path` is on a browser route (or is one of cedargate's own SSO paths).
    pub fn is_browser_path(&self, path: &str) -> bool {
        path == self.callback_path
            || path == self.login_path
            || path == self.logout_path
            || self.browser_paths.iter().any(|prefix| {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| prefix.ends_with('/') || rest.starts_with('/'))
            })
    }
}

// ---- validation --------------------------------------------------------------------------------

fn path_field(
    raw: &Option<Spanned<String>>,
    default: &str,
    name: &str,
    problems: &mut Collected,
) -> String {
    match raw {
        None => default.to_string(),
        Some(p)
            if !p.value.starts_with('/')
                || p.value.starts_with("//")
                || p.value.contains(['?', '#']) =>
        {
            problems.at(
                p,
                format!("sso.{name} must be a path starting with `/` (no query)"),
            );
            default.to_string()
        }
        Some(p) => p.value.clone(),
    }
}

/// `sso`, with `issuers` already validated (the issuer is looked up by name).
pub(super) fn sso(
    raw: &Spanned<RawSso>,
    issuers: &[Arc<IssuerConfig>],
    recorded: &[Spanned<String>],
    in_context: &[Spanned<String>],
    base: &std::path::Path,
    problems: &mut Collected,
) -> Option<SsoConfig> {
    let r = &raw.value;
    // The session cookie is a credential: never in a record or a Cedar context.
    for (list, field) in [
        (recorded, "decision_log.headers"),
        (in_context, "context.headers"),
    ] {
        if let Some(h) = list.iter().find(|h| h.value.eq_ignore_ascii_case("cookie")) {
            problems.at(
                h,
                format!("{field} must not include `cookie`: it carries the sso session cookie"),
            );
        }
    }
    let issuer = issuers.iter().find(|i| *i.name == *r.issuer.value).cloned();
    // The browser-facing URL may be plain http exactly when the issuer may (a loopback test).
    let allow_insecure_http = issuer.as_ref().is_some_and(|i| i.allow_insecure_http);
    if issuer.is_none() {
        problems.at(
            &r.issuer,
            format!(
                "sso.issuer `{}` is not the name of an `issuers` entry (the SSO issuer's tokens are verified and mapped as that issuer's)",
                r.issuer.value
            ),
        );
    }
    if r.client_id.value.is_empty() {
        problems.at(&r.client_id, "sso.client_id must not be empty");
    }
    let client_secret_file = r.client_secret_file.as_ref().map(|f| {
        let path = resolve(base, &f.value);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().is_empty() => {
                problems.at(
                    f,
                    format!("sso.client_secret_file {} is empty", path.display()),
                );
            }
            Ok(_) => {}
            Err(e) => problems.at(
                f,
                format!(
                    "sso.client_secret_file {}: {}",
                    path.display(),
                    super::io_words(&e)
                ),
            ),
        }
        path
    });
    let mut scopes: Vec<String> = match &r.scopes {
        None => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(list) => list
            .iter()
            .filter_map(|s| {
                if s.value.is_empty() || s.value.contains(char::is_whitespace) {
                    problems.at(s, "sso.scopes entries must be single words");
                    None
                } else {
                    Some(s.value.clone())
                }
            })
            .collect(),
    };
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".to_string());
    }
    if r.refresh && !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".to_string());
    }
    let browser_paths = match &r.browser_paths {
        None => vec!["/".to_string()],
        Some(list) => list
            .iter()
            .filter_map(|p| {
                if p.value.starts_with('/') {
                    Some(p.value.clone())
                } else {
                    problems.at(p, "sso.browser_paths entries must start with `/`");
                    None
                }
            })
            .collect(),
    };
    let callback_path = path_field(
        &r.callback_path,
        DEFAULT_CALLBACK_PATH,
        "callback_path",
        problems,
    );
    let login_path = path_field(&r.login_path, DEFAULT_LOGIN_PATH, "login_path", problems);
    let logout_path = path_field(&r.logout_path, DEFAULT_LOGOUT_PATH, "logout_path", problems);
    let external_url = r.external_url.as_ref().and_then(|u| {
        let trimmed = u.value.trim_end_matches('/');
        if let Some(why) = url_problem(trimmed, allow_insecure_http) {
            problems.at(u, format!("sso.external_url {why}"));
            return None;
        }
        match url::Url::parse(trimmed) {
            Ok(parsed) if parsed.path() == "/" && parsed.query().is_none() => {
                Some(trimmed.to_string())
            }
            _ => {
                problems.at(
                    u,
                    "sso.external_url must be an origin: scheme://host[:port], no path",
                );
                None
            }
        }
    });
    let allowed_return_hosts: Vec<String> = r
        .allowed_return_hosts
        .iter()
        .filter_map(|h| {
            let v = h.value.to_ascii_lowercase();
            if v.is_empty() || v.contains(['/', '@', '?', '#']) || v.contains(char::is_whitespace) {
                problems.at(
                    h,
                    "sso.allowed_return_hosts entries are `host` or `host:port`",
                );
                None
            } else {
                Some(v)
            }
        })
        .collect();
    if external_url.is_none() && allowed_return_hosts.is_empty() {
        problems.at(
            raw,
            "sso needs `external_url` or `allowed_return_hosts`: without either, the redirect URI would come from a Host header nobody vouched for",
        );
    }
    let post_logout_url = match &r.post_logout_url {
        None => "/".to_string(),
        Some(u) => {
            if !crate::session::return_url_allowed(&u.value, &allowed_return_hosts) {
                problems.at(
                    u,
                    "sso.post_logout_url must be a path or an http(s) URL on one of sso.allowed_return_hosts",
                );
            }
            u.value.clone()
        }
    };
    let mut cookie_keys = Vec::new();
    if r.cookie_keys.value.is_empty() {
        problems.at(
            &r.cookie_keys,
            "sso.cookie_keys needs at least one key (the first seals)",
        );
    }
    for key in &r.cookie_keys.value {
        let id = &key.id.value;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.at(
                &key.id,
                "sso.cookie_keys id must be letters, digits, `-` or `_`",
            );
        }
        if cookie_keys
            .iter()
            .any(|(k, _): &(Arc<str>, PathBuf)| **k == **id)
        {
            problems.at(&key.id, format!("sso.cookie_keys id `{id}` is used twice"));
        }
        let path = resolve(base, &key.file.value);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if let Err(e) = crate::session::parse_key(&text) {
                    problems.at(
                        &key.file,
                        format!("sso.cookie_keys file {}: {e}", path.display()),
                    );
                }
            }
            Err(e) => problems.at(
                &key.file,
                format!(
                    "sso.cookie_keys file {}: {}",
                    path.display(),
                    super::io_words(&e)
                ),
            ),
        }
        cookie_keys.push((Arc::from(id.as_str()), path));
    }
    let positive = |v: &Option<Spanned<u64>>, default: u64, name: &str, p: &mut Collected| match v {
        Some(v) if v.value == 0 => {
            p.at(v, format!("sso.{name} must be at least 1"));
            default
        }
        Some(v) => v.value,
        None => default,
    };
    let session_lifetime = positive(
        &r.session_lifetime_seconds,
        DEFAULT_SESSION_LIFETIME_SECS,
        "session_lifetime_seconds",
        problems,
    );
    let login_timeout = positive(
        &r.login_timeout_seconds,
        DEFAULT_LOGIN_TIMEOUT_SECS,
        "login_timeout_seconds",
        problems,
    );
    let logout_deny_list_capacity = positive(
        &r.logout_deny_list_capacity,
        DEFAULT_LOGOUT_DENY_LIST_CAPACITY,
        "logout_deny_list_capacity",
        problems,
    );
    let idp_timeout = positive(
        &r.idp_timeout_ms,
        DEFAULT_IDP_TIMEOUT_MS,
        "idp_timeout_ms",
        problems,
    );
    Some(SsoConfig {
        issuer: issuer?,
        client_id: Arc::from(r.client_id.value.as_str()),
        client_secret_file,
        scopes,
        browser_paths,
        callback_path,
        login_path,
        logout_path,
        post_logout_url,
        external_url,
        allowed_return_hosts,
        cookie_keys,
        session_lifetime: Duration::from_secs(session_lifetime),
        login_timeout: Duration::from_secs(login_timeout),
        logout_deny_list_capacity,
        idp_timeout: Duration::from_millis(idp_timeout),
        refresh: r.refresh,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(sso: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("k1.key"),
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        )
        .unwrap();
        std::fs::write(dir.path().join("short.key"), "c2hvcnQ=").unwrap();
        let text = format!(
            "issuers:\n  - name: idp\n    issuer: https://idp.example\n    audiences: [a]\n{sso}"
        );
        let path = dir.path().join("cedargate.yaml");
        match crate::config::Config::parse(&text, &path) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_section_is_checked_field_by_field() {
        let ok = "sso:\n  issuer: idp\n  client_id: c\n  allowed_return_hosts: [app.example]\n  cookie_keys:\n    - { id: k1, file: k1.key }\n";
        assert_eq!(problems(ok), "");
        let e = problems(
            "sso:\n  issuer: nope\n  client_id: c\n  allowed_return_hosts: [a]\n  cookie_keys:\n    - { id: k1, file: k1.key }\n",
        );
        assert!(e.contains("cedargate.yaml:6:11: sso.issuer `nope`"), "{e}");
        let e = problems(
            "sso:\n  issuer: idp\n  client_id: c\n  cookie_keys:\n    - { id: k1, file: short.key }\n    - { id: k1, file: missing.key }\n",
        );
        assert!(e.contains("external_url` or `allowed_return_hosts"), "{e}");
        assert!(e.contains("got 5 bytes"), "{e}");
        assert!(e.contains("used twice") && e.contains("missing.key"), "{e}");
        let e = problems(
            "decision_log:\n  headers: [cookie]\nsso:\n  issuer: idp\n  client_id: c\n  allowed_return_hosts: [a]\n  post_logout_url: https://evil.example/\n  cookie_keys:\n    - { id: k1, file: k1.key }\n",
        );
        assert!(
            e.contains("decision_log.headers must not include `cookie`"),
            "{e}"
        );
        assert!(e.contains("sso.post_logout_url"), "{e}");
    }

    fn config(paths: &[&str]) -> SsoConfig {
        SsoConfig {
            issuer: Arc::new(crate::config::Config::parse(
                "issuers:\n  - name: idp\n    issuer: https://idp.example\n    audiences: [a]\n",
                std::path::Path::new("x.yaml"),
            )
            .unwrap()
            .issuers[0]
                .as_ref()
                .clone()),
            client_id: "c".into(),
            client_secret_file: None,
            scopes: vec!["openid".into()],
            browser_paths: paths.iter().map(|p| p.to_string()).collect(),
            callback_path: DEFAULT_CALLBACK_PATH.into(),
            login_path: DEFAULT_LOGIN_PATH.into(),
            logout_path: DEFAULT_LOGOUT_PATH.into(),
            post_logout_url: "/".into(),
            external_url: None,
            allowed_return_hosts: vec![],
            cookie_keys: vec![],
            session_lifetime: Duration::from_secs(1),
            login_timeout: Duration::from_secs(1),
            logout_deny_list_capacity: 1,
            idp_timeout: Duration::from_secs(1),
            refresh: false,
        }
    }

    #[test]
    fn browser_paths_are_prefixes_on_segment_boundaries() {
        let c = config(&["/app", "/dash/"]);
        assert!(c.is_browser_path("/app") && c.is_browser_path("/app/x"));
        assert!(!c.is_browser_path("/apple"));
        assert!(c.is_browser_path("/dash/x") && !c.is_browser_path("/api"));
        assert!(c.is_browser_path(DEFAULT_CALLBACK_PATH));
        assert!(config(&["/"]).is_browser_path("/anything"));
    }
}
