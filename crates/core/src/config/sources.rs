//! Where entities and policies come from besides the local folder: `entity_provider` (an HTTP
//! service asked for entities by type and id) and `policy_bundle` (a signed archive polled from a
//! URL). URLs are judged and the bundle's public keys read and parsed here, so a wrong key file
//! stops the load at its position; must not fetch anything (the server's provider and bundle
//! fetcher do).

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::defaults::*;
use super::fields::{entity_type, positive};
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use super::urls::{resolve, url_problem};

pub(super) fn entity_provider(
    spanned: &Spanned<RawEntityProvider>,
    problems: &mut Collected,
) -> Option<EntityProviderConfig> {
    let raw = &spanned.value;
    let url = match url::Url::parse(&raw.url.value) {
        Ok(u) => u,
        Err(e) => {
            problems.at(&raw.url, format!("entity_provider.url: {e}"));
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not carry user info (`user@`)",
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not have a query or fragment: cedargate adds `?type=…&id=…`",
        );
        return None;
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback || raw.allow_insecure_http => {}
        "http" => {
            problems.at(
                &raw.url,
                "entity_provider.url must be https (plain http only on loopback, or with allow_insecure_http: true)",
            );
            return None;
        }
        other => {
            problems.at(
                &raw.url,
                format!("entity_provider.url: scheme `{other}` is not http(s)"),
            );
            return None;
        }
    }
    if raw.types.value.is_empty() {
        problems.at(
            &raw.types,
            "entity_provider.types must name at least one entity type",
        );
    }
    let types = raw
        .types
        .value
        .iter()
        .map(|t| entity_type(Some(t), DEFAULT_GROUP_TYPE, problems).to_string())
        .collect();
    let millis = |v: Option<&Spanned<u64>>, default: u64, name: &str, problems: &mut Collected| {
        std::time::Duration::from_millis(positive(v, default, name, problems))
    };
    Some(EntityProviderConfig {
        url: url.to_string(),
        types,
        timeout: millis(
            raw.timeout_ms.as_ref(),
            DEFAULT_PROVIDER_TIMEOUT_MS,
            "entity_provider.timeout_ms",
            problems,
        ),
        cache_ttl: std::time::Duration::from_secs(positive(
            raw.cache_ttl_seconds.as_ref(),
            DEFAULT_PROVIDER_CACHE_TTL_SECS,
            "entity_provider.cache_ttl_seconds",
            problems,
        )),
        cache_capacity: positive(
            raw.cache_capacity.as_ref(),
            DEFAULT_PROVIDER_CACHE_CAPACITY,
            "entity_provider.cache_capacity",
            problems,
        ),
        max_body_bytes: positive(
            raw.max_body_bytes.as_ref(),
            DEFAULT_PROVIDER_MAX_BODY_BYTES,
            "entity_provider.max_body_bytes",
            problems,
        ),
    })
}

pub(super) fn policy_bundle(
    spanned: &Spanned<RawPolicyBundle>,
    base: &Path,
    problems: &mut Collected,
) -> Option<PolicyBundleConfig> {
    let raw = &spanned.value;
    let mut ok = true;
    let mut check_url = |field: &Spanned<String>, name: &str, problems: &mut Collected| {
        if let Some(why) = url_problem(&field.value, raw.allow_insecure_http) {
            problems.at(field, format!("policy_bundle.{name} {why}"));
            ok = false;
        }
    };
    check_url(&raw.url, "url", problems);
    let signature_url = match &raw.signature_url {
        Some(s) => {
            check_url(s, "signature_url", problems);
            s.value.clone()
        }
        None => format!("{}.sig", raw.url.value),
    };
    if raw.public_key_files.value.is_empty() {
        problems.at(
            &raw.public_key_files,
            "policy_bundle.public_key_files must name at least one public key: an unsigned bundle is never served",
        );
        ok = false;
    }
    let mut public_key_files = Vec::new();
    for file in &raw.public_key_files.value {
        let path = resolve(base, &file.value);
        // Read now so a missing or wrong key stops the load with its position; the server reads
        // the files again on every verification, so replacing a key needs no restart.
        match std::fs::read(&path) {
            Ok(pem) => {
                if let Err(e) = crate::bundle_signature::PublicKey::from_pem(&pem) {
                    problems.at(
                        file,
                        format!("policy_bundle.public_key_files: {}: {e}", path.display()),
                    );
                    ok = false;
                }
            }
            Err(e) => {
                problems.at(
                    file,
                    format!(
                        "policy_bundle.public_key_files: {}: {}",
                        path.display(),
                        if e.kind() == std::io::ErrorKind::NotFound {
                            "no such file".to_string()
                        } else {
                            super::problems::io_words(&e)
                        }
                    ),
                );
                ok = false;
            }
        }
        public_key_files.push(path);
    }
    if raw.cache_dir.value.is_empty() {
        problems.at(&raw.cache_dir, "policy_bundle.cache_dir must name a folder");
        ok = false;
    }
    let poll_interval = Duration::from_secs(positive(
        raw.poll_interval_seconds.as_ref(),
        DEFAULT_BUNDLE_POLL_SECS,
        "policy_bundle.poll_interval_seconds",
        problems,
    ));
    let fetch_timeout = Duration::from_millis(positive(
        raw.fetch_timeout_ms.as_ref(),
        DEFAULT_BUNDLE_FETCH_TIMEOUT_MS,
        "policy_bundle.fetch_timeout_ms",
        problems,
    ));
    let max_bytes = positive(
        raw.max_bytes.as_ref(),
        crate::bundle::DEFAULT_LIMITS.max_archive_bytes,
        "policy_bundle.max_bytes",
        problems,
    );
    ok.then(|| PolicyBundleConfig {
        url: raw.url.value.clone(),
        signature_url,
        public_key_files,
        cache_dir: resolve(base, &raw.cache_dir.value),
        poll_interval,
        fetch_timeout,
        max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;

    #[test]
    fn policy_bundle_is_checked_and_replaces_policy_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) =
            crate::bundle_signature::generate(crate::bundle_signature::Algorithm::Ed25519).unwrap();
        std::fs::write(dir.path().join("k.pub.pem"), public).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "hello").unwrap();
        let path = dir.path().join("c.yaml");
        let good = "policy_bundle:\n  url: https://b.example/p.tar.gz\n  public_key_files: [k.pub.pem]\n  cache_dir: cache\n";
        let config = Config::parse(good, &path).unwrap();
        let bundle = config.policy_bundle.unwrap();
        assert_eq!(bundle.signature_url, "https://b.example/p.tar.gz.sig");
        assert_eq!(bundle.public_key_files, vec![dir.path().join("k.pub.pem")]);
        assert_eq!(
            bundle.poll_interval,
            Duration::from_secs(DEFAULT_BUNDLE_POLL_SECS)
        );
        assert_eq!(config.policy_dir, dir.path().join("cache").join("current"));
        let bad = "policy_dir: policies\npolicy_bundle:\n  url: http://user@b.example/p.tar.gz\n  signature_url: http://b.example/p.sig\n  public_key_files: [bad.pem, gone.pem]\n  cache_dir: cache\n  poll_interval_seconds: 0\n";
        let got = match Config::parse(bad, &path) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(
            got.iter()
                .any(|p| p.starts_with("3:8 policy_bundle.url must not carry user info")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:18 policy_bundle.signature_url must be an https URL")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:22 policy_bundle.public_key_files:")
                    && p.contains("bad.pem: not a PEM file")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:31 ") && p.contains("gone.pem: no such file")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p
                    .starts_with("7:26 policy_bundle.poll_interval_seconds must be at least 1")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.contains("policy_dir and policy_bundle are both set")),
            "{got:#?}"
        );
        let unsigned = "policy_bundle:\n  url: https://b.example/p.tar.gz\n  public_key_files: []\n  cache_dir: cache\n";
        assert!(
            Config::parse(unsigned, &path)
                .unwrap_err()
                .to_string()
                .contains("an unsigned bundle is never served")
        );
    }
}
