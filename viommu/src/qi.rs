//! The invalidation queue: descriptors fetched from the ring at IQA between
//! IQH and IQT when IQT is written, 256-bit (IQA.DW=1) or 128-bit, decoded
//! (see `descriptor`) and applied to the caches. Processing is bounded per
//! tail write by the queue size. A malformed descriptor or tail stops the
//! queue with FSTS.IQE and IQER, leaving IQH at the offending descriptor,
//! until software clears IQE.

use vm_memory::GuestMemory;

use crate::Viommu;
use crate::cache::Removed;
use crate::event::Event;
use crate::fault;
use crate::memory;
use crate::regs::{self, fsts, gcmd};

// The descriptor format lives in `descriptor`; its types stay reachable
// here for existing users of `viommu::qi::...`.
pub use crate::descriptor::{
    ContextGranularity, Descriptor, DevTlbInvalidation, IotlbGranularity, PasidCacheGranularity,
    PiotlbGranularity, QiError, decode, encode, kind,
};

/// Most descriptors handled per IQT write: the largest queue (QS=7, 128-bit
/// descriptors) holds this many, and each is consumed once, so a guest cannot
/// make one register write run forever.
pub const MAX_DESCRIPTORS_PER_TAIL_WRITE: u32 = (4096 << 7) / 16;

impl Viommu {
    /// Processes descriptors from IQH up to IQT (bounded), stopping on error.
    pub(crate) fn process_queue<M: GuestMemory>(&mut self, mem: &M) {
        if self.regs.get32(regs::GSTS) & gcmd::QIE == 0 {
            return;
        }
        if self.regs.get32(regs::FSTS) & (fsts::IQE | fsts::ITE) != 0 {
            return;
        }
        let iqa = self.regs.get64(regs::IQA);
        let wide = iqa & (1 << 11) != 0;
        let dsize: u64 = if wide { 32 } else { 16 };
        let qsize = 4096u64 << (iqa & 7);
        let base = iqa & !0xfff;
        let tail = self.regs.get64(regs::IQT) & 0x7fff0;
        if tail >= qsize || tail % dsize != 0 {
            self.queue_error(
                QiError::Tail { tail, size: qsize },
                self.regs.get64(regs::IQH),
            );
            return;
        }
        let mut reader = memory::Reader::new(mem);
        let mut head = self.regs.get64(regs::IQH) % qsize;
        let mut budget = MAX_DESCRIPTORS_PER_TAIL_WRITE;
        while head != tail && budget > 0 {
            budget -= 1;
            let Some(gpa) = base.checked_add(head) else {
                self.queue_error(QiError::Fetch { gpa: base }, head);
                return;
            };
            let mut qw = [0u64; 4];
            let n = if wide { 4 } else { 2 };
            for (i, q) in qw.iter_mut().take(n).enumerate() {
                let v = gpa
                    .checked_add(8 * i as u64)
                    .ok_or(memory::MemoryError::Unbacked(gpa))
                    .and_then(|a| reader.load_u64(a));
                match v {
                    Ok(v) => *q = v,
                    Err(_) => {
                        self.queue_error(QiError::Fetch { gpa }, head);
                        return;
                    }
                }
            }
            let slot = u32::try_from(head / dsize).unwrap_or(u32::MAX);
            let result = match decode(qw) {
                Ok(d) => self.execute(mem, d, Some(slot)),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.queue_error(e, head);
                return;
            }
            head = (head + dsize) % qsize;
            self.regs.set64(regs::IQH, head);
        }
    }

    fn queue_error(&mut self, e: QiError, head: u64) {
        self.regs.set64(regs::IQH, head);
        let iqer = (self.regs.get64(regs::IQER) & !0xf) | e.iqei();
        self.regs.set64(regs::IQER, iqer);
        self.regs.update32(regs::FSTS, fsts::IQE, true);
        self.counters.queue_errors += 1;
        self.emit(&Event::QueueError {
            kind: "iqe",
            head: u32::try_from(head >> 4).unwrap_or(u32::MAX),
            iqer,
        });
        self.fault_event();
    }

    /// Applies one descriptor (from the queue, or built from a register
    /// write with `slot` None).
    pub(crate) fn execute<M: GuestMemory>(
        &mut self,
        mem: &M,
        d: Descriptor,
        slot: Option<u32>,
    ) -> Result<(), QiError> {
        self.memo = None;
        let c = &mut self.counters;
        let mut removed = Removed::default();
        match d {
            Descriptor::ContextCache { granularity } => {
                c.invalidations.context += 1;
                removed.context = match granularity {
                    ContextGranularity::Global => {
                        c.granularity.context_global += 1;
                        self.caches.context_global()
                    }
                    ContextGranularity::Domain { did } => {
                        c.granularity.context_domain += 1;
                        self.caches.context_domain(did)
                    }
                    ContextGranularity::Device { sid, fm, .. } => {
                        c.granularity.context_device += 1;
                        self.caches.context_device(sid, fm)
                    }
                };
            }
            Descriptor::Iotlb { granularity, .. } => {
                c.invalidations.iotlb += 1;
                removed = match granularity {
                    IotlbGranularity::Global => {
                        c.granularity.iotlb_global += 1;
                        self.caches.iotlb_global()
                    }
                    IotlbGranularity::Domain { did } => {
                        c.granularity.iotlb_domain += 1;
                        self.caches.iotlb_domain(did)
                    }
                    IotlbGranularity::Page { did, addr, am, ih } => {
                        c.granularity.iotlb_page += 1;
                        if ih {
                            c.granularity.ih1 += 1
                        } else {
                            c.granularity.ih0 += 1
                        }
                        self.caches.iotlb_page(did, addr, am, ih)
                    }
                };
            }
            Descriptor::DevTlb { inv, .. } => {
                c.invalidations.devtlb += 1;
                if inv.size == u64::MAX {
                    c.granularity.devtlb_all += 1;
                }
                self.push_devtlb(inv);
            }
            Descriptor::Iec { .. } => c.invalidations.iec += 1,
            Descriptor::Wait {
                sw,
                interrupt,
                fence,
                pd,
                status_data,
                status_addr,
            } => {
                c.invalidations.wait += 1;
                c.granularity.wait_sw += u64::from(sw);
                c.granularity.wait_if += u64::from(interrupt);
                c.granularity.wait_fn += u64::from(fence);
                c.granularity.wait_pd += u64::from(pd);
                // Everything before this descriptor is complete (processing
                // is synchronous), so fence and drain need nothing more.
                if sw {
                    memory::store_u32(mem, status_addr, status_data)
                        .map_err(|_| QiError::StatusWrite { gpa: status_addr })?;
                }
                if interrupt && self.regs.get32(regs::ICS) & 1 == 0 {
                    self.regs.update32(regs::ICS, 1, true);
                    if let Some(m) = fault::signal(&mut self.regs, regs::IECTL) {
                        self.push_msi(m);
                    }
                }
            }
            Descriptor::Piotlb {
                did,
                pasid,
                granularity,
            } => {
                c.invalidations.piotlb += 1;
                self.pending.count_piotlb(&mut self.breakdowns, pasid);
                removed = match granularity {
                    PiotlbGranularity::Pasid => {
                        c.granularity.piotlb_pasid += 1;
                        self.caches.piotlb_pasid(did, pasid)
                    }
                    PiotlbGranularity::Page { addr, am, ih } => {
                        c.granularity.piotlb_page += 1;
                        if ih {
                            c.granularity.ih1 += 1
                        } else {
                            c.granularity.ih0 += 1
                        }
                        let (_, hi) = crate::cache::page_range_bounds(addr, am);
                        if hi >= self.config.levels.kernel_half_start() {
                            c.kva_invalidations += 1;
                        }
                        self.caches.piotlb_page(did, pasid, addr, am, ih)
                    }
                };
            }
            Descriptor::PasidCache { did, granularity } => {
                c.invalidations.pasid_cache += 1;
                removed.pasid = match granularity {
                    PasidCacheGranularity::Domain => {
                        c.granularity.pasid_cache_domain += 1;
                        self.caches.pasid_cache_domain(did)
                    }
                    PasidCacheGranularity::Pasid { pasid } => {
                        c.granularity.pasid_cache_pasid += 1;
                        self.caches.pasid_cache_pasid(did, pasid)
                    }
                    PasidCacheGranularity::Global => {
                        c.granularity.pasid_cache_global += 1;
                        self.caches.pasid_cache_global()
                    }
                };
            }
            Descriptor::PasidDevTlb { inv } => {
                c.invalidations.pdevtlb += 1;
                if inv.size == u64::MAX {
                    c.granularity.devtlb_all += 1;
                }
                self.push_devtlb(inv);
            }
            Descriptor::PageGroupResponse {
                rid,
                pasid,
                code,
                group_index,
                ..
            } => {
                c.invalidations.page_response += 1;
                match self.prq.respond(rid, pasid, group_index, code) {
                    Some(r) => {
                        self.counters.page_requests.responses += 1;
                        self.page_responses.push(r);
                        self.emit(&Event::PageResponse(r));
                    }
                    None => self.counters.page_requests.unmatched_responses += 1,
                }
            }
        }
        let total =
            removed.context + removed.pasid + removed.iotlb + removed.psc.iter().sum::<u64>();
        self.emit_with(|| Event::Invalidation {
            slot,
            descriptor: d,
            removed: total,
        });
        Ok(())
    }
}
