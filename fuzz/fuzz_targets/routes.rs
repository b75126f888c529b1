//! Path templates and matching: `PathTemplate::parse` on any text, then `matches`, `covers` and
//! `overlaps` against a second template / path. Input: `template\npath`. Checks what matching
//! promises: a match only on a path starting with `/`, every capture non-empty and named by the
//! template, and a template that covers another also matches every path the other matched.
#![no_main]

use cedargate_core::routes::PathTemplate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (template, path) = text.split_once('\n').unwrap_or((text, "/"));
    let Ok(outer) = PathTemplate::parse(template) else {
        return;
    };
    let names: Vec<&str> = outer.params().collect();
    if let Some(params) = outer.matches(path) {
        assert!(path.starts_with('/'), "matched {path:?}");
        for (name, value) in &params {
            assert!(!value.is_empty(), "empty capture {name} of {path:?}");
            assert!(names.contains(&name.as_str()), "unnamed capture {name}");
        }
    }
    // The path read as a template too: `covers` must agree with `matches` on it.
    if let Ok(inner) = PathTemplate::parse(path) {
        let _ = outer.overlaps(&inner);
        if outer.covers(&inner) && !path.contains('{') {
            assert!(
                outer.matches(path).is_some(),
                "{template} covers {path} but does not match it"
            );
        }
    }
});
