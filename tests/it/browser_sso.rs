//! Browser single sign-on through the real Envoy and the real oidc-provider, without a browser:
//! a small HTTP client with a cookie jar (cookies by host, as browsers keep them across ports)
//! logs in at the IdP's dev login form, then every refusal the design promises is checked:
//! API clients get 401, a tampered, expired or logged-out cookie is refused, a callback whose
//! state is not the login's is refused, an open redirect is refused, a cross-site POST is denied.
//! The headless-Chromium test (tests/browser/sso_login.py) drives the same flow as a person.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::Value;

use cedargate_core::config::{LOGIN_COOKIE, SESSION_COOKIE};
use cedargate_core::session::{CookieKeys, KEY_BYTES, Login, Purpose, Session};

use crate::stack::Stack;

/// The `sso` section the stack's cedargate gets (keys and secret in `dir`).
pub fn sso_section(dir: &Path) -> String {
    let key = dir.join("sso-k1.key");
    let mut bytes = [0u8; KEY_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    std::fs::write(
        &key,
        base64::engine::general_purpose::STANDARD.encode(bytes),
    )
    .unwrap();
    let secret = dir.join("sso-secret");
    std::fs::write(&secret, "cedargate-sso-secret\n").unwrap();
    format!(
        "\nsso:\n  issuer: demo-idp\n  client_id: cedargate-sso\n  client_secret_file: {}\n  \
         scopes: [openid, profile]\n  refresh: true\n  browser_paths: [/orders, /reports, /payments]\n  \
         allowed_return_hosts: [127.0.0.1]\n  post_logout_url: /orders/status\n  \
         cookie_keys:\n    - {{ id: k1, file: {} }}\n",
        secret.display(),
        key.display()
    )
}

/// One answer: status, headers (lower-case names, every value), body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// On a denial Envoy's answer names the decision; on an allow the upstream echoes the
    /// request headers it got, cedargate's among them.
    pub fn decision_id(&self) -> String {
        if let Some(id) = self.header("x-cedargate-decision-id") {
            return id.to_string();
        }
        serde_json::from_str::<Value>(&self.body)
            .ok()
            .and_then(|v| {
                v["headers"]["x-cedargate-decision-id"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no decision id: {} {}", self.status, self.body))
    }
}

/// A browser-like client: no automatic redirects, cookies kept by name and path for one host
/// (127.0.0.1: the IdP and Envoy share it, as in a browser).
#[derive(Default)]
pub struct Browser {
    pub jar: Vec<(String, String, String)>,
    http: Option<reqwest::Client>,
}

impl Browser {
    fn client(&mut self) -> reqwest::Client {
        self.http
            .get_or_insert_with(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap()
            })
            .clone()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, _)| v.clone())
    }

    pub fn set(&mut self, name: &str, value: &str) {
        self.jar.retain(|(n, _, _)| n != name);
        self.jar
            .push((name.to_string(), value.to_string(), "/".to_string()));
    }

    fn cookie_header(&self, path: &str) -> String {
        self.jar
            .iter()
            .filter(|(_, _, p)| {
                path == p || path.starts_with(&format!("{}/", p.trim_end_matches('/'))) || p == "/"
            })
            .map(|(n, v, _)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn store(&mut self, url: &reqwest::Url, set_cookie: &str) {
        let mut parts = set_cookie.split(';').map(str::trim);
        let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
            return;
        };
        let mut path = url
            .path()
            .rsplit_once('/')
            .map(|(p, _)| p)
            .unwrap_or("/")
            .to_string();
        if path.is_empty() {
            path = "/".into();
        }
        let mut expired = false;
        for attr in parts {
            let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
            match k.to_ascii_lowercase().as_str() {
                "path" => path = v.to_string(),
                "max-age" => expired = v.trim() == "0",
                "expires" => expired = v.contains("1970"),
                _ => {}
            }
        }
        self.jar.retain(|(n, _, p)| !(n == name && *p == path));
        if !expired {
            self.jar.push((name.to_string(), value.to_string(), path));
        }
    }

    /// One request (`accept` and extra headers as given), cookies sent and stored.
    pub async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<String>,
    ) -> Reply {
        let url = reqwest::Url::parse(url).unwrap();
        let mut request = self.client().request(method.parse().unwrap(), url.clone());
        let cookies = self.cookie_header(url.path());
        if !cookies.is_empty() {
            request = request.header("cookie", cookies);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(form) = form {
            request = request
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                self.store(&url, v);
            }
        }
        let body = response.text().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn navigate(&mut self, url: &str) -> Reply {
        self.send("GET", url, &[("accept", HTML)], None).await
    }

    /// Follows redirects from `reply` (at `url`), filling the IdP's dev login form as `user`
    /// and its consent form, until an answer that is not a redirect or a form.
    pub async fn follow(
        &mut self,
        mut url: String,
        mut reply: Reply,
        user: &str,
    ) -> (String, Reply) {
        for _ in 0..20 {
            if (300..400).contains(&reply.status) {
                let location = reply.header("location").expect("redirect without location");
                url = reqwest::Url::parse(&url)
                    .unwrap()
                    .join(location)
                    .unwrap()
                    .to_string();
                reply = self.navigate(&url).await;
                continue;
            }
            let Some((action, mut fields)) = parse_form(&reply.body) else {
                return (url, reply);
            };
            if fields.iter().any(|(k, v)| k == "prompt" && v == "login") {
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), "any-password".into()));
            }
            let form = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            url = reqwest::Url::parse(&url)
                .unwrap()
                .join(&action)
                .unwrap()
                .to_string();
            reply = self
                .send("POST", &url, &[("accept", HTML)], Some(form))
                .await;
        }
        panic!("too many steps at {url}");
    }
}

const HTML: &str = "text/html,application/xhtml+xml";

/// The first form of an HTML page: its action and hidden fields.
fn parse_form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let form = &html[start..];
    let end = form.find("</form>")?;
    let form = &form[..end];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let rest = &tag[at..];
        Some(
            rest[..rest.find('"')?]
                .replace("&amp;", "&")
                .replace("&#x2F;", "/"),
        )
    };
    let action = attr(&form[..form.find('>')?], "action")?;
    let mut fields = Vec::new();
    for input in form.split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if tag.contains("type=\"hidden\"")
            && let Some(name) = attr(tag, "name")
        {
            fields.push((name, attr(tag, "value").unwrap_or_default()));
        }
    }
    Some((action, fields))
}

fn reason(stack: &Stack, reply: &Reply) -> String {
    stack.record(&reply.decision_id())["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The key the stack's cedargate seals with (written by [`sso_section`] into `dir`).
fn keys(dir: &Path) -> CookieKeys {
    let text = std::fs::read_to_string(dir.join("sso-k1.key")).unwrap();
    let key = cedargate_core::session::parse_key(&text).unwrap();
    CookieKeys::new(&[(Arc::from("k1"), key)]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_login_session_logout_and_every_refusal() {
    let keydir = tempfile::tempdir().unwrap();
    let section = sso_section(keydir.path());
    let stack = Stack::start_with(move |yaml| yaml + &section);
    let page = stack.url("/orders/42");

    // An API client (no text/html) gets 401, never a redirect.
    let mut api = Browser::default();
    let r = api
        .send("GET", &page, &[("accept", "application/json")], None)
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.header("location").is_none());
    let r = api
        .send(
            "GET",
            &page,
            &[("accept", HTML), ("sec-fetch-mode", "cors")],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "XHR/fetch with text/html still gets 401");

    // A navigation is sent to the IdP with PKCE S256, and the login cookie is set.
    let mut browser = Browser::default();
    let first = browser.navigate(&page).await;
    assert_eq!(first.status, 302, "{}", first.body);
    assert_eq!(reason(&stack, &first), "login_required");
    let location = first.header("location").unwrap().to_string();
    assert!(
        location.starts_with(&format!("{}/auth?", stack.idp.issuer)),
        "{location}"
    );
    assert!(
        location.contains("code_challenge_method=S256") && location.contains("nonce="),
        "{location}"
    );
    let login_cookie = first
        .headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with(LOGIN_COOKIE))
        .map(|(_, v)| v.clone())
        .expect("login cookie");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(login_cookie.contains(attr), "{login_cookie} lacks {attr}");
    }

    // Mismatched state: a callback with another state than the login cookie's.
    let r = browser
        .navigate(&stack.url("/_cedargate/callback?code=x&state=not-the-state"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(reason(&stack, &r), "sso_state_mismatch");
    // (the refusal cleared the login cookie: start again)
    let first = browser.navigate(&page).await;

    // Log in as bob (staff): the upstream page, with bob as the principal.
    let (url, landed) = browser.follow(page.clone(), first, "bob").await;
    assert_eq!(url, page);
    assert_eq!(landed.status, 200, "{}", landed.body);
    let seen: Value = serde_json::from_str(&landed.body).unwrap();
    assert_eq!(seen["headers"]["x-cedargate-principal"], r#"User::"bob""#);
    let upstream_cookies = seen["headers"]["cookie"].as_str().unwrap_or_default();
    assert!(
        !upstream_cookies.contains(SESSION_COOKIE) && !upstream_cookies.contains(LOGIN_COOKIE),
        "the upstream must not see cedargate's cookies: {upstream_cookies}"
    );
    let session_cookie = browser.cookie(SESSION_COOKIE).expect("session cookie");
    assert!(
        browser.cookie(LOGIN_COOKIE).is_none(),
        "the login cookie is cleared"
    );

    // Reload: no new login; the same principal as a bearer token of the same user.
    let again = browser.navigate(&page).await;
    assert_eq!(again.status, 200);
    let record = stack.record(&again.decision_id());
    eprintln!(
        "session cookie {} bytes; a session request took {} µs in cedargate (token cache {})",
        session_cookie.len(),
        record["latency_us"],
        record["token"]["cached"]
    );
    let bearer = stack.idp.user("bob");
    let r = api
        .send(
            "GET",
            &page,
            &[("authorization", &format!("Bearer {bearer}"))],
            None,
        )
        .await;
    let bearer_record = stack.record(&r.decision_id());
    let r2 = api
        .send(
            "GET",
            &page,
            &[("authorization", &format!("Bearer {bearer}"))],
            None,
        )
        .await;
    let again2 = browser.navigate(&page).await;
    eprintln!(
        "debug build, warm: bearer {} µs, session {} µs",
        stack.record(&r2.decision_id())["latency_us"],
        stack.record(&again2.decision_id())["latency_us"]
    );
    assert_eq!(record["principal"], bearer_record["principal"]);
    assert_eq!(
        record["cedar"]["entities"], bearer_record["cedar"]["entities"],
        "same parents and attributes"
    );

    // Policy says no (bob is not an admin; reports are not for staff): 403, not a login.
    let r = browser.navigate(&stack.url("/reports/daily")).await;
    assert_eq!(r.status, 403);
    assert_eq!(reason(&stack, &r), "no_permit");

    // CSRF: a cross-site POST with the session cookie is denied; same-origin is decided normally.
    let r = browser
        .send(
            "POST",
            &stack.url("/orders"),
            &[("origin", "https://evil.example")],
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(reason(&stack, &r), "csrf_origin");
    let r = browser
        .send(
            "POST",
            &stack.url("/orders"),
            &[("sec-fetch-site", "cross-site")],
            None,
        )
        .await;
    assert_eq!(reason(&stack, &r), "csrf_origin");
    let own = format!("http://127.0.0.1:{}", stack.listener);
    let r = browser
        .send(
            "POST",
            &stack.url("/orders"),
            &[("origin", own.as_str())],
            None,
        )
        .await;
    assert_ne!(reason(&stack, &r), "csrf_origin");

    // Open redirect: a return URL on another host is refused.
    for evil in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let url = format!(
            "{}?return_to={}",
            stack.url("/_cedargate/login"),
            form_urlencoded::byte_serialize(evil.as_bytes()).collect::<String>()
        );
        let r = browser.navigate(&url).await;
        assert_eq!(r.status, 400, "{evil}");
        assert!(r.header("location").is_none(), "{evil}");
        assert_eq!(reason(&stack, &r), "sso_return_url_refused");
    }

    // Tampering: one bit of the sealed cookie flipped.
    let (kid, body) = session_cookie.split_once('.').unwrap();
    let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .unwrap();
    let middle = raw.len() / 2;
    raw[middle] ^= 1;
    let tampered = format!(
        "{kid}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let mut thief = Browser::default();
    thief.set(SESSION_COOKIE, &tampered);
    let r = thief
        .send("GET", &page, &[("accept", "application/json")], None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(reason(&stack, &r), "session_invalid");
    assert!(
        thief.cookie(SESSION_COOKIE).is_none(),
        "a refused cookie is cleared"
    );
    thief.set(SESSION_COOKIE, &tampered);
    let r = thief.navigate(&page).await;
    assert_eq!(
        r.status, 302,
        "a browser with a bad cookie is sent to log in"
    );
    assert_eq!(reason(&stack, &r), "session_invalid");

    // Expired: a genuine cookie (sealed with the configured key) whose session ended.
    let keys = keys(keydir.path());
    let mut session: Session = keys.open(Purpose::Session, &session_cookie).unwrap();
    session.exp = cedargate_core::token::now_secs() - 1;
    let mut late = Browser::default();
    late.set(
        SESSION_COOKIE,
        &keys.seal(Purpose::Session, &session).unwrap(),
    );
    let r = late
        .send("GET", &page, &[("accept", "application/json")], None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(reason(&stack, &r), "session_expired");

    // RFC 9207: a callback whose `iss` is another issuer is refused, even with the right state.
    let login = Login {
        state: "s1".into(),
        nonce: "n1".into(),
        verifier: "v".repeat(43),
        return_to: "/orders/42".into(),
        redirect_uri: stack.url("/_cedargate/callback"),
        exp: cedargate_core::token::now_secs() + 60,
    };
    let mut mixup = Browser::default();
    mixup.set(LOGIN_COOKIE, &keys.seal(Purpose::Login, &login).unwrap());
    let r = mixup
        .navigate(&stack.url("/_cedargate/callback?code=c&state=s1&iss=https%3A%2F%2Fevil.example"))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(reason(&stack, &r), "sso_callback_failed");
    assert!(r.header("location").is_none());

    // Logout: cookie cleared, sent to the IdP's end_session_endpoint with id_token_hint.
    let r = browser.navigate(&stack.url("/_cedargate/logout")).await;
    assert_eq!(r.status, 302);
    assert_eq!(reason(&stack, &r), "sso_logout");
    let location = r.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}/session/end", stack.idp.issuer)),
        "{location}"
    );
    assert!(
        location.contains("id_token_hint=") && location.contains("post_logout_redirect_uri="),
        "{location}"
    );
    assert!(
        browser.cookie(SESSION_COOKIE).is_none(),
        "logout clears the cookie"
    );

    // Replay of the old cookie after logout: refused.
    let mut replay = Browser::default();
    replay.set(SESSION_COOKIE, &session_cookie);
    let r = replay
        .send("GET", &page, &[("accept", "application/json")], None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(reason(&stack, &r), "session_logged_out");

    // And the logged-out browser is sent to log in again.
    let r = browser.navigate(&page).await;
    assert_eq!(r.status, 302);
    assert_eq!(reason(&stack, &r), "login_required");

    // Secrets never leak: no record, log line or error names the session cookie or its tokens.
    let record_text: String = stack.records().iter().map(Value::to_string).collect();
    let logs: String = stack.cedargate.stderr.lock().unwrap().join("\n");
    for secret in [
        session_cookie.as_str(),
        session.at.as_str(),
        session.rt.as_deref().unwrap(),
    ] {
        assert!(
            !record_text.contains(secret),
            "a decision record carries a session secret"
        );
        assert!(
            !logs.contains(secret),
            "cedargate's log carries a session secret"
        );
    }
    assert!(
        stack.records().iter().any(|r| r["reason"] == "sso_login"),
        "the completed login is recorded"
    );
}

/// A person's login in headless Chromium (tests/browser/sso_login.py, Selenium; installed by
/// scripts/install-browser.sh): the login form, the page, a reload without login, a 403 where
/// policy says so, logout at the IdP, and the login form again. Bounded: under 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_logs_in_reloads_is_refused_and_logs_out() {
    let keydir = tempfile::tempdir().unwrap();
    let section = sso_section(keydir.path());
    let stack = Stack::start_with(move |yaml| yaml + &section);
    let started = std::time::Instant::now();
    let screenshot = stack.dir.path().join("logged-in.png");
    let mut child = std::process::Command::new("python3")
        .env("PYTHONPATH", crate::support::repo().join(".tools/browser"))
        .arg(crate::support::repo().join("tests/browser/sso_login.py"))
        .args([
            "--base",
            &stack.url(""),
            "--idp",
            &stack.idp.issuer,
            "--screenshot",
        ])
        .arg(&screenshot)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (run scripts/install-browser.sh for Chromium and Selenium)");
    let deadline = started + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().ok();
            panic!("the browser test took more than 60 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["step"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        steps,
        [
            "login",
            "reload",
            "refused",
            "logout",
            "login_again",
            "done"
        ],
        "{stdout}"
    );
    assert!(
        std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 0),
        "no screenshot of the logged-in page"
    );
    // The logged-in page and the reload were allowed by cedargate with bob as the principal.
    let allowed: Vec<Value> = stack
        .records()
        .into_iter()
        .filter(|r| r["decision"] == "allow" && r["principal"] == r#"User::"bob""#)
        .collect();
    assert!(allowed.len() >= 2, "page + reload: {allowed:?}");
}

/// Sessions outlive their access token where the IdP gave a refresh token: with the short-lived
/// IdP (access tokens for 2 s) the page still loads after the token expired, with a new session
/// cookie; without a refresh token the same cookie would be refused `session_expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_with_the_refresh_token() {
    let keydir = tempfile::tempdir().unwrap();
    let section = sso_section(keydir.path()).replace("issuer: demo-idp", "issuer: short-idp");
    let stack = Stack::start_with(move |yaml| yaml + &section);
    let page = stack.url("/orders/42");
    let mut browser = Browser::default();
    let first = browser.navigate(&page).await;
    let location = first.header("location").unwrap_or_default().to_string();
    assert!(location.starts_with(&stack.short_idp.issuer), "{location}");
    let (_, landed) = browser.follow(page.clone(), first, "bob").await;
    assert_eq!(landed.status, 200, "{}", landed.body);
    let before = browser.cookie(SESSION_COOKIE).unwrap();
    let keys = keys(keydir.path());
    let session: Session = keys.open(Purpose::Session, &before).unwrap();
    assert!(
        session.rt.is_some(),
        "refresh: true asks for offline_access"
    );

    // Wait (on the clock, not a sleep-as-sync) until the access token is past its exp.
    let exp = crate::support::jwt_part(&session.at, 1)["exp"]
        .as_u64()
        .unwrap();
    while cedargate_core::token::now_secs() <= exp {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Two requests at once with the expired cookie (a page loading): one refresh, shared.
    let mut second = Browser::default();
    second.set(SESSION_COOKIE, &before);
    let (r, r2) = tokio::join!(browser.navigate(&page), second.navigate(&page));
    assert_eq!(r.status, 200, "refreshed: {}", r.body);
    assert_eq!(r2.status, 200, "refreshed: {}", r2.body);
    let after = browser.cookie(SESSION_COOKIE).unwrap();
    let after2: Session = keys
        .open(Purpose::Session, &second.cookie(SESSION_COOKIE).unwrap())
        .unwrap();
    assert!(before != after, "a refreshed session is sealed anew");
    let refreshed: Session = keys.open(Purpose::Session, &after).unwrap();
    assert_eq!(refreshed.sid, session.sid, "same session");
    assert_eq!(
        refreshed.exp, session.exp,
        "a refresh never extends the session"
    );
    // (compared without printing: a failure message must not carry tokens)
    assert!(refreshed.at != session.at, "a new access token");
    assert!(
        refreshed.at == after2.at,
        "concurrent requests share one refresh (single-flight per refresh token)"
    );

    // The same session without its refresh token: expired means a new login.
    let mut no_refresh = session.clone();
    no_refresh.rt = None;
    let mut other = Browser::default();
    other.set(
        SESSION_COOKIE,
        &keys.seal(Purpose::Session, &no_refresh).unwrap(),
    );
    let r = other
        .send("GET", &page, &[("accept", "application/json")], None)
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(reason(&stack, &r), "session_expired");
}
