//! `authorizer_api`: cedargate's own gRPC `Authorizer` service (`cedargate.v1`) for application
//! code, in one self-contained block (raw mirror, defaults, typed value, validation). Off unless
//! the section is present; `authorizer_api: {}` serves it on the Check port. With `tls` (its own
//! listener only) the listener speaks TLS and verifies client certificates, whose workload
//! identity is a caller credential beside bearer tokens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
/// Whether a client certificate is required by default when `tls.client_ca_file` is set: no.
/// Callers may authenticate with a bearer token instead of a certificate (the issue's "mTLS
/// workload identity or a bearer token"), and a call with neither is refused UNAUTHENTICATED
/// anyway (fail closed); `require_client_cert: true` also refuses it at the handshake.
const DEFAULT_REQUIRE_CLIENT_CERT: bool = false;

// ---- raw ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorizerApi {
    pub(super) listen: Option<Spanned<String>>,
    pub(super) caller_action: Option<Spanned<String>>,
    pub(super) max_batch_items: Option<Spanned<usize>>,
    pub(super) max_entities: Option<Spanned<usize>>,
    pub(super) tls: Option<Spanned<RawApiTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiTls {
    pub(super) cert_file: Spanned<String>,
    pub(super) key_file: Spanned<String>,
    pub(super) client_ca_file: Option<Spanned<String>>,
    pub(super) require_client_cert: Option<Spanned<bool>>,
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
    /// TLS on the API's own listener (`None`: plain text).
    pub tls: Option<ApiTlsConfig>,
}

/// `authorizer_api.tls`: the listener's certificate and the client certificates it accepts.
/// Paths only: the server reads the files at start (the config never holds key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTlsConfig {
    /// The server's certificate chain (PEM, leaf first).
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; `None`: client
    /// certificates are not asked for, callers authenticate with bearer tokens only.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse a handshake without a client certificate (needs `client_ca_file`).
    pub require_client_cert: bool,
}

// ---- validation --------------------------------------------------------------------------------

/// `authorizer_api`: a listener distinct from the Check and admin ports, a non-empty caller
/// action, limits in `1..=100000`, TLS files that read as what they should be (relative to
/// `base`, the config's folder).
pub(super) fn authorizer_api(
    raw: &Spanned<RawAuthorizerApi>,
    taken: &[(SocketAddr, &str)],
    base: &Path,
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
    let tls = r.tls.as_ref().and_then(|t| {
        if r.listen.is_none() {
            problems.at(
                t,
                "authorizer_api.tls needs authorizer_api.listen: the Check port is Envoy's plain-text gRPC port; give the API a listener of its own",
            );
        }
        tls(&t.value, base, problems)
    });
    AuthorizerApiConfig {
        listen,
        caller_action,
        tls,
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

/// What a PEM file must hold.
#[derive(Clone, Copy)]
enum PemKind {
    /// One or more `CERTIFICATE` blocks.
    Certificates,
    /// Exactly one private key block.
    PrivateKey,
}

/// PEM labels of the private keys rustls reads.
const KEY_LABELS: [&str; 3] = ["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"];

/// `authorizer_api.tls`: each file read and its PEM blocks checked, so a wrong path or a
/// swapped cert/key stops the load with its position (never echoing a key's bytes).
fn tls(raw: &RawApiTls, base: &Path, problems: &mut Collected) -> Option<ApiTlsConfig> {
    let mut ok = true;
    let mut file = |f: &Spanned<String>, name: &str, kind: PemKind, p: &mut Collected| {
        let path = super::urls::resolve(base, &f.value);
        if let Err(why) = read_pem(&path, kind) {
            p.at(
                f,
                format!("authorizer_api.tls.{name}: {}: {why}", path.display()),
            );
            ok = false;
        }
        path
    };
    let cert_file = file(&raw.cert_file, "cert_file", PemKind::Certificates, problems);
    let key_file = file(&raw.key_file, "key_file", PemKind::PrivateKey, problems);
    let client_ca_file = raw
        .client_ca_file
        .as_ref()
        .map(|f| file(f, "client_ca_file", PemKind::Certificates, problems));
    let require_client_cert = match &raw.require_client_cert {
        Some(r) if r.value && client_ca_file.is_none() => {
            problems.at(
                r,
                "authorizer_api.tls.require_client_cert needs client_ca_file: the CA bundle client certificates must chain to",
            );
            ok = false;
            true
        }
        Some(r) => r.value,
        None => DEFAULT_REQUIRE_CLIENT_CERT,
    };
    ok.then_some(ApiTlsConfig {
        cert_file,
        key_file,
        client_ca_file,
        require_client_cert,
    })
}

/// Reads `path` and checks its PEM blocks against `kind`; the reason in plain words when not.
fn read_pem(path: &Path, kind: PemKind) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        _ => super::io_words(&e),
    })?;
    let blocks = pem::parse_many(&bytes).map_err(|e| format!("not PEM: {e}"))?;
    let certificates = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").count();
    let keys = blocks
        .iter()
        .filter(|b| KEY_LABELS.contains(&b.tag()))
        .count();
    match kind {
        PemKind::Certificates if certificates == 0 => {
            Err("holds no PEM `CERTIFICATE` block".to_string())
        }
        PemKind::Certificates if keys > 0 => Err(
            "holds a private key: keep the key in key_file, readable by cedargate only".to_string(),
        ),
        PemKind::PrivateKey if keys != 1 => Err(format!(
            "must hold exactly one PEM private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`), found {keys}"
        )),
        _ => Ok(()),
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

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n";

    /// The config at `dir/cedargate.yaml` with `tls` (relative paths are the config folder's).
    fn parse_in(dir: &Path, section: &str) -> Result<Config, String> {
        let yaml = format!(
            "listen: {{ grpc: 127.0.0.1:9191, admin: 127.0.0.1:9192 }}\npolicy_dir: .\n{section}"
        );
        Config::parse(&yaml, &dir.join("cedargate.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn tls_files_are_read_relative_to_the_config() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("server.crt", CERT), ("server.key", KEY), ("ca.crt", CERT)] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let api = parse_in(
            dir.path(),
            "authorizer_api:\n  listen: 127.0.0.1:9193\n  tls: { cert_file: server.crt, key_file: server.key, client_ca_file: ca.crt }\n",
        )
        .unwrap()
        .authorizer_api
        .unwrap();
        let tls = api.tls.unwrap();
        assert_eq!(tls.cert_file, dir.path().join("server.crt"));
        assert_eq!(tls.key_file, dir.path().join("server.key"));
        assert_eq!(tls.client_ca_file, Some(dir.path().join("ca.crt")));
        assert!(
            !tls.require_client_cert,
            "a bearer token stays a credential"
        );
        let tls = parse_in(
            dir.path(),
            "authorizer_api:\n  listen: 127.0.0.1:9193\n  tls: { cert_file: server.crt, key_file: server.key }\n",
        )
        .unwrap()
        .authorizer_api
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(tls.client_ca_file, None);
    }

    #[test]
    fn bad_tls_settings_are_named_with_their_position() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("server.crt", CERT),
            ("server.key", KEY),
            ("both.pem", &format!("{CERT}{KEY}")),
            ("junk.pem", "hello"),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let d = dir.path().display();
        for (tls, expected) in [
            (
                "{ cert_file: server.crt, key_file: server.key }".to_string(),
                "4:8: authorizer_api.tls needs authorizer_api.listen".to_string(),
            ),
            (
                "{ cert_file: gone.crt, key_file: server.key }".to_string(),
                format!("5:21: authorizer_api.tls.cert_file: {d}/gone.crt: no such file"),
            ),
            (
                "{ cert_file: server.key, key_file: server.key }".to_string(),
                "holds no PEM `CERTIFICATE` block".to_string(),
            ),
            (
                "{ cert_file: server.crt, key_file: server.crt }".to_string(),
                "authorizer_api.tls.key_file: ".to_string(),
            ),
            (
                "{ cert_file: server.crt, key_file: junk.pem }".to_string(),
                "found 0".to_string(),
            ),
            (
                "{ cert_file: server.crt, key_file: server.key, client_ca_file: both.pem }"
                    .to_string(),
                "authorizer_api.tls.client_ca_file: ".to_string()
                    + &format!("{d}/both.pem: holds a private key"),
            ),
            (
                "{ cert_file: server.crt, key_file: server.key, require_client_cert: true }"
                    .to_string(),
                "authorizer_api.tls.require_client_cert needs client_ca_file".to_string(),
            ),
            (
                "{ cert_file: server.crt, key_file: server.key, ca: x }".to_string(),
                "ca".to_string(),
            ),
        ] {
            let listen = if expected.contains("needs authorizer_api.listen") {
                ""
            } else {
                "  listen: 127.0.0.1:9193\n"
            };
            let section = format!("authorizer_api:\n{listen}  tls: {tls}\n");
            let error = parse_in(dir.path(), &section).unwrap_err();
            assert!(error.contains(&expected), "{section}: {error}");
            assert!(
                !error.contains("MAA="),
                "a key's bytes in an error: {error}"
            );
        }
    }
}
