//! Decision-record reading, as `cedargate logs` and `replay` do it: `records::parse_line` on any
//! line, and the readable line `logs` prints for a record, never panic.
#![no_main]

use cedargate_cli::logs;
use cedargate_cli::records::{self, Line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Line::Record(record) = records::parse_line(text) {
        let _ = logs::line(&record);
        let _ = record.cedar_cut();
        let _ = records::record_time(&record);
    }
});
