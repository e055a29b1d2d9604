//! A termination signal ends a run whose console reader stalls, within
//! 100 ms, with the report written. In a test binary of its own: the
//! signal is process-wide and ends every later run of the process.
//! Needs `/dev/kvm` (one `SKIPPED:` line otherwise).

mod stall;

use std::time::{Duration, Instant};

use stalewalk_integration::require_kvm;
use stalewalk_vmm::VmError;

#[test]
fn sigquit_ends_a_chatty_run_whose_reader_stalls() {
    if !require_kvm("sigquit_ends_a_chatty_run_whose_reader_stalls") {
        return;
    }
    stalewalk_vmm::vm::install_termination_handlers().unwrap();
    let fifo = stall::StalledFifo::new("signal");
    let cfg = stall::chatter_config(fifo.path(), Some(Duration::from_secs(60)));
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Long enough for the guest to fill the FIFO and the buffer's
        // first pages.
        std::thread::sleep(Duration::from_millis(1500));
        let at = Instant::now();
        // SAFETY: kill(2) on our own process; the handler only records it.
        unsafe { libc::kill(libc::getpid(), libc::SIGQUIT) };
        sent_tx.send(at).unwrap();
    });
    let r = stall::run(cfg);
    let ended = Instant::now();
    let sent = sent_rx.recv().unwrap();
    let latency = ended.duration_since(sent);
    eprintln!("signal to end of run (report built): {latency:?}");
    match &r.result {
        Err(VmError::Interrupted { signal }) => assert_eq!(*signal, libc::SIGQUIT),
        other => panic!("{other:?}"),
    }
    // 100 ms is the contract; a loaded CI machine gets some slack.
    assert!(latency < Duration::from_millis(500), "{latency:?}");
    stall::check_dropped(&r);
    let report = r.report.as_ref().unwrap();
    assert!(report.ended_by.contains("SIGQUIT"), "{}", report.ended_by);
    // Every later run in this process ends at once too.
    let fifo = stall::StalledFifo::new("after");
    let start = Instant::now();
    let r = stall::run(stall::chatter_config(fifo.path(), None));
    assert!(
        matches!(r.result, Err(VmError::Interrupted { .. })),
        "{:?}",
        r.result
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}
