//! `authorizer_api`: cedargate's own gRPC `Authorizer` service (`cedargate.v1`) for application
//! code, in one self-contained block (raw mirror, defaults, typed value, validation). Off unless
//! the section is present; `authorizer_api: {}` serves it on the Check port.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::problems::Collected;

// ---- defaults ----------------------------------------------------------------------------------

/// The action a caller must be permitted to ask with: namespaced with `cedargate:` so it can't
/// collide with an application's own action ids, and readable in a policy.
pub const DEFAULT_CALLER_ACTION: &str = "cedargate:IsAuthorized";
/// Items in one `BatchIsAuthorized`: a list page of 1,000 rows is generous, and the batch is
/// decided on one worker, so a bound keeps one call from holding it for long (~1,000 × 20 µs).
const DEFAULT_MAX_BATCH_ITEMS: usize = 1_000;
/// Entities in one request's `entities_json`: enough for a page of documents with their owners;
/// each is parsed and schema-checked per call.
const DEFAULT_MAX_ENTITIES: usize = 1_000;
/// Upper bound for both, so a typo can't allow a call to hold a worker for seconds.
const MAX_LIMIT: usize = 100_000;

// ---- raw ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorizerApi {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) caller_action: Option<Spanned<String>>,
    pub(super) max_batch_items: Option<Spanned<usize>>,
    pub(super) max_entities: Option<Spanned<usize>>,
}

// ---- typed -------------------------------------------------------------------------------------

/// `authorizer_api`: the `cedargate.v1.Authorizer` gRPC service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizerApiConfig {
    /// A listener of its own; `None`: served on the Check port (`listen.grpc`).
    pub listen: Option<SocketAddr>,
    /// Id of the `Action` a caller's principal must be permitted on each resource it asks about.
    pub caller_action: Arc<str>,
    /// Most items in one `BatchIsAuthorized`.
    pub max_batch_items: usize,
    /// Most entities in one request's `entities_json`.
    pub max_entities: usize,
}

// ---- validation --------------------------------------------------------------------------------

/// `authorizer_api`: a listener distinct from the Check and admin ports, a non-empty caller
/// action, limits in `1..=100000`.
pub(super) fn authorizer_api(
    raw: &Spanned<RawAuthorizerApi>,
    taken: &[(SocketAddr, &str)],
    problems: &mut Collected,
) -> AuthorizerApiConfig {
    let r = &raw.value;
    let listen = r.listen.as_ref().and_then(|l| match l.value.parse::<SocketAddr>() {
        Ok(addr) => {
            if let Some((_, name)) = taken
                .iter()
                .find(|(other, _)| *other == addr && addr.port() != 0)
            {
                problems.at(
                    l,
                    format!("authorizer_api.listen `{addr}` is already {name}; leave it out to serve on the Check port"),
                );
            }
            Some(addr)
        }
        Err(_) => {
            problems.at(
                l,
                format!("authorizer_api.listen `{}` is not an ip:port address", l.value),
            );
            None
        }
    });
    let caller_action = match &r.caller_action {
        Some(a) if a.value.trim().is_empty() => {
            problems.at(a, "authorizer_api.caller_action must not be empty");
            DEFAULT_CALLER_ACTION.into()
        }
        Some(a) => a.value.as_str().into(),
        None => DEFAULT_CALLER_ACTION.into(),
    };
    let limit = |v: &Option<Spanned<usize>>, default: usize, name: &str, p: &mut Collected| match v
    {
        Some(v) if v.value == 0 || v.value > MAX_LIMIT => {
            p.at(
                v,
                format!("authorizer_api.{name} must be between 1 and {MAX_LIMIT}"),
            );
            default
        }
        Some(v) => v.value,
        None => default,
    };
    AuthorizerApiConfig {
        listen,
        caller_action,
        max_batch_items: limit(
            &r.max_batch_items,
            DEFAULT_MAX_BATCH_ITEMS,
            "max_batch_items",
            problems,
        ),
        max_entities: limit(
            &r.max_entities,
            DEFAULT_MAX_ENTITIES,
            "max_entities",
            problems,
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(section: &str) -> Result<Config, String> {
        let yaml = format!(
            "listen: {{ grpc: 127.0.0.1:9191, admin: 127.0.0.1:9192 }}\npolicy_dir: .\n{section}"
        );
        Config::parse(&yaml, Path::new("cedargate.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn off_unless_present_and_defaults_when_empty() {
        assert_eq!(parse("").unwrap().authorizer_api, None);
        let api = parse("authorizer_api: {}\n")
            .unwrap()
            .authorizer_api
            .unwrap();
        assert_eq!(api.listen, None);
        assert_eq!(&*api.caller_action, super::DEFAULT_CALLER_ACTION);
        assert_eq!(api.max_batch_items, 1_000);
        assert_eq!(api.max_entities, 1_000);
    }

    #[test]
    fn bad_values_are_named_with_their_position() {
        for (section, expected) in [
            (
                "authorizer_api: { listen: nowhere }\n",
                "cedargate.yaml:3:27: authorizer_api.listen `nowhere` is not an ip:port address",
            ),
            (
                "authorizer_api: { listen: 127.0.0.1:9191 }\n",
                "authorizer_api.listen `127.0.0.1:9191` is already the Check port",
            ),
            (
                "authorizer_api: { caller_action: \" \" }\n",
                "authorizer_api.caller_action must not be empty",
            ),
            (
                "authorizer_api: { max_batch_items: 0 }\n",
                "authorizer_api.max_batch_items must be between 1 and 100000",
            ),
            ("authorizer_api: { surprise: 1 }\n", "surprise"),
        ] {
            let error = parse(section).unwrap_err();
            assert!(error.contains(expected), "{section}: {error}");
        }
    }
}
