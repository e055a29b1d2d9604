//! Guest console output that never blocks a vCPU: a bounded buffer that
//! the vCPU threads append to, and a writer thread that drains it into the
//! real output (standard output, standard error or a file) with ordinary
//! blocking writes.
//!
//! A reader that stalls (a pipe nobody reads, a paused pager, a Ctrl-S
//! terminal) blocks only the writer thread. While it is blocked the buffer
//! fills up and further guest bytes are dropped and counted; the run goes
//! on, and `--timeout` and signals still end it. At the end of the run the
//! VM thread waits at most a short flush deadline for the writer
//! ([`SerialBuffer::finish`]); whatever was not written by then is counted
//! as dropped too and the writer is left behind (it ends with the process,
//! or when its write returns). The output descriptor is never switched to
//! non-blocking mode: standard output is shared with the parent shell.
//!
//! Not here: parsing the guest's result lines (`report::GuestLog`, which
//! wraps the [`SerialSink`]).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::seccomp::{self, SeccompMode, ThreadKind};

/// Most bytes held for a stalled reader: enough for a burst of guest output
/// (a Linux boot log is a few hundred KiB) without letting a chatty guest
/// grow the VMM's memory.
pub const SERIAL_BUFFER_BYTES: usize = 1 << 20;
/// Largest chunk the writer takes out of the buffer for one write.
const CHUNK: usize = 64 << 10;
/// How long the end of a run waits for the writer to drain the buffer:
/// short, because a stalled reader must not hold up the report.
pub const FLUSH_DEADLINE: Duration = Duration::from_millis(50);

/// What the serial output did over a run (the report's
/// `serial_dropped_bytes`, `serial_error`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SerialStats {
    /// Bytes the guest wrote.
    pub offered_bytes: u64,
    /// Bytes written to the output by the end of the run.
    pub written_bytes: u64,
    /// Bytes that never reached the output: dropped while the buffer was
    /// full, left in it at the flush deadline, or lost to a write error.
    pub dropped_bytes: u64,
    /// The first write error, if any (e.g. "No space left on device").
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    data: VecDeque<u8>,
    /// Set by `finish`: the writer exits once the buffer is empty.
    closed: bool,
    /// A chunk is taken out and being written.
    writing: bool,
    error: Option<String>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when data arrives or the buffer is closed (to the writer),
    /// and when a chunk is done (to `finish`).
    changed: Condvar,
    offered: AtomicU64,
    written: AtomicU64,
    /// Dropped for lack of room or after a write error.
    dropped: AtomicU64,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread's side: owns the real output.
#[derive(Debug)]
pub struct SerialBuffer {
    shared: Arc<Shared>,
}

/// The vCPU side: a `Write` that copies into the buffer and never blocks
/// (beyond a short lock shared with the writer, never held across I/O).
#[derive(Debug, Clone)]
pub struct SerialSink {
    shared: Arc<Shared>,
}

impl Write for SerialSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        self.shared.offered.fetch_add(len, Ordering::Relaxed);
        let mut st = self.shared.lock();
        let room = if st.error.is_some() || st.closed {
            0
        } else {
            self.shared.capacity.saturating_sub(st.data.len())
        };
        let take = buf.len().min(room);
        st.data.extend(&buf[..take]);
        drop(st);
        let lost = buf.len().saturating_sub(take);
        if lost > 0 {
            self.shared
                .dropped
                .fetch_add(u64::try_from(lost).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        if take > 0 {
            self.shared.changed.notify_all();
        }
        // The guest's UART never sees an error: its bytes are accepted,
        // written later or counted as dropped.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SerialBuffer {
    /// Starts the writer thread ("serial-out") draining into `out`, with
    /// room for `capacity` bytes. The thread installs the serial-writer
    /// seccomp filter under `mode` before it writes anything.
    pub fn start(
        out: Box<dyn Write + Send>,
        capacity: usize,
        mode: SeccompMode,
    ) -> std::io::Result<(SerialBuffer, SerialSink)> {
        let shared = Arc::new(Shared {
            capacity,
            ..Shared::default()
        });
        let for_thread = shared.clone();
        std::thread::Builder::new()
            .name("serial-out".to_string())
            .spawn(move || {
                if let Err(e) = seccomp::install(ThreadKind::SerialWriter, mode) {
                    for_thread.lock().error = Some(e.to_string());
                    for_thread.changed.notify_all();
                    return;
                }
                writer(&for_thread, out);
            })?;
        Ok((
            SerialBuffer {
                shared: shared.clone(),
            },
            SerialSink { shared },
        ))
    }

    /// Ends the output: waits until everything is written or `deadline`
    /// has passed, whichever is first, and returns what happened. Never
    /// waits longer than `deadline`, however the reader behaves.
    pub fn finish(&self, deadline: Duration) -> SerialStats {
        let until = Instant::now() + deadline;
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.changed.notify_all();
        while (!st.data.is_empty() || st.writing) && st.error.is_none() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, until - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let error = st.error.clone();
        drop(st);
        let offered = self.shared.offered.load(Ordering::Relaxed);
        let written = self.shared.written.load(Ordering::Relaxed).min(offered);
        SerialStats {
            offered_bytes: offered,
            written_bytes: written,
            dropped_bytes: offered - written,
            error,
        }
    }
}

/// The writer thread: takes chunks out under the lock, writes them without
/// it. After a write error it stops writing and lets the buffer drain as
/// dropped bytes.
fn writer(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        {
            let mut st = shared.lock();
            st.writing = false;
            shared.changed.notify_all();
            while st.data.is_empty() && !st.closed {
                st = shared.changed.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            if st.data.is_empty() {
                return;
            }
            let n = st.data.len().min(CHUNK);
            chunk.clear();
            chunk.extend(st.data.drain(..n));
            st.writing = true;
        }
        let result = write_counted(&mut *out, &chunk, &shared.written).and_then(|()| {
            // Flush when nothing else is waiting (a file or a buffered
            // writer must not sit on the guest's last line).
            if shared.lock().data.is_empty() {
                out.flush()
            } else {
                Ok(())
            }
        });
        if let Err(e) = result {
            let mut st = shared.lock();
            st.error = Some(e.to_string());
            let left = u64::try_from(st.data.len()).unwrap_or(u64::MAX);
            st.data.clear();
            st.writing = false;
            shared.dropped.fetch_add(left, Ordering::Relaxed);
            shared.changed.notify_all();
            return;
        }
    }
}

/// `write_all` that adds each partial write to `written` as it happens, so
/// a writer blocked half-way still reports what got out.
fn write_counted(out: &mut dyn Write, mut buf: &[u8], written: &AtomicU64) -> std::io::Result<()> {
    while !buf.is_empty() {
        match out.write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
                buf = &buf[n.min(buf.len())..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A `Write` that collects into a shared vector.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);
    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A `Write` that blocks until released (a reader that stalls).
    struct Stalled(Mutex<mpsc::Receiver<()>>);
    impl Write for Stalled {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.lock().unwrap().recv();
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A `Write` that always fails like /dev/full.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn everything_reaches_a_reader_that_keeps_up() {
        let out = Collect::default();
        let (buf, mut sink) =
            SerialBuffer::start(Box::new(out.clone()), 1 << 10, SeccompMode::Off).unwrap();
        let mut want = Vec::new();
        for i in 0..200 {
            let line = format!("line {i}\n");
            want.extend_from_slice(line.as_bytes());
            // Small bursts, so the 1 KiB buffer never overflows.
            assert_eq!(sink.write(line.as_bytes()).unwrap(), line.len());
            std::thread::sleep(Duration::from_micros(200));
        }
        let stats = buf.finish(Duration::from_secs(5));
        assert_eq!(*out.0.lock().unwrap(), want);
        assert_eq!(stats.dropped_bytes, 0, "{stats:?}");
        assert_eq!(stats.written_bytes, u64::try_from(want.len()).unwrap());
        assert_eq!(stats.error, None);
    }

    #[test]
    fn reject_blocking_a_vcpu_on_a_stalled_reader() {
        let (release, rx) = mpsc::channel();
        let (buf, mut sink) =
            SerialBuffer::start(Box::new(Stalled(Mutex::new(rx))), 4096, SeccompMode::Off).unwrap();
        let start = Instant::now();
        // Far more than the buffer holds: every write returns at once.
        for _ in 0..1000 {
            assert_eq!(sink.write(&[b'x'; 1000]).unwrap(), 1000);
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        let t = Instant::now();
        let stats = buf.finish(Duration::from_millis(50));
        let waited = t.elapsed();
        assert!(waited < Duration::from_millis(500), "{waited:?}");
        assert_eq!(stats.offered_bytes, 1_000_000);
        assert_eq!(stats.written_bytes, 0);
        assert_eq!(stats.dropped_bytes, 1_000_000, "{stats:?}");
        let _ = release.send(());
    }

    #[test]
    fn reject_silent_loss_on_a_write_error() {
        let (buf, mut sink) = SerialBuffer::start(Box::new(Full), 4096, SeccompMode::Off).unwrap();
        sink.write_all(b"hello\n").unwrap();
        let stats = buf.finish(Duration::from_secs(5));
        assert!(
            stats
                .error
                .as_deref()
                .is_some_and(|e| e.contains("No space left")),
            "{stats:?}"
        );
        assert_eq!(stats.dropped_bytes, 6);
        // Later output is refused and counted, not queued.
        sink.write_all(b"more").unwrap();
        assert_eq!(buf.finish(Duration::ZERO).dropped_bytes, 10);
    }
}
