//! The advisory lock a run holds on its `--disk` image (`flock`: shared
//! when the guest sees it read-only, exclusive when writable), so two runs
//! can never write one image at once; several read-only runs may share it.
//! The lock is taken during set-up and dropped with the run.
//!
//! Not here: reading and writing the image (`devices::virtio::block`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Why the disk could not be locked; each names the image.
#[derive(Debug, thiserror::Error)]
pub enum DiskLockError {
    /// Another process holds the disk image.
    #[error(
        "--disk {path}: {holder} has it {how} (advisory lock): stop that run, give another \
         image, or add ,ro to both runs to share it read-only"
    )]
    DiskBusy {
        /// The image.
        path: String,
        /// Who (always "another run": flock does not say who).
        holder: &'static str,
        /// "open read-write" or "open".
        how: &'static str,
    },
    /// The disk image cannot be opened or locked.
    #[error("--disk {path}: {source}")]
    Disk {
        /// The image.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// An advisory lock on a disk image, held until dropped.
#[derive(Debug)]
pub struct DiskLock {
    _file: File,
}

impl DiskLock {
    /// Locks `path`: shared when `read_only`, exclusive otherwise; fails
    /// at once (never waits) when another holder conflicts.
    pub fn acquire(path: &Path, read_only: bool) -> Result<Self, DiskLockError> {
        let file = File::open(path).map_err(|source| DiskLockError::Disk {
            path: path.display().to_string(),
            source,
        })?;
        let op = if read_only {
            libc::LOCK_SH
        } else {
            libc::LOCK_EX
        };
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
                DiskLockError::DiskBusy {
                    path: path.display().to_string(),
                    holder: "another run",
                    how: if read_only { "open read-write" } else { "open" },
                }
            } else {
                DiskLockError::Disk {
                    path: path.display().to_string(),
                    source: e,
                }
            });
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_a_second_writer_on_a_disk() {
        let d = scratch();
        let img = d.join("disk.img");
        std::fs::write(&img, [0u8; 512]).unwrap();
        let rw = DiskLock::acquire(&img, false).unwrap();
        let e = DiskLock::acquire(&img, false).unwrap_err();
        assert!(matches!(e, DiskLockError::DiskBusy { .. }), "{e}");
        assert!(DiskLock::acquire(&img, true).is_err());
        drop(rw);
        let ro1 = DiskLock::acquire(&img, true).unwrap();
        let _ro2 = DiskLock::acquire(&img, true).unwrap();
        assert!(DiskLock::acquire(&img, false).is_err());
        drop(ro1);
        let _ = std::fs::remove_dir_all(d);
    }

    fn scratch() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("stalewalk-disklock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
