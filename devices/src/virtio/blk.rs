//! virtio-blk (device type 2) over a raw image file, optionally read-only.
//!
//! Requests: IN, OUT, FLUSH and GET_ID; anything else completes with
//! UNSUPP. Every guest buffer access goes through the device's DMA memory
//! (the vIOMMU when translation is on); a request whose buffers cannot be
//! reached completes with IOERR, and nothing is written for it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use super::chain::{self, PIECE, Segment};
use super::{QueueError, TYPE_BLOCK, VirtioDevice};

/// Sector size.
pub const SECTOR: u64 = 512;
/// Feature: SEG_MAX in config.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: read-only device.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: flush command.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Queue size.
pub const QUEUE_SIZE: u16 = 128;
/// Segments per request announced in SEG_MAX (queue size minus header and
/// status descriptors).
pub const SEG_MAX: u32 = 126;
/// Largest data transfer of one request (16 MiB): bounds the work of one
/// descriptor chain.
pub const MAX_REQUEST_BYTES: u64 = 16 << 20;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
const ID: &[u8; 20] = b"stalewalk-blk\0\0\0\0\0\0\0";

/// Errors opening the image and handling requests. The status byte the
/// guest sees comes from [`RequestError::status`].
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened.
    #[error("cannot open block image {path}: {source}")]
    Open {
        /// The path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Guest buffers unreachable or too short.
    #[error(transparent)]
    Chain(#[from] chain::ChainError),
    /// Sector range beyond the image, or the request is too large.
    #[error("request at sector {sector} for {len} bytes is out of range")]
    Range {
        /// First sector.
        sector: u64,
        /// Bytes.
        len: u64,
    },
    /// Write to a read-only image.
    #[error("write to a read-only image")]
    ReadOnly,
    /// Host I/O error.
    #[error("image I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Unknown request type.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    /// No writable status byte.
    #[error("chain has no status byte")]
    NoStatus,
}

impl RequestError {
    /// Whether the guest caused it (everything but a host I/O error).
    pub fn guest_caused(&self) -> bool {
        !matches!(self, Self::Io(_))
    }

    /// The virtio-blk status for this error.
    pub fn status(&self) -> u8 {
        match self {
            Self::Unsupported(_) => S_UNSUPP,
            _ => S_IOERR,
        }
    }
}

/// Counters for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BlockCounters {
    /// Bytes read from the image into the guest.
    pub read_bytes: u64,
    /// Bytes written to the image.
    pub write_bytes: u64,
    /// Requests completed OK.
    pub requests_ok: u64,
    /// Requests completed with an error status (or none).
    pub requests_failed: u64,
    /// Of those, the requests the guest got wrong (bad buffers, sector
    /// range, read-only image, unknown type, no status byte), counted where
    /// they are refused; the rest are host I/O errors.
    pub rejected_guest_actions: u64,
}

/// The block device.
#[derive(Debug)]
pub struct Block {
    file: File,
    capacity: u64,
    read_only: bool,
    counters: BlockCounters,
}

impl Block {
    /// Opens `path` as a raw image (the size is rounded down to sectors).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let err = |source| BlockError::Open {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        Ok(Self {
            file,
            capacity: len / SECTOR,
            read_only,
            counters: BlockCounters::default(),
        })
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Counters.
    pub fn counters(&self) -> BlockCounters {
        self.counters
    }

    fn range(&self, sector: u64, len: u64) -> Result<u64, RequestError> {
        let bad = || RequestError::Range { sector, len };
        let start = sector.checked_mul(SECTOR).ok_or_else(bad)?;
        let end = start.checked_add(len).ok_or_else(bad)?;
        if len > MAX_REQUEST_BYTES || end > self.capacity * SECTOR {
            return Err(bad());
        }
        Ok(start)
    }

    /// Executes one request; returns the bytes written to guest buffers
    /// (not counting the status byte).
    fn execute<M: GuestMemory>(
        &mut self,
        mem: &M,
        readable: &[Segment],
        writable: &[Segment],
    ) -> Result<u32, RequestError> {
        let mut hdr = [0u8; 16];
        chain::read(mem, readable, 0, &mut hdr)?;
        let ty = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let mut s = [0u8; 8];
        s.copy_from_slice(&hdr[8..16]);
        let sector = u64::from_le_bytes(s);
        let data_in = chain::total_len(writable).saturating_sub(1);
        let mut buf = vec![0u8; PIECE];
        match ty {
            T_IN => {
                let start = self.range(sector, data_in)?;
                let mut done = 0u64;
                while done < data_in {
                    let n = usize::try_from((data_in - done).min(PIECE as u64)).unwrap_or(PIECE);
                    self.file.read_exact_at(&mut buf[..n], start + done)?;
                    chain::write(mem, writable, done, &buf[..n])?;
                    done += n as u64;
                }
                self.counters.read_bytes += data_in;
                Ok(u32::try_from(data_in).unwrap_or(u32::MAX))
            }
            T_OUT => {
                if self.read_only {
                    return Err(RequestError::ReadOnly);
                }
                let len = chain::total_len(readable).saturating_sub(16);
                let start = self.range(sector, len)?;
                let mut done = 0u64;
                // Gather the whole request before writing any of it, so a
                // request with an unreachable buffer writes nothing.
                let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
                while done < len {
                    let n = usize::try_from((len - done).min(PIECE as u64)).unwrap_or(PIECE);
                    chain::read(mem, readable, 16 + done, &mut buf[..n])?;
                    data.extend_from_slice(&buf[..n]);
                    done += n as u64;
                }
                self.file.write_all_at(&data, start)?;
                self.counters.write_bytes += len;
                Ok(0)
            }
            T_FLUSH => {
                if !self.read_only {
                    self.file.sync_data()?;
                }
                Ok(0)
            }
            T_GET_ID => {
                let n = usize::try_from(data_in.min(ID.len() as u64)).unwrap_or(0);
                chain::write(mem, writable, 0, &ID[..n])?;
                Ok(u32::try_from(n).unwrap_or(0))
            }
            other => Err(RequestError::Unsupported(other)),
        }
    }

    fn request<M: GuestMemory>(&mut self, mem: &M, segs: &[Segment]) -> u32 {
        let split = segs.iter().position(|s| s.writable).unwrap_or(segs.len());
        let (readable, writable) = segs.split_at(split);
        // The status byte is the last byte of the last writable buffer.
        let status_addr = writable
            .last()
            .filter(|s| s.len > 0 && writable.iter().all(|w| w.writable))
            .and_then(|s| s.addr.checked_add(u64::from(s.len) - 1));
        let Some(status_addr) = status_addr else {
            log::debug!("virtio-blk: {}", RequestError::NoStatus);
            self.counters.requests_failed += 1;
            self.counters.rejected_guest_actions += 1;
            return 0;
        };
        let (status, written) = match self.execute(mem, readable, writable) {
            Ok(n) => (S_OK, n),
            Err(e) => {
                log::debug!("virtio-blk: {e}");
                if e.guest_caused() {
                    self.counters.rejected_guest_actions += 1;
                }
                (e.status(), 0)
            }
        };
        if status == S_OK {
            self.counters.requests_ok += 1;
        } else {
            self.counters.requests_failed += 1;
        }
        if mem
            .write_slice(&[status], GuestAddress(status_addr))
            .is_err()
        {
            log::debug!("virtio-blk: status byte at {status_addr:#x} unreachable");
            return written;
        }
        written.saturating_add(1)
    }
}

impl VirtioDevice for Block {
    fn device_counters(&self) -> super::DeviceCounters {
        super::DeviceCounters::Block(self.counters)
    }
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn class_code(&self) -> u32 {
        0x01_80_00
    }
    fn features(&self) -> u64 {
        let ro = if self.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_FLUSH | ro
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut c = [0u8; 24];
        c[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        c[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        c[20..24].copy_from_slice(&u32::try_from(SECTOR).unwrap_or(512).to_le_bytes());
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        data.fill(0);
        for (i, b) in data.iter_mut().enumerate() {
            if let Some(v) = start.checked_add(i).and_then(|o| c.get(o)) {
                *b = *v;
            }
        }
    }
    fn process_queue<M: GuestMemory>(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &M,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        // One pass over the ring at most per notification.
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop_descriptor_chain(mem) else {
                break;
            };
            let head = chain.head_index();
            let segs = chain::segments(chain);
            let len = self.request(mem, &segs);
            queue
                .add_used(mem, head, len)
                .map_err(QueueError::UsedRing)?;
            used = true;
        }
        Ok(used)
    }
}
