//! The files a run writes and the disk it locks, checked before the guest
//! starts:
//! - [`check_paths`]: an output may not name an input (kernel, initrd,
//!   disk) or another output;
//! - [`AtomicFile`]: a report or trace is written to a temporary name in
//!   its directory (created up front, which also proves the directory is
//!   writable) and renamed over the real name only when complete, so a
//!   failed run never truncates an earlier file and two runs on one path
//!   leave one whole file, never a mix;
//! - [`CheckedWriter`]: standard output or error that records a write error
//!   instead of panicking (`println!` panics on a closed pipe or a full
//!   disk).
//!
//! Not here: what is written (`report`, the trace writer) or when
//! (`commands`).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Errors about output paths; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// An output names an input or another output.
    #[error(
        "{output_flag} {output} is the same file as {other_flag} {other}: give each output a path \
         of its own that is no input"
    )]
    Clash {
        /// The output's flag.
        output_flag: &'static str,
        /// Its path.
        output: String,
        /// The other flag.
        other_flag: &'static str,
        /// Its path.
        other: String,
    },
    /// The output cannot be created.
    #[error("{flag} {path}: cannot write there: {source}")]
    Create {
        /// The flag.
        flag: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing or renaming the output failed.
    #[error("{flag} {path}: cannot write it: {source}")]
    Write {
        /// The flag.
        flag: &'static str,
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One path on the command line, for [`check_paths`].
#[derive(Debug, Clone)]
pub struct NamedPath {
    /// The flag that gave it (`--trace`, `--report-file`, `--kernel`, ...).
    pub flag: &'static str,
    /// The path.
    pub path: PathBuf,
}

impl NamedPath {
    /// `path` given with `flag`.
    pub fn new(flag: &'static str, path: impl Into<PathBuf>) -> Self {
        Self {
            flag,
            path: path.into(),
        }
    }
}

/// What identifies a file: its device and inode when it exists, else its
/// canonical directory and name.
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    Inode(u64, u64),
    Named(PathBuf),
    /// A character device, FIFO or socket: many outputs may share
    /// /dev/null or /dev/stdout.
    Special,
}

fn identity(path: &Path) -> Identity {
    match std::fs::metadata(path) {
        Ok(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_fifo() || t.is_socket() {
                Identity::Special
            } else {
                Identity::Inode(m.dev(), m.ino())
            }
        }
        Err(_) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            Identity::Named(dir.join(path.file_name().unwrap_or_default()))
        }
    }
}

/// Refuses an output that names an input or another output (the same
/// file through any path: hard links and symlinks included). Character
/// devices and FIFOs (/dev/null, /dev/stdout) may be shared.
pub fn check_paths(outputs: &[NamedPath], inputs: &[NamedPath]) -> Result<(), OutputError> {
    for (i, out) in outputs.iter().enumerate() {
        let id = identity(&out.path);
        if id == Identity::Special {
            continue;
        }
        let others = inputs.iter().chain(outputs.iter().skip(i + 1));
        for other in others {
            if identity(&other.path) == id {
                return Err(OutputError::Clash {
                    output_flag: out.flag,
                    output: out.path.display().to_string(),
                    other_flag: other.flag,
                    other: other.path.display().to_string(),
                });
            }
        }
    }
    Ok(())
}

/// A file written under a temporary name in its directory and renamed
/// over its real name when complete ([`AtomicFile::commit`]); dropped
/// without a commit, the temporary file is removed and the real name is
/// untouched. A path that is a character device or FIFO (/dev/null,
/// /dev/stdout) is written directly.
#[derive(Debug)]
pub struct AtomicFile {
    flag: &'static str,
    path: PathBuf,
    /// The temporary name; `None` for a device written directly.
    temp: Option<PathBuf>,
    file: Option<File>,
}

/// Tells apart temporary names made by one process.
static TEMP_SERIAL: AtomicU64 = AtomicU64::new(0);

impl AtomicFile {
    /// Creates the temporary file for `path` (the flag names it in
    /// errors): this is the check that the output can be written.
    pub fn create(flag: &'static str, path: &Path) -> Result<Self, OutputError> {
        let create = |source| OutputError::Create {
            flag,
            path: path.display().to_string(),
            source,
        };
        if let Ok(m) = std::fs::metadata(path) {
            let t = m.file_type();
            if t.is_dir() {
                return Err(create(std::io::Error::from(
                    std::io::ErrorKind::IsADirectory,
                )));
            }
            if t.is_char_device() || t.is_fifo() || t.is_socket() {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(create)?;
                return Ok(Self {
                    flag,
                    path: path.to_path_buf(),
                    temp: None,
                    file: Some(file),
                });
            }
        }
        let name = path
            .file_name()
            .ok_or_else(|| create(std::io::Error::other("the path names no file")))?;
        let temp_name = format!(
            ".{}.{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            TEMP_SERIAL.fetch_add(1, Ordering::Relaxed)
        );
        let temp = path.with_file_name(temp_name);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(create)?;
        Ok(Self {
            flag,
            path: path.to_path_buf(),
            temp: Some(temp),
            file: Some(file),
        })
    }

    /// Where the contents go until the commit (the temporary name).
    pub fn temp_path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(&self.path)
    }

    /// The real name.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` and commits.
    pub fn write_all_and_commit(mut self, data: &[u8]) -> Result<(), OutputError> {
        let r = match self.file.as_mut() {
            Some(f) => f.write_all(data).and_then(|()| f.flush()),
            None => Ok(()),
        };
        r.map_err(|source| self.write_error(source))?;
        self.commit()
    }

    /// Renames the temporary file over the real name (after whoever
    /// wrote it through [`AtomicFile::temp_path`] is done).
    pub fn commit(mut self) -> Result<(), OutputError> {
        self.file = None;
        match self.temp.take() {
            None => Ok(()),
            Some(temp) => std::fs::rename(&temp, &self.path).map_err(|source| {
                let _ = std::fs::remove_file(&temp);
                self.write_error(source)
            }),
        }
    }

    fn write_error(&self, source: std::io::Error) -> OutputError {
        OutputError::Write {
            flag: self.flag,
            path: self.path.display().to_string(),
            source,
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(t) = self.temp.take() {
            let _ = std::fs::remove_file(t);
        }
    }
}

/// A writer (standard output or error) that never panics: the first
/// error is kept and later writes are skipped.
#[derive(Debug)]
pub struct CheckedWriter<W: Write> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> CheckedWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner, error: None }
    }

    /// Writes `text` and flushes, unless an earlier write failed.
    pub fn put(&mut self, text: &str) {
        if self.error.is_none() {
            if let Err(e) = self
                .inner
                .write_all(text.as_bytes())
                .and_then(|()| self.inner.flush())
            {
                self.error = Some(e);
            }
        }
    }

    /// The first error, if any.
    pub fn error(&self) -> Option<&std::io::Error> {
        self.error.as_ref()
    }
}

impl<W: Write> Write for CheckedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                self.error = Some(e);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.error.is_none() {
            if let Err(e) = self.inner.flush() {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Writes `text` to standard error, ignoring failure (a message about a
/// failure has nowhere else to go).
pub fn to_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("stalewalk-outputs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn reject_an_output_that_names_an_input_or_another_output() {
        let d = scratch("clash");
        let kernel = d.join("vmlinux");
        std::fs::write(&kernel, b"x").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&kernel, &link).unwrap();
        let inputs = [NamedPath::new("--kernel", &kernel)];
        let e = check_paths(&[NamedPath::new("--trace", &link)], &inputs).unwrap_err();
        assert!(e.to_string().contains("--trace"), "{e}");
        assert!(e.to_string().contains("--kernel"), "{e}");
        // Two outputs on one new path, spelled differently.
        let outs = [
            NamedPath::new("--trace", d.join("out")),
            NamedPath::new("--report-file", d.join(".").join("out")),
        ];
        assert!(matches!(
            check_paths(&outs, &[]),
            Err(OutputError::Clash { .. })
        ));
        // Distinct paths and shared devices pass.
        let outs = [
            NamedPath::new("--trace", d.join("t")),
            NamedPath::new("--report-file", d.join("r")),
            NamedPath::new("--serial", "/dev/null"),
            NamedPath::new("--report-file", "/dev/null"),
        ];
        check_paths(&outs, &inputs).unwrap();
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn reject_truncating_an_earlier_file_before_the_commit() {
        let d = scratch("atomic");
        let p = d.join("r.json");
        std::fs::write(&p, b"old").unwrap();
        let f = AtomicFile::create("--report-file", &p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        // Dropped without a commit (a failed run): old contents, no litter.
        drop(f);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        // Two writers on one path: each commit replaces the file whole.
        let a = AtomicFile::create("--trace", &p).unwrap();
        let b = AtomicFile::create("--trace", &p).unwrap();
        assert_ne!(a.temp_path(), b.temp_path());
        b.write_all_and_commit(b"second").unwrap();
        a.write_all_and_commit(b"first, longer").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"first, longer");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn reject_an_output_in_a_missing_directory_or_on_a_directory() {
        let d = scratch("missing");
        let e = AtomicFile::create("--report-file", &d.join("no/such/r.json")).unwrap_err();
        assert!(e.to_string().starts_with("--report-file "), "{e}");
        assert!(AtomicFile::create("--trace", &d).is_err());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_device_is_written_directly_and_its_errors_reported() {
        let f = AtomicFile::create("--report-file", Path::new("/dev/full")).unwrap();
        let e = f.write_all_and_commit(b"{}").unwrap_err();
        assert!(e.to_string().contains("No space left"), "{e}");
        AtomicFile::create("--report-file", Path::new("/dev/null"))
            .unwrap()
            .write_all_and_commit(b"{}")
            .unwrap();
    }

    #[test]
    fn checked_writer_keeps_the_first_error_and_never_panics() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut w = CheckedWriter::new(full);
        w.put("hello\n");
        w.put("again\n");
        assert_eq!(
            w.error().and_then(std::io::Error::raw_os_error),
            Some(libc::ENOSPC)
        );
    }
}
