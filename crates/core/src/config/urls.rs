//! Where the config points: URLs cedargate will fetch from (issuers, JWKS, the entity provider),
//! judged after parsing with `url`, and paths, read relative to the config file.

/// Why cedargate must not fetch from `url`, if it must not: not an absolute http(s) URL; user
/// info in it (in `http://localhost:80@idp.evil.example` the host is `idp.evil.example`, and a
/// hand-split URL once let exactly that through); plain http to a host that isn't loopback,
/// unless `allow_insecure_http`. Parsed with `url`, as every URL cedargate fetches from.
pub fn url_problem(url: &str, allow_insecure_http: bool) -> Option<&'static str> {
    let Ok(parsed) = url::Url::parse(url) else {
        return Some("is not an absolute URL");
    };
    if has_user_info(url) {
        return Some("must not carry user info (`user@host`)");
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Some("has no host"),
    };
    match parsed.scheme() {
        "https" => None,
        "http" if loopback || allow_insecure_http => None,
        "http" => Some(
            "must be an https URL (http is accepted for loopback hosts, or with allow_insecure_http: true)",
        ),
        _ => Some("must be an http(s) URL"),
    }
}

/// Whether `url` parses with a user name or password in it (which may be a secret: error texts
/// must not echo such a URL).
pub fn has_user_info(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
}

/// https anywhere, http only where the traffic cannot leave the machine, never user info.
pub fn is_secure_url(url: &str) -> bool {
    url_problem(url, false).is_none()
}

/// A path from the config file: as written when absolute, else relative to the config's folder
/// (`base`).
pub(super) fn resolve(base: &std::path::Path, p: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_http_is_allowed_elsewhere_https_required() {
        assert!(is_secure_url("http://127.0.0.1:8080"));
        assert!(is_secure_url("http://localhost/x"));
        assert!(is_secure_url("http://[::1]:9/"));
        assert!(is_secure_url("https://idp.example.com"));
        assert!(!is_secure_url("http://idp.example.com"));
        assert!(!is_secure_url("http://127.0.0.1.evil.com"));
        assert!(!is_secure_url("ftp://127.0.0.1"));
        // The host is what follows `@`: user info is refused whatever the scheme or flag.
        assert!(!is_secure_url("http://localhost:80@idp.evil.example"));
        assert!(!is_secure_url("https://user:pw@idp.example.com"));
        assert!(url_problem("http://localhost:80@idp.evil.example", true).is_some());
        assert!(url_problem("http://idp.internal", true).is_none());
        assert!(!is_secure_url("http://LOCALHOST.evil.example"));
    }
}
