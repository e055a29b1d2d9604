//! Shared by the stalled-reader tests: a FIFO that nobody reads, and a
//! chatty mini-guest run writing its console into it.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stalewalk_vmm::config::SerialMode;
use stalewalk_vmm::{RunHooks, RunResult, VmConfig};

/// A FIFO with a reader that never reads, its pipe buffer one page.
pub struct StalledFifo {
    dir: PathBuf,
    path: PathBuf,
    reader: std::sync::mpsc::Receiver<std::fs::File>,
    _keep: Option<std::fs::File>,
}

impl StalledFifo {
    /// Makes the FIFO; its reader opens it (and shrinks it) once the run
    /// opens the writing end.
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("stalewalk-stall-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; the result is checked.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, reader) = std::sync::mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&p).unwrap();
            // SAFETY: fcntl on a descriptor we own; one page is the least
            // a pipe holds.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
            let _ = tx.send(f);
        });
        Self {
            dir,
            path,
            reader,
            _keep: None,
        }
    }

    /// The FIFO's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StalledFifo {
    fn drop(&mut self) {
        // The reader opened once the run did; hold it until here, unread.
        self._keep = self.reader.try_recv().ok();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `chatter` scenario (serial lines forever) with its console in
/// `console`.
pub fn chatter_config(console: &Path, timeout: Option<Duration>) -> VmConfig {
    VmConfig {
        cmdline: "scenario=chatter".to_string(),
        serial: SerialMode::File(console.to_path_buf()),
        timeout,
        ..Default::default()
    }
}

/// Runs `cfg` on a thread of its own (the VM thread's filter stays off
/// the test's).
pub fn run(cfg: VmConfig) -> RunResult {
    std::thread::spawn(move || stalewalk_vmm::run_with_report(&cfg, RunHooks::default()))
        .join()
        .unwrap()
}

/// The report counts the bytes the stalled reader never got, and says so
/// consistently with the run's own figures.
pub fn check_dropped(r: &RunResult) {
    let report = r.report.as_ref().expect("a report");
    assert!(r.serial.offered_bytes > 8192, "{:?}", r.serial);
    assert!(r.serial.written_bytes <= 8192, "{:?}", r.serial);
    assert!(r.serial.dropped_bytes > 0, "{:?}", r.serial);
    assert_eq!(report.vmm.serial_dropped_bytes, r.serial.dropped_bytes);
    assert_eq!(
        report.guest.values.get("chattering").map(String::as_str),
        Some("1")
    );
}
