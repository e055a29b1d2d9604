//! Helpers shared by the integration tests: whether KVM is usable here,
//! and how a test that needs it reports a skip.
//!
//! A skip is never silent: it writes one line
//! `SKIPPED: <test>: /dev/kvm not available (<reason>)` straight to the
//! process's standard error (so it shows even where the test harness
//! captures `eprintln!`), counts it in [`skipped_count`], and, when the
//! environment variable `STALEWALK_SKIP_LOG` names a file, appends the same
//! line there so a CI script can count skips across test binaries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// The KVM device the tests need.
pub const KVM_DEVICE: &str = "/dev/kvm";

/// `Ok` when `/dev/kvm` can be opened for reading and writing, else why not.
pub fn kvm_available() -> Result<(), String> {
    device_available(KVM_DEVICE)
}

/// `Ok` when the device at `path` opens for reading and writing.
pub fn device_available(path: &str) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The line printed for a skipped test.
pub fn skip_line(test: &str, what: &str, reason: &str) -> String {
    format!("SKIPPED: {test}: {what} ({reason})\n")
}

fn append_log(path: &std::path::Path, line: &str) {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Records and prints a skip of `test`: `what` is missing, because of
/// `reason`.
pub fn skip(test: &str, what: &str, reason: &str) {
    let line = skip_line(test, what, reason);
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os("STALEWALK_SKIP_LOG") {
        append_log(std::path::Path::new(&path), &line);
    }
    assert!(
        !skips_are_failures(),
        "{REQUIRE_ALL_VAR}=1 (CI, where everything is installed): {}",
        line.trim_end()
    );
}

/// The environment variable that turns every skip into a failure (`.ci/run`
/// sets it: CI installs KVM access, iasl and QEMU, so a skip there means a
/// test silently did not run).
pub const REQUIRE_ALL_VAR: &str = "STALEWALK_REQUIRE_ALL";

/// Whether [`REQUIRE_ALL_VAR`] is set to `1`.
pub fn skips_are_failures() -> bool {
    std::env::var_os(REQUIRE_ALL_VAR).is_some_and(|v| v == "1")
}

/// `true` when KVM is usable; otherwise prints the skip line for `test`
/// and returns `false` (the test should return at once).
pub fn require_kvm(test: &str) -> bool {
    match kvm_available() {
        Ok(()) => true,
        Err(reason) => {
            skip(test, &format!("{KVM_DEVICE} not available"), &reason);
            false
        }
    }
}

/// A zeroed disk image file in the temporary directory, removed on drop.
#[derive(Debug)]
pub struct DiskImage(PathBuf);

impl DiskImage {
    /// A zeroed image of `size` bytes named after `name` and this process.
    pub fn new(name: &str, size: usize) -> Self {
        let p = std::env::temp_dir().join(format!("stalewalk-{name}-{}.img", std::process::id()));
        std::fs::write(&p, vec![0u8; size]).expect("create the disk image");
        DiskImage(p)
    }

    /// Where the image is.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The image's bytes now.
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).expect("read the disk image")
    }
}

impl Drop for DiskImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Skips recorded so far in this process.
pub fn skipped_count() -> usize {
    SKIPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_gives_the_reason() {
        let e = device_available("/nonexistent/kvm").unwrap_err();
        assert_eq!(e, "No such file or directory (os error 2)");
        assert_eq!(
            skip_line("t", "/dev/kvm not available", &e),
            "SKIPPED: t: /dev/kvm not available (No such file or directory (os error 2))\n"
        );
    }

    #[test]
    fn skip_log_appends_lines() {
        let dir = std::env::temp_dir().join(format!("stalewalk-skiplog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("skips.log");
        append_log(&log, "a\n");
        append_log(&log, "b\n");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
