//! Browser single sign-on (`sso`): the login redirect (authorization code + PKCE S256 with
//! `openidconnect`), the callback (code exchange, RFC 9207 `iss`, ID token checks), the sealed
//! session cookie (refreshed with the refresh token where the IdP gave one), logout (RP-initiated,
//! with a per-replica deny-list of logged-out session ids) and the CSRF rule.
//!
//! Every answer here goes back through Envoy's ext_authz as a denied response (a 302 with
//! `Location` and `Set-Cookie`) or, for a valid session, as the identity of an allowed Check: the
//! session's access token is verified by [`crate::jwt::Verifier`] exactly like a bearer token, so
//! the principal is the one a bearer token of the same user gets. The pure parts (cookie format,
//! return-URL and CSRF checks) are `cedargate_core::session`; this module owns the IO and never
//! decides policy.

mod http;
mod provider;

use std::sync::Arc;

use openidconnect::core::{CoreAuthPrompt, CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, PostLogoutRedirectUrl, RedirectUrl, RefreshToken, Scope,
    TokenResponse as _,
};

use cedargate_core::config::{LOGIN_COOKIE, SESSION_COOKIE, SsoConfig};
use cedargate_core::identity::IdentityError;
use cedargate_core::request::HttpRequest;
use cedargate_core::session::{self, CookieKeys, Login, Purpose, Session, SessionError, reasons};
use cedargate_core::token::{TokenError, VerifiedToken, now_secs};

use crate::jwt::Verifier;
use provider::{Discovery, id_token_algs};

/// How long a refresh's result is reused for the same refresh token: covers the burst of
/// requests a page makes while the browser still sends the old cookie.
const REFRESH_REUSE: std::time::Duration = std::time::Duration::from_secs(30);
/// Refresh results kept (each a pair of tokens, ~2 KiB).
const REFRESHES_KEPT: u64 = 10_000;
/// Longest session cookie value sent: browsers drop cookies over 4096 bytes (name included).
const MAX_COOKIE_VALUE: usize = 3900;

/// A browser-route answer decided here, before the policies: its status, reason code and the
/// headers of the denied response.
#[derive(Debug)]
pub struct Answer {
    /// 302, 400, 403 or 503.
    pub status: u16,
    /// One of [`reasons`].
    pub reason: &'static str,
    /// The browser headers.
    pub browser: Browser,
    /// What went wrong, for the decision record (never a token, code or cookie).
    pub error: Option<String>,
}

/// Headers of a browser-route response: a redirect, cookies to set, and on an allow the `cookie`
/// header the upstream gets instead (the application's own cookies, without ours).
#[derive(Default, Clone)]
pub struct Browser {
    /// `Location` of a 302.
    pub location: Option<String>,
    /// `Set-Cookie` values (a credential: never logged).
    pub set_cookies: Vec<String>,
    /// On an allow: `Some(Some(v))` replaces the upstream's `cookie` header with `v`;
    /// `Some(None)` removes it; `None` leaves it.
    pub upstream_cookie: Option<Option<String>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("location", &self.location)
            .field("set_cookies", &self.set_cookies.len())
            .finish_non_exhaustive()
    }
}

/// A session's outcome for one Check.
pub struct SessionIdentity {
    /// The verified access token (as a bearer token would give), or why the session is refused.
    pub token: Result<(Arc<VerifiedToken>, bool), IdentityError>,
    /// Cookies to set (a refreshed session, or clearing a refused one) and the upstream cookie.
    pub browser: Browser,
}

/// The SSO client, built at start (a restart-only setting, like `issuers`).
pub struct Sso {
    /// The validated `sso` section.
    config: SsoConfig,
    /// The cookie keys; `None` when a key file could not be read at start (every browser
    /// answer is then `sso_unavailable`: fail closed).
    keys: Option<CookieKeys>,
    /// The client secret (confidential client), read at start.
    secret: Option<ClientSecret>,
    /// Why the keys or secret could not be loaded.
    load_error: Option<String>,
    /// No redirects, rustls: the same client as key fetching.
    http: reqwest::Client,
    /// The IdP's metadata, discovered when first needed and kept a while.
    discovery: Discovery,
    /// Session ids logged out on this replica, each kept for a session lifetime (no session
    /// outlives that). Bounded: see docs/identity-browser-sso.md for the limits.
    logged_out: moka::sync::Cache<String, ()>,
    /// Refreshes in flight or just done, by SHA-256 of the refresh token: the concurrent requests
    /// of one browser whose access token just expired share one refresh (an IdP that rotates
    /// refresh tokens takes a second use of the old one as a replay and revokes the grant).
    refreshed: moka::future::Cache<[u8; 32], Arc<(String, Option<String>)>>,
}

fn read_secret(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}")
}

fn clear(name: &str) -> String {
    cookie(name, "", 0)
}

fn random_id() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    // aws-lc's RNG does not fail in practice; a zero id would only weaken logout, never access.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Sso {
    /// The SSO client for `config`: reads the cookie keys and the client secret now.
    pub fn new(config: &SsoConfig) -> Sso {
        let mut load_error = None;
        let mut keys = Vec::new();
        for (id, path) in &config.cookie_keys {
            match read_secret(path).and_then(|t| {
                session::parse_key(&t).map_err(|e| format!("{}: {e}", path.display()))
            }) {
                Ok(k) => keys.push((id.clone(), k)),
                Err(e) => load_error = Some(format!("sso.cookie_keys {e}")),
            }
        }
        let secret = match &config.client_secret_file {
            None => None,
            Some(path) => match read_secret(path) {
                Ok(s) if !s.is_empty() => Some(ClientSecret::new(s)),
                Ok(_) => {
                    load_error = Some(format!(
                        "sso.client_secret_file {} is empty",
                        path.display()
                    ));
                    None
                }
                Err(e) => {
                    load_error = Some(format!("sso.client_secret_file {e}"));
                    None
                }
            },
        };
        if let Some(e) = &load_error {
            tracing::error!(error = %e, "sso.unavailable: browser routes are denied");
        }
        let keys = if load_error.is_none() {
            CookieKeys::new(&keys)
        } else {
            None
        };
        Sso {
            config: config.clone(),
            keys,
            secret,
            load_error,
            http: crate::jwks::http_client().unwrap_or_default(),
            discovery: Discovery::new(config),
            logged_out: moka::sync::Cache::builder()
                .max_capacity(config.logout_deny_list_capacity)
                .time_to_live(config.session_lifetime)
                .build(),
            refreshed: moka::future::Cache::builder()
                .max_capacity(REFRESHES_KEPT)
                .time_to_live(REFRESH_REUSE)
                .build(),
        }
    }

    /// Whether `request` is on a browser route.
    pub fn applies(&self, request: &HttpRequest) -> bool {
        self.config.is_browser_path(&request.path)
    }

    /// Whether `request` carries our session cookie.
    pub fn has_session(&self, request: &HttpRequest) -> bool {
        request
            .header("cookie")
            .and_then(|c| session::cookie(c, SESSION_COOKIE))
            .is_some()
    }

    /// Whether a denied request should be sent to the IdP rather than answered 401.
    pub fn wants_html(request: &HttpRequest) -> bool {
        session::wants_html(
            request.header("accept"),
            request.header("sec-fetch-mode"),
            request.header("x-requested-with"),
        )
    }

    /// The origin browsers reach Envoy at: `sso.external_url`, or the request's own scheme and
    /// `:authority` when its host is on `allowed_return_hosts` (the Host header is the
    /// client's: an unlisted one is refused, never trusted).
    fn origin(&self, request: &HttpRequest) -> Option<String> {
        if let Some(url) = &self.config.external_url {
            return Some(url.clone());
        }
        let authority = request
            .header(":authority")
            .or_else(|| request.header("host"))?;
        let scheme = if request.scheme.is_empty() {
            "http"
        } else {
            &request.scheme
        };
        let origin = format!("{scheme}://{authority}");
        session::return_url_allowed(&format!("{origin}/"), &self.config.allowed_return_hosts)
            .then_some(origin)
    }

    fn answer(
        status: u16,
        reason: &'static str,
        browser: Browser,
        error: Option<String>,
    ) -> Answer {
        Answer {
            status,
            reason,
            browser,
            error,
        }
    }

    fn unavailable(&self, error: String) -> Answer {
        Sso::answer(503, reasons::UNAVAILABLE, Browser::default(), Some(error))
    }

    /// The answer for cedargate's own paths (callback, login, logout) and for the CSRF rule;
    /// `None`: the request goes on to identity and policies.
    pub async fn route(&self, verifier: &Verifier, request: &HttpRequest) -> Option<Answer> {
        if let Some(e) = &self.load_error {
            return Some(self.unavailable(e.clone()));
        }
        let path = request.path.as_str();
        if path == self.config.callback_path {
            return Some(self.callback(verifier, request).await);
        }
        if path == self.config.logout_path {
            return Some(self.logout(request).await);
        }
        if path == self.config.login_path {
            let return_to = form_urlencoded::parse(request.query.as_bytes())
                .find(|(k, _)| k == "return_to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| "/".to_string());
            return Some(self.login(request, &return_to).await);
        }
        if self.has_session(request) && session::state_changing(&request.method) {
            let own = self.origin(request).unwrap_or_default();
            if !session::same_origin(
                request.header("origin"),
                request.header("sec-fetch-site"),
                &own,
            ) {
                return Some(Sso::answer(
                    403,
                    reasons::CSRF_ORIGIN,
                    Browser::default(),
                    Some(format!(
                        "state-changing request with a session from origin {:?} (sec-fetch-site {:?})",
                        request.header("origin"),
                        request.header("sec-fetch-site")
                    )),
                ));
            }
        }
        None
    }

    /// The redirect to the IdP for a request that needs a login: its own URL is the return URL.
    pub async fn login_required(&self, request: &HttpRequest) -> Answer {
        let mut return_to = request.path.clone();
        if !request.query.is_empty() {
            return_to.push('?');
            return_to.push_str(&request.query);
        }
        self.login(request, &return_to).await
    }

    /// A redirect to the IdP's authorization endpoint, with the login cookie.
    async fn login(&self, request: &HttpRequest, return_to: &str) -> Answer {
        if !session::return_url_allowed(return_to, &self.config.allowed_return_hosts) {
            return Sso::answer(
                400,
                reasons::RETURN_URL_REFUSED,
                Browser::default(),
                Some("return_to is not a path nor on sso.allowed_return_hosts".to_string()),
            );
        }
        let Some(origin) = self.origin(request) else {
            return Sso::answer(
                400,
                reasons::RETURN_URL_REFUSED,
                Browser::default(),
                Some("the request's host is not on sso.allowed_return_hosts".to_string()),
            );
        };
        let provider = match self.discovery.get().await {
            Ok(p) => p,
            Err(e) => return self.unavailable(e),
        };
        let redirect_uri = format!("{origin}{}", self.config.callback_path);
        let Ok(redirect) = RedirectUrl::new(redirect_uri.clone()) else {
            return self.unavailable(format!("redirect URI {redirect_uri} is not a URL"));
        };
        let client = CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.config.client_id.to_string()),
            self.secret.clone(),
        )
        .set_redirect_uri(redirect);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut authorize = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            authorize = authorize.add_scope(Scope::new(scope.clone()));
        }
        if self.config.refresh {
            // oidc-provider (and the spec, OIDC Core §11) issue offline_access only with consent.
            authorize = authorize.add_prompt(CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = authorize.url();
        let now = now_secs();
        let login = Login {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            return_to: return_to.to_string(),
            redirect_uri,
            exp: now + self.config.login_timeout.as_secs(),
        };
        let Some(sealed) = self
            .keys
            .as_ref()
            .and_then(|k| k.seal(Purpose::Login, &login))
        else {
            return self.unavailable("could not seal the login cookie".to_string());
        };
        Sso::answer(
            302,
            reasons::LOGIN_REQUIRED,
            Browser {
                location: Some(url.to_string()),
                set_cookies: vec![cookie(
                    LOGIN_COOKIE,
                    &sealed,
                    self.config.login_timeout.as_secs(),
                )],
                upstream_cookie: None,
            },
            None,
        )
    }

    /// The callback: checks state against the login cookie and `iss` (RFC 9207), exchanges the
    /// code, checks the ID token, verifies the access token as a bearer token, sets the session.
    async fn callback(&self, verifier: &Verifier, request: &HttpRequest) -> Answer {
        let refused = |reason: &'static str, error: String| {
            Sso::answer(
                403,
                reason,
                Browser {
                    set_cookies: vec![clear(LOGIN_COOKIE)],
                    ..Browser::default()
                },
                Some(error),
            )
        };
        let query: std::collections::HashMap<String, String> =
            form_urlencoded::parse(request.query.as_bytes())
                .into_owned()
                .collect();
        let login: Login = match request
            .header("cookie")
            .and_then(|c| session::cookie(c, LOGIN_COOKIE))
            .ok_or(SessionError::Malformed)
            .and_then(|v| {
                self.keys
                    .as_ref()
                    .ok_or(SessionError::UnknownKey)?
                    .open(Purpose::Login, v)
            }) {
            Ok(l) => l,
            Err(e) => return refused(reasons::STATE_MISMATCH, format!("login cookie: {e}")),
        };
        if login.exp < now_secs() {
            return refused(
                reasons::STATE_MISMATCH,
                "the login took too long".to_string(),
            );
        }
        let state_ok = query.get("state").is_some_and(|s| {
            aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), login.state.as_bytes())
                .is_ok()
        });
        if !state_ok {
            return refused(
                reasons::STATE_MISMATCH,
                "state differs from the login cookie's".to_string(),
            );
        }
        if let Some(error) = query.get("error") {
            return refused(
                reasons::CALLBACK_FAILED,
                format!("the IdP answered error={error}"),
            );
        }
        let provider = match self.discovery.get().await {
            Ok(p) => p,
            Err(e) => return self.unavailable(e),
        };
        // RFC 9207: the authorization response names its issuer; a mix-up attack shows here.
        match query.get("iss") {
            Some(iss) if iss != provider.metadata.issuer().as_str() => {
                return refused(
                    reasons::CALLBACK_FAILED,
                    format!("callback iss {iss} is not the issuer"),
                );
            }
            None if provider
                .metadata
                .additional_metadata()
                .additional_metadata
                .authorization_response_iss_parameter_supported =>
            {
                return refused(
                    reasons::CALLBACK_FAILED,
                    "callback without iss (RFC 9207)".to_string(),
                );
            }
            _ => {}
        }
        let Some(code) = query.get("code") else {
            return refused(
                reasons::CALLBACK_FAILED,
                "callback without code".to_string(),
            );
        };
        let Ok(redirect) = RedirectUrl::new(login.redirect_uri.clone()) else {
            return refused(reasons::CALLBACK_FAILED, "bad redirect URI".to_string());
        };
        let client = CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.config.client_id.to_string()),
            self.secret.clone(),
        )
        .set_redirect_uri(redirect);
        let http = self.http.clone();
        let timeout = self.config.idp_timeout;
        let send = move |r| http::send(http.clone(), timeout, r);
        let exchange = match client.exchange_code(AuthorizationCode::new(code.clone())) {
            Ok(e) => e,
            Err(e) => return self.unavailable(format!("token endpoint: {e}")),
        };
        let tokens = match exchange
            .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()))
            .request_async(&send)
            .await
        {
            Ok(t) => t,
            Err(e) => return refused(reasons::CALLBACK_FAILED, format!("code exchange: {e}")),
        };
        let Some(id_token) = tokens.id_token() else {
            return refused(
                reasons::CALLBACK_FAILED,
                "no ID token in the token answer".to_string(),
            );
        };
        let id_verifier = client
            .id_token_verifier()
            .set_allowed_algs(id_token_algs(&self.config));
        if let Err(e) = id_token.claims(&id_verifier, &Nonce::new(login.nonce.clone())) {
            // A key rotation at the IdP shows as a signature failure: rediscover next time.
            self.discovery.forget();
            return refused(reasons::CALLBACK_FAILED, format!("ID token: {e}"));
        }
        let access = tokens.access_token().secret().clone();
        match verifier.verify(&access).await {
            Ok((token, _)) if token.issuer.name == self.config.issuer.name => {}
            Ok(_) => {
                return refused(
                    reasons::CALLBACK_FAILED,
                    "access token from another issuer".to_string(),
                );
            }
            Err(e) => return refused(reasons::CALLBACK_FAILED, format!("access token: {e}")),
        }
        let now = now_secs();
        let mut sealed_session = Session {
            sid: random_id(),
            exp: now + self.config.session_lifetime.as_secs(),
            at: access,
            rt: tokens.refresh_token().map(|r| r.secret().clone()),
            idt: Some(id_token.to_string()),
        };
        let Some(keys) = self.keys.as_ref() else {
            return self.unavailable("no cookie keys".to_string());
        };
        let mut sealed = keys
            .seal(Purpose::Session, &sealed_session)
            .unwrap_or_default();
        if sealed.len() > MAX_COOKIE_VALUE {
            // Too big for one cookie with the ID token: logout then names the client instead.
            sealed_session.idt = None;
            sealed = keys
                .seal(Purpose::Session, &sealed_session)
                .unwrap_or_default();
        }
        if sealed.is_empty() || sealed.len() > MAX_COOKIE_VALUE {
            return refused(
                reasons::CALLBACK_FAILED,
                "the session does not fit in a cookie".to_string(),
            );
        }
        Sso::answer(
            302,
            reasons::LOGIN_COMPLETE,
            Browser {
                location: Some(login.return_to),
                set_cookies: vec![
                    cookie(
                        SESSION_COOKIE,
                        &sealed,
                        self.config.session_lifetime.as_secs(),
                    ),
                    clear(LOGIN_COOKIE),
                ],
                upstream_cookie: None,
            },
            None,
        )
    }

    /// Logout: remembers the session id as logged out, clears the cookie, and sends the browser
    /// to the IdP's `end_session_endpoint` (or straight to `post_logout_url` without one).
    async fn logout(&self, request: &HttpRequest) -> Answer {
        let opened: Option<Session> = request
            .header("cookie")
            .and_then(|c| session::cookie(c, SESSION_COOKIE))
            .and_then(|v| self.keys.as_ref()?.open(Purpose::Session, v).ok());
        if let Some(s) = &opened {
            self.logged_out.insert(s.sid.clone(), ());
        }
        let origin = self.origin(request).unwrap_or_default();
        let post_logout = if self.config.post_logout_url.starts_with('/') {
            format!("{origin}{}", self.config.post_logout_url)
        } else {
            self.config.post_logout_url.clone()
        };
        let mut location = post_logout.clone();
        if let Ok(provider) = self.discovery.get().await
            && let Some(end) = provider
                .metadata
                .additional_metadata()
                .end_session_endpoint
                .clone()
            && let Ok(post) = PostLogoutRedirectUrl::new(post_logout.clone())
        {
            let mut url = end.url().clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(idt) = opened.as_ref().and_then(|s| s.idt.as_deref()) {
                    q.append_pair("id_token_hint", idt);
                }
                q.append_pair("client_id", &self.config.client_id);
                q.append_pair("post_logout_redirect_uri", post.as_str());
            }
            location = url.to_string();
        }
        Sso::answer(
            302,
            reasons::LOGGED_OUT,
            Browser {
                location: Some(location),
                set_cookies: vec![clear(SESSION_COOKIE), clear(LOGIN_COOKIE)],
                upstream_cookie: None,
            },
            None,
        )
    }

    /// The identity of a request with a session cookie: the cookie opened, its expiry and the
    /// deny-list checked, its access token verified as a bearer token (refreshed when expired and
    /// the session has a refresh token). A refused session also clears the cookie.
    pub async fn session(&self, verifier: &Verifier, request: &HttpRequest) -> SessionIdentity {
        let header = request.header("cookie").unwrap_or_default();
        let upstream_cookie = Some(session::without_cookies(
            header,
            &[SESSION_COOKIE, LOGIN_COOKIE],
        ));
        let refused = |e: IdentityError| SessionIdentity {
            token: Err(e),
            browser: Browser {
                set_cookies: vec![clear(SESSION_COOKIE)],
                ..Browser::default()
            },
        };
        let Some(keys) = self.keys.as_ref() else {
            return refused(SessionError::UnknownKey.into());
        };
        let mut s: Session = match session::cookie(header, SESSION_COOKIE)
            .ok_or(SessionError::Malformed)
            .and_then(|v| keys.open(Purpose::Session, v))
        {
            Ok(s) => s,
            Err(e) => return refused(e.into()),
        };
        if s.exp <= now_secs() {
            return refused(SessionError::Expired.into());
        }
        if self.logged_out.contains_key(&s.sid) {
            return refused(SessionError::LoggedOut.into());
        }
        match verifier.verify(&s.at).await {
            Ok(token) => SessionIdentity {
                token: Ok(token),
                browser: Browser {
                    upstream_cookie,
                    ..Browser::default()
                },
            },
            Err(TokenError::Expired) => {
                let Some(rt) = s.rt.clone().filter(|_| self.config.refresh) else {
                    return refused(SessionError::Expired.into());
                };
                let shared = self
                    .refreshed
                    .try_get_with(cedargate_core::token::sha256(rt.as_bytes()), async {
                        self.refresh(&rt).await.map(Arc::new)
                    })
                    .await;
                match shared {
                    Ok(tokens) => {
                        let (at, new_rt) = (*tokens).clone();
                        s.at = at;
                        s.rt = new_rt.or(Some(rt));
                        let token = match verifier.verify(&s.at).await {
                            Ok(t) => t,
                            Err(e) => return refused(e.into()),
                        };
                        let remaining = s.exp.saturating_sub(now_secs());
                        let set_cookies = keys
                            .seal(Purpose::Session, &s)
                            .filter(|v| v.len() <= MAX_COOKIE_VALUE)
                            .map(|v| vec![cookie(SESSION_COOKIE, &v, remaining)])
                            .unwrap_or_default();
                        SessionIdentity {
                            token: Ok(token),
                            browser: Browser {
                                set_cookies,
                                upstream_cookie,
                                location: None,
                            },
                        }
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "sso.refresh_failed");
                        refused(SessionError::RefreshFailed.into())
                    }
                }
            }
            Err(e) => refused(e.into()),
        }
    }

    /// A new access token (and maybe refresh token) for `rt`.
    async fn refresh(&self, rt: &str) -> Result<(String, Option<String>), String> {
        let provider = self.discovery.get().await?;
        let client = CoreClient::from_provider_metadata(
            provider.metadata.clone(),
            ClientId::new(self.config.client_id.to_string()),
            self.secret.clone(),
        );
        let http = self.http.clone();
        let timeout = self.config.idp_timeout;
        let send = move |r| http::send(http.clone(), timeout, r);
        let rt = RefreshToken::new(rt.to_string());
        let tokens = client
            .exchange_refresh_token(&rt)
            .map_err(|e| e.to_string())?
            .request_async(&send)
            .await
            .map_err(|e| format!("refresh: {e}"))?;
        Ok((
            tokens.access_token().secret().clone(),
            tokens.refresh_token().map(|r| r.secret().clone()),
        ))
    }
}
