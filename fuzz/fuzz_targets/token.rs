//! Bearer tokens up to the signature: arbitrary bytes as the token given to
//! `Verifier::verify_with_known_keys` (size bound, header and claim peek, trusted `iss`, `alg`
//! allow-list, key by `kid`, signature, claims), with a fixed key set (the test keys, read once).
//! Nothing may panic; and since the fuzzer holds no private key, nothing may verify.
#![no_main]

use std::path::Path;
use std::sync::{Arc, LazyLock};

use cedargate_core::config::Config;
use cedargate_server::jwks::{self, Jwks};
use cedargate_server::jwt::Verifier;
use libfuzzer_sys::fuzz_target;

/// The issuer the seeds name.
const ISSUER: &str = "https://idp.fuzz.test";

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let jwks_file = dir.join("../tests/fixtures/keys/jwks.json");
    let yaml = format!(
        "issuers:\n  - issuer: {ISSUER}\n    audiences: [https://api.cedargate.test]\n    algorithms: [ES256, RS256, EdDSA]\n    jwks_file: {}\n",
        jwks_file.display()
    );
    let config = Config::parse(&yaml, &dir.join("cedargate.yaml"))
        .unwrap_or_else(|e| panic!("fuzz config: {e}"));
    let http = jwks::http_client().unwrap_or_else(|e| panic!("http client: {e}"));
    let keys = Arc::new(Jwks::new(&config.issuers, http));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    for issuer in keys.issuers() {
        runtime
            .block_on(issuer.refresh())
            .unwrap_or_else(|e| panic!("test keys: {e}"));
    }
    Verifier::new(keys, 0, 8192)
});

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    // The seeds that carry a good signature expired in 2001 (fuzz/seeds/token/README.md), and
    // the fuzzer holds no private key: an input that verifies is a forgery.
    let verified = VERIFIER.verify_with_known_keys(token);
    assert!(verified.is_err(), "a token verified that no test key signed");
});
