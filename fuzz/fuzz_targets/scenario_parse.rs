//! The replay scenario parser (`stalewalk replay FILE`) on arbitrary text,
//! read as lossy UTF-8 as the command reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stalewalk_tools::replay::Scenario;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = Scenario::parse(&text);
});
