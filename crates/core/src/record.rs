//! The decision record: one versioned JSON object per decision, a public contract documented in
//! `docs/decision-log.md` (bump [`RECORD_VERSION`] on any incompatible change; golden files in
//! `tests/fixtures/decision-logs/` hold it still). Plain data: building records is the server's
//! (`gate`, with `redaction`), writing them the server's (`decision_log`), reading them back the
//! CLI's (`logs`, `replay`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::decision::DecidingPolicy;
use crate::mapping::CedarRequest;

/// Record format version.
pub const RECORD_VERSION: u32 = 1;

/// What a decision record keeps of a minted upstream token: enough to find it in an upstream's
/// logs (`jti`) and to know which key signed it, nothing that could be replayed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamTokenFacts {
    /// Its `jti`.
    pub jti: String,
    /// The signing key's id.
    pub kid: String,
    /// Its `aud`.
    pub aud: String,
    /// Its `exp`, seconds since the epoch.
    pub exp: u64,
    /// Whether an earlier decision minted it (reuse within `upstream_token.reuse_seconds`).
    pub reused: bool,
}

/// The request line of a Check denied before a Cedar request was built (`no_route`, a bad
/// credential, `headers_too_large`): the probes an audit most needs to see. Method, host and
/// path are cut like header values (`decision_log.max_header_value_bytes`); of the query string,
/// only the parameters allow-listed in `context.query` are kept, as in `cedar.context`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestLine {
    /// The method exactly as Envoy forwarded it.
    pub method: String,
    /// Host without port, lower-case.
    pub host: String,
    /// The path as Envoy forwarded it (after its normalisation), without query or fragment.
    pub path: String,
    /// Allow-listed query parameters (`context.query`); absent when none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub query: BTreeMap<String, String>,
}

/// Which call of cedargate's own `Authorizer` API (`cedargate.v1`) a record answers, and who
/// asked. Absent on the records of Envoy's Check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFacts {
    /// `is_authorized` or `batch_is_authorized`.
    pub method: String,
    /// The authenticated caller's principal as Cedar prints it (from its credential, never from
    /// the request); absent when the caller could not be authenticated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub caller: Option<String>,
    /// This record is the caller's own authorization (`cedar` asks whether `caller` may take
    /// `authorizer_api.caller_action` on a resource), refused: the call was answered
    /// `PERMISSION_DENIED`. Absent (false) on the records of answers.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub caller_check: bool,
    /// For `batch_is_authorized`: the batch's id, shared by the records of its items and
    /// answered to the caller as `batch_id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub batch_id: Option<String>,
    /// For `batch_is_authorized`: this item's index in the request's items.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<u32>,
    /// For `batch_is_authorized`: how many items the batch had.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u32>,
}

/// Token facts safe to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFacts {
    /// Configured issuer name.
    pub issuer: String,
    /// `iss`.
    pub iss: String,
    /// `sub`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sub: Option<String>,
    /// `jti`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    /// `client_id` (or `azp`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// Short SHA-256 of the token.
    pub hash: String,
    /// Whether verification came from the cache.
    pub cached: bool,
}

impl TokenFacts {
    /// What a record says about the caller's verified token (never the token itself); `None`
    /// for every other identity.
    pub fn of(identity: Option<&crate::identity::Identity>) -> Option<TokenFacts> {
        let Some(crate::identity::Identity::Token { token, cached }) = identity else {
            return None;
        };
        Some(TokenFacts {
            issuer: token.issuer.name.to_string(),
            iss: token.issuer.issuer.to_string(),
            sub: token.claim_str("sub").map(str::to_string),
            jti: token.claim_str("jti").map(str::to_string),
            client_id: token
                .claim_str("client_id")
                .or_else(|| token.claim_str("azp"))
                .map(str::to_string),
            hash: token.hash.to_string(),
            cached: *cached,
        })
    }
}

/// What the shadow (candidate) policy set decided on a request: never what Envoy was told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowRecord {
    /// The candidate set's version (content hash).
    pub policy_version: String,
    /// `allow` or `deny`.
    pub decision: String,
    /// The HTTP status it would have answered.
    pub status: u16,
    /// Its reason code.
    pub reason: String,
    /// The candidate policies that determined it.
    pub policies: Vec<DecidingPolicy>,
    /// Errors met evaluating the candidate.
    pub errors: Vec<String>,
    /// Whether it decided as the enforced set did (allow or deny).
    pub agrees: bool,
}

/// One decision, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// RFC 3339 time the Check arrived (UTC, microseconds).
    pub time: String,
    /// Unique id, also sent to the upstream and the client.
    pub decision_id: String,
    /// Envoy's `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// W3C trace id: the Check span's when traces are exported (`telemetry.otlp`), else the
    /// one in the request's `traceparent` header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// HTTP status returned (200 for allow).
    pub status: u16,
    /// Reason code.
    pub reason: String,
    /// `enforce` (or `shadow` for shadow evaluations).
    pub mode: String,
    /// Principal as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal: Option<String>,
    /// Action as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub action: Option<String>,
    /// Resource as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource: Option<String>,
    /// Matched route.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// Method, host and path of a request denied before a Cedar request was built (then
    /// `cedar` is absent; otherwise they are in `cedar.context.request`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request: Option<RequestLine>,
    /// Policies that determined the decision.
    pub policies: Vec<DecidingPolicy>,
    /// Errors met while deciding.
    pub errors: Vec<String>,
    /// Token facts, when a token was presented and verified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<TokenFacts>,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_ip: Option<String>,
    /// The request headers named in `decision_log.headers` that the request carried.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Time spent deciding, microseconds.
    pub latency_us: u64,
    /// Policy-set version (content hash).
    pub policy_version: String,
    /// Cedar's answer came from the decision cache: the same request facts (those the policies
    /// read) were evaluated before against the same policy version.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub from_cache: bool,
    /// The shadow (candidate) policy set's decision on the same request, in shadow mode.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shadow: Option<ShadowRecord>,
    /// The token minted for the upstream on this allow (`upstream_token`), by id: never the
    /// token itself.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub upstream_token: Option<UpstreamTokenFacts>,
    /// JSON pointers (RFC 6901) of the values this record cut to
    /// `decision_log.max_header_value_bytes` (`/headers/user-agent`,
    /// `/cedar/context/request/headers/user-agent`, `/request/path`); absent when none. A
    /// pointer under `/cedar/` means the recorded Cedar request is not the one evaluated, so
    /// replay can't reproduce it exactly ([`DecisionRecord::cedar_cut`]).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub truncated: Vec<String>,
    /// The Cedar request and request-derived entities, for replay.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cedar: Option<CedarRequest>,
    /// Set on the records of cedargate's own `Authorizer` API: which method, which caller,
    /// which batch item. Absent on Check records. Added in format version 1 as an optional
    /// field.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api: Option<ApiFacts>,
}

impl DecisionRecord {
    /// Whether a value of the recorded Cedar request was cut (a header longer than
    /// `decision_log.max_header_value_bytes`): Cedar evaluated the whole value, the record keeps
    /// a prefix, so evaluating the record again may not decide what `serve` decided.
    pub fn cedar_cut(&self) -> bool {
        self.truncated.iter().any(|p| p.starts_with("/cedar/"))
    }
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as the v1 contract writes it: `api` only on the Authorizer API's records, its
    /// optional parts omitted, and read back unchanged. Check records (no `api`) keep their
    /// exact form, so the golden files of `tests/fixtures/decision-logs/` stay valid.
    #[test]
    fn api_facts_are_optional_and_round_trip() {
        let line = r#"{"v":1,"time":"2026-12-02T16:05:11.201334Z","decision_id":"d","decision":"deny","status":403,"reason":"no_permit","mode":"enforce","principal":"User::\"bob\"","policies":[],"errors":[],"latency_us":5,"policy_version":"p","api":{"method":"batch_is_authorized","caller":"Service::\"app\"","batch_id":"b","index":3,"size":100}}"#;
        let record: DecisionRecord = serde_json::from_str(line).unwrap();
        let api = record.api.as_ref().unwrap();
        assert_eq!(
            (api.method.as_str(), api.index, api.size, api.caller_check),
            ("batch_is_authorized", Some(3), Some(100), false)
        );
        assert_eq!(serde_json::to_string(&record).unwrap(), line);

        let check = line.split(r#","api":"#).next().unwrap().to_string() + "}";
        let record: DecisionRecord = serde_json::from_str(&check).unwrap();
        assert_eq!(record.api, None);
        assert_eq!(serde_json::to_string(&record).unwrap(), check);

        let refused =
            r#"{"method":"is_authorized","caller":"User::\"alice\"","caller_check":true}"#;
        let api: ApiFacts = serde_json::from_str(refused).unwrap();
        assert!(api.caller_check && api.batch_id.is_none());
        assert_eq!(serde_json::to_string(&api).unwrap(), refused);
    }
}
