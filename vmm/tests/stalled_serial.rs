//! A guest console reader that stalls (a pipe nobody reads) must not stop
//! `--timeout` from ending the run, nor lose the report: the vCPU never
//! blocks on serial output, and the bytes that could not be written are
//! counted in the report (`vmm.serial_dropped_bytes`).
//!
//! The reader is a FIFO whose pipe buffer is shrunk to one page and never
//! read. Needs `/dev/kvm` (one `SKIPPED:` line otherwise).

mod stall;

use std::time::{Duration, Instant};

use stalewalk_integration::require_kvm;
use stalewalk_vmm::VmError;

#[test]
fn timeout_ends_a_chatty_run_whose_reader_stalls() {
    if !require_kvm("timeout_ends_a_chatty_run_whose_reader_stalls") {
        return;
    }
    let fifo = stall::StalledFifo::new("timeout");
    let cfg = stall::chatter_config(fifo.path(), Some(Duration::from_secs(2)));
    let start = Instant::now();
    let r = stall::run(cfg);
    let took = start.elapsed();
    assert!(
        matches!(r.result, Err(VmError::TimedOut { .. })),
        "{:?}",
        r.result
    );
    assert!(took < Duration::from_secs(4), "the run took {took:?}");
    stall::check_dropped(&r);
}
