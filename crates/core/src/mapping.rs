//! HTTP request + identity → Cedar request `(principal, action, resource, context)` and the
//! request-derived entities, in Cedar's JSON forms.
//!
//! The result is a plain serde value ([`CedarRequest`]) so that the decision log can record it and
//! `replay` can re-evaluate it exactly. Claims and query parameters come from callers, so any
//! object key that Cedar's JSON format would read as an escape (`__entity`, `__extn`, `__expr`) is
//! dropped: input data can never become an entity reference or an extension call. Pure: no IO.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api_keys::ApiKey;
use crate::config::{Config, ContextFact, ContextValue, PrincipalMapping, Unmatched, action_type};
use crate::identity::Identity;
use crate::request::HttpRequest;
use crate::token::{TokenError, TokenFacts, VerifiedToken};

use crate::cedar_value::cedar_value;

/// A Cedar entity reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    /// Entity type, e.g. `User`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id.
    pub id: String,
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.entity_type, Value::from(self.id.as_str()))
    }
}

/// A Cedar request plus the entities the request itself contributes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CedarRequest {
    /// Who.
    pub principal: EntityRef,
    /// Does what.
    pub action: EntityRef,
    /// To what.
    pub resource: EntityRef,
    /// Request facts (Cedar JSON record).
    pub context: Value,
    /// What the verified credential says about the principal (claim-mapped attributes and
    /// parents), in Cedar's entity JSON format; absent when it says nothing. Merged with the
    /// entity sources' data for the same uid by `policy`: parents are the union,
    /// attributes from the credential win.
    pub entities: Vec<Value>,
    /// Entities the entity provider answered for this request (its principal's and resource's
    /// uids), as received; recorded so that replay evaluates with the data the decision read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fetched: Vec<Value>,
}

impl CedarRequest {
    /// The uids an entity provider is asked about: the principal's and the resource's, when
    /// their type is one of `types`, each once.
    pub fn provider_uids(&self, types: &std::collections::BTreeSet<String>) -> Vec<EntityRef> {
        let mut uids = Vec::with_capacity(2);
        for r in [&self.principal, &self.resource] {
            if types.contains(&r.entity_type) && !uids.contains(r) {
                uids.push(r.clone());
            }
        }
        uids
    }
}

/// Why a request could not be mapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// No route matched and `unmatched_route: deny`.
    #[error("no route matches the request")]
    NoRoute,
    /// The principal id claim is missing or not a string.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Maps a request from a resolved caller to a Cedar request.
pub fn map(
    config: &Config,
    identity: &Identity,
    request: &HttpRequest,
    now: SystemTime,
) -> Result<(CedarRequest, Option<String>), MappingError> {
    let service = request
        .context_extensions
        .get("service")
        .map(String::as_str);
    let matched = config
        .routes
        .find(service, &request.host, &request.method, &request.path);
    if matched.is_none() && config.unmatched == Unmatched::Deny {
        return Err(MappingError::NoRoute);
    }
    let service_id = service.unwrap_or(&request.host);

    let (action_id, resource, params, route_name) = match &matched {
        Some(m) => {
            let action = m.route.action.as_deref().map_or_else(
                || format!("{} {}", request.method, m.route.template.as_str()),
                str::to_string,
            );
            let resource = match &m.route.resource {
                Some((ty, id_template)) => EntityRef {
                    entity_type: ty.to_string(),
                    id: fill(id_template, &m.params, service_id, &request.host),
                },
                None => service_ref(config, service_id),
            };
            (
                action,
                resource,
                m.params.clone(),
                Some(m.route.name.to_string()),
            )
        }
        None => (
            format!("{} {}", request.method, request.path),
            service_ref(config, service_id),
            Vec::new(),
            None,
        ),
    };

    let mut entities = Vec::new();
    let principal = principal(config, identity, &mut entities)?;

    let context = context(config, identity, request, &principal, &params, now);
    Ok((
        CedarRequest {
            principal,
            action: EntityRef {
                entity_type: action_type().to_string(),
                id: action_id,
            },
            resource,
            context,
            entities,
            fetched: Vec::new(),
        },
        route_name,
    ))
}

fn service_ref(config: &Config, id: &str) -> EntityRef {
    EntityRef {
        entity_type: config.resource_type.to_string(),
        id: id.to_string(),
    }
}

/// Fills `{param}`, `{service}` and `{host}` in a resource id template, in one pass: a captured
/// value that itself looks like `{service}` is copied literally, never expanded again.
fn fill(template: &str, params: &[(String, String)], service: &str, host: &str) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        let Some(close) = after.find('}') else {
            out.push_str(after);
            return out;
        };
        let name = after.get(1..close).unwrap_or_default();
        let value = match name {
            "service" => Some(service),
            "host" => Some(host),
            _ => params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        };
        match value {
            Some(v) => out.push_str(v),
            None => out.push_str(after.get(..=close).unwrap_or_default()),
        }
        rest = after.get(close + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// The principal a resolved caller maps to, exactly as [`map`] maps it (pushing what its
/// credential says about it onto `entities`). Public for the server's `Authorizer` API, which
/// authorizes its callers with the same principals as Check.
pub fn principal(
    config: &Config,
    identity: &Identity,
    entities: &mut Vec<Value>,
) -> Result<EntityRef, MappingError> {
    match identity {
        Identity::Anonymous => Ok(EntityRef {
            entity_type: config.anonymous_type.to_string(),
            id: config.anonymous_id.to_string(),
        }),
        Identity::Peer(peer) => {
            let entity_type = config
                .mtls
                .as_ref()
                .map_or_else(|| "Service".to_string(), |m| m.entity_type.to_string());
            Ok(EntityRef {
                entity_type,
                id: peer.clone(),
            })
        }
        Identity::ApiKey(key) => {
            if let Some(entity) = api_key_entity(key) {
                entities.push(entity.clone());
            }
            Ok(EntityRef {
                entity_type: key.principal.entity_type.clone(),
                id: key.principal.id.clone(),
            })
        }
        Identity::Token { token, .. } => {
            let facts = token_facts(token).ok_or(TokenError::MissingPrincipalClaim)?;
            if let Some(entity) = &facts.entity {
                entities.push(entity.clone());
            }
            Ok(EntityRef {
                entity_type: facts.principal_type.to_string(),
                id: facts.principal_id.clone(),
            })
        }
    }
}

/// The facts `token` gives on its own, from its memo (built by the first Check that maps it).
fn token_facts(token: &VerifiedToken) -> Option<&TokenFacts> {
    token
        .mapped
        .get_or_init(|| {
            let mapping = principal_mapping(token);
            let id = token.claim_str(&mapping.id_claim)?;
            let uid = EntityRef {
                entity_type: mapping.entity_type.to_string(),
                id: id.to_string(),
            };
            let mut parents: Vec<EntityRef> = Vec::new();
            for p in &mapping.parents {
                for name in string_list(token.claims.get(&*p.claim)) {
                    let parent = EntityRef {
                        entity_type: p.entity_type.to_string(),
                        id: name,
                    };
                    if !parents.contains(&parent) {
                        parents.push(parent);
                    }
                }
            }
            let mut attrs = Map::new();
            for (attr, claim) in &mapping.attributes {
                if let Some(value) = token.claims.get(claim).and_then(cedar_value) {
                    attrs.insert(attr.clone(), value);
                }
            }
            // A credential that says nothing beyond the uid adds no entity: the entity sources'
            // data for the uid (or none) is the whole truth, as it would be for Cedar.
            let entity = (!attrs.is_empty() || !parents.is_empty())
                .then(|| entity_json(&uid, attrs, &parents));
            Some(TokenFacts {
                principal_type: mapping.entity_type.clone(),
                principal_id: uid.id,
                entity,
                context: token_context(token),
            })
        })
        .as_ref()
}

/// What an API key says about its principal (the key file's attributes and parents), as the
/// credential's entity, built once per key: merged with the entity data for the same uid exactly
/// as a token's claim-mapped entity is (parents the union, the key's attributes win).
fn api_key_entity(key: &ApiKey) -> Option<&Value> {
    key.mapped
        .get_or_init(|| {
            let uid = EntityRef {
                entity_type: key.principal.entity_type.clone(),
                id: key.principal.id.clone(),
            };
            let mut parents: Vec<EntityRef> = Vec::new();
            for p in &key.parents {
                let parent = EntityRef {
                    entity_type: p.entity_type.clone(),
                    id: p.id.clone(),
                };
                if !parents.contains(&parent) {
                    parents.push(parent);
                }
            }
            (!key.attributes.is_empty() || !parents.is_empty())
                .then(|| entity_json(&uid, key.attributes.clone(), &parents))
        })
        .as_ref()
}

/// The mapping for a token: the service mapping for client-only tokens (RFC 9068 §2.2: no `sub`,
/// or `sub` equal to `client_id`), the user mapping otherwise.
pub fn principal_mapping(token: &VerifiedToken) -> &PrincipalMapping {
    match &token.issuer.service {
        Some(service) => {
            let sub = token.claim_str("sub");
            let client = token
                .claim_str("client_id")
                .or_else(|| token.claim_str("azp"));
            if sub.is_none() || (sub.is_some() && sub == client) {
                service
            } else {
                &token.issuer.user
            }
        }
        None => &token.issuer.user,
    }
}

/// `{"uid": …, "attrs": …, "parents": […]}`. Built by hand rather than with `json!`, which
/// re-serializes every interpolated value (the attributes map and the parents, deep-copied once
/// more) on a path that runs on every Check. Key order is the record's (serde_json keeps
/// insertion order in this build).
fn entity_json(uid: &EntityRef, attrs: Map<String, Value>, parents: &[EntityRef]) -> Value {
    object([
        ("uid", entity_ref_json(uid)),
        ("attrs", Value::Object(attrs)),
        (
            "parents",
            Value::Array(parents.iter().map(entity_ref_json).collect()),
        ),
    ])
}

fn entity_ref_json(r: &EntityRef) -> Value {
    object([
        ("type", Value::from(r.entity_type.as_str())),
        ("id", Value::from(r.id.as_str())),
    ])
}

/// A JSON object with these keys, in this order.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::with_capacity(N);
    for (key, value) in fields {
        map.insert(key.to_string(), value);
    }
    Value::Object(map)
}

/// A claim as a list of strings: a JSON array of strings, or a space-separated string (OAuth's
/// `scope` format).
pub fn string_list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

fn context(
    config: &Config,
    identity: &Identity,
    request: &HttpRequest,
    principal: &EntityRef,
    params: &[(String, String)],
    now: SystemTime,
) -> Value {
    let query = request.allowed_query(&config.context.query);
    let headers: Map<String, Value> = config
        .context
        .headers
        .iter()
        .filter_map(|h| request.header(h).map(|v| (h.clone(), Value::from(v))))
        .collect();
    let param_values: Map<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();

    let mut http = Map::new();
    http.insert("method".into(), request.method.as_str().into());
    http.insert("path".into(), request.path.as_str().into());
    http.insert("host".into(), request.host.as_str().into());
    http.insert("scheme".into(), request.scheme.as_str().into());
    http.insert("protocol".into(), request.protocol.as_str().into());
    http.insert(
        "query".into(),
        Value::Object(
            query
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        ),
    );
    http.insert("headers".into(), Value::Object(headers));
    http.insert("params".into(), Value::Object(param_values));

    let mut source = Map::new();
    if let Some(ip) = request.source_ip {
        source.insert(
            "ip".into(),
            object([(
                "__extn",
                object([
                    ("fn", Value::from("ip")),
                    ("arg", Value::String(ip.to_string())),
                ]),
            )]),
        );
    }
    if let Some(p) = &request.source_principal {
        source.insert("principal".into(), p.as_str().into());
    }

    let mut ctx = Map::new();
    ctx.insert("request".into(), Value::Object(http));
    ctx.insert("source".into(), Value::Object(source));
    ctx.insert(
        "authenticated".into(),
        Value::Bool(!matches!(identity, Identity::Anonymous)),
    );
    if let Identity::Token { token, .. } = identity
        && let Some(facts) = token_facts(token)
    {
        ctx.insert("token".into(), facts.context.clone());
    }
    if let Identity::ApiKey(key) = identity {
        // The key's public id, never its secret: policies can tell keys apart during a rotation,
        // and the record names the key that was used.
        let mut facts = Map::new();
        facts.insert("id".into(), Value::from(&*key.id));
        if let Some(expires) = key.expires.and_then(|e| i64::try_from(e).ok()) {
            facts.insert("expires".into(), Value::from(expires));
        }
        ctx.insert("api_key".into(), Value::Object(facts));
    }
    if let Some((service, method)) = request.grpc_method() {
        ctx.insert(
            "grpc".into(),
            object([
                ("service", Value::from(service)),
                ("method", Value::from(method)),
            ]),
        );
    }
    ctx.insert("time".into(), time_context(now));
    for (name, source) in &config.context.attributes {
        let value = match source {
            ContextValue::Fact(fact) => Some(match fact {
                ContextFact::Authenticated => Value::Bool(!matches!(identity, Identity::Anonymous)),
                ContextFact::Method => request.method.as_str().into(),
                ContextFact::Path => request.path.as_str().into(),
                ContextFact::Host => request.host.as_str().into(),
                ContextFact::PrincipalType => principal.entity_type.as_str().into(),
            }),
            ContextValue::Claim(claim) => match identity {
                Identity::Token { token, .. } => token.claims.get(claim).and_then(cedar_value),
                _ => None,
            },
            ContextValue::Header(header) => request.header(header).map(Value::from),
            ContextValue::Param(param) => params
                .iter()
                .map(|(n, v)| (n.as_str(), v))
                .find(|(n, _)| *n == param.as_str())
                .map(|(_, v)| Value::from(v.as_str())),
            ContextValue::Value(v) => Some(v.clone()),
        };
        if let Some(value) = value {
            ctx.insert(name.clone(), value);
        }
    }
    Value::Object(ctx)
}

fn token_context(token: &VerifiedToken) -> Value {
    let mut t = Map::new();
    t.insert("issuer".into(), (&*token.issuer.name).into());
    for claim in ["iss", "sub", "jti"] {
        if let Some(v) = token.claim_str(claim) {
            t.insert(claim.into(), v.into());
        }
    }
    if let Some(client) = token
        .claim_str("client_id")
        .or_else(|| token.claim_str("azp"))
    {
        t.insert("client_id".into(), client.into());
    }
    let aud = match token.claims.get("aud") {
        Some(Value::String(s)) => vec![Value::from(s.as_str())],
        other => string_list(other).into_iter().map(Value::from).collect(),
    };
    t.insert("aud".into(), Value::Array(aud));
    let scopes = string_list(
        token
            .claims
            .get("scope")
            .or_else(|| token.claims.get("scp")),
    );
    t.insert(
        "scopes".into(),
        Value::Array(scopes.into_iter().map(Value::from).collect()),
    );
    for claim in ["exp", "iat"] {
        if let Some(v) = token.claims.get(claim).and_then(Value::as_i64) {
            t.insert(claim.into(), v.into());
        }
    }
    Value::Object(t)
}

fn time_context(now: SystemTime) -> Value {
    let epoch = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = epoch / 86_400;
    object([
        ("epoch", Value::from(epoch)),
        ("hour", Value::from((epoch % 86_400) / 3_600)),
        // 1970-01-01 was a Thursday; 0 = Sunday.
        ("weekday", Value::from((days + 4) % 7)),
    ])
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn hand_built_json_serializes_like_json_macro() {
        let uid = EntityRef {
            entity_type: "User".into(),
            id: "alice \"a\"".into(),
        };
        let group = EntityRef {
            entity_type: "Group".into(),
            id: "admins".into(),
        };
        let mut attrs = Map::new();
        attrs.insert("tenant".into(), json!("acme"));
        attrs.insert("level".into(), json!(3));
        let expected = json!({
            "uid": {"type": "User", "id": "alice \"a\""},
            "attrs": {"tenant": "acme", "level": 3},
            "parents": [{"type": "Group", "id": "admins"}],
        });
        let built = entity_json(&uid, attrs, &[group]);
        assert_eq!(built.to_string(), expected.to_string());
        let ip = object([(
            "__extn",
            object([("fn", Value::from("ip")), ("arg", Value::from("10.0.0.1"))]),
        )]);
        assert_eq!(
            ip.to_string(),
            json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}}).to_string()
        );
    }

    #[test]
    fn escape_keys_in_claims_are_dropped() {
        let claim = json!({"a": 1, "__entity": {"type": "User", "id": "root"}, "n": {"__extn": {}}, "f": 1.5, "z": null});
        assert_eq!(cedar_value(&claim), Some(json!({"a": 1, "n": {}})));
        assert_eq!(cedar_value(&json!([1, "x", 2.5])), Some(json!([1, "x"])));
    }

    #[test]
    fn weekday_and_hour_are_utc() {
        // 2026-11-30T13:05:00Z is a Monday.
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_796_043_900);
        assert_eq!(
            time_context(t),
            json!({"epoch": 1_796_043_900u64, "hour": 13, "weekday": 1})
        );
        // More days, so that a weekday counted from anything but whole days since the epoch
        // (1970-01-01, a Thursday) shows: a Wednesday and a Sunday's last second.
        for (epoch, hour, weekday) in [(0u64, 0, 4), (1_796_232_600, 17, 3), (1_799_020_799, 23, 0)]
        {
            let t = UNIX_EPOCH + std::time::Duration::from_secs(epoch);
            assert_eq!(
                time_context(t),
                json!({"epoch": epoch, "hour": hour, "weekday": weekday}),
                "{epoch}"
            );
        }
    }

    #[test]
    fn resource_templates_fill_once() {
        let params = vec![("tenant".to_string(), "{service}".to_string())];
        assert_eq!(
            fill("{tenant}/{service}@{host}", &params, "orders", "h"),
            "{service}/orders@h"
        );
        assert_eq!(fill("x{unknown}y{", &params, "s", "h"), "x{unknown}y{");
    }

    /// The repository's `cedargate.yaml`, with `edit` applied to its text.
    fn config(edit: impl Fn(String) -> String) -> Config {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cedargate.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        Config::parse(&edit(text), &path).unwrap()
    }

    fn request(service: Option<&str>, method: &str, path: &str) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            host: "api.example.com".into(),
            context_extensions: service
                .map(|s| [("service".to_string(), s.to_string())].into())
                .unwrap_or_default(),
            ..HttpRequest::default()
        }
    }

    fn token(config: &Config, claims: Value) -> Identity {
        let Value::Object(claims) = claims else {
            panic!("claims must be an object")
        };
        Identity::Token {
            token: Arc::new(VerifiedToken::from_claims(
                config.issuers[0].clone(),
                claims,
            )),
            cached: false,
        }
    }

    fn uid(entity_type: &str, id: &str) -> EntityRef {
        EntityRef {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }

    /// Action, resource and route name per request, and `unmatched_route` both ways: a request
    /// no route matches is refused under `deny`, and is `<METHOD> <path>` on the service (or,
    /// without a service, the host) under `default`.
    #[test]
    fn requests_map_to_action_resource_and_route() {
        let deny = config(|t| t);
        let default = config(|t| t.replace("unmatched_route: deny", "unmatched_route: default"));
        let now = SystemTime::now();
        let cases = [
            (
                &deny,
                Some("orders"),
                "GET",
                "/tenants/acme/orders/7",
                Some((
                    "GET /tenants/{tenant}/orders/{id}",
                    uid("Tenant", "acme"),
                    true,
                )),
            ),
            (
                &deny,
                Some("orders"),
                "DELETE",
                "/orders/7",
                Some(("DELETE /orders/{id}", uid("Service", "orders"), true)),
            ),
            (&deny, Some("orders"), "PUT", "/orders/7", None),
            (&deny, Some("billing"), "GET", "/orders/7", None),
            (
                &default,
                Some("orders"),
                "PUT",
                "/orders/7",
                Some(("PUT /orders/7", uid("Service", "orders"), false)),
            ),
            (
                &default,
                None,
                "GET",
                "/x",
                Some(("GET /x", uid("Service", "api.example.com"), false)),
            ),
        ];
        for (config, service, method, path, expected) in cases {
            let got = map(
                config,
                &Identity::Anonymous,
                &request(service, method, path),
                now,
            );
            match expected {
                None => assert_eq!(got, Err(MappingError::NoRoute), "{method} {path}"),
                Some((action, resource, routed)) => {
                    let (cedar, route) = got.unwrap();
                    assert_eq!(cedar.action, uid("Action", action), "{method} {path}");
                    assert_eq!(cedar.resource, resource, "{method} {path}");
                    assert_eq!(cedar.principal, uid("Anonymous", &config.anonymous_id));
                    assert_eq!(route.is_some(), routed, "{method} {path}: {route:?}");
                    assert!(route.is_none_or(|r| !r.is_empty()));
                    assert_eq!(cedar.context["request"]["path"], path);
                }
            }
        }
    }

    /// Which principal each caller maps to, and what its credential adds as an entity: a user
    /// token's groups (each once) and attributes; nothing for a token that names only its uid;
    /// the service mapping only for client tokens (no `sub`, or `sub` equal to `client_id`).
    #[test]
    fn callers_map_to_their_principals() {
        let config = config(|t| t);
        let mut entities = Vec::new();
        assert_eq!(
            principal(&config, &Identity::Anonymous, &mut entities),
            Ok(uid("Anonymous", &config.anonymous_id))
        );
        assert_eq!(
            principal(
                &config,
                &Identity::Peer("spiffe://cedargate.test/a".into()),
                &mut entities
            ),
            Ok(uid("Workload", "spiffe://cedargate.test/a"))
        );
        assert!(entities.is_empty());

        let alice = token(
            &config,
            json!({"sub": "alice", "groups": ["admins", "ops", "admins"], "tenant": "acme", "client_id": "web"}),
        );
        assert_eq!(
            principal(&config, &alice, &mut entities),
            Ok(uid("User", "alice"))
        );
        assert_eq!(
            entities,
            vec![json!({
                "uid": {"type": "User", "id": "alice"},
                "attrs": {"tenant": "acme"},
                "parents": [{"type": "Group", "id": "admins"}, {"type": "Group", "id": "ops"}],
            })]
        );
        for (claims, expected, adds_entity) in [
            (json!({"sub": "bob"}), Ok(uid("User", "bob")), false),
            (
                json!({"sub": "bob", "groups": "ops"}),
                Ok(uid("User", "bob")),
                true,
            ),
            (
                json!({"sub": "bob", "tenant": "acme"}),
                Ok(uid("User", "bob")),
                true,
            ),
            (
                json!({"sub": "bob", "client_id": "web"}),
                Ok(uid("User", "bob")),
                false,
            ),
            (
                json!({"sub": "web", "client_id": "web"}),
                Ok(uid("Service", "web")),
                false,
            ),
            (
                json!({"client_id": "batch"}),
                Ok(uid("Service", "batch")),
                false,
            ),
            (
                json!({"sub": "web", "azp": "web"}),
                Err(MappingError::Token(TokenError::MissingPrincipalClaim)),
                false,
            ),
            (
                json!({"client_id": "web", "sub": 7}),
                Ok(uid("Service", "web")),
                false,
            ),
            (
                json!({"groups": ["admins"]}),
                Err(MappingError::Token(TokenError::MissingPrincipalClaim)),
                false,
            ),
        ] {
            let mut entities = Vec::new();
            let got = principal(&config, &token(&config, claims.clone()), &mut entities);
            assert_eq!(got, expected, "{claims}");
            assert_eq!(
                entities.len(),
                usize::from(adds_entity),
                "{claims}: {entities:?}"
            );
        }
    }

    /// An API key maps to its principal; its file's attributes and parents (each once) become
    /// the credential's entity, and a key with neither adds none. `context.api_key` names the
    /// key by its public id.
    #[test]
    fn api_keys_map_to_their_principal_and_entity() {
        use crate::api_keys::{KeyFile, KeyIndex, KeyUid, generate, parse_uid};
        let config = config(|t| t);
        let key = |attributes: Value, parents: &[&str]| {
            let (secret, mut entry) =
                generate(parse_uid(r#"Service::"billing""#).unwrap()).unwrap();
            entry.attributes = serde_json::from_value(attributes).unwrap();
            entry.parents = parents
                .iter()
                .map(|p| parse_uid(p).unwrap())
                .collect::<Vec<KeyUid>>();
            let file = KeyFile {
                keys: vec![entry],
                ..KeyFile::new()
            };
            Identity::ApiKey(KeyIndex::new(&file).verify(&secret, 0).unwrap())
        };
        let team = r#"Team::"finance""#;
        for (identity, expected) in [
            (
                key(json!({"tier": "gold"}), &[team, team]),
                Some(json!({
                    "uid": {"type": "Service", "id": "billing"},
                    "attrs": {"tier": "gold"},
                    "parents": [{"type": "Team", "id": "finance"}],
                })),
            ),
            (
                key(json!({"tier": "gold"}), &[]),
                Some(json!({
                    "uid": {"type": "Service", "id": "billing"},
                    "attrs": {"tier": "gold"},
                    "parents": [],
                })),
            ),
            (
                key(json!({}), &[team]),
                Some(json!({
                    "uid": {"type": "Service", "id": "billing"},
                    "attrs": {},
                    "parents": [{"type": "Team", "id": "finance"}],
                })),
            ),
            (key(json!({}), &[]), None),
        ] {
            let mut entities = Vec::new();
            assert_eq!(
                principal(&config, &identity, &mut entities),
                Ok(uid("Service", "billing"))
            );
            assert_eq!(entities.first(), expected.as_ref());
            assert!(entities.len() <= 1);
            let (cedar, _) = map(
                &config,
                &identity,
                &request(Some("orders"), "GET", "/orders"),
                SystemTime::now(),
            )
            .unwrap();
            let Identity::ApiKey(k) = &identity else {
                unreachable!()
            };
            assert_eq!(cedar.context["api_key"], json!({"id": &*k.id}));
            assert_eq!(cedar.context["authenticated"], true);
        }
    }

    /// The facts every context carries, and the `context.attributes` sources.
    #[test]
    fn the_context_holds_the_request_the_caller_and_named_attributes() {
        let config = config(|t| {
            t.replace(
                "  query: [limit]",
                "  query: [limit]\n  attributes:\n    is_authenticated: { fact: authenticated }\n    \
                 tenant: { claim: tenant }\n    order: { param: id }\n    kind: { fact: principal_type }",
            )
        });
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_796_043_900);
        let request = request(Some("orders"), "GET", "/tenants/acme/orders/7");
        let alice = token(
            &config,
            json!({"sub": "alice", "tenant": "acme", "aud": "api", "scope": "read write", "azp": "web", "exp": 99}),
        );
        let (cedar, _) = map(&config, &alice, &request, now).unwrap();
        let ctx = &cedar.context;
        assert_eq!(ctx["authenticated"], true);
        assert_eq!(ctx["is_authenticated"], true);
        assert_eq!(ctx["tenant"], "acme");
        assert_eq!(ctx["order"], "7");
        assert_eq!(ctx["kind"], "User");
        assert_eq!(ctx["time"]["epoch"], 1_796_043_900u64);
        assert_eq!(
            ctx["token"],
            json!({"issuer": "demo-idp", "sub": "alice", "client_id": "web", "aud": ["api"], "scopes": ["read", "write"], "exp": 99})
        );
        assert_eq!(
            ctx["request"]["params"],
            json!({"tenant": "acme", "id": "7"})
        );

        let (cedar, _) = map(&config, &Identity::Anonymous, &request, now).unwrap();
        let ctx = &cedar.context;
        assert_eq!(ctx["authenticated"], false);
        assert_eq!(ctx["is_authenticated"], false);
        assert_eq!(
            ctx.get("tenant"),
            None,
            "a claim source without a token is absent"
        );
        assert_eq!(ctx.get("token"), None);
        assert_eq!(ctx["kind"], "Anonymous");
    }

    /// The entity provider is asked about the principal and the resource, when their types are
    /// among its types, each uid once.
    #[test]
    fn provider_uids_are_the_principal_and_resource_of_its_types_once() {
        let config = config(|t| t);
        let (mut cedar, _) = map(
            &config,
            &Identity::Anonymous,
            &request(Some("orders"), "GET", "/tenants/acme/orders/7"),
            SystemTime::now(),
        )
        .unwrap();
        let types = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            cedar.provider_uids(&types(&["Tenant", "Anonymous"])),
            vec![
                uid("Anonymous", &config.anonymous_id),
                uid("Tenant", "acme")
            ]
        );
        assert_eq!(
            cedar.provider_uids(&types(&["Tenant"])),
            vec![uid("Tenant", "acme")]
        );
        assert_eq!(cedar.provider_uids(&types(&["User"])), vec![]);
        cedar.principal = uid("Tenant", "acme");
        assert_eq!(
            cedar.provider_uids(&types(&["Tenant"])),
            vec![uid("Tenant", "acme")]
        );
    }

    #[test]
    fn string_lists_are_arrays_or_space_separated() {
        assert_eq!(string_list(Some(&json!(["a", 1, "b"]))), ["a", "b"]);
        assert_eq!(string_list(Some(&json!(" a  b "))), ["a", "b"]);
        assert_eq!(string_list(Some(&json!(3))), Vec::<String>::new());
        assert_eq!(string_list(None), Vec::<String>::new());
    }

    #[test]
    fn entity_refs_print_as_cedar() {
        let r = EntityRef {
            entity_type: "Action".into(),
            id: "GET /orders/{id}".into(),
        };
        assert_eq!(r.to_string(), r#"Action::"GET /orders/{id}""#);
    }
}
