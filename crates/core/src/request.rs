//! The HTTP request as cedargate sees it, independent of protobuf.
//!
//! The gRPC edge (`grpc`) converts Envoy's `CheckRequest` into an [`HttpRequest`] once; everything
//! after that (identity, mapping, decision, policy tests) works on this plain struct, so the policy
//! test runner and the server share one mapping path. This module does no IO.

use std::collections::HashMap;
use std::net::IpAddr;

/// An HTTP request that Envoy asked about.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    /// Envoy's `x-request-id` (or the CheckRequest id), for joining logs.
    pub request_id: String,
    /// The method exactly as Envoy forwards it (HTTP/1 methods are upper-case by Envoy's codec;
    /// over HTTP/2 a client may send any case, and `get` is not `GET`).
    pub method: String,
    /// Path without query string or fragment, as Envoy sent it (after its normalisation).
    pub path: String,
    /// Raw query string without `?` (may be empty).
    pub query: String,
    /// Lower-case host without port.
    pub host: String,
    /// `http` or `https`.
    pub scheme: String,
    /// `HTTP/1.1`, `HTTP/2`, …
    pub protocol: String,
    /// Lower-case header names → values (what Envoy's `allowed_headers` let through).
    pub headers: HashMap<String, String>,
    /// Envoy's per-route `context_extensions`, e.g. `service: orders`.
    pub context_extensions: HashMap<String, String>,
    /// Downstream client address.
    pub source_ip: Option<IpAddr>,
    /// mTLS peer principal Envoy verified (URI SAN such as a SPIFFE ID, or subject).
    pub source_principal: Option<String>,
    /// Total bytes of header names and values, to enforce `limits.max_header_bytes`.
    pub header_bytes: usize,
}

impl HttpRequest {
    /// The query parameters named in `allowed` (first value of each), decoded. Everything else
    /// in the query string stays out of contexts and records: query strings carry secrets too.
    pub fn allowed_query(&self, allowed: &[String]) -> std::collections::BTreeMap<String, String> {
        let mut query = std::collections::BTreeMap::new();
        if allowed.is_empty() {
            return query;
        }
        for (k, v) in form_urlencoded::parse(self.query.as_bytes()) {
            if allowed.iter().any(|a| *a == k) {
                query
                    .entry(k.into_owned())
                    .or_insert_with(|| v.into_owned());
            }
        }
        query
    }

    /// A header value by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Splits Envoy's `path` (which carries the query string) into path and query; drops a
    /// fragment.
    pub fn split_target(target: &str) -> (String, String) {
        let without_fragment = target.split('#').next().unwrap_or(target);
        match without_fragment.split_once('?') {
            Some((path, query)) => (path.to_string(), query.to_string()),
            None => (without_fragment.to_string(), String::new()),
        }
    }

    /// `Host`/`:authority` without port, lower-cased.
    pub fn normalize_host(authority: &str) -> String {
        let host = if let Some(v6) = authority.strip_prefix('[') {
            v6.split(']').next().unwrap_or(v6)
        } else {
            authority.rsplit_once(':').map_or(authority, |(h, port)| {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    authority
                }
            })
        };
        host.to_ascii_lowercase()
    }

    /// gRPC service and method when this is a gRPC call (`content-type: application/grpc…` and a
    /// `/package.Service/Method` path).
    pub fn grpc_method(&self) -> Option<(&str, &str)> {
        let content_type = self.header("content-type")?;
        if !content_type.starts_with("application/grpc") {
            return None;
        }
        let (service, method) = self.path.strip_prefix('/')?.split_once('/')?;
        if service.is_empty() || method.is_empty() || method.contains('/') {
            return None;
        }
        Some((service, method))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_into_path_and_query() {
        assert_eq!(
            HttpRequest::split_target("/a/b?x=1&y=2"),
            ("/a/b".into(), "x=1&y=2".into())
        );
        assert_eq!(
            HttpRequest::split_target("/a#frag"),
            ("/a".into(), "".into())
        );
        assert_eq!(HttpRequest::split_target("/"), ("/".into(), "".into()));
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        assert_eq!(
            HttpRequest::normalize_host("API.Example.com:8443"),
            "api.example.com"
        );
        assert_eq!(HttpRequest::normalize_host("[::1]:80"), "::1");
        assert_eq!(HttpRequest::normalize_host("example.com"), "example.com");
    }

    #[test]
    fn grpc_calls_are_recognised_by_content_type_and_path() {
        let mut req = HttpRequest {
            path: "/grpc.health.v1.Health/Check".into(),
            ..HttpRequest::default()
        };
        assert_eq!(req.grpc_method(), None);
        req.headers
            .insert("content-type".into(), "application/grpc+proto".into());
        assert_eq!(req.grpc_method(), Some(("grpc.health.v1.Health", "Check")));
        req.path = "/not/grpc/path".into();
        assert_eq!(req.grpc_method(), None);
    }
}
