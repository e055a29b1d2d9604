//! The SVA test device's data engine: executes one parsed operation through
//! the IOMMU, page by page.
//!
//! Every 4 KiB chunk is translated on both sides before any byte of it is
//! written, so a faulting access writes nothing. COPY, FILL and COMPARE
//! report a fault with the progress made, so the device can send a page
//! request and resume at the faulting chunk.

use vm_memory::{Bytes, GuestAddress, GuestMemory, Permissions};

use super::atc::{Atc, AtcEntry};
use super::descriptor::{CFLAG_ATC_HIT, CFLAG_MISMATCH, Op, OpError, OpKind};
use crate::dma::{Access, DmaFault, DmaRequest, DmaTranslate, RequestKind};

/// Chunk size: one 4 KiB page.
pub const PAGE_SIZE: u64 = 4096;
const PAGE_BYTES: usize = 4096;

/// How one run of an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Completed successfully.
    Done {
        /// The completion's result field.
        result: u64,
        /// Completion flags.
        flags: u16,
    },
    /// Completed with an error.
    Failed(OpError),
    /// A translation fault in COPY, FILL or COMPARE after `progress` bytes:
    /// the device may send a page request and resume there.
    Faulted {
        /// The fault.
        fault: DmaFault,
        /// The access that faulted.
        access: Access,
        /// Bytes completed before the faulting chunk.
        progress: u64,
    },
}

/// Executes operations for one requester.
pub struct Engine<'a, M> {
    /// Guest memory.
    pub mem: &'a M,
    /// The IOMMU.
    pub iommu: &'a dyn DmaTranslate<M>,
    /// Requester id.
    pub rid: u16,
}

impl<M> std::fmt::Debug for Engine<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("rid", &self.rid).finish()
    }
}

impl<M: GuestMemory> Engine<'_, M> {
    fn translate(
        &self,
        op: &Op,
        addr: u64,
        access: Access,
        kind: RequestKind,
    ) -> Result<u64, DmaFault> {
        self.iommu.translate(
            self.mem,
            &DmaRequest {
                rid: self.rid,
                pasid: op.pasid,
                addr,
                access,
                privileged: op.privileged,
            },
            kind,
        )
    }

    fn plain(&self, op: &Op, addr: u64, access: Access) -> Result<u64, DmaFault> {
        self.translate(op, addr, access, RequestKind::Untranslated)
    }

    /// Runs `op` starting `progress` bytes in.
    pub fn run(&self, op: &Op, progress: u64, atc: &mut Atc, ats_enabled: bool) -> Outcome {
        match op.kind {
            OpKind::Nop => Outcome::Done {
                result: 0,
                flags: 0,
            },
            OpKind::Copy { src, dst, len } => self.copy(op, src, dst, len, progress),
            OpKind::Fill { dst, pattern, len } => self.fill(op, dst, pattern, len, progress),
            OpKind::Compare { a, b, len } => self.compare(op, a, b, len, progress),
            OpKind::Probe { addr, value } => self.probe(op, addr, value),
            OpKind::AtsTranslate { addr, write } => {
                if !ats_enabled {
                    return Outcome::Failed(OpError::AtsDisabled);
                }
                self.ats(op, addr, write, atc)
            }
        }
    }

    fn chunk(a: u64, b: u64, left: u64) -> u64 {
        let room = |x: u64| PAGE_SIZE - (x % PAGE_SIZE);
        room(a).min(room(b)).min(left)
    }

    fn copy(&self, op: &Op, src: u64, dst: u64, len: u64, mut done: u64) -> Outcome {
        while done < len {
            // The descriptor parser checked that neither range wraps.
            let (s, d) = (src.wrapping_add(done), dst.wrapping_add(done));
            let n = Self::chunk(s, d, len - done);
            let sg = match self.plain(op, s, Access::Read) {
                Ok(g) => g,
                Err(fault) => {
                    return Outcome::Faulted {
                        fault,
                        access: Access::Read,
                        progress: done,
                    };
                }
            };
            let dg = match self.plain(op, d, Access::Write) {
                Ok(g) => g,
                Err(fault) => {
                    return Outcome::Faulted {
                        fault,
                        access: Access::Write,
                        progress: done,
                    };
                }
            };
            if let Err(e) = copy_chunk(self.mem, sg, dg, n) {
                return Outcome::Failed(e);
            }
            done += n;
        }
        Outcome::Done {
            result: 0,
            flags: 0,
        }
    }

    fn fill(&self, op: &Op, dst: u64, pattern: u64, len: u64, mut done: u64) -> Outcome {
        let pat = pattern.to_le_bytes();
        let mut buf = [0u8; PAGE_BYTES];
        while done < len {
            let d = dst.wrapping_add(done);
            let n = Self::chunk(d, d, len - done);
            let dg = match self.plain(op, d, Access::Write) {
                Ok(g) => g,
                Err(fault) => {
                    return Outcome::Faulted {
                        fault,
                        access: Access::Write,
                        progress: done,
                    };
                }
            };
            let nb = usize::try_from(n).unwrap_or(PAGE_BYTES).min(PAGE_BYTES);
            let phase = usize::try_from(done % 8).unwrap_or(0);
            for (i, b) in buf[..nb].iter_mut().enumerate() {
                *b = pat[(phase + i) % 8];
            }
            if self.mem.write_slice(&buf[..nb], GuestAddress(dg)).is_err() {
                return Outcome::Failed(OpError::NotMemory { gpa: dg });
            }
            done += n;
        }
        Outcome::Done {
            result: 0,
            flags: 0,
        }
    }

    fn compare(&self, op: &Op, a: u64, b: u64, len: u64, mut done: u64) -> Outcome {
        let mut ba = [0u8; PAGE_BYTES];
        let mut bb = [0u8; PAGE_BYTES];
        while done < len {
            let (x, y) = (a.wrapping_add(done), b.wrapping_add(done));
            let n = Self::chunk(x, y, len - done);
            let nb = usize::try_from(n).unwrap_or(PAGE_BYTES).min(PAGE_BYTES);
            let mut gpas = [0u64; 2];
            for (g, addr) in gpas.iter_mut().zip([x, y]) {
                *g = match self.plain(op, addr, Access::Read) {
                    Ok(g) => g,
                    Err(fault) => {
                        return Outcome::Faulted {
                            fault,
                            access: Access::Read,
                            progress: done,
                        };
                    }
                };
            }
            for (buf, gpa) in [(&mut ba, gpas[0]), (&mut bb, gpas[1])] {
                if self
                    .mem
                    .read_slice(&mut buf[..nb], GuestAddress(gpa))
                    .is_err()
                {
                    return Outcome::Failed(OpError::NotMemory { gpa });
                }
            }
            if let Some(i) = ba[..nb].iter().zip(&bb[..nb]).position(|(p, q)| p != q) {
                return Outcome::Done {
                    result: done + i as u64,
                    flags: CFLAG_MISMATCH,
                };
            }
            done += n;
        }
        Outcome::Done {
            result: len,
            flags: 0,
        }
    }

    fn probe(&self, op: &Op, addr: u64, value: Option<u8>) -> Outcome {
        let access = if value.is_some() {
            Access::Write
        } else {
            Access::Read
        };
        let gpa = match self.plain(op, addr, access) {
            Ok(g) => g,
            Err(f) => return Outcome::Failed(f.into()),
        };
        let mut b = [0u8; 1];
        let r = match value {
            Some(v) => {
                b[0] = v;
                self.mem.write_slice(&b, GuestAddress(gpa))
            }
            None => self.mem.read_slice(&mut b, GuestAddress(gpa)),
        };
        match r {
            Ok(()) => Outcome::Done {
                result: u64::from(b[0]),
                flags: 0,
            },
            Err(_) => Outcome::Failed(OpError::NotMemory { gpa }),
        }
    }

    fn ats(&self, op: &Op, addr: u64, write: bool, atc: &mut Atc) -> Outcome {
        let page = addr & !(PAGE_SIZE - 1);
        let perms = |e: &AtcEntry| e.translated | 1 | if e.write { 2 } else { 0 };
        if let Some(e) = atc.lookup(op.pasid, op.privileged, page, write) {
            return Outcome::Done {
                result: perms(&e),
                flags: CFLAG_ATC_HIT,
            };
        }
        let access = if write { Access::Write } else { Access::Read };
        match self.translate(op, page, access, RequestKind::AtsTranslation) {
            Ok(gpa) => {
                let e = AtcEntry {
                    pasid: op.pasid,
                    privileged: op.privileged,
                    page,
                    translated: gpa & !(PAGE_SIZE - 1),
                    write,
                };
                atc.insert(e);
                Outcome::Done {
                    result: perms(&e),
                    flags: 0,
                }
            }
            Err(f) => Outcome::Failed(f.into()),
        }
    }
}

/// Copies `n` bytes (within one page on each side) guest-physical to
/// guest-physical, with a single memory-to-memory copy when both sides are
/// one host mapping.
fn copy_chunk<M: GuestMemory>(mem: &M, src: u64, dst: u64, n: u64) -> Result<(), OpError> {
    let nb = usize::try_from(n).unwrap_or(PAGE_BYTES).min(PAGE_BYTES);
    let one = |gpa: u64, perm: Permissions| {
        let mut it = mem.get_slices(GuestAddress(gpa), nb, perm).ok()?;
        match it.next() {
            Some(Ok(s)) if s.len() == nb => Some(s),
            _ => None,
        }
    };
    let s = one(src, Permissions::Read).ok_or(OpError::NotMemory { gpa: src })?;
    let d = one(dst, Permissions::Write).ok_or(OpError::NotMemory { gpa: dst })?;
    s.copy_to_volatile_slice(d);
    Ok(())
}
