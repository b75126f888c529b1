//! `openidconnect`'s HTTP over cedargate's own `reqwest` client. openidconnect's `reqwest`
//! feature would pull a second reqwest/hyper; its `AsyncHttpClient` is implemented for any
//! `Fn(HttpRequest) -> Future`, so this adapter is one function. Redirects are never followed
//! (the client is built without), answers are capped in size, every call has the SSO time budget.

use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};

/// Largest answer read from the IdP: discovery, JWKS and token answers are a few KiB.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// A failed back-channel call. Its text names the URL and what failed, never a body.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct HttpError {
    /// What was called (no query: a token request carries secrets in its body, never its URL).
    url: String,
    /// What went wrong.
    message: String,
}

/// Sends one openidconnect request with `http`, within `timeout`.
pub async fn send(
    http: reqwest::Client,
    timeout: Duration,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let url = format!(
        "{}://{}{}",
        parts.uri.scheme_str().unwrap_or("?"),
        parts.uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        parts.uri.path()
    );
    let fail = |message: String| HttpError {
        url: url.clone(),
        message,
    };
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| fail(e.to_string()))?;
    if body.len() > MAX_ANSWER_BYTES {
        return Err(fail(format!("answer larger than {MAX_ANSWER_BYTES} bytes")));
    }
    let mut answer = HttpResponse::new(body.to_vec());
    *answer.status_mut() = status;
    *answer.headers_mut() = headers;
    Ok(answer)
}
