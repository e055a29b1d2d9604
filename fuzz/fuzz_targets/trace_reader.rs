//! The trace reader (`stalewalk trace ...`) on arbitrary files: the header,
//! then every record, strict and with `allow_truncated`.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use stalewalk_tools::trace::reader::{ReadOptions, TraceReader};

/// Most records read per input (the reader streams; this bounds one run).
const MAX_RECORDS: usize = 100_000;

fuzz_target!(|data: &[u8]| {
    for allow_truncated in [false, true] {
        let options = ReadOptions { allow_truncated };
        let Ok(reader) = TraceReader::new(Cursor::new(data), "fuzz".to_string(), options) else {
            continue;
        };
        let _ = reader.header();
        for record in reader.take(MAX_RECORDS) {
            if let Ok(r) = record {
                let _ = r.kind();
            }
        }
    }
});
