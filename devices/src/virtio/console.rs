//! virtio-console (device type 3), single port, no multiport: queue 0
//! (receiveq) carries host input to the guest, queue 1 (transmitq) guest
//! output to a host writer.
//!
//! Host input is buffered up to [`MAX_PENDING_INPUT`] bytes (older bytes
//! are kept, newer dropped and counted) until the guest posts receive
//! buffers; the vmm feeds it with [`Console::push_input`] and then kicks
//! queue 0 on the transport.

use std::collections::VecDeque;
use std::io::Write;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemory;

use super::chain::{self, PIECE};
use super::{QueueError, TYPE_CONSOLE, VirtioDevice};

/// Queue size.
pub const QUEUE_SIZE: u16 = 64;
/// Host input kept while the guest has no receive buffers (64 KiB), so a
/// guest that never reads cannot make us grow.
pub const MAX_PENDING_INPUT: usize = 64 * 1024;
/// Bytes taken from one transmit buffer chain at most.
pub const MAX_TX_PER_CHAIN: u64 = PIECE as u64;

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsoleCounters {
    /// Bytes the guest wrote.
    pub tx_bytes: u64,
    /// Bytes given to the guest.
    pub rx_bytes: u64,
    /// Input bytes dropped because the buffer was full.
    pub rx_dropped: u64,
    /// Chains that could not be read or written (guest buffers unmapped
    /// or refused by the vIOMMU): rejected guest actions.
    pub rejected_guest_actions: u64,
}

/// The console device.
pub struct Console {
    out: Box<dyn Write + Send>,
    input: VecDeque<u8>,
    counters: ConsoleCounters,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("pending_input", &self.input.len())
            .field("counters", &self.counters)
            .finish()
    }
}

impl Console {
    /// A console writing guest output to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            input: VecDeque::new(),
            counters: ConsoleCounters::default(),
        }
    }

    /// Queues host input for the guest.
    pub fn push_input(&mut self, bytes: &[u8]) {
        let room = MAX_PENDING_INPUT - self.input.len();
        let take = bytes.len().min(room);
        self.input.extend(&bytes[..take]);
        self.counters.rx_dropped += (bytes.len() - take) as u64;
    }

    /// Counters.
    pub fn counters(&self) -> ConsoleCounters {
        self.counters
    }

    fn receive<M: GuestMemory>(&mut self, queue: &mut Queue, mem: &M) -> Result<bool, QueueError> {
        let mut used = false;
        for _ in 0..queue.size() {
            if self.input.is_empty() {
                break;
            }
            let Some(c) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = c.head_index();
            let segs: Vec<_> = chain::segments(c)
                .into_iter()
                .filter(|s| s.writable)
                .collect();
            let n = usize::try_from(chain::total_len(&segs))
                .unwrap_or(0)
                .min(self.input.len())
                .min(PIECE);
            let bytes: Vec<u8> = self.input.iter().take(n).copied().collect();
            let len = match chain::write(mem, &segs, 0, &bytes) {
                Ok(()) => {
                    self.input.drain(..n);
                    self.counters.rx_bytes += n as u64;
                    u32::try_from(n).unwrap_or(0)
                }
                Err(e) => {
                    log::debug!("virtio-console: {e}");
                    self.counters.rejected_guest_actions += 1;
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

    fn transmit<M: GuestMemory>(&mut self, queue: &mut Queue, mem: &M) -> Result<bool, QueueError> {
        let mut used = false;
        for _ in 0..queue.size() {
            let Some(c) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = c.head_index();
            let segs: Vec<_> = chain::segments(c)
                .into_iter()
                .filter(|s| !s.writable)
                .collect();
            let n = usize::try_from(chain::total_len(&segs).min(MAX_TX_PER_CHAIN)).unwrap_or(0);
            let mut buf = vec![0u8; n];
            match chain::read(mem, &segs, 0, &mut buf) {
                Ok(()) => {
                    // Host output errors are not the guest's problem.
                    let _ = self.out.write_all(&buf).and_then(|()| self.out.flush());
                    self.counters.tx_bytes += n as u64;
                }
                Err(e) => {
                    log::debug!("virtio-console: {e}");
                    self.counters.rejected_guest_actions += 1;
                }
            }
            queue.add_used(mem, head, 0).map_err(QueueError::UsedRing)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Console {
    fn device_counters(&self) -> super::DeviceCounters {
        super::DeviceCounters::Console(self.counters)
    }
    fn device_type(&self) -> u32 {
        TYPE_CONSOLE
    }
    fn class_code(&self) -> u32 {
        0x07_80_00
    }
    fn features(&self) -> u64 {
        0
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn process_queue<M: GuestMemory>(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, QueueError> {
        match index {
            0 => self.receive(queue, mem),
            1 => self.transmit(queue, mem),
            _ => Ok(false),
        }
    }
}
