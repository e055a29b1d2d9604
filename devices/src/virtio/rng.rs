//! virtio-rng (device type 4): fills the driver's buffers from the host's
//! entropy source (`/dev/urandom`, or any reader for tests).

use std::fs::File;
use std::io::Read;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemory;

use super::chain::{self, PIECE};
use super::{QueueError, TYPE_RNG, VirtioDevice};

/// Queue size.
pub const QUEUE_SIZE: u16 = 64;
/// Bytes given per request at most (a request may be answered short): bounds
/// the host reads one guest buffer can cause.
pub const MAX_BYTES_PER_REQUEST: u64 = PIECE as u64;

/// Errors opening the entropy source.
#[derive(Debug, thiserror::Error)]
pub enum RngError {
    /// `/dev/urandom` could not be opened.
    #[error("cannot open the entropy source: {0}")]
    Open(#[from] std::io::Error),
}

/// The entropy device.
pub struct Rng {
    source: Box<dyn Read + Send>,
    bytes: u64,
    failures: u64,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng")
            .field("bytes", &self.bytes)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Rng {
    /// A device reading `/dev/urandom`.
    pub fn new() -> Result<Self, RngError> {
        Ok(Self::with_source(Box::new(File::open("/dev/urandom")?)))
    }

    /// A device reading `source`.
    pub fn with_source(source: Box<dyn Read + Send>) -> Self {
        Self {
            source,
            bytes: 0,
            failures: 0,
        }
    }

    /// Bytes handed to the guest so far, and requests that failed.
    pub fn counters(&self) -> (u64, u64) {
        (self.bytes, self.failures)
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }
    fn class_code(&self) -> u32 {
        0xff_00_00
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process_queue<M: GuestMemory>(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        let mut buf = vec![0u8; PIECE];
        for _ in 0..queue.size() {
            let Some(c) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = c.head_index();
            let segs: Vec<_> = chain::segments(c)
                .into_iter()
                .filter(|s| s.writable)
                .collect();
            let want = chain::total_len(&segs).min(MAX_BYTES_PER_REQUEST);
            let n = usize::try_from(want).unwrap_or(0);
            let len = match self
                .source
                .read_exact(&mut buf[..n])
                .map_err(|_| ())
                .and_then(|()| chain::write(mem, &segs, 0, &buf[..n]).map_err(|_| ()))
            {
                Ok(()) => {
                    self.bytes += want;
                    u32::try_from(n).unwrap_or(0)
                }
                Err(()) => {
                    self.failures += 1;
                    0
                }
            };
            queue
                .add_used(mem, head, len)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
        Ok(used)
    }
}
