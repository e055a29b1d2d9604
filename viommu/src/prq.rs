//! Page requests (PRI): a device's request is written as a 32-byte page
//! request descriptor into the guest's page-request queue (at PQA, slot PQT),
//! PRS.PPR is set and the page-request event MSI raised; a full queue sets
//! PRO and drops the request. Last-in-group requests become outstanding page
//! groups; the guest's page group response descriptors are matched to them and
//! handed to the device. Outstanding groups are bounded.

use std::collections::HashSet;

use serde::Serialize;
use vm_memory::GuestMemory;

use crate::memory;
use crate::regs::{self, RegisterFile};

/// Most page groups awaiting a response at once. PCIe PRI lets a device
/// allocate at most a few hundred outstanding requests; beyond this a device
/// (or a guest that never answers) could grow host memory without bound.
pub const MAX_OUTSTANDING_GROUPS: usize = 512;

/// Page request descriptor type written into the queue.
pub const PAGE_REQUEST_TYPE: u64 = 1;

/// Response codes of a page group response.
pub mod code {
    /// Success: the device retries the translation.
    pub const SUCCESS: u8 = 0;
    /// Invalid request.
    pub const INVALID_REQUEST: u8 = 1;
    /// Response failure: the device disables PRI.
    pub const FAILURE: u8 = 0xf;
}

/// A device's page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageRequest {
    /// Requester id.
    pub rid: u16,
    /// PASID, if any.
    pub pasid: Option<u32>,
    /// Page address (bits 11:0 ignored).
    pub addr: u64,
    /// Read access requested.
    pub read: bool,
    /// Write access requested.
    pub write: bool,
    /// Execute access requested.
    pub exec: bool,
    /// Privileged-mode access requested.
    pub privileged: bool,
    /// Last request in its page group (LPIG).
    pub last: bool,
    /// Page request group index (9 bits).
    pub group_index: u16,
    /// Private data echoed in the descriptor.
    pub private_data: u64,
}

impl PageRequest {
    /// The 32-byte page request descriptor.
    pub fn encode(&self) -> [u64; 4] {
        let mut qw0 = PAGE_REQUEST_TYPE | (u64::from(self.rid) << 16);
        if let Some(p) = self.pasid {
            qw0 |= (1 << 8) | (u64::from(p & 0xf_ffff) << 32);
            if self.exec {
                qw0 |= 1 << 52;
            }
            if self.privileged {
                qw0 |= 1 << 53;
            }
        }
        let qw1 = u64::from(self.read)
            | (u64::from(self.write) << 1)
            | (u64::from(self.last) << 2)
            | (u64::from(self.group_index & 0x1ff) << 3)
            | (self.addr & !0xfff);
        [qw0, qw1, self.private_data, 0]
    }
}

/// A page group response for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageResponse {
    /// Requester id.
    pub rid: u16,
    /// PASID, if the response carries one.
    pub pasid: Option<u32>,
    /// Page request group index.
    pub group_index: u16,
    /// Response code (see [`code`]).
    pub code: u8,
}

/// Errors submitting a page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrqError {
    /// The unit does not report PRS.
    #[error("page requests not supported")]
    NotSupported,
    /// Translation is off, or the requester's context entry is missing or
    /// has PRE=0.
    #[error("page requests not enabled for rid {rid:#06x}")]
    NotEnabled {
        /// Requester id.
        rid: u16,
    },
    /// The guest has not set up a page-request queue.
    #[error("page-request queue not set up")]
    NoQueue,
    /// The queue was full: PRO set, request dropped.
    #[error("page-request queue full (head {head:#x}, tail {tail:#x})")]
    Overflow {
        /// PQH.
        head: u64,
        /// PQT.
        tail: u64,
    },
    /// Too many page groups await responses.
    #[error("{MAX_OUTSTANDING_GROUPS} page groups already outstanding")]
    TooManyOutstanding,
    /// The queue slot could not be written.
    #[error("page-request queue slot at {gpa:#x} not writable")]
    Memory {
        /// Slot address.
        gpa: u64,
    },
}

/// Outstanding page groups.
#[derive(Debug, Default)]
pub struct PageRequestUnit {
    outstanding: HashSet<(u16, Option<u32>, u16)>,
}

impl PageRequestUnit {
    /// Page groups awaiting a response.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Writes `req` into the queue. On success returns whether the
    /// page-request event should fire (PPR went from 0 to 1).
    pub fn submit<M: GuestMemory>(
        &mut self,
        regs: &mut RegisterFile,
        mem: &M,
        req: &PageRequest,
    ) -> Result<bool, PrqError> {
        let pqa = regs.get64(regs::PQA);
        let base = pqa & !0xfff;
        if base == 0 {
            return Err(PrqError::NoQueue);
        }
        let key = (req.rid, req.pasid, req.group_index & 0x1ff);
        if req.last
            && !self.outstanding.contains(&key)
            && self.outstanding.len() >= MAX_OUTSTANDING_GROUPS
        {
            return Err(PrqError::TooManyOutstanding);
        }
        let size = 4096u64 << (pqa & 7);
        let head = regs.get64(regs::PQH) & 0x7ffe0;
        let tail = regs.get64(regs::PQT) & 0x7ffe0;
        let next = (tail + 32) % size;
        if next == head % size || tail >= size {
            regs.update32(regs::PRS, 2, true);
            regs.update32(regs::FSTS, regs::fsts::PRO, true);
            return Err(PrqError::Overflow { head, tail });
        }
        let slot = base
            .checked_add(tail)
            .ok_or(PrqError::Memory { gpa: base })?;
        let d = req.encode();
        let mut bytes = [0u8; 32];
        for (i, q) in d.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&q.to_le_bytes());
        }
        memory::write_bytes(mem, slot, &bytes).map_err(|_| PrqError::Memory { gpa: slot })?;
        regs.set64(regs::PQT, next);
        if req.last {
            self.outstanding.insert(key);
        }
        let was_pending = regs.get32(regs::PRS) & 1 != 0;
        regs.update32(regs::PRS, 1, true);
        Ok(!was_pending)
    }

    /// Matches a page group response to an outstanding group.
    pub fn respond(
        &mut self,
        rid: u16,
        pasid: Option<u32>,
        group_index: u16,
        code: u8,
    ) -> Option<PageResponse> {
        let key = (rid, pasid, group_index & 0x1ff);
        self.outstanding.remove(&key).then_some(PageResponse {
            rid,
            pasid,
            group_index: key.2,
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::memory::load_u64;
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    fn req(index: u16, last: bool) -> PageRequest {
        PageRequest {
            rid: 0x20,
            pasid: Some(5),
            addr: 0x7000_1234,
            read: true,
            write: true,
            exec: false,
            privileged: false,
            last,
            group_index: index,
            private_data: 0xabc,
        }
    }

    fn setup() -> (RegisterFile, GuestMemoryMmap<()>) {
        let mut regs = RegisterFile::new(&Config::default());
        regs.set64(regs::PQA, 0x10000);
        (
            regs,
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap(),
        )
    }

    #[test]
    fn request_written_at_tail() {
        let (mut regs, mem) = setup();
        let mut u = PageRequestUnit::default();
        assert_eq!(u.submit(&mut regs, &mem, &req(3, true)), Ok(true));
        assert_eq!(regs.get64(regs::PQT), 32);
        assert_eq!(regs.get32(regs::PRS) & 1, 1);
        let qw0 = load_u64(&mem, 0x10000).unwrap();
        assert_eq!(qw0 & 0xff, PAGE_REQUEST_TYPE);
        assert_eq!((qw0 >> 16) & 0xffff, 0x20);
        assert_eq!((qw0 >> 32) & 0xf_ffff, 5);
        assert_ne!(qw0 & (1 << 8), 0);
        let qw1 = load_u64(&mem, 0x10008).unwrap();
        assert_eq!(qw1, 0x7000_1000 | (3 << 3) | 4 | 2 | 1);
        assert_eq!(load_u64(&mem, 0x10010).unwrap(), 0xabc);
        // PPR still set: no second interrupt.
        assert_eq!(u.submit(&mut regs, &mem, &req(4, false)), Ok(false));
        assert_eq!(u.outstanding(), 1);
        assert_eq!(u.respond(0x20, Some(5), 4, 0), None);
        assert_eq!(
            u.respond(0x20, Some(5), 3, 0).map(|r| r.group_index),
            Some(3)
        );
        assert_eq!(u.respond(0x20, Some(5), 3, 0), None, "answered once");
    }

    #[test]
    fn reject_when_queue_full() {
        let (mut regs, mem) = setup();
        let mut u = PageRequestUnit::default();
        for i in 0..127 {
            u.submit(&mut regs, &mem, &req(i, false)).unwrap();
        }
        assert!(matches!(
            u.submit(&mut regs, &mem, &req(0, false)),
            Err(PrqError::Overflow { .. })
        ));
        assert_eq!(regs.get32(regs::PRS) & 2, 2);
        assert_ne!(regs.get32(regs::FSTS) & regs::fsts::PRO, 0);
    }

    #[test]
    fn reject_without_queue_and_beyond_outstanding_bound() {
        let (mut regs, mem) = setup();
        let mut u = PageRequestUnit::default();
        regs.set64(regs::PQA, 0);
        assert_eq!(
            u.submit(&mut regs, &mem, &req(0, true)),
            Err(PrqError::NoQueue)
        );
        regs.set64(regs::PQA, 0x10000 | 7);
        let mem: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100000)]).unwrap();
        for i in 0..MAX_OUTSTANDING_GROUPS {
            let mut r = req(u16::try_from(i % 512).unwrap(), true);
            r.rid = u16::try_from(i / 512).unwrap();
            u.submit(&mut regs, &mem, &r).unwrap();
            regs.set64(regs::PQH, regs.get64(regs::PQT));
        }
        let mut r = req(0, true);
        r.rid = 0x99;
        assert_eq!(
            u.submit(&mut regs, &mem, &r),
            Err(PrqError::TooManyOutstanding)
        );
    }
}
