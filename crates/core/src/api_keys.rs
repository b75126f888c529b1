//! API keys: the key text format, the key file (salted hashes, never keys) and the check of a
//! presented key against it.
//!
//! A key reads `cgk_<id>_<secret>`: `id` is 12 lower-case hex digits, public, named in records
//! and used to find the entry in O(1); `secret` is 32 random bytes in base64url. The file keeps,
//! per key, a random salt and HMAC-SHA-256(salt, secret) (aws-lc-rs), compared in constant time;
//! the secret itself is printed once by `cedargate apikey create` and stored nowhere. Secrets
//! are 256-bit random, so a fast keyed hash is enough (a slow password hash guards low-entropy
//! secrets, which these are not).
//!
//! The file is a public contract shared by the CLI (writes it) and the server (reads and
//! watches it); this module parses it with errors that name file, line, column and field. Pure:
//! reads no file itself, holds no key.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cedar_value::cedar_value;

/// Text every key starts with: makes a leaked key recognisable to secret scanners.
pub const KEY_PREFIX: &str = "cgk_";
/// Hex digits in a key id (48 random bits: ids never collide in practice, and reveal nothing).
pub const ID_LEN: usize = 12;
/// Random bytes of a key's secret part.
const SECRET_BYTES: usize = 32;
/// Random bytes of a salt.
const SALT_BYTES: usize = 16;
/// Key-file format version.
pub const FILE_VERSION: u32 = 1;

/// Why a presented key was refused. Each variant is one reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// Not `cgk_<12 hex>_<secret>`.
    #[error("api key is not in the cgk_<id>_<secret> form")]
    Malformed,
    /// No key with this id in the key file (never created, or removed).
    #[error("api key id is unknown")]
    Unknown,
    /// The id is known but the secret part does not match.
    #[error("api key secret does not match")]
    WrongSecret,
    /// The key is marked `revoked` in the key file.
    #[error("api key is revoked")]
    Revoked,
    /// The key's `expires` is past.
    #[error("api key has expired")]
    Expired,
    /// The key file could not be loaded: no key is accepted (fail closed).
    #[error("api keys are unavailable")]
    Unavailable,
}

impl ApiKeyError {
    /// The stable reason code written to decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiKeyError::Malformed => "api_key_malformed",
            ApiKeyError::Unknown => "api_key_unknown",
            ApiKeyError::WrongSecret => "api_key_invalid",
            ApiKeyError::Revoked => "api_key_revoked",
            ApiKeyError::Expired => "api_key_expired",
            ApiKeyError::Unavailable => "api_keys_unavailable",
        }
    }
}

/// A Cedar entity reference as the key file writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUid {
    /// Entity type, e.g. `Service`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id.
    pub id: String,
}

/// One key in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// The public id (`cgk_<id>_…`).
    pub id: String,
    /// The Cedar principal the key stands for.
    pub principal: KeyUid,
    /// Attributes of the principal (Cedar JSON values), overlaying entity data as claims do.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Value>,
    /// Parents of the principal, added to those of the entity data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<KeyUid>,
    /// Random salt, base64url.
    pub salt: String,
    /// HMAC-SHA-256(salt, secret), base64url.
    pub hash: String,
    /// When it was created (RFC 3339), for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it stops being accepted (RFC 3339); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Refused from now on (kept so records and `list` still name it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub revoked: bool,
    /// Free text for people (who holds it, why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The key file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// [`FILE_VERSION`].
    pub version: u32,
    /// Every key, in the order they were created.
    #[serde(default)]
    pub keys: Vec<KeyEntry>,
}

/// A problem with a key file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct KeyFileError {
    /// `file:line:column` (or `file` when the problem has no position).
    pub location: String,
    /// What is wrong, naming the field.
    pub message: String,
}

impl KeyFile {
    /// An empty file.
    pub fn new() -> KeyFile {
        KeyFile {
            version: FILE_VERSION,
            keys: Vec::new(),
        }
    }

    /// Parses and checks key-file text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<KeyFile, KeyFileError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let file: KeyFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let inner = e.inner();
            let field = e.path().to_string();
            KeyFileError {
                location: format!("{}:{}:{}", path.display(), inner.line(), inner.column()),
                message: if field == "." {
                    inner.to_string()
                } else {
                    format!("{field}: {inner}")
                },
            }
        })?;
        let here = |message: String| KeyFileError {
            location: path.display().to_string(),
            message,
        };
        if file.version != FILE_VERSION {
            return Err(here(format!(
                "version {} is not supported (this cedargate reads version {FILE_VERSION})",
                file.version
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, key) in file.keys.iter().enumerate() {
            let at = |field: &str, why: String| here(format!("keys[{i}].{field}: {why}"));
            if !is_id(&key.id) {
                return Err(at(
                    "id",
                    format!("`{}` is not {ID_LEN} lower-case hex digits", key.id),
                ));
            }
            if !seen.insert(key.id.as_str()) {
                return Err(at("id", format!("`{}` is used twice", key.id)));
            }
            if key
                .principal
                .entity_type
                .parse::<cedar_policy::EntityTypeName>()
                .is_err()
            {
                return Err(at(
                    "principal.type",
                    format!("`{}` is not a Cedar entity type", key.principal.entity_type),
                ));
            }
            for (p, parent) in key.parents.iter().enumerate() {
                if parent
                    .entity_type
                    .parse::<cedar_policy::EntityTypeName>()
                    .is_err()
                {
                    return Err(at(
                        &format!("parents[{p}].type"),
                        format!("`{}` is not a Cedar entity type", parent.entity_type),
                    ));
                }
            }
            if decode(&key.salt).is_none_or(|s| s.len() < SALT_BYTES) {
                return Err(at(
                    "salt",
                    format!("not base64url of at least {SALT_BYTES} bytes"),
                ));
            }
            if decode(&key.hash).is_none_or(|h| h.len() != 32) {
                return Err(at("hash", "not base64url of 32 bytes".into()));
            }
            if let Some(expires) = &key.expires
                && humantime::parse_rfc3339(expires).is_err()
            {
                return Err(at(
                    "expires",
                    format!("`{expires}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"),
                ));
            }
        }
        Ok(file)
    }

    /// The file as written by the CLI: pretty JSON with a final newline.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl Default for KeyFile {
    fn default() -> KeyFile {
        KeyFile::new()
    }
}

/// A key as the server holds it: the file's entry, checked, with its hash decoded.
#[derive(Debug)]
pub struct ApiKey {
    /// The public id.
    pub id: Arc<str>,
    /// The principal.
    pub principal: KeyUid,
    /// Attributes, in Cedar JSON form (escape keys and values Cedar can't hold dropped).
    pub attributes: serde_json::Map<String, Value>,
    /// Parents.
    pub parents: Vec<KeyUid>,
    /// `expires`, seconds since the epoch.
    pub expires: Option<u64>,
    /// Refused.
    pub revoked: bool,
    /// HMAC key made of the salt.
    salt: hmac::Key,
    /// The expected tag.
    hash: Vec<u8>,
    /// The principal's credential entity (Cedar JSON), built by the first Check that maps it.
    pub mapped: OnceLock<Option<Value>>,
}

/// The keys of one file by id: O(1) lookup, then one constant-time HMAC comparison.
#[derive(Debug, Default)]
pub struct KeyIndex {
    keys: HashMap<String, Arc<ApiKey>>,
}

impl KeyIndex {
    /// The index of a parsed file.
    pub fn new(file: &KeyFile) -> KeyIndex {
        let mut keys = HashMap::with_capacity(file.keys.len());
        for entry in &file.keys {
            let (Some(salt), Some(hash)) = (decode(&entry.salt), decode(&entry.hash)) else {
                // `KeyFile::parse` refused such entries; one built by hand is skipped, never
                // accepted.
                continue;
            };
            let key = ApiKey {
                id: entry.id.as_str().into(),
                principal: entry.principal.clone(),
                attributes: entry
                    .attributes
                    .iter()
                    .filter(|(k, _)| !k.starts_with("__"))
                    .filter_map(|(k, v)| cedar_value(v).map(|v| (k.clone(), v)))
                    .collect(),
                parents: entry.parents.clone(),
                expires: entry
                    .expires
                    .as_deref()
                    .and_then(|e| humantime::parse_rfc3339(e).ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs()),
                revoked: entry.revoked,
                salt: hmac::Key::new(hmac::HMAC_SHA256, &salt),
                hash,
                mapped: OnceLock::new(),
            };
            keys.insert(entry.id.clone(), Arc::new(key));
        }
        KeyIndex { keys }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks a presented key at `now` (seconds since the epoch). The secret is compared before
    /// anything else is said about the id, so only a holder of the key learns it was revoked.
    pub fn verify(&self, presented: &str, now: u64) -> Result<Arc<ApiKey>, ApiKeyError> {
        let (id, secret) = split(presented).ok_or(ApiKeyError::Malformed)?;
        let key = self.keys.get(id).ok_or(ApiKeyError::Unknown)?;
        hmac::verify(&key.salt, secret.as_bytes(), &key.hash)
            .map_err(|_| ApiKeyError::WrongSecret)?;
        if key.revoked {
            return Err(ApiKeyError::Revoked);
        }
        if key.expires.is_some_and(|e| e <= now) {
            return Err(ApiKeyError::Expired);
        }
        Ok(key.clone())
    }
}

/// The public id of a presented key, when it has the key form: safe to log.
pub fn presented_id(presented: &str) -> Option<&str> {
    split(presented).map(|(id, _)| id)
}

fn split(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.trim().strip_prefix(KEY_PREFIX)?;
    let id = rest.get(..ID_LEN)?;
    let secret = rest.get(ID_LEN..)?.strip_prefix('_')?;
    (is_id(id) && !secret.is_empty() && secret.len() <= 64).then_some((id, secret))
}

fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

/// A new key for `principal`: the key text (print it once, store it nowhere) and its file entry.
pub fn generate(principal: KeyUid) -> Result<(String, KeyEntry), aws_lc_rs::error::Unspecified> {
    let mut id = [0u8; ID_LEN / 2];
    let mut secret = [0u8; SECRET_BYTES];
    let mut salt = [0u8; SALT_BYTES];
    aws_lc_rs::rand::fill(&mut id)?;
    aws_lc_rs::rand::fill(&mut secret)?;
    aws_lc_rs::rand::fill(&mut salt)?;
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salt), secret.as_bytes());
    let entry = KeyEntry {
        id: id.clone(),
        principal,
        attributes: BTreeMap::new(),
        parents: Vec::new(),
        salt: URL_SAFE_NO_PAD.encode(salt),
        hash: URL_SAFE_NO_PAD.encode(tag.as_ref()),
        created: None,
        expires: None,
        revoked: false,
        note: None,
    };
    Ok((format!("{KEY_PREFIX}{id}_{secret}"), entry))
}

/// `Type::"id"` (Cedar's form, namespaces allowed) as a [`KeyUid`].
pub fn parse_uid(text: &str) -> Result<KeyUid, String> {
    let uid: cedar_policy::EntityUid = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a Cedar entity uid like Service::\"billing\""))?;
    Ok(KeyUid {
        entity_type: uid.type_name().to_string(),
        id: uid.id().unescaped().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_with(edit: impl FnOnce(&mut KeyEntry)) -> (String, KeyIndex) {
        let (key, mut entry) = generate(parse_uid(r#"Service::"billing""#).unwrap()).unwrap();
        edit(&mut entry);
        let file = KeyFile {
            version: FILE_VERSION,
            keys: vec![entry],
        };
        let text = file.to_text();
        let parsed = KeyFile::parse(&text, Path::new("keys.json")).unwrap();
        assert_eq!(parsed, file, "the file reads back as written");
        (key, KeyIndex::new(&parsed))
    }

    #[test]
    fn a_key_verifies_and_every_refusal_has_its_reason() {
        let (key, index) = index_with(|_| {});
        let ok = index.verify(&key, 0).unwrap();
        assert_eq!(ok.principal.id, "billing");
        assert!(!index.keys.is_empty());
        let id = presented_id(&key).unwrap();
        let cases = [
            ("", ApiKeyError::Malformed),
            ("Bearer x", ApiKeyError::Malformed),
            ("cgk_0123456789ab", ApiKeyError::Malformed),
            ("cgk_0123456789AB_x", ApiKeyError::Malformed),
            ("cgk_0123456789ab_x", ApiKeyError::Unknown),
        ];
        for (presented, want) in cases {
            assert_eq!(index.verify(presented, 0).unwrap_err(), want, "{presented}");
        }
        let wrong = format!("{KEY_PREFIX}{id}_{}", "A".repeat(43));
        assert_eq!(
            index.verify(&wrong, 0).unwrap_err(),
            ApiKeyError::WrongSecret
        );
        let (key, index) = index_with(|e| e.revoked = true);
        assert_eq!(index.verify(&key, 0).unwrap_err(), ApiKeyError::Revoked);
        let (key, index) = index_with(|e| e.expires = Some("2020-01-01T00:00:00Z".into()));
        assert_eq!(
            index.verify(&key, 1_577_836_800).unwrap_err(),
            ApiKeyError::Expired
        );
        assert!(index.verify(&key, 1_577_836_799).is_ok());
    }

    #[test]
    fn file_problems_name_the_place_and_field() {
        let path = Path::new("keys.json");
        let e = KeyFile::parse("{\"version\": 1,\n \"keys\": [{\"id\": 3}]}", path).unwrap_err();
        assert_eq!(e.location, "keys.json:2:18");
        assert!(e.message.starts_with("keys[0].id: invalid type"), "{e}");
        let (_, entry) = generate(parse_uid(r#"App::Service::"x""#).unwrap()).unwrap();
        let mut file = KeyFile {
            version: FILE_VERSION,
            keys: vec![entry.clone(), entry],
        };
        let e = KeyFile::parse(&file.to_text(), path).unwrap_err();
        assert!(e.message.contains("keys[1].id"), "{e}");
        file.keys.truncate(1);
        if let Some(k) = file.keys.first_mut() {
            k.expires = Some("tomorrow".into());
        }
        let e = KeyFile::parse(&file.to_text(), path).unwrap_err();
        assert_eq!(
            e.to_string(),
            "keys.json: keys[0].expires: `tomorrow` is not an RFC 3339 time (2027-01-31T00:00:00Z)"
        );
        assert!(parse_uid("billing").is_err());
    }
}
