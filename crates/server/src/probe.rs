//! `cedargate health`: asks a running cedargate's admin port whether it is ready (`/readyz`) or
//! alive (`/healthz`) and sums the answer up in one line, for container health checks where
//! there is no shell and no curl (the distroless image).
//!
//! Owns only the probe: one GET with a deadline, no redirects, no proxy. It decides nothing and
//! never changes the server it asks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

/// Which question to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/readyz`: policies and keys in force and not draining.
    Ready,
    /// `/healthz`: the process serves HTTP and its loops run.
    Live,
}

impl Probe {
    /// The admin path that answers this question.
    pub fn path(self) -> &'static str {
        match self {
            Probe::Ready => "/readyz",
            Probe::Live => "/healthz",
        }
    }
}

/// The answer: healthy or not, and one line saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit 0 when true.
    pub healthy: bool,
    /// One line for stdout (healthy) or stderr (not).
    pub line: String,
}

/// The URL of `probe` on the admin port `listen` (from `listen.admin`): an unspecified address
/// (`0.0.0.0`, `::`) is asked on loopback, where the probe runs (inside the container).
pub fn url_for(listen: SocketAddr, probe: Probe) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!(
        "http://{}{}",
        SocketAddr::new(ip, listen.port()),
        probe.path()
    )
}

/// GETs `url` within `timeout` and judges the answer: `200` is healthy; anything else, or no
/// answer, is not. The line carries the `reasons` of a `/readyz` body, or the text of a
/// `/healthz` body, or the transport error; never more than one line.
pub async fn check(url: &str, timeout: Duration) -> Outcome {
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
    {
        Ok(client) => client,
        Err(e) => return not_healthy(format!("{url}: cannot build an HTTP client: {e}")),
    };
    let response = match client.get(url).send().await {
        Ok(response) => response,
        Err(e) => return not_healthy(format!("{url}: {}", transport_error(&e))),
    };
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let summary = summarize(&body);
    if status.is_success() {
        Outcome {
            healthy: true,
            line: one_line(&format!("{url}: {} {summary}", status.as_u16())),
        }
    } else {
        not_healthy(format!("{url}: {} {summary}", status.as_u16()))
    }
}

fn not_healthy(line: String) -> Outcome {
    Outcome {
        healthy: false,
        line: one_line(&line),
    }
}

/// What the body says in a few words: `/readyz` JSON → `ready (policy <version>)` or its
/// reasons; text (`/healthz`) → the text.
fn summarize(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let reasons: Vec<&str> = v
                .get("reasons")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let version = v.get("policy_version").and_then(Value::as_str);
            match (v.get("ready").and_then(Value::as_bool), version) {
                (Some(true), Some(version)) => format!("ready (policy {version})"),
                (Some(true), None) => "ready".to_string(),
                _ if !reasons.is_empty() => format!("not ready: {}", reasons.join("; ")),
                _ => "not ready".to_string(),
            }
        }
        Err(_) => body.trim().to_string(),
    }
}

/// The reason a request got no answer, without reqwest's nesting repeated.
fn transport_error(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let what = if e.is_timeout() {
        "no answer in time"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut cause = e.source();
    let mut deepest = None;
    while let Some(c) = cause {
        deepest = Some(c.to_string());
        cause = c.source();
    }
    match deepest {
        Some(d) => format!("{what} ({d})"),
        None => what.to_string(),
    }
}

/// Newlines and runs of spaces folded: a health check prints one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_probed_on_loopback() {
        let cases = [
            ("0.0.0.0:9192", Probe::Ready, "http://127.0.0.1:9192/readyz"),
            ("[::]:9192", Probe::Live, "http://[::1]:9192/healthz"),
            ("10.0.0.7:8080", Probe::Ready, "http://10.0.0.7:8080/readyz"),
        ];
        for (listen, probe, want) in cases {
            assert_eq!(url_for(listen.parse().unwrap(), probe), want, "{listen}");
        }
    }

    #[test]
    fn bodies_are_summed_up_in_one_line() {
        let cases = [
            (
                r#"{"ready":true,"policy_version":"abc"}"#,
                "ready (policy abc)",
            ),
            (
                r#"{"ready":false,"reasons":["issuer a has no keys: x\ny","shutting down"]}"#,
                "not ready: issuer a has no keys: x\ny; shutting down",
            ),
            (r#"{"ready":false}"#, "not ready"),
            ("ok\n", "ok"),
        ];
        for (body, want) in cases {
            assert_eq!(summarize(body), want, "{body}");
        }
        assert_eq!(one_line("a\n b  c\n"), "a b c");
    }
}
