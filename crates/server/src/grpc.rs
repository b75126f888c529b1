//! The gRPC edge: Envoy's `envoy.service.auth.v3.Authorization/Check`.
//!
//! The only module that names protobuf types. It converts a `CheckRequest` into an
//! [`HttpRequest`], asks the [`Gate`], and turns the [`Verdict`] into a `CheckResponse`: OK with
//! identity headers that *overwrite* client-sent ones, or a denied response with a small JSON body
//! and, for 401, an RFC 6750 `WWW-Authenticate` challenge. On allow it also carries the minted
//! upstream token (overwriting) and the credential headers to remove (`headers_to_remove`). On
//! `sso` browser routes a denied response may be a 302 with `Location` and `Set-Cookie`, and an
//! allow replaces the upstream's `cookie` header with the application's own cookies.
//! Nothing here decides anything.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::gate::{Gate, Verdict};
use crate::{metrics, telemetry};
use cedargate_core::request::HttpRequest;

/// Header carrying the principal's entity uid to the upstream.
pub const PRINCIPAL_HEADER: &str = "x-cedargate-principal";
/// Header carrying the decision id to the upstream and on denials.
pub const DECISION_ID_HEADER: &str = "x-cedargate-decision-id";

/// gRPC status codes used in `CheckResponse.status` (google.rpc.Code).
const GRPC_OK: i32 = 0;
const GRPC_PERMISSION_DENIED: i32 = 7;
const GRPC_UNAUTHENTICATED: i32 = 16;

/// The Authorization service.
#[derive(Clone)]
pub struct CheckService {
    /// The pipeline.
    gate: Arc<Gate>,
}

impl CheckService {
    /// A service answering with `gate`.
    pub fn new(gate: Arc<Gate>) -> CheckService {
        CheckService { gate }
    }
}

#[tonic::async_trait]
impl Authorization for CheckService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let timer = metrics::CheckTimer::start();
        let (metadata, _, check) = request.into_parts();
        let http = http_request(check);
        let trace_context = (
            metadata.get("traceparent").and_then(|v| v.to_str().ok()),
            metadata.get("tracestate").and_then(|v| v.to_str().ok()),
        );
        let span = telemetry::check_span(trace_context, &http.headers);
        let verdict = self.gate.check(http).instrument(span).await;
        timer.finish(&verdict.decision);
        Ok(Response::new(check_response(
            &verdict,
            &self.gate.config().realm,
        )))
    }
}

/// Converts Envoy's request attributes into cedargate's request. Missing parts become empty
/// values, which match no route and so are denied.
pub fn http_request(check: CheckRequest) -> HttpRequest {
    let Some(attributes) = check.attributes else {
        return HttpRequest::default();
    };
    let source = attributes.source;
    let source_ip = source
        .as_ref()
        .and_then(|s| s.address.as_ref())
        .and_then(|a| a.address.as_ref())
        .and_then(|a| match a {
            Address::SocketAddress(sa) => sa.address.parse().ok(),
            _ => None,
        });
    let source_principal = source.map(|s| s.principal).filter(|p| !p.is_empty());
    let Some(http) = attributes.request.and_then(|r| r.http) else {
        return HttpRequest {
            source_ip,
            source_principal,
            context_extensions: attributes.context_extensions,
            ..HttpRequest::default()
        };
    };
    let mut headers = http.headers;
    if headers.is_empty()
        && let Some(map) = http.header_map
    {
        // `encode_raw_headers: true` sends headers here instead.
        for h in map.headers {
            let value = if h.raw_value.is_empty() {
                h.value
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            add_header(&mut headers, h.key.to_ascii_lowercase(), value);
        }
    }
    let header_bytes = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    let (path, query) = HttpRequest::split_target(&http.path);
    let request_id = headers.get("x-request-id").cloned().unwrap_or(http.id);
    HttpRequest {
        request_id,
        // As Envoy forwards it: over HTTP/2 a client may send `get`, and the upstream receives
        // `get`; deciding on an upper-cased copy would authorize a request other than the one
        // that is sent (routes name `GET`, so `get` matches none and is denied).
        method: http.method,
        path,
        query,
        host: HttpRequest::normalize_host(&http.host),
        scheme: http.scheme,
        protocol: http.protocol,
        headers,
        context_extensions: attributes.context_extensions,
        source_ip,
        source_principal,
        header_bytes,
    }
}

/// Adds one occurrence of a header from `header_map`, where a header sent twice arrives as two
/// entries. They are joined as Envoy joins them in `headers` (and as the upstream may read them):
/// with `,`, or `; ` for `cookie` (RFC 6265). Keeping only the last one would let a request be
/// decided on other values than it carries, and would undercount its size against
/// `max_header_bytes`.
fn add_header(headers: &mut HashMap<String, String>, key: String, value: String) {
    match headers.entry(key) {
        Entry::Occupied(mut seen) => {
            let separator = if seen.key() == "cookie" { "; " } else { "," };
            let joined = seen.get_mut();
            joined.push_str(separator);
            joined.push_str(&value);
        }
        Entry::Vacant(new) => {
            new.insert(value);
        }
    }
}

fn header(key: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value,
            ..HeaderValue::default()
        }),
        // Overwrite: a client-sent header of the same name must not survive beside ours.
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

/// A `Set-Cookie` header, appended: several may go in one response, and none may replace another.
fn set_cookie(value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: "set-cookie".to_string(),
            value: value.to_string(),
            ..HeaderValue::default()
        }),
        append_action: HeaderAppendAction::AppendIfExistsOrAdd as i32,
        ..HeaderValueOption::default()
    }
}

/// Builds Envoy's answer for a verdict.
pub fn check_response(verdict: &Verdict, realm: &str) -> CheckResponse {
    let d = &verdict.decision;
    if d.allowed {
        let mut headers = vec![header(DECISION_ID_HEADER, verdict.decision_id.clone())];
        if let Some(principal) = &verdict.principal {
            headers.push(header(PRINCIPAL_HEADER, principal.clone()));
        }
        // The minted upstream token overwrites a client-sent header of the same name, and the
        // caller's credential headers go.
        let mut headers_to_remove = Vec::new();
        if let Some(upstream) = &verdict.upstream {
            headers.push(header(&upstream.name, upstream.value.clone()));
            headers_to_remove = upstream.remove.to_vec();
        }
        // A browser session: the upstream gets the application's own cookies without ours, and
        // the browser a refreshed session cookie.
        let mut response_headers_to_add = Vec::new();
        if let Some(browser) = &verdict.browser {
            match &browser.upstream_cookie {
                Some(Some(kept)) => headers.push(header("cookie", kept.clone())),
                Some(None) => headers_to_remove.push("cookie".to_string()),
                None => {}
            }
            response_headers_to_add.extend(browser.set_cookies.iter().map(|c| set_cookie(c)));
        }
        return CheckResponse {
            status: Some(rpc::Status {
                code: GRPC_OK,
                ..rpc::Status::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                response_headers_to_add,
                ..OkHttpResponse::default()
            })),
            ..CheckResponse::default()
        };
    }
    let (code, error) = match d.status {
        401 => (
            GRPC_UNAUTHENTICATED,
            d.challenge_error.unwrap_or("unauthorized"),
        ),
        302 => (GRPC_PERMISSION_DENIED, "redirect"),
        400 => (GRPC_PERMISSION_DENIED, "bad_request"),
        503 => (GRPC_PERMISSION_DENIED, "unavailable"),
        _ => (GRPC_PERMISSION_DENIED, "forbidden"),
    };
    let mut headers = vec![
        header("content-type", "application/json".to_string()),
        header(DECISION_ID_HEADER, verdict.decision_id.clone()),
    ];
    if d.status == 401 {
        let challenge = match d.challenge_error {
            Some(err) => format!(r#"Bearer realm="{realm}", error="{err}""#),
            None => format!(r#"Bearer realm="{realm}""#),
        };
        headers.push(header("www-authenticate", challenge));
    }
    // Browser routes (`sso`): a redirect to or from the IdP and its cookies; never cached.
    if let Some(browser) = &verdict.browser {
        if let Some(location) = &browser.location {
            headers.push(header("location", location.clone()));
        }
        if browser.location.is_some() || !browser.set_cookies.is_empty() {
            headers.push(header("cache-control", "no-store".to_string()));
        }
        headers.extend(browser.set_cookies.iter().map(|c| set_cookie(c)));
    }
    let body = serde_json::json!({
        "error": error,
        "status": d.status,
        "decision_id": verdict.decision_id,
    })
    .to_string();
    CheckResponse {
        status: Some(rpc::Status {
            code,
            ..rpc::Status::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(d.status),
            }),
            headers,
            body,
        })),
        ..CheckResponse::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    /// A CheckRequest as Envoy sends it with `encode_raw_headers: true`.
    fn raw(headers: &[(&str, &str)]) -> CheckRequest {
        let header_map = HeaderMap {
            headers: headers
                .iter()
                .map(|(k, v)| HeaderValue {
                    key: (*k).to_string(),
                    raw_value: v.as_bytes().to_vec(),
                    ..HeaderValue::default()
                })
                .collect(),
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        method: "GET".into(),
                        path: "/orders/7".into(),
                        header_map: Some(header_map),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn repeated_raw_headers_are_joined_and_counted_whole() {
        let request = http_request(raw(&[
            ("X-Tenant", "acme"),
            ("x-tenant", "evil"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("accept", "text/html"),
        ]));
        assert_eq!(request.headers["x-tenant"], "acme,evil");
        assert_eq!(request.headers["cookie"], "a=1; b=2");
        assert_eq!(request.headers["accept"], "text/html");
        let whole: usize = [
            "x-tenant",
            "acme,evil",
            "cookie",
            "a=1; b=2",
            "accept",
            "text/html",
        ]
        .iter()
        .map(|s| s.len())
        .sum();
        assert_eq!(request.header_bytes, whole);
    }
}
