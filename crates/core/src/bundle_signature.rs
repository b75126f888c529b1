//! Detached signatures of policy bundles: Ed25519 or ES256 (ECDSA P-256 with SHA-256) over the
//! bundle's digest, with `aws-lc-rs` (already cedargate's crypto through `jsonwebtoken`).
//!
//! A signature file is JSON (`BUNDLE.sig`):
//!
//! ```json
//! {"format": "cedargate-bundle-signature/v1", "algorithm": "Ed25519",
//!  "key_id": "3f0c…", "digest": "sha256:9a1e…", "signature": "base64…"}
//! ```
//!
//! The signed message is `cedargate-bundle/v1 sha256:<hex digest>` (the prefix keeps a bundle
//! signature from being replayed as any other signature made with the same key). `key_id` is
//! the first 16 hex digits of the SHA-256 of the public key's DER (SubjectPublicKeyInfo), so a
//! refusal can say which key signed. Keys are PEM: PKCS#8 `PRIVATE KEY` to sign, `PUBLIC KEY`
//! (SPKI) to verify — what `openssl genpkey` and `openssl pkey -pubout` write.
//!
//! Pure: bytes and PEM text in, bytes and verdicts out. [`verify`] runs before any byte of the
//! archive is decompressed.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::{self, KeyPair as _};

/// The `format` of a signature file.
pub const SIGNATURE_FORMAT: &str = "cedargate-bundle-signature/v1";

/// Largest signature file read: a few hundred bytes in practice.
pub const MAX_SIGNATURE_BYTES: u64 = 16 * 1024;

/// A supported signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// EdDSA on Curve25519: small keys, deterministic signatures; the default.
    Ed25519,
    /// ECDSA on P-256 with SHA-256, for key stores (HSMs, cloud KMS) without Ed25519.
    ES256,
}

impl Algorithm {
    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::Ed25519 => &signature::ED25519,
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_ASN1,
        }
    }
}

/// A signature file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// [`SIGNATURE_FORMAT`].
    pub format: String,
    /// How it was signed.
    pub algorithm: Algorithm,
    /// Which key signed (see the module docs).
    pub key_id: String,
    /// `sha256:<hex>` of the bundle it signs.
    pub digest: String,
    /// The signature, base64.
    pub signature: String,
}

/// A public key a bundle may be signed with.
#[derive(Debug)]
pub struct PublicKey {
    /// First 16 hex digits of the SHA-256 of its DER.
    pub key_id: String,
    /// Its algorithm, from the key itself.
    pub algorithm: Algorithm,
    /// The parsed key.
    key: signature::ParsedPublicKey,
}

/// Why a key could not be read or a bundle's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A key that is not PEM, or not an Ed25519 / P-256 key of the expected kind.
    #[error("{0}")]
    Key(String),
    /// No signature where one is required.
    #[error("the bundle is not signed (no signature found)")]
    Unsigned,
    /// The signature file is not one.
    #[error("the signature file is unreadable: {0}")]
    Malformed(String),
    /// The signature is for another bundle: this one was altered or cut short.
    #[error(
        "the bundle's SHA-256 is {actual} but the signature is for {signed}: the bundle was altered or truncated"
    )]
    DigestMismatch {
        /// `sha256:<hex>` of the bundle received.
        actual: String,
        /// The digest the signature names.
        signed: String,
    },
    /// Signed by a key not configured.
    #[error("signed by key {key_id}, which is not a trusted key (trusted: {trusted})")]
    UnknownKey {
        /// The signing key's id.
        key_id: String,
        /// The configured key ids.
        trusted: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify with key {key_id}: forged, or made with another key")]
    BadSignature {
        /// The key tried.
        key_id: String,
    },
}

fn key_id(der: &[u8]) -> String {
    crate::bundle::sha256_hex(der).chars().take(16).collect()
}

/// `sha256:<hex>` of an archive: what a signature names.
pub fn digest_label(archive: &[u8]) -> String {
    format!("sha256:{}", crate::bundle::sha256_hex(archive))
}

/// The message a signature covers.
fn message(digest_label: &str) -> Vec<u8> {
    format!("{} {digest_label}", crate::bundle::FORMAT).into_bytes()
}

impl PublicKey {
    /// Reads a `PUBLIC KEY` PEM (Ed25519 or P-256).
    pub fn from_pem(text: &[u8]) -> Result<PublicKey, SignatureError> {
        let block = pem::parse(text).map_err(|_| {
            SignatureError::Key("not a PEM file (expected -----BEGIN PUBLIC KEY-----)".into())
        })?;
        if block.tag() != "PUBLIC KEY" {
            return Err(SignatureError::Key(format!(
                "a `{}` PEM block, expected `PUBLIC KEY` (a private key must never be configured on a server: use `openssl pkey -pubout`)",
                block.tag()
            )));
        }
        let der = block.contents();
        for algorithm in [Algorithm::Ed25519, Algorithm::ES256] {
            if let Ok(key) = signature::ParsedPublicKey::new(algorithm.verification(), der) {
                return Ok(PublicKey {
                    key_id: key_id(der),
                    algorithm,
                    key,
                });
            }
        }
        Err(SignatureError::Key(
            "not an Ed25519 or P-256 (ES256) public key".into(),
        ))
    }
}

/// Checks `signature` (a signature file's bytes, `None` when there is none) over `archive`
/// against `keys`; returns the id of the key that signed. Any one trusted key suffices, so a
/// key rotation can list the old and the new key.
pub fn verify(
    archive: &[u8],
    signature: Option<&[u8]>,
    keys: &[PublicKey],
) -> Result<String, SignatureError> {
    let Some(signature) = signature else {
        return Err(SignatureError::Unsigned);
    };
    if signature.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(SignatureError::Malformed(format!(
            "over {MAX_SIGNATURE_BYTES} bytes"
        )));
    }
    let file: SignatureFile =
        serde_json::from_slice(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if file.format != SIGNATURE_FORMAT {
        return Err(SignatureError::Malformed(format!(
            "format `{}` is not `{SIGNATURE_FORMAT}`",
            file.format
        )));
    }
    let actual = digest_label(archive);
    if file.digest != actual {
        return Err(SignatureError::DigestMismatch {
            actual,
            signed: file.digest,
        });
    }
    let Some(key) = keys
        .iter()
        .find(|k| k.key_id == file.key_id && k.algorithm == file.algorithm)
    else {
        return Err(SignatureError::UnknownKey {
            key_id: file.key_id,
            trusted: keys
                .iter()
                .map(|k| k.key_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let bytes = B64
        .decode(file.signature.as_bytes())
        .map_err(|e| SignatureError::Malformed(format!("signature: {e}")))?;
    key.key
        .verify_sig(&message(&actual), &bytes)
        .map_err(|_| SignatureError::BadSignature {
            key_id: key.key_id.clone(),
        })?;
    Ok(key.key_id.clone())
}

/// A private key that signs bundles.
enum SigningKey {
    Ed25519(signature::Ed25519KeyPair),
    ES256(signature::EcdsaKeyPair),
}

impl SigningKey {
    fn from_pem(text: &[u8]) -> Result<SigningKey, SignatureError> {
        let block = pem::parse(text).map_err(|_| {
            SignatureError::Key("not a PEM file (expected -----BEGIN PRIVATE KEY-----)".into())
        })?;
        if block.tag() != "PRIVATE KEY" {
            return Err(SignatureError::Key(format!(
                "a `{}` PEM block, expected a PKCS#8 `PRIVATE KEY` (convert with `openssl pkcs8 -topk8 -nocrypt`)",
                block.tag()
            )));
        }
        let der = block.contents();
        if let Ok(pair) = signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(SigningKey::Ed25519(pair));
        }
        signature::EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der)
            .map(SigningKey::ES256)
            .map_err(|_| SignatureError::Key("not an Ed25519 or P-256 private key".into()))
    }

    fn public_der(&self) -> Result<Vec<u8>, SignatureError> {
        let der = match self {
            SigningKey::Ed25519(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
            SigningKey::ES256(k) => k.public_key().as_der().map(|d| d.as_ref().to_vec()),
        };
        der.map_err(|_| SignatureError::Key("the public key can't be encoded".into()))
    }
}

/// Signs `archive` with the PKCS#8 PEM private key `private_pem`: the signature file's bytes.
pub fn sign(archive: &[u8], private_pem: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let key = SigningKey::from_pem(private_pem)?;
    let digest = digest_label(archive);
    let msg = message(&digest);
    let (algorithm, sig) = match &key {
        SigningKey::Ed25519(k) => (Algorithm::Ed25519, k.sign(&msg).as_ref().to_vec()),
        SigningKey::ES256(k) => (
            Algorithm::ES256,
            k.sign(&aws_lc_rs::rand::SystemRandom::new(), &msg)
                .map_err(|_| SignatureError::Key("signing failed".into()))?
                .as_ref()
                .to_vec(),
        ),
    };
    let file = SignatureFile {
        format: SIGNATURE_FORMAT.into(),
        algorithm,
        key_id: key_id(&key.public_der()?),
        digest,
        signature: B64.encode(sig),
    };
    let mut out =
        serde_json::to_vec_pretty(&file).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    out.push(b'\n');
    Ok(out)
}

/// A new key pair: (PKCS#8 private key PEM, public key PEM).
pub fn generate(algorithm: Algorithm) -> Result<(String, String), SignatureError> {
    let failed = |_| SignatureError::Key("key generation failed".into());
    let private_der = match algorithm {
        Algorithm::Ed25519 => signature::Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(failed)?
            .as_ref()
            .to_vec(),
        Algorithm::ES256 => {
            signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(failed)?
                .as_ref()
                .to_vec()
        }
    };
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", private_der));
    let public_der = SigningKey::from_pem(private.as_bytes())?.public_der()?;
    let public = pem::encode(&pem::Pem::new("PUBLIC KEY", public_der));
    Ok((private, public))
}

/// The id of the key in a public or private key PEM, for messages and `bundle keygen`.
pub fn key_id_of(pem_text: &[u8]) -> Result<String, SignatureError> {
    match PublicKey::from_pem(pem_text) {
        Ok(k) => Ok(k.key_id),
        Err(_) => Ok(key_id(&SigningKey::from_pem(pem_text)?.public_der()?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: Algorithm) -> (String, PublicKey) {
        let (private, public) = generate(alg).unwrap();
        (private, PublicKey::from_pem(public.as_bytes()).unwrap())
    }

    #[test]
    fn a_signature_verifies_with_its_key_and_no_other() {
        for alg in [Algorithm::Ed25519, Algorithm::ES256] {
            let (private, public) = pair(alg);
            let (_, other) = pair(alg);
            let archive = b"bundle bytes".to_vec();
            let sig = sign(&archive, private.as_bytes()).unwrap();
            assert_eq!(
                verify(&archive, Some(&sig), std::slice::from_ref(&public)).unwrap(),
                public.key_id
            );
            // Two trusted keys (a rotation): either may sign.
            assert!(verify(&archive, Some(&sig), &[other, pair(alg).1, public]).is_ok());
        }
    }

    #[test]
    fn every_refusal_says_why() {
        let (private, public) = pair(Algorithm::Ed25519);
        let (wrong_private, _) = pair(Algorithm::Ed25519);
        let archive = b"bundle bytes".to_vec();
        let sig = sign(&archive, private.as_bytes()).unwrap();
        let keys = [public];
        let err = |a: &[u8], s: Option<&[u8]>| verify(a, s, &keys).unwrap_err().to_string();
        assert_eq!(
            err(&archive, None),
            "the bundle is not signed (no signature found)"
        );
        assert!(err(b"bundle bytez", Some(&sig)).contains("altered or truncated"));
        assert!(err(&archive[..5], Some(&sig)).contains("altered or truncated"));
        let wrong = sign(&archive, wrong_private.as_bytes()).unwrap();
        assert!(err(&archive, Some(&wrong)).contains("which is not a trusted key"));
        // A forged signature under the trusted key's id.
        let mut forged: SignatureFile = serde_json::from_slice(&wrong).unwrap();
        forged.key_id = keys[0].key_id.clone();
        let forged = serde_json::to_vec(&forged).unwrap();
        assert!(err(&archive, Some(&forged)).contains("does not verify"));
        assert!(err(&archive, Some(b"garbage")).contains("unreadable"));
    }

    #[test]
    fn keys_of_the_wrong_kind_are_named() {
        let (private, public) = generate(Algorithm::ES256).unwrap();
        let e = PublicKey::from_pem(private.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("must never be configured on a server"), "{e}");
        assert!(PublicKey::from_pem(b"hello").is_err());
        assert!(
            sign(b"x", public.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("PRIVATE KEY")
        );
        assert_eq!(
            key_id_of(private.as_bytes()).unwrap(),
            key_id_of(public.as_bytes()).unwrap()
        );
    }
}
