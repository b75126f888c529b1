//! Configuration: `cedargate.yaml` parsed in two phases, one concern per file:
//!
//! - [`yaml`] — reading the YAML, with errors that name the field (and refusing an empty file);
//! - [`raw`] — phase one: the file as written (`Raw*`, unknown fields refused);
//! - [`validate`] — phase two: every field checked into a typed [`Config`], every problem
//!   collected with its position ([`problems`]); it calls one module per section: `issuers`,
//!   `routes` (and `context.attributes`), `sources` (`entity_provider`, `policy_bundle`),
//!   `decision_log`, `telemetry`, `upstream_token`, with checks they share in `fields`;
//! - [`model`] — the typed values (`Config` and its parts) the rest of cedargate reads;
//! - [`defaults`] — every default, a named constant with its reason;
//! - [`urls`] — which URLs cedargate may fetch from;
//! - `sso` — the `sso` section (browser single sign-on), self-contained.
//!
//! Adding a field touches one place per concern: its raw mirror, its validation, its typed
//! value (and its default). This module does no network IO; policies are loaded by `policy`,
//! keys by the server.

use std::path::Path;
use std::sync::Arc;

mod authorizer_api;
mod decision_log;
mod defaults;
mod fields;
mod identity_sources;
mod issuers;
mod model;
mod problems;
mod raw;
mod routes;
mod sources;
mod sso;
mod telemetry;
mod upstream_token;
mod urls;
mod validate;
mod yaml;

pub use authorizer_api::{ApiTlsConfig, AuthorizerApiConfig, DEFAULT_CALLER_ACTION};
pub use defaults::DEFAULT_DECISION_CACHE_CAPACITY;
pub use identity_sources::{ApiKeysConfig, IntrospectionConfig};
pub use model::*;
pub use problems::{ConfigError, ConfigProblem, io_words};
pub use sso::{LOGIN_COOKIE, SESSION_COOKIE, SsoConfig};
pub use urls::{is_secure_url, url_problem};

use problems::Collected;

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw = yaml::parse(text).map_err(|problem| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems: vec![problem],
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut problems = Collected::default();
        let config = validate::validate(raw, path, &base, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: problems.0,
            })
        }
    }

    /// Finds the issuer configured for an `iss` value.
    pub fn issuer(&self, iss: &str) -> Option<&Arc<IssuerConfig>> {
        self.issuers.iter().find(|i| &*i.issuer == iss)
    }
}
