//! Config loading: `Config::parse` on any text never panics; it returns a config or problems.
#![no_main]

use std::path::Path;

use cedargate_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Relative paths in the text resolve under a folder that does not exist: nothing is read.
    let _ = Config::parse(
        text,
        Path::new("/nonexistent/cedargate-fuzz/cedargate.yaml"),
    );
});
