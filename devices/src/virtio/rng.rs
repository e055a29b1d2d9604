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

/// What the entropy device counted, each figure at the event (shown in the
/// end-of-run report under the device's `device_counters`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RngCounters {
    /// Requests (descriptor chains) answered with entropy.
    pub requests: u64,
    /// Bytes of entropy written into the guest's buffers.
    pub bytes: u64,
    /// Requests whose buffers could not be written (unmapped, or refused by
    /// the vIOMMU): rejected guest actions.
    pub rejected_guest_actions: u64,
    /// Requests the host's entropy source failed (answered with 0 bytes).
    pub source_errors: u64,
}

/// The entropy device.
pub struct Rng {
    source: Box<dyn Read + Send>,
    counters: RngCounters,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng")
            .field("counters", &self.counters)
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
            counters: RngCounters::default(),
        }
    }

    /// What the device counted so far.
    pub fn counters(&self) -> RngCounters {
        self.counters
    }
}

impl VirtioDevice for Rng {
    fn device_counters(&self) -> super::DeviceCounters {
        super::DeviceCounters::Rng(self.counters)
    }
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
            let len = if let Err(e) = self.source.read_exact(&mut buf[..n]) {
                log::debug!("virtio-rng: entropy source: {e}");
                self.counters.source_errors += 1;
                0
            } else if let Err(e) = chain::write(mem, &segs, 0, &buf[..n]) {
                log::debug!("virtio-rng: {e}");
                self.counters.rejected_guest_actions += 1;
                0
            } else {
                self.counters.requests += 1;
                self.counters.bytes += want;
                u32::try_from(n).unwrap_or(0)
            };
            queue
                .add_used(mem, head, len)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
        Ok(used)
    }
}
