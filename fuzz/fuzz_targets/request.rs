//! What the request path parses before any key is used: the `Authorization` header
//! (`identity::bearer`, up to the token, whose signature is the server's), the request target
//! (`HttpRequest::split_target`), the host, a `traceparent`, and the record's value cut
//! (`redaction::cut`: never more than the limit, never half a character, always marked).
#![no_main]

use cedargate_core::identity;
use cedargate_core::redaction::{self, CUT_MARKER};
use cedargate_core::request::HttpRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let Ok(token) = identity::bearer(text) {
        assert!(!token.is_empty());
    }
    let (path, query) = HttpRequest::split_target(text);
    assert!(path.len() + query.len() <= text.len());
    assert!(!path.contains('?') && !path.contains('#'), "{path:?}");
    let _ = HttpRequest::normalize_host(text);
    if let Some(id) = redaction::trace_id(text) {
        assert_eq!(id.len(), 32);
    }
    let max = usize::from(max);
    match redaction::cut(text, max) {
        None => assert!(text.len() <= max),
        Some(cut) => {
            let suffix = format!("{CUT_MARKER}{} bytes]", text.len());
            assert!(cut.ends_with(&suffix), "{cut:?}");
            let kept = cut.get(..cut.len() - suffix.len()).unwrap_or_default();
            assert!(kept.len() <= max && text.starts_with(kept), "{kept:?}");
        }
    }
});
