//! The JWT attack list (issue 15), table-driven, through the real Envoy to the real `cedargate`
//! binary: RFC 8725 (JWT best current practices), jwt_tool's checks and known CVEs. Every attack is
//! refused with a 401 and its own reason code in the decision record, and no token text appears in
//! the decision log, cedargate's stderr or Envoy's log.
//!
//! Tokens come from two trusted issuers: the real oidc-provider (`stack.idp`, ES256, its own
//! keys), for attacks on real tokens; and `attack-idp`, a discovery + JWKS server with the test
//! keys (`tests/fixtures/keys`), so that attacks needing a *valid* signature on bad content
//! (claims, headers) can be signed. `docs/hardening.md` lists the cases, one line each. The
//! ordinary token cases (each reason code once, every accepted algorithm) stay in `tokens.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::stack::Stack;
use crate::support::{FakeIdp, claims, fixture, get_decided, key, now, sign_raw};

/// One attack: what is sent, and the refusal expected for it.
struct Attack {
    name: &'static str,
    /// Where the attack comes from (RFC 8725 section, CVE, jwt_tool check).
    source: &'static str,
    /// Request target through Envoy.
    path: String,
    /// Request headers, repeats included, in order.
    headers: Vec<(&'static str, String)>,
    status: u16,
    reason: &'static str,
    /// Token texts that must never reach a log.
    secrets: Vec<String>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn b64_json(v: &Value) -> String {
    b64(v.to_string().as_bytes())
}

/// `Bearer token` on `/orders/1`.
fn bearer_attack(
    name: &'static str,
    source: &'static str,
    token: String,
    reason: &'static str,
) -> Attack {
    Attack {
        name,
        source,
        path: "/orders/1".into(),
        headers: vec![("authorization", format!("Bearer {token}"))],
        status: 401,
        reason,
        secrets: vec![token],
    }
}

/// An ES256 token from the test EC key with this header.
fn es256(header: Value, claims: &Value) -> String {
    sign_raw(&header, claims, &key("ec"), Algorithm::ES256)
}

/// An HMAC token whose secret is `secret` (key confusion: a public key used as the secret).
fn hmac(alg: &str, secret: &[u8], claims: &Value) -> String {
    hmac_raw(
        &json!({"alg": alg, "typ": "at+jwt", "kid": "test-rsa"}),
        claims,
        secret,
    )
}

/// `header.claims` with an HMAC signature (the algorithm named by the header's `alg`); any
/// secret, the empty one included.
fn hmac_raw(header: &Value, claims: &Value, secret: &[u8]) -> String {
    use aws_lc_rs::hmac;
    let algorithm = match header["alg"].as_str().unwrap() {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        _ => hmac::HMAC_SHA512,
    };
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let tag = hmac::sign(&hmac::Key::new(algorithm, secret), message.as_bytes());
    format!("{message}.{}", b64(tag.as_ref()))
}

/// `header.payload.signature` with the header replaced (the signature kept as it was).
fn with_header(token: &str, header: &Value) -> String {
    let mut parts = token.splitn(2, '.');
    let _ = parts.next();
    format!("{}.{}", b64_json(header), parts.next().unwrap())
}

/// The token with its payload replaced (the signature kept as it was).
fn with_payload(token: &str, payload: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{payload}.{}", parts[0], parts[2])
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

fn unsigned(token: &str) -> &str {
    &token[..token.rfind('.').unwrap()]
}

/// The attacks. `good` are valid claims for `attack-idp`; `alice` and `bob` are real tokens from
/// the real IdP; `foreign` a real token from an IdP cedargate does not trust.
fn attacks(good: &Value, alice: &str, bob: &str, foreign: &str, real_iss: &str) -> Vec<Attack> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        edit(&mut c);
        c
    };
    let ec_header = || json!({"alg": "ES256", "typ": "at+jwt", "kid": "test-ec"});
    let rsa_pub_pem = std::fs::read(fixture("rsa.pub.pem")).unwrap();
    let ec_pub_pem = std::fs::read(fixture("ec.pub.pem")).unwrap();
    let jwks: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).unwrap()).unwrap();
    let rsa_jwk = jwks["keys"][0].clone();
    let alice_claims = crate::support::jwt_part(alice, 1);
    let alice_header = crate::support::jwt_part(alice, 0);
    let none = |alg: &str| {
        format!(
            "{}.{}.",
            b64_json(&json!({"alg": alg, "typ": "JWT"})),
            b64_json(&alice_claims)
        )
    };
    let foreign_rsa =
        |header: Value| sign_raw(&header, good, &key("foreign-rsa"), Algorithm::RS256);
    // An attacker's key embedded as a JWK (CVE-2018-0114): the public half of foreign-rsa is not
    // at hand as a JWK, and needn't be: the header is never read for keys.
    let attacker_jwk = json!({"kty": "RSA", "e": "AQAB", "n": rsa_jwk["n"], "kid": "attacker"});
    let psychic = b64(&[0u8; 64]);
    let psychic_der = b64(&[0x30, 0x06, 0x02, 0x01, 0x00, 0x02, 0x01, 0x00]);
    let es_good = es256(ec_header(), good);

    let mut list = vec![
        // --- alg: none, every capitalisation (CVE-2015-9235; RFC 8725 §2.1, §3.1) ---
        bearer_attack(
            "alg none",
            "RFC 8725 §2.1",
            none("none"),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg None",
            "jwt_tool -X a",
            none("None"),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg NONE",
            "jwt_tool -X a",
            none("NONE"),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg nOnE",
            "jwt_tool -X a",
            none("nOnE"),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg none keeping the real signature",
            "jwt_tool -X a",
            format!(
                "{}.{}",
                b64_json(&json!({"alg": "none"})),
                alice.split_once('.').unwrap().1
            ),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg empty string",
            "RFC 8725 §3.1",
            format!(
                "{}.{}.",
                b64_json(&json!({"alg": ""})),
                b64_json(&alice_claims)
            ),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "alg missing",
            "RFC 7515 §4.1.1",
            format!(
                "{}.{}.",
                b64_json(&json!({"typ": "JWT"})),
                b64_json(&alice_claims)
            ),
            "token_malformed",
        ),
        // --- key confusion: HMAC with the public key as the secret (CVE-2016-5431, CVE-2016-10555) ---
        bearer_attack(
            "HS256 with the RSA public key PEM",
            "CVE-2016-10555",
            hmac("HS256", &rsa_pub_pem, good),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "HS384 with the RSA public key PEM",
            "CVE-2016-10555",
            hmac("HS384", &rsa_pub_pem, good),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "HS512 with the RSA public key PEM",
            "CVE-2016-10555",
            hmac("HS512", &rsa_pub_pem, good),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "HS256 with the EC public key PEM",
            "CVE-2016-5431",
            hmac("HS256", &ec_pub_pem, good),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "HS256 with the published JWK as the secret",
            "jwt_tool -X k",
            hmac("HS256", rsa_jwk.to_string().as_bytes(), good),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "RS256 header over an HS256 signature",
            "RFC 8725 §2.1",
            with_header(
                &hmac("HS256", &rsa_pub_pem, good),
                &json!({"alg": "RS256", "kid": "test-rsa"}),
            ),
            "token_bad_signature",
        ),
        bearer_attack(
            "PS256, a real algorithm not in the allow-list",
            "RFC 8725 §3.1",
            sign_raw(
                &json!({"alg": "PS256", "kid": "test-rsa"}),
                good,
                &key("rsa"),
                Algorithm::PS256,
            ),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "real token re-labelled ES384",
            "RFC 8725 §3.1",
            with_header(alice, &json!({"alg": "ES384", "kid": alice_header["kid"]})),
            "token_alg_not_allowed",
        ),
        // --- signatures ---
        bearer_attack(
            "empty signature",
            "jwt_tool -X n",
            format!("{}.", unsigned(alice)),
            "token_bad_signature",
        ),
        bearer_attack(
            "signature stripped with its dot",
            "jwt_tool -X n",
            unsigned(alice).to_string(),
            "token_malformed",
        ),
        bearer_attack(
            "signature of another token",
            "RFC 8725 §2.2",
            format!("{}.{}", unsigned(alice), signature(bob)),
            "token_bad_signature",
        ),
        bearer_attack(
            "claims altered after signing (sub: root)",
            "RFC 7515 §5.2",
            with_payload(
                alice,
                &b64_json(&{
                    let mut c = alice_claims.clone();
                    c["sub"] = json!("root");
                    c
                }),
            ),
            "token_bad_signature",
        ),
        bearer_attack(
            "header altered after signing",
            "RFC 7515 §5.2",
            with_header(alice, &{
                let mut h = alice_header.clone();
                h["x"] = json!(1);
                h
            }),
            "token_bad_signature",
        ),
        bearer_attack(
            "ECDSA psychic signature r=s=0",
            "CVE-2022-21449",
            format!("{}.{psychic}", unsigned(alice)),
            "token_bad_signature",
        ),
        bearer_attack(
            "ECDSA psychic signature r=s=0, DER-encoded",
            "CVE-2022-21449",
            format!("{}.{psychic_der}", unsigned(alice)),
            "token_bad_signature",
        ),
        bearer_attack(
            "real token's signature bit-flipped",
            "RFC 7515 §5.2",
            {
                let mut sig = URL_SAFE_NO_PAD.decode(signature(alice)).unwrap();
                sig[10] ^= 1;
                format!("{}.{}", unsigned(alice), b64(&sig))
            },
            "token_bad_signature",
        ),
        // --- keys chosen by the token (RFC 8725 §3.10; CVE-2018-0114) ---
        bearer_attack(
            "embedded jwk, no kid",
            "CVE-2018-0114",
            foreign_rsa(json!({"alg": "RS256", "jwk": attacker_jwk})),
            "token_bad_signature",
        ),
        bearer_attack(
            "embedded jwk with a trusted kid",
            "CVE-2018-0114",
            foreign_rsa(json!({"alg": "RS256", "kid": "test-rsa", "jwk": attacker_jwk})),
            "token_bad_signature",
        ),
        bearer_attack(
            "jku pointing at the attacker, trusted kid",
            "jwt_tool -X s",
            foreign_rsa(
                json!({"alg": "RS256", "kid": "test-rsa", "jku": "http://127.0.0.1:1/jwks.json"}),
            ),
            "token_bad_signature",
        ),
        bearer_attack(
            "jku pointing at the attacker, attacker's kid",
            "jwt_tool -X s",
            foreign_rsa(
                json!({"alg": "RS256", "kid": "attacker", "jku": "http://127.0.0.1:1/jwks.json"}),
            ),
            "token_unknown_kid",
        ),
        bearer_attack(
            "x5u pointing at the attacker",
            "RFC 8725 §3.10",
            foreign_rsa(
                json!({"alg": "RS256", "kid": "test-rsa", "x5u": "http://127.0.0.1:1/cert.pem"}),
            ),
            "token_bad_signature",
        ),
        bearer_attack(
            "x5c with the attacker's certificate",
            "RFC 8725 §3.10",
            foreign_rsa(json!({"alg": "RS256", "x5c": [STANDARD.encode(b"attacker certificate")]})),
            "token_bad_signature",
        ),
        // --- kid injection (jwt_tool -I; RFC 8725 §3.10) ---
        bearer_attack(
            "kid path traversal with an HMAC of /dev/null",
            "jwt_tool kid /dev/null",
            hmac_raw(
                &json!({"alg": "HS256", "kid": "../../../../../../dev/null"}),
                good,
                b"",
            ),
            "token_alg_not_allowed",
        ),
        bearer_attack(
            "kid path traversal",
            "jwt_tool -I kid",
            es256(
                json!({"alg": "ES256", "kid": "../../../../etc/passwd"}),
                good,
            ),
            "token_unknown_kid",
        ),
        bearer_attack(
            "kid SQL injection",
            "jwt_tool -I kid",
            es256(
                json!({"alg": "ES256", "kid": "x' UNION SELECT 'test-ec'--"}),
                good,
            ),
            "token_unknown_kid",
        ),
        bearer_attack(
            "kid with a null byte",
            "jwt_tool -I kid",
            es256(json!({"alg": "ES256", "kid": "test-ec\u{0}"}), good),
            "token_unknown_kid",
        ),
        bearer_attack(
            "kid of 4,000 characters",
            "RFC 8725 §3.10",
            es256(json!({"alg": "ES256", "kid": "k".repeat(4000)}), good),
            "token_unknown_kid",
        ),
        bearer_attack(
            "kid as a number",
            "RFC 7515 §4.1.4",
            es256(json!({"alg": "ES256", "kid": 7}), good),
            "token_malformed",
        ),
        bearer_attack(
            "kid of the RSA key on an ES256 token",
            "RFC 8725 §3.1",
            es256(json!({"alg": "ES256", "kid": "test-rsa"}), good),
            "token_unknown_kid",
        ),
        // --- header extensions and shapes ---
        bearer_attack(
            "crit header",
            "RFC 7515 §4.1.11",
            es256(
                json!({"alg": "ES256", "kid": "test-ec", "crit": ["exp"], "exp": 0}),
                good,
            ),
            "token_crit_unsupported",
        ),
        bearer_attack(
            "b64:false with crit",
            "RFC 7797",
            es256(
                json!({"alg": "ES256", "kid": "test-ec", "b64": false, "crit": ["b64"]}),
                good,
            ),
            "token_crit_unsupported",
        ),
        bearer_attack(
            "b64:false, unencoded payload",
            "RFC 7797",
            {
                let header = b64_json(&json!({"alg": "ES256", "kid": "test-ec", "b64": false}));
                let payload = good.to_string();
                let message = format!("{header}.{payload}");
                let sig =
                    jsonwebtoken::crypto::sign(message.as_bytes(), &key("ec"), Algorithm::ES256)
                        .unwrap();
                format!("{message}.{sig}")
            },
            "token_malformed",
        ),
        bearer_attack(
            "JWE-shaped token (five parts)",
            "RFC 7516",
            format!(
                "{}.{}.{}.{}.{}",
                b64_json(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"})),
                b64(b"encrypted-key"),
                b64(b"iv"),
                b64(b"ciphertext"),
                b64(b"tag")
            ),
            "token_malformed",
        ),
        bearer_attack(
            "nested JWT (cty: JWT) as the payload",
            "RFC 7519 §5.2",
            es256(
                json!({"alg": "ES256", "kid": "test-ec", "cty": "JWT"}),
                &json!(es_good),
            ),
            "token_malformed",
        ),
        bearer_attack(
            "duplicate alg in the header (none, then ES256)",
            "RFC 8725 §3.2",
            {
                let header = b64(br#"{"alg":"none","alg":"ES256","kid":"test-ec"}"#);
                let message = format!("{header}.{}", b64_json(good));
                let sig =
                    jsonwebtoken::crypto::sign(message.as_bytes(), &key("ec"), Algorithm::ES256)
                        .unwrap();
                format!("{message}.{sig}")
            },
            "token_malformed",
        ),
        bearer_attack(
            "header is a JSON array",
            "RFC 7515 §4",
            format!(
                "{}.{}.{}",
                b64(b"[\"ES256\"]"),
                b64_json(good),
                signature(&es_good)
            ),
            "token_malformed",
        ),
        // --- claims (RFC 8725 §3.8–3.10; RFC 7519 §4.1), each validly signed ---
        bearer_attack(
            "iss untrusted",
            "RFC 8725 §3.8",
            es256(
                ec_header(),
                &with(&|c| c["iss"] = json!("https://evil.example")),
            ),
            "token_unknown_issuer",
        ),
        bearer_attack(
            "iss missing",
            "RFC 8725 §3.8",
            es256(
                ec_header(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("iss");
                }),
            ),
            "token_missing_claim",
        ),
        bearer_attack(
            "iss as a list",
            "RFC 7519 §4.1.1",
            es256(
                ec_header(),
                &with(&|c| c["iss"] = json!([c["iss"].clone()])),
            ),
            "token_invalid_claim",
        ),
        bearer_attack(
            "iss of the real IdP on a token signed by another trusted issuer's key",
            "RFC 8725 §3.8",
            es256(ec_header(), &with(&|c| c["iss"] = json!(real_iss))),
            "token_unknown_kid",
        ),
        bearer_attack(
            "real token of an untrusted IdP",
            "RFC 8725 §3.8",
            foreign.to_string(),
            "token_unknown_issuer",
        ),
        bearer_attack(
            "real token of an untrusted IdP, iss rewritten",
            "RFC 8725 §3.8",
            with_payload(
                foreign,
                &b64_json(&{
                    let mut c = crate::support::jwt_part(foreign, 1);
                    c["iss"] = json!(real_iss);
                    c
                }),
            ),
            "token_unknown_kid",
        ),
        bearer_attack(
            "aud of another service",
            "RFC 8725 §3.9",
            es256(
                ec_header(),
                &with(&|c| c["aud"] = json!("https://other.example")),
            ),
            "token_wrong_audience",
        ),
        bearer_attack(
            "aud missing",
            "RFC 8725 §3.9",
            es256(
                ec_header(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
            ),
            "token_missing_claim",
        ),
        bearer_attack(
            "aud an empty list",
            "RFC 8725 §3.9",
            es256(ec_header(), &with(&|c| c["aud"] = json!([]))),
            "token_wrong_audience",
        ),
        bearer_attack(
            "exp in the past",
            "RFC 7519 §4.1.4",
            es256(ec_header(), &with(&|c| c["exp"] = json!(now() - 120))),
            "token_expired",
        ),
        bearer_attack(
            "exp missing",
            "RFC 8725 §3.10",
            es256(
                ec_header(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "token_missing_claim",
        ),
        bearer_attack(
            "exp as a string",
            "RFC 7519 §2 NumericDate",
            es256(
                ec_header(),
                &with(&|c| c["exp"] = json!((now() + 3600).to_string())),
            ),
            "token_invalid_claim",
        ),
        bearer_attack(
            "exp negative",
            "RFC 7519 §2 NumericDate",
            es256(ec_header(), &with(&|c| c["exp"] = json!(-1))),
            "token_invalid_claim",
        ),
        bearer_attack(
            "exp a fraction",
            "RFC 7519 §2 NumericDate",
            es256(ec_header(), &with(&|c| c["exp"] = json!(1e12 + 0.5))),
            "token_invalid_claim",
        ),
        bearer_attack(
            "exp beyond u64",
            "RFC 7519 §2 NumericDate",
            es256(ec_header(), &with(&|c| c["exp"] = json!(1e30))),
            "token_invalid_claim",
        ),
        bearer_attack(
            "nbf in the future",
            "RFC 7519 §4.1.5",
            es256(ec_header(), &with(&|c| c["nbf"] = json!(now() + 600))),
            "token_not_yet_valid",
        ),
        bearer_attack(
            "nbf as a string",
            "RFC 7519 §2 NumericDate",
            es256(ec_header(), &with(&|c| c["nbf"] = json!("0"))),
            "token_invalid_claim",
        ),
        bearer_attack(
            "duplicate exp (past, then future)",
            "RFC 7519 §4",
            {
                let claims = good.to_string();
                let dup = format!("{{\"exp\":{},{}", now() - 3600, &claims[1..]);
                let message = format!("{}.{}", b64_json(&ec_header()), b64(dup.as_bytes()));
                let sig =
                    jsonwebtoken::crypto::sign(message.as_bytes(), &key("ec"), Algorithm::ES256)
                        .unwrap();
                format!("{message}.{sig}")
            },
            "token_malformed",
        ),
        bearer_attack(
            "duplicate iss (untrusted, then trusted)",
            "RFC 7519 §4",
            {
                let claims = good.to_string();
                let dup = format!("{{\"iss\":\"https://evil.example\",{}", &claims[1..]);
                let message = format!("{}.{}", b64_json(&ec_header()), b64(dup.as_bytes()));
                let sig =
                    jsonwebtoken::crypto::sign(message.as_bytes(), &key("ec"), Algorithm::ES256)
                        .unwrap();
                format!("{message}.{sig}")
            },
            "token_malformed",
        ),
        bearer_attack(
            "sub and client_id missing",
            "RFC 9068 §2.2",
            es256(
                ec_header(),
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                    c.as_object_mut().unwrap().remove("client_id");
                }),
            ),
            "token_missing_principal_claim",
        ),
        bearer_attack(
            "claims are a JSON array",
            "RFC 7519 §7.2",
            es256(ec_header(), &json!([good.clone()])),
            "token_malformed",
        ),
        // --- encoding and size ---
        bearer_attack(
            "9 KB token (over max_token_bytes)",
            "RFC 8725 §3.5",
            format!(
                "{}.{}.{}",
                unsigned(alice),
                "A".repeat(9000),
                signature(alice)
            ),
            "token_too_large",
        ),
        bearer_attack(
            "40 KB token",
            "RFC 8725 §3.5",
            format!("{}.{}", "A".repeat(40_000), signature(alice)),
            "token_too_large",
        ),
        bearer_attack(
            "standard base64 (+ and /) instead of base64url",
            "RFC 7515 §2",
            {
                let parts: Vec<&str> = alice.split('.').collect();
                let sig = STANDARD.encode(URL_SAFE_NO_PAD.decode(parts[2]).unwrap());
                format!(
                    "{}.{}.{}",
                    parts[0],
                    parts[1],
                    sig.replace('=', "").replace('A', "+")
                )
            },
            "token_malformed",
        ),
        bearer_attack(
            "base64 padding on the payload",
            "RFC 7515 §2",
            {
                let parts: Vec<&str> = alice.split('.').collect();
                format!("{}.{}==.{}", parts[0], parts[1], parts[2])
            },
            "token_malformed",
        ),
        bearer_attack(
            "whitespace inside the token",
            "RFC 6750 §2.1",
            {
                let (head, rest) = alice.split_once('.').unwrap();
                format!("{head}. {rest}")
            },
            "token_malformed",
        ),
        bearer_attack(
            "extra segment",
            "RFC 7515 §7.1",
            format!("{alice}.{}", b64(b"extra")),
            "token_malformed",
        ),
        bearer_attack(
            "two segments",
            "RFC 7515 §7.1",
            format!("{}.{}", b64_json(&alice_header), b64_json(&alice_claims)),
            "token_malformed",
        ),
        bearer_attack(
            "non-ASCII in the token",
            "RFC 6750 §2.1",
            format!("{}é", unsigned(alice)),
            "token_malformed",
        ),
    ];

    // --- the HTTP request around the token ---
    let forged = with_payload(
        alice,
        &b64_json(&{
            let mut c = alice_claims.clone();
            c["groups"] = json!(["admins"]);
            c["sub"] = json!("mallory");
            c
        }),
    );
    let none_token = none("none");
    list.extend([
        Attack {
            name: "lowercase bearer scheme with alg none",
            source: "RFC 6750 §2.1 (the scheme is case-insensitive; the token still is judged)",
            path: "/orders/1".into(),
            headers: vec![("authorization", format!("bearer {none_token}"))],
            status: 401,
            reason: "token_alg_not_allowed",
            secrets: vec![none_token.clone()],
        },
        Attack {
            name: "BEARER scheme with a forged payload",
            source: "RFC 6750 §2.1",
            path: "/orders/1".into(),
            headers: vec![("authorization", format!("BEARER {forged}"))],
            status: 401,
            reason: "token_bad_signature",
            secrets: vec![forged.clone()],
        },
        Attack {
            name: "two Authorization headers, forged then valid",
            source: "RFC 7230 §3.2.2",
            path: "/orders/1".into(),
            headers: vec![
                ("authorization", format!("Bearer {forged}")),
                ("authorization", format!("Bearer {alice}")),
            ],
            status: 401,
            reason: "token_malformed",
            secrets: vec![forged.clone(), alice.to_string()],
        },
        Attack {
            name: "two Authorization headers, valid then forged",
            source: "RFC 7230 §3.2.2",
            path: "/orders/1".into(),
            headers: vec![
                ("authorization", format!("Bearer {alice}")),
                ("authorization", format!("Bearer {forged}")),
            ],
            status: 401,
            reason: "token_malformed",
            secrets: vec![forged.clone(), alice.to_string()],
        },
        Attack {
            name: "valid token in the query string only",
            source: "RFC 6750 §2.3 (not accepted: URIs are logged)",
            path: format!("/orders/1?access_token={alice}"),
            headers: vec![],
            status: 401,
            reason: "no_permit",
            secrets: vec![alice.to_string()],
        },
        Attack {
            name: "valid token in a cookie only",
            source: "RFC 6750 §2 (bearer tokens travel in Authorization)",
            path: "/orders/1".into(),
            headers: vec![("cookie", format!("access_token={alice}"))],
            status: 401,
            reason: "no_permit",
            secrets: vec![alice.to_string()],
        },
        Attack {
            name: "valid token under the Basic scheme",
            source: "RFC 7617",
            path: "/orders/1".into(),
            headers: vec![("authorization", format!("Basic {alice}"))],
            status: 401,
            reason: "unsupported_auth_scheme",
            secrets: vec![alice.to_string()],
        },
        Attack {
            name: "Bearer with no token",
            source: "RFC 6750 §2.1",
            path: "/orders/1".into(),
            headers: vec![("authorization", "Bearer   ".into())],
            status: 401,
            reason: "unsupported_auth_scheme",
            secrets: vec![],
        },
    ]);
    list
}

/// Strings of a token that must not appear in a log: the whole token and each long base64url
/// segment (a raw JSON payload, as in the `b64:false` case, holds claims the record may carry).
fn leak_needles(secret: &str) -> Vec<String> {
    let mut needles = vec![secret.to_string()];
    needles.extend(
        secret
            .split(['.', ' ', ','])
            .filter(|s| {
                s.len() >= 24
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
            .map(str::to_string),
    );
    needles
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_jwt_attack_is_refused_and_no_token_is_logged() {
    let attack_idp = FakeIdp::start().await;
    let issuer = attack_idp.issuer.clone();
    let stack = tokio::task::block_in_place(|| {
        Stack::start_with(|yaml| {
            let edited = yaml.replacen(
                "\n\nmtls:",
                &format!(
                    "\n  - name: attack-idp\n    issuer: {issuer}\n    audiences: [https://api.cedargate.test]\n    algorithms: [ES256, RS256]\n    leeway_seconds: 30\n    principal: {{ groups_claim: groups }}\n\nmtls:"
                ),
                1,
            );
            assert_ne!(edited, yaml, "no place for the attack-idp issuer");
            edited
        })
    });
    let (alice, bob, foreign) = tokio::task::block_in_place(|| {
        (
            stack.idp.user("alice"),
            stack.idp.user("bob"),
            stack.foreign_idp.user("alice"),
        )
    });
    let good = claims(&issuer, "alice", &["admins"]);

    // The controls: both issuers' valid tokens are accepted, so every refusal below is the
    // attack's doing.
    for (name, token) in [
        ("real IdP", alice.clone()),
        (
            "attack-idp",
            es256(json!({"alg": "ES256", "kid": "test-ec"}), &good),
        ),
    ] {
        let (status, id) = get_decided(
            &stack.url("/orders/1"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(status, 200, "control {name}: {}", stack.record(&id));
    }

    let attacks = attacks(&good, &alice, &bob, &foreign, &stack.idp.issuer);
    let count = attacks.len();
    assert!(count >= 47, "the attack list has only {count} cases");
    let mut failures = Vec::new();
    let mut secrets = vec![alice.clone(), bob.clone(), foreign.clone()];
    for attack in &attacks {
        let headers: Vec<(&str, &str)> = attack
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        let (status, id) = get_decided(&stack.url(&attack.path), &headers).await;
        let record = stack.record(&id);
        if status != attack.status
            || record["reason"] != attack.reason
            || record["status"] != attack.status
        {
            failures.push(format!(
                "{} ({}): want {} {}, got {status} {}",
                attack.name, attack.source, attack.status, attack.reason, record["reason"]
            ));
        }
        secrets.extend(attack.secrets.iter().cloned());
    }
    assert!(
        failures.is_empty(),
        "{} of {count} attacks not refused as expected:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("jwt_attacks: {count} of {count} attacks refused with their reason");

    // No token text in the decision log (stdout), cedargate's stderr or Envoy's log.
    let stdout = stack.cedargate.lines.lock().unwrap().join("\n");
    let stderr = stack.cedargate.stderr.lock().unwrap().join("\n");
    let envoy_log = std::fs::read_to_string(
        stack
            .dir
            .path()
            .join(format!("envoy-{}.log", stack.envoy_admin)),
    )
    .unwrap();
    assert!(
        stdout.lines().count() > count,
        "the decision log is missing records"
    );
    for secret in &secrets {
        for needle in leak_needles(secret) {
            for (name, text) in [
                ("decision log", &stdout),
                ("stderr", &stderr),
                ("Envoy's log", &envoy_log),
            ] {
                assert!(!text.contains(&needle), "token text reached {name}");
            }
        }
    }
}
