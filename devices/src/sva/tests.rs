//! Tests of the SVA device against a fake IOMMU (a page map per PASID).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::descriptor::tests::raw;
use super::descriptor::*;
use super::*;
use crate::dma::PageRequestRefused;
use crate::pci::config::{COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY};
use crate::pci::msix::tests::RecordingSink;

const REASON_NOT_PRESENT: u8 = 0x71;
const REASON_WRITE: u8 = 0x72;
const REASON_PRIV: u8 = 0x73;
const RING_IOVA: u64 = 0x8000;
const RING_GPA: u64 = 0x1_0000;
const RING_ENTRIES: u32 = 16;

#[derive(Clone, Copy, Debug)]
struct Pte {
    gpa: u64,
    write: bool,
    user: bool,
}

#[derive(Debug, Default)]
struct FakeIommu {
    map: Mutex<HashMap<(Option<u32>, u64), Pte>>,
    requests: Mutex<Vec<PageRequest>>,
    translations: Mutex<Vec<(DmaRequest, RequestKind)>>,
}

impl FakeIommu {
    fn map(&self, pasid: Option<u32>, iova: u64, gpa: u64, write: bool, user: bool) {
        self.map
            .lock()
            .unwrap()
            .insert((pasid, iova & !0xfff), Pte { gpa, write, user });
    }
    fn unmap(&self, pasid: Option<u32>, iova: u64) {
        self.map.lock().unwrap().remove(&(pasid, iova & !0xfff));
    }
}

impl DmaTranslate<GuestMemoryMmap> for FakeIommu {
    fn translate(
        &self,
        _mem: &GuestMemoryMmap,
        req: &DmaRequest,
        kind: RequestKind,
    ) -> Result<u64, DmaFault> {
        self.translations.lock().unwrap().push((*req, kind));
        let fault = |reason| DmaFault {
            addr: req.addr,
            reason,
        };
        let pte = *self
            .map
            .lock()
            .unwrap()
            .get(&(req.pasid, req.addr & !0xfff))
            .ok_or(fault(REASON_NOT_PRESENT))?;
        if req.access == Access::Write && !pte.write {
            return Err(fault(REASON_WRITE));
        }
        if req.pasid.is_some() && !req.privileged && !pte.user {
            return Err(fault(REASON_PRIV));
        }
        Ok(pte.gpa | (req.addr & 0xfff))
    }
    fn page_request(
        &self,
        _mem: &GuestMemoryMmap,
        req: &PageRequest,
    ) -> Result<(), PageRequestRefused> {
        self.requests.lock().unwrap().push(*req);
        Ok(())
    }
}

struct Rig {
    dev: SvaDevice<GuestMemoryMmap>,
    mem: GuestMemoryMmap,
    iommu: Arc<FakeIommu>,
    sink: Arc<RecordingSink>,
    tail: u32,
}

fn cfg_write16(dev: &mut SvaDevice<GuestMemoryMmap>, off: u16, v: u16) {
    dev.config_write(off, &v.to_le_bytes());
}

fn rig() -> Rig {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let iommu = Arc::new(FakeIommu::default());
    let sink = Arc::new(RecordingSink::default());
    let mut dev = SvaDevice::new(4, mem.clone(), iommu.clone(), sink.clone()).unwrap();
    cfg_write16(&mut dev, COMMAND, COMMAND_MEMORY | COMMAND_BUS_MASTER);
    cfg_write16(&mut dev, 0x106, PASID_CTRL_ENABLE | PASID_CTRL_PRIV);
    cfg_write16(&mut dev, 0x80 + 2, 1 << 15);
    for v in 0..2u64 {
        dev.bar_write(0, MSIX_TABLE_OFFSET + v * 16, &0xfee0_0000u64.to_le_bytes());
        dev.bar_write(
            0,
            MSIX_TABLE_OFFSET + v * 16 + 8,
            &(0x40 + u32::try_from(v).unwrap()).to_le_bytes(),
        );
        dev.bar_write(0, MSIX_TABLE_OFFSET + v * 16 + 12, &0u32.to_le_bytes());
    }
    iommu.map(None, RING_IOVA, RING_GPA, true, true);
    let mut r = Rig {
        dev,
        mem,
        iommu,
        sink,
        tail: 0,
    };
    r.w32(regs::RING_BASE, u32::try_from(RING_IOVA).unwrap());
    r.w32(regs::RING_ENTRIES, RING_ENTRIES);
    r.w32(regs::CTRL, 1);
    assert_eq!(r.r32(regs::STATUS), regs::STATUS_ENABLED);
    r
}

impl Rig {
    fn w32(&mut self, off: u64, v: u32) {
        self.dev.bar_write(0, off, &v.to_le_bytes());
    }
    fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn r64(&mut self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.dev.bar_read(0, off, &mut b);
        u64::from_le_bytes(b)
    }
    /// Places a descriptor in the next slot without ringing.
    fn queue(&mut self, d: [u8; 64]) -> u32 {
        let slot = self.tail;
        self.mem
            .write_slice(&d, GuestAddress(RING_GPA + u64::from(slot) * 64))
            .unwrap();
        self.tail = (self.tail + 1) % RING_ENTRIES;
        slot
    }
    fn ring(&mut self) {
        let t = self.tail;
        self.w32(regs::TAIL, t);
    }
    fn submit(&mut self, d: [u8; 64]) -> u32 {
        let s = self.queue(d);
        self.ring();
        s
    }
    /// (status, reason, flags, result) of a slot.
    fn done(&self, slot: u32) -> (u8, u8, u16, u64) {
        let mut c = [0u8; 16];
        self.mem
            .read_slice(&mut c, GuestAddress(RING_GPA + u64::from(slot) * 64 + 0x30))
            .unwrap();
        (
            c[0],
            c[1],
            u16::from_le_bytes([c[2], c[3]]),
            u64::from_le_bytes(c[8..16].try_into().unwrap()),
        )
    }
    fn bytes(&self, gpa: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.mem.read_slice(&mut v, GuestAddress(gpa)).unwrap();
        v
    }
    fn enable_pri(&mut self) {
        self.dev.config_write(0x120 + 12, &16u32.to_le_bytes());
        cfg_write16(&mut self.dev, 0x124, capability::PRI_CTRL_ENABLE);
    }
}

const P: u32 = 1;

#[test]
fn config_space_advertises_the_sva_capabilities() {
    let r = rig();
    let c = r.dev.config();
    assert_eq!(c.read_u32(0), 0x5641_5357);
    assert_eq!(c.find_capability(0x10), Some(0x40));
    assert_eq!(c.read_u16(0x42) >> 4 & 0xf, 9, "RC integrated endpoint");
    assert_ne!(c.read_u32(0x40 + 0x24) & (1 << 21), 0);
    assert_eq!(c.find_capability(0x11), Some(0x80));
    assert_eq!(c.find_capability(0x05), Some(0x90));
    assert_eq!(c.find_ext_capability(0x1b), Some(0x100));
    assert_eq!(c.read_u16(0x104) >> 8 & 0x1f, 20);
    assert_eq!(c.find_ext_capability(0x0f), Some(0x110));
    assert_ne!(c.read_u16(0x114) & (1 << 5), 0);
    assert_eq!(c.find_ext_capability(0x13), Some(0x120));
    let fresh = SvaDevice::new(5, r.mem.clone(), r.iommu.clone(), r.sink.clone()).unwrap();
    assert_eq!(
        fresh.config().read_u16(0x126),
        (1 << 8) | (1 << 15),
        "PRI stopped, PASID required"
    );
    assert_eq!(fresh.config().bars()[0].size, BAR0_SIZE);
}

#[test]
fn identification_registers() {
    let mut r = rig();
    assert_eq!(r.r32(regs::ID), ID_VALUE);
    assert_eq!(r.r32(regs::MAX_RING_ENTRIES), 4096);
    assert_eq!(r.r32(regs::MAX_TRANSFER), 64 << 20);
    assert_eq!(r.r32(regs::BATCH_LIMIT), 64);
    assert_eq!(r.r64(regs::RING_BASE), RING_IOVA);
}

#[test]
fn copy_through_a_pasid_crosses_pages() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x40_0000, 0x2_0000, false, true);
    r.iommu.map(Some(P), 0x40_1000, 0x2_1000, false, true);
    r.iommu.map(Some(P), 0x50_0000, 0x3_0000, true, true);
    r.iommu.map(Some(P), 0x50_1000, 0x3_1000, true, true);
    let data: Vec<u8> = (0..0x1800u32)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    r.mem
        .write_slice(&data[..0x1000 - 0x10], GuestAddress(0x2_0010))
        .unwrap();
    r.mem
        .write_slice(&data[0x1000 - 0x10..], GuestAddress(0x2_1000))
        .unwrap();
    let s = r.submit(raw(
        OP_COPY,
        FLAG_PASID | FLAG_IRQ,
        P,
        0x40_0010,
        0x50_0800,
        0x1800,
        0,
    ));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, 0, 0));
    let mut got = r.bytes(0x3_0800, 0x800);
    got.extend(r.bytes(0x3_1000, 0x1000));
    assert_eq!(got, data);
    assert_eq!(r.sink.take().len(), 1, "completion MSI");
    assert_eq!(r.r32(regs::HEAD), 1);
    assert_eq!(r.r64(regs::COUNTERS), 1);
    let reqs = r.iommu.translations.lock().unwrap().clone();
    assert!(
        reqs.iter()
            .any(|(q, _)| q.pasid.is_none() && q.addr == RING_IOVA),
        "ring fetched without PASID"
    );
    assert!(
        reqs.iter()
            .any(|(q, _)| q.pasid == Some(P) && q.addr == 0x50_0800 && q.access == Access::Write)
    );
}

#[test]
fn fill_repeats_the_pattern_by_offset() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x60_0000, 0x4_0000, true, true);
    r.iommu.map(Some(P), 0x60_1000, 0x4_1000, true, true);
    let pat = 0x0807_0605_0403_0201u64;
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x60_0ffd, 11, pat));
    assert_eq!(r.done(s).0, STATUS_SUCCESS);
    assert_eq!(r.bytes(0x4_0ffd, 3), vec![1, 2, 3]);
    assert_eq!(r.bytes(0x4_1000, 8), vec![4, 5, 6, 7, 8, 1, 2, 3]);
    assert!(r.sink.take().is_empty(), "no IRQ flag, no MSI");
}

#[test]
fn compare_reports_first_difference() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x70_0000, 0x5_0000, false, true);
    r.iommu.map(Some(P), 0x71_0000, 0x6_0000, false, true);
    r.mem
        .write_slice(&[7u8; 64], GuestAddress(0x5_0000))
        .unwrap();
    r.mem
        .write_slice(&[7u8; 64], GuestAddress(0x6_0000))
        .unwrap();
    let s = r.submit(raw(OP_COMPARE, FLAG_PASID, P, 0x70_0000, 0x71_0000, 64, 0));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, 0, 64));
    r.mem.write_slice(&[9u8], GuestAddress(0x6_0021)).unwrap();
    let s = r.submit(raw(OP_COMPARE, FLAG_PASID, P, 0x70_0000, 0x71_0000, 64, 0));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, CFLAG_MISMATCH, 0x21));
}

#[test]
fn probe_reads_writes_and_reports_faults() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x80_0000, 0x7_0000, true, true);
    r.iommu
        .map(Some(P), 0xffff_8000_0000_0000, 0x8_0000, true, false);
    r.mem.write_slice(&[0x5a], GuestAddress(0x7_0123)).unwrap();
    let s = r.submit(raw(OP_PROBE, FLAG_PASID, P, 0x80_0123, 0, 0, 0));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, 0, 0x5a));
    let s = r.submit(raw(
        OP_PROBE,
        FLAG_PASID | FLAG_WRITE,
        P,
        0x80_0124,
        0,
        0,
        0xc3,
    ));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, 0, 0xc3));
    assert_eq!(r.bytes(0x7_0124, 1), vec![0xc3]);
    // Unmapped user address.
    let s = r.submit(raw(OP_PROBE, FLAG_PASID, P, 0x90_0000, 0, 0, 0));
    assert_eq!(r.done(s), (2, REASON_NOT_PRESENT, 0, 0x90_0000));
    // Kernel address with a user request faults; a supervisor request works.
    let s = r.submit(raw(OP_PROBE, FLAG_PASID, P, 0xffff_8000_0000_0010, 0, 0, 0));
    assert_eq!(r.done(s), (2, REASON_PRIV, 0, 0xffff_8000_0000_0010));
    let s = r.submit(raw(
        OP_PROBE,
        FLAG_PASID | FLAG_PRIV,
        P,
        0xffff_8000_0000_0010,
        0,
        0,
        0,
    ));
    assert_eq!(r.done(s).0, STATUS_SUCCESS);
    assert_eq!(r.r64(regs::COUNTERS + 8), 2, "two failed ops");
}

#[test]
fn probe_never_sends_page_requests() {
    let mut r = rig();
    r.enable_pri();
    let s = r.submit(raw(OP_PROBE, FLAG_PASID, P, 0x90_0000, 0, 0, 0));
    assert_eq!(r.done(s).0, 2);
    assert!(r.iommu.requests.lock().unwrap().is_empty());
}

#[test]
fn fault_without_pri_writes_nothing() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x40_0000, 0x2_0000, false, true);
    r.iommu.map(Some(P), 0x40_1000, 0x2_1000, false, true);
    r.iommu.map(Some(P), 0x50_1000, 0x3_1000, true, true);
    r.mem
        .write_slice(&[0xee; 0x2000], GuestAddress(0x2_0000))
        .unwrap();
    // The destination's first page is unmapped: the mapped second page must
    // stay untouched as well.
    let s = r.submit(raw(OP_COPY, FLAG_PASID, P, 0x40_0000, 0x50_0000, 0x2000, 0));
    assert_eq!(r.done(s), (2, REASON_NOT_PRESENT, 0, 0x50_0000));
    assert_eq!(r.bytes(0x3_1000, 0x1000), vec![0; 0x1000]);
    assert_eq!(r.bytes(0x3_0000, 0x1000), vec![0; 0x1000]);
    // A read-only destination faults the same way.
    r.iommu.map(Some(P), 0x50_0000, 0x3_0000, false, true);
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x50_0000, 16, 1));
    assert_eq!(r.done(s), (2, REASON_WRITE, 0, 0x50_0000));
    assert_eq!(r.bytes(0x3_0000, 16), vec![0; 16]);
}

#[test]
fn pri_page_request_then_response_completes_the_copy() {
    let mut r = rig();
    r.enable_pri();
    r.iommu.map(Some(P), 0x40_0000, 0x2_0000, false, true);
    r.mem
        .write_slice(&[0x11; 0x100], GuestAddress(0x2_0000))
        .unwrap();
    let s = r.submit(raw(
        OP_COPY,
        FLAG_PASID | FLAG_IRQ,
        P,
        0x40_0000,
        0x50_0000,
        0x100,
        0,
    ));
    let s2 = r.submit(raw(OP_NOP, FLAG_IRQ, 0, 0, 0, 0, 0));
    assert_eq!(r.done(s).0, 0, "not complete yet");
    assert_eq!(r.done(s2).0, 0, "ring parked behind the waiting op");
    assert_eq!(
        r.r32(regs::STATUS),
        regs::STATUS_ENABLED | regs::STATUS_WAITING
    );
    assert_eq!(
        r.dev.config().read_u16(0x126) & (1 << 8),
        0,
        "PRI not stopped"
    );
    let req = r.iommu.requests.lock().unwrap()[0];
    assert_eq!(
        req,
        PageRequest {
            rid: 0x20,
            pasid: Some(P),
            addr: 0x50_0000,
            read: false,
            write: true,
            exec: false,
            privileged: false,
            last: true,
            group_index: 0,
            private_data: 0,
        }
    );
    // Doorbells while waiting do nothing.
    r.ring();
    assert_eq!(r.iommu.requests.lock().unwrap().len(), 1);
    // The guest maps the page and responds.
    r.iommu.map(Some(P), 0x50_0000, 0x3_0000, true, true);
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: Some(P),
        prg_index: 0,
        code: ResponseCode::Success,
    });
    assert_eq!(
        r.done(s),
        (STATUS_SUCCESS, 0, CFLAG_PAGE_REQUESTED | CFLAG_RETRIED, 0)
    );
    assert_eq!(r.bytes(0x3_0000, 0x100), vec![0x11; 0x100]);
    assert_eq!(r.done(s2).0, STATUS_SUCCESS, "ring resumed");
    assert_eq!(r.sink.take().len(), 2);
    assert_eq!(r.r32(regs::STATUS), regs::STATUS_ENABLED);
    assert_eq!(
        (r.r64(regs::COUNTERS + 0x10), r.r64(regs::COUNTERS + 0x18)),
        (1, 1)
    );
}

#[test]
fn pri_retries_once_per_page() {
    let mut r = rig();
    r.enable_pri();
    r.iommu.map(Some(P), 0x40_0000, 0x2_0000, false, true);
    let s = r.submit(raw(OP_COPY, FLAG_PASID, P, 0x40_0000, 0x50_0000, 0x10, 0));
    // "Success" without mapping: the retry faults on the same page and the
    // op completes with the fault.
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: Some(P),
        prg_index: 0,
        code: ResponseCode::Success,
    });
    assert_eq!(
        r.done(s),
        (2, REASON_NOT_PRESENT, CFLAG_PAGE_REQUESTED, 0x50_0000)
    );
    assert_eq!(r.iommu.requests.lock().unwrap().len(), 1);
}

#[test]
fn pri_invalid_and_failure_responses() {
    let mut r = rig();
    r.enable_pri();
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x50_0000, 0x10, 0));
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: Some(P),
        prg_index: 0,
        code: ResponseCode::InvalidRequest,
    });
    assert_eq!(
        r.done(s),
        (2, REASON_NOT_PRESENT, CFLAG_PAGE_REQUESTED, 0x50_0000)
    );
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x50_0000, 0x10, 0));
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: Some(P),
        prg_index: 1,
        code: ResponseCode::Failure,
    });
    assert_eq!(r.done(s), (7, 0, CFLAG_PAGE_REQUESTED, 0x50_0000));
    assert_ne!(
        r.dev.config().read_u16(0x126) & 1,
        0,
        "response failure latched"
    );
    // No further page requests until PRI is reset.
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x50_0000, 0x10, 0));
    assert_eq!(r.done(s).0, 2);
    assert_eq!(r.iommu.requests.lock().unwrap().len(), 2);
    cfg_write16(&mut r.dev, 0x124, capability::PRI_CTRL_RESET);
    assert_eq!(r.dev.config().read_u16(0x126), (1 << 8) | (1 << 15));
}

#[test]
fn reject_unexpected_page_responses() {
    let mut r = rig();
    r.enable_pri();
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: None,
        prg_index: 3,
        code: ResponseCode::Success,
    });
    assert_ne!(r.dev.config().read_u16(0x126) & 2, 0, "UPRGI set");
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x50_0000, 0x10, 0));
    r.dev.page_response(&PageResponse {
        rid: 0x20,
        pasid: Some(P),
        prg_index: 7,
        code: ResponseCode::Success,
    });
    r.dev.page_response(&PageResponse {
        rid: 0x28,
        pasid: Some(P),
        prg_index: 0,
        code: ResponseCode::Success,
    });
    assert_eq!(r.done(s).0, 0, "still waiting");
    assert_eq!(r.dev.counters().unexpected_responses, 2);
    // Disabling drops the waiting op and PRI reports stopped again once disabled.
    r.w32(regs::CTRL, 0);
    cfg_write16(&mut r.dev, 0x124, 0);
    assert_ne!(r.dev.config().read_u16(0x126) & (1 << 8), 0);
    assert_eq!(r.r32(regs::STATUS), 0);
}

#[test]
fn ats_translation_is_cached_until_invalidated() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x40_0000, 0x2_0000, true, true);
    let s = r.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, P, 0x40_0123, 0, 0, 0));
    assert_eq!(r.done(s).0, 8, "ATS disabled");
    cfg_write16(&mut r.dev, 0x116, capability::ATS_CTRL_ENABLE);
    let s = r.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, P, 0x40_0123, 0, 0, 0));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, 0, 0x2_0000 | 1));
    let s = r.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, P, 0x40_0fff, 0, 0, 0));
    assert_eq!(r.done(s), (STATUS_SUCCESS, 0, CFLAG_ATC_HIT, 0x2_0000 | 1));
    assert!(
        r.iommu
            .translations
            .lock()
            .unwrap()
            .iter()
            .any(|(_, kind)| *kind == RequestKind::AtsTranslation),
        "sent as a translation request"
    );
    assert_eq!(r.r64(regs::COUNTERS + 0x20), 1, "ATC_ENTRIES");
    // An invalidation for another device or PASID does not touch it.
    r.dev.devtlb_invalidate(&DevTlbInvalidation {
        sid: 0x28,
        pasid: None,
        addr: 0,
        size: u64::MAX,
        global: false,
    });
    r.dev.devtlb_invalidate(&DevTlbInvalidation {
        sid: 0x20,
        pasid: Some(9),
        addr: 0x40_0000,
        size: 0x1000,
        global: false,
    });
    assert_eq!(r.r64(regs::COUNTERS + 0x20), 1);
    r.dev.devtlb_invalidate(&DevTlbInvalidation {
        sid: 0x20,
        pasid: Some(P),
        addr: 0x40_0000,
        size: 0x1000,
        global: false,
    });
    assert_eq!(r.r64(regs::COUNTERS + 0x20), 0);
    assert_eq!(
        (r.r64(regs::COUNTERS + 0x28), r.r64(regs::COUNTERS + 0x30)),
        (2, 1)
    );
    let s = r.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, P, 0x40_0123, 0, 0, 0));
    assert_eq!(r.done(s).2 & CFLAG_ATC_HIT, 0, "miss after invalidation");
    // A failing translation request is reported and not cached.
    r.iommu.unmap(Some(P), 0x40_0000);
    r.dev.devtlb_invalidate(&DevTlbInvalidation {
        sid: 0x20,
        pasid: None,
        addr: 0,
        size: u64::MAX,
        global: false,
    });
    let s = r.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, P, 0x40_0123, 0, 0, 0));
    assert_eq!(r.done(s).0, 2);
    assert_eq!(r.dev.counters().atc_entries, 0);
}

#[test]
fn reject_bad_descriptors_and_keep_going() {
    let mut r = rig();
    let a = r.submit(raw(0x77, FLAG_IRQ, 0, 0, 0, 0, 0));
    let b = r.submit(raw(OP_COPY, 0, 0, 0, 0x1000, 0, 0));
    let c = r.submit(raw(OP_NOP, FLAG_PASID, 1 << 20, 0, 0, 0, 0));
    let d = r.submit(raw(OP_NOP, 0, 0, 0, 0, 0, 0));
    assert_eq!(
        [r.done(a).0, r.done(b).0, r.done(c).0, r.done(d).0],
        [3, 5, 4, STATUS_SUCCESS]
    );
    assert_eq!(
        r.sink.take().len(),
        1,
        "bad descriptor with IRQ still interrupts"
    );
}

#[test]
fn reject_pasid_use_while_disabled() {
    let mut r = rig();
    cfg_write16(&mut r.dev, 0x106, PASID_CTRL_ENABLE);
    let s = r.submit(raw(OP_NOP, FLAG_PASID | FLAG_PRIV, 1, 0, 0, 0, 0));
    assert_eq!(r.done(s).0, 6, "privileged mode not enabled");
    cfg_write16(&mut r.dev, 0x106, 0);
    let s = r.submit(raw(OP_NOP, FLAG_PASID, 1, 0, 0, 0, 0));
    assert_eq!(r.done(s).0, 6);
}

#[test]
fn reject_dma_to_non_memory() {
    let mut r = rig();
    r.iommu.map(Some(P), 0x40_0000, 0x7000_0000, true, true);
    let s = r.submit(raw(OP_FILL, FLAG_PASID, P, 0, 0x40_0000, 8, 0));
    assert_eq!(r.done(s), (9, 0, 0, 0x7000_0000));
}

#[test]
fn reject_ring_out_of_range() {
    let mut r = rig();
    r.w32(regs::CTRL, 0);
    r.w32(regs::RING_BASE, 0x00f0_0000);
    r.w32(regs::CTRL, 1);
    r.w32(regs::TAIL, 1);
    assert_eq!(
        r.r32(regs::STATUS),
        regs::STATUS_ENABLED | regs::STATUS_HALTED
    );
    assert_eq!(r.r32(regs::ERROR), 3);
    assert_eq!(r.sink.take().len(), 1, "error vector");
    r.w32(regs::TAIL, 1);
    assert_eq!(r.r32(regs::HEAD), 0);
    // Recover: disable, fix, enable.
    r.w32(regs::CTRL, 0);
    r.w32(regs::RING_BASE, u32::try_from(RING_IOVA).unwrap());
    r.w32(regs::CTRL, 1);
    r.w32(regs::ERROR, 0);
    r.tail = 0;
    let s = r.submit(raw(OP_NOP, 0, 0, 0, 0, 0, 0));
    assert_eq!(r.done(s).0, STATUS_SUCCESS);
    assert_eq!(r.r32(regs::ERROR), 0);
}

#[test]
fn reject_completion_write_fault() {
    let mut r = rig();
    // The ring page is readable but not writable.
    r.iommu.map(None, RING_IOVA, RING_GPA, false, true);
    r.submit(raw(OP_NOP, 0, 0, 0, 0, 0, 0));
    assert_eq!(r.r32(regs::ERROR), 4);
    assert_ne!(r.r32(regs::STATUS) & regs::STATUS_HALTED, 0);
}

#[test]
fn reject_bad_ring_configuration() {
    let mut r = rig();
    r.w32(regs::CTRL, 0);
    for (base, entries) in [
        (RING_IOVA, 3u32),
        (RING_IOVA, 8192),
        (RING_IOVA + 8, 16),
        (!63, 16),
        (RING_IOVA, 1),
    ] {
        r.w32(regs::RING_BASE, low32(base));
        r.w32(regs::RING_BASE + 4, high32(base));
        r.w32(regs::RING_ENTRIES, entries);
        r.w32(regs::CTRL, 1);
        assert_eq!(r.r32(regs::STATUS), 0, "{base:#x}/{entries}");
        assert_eq!(r.r32(regs::ERROR), 1);
    }
    // Ring registers are frozen while enabled.
    r.w32(regs::RING_BASE, u32::try_from(RING_IOVA).unwrap());
    r.w32(regs::RING_BASE + 4, 0);
    r.w32(regs::RING_ENTRIES, 16);
    r.w32(regs::CTRL, 1);
    r.w32(regs::RING_ENTRIES, 32);
    assert_eq!(r.r32(regs::RING_ENTRIES), 16);
}

#[test]
fn reject_doorbell_storm() {
    let mut r = rig();
    let s = r.submit(raw(OP_NOP, FLAG_IRQ, 0, 0, 0, 0, 0));
    for _ in 0..10_000 {
        r.ring();
    }
    assert_eq!(r.done(s).0, STATUS_SUCCESS);
    assert_eq!(r.r64(regs::COUNTERS), 1, "one op, however many doorbells");
    assert_eq!(r.sink.take().len(), 1);
    let before = r.dev.counters();
    r.w32(regs::TAIL, RING_ENTRIES);
    assert_eq!(r.r32(regs::ERROR), 2);
    assert_eq!(r.r32(regs::TAIL), 1);
    // The bad tail is an ignored doorbell and a ring error, but one refused
    // guest action (summing the two counters counted it twice).
    let after = r.dev.counters();
    assert_eq!(after.doorbells_ignored, before.doorbells_ignored + 1);
    assert_eq!(after.ring_errors, before.ring_errors + 1);
    assert_eq!(
        after.rejected_guest_actions,
        before.rejected_guest_actions + 1
    );
}

#[test]
fn reject_more_than_a_batch_per_doorbell() {
    let mut r = rig();
    r.w32(regs::CTRL, 0);
    let big_ring = 128u32;
    for i in 0..2u64 {
        r.iommu.map(
            None,
            RING_IOVA + i * 0x1000,
            RING_GPA + i * 0x1000,
            true,
            true,
        );
    }
    r.w32(regs::RING_ENTRIES, big_ring);
    r.w32(regs::CTRL, 1);
    r.w32(regs::TAIL, 100);
    assert_eq!(r.r32(regs::HEAD), BATCH_LIMIT);
    r.w32(regs::TAIL, 100);
    assert_eq!(r.r32(regs::HEAD), 100);
}

#[test]
fn reject_doorbell_with_bus_master_off() {
    let mut r = rig();
    cfg_write16(&mut r.dev, COMMAND, COMMAND_MEMORY);
    let s = r.submit(raw(OP_NOP, 0, 0, 0, 0, 0, 0));
    assert_eq!(r.done(s).0, 0);
    assert_eq!(r.r32(regs::ERROR), 5);
    assert_eq!(r.r64(regs::COUNTERS + 0x38), 1);
}

#[test]
fn reject_odd_register_accesses() {
    let mut r = rig();
    let mut b = [0xaau8; 2];
    r.dev.bar_read(0, 0, &mut b);
    assert_eq!(b, [0, 0]);
    r.dev.bar_write(0, regs::CTRL + 1, &[0, 0, 0, 0]);
    r.dev.bar_write(0, regs::CTRL, &[0]);
    assert_eq!(r.r32(regs::STATUS), regs::STATUS_ENABLED);
    let mut q = [0u8; 8];
    r.dev.bar_read(0, 0xffc, &mut q);
    r.dev.bar_read(0, 0x3ff8, &mut q);
    r.dev.bar_read(1, 0, &mut q);
    r.dev.bar_write(1, 0, &q);
    r.dev.bar_read(0, u64::MAX - 7, &mut q);
    r.dev.bar_write(0, u64::MAX - 7, &q);
    assert_eq!(
        SvaDevice::new(0, r.mem.clone(), r.iommu.clone(), r.sink.clone())
            .unwrap_err()
            .to_string(),
        "invalid device number 0"
    );
}

/// End-to-end tests against the real `viommu::Viommu` through the front
/// end, with the in-test VT-d driver.
mod real {
    use super::*;
    use crate::iommu_mmio::ViommuPort;
    use crate::iommu_mmio::tests::GuestVtd;
    use viommu::qi::Descriptor;

    const RID: u16 = 0x20;
    const RING: u64 = 0x8000;
    const PASID: u32 = 1;

    struct E2e {
        g: GuestVtd,
        dev: Arc<Mutex<SvaDevice<GuestMemoryMmap>>>,
        tail: u32,
    }

    impl E2e {
        fn new() -> Self {
            let mut g = GuestVtd::new(RID);
            g.bind_pasid(PASID);
            let port = Arc::new(ViommuPort::new(g.viommu.clone(), g.sink.clone()));
            let dev = Arc::new(Mutex::new(
                SvaDevice::new(4, g.mem.clone(), port, g.sink.clone()).unwrap(),
            ));
            g.mmio.add_endpoint(dev.clone()).unwrap();
            {
                let mut d = dev.lock().unwrap();
                d.config_write(
                    COMMAND,
                    &(COMMAND_MEMORY | COMMAND_BUS_MASTER).to_le_bytes(),
                );
                d.config_write(0x106, &(PASID_CTRL_ENABLE | PASID_CTRL_PRIV).to_le_bytes());
                d.config_write(0x116, &ATS_CTRL_ENABLE.to_le_bytes());
                d.config_write(0x120 + 12, &16u32.to_le_bytes());
                d.config_write(0x124, &capability::PRI_CTRL_ENABLE.to_le_bytes());
                d.bar_write(0, regs::RING_BASE, &RING.to_le_bytes());
                d.bar_write(0, regs::RING_ENTRIES, &16u32.to_le_bytes());
                d.bar_write(0, regs::CTRL, &1u32.to_le_bytes());
            }
            Self { g, dev, tail: 0 }
        }

        fn submit(&mut self, d: [u8; 64]) -> u32 {
            let slot = self.tail;
            self.g
                .mem
                .write_slice(&d, GuestAddress(RING + u64::from(slot) * 64))
                .unwrap();
            self.tail = (self.tail + 1) % 16;
            let t = self.tail;
            self.dev
                .lock()
                .unwrap()
                .bar_write(0, regs::TAIL, &t.to_le_bytes());
            slot
        }

        fn done(&self, slot: u32) -> (u8, u8, u16, u64) {
            let mut c = [0u8; 16];
            self.g
                .mem
                .read_slice(&mut c, GuestAddress(RING + u64::from(slot) * 64 + 0x30))
                .unwrap();
            (
                c[0],
                c[1],
                u16::from_le_bytes([c[2], c[3]]),
                u64::from_le_bytes(c[8..16].try_into().unwrap()),
            )
        }
    }

    #[test]
    fn copy_and_fill_through_a_bound_pasid() {
        let mut e = E2e::new();
        e.g.map(0x40_0000, 0x20_0000, false, true);
        e.g.map(0x50_0000, 0x21_0000, true, true);
        e.g.mem
            .write_slice(b"stalewalk", GuestAddress(0x20_0100))
            .unwrap();
        let s = e.submit(raw(OP_COPY, FLAG_PASID, PASID, 0x40_0100, 0x50_0200, 9, 0));
        assert_eq!(e.done(s).0, STATUS_SUCCESS);
        let mut got = [0u8; 9];
        e.g.mem
            .read_slice(&mut got, GuestAddress(0x21_0200))
            .unwrap();
        assert_eq!(&got, b"stalewalk");
        let s = e.submit(raw(
            OP_FILL,
            FLAG_PASID,
            PASID,
            0,
            0x50_0000,
            16,
            0x4142_4344_4546_4748,
        ));
        assert_eq!(e.done(s).0, STATUS_SUCCESS);
        e.g.mem
            .read_slice(&mut got, GuestAddress(0x21_0000))
            .unwrap();
        assert_eq!(&got, b"HGFEDCBAH");
        // With PRI off, writing through a read-only mapping faults and
        // writes nothing.
        e.dev
            .lock()
            .unwrap()
            .config_write(0x124, &0u16.to_le_bytes());
        let s = e.submit(raw(OP_FILL, FLAG_PASID, PASID, 0, 0x40_0100, 16, 0));
        let (status, reason, _, addr) = e.done(s);
        assert_eq!((status, addr), (2, 0x40_0100));
        assert_ne!(reason, 0);
        e.g.mem
            .read_slice(&mut got, GuestAddress(0x20_0100))
            .unwrap();
        assert_eq!(&got, b"stalewalk");
        assert!(e.g.take_page_requests().is_empty());
    }

    #[test]
    fn user_probe_of_a_kernel_address_faults_and_leaves_walk_cache_entries() {
        let mut e = E2e::new();
        e.g.map(0xffff_8880_0000_0000, 0x22_0000, true, false);
        let before = e.g.viommu.lock().unwrap().caches().sizes();
        let s = e.submit(raw(
            OP_PROBE,
            FLAG_PASID,
            PASID,
            0xffff_8880_0000_0000,
            0,
            0,
            0,
        ));
        let (status, reason, _, addr) = e.done(s);
        assert_eq!((status, addr), (2, 0xffff_8880_0000_0000));
        assert_ne!(reason, 0);
        let after = e.g.viommu.lock().unwrap().caches().sizes();
        let psc = |s: (usize, usize, usize, [usize; 4])| s.3.iter().sum::<usize>();
        assert!(
            psc(after) > psc(before),
            "adversarial policy caches the kernel walk: {before:?} -> {after:?}"
        );
        assert!(
            e.g.sink
                .take()
                .iter()
                .any(|m| m.data == crate::iommu_mmio::tests::FAULT_DATA)
        );
        // A supervisor probe of the same address succeeds.
        e.g.mem
            .write_slice(&[0x99], GuestAddress(0x22_0000))
            .unwrap();
        let s = e.submit(raw(
            OP_PROBE,
            FLAG_PASID | FLAG_PRIV,
            PASID,
            0xffff_8880_0000_0000,
            0,
            0,
            0,
        ));
        assert_eq!(e.done(s), (STATUS_SUCCESS, 0, 0, 0x99));
    }

    #[test]
    fn pri_copy_into_an_unmapped_page_completes_after_the_response() {
        let mut e = E2e::new();
        e.g.map(0x40_0000, 0x20_0000, false, true);
        e.g.mem
            .write_slice(&[0x3c; 32], GuestAddress(0x20_0000))
            .unwrap();
        let s = e.submit(raw(
            OP_COPY,
            FLAG_PASID | FLAG_IRQ,
            PASID,
            0x40_0000,
            0x60_0000,
            32,
            0,
        ));
        assert_eq!(e.done(s).0, 0);
        assert!(
            e.g.sink
                .take()
                .iter()
                .any(|m| m.data == crate::iommu_mmio::tests::PRQ_DATA)
        );
        let reqs = e.g.take_page_requests();
        assert_eq!(reqs.len(), 1);
        let (qw0, qw1) = reqs[0];
        assert_eq!(qw1 & !0xfff, 0x60_0000);
        let group = u16::try_from((qw1 >> 3) & 0x1ff).unwrap();
        assert_eq!((qw0 >> 16) & 0xffff, u64::from(RID));
        // The guest maps the page and answers; the front end routes the
        // response to the device, which finishes the copy.
        e.g.map(0x60_0000, 0x23_0000, true, true);
        e.g.submit(&Descriptor::PageGroupResponse {
            rid: RID,
            pasid: Some(PASID),
            code: 0,
            group_index: group,
            lpig: true,
        });
        assert_eq!(
            e.done(s),
            (STATUS_SUCCESS, 0, CFLAG_PAGE_REQUESTED | CFLAG_RETRIED, 0)
        );
        let mut got = [0u8; 32];
        e.g.mem
            .read_slice(&mut got, GuestAddress(0x23_0000))
            .unwrap();
        assert_eq!(got, [0x3c; 32]);
        assert_eq!(
            e.g.sink.take().iter().filter(|m| m.data == 0x40).count(),
            0,
            "MSI-X not enabled: no vector"
        );
        let c = e.dev.lock().unwrap().counters();
        assert_eq!((c.page_requests, c.page_responses), (1, 1));
    }

    #[test]
    fn ats_translation_cached_until_the_guest_invalidates() {
        let mut e = E2e::new();
        e.g.map(0x40_0000, 0x20_0000, true, true);
        let s = e.submit(raw(
            OP_ATS_TRANSLATE,
            FLAG_PASID | FLAG_WRITE,
            PASID,
            0x40_0000,
            0,
            0,
            0,
        ));
        assert_eq!(e.done(s), (STATUS_SUCCESS, 0, 0, 0x20_0000 | 3));
        let s = e.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, PASID, 0x40_0000, 0, 0, 0));
        assert_eq!(e.done(s).2, CFLAG_ATC_HIT);
        let inv = viommu::DevTlbInvalidation {
            sid: RID,
            pasid: Some(PASID),
            addr: 0x40_0000,
            size: 0x1000,
            global: false,
        };
        e.g.submit(&Descriptor::PasidDevTlb { inv });
        let c = e.dev.lock().unwrap().counters();
        assert_eq!(
            (c.atc_entries, c.atc_invalidations, c.atc_removed),
            (0, 1, 1)
        );
        let s = e.submit(raw(OP_ATS_TRANSLATE, FLAG_PASID, PASID, 0x40_0000, 0, 0, 0));
        assert_eq!(e.done(s).2 & CFLAG_ATC_HIT, 0);
    }
}

#[test]
fn msi_is_used_when_msix_is_off() {
    let mut r = rig();
    cfg_write16(&mut r.dev, 0x82, 0);
    r.dev.config_write(0x94, &0xfee0_0000u32.to_le_bytes());
    cfg_write16(&mut r.dev, 0x9c, 0x61);
    cfg_write16(&mut r.dev, 0x92, 1);
    r.submit(raw(OP_NOP, FLAG_IRQ, 0, 0, 0, 0, 0));
    assert_eq!(
        r.sink.take(),
        vec![crate::interrupt::MsiMessage {
            address: 0xfee0_0000,
            data: 0x61
        }]
    );
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Any descriptor completes (status written, HEAD advances) and
        /// never panics.
        #[test]
        fn reject_arbitrary_descriptors(bytes in proptest::collection::vec(any::<u8>(), 64), len in 0u64..0x3000) {
            let mut r = rig();
            r.enable_pri();
            r.iommu.map(Some(P), 0x40_0000, 0x2_0000, true, true);
            let mut d = [0u8; 64];
            d.copy_from_slice(&bytes);
            // Keep the lengths small enough to run quickly but let the
            // addresses be anything.
            d[0x18..0x20].copy_from_slice(&len.to_le_bytes());
            // Half the cases are well-formed, so the ops themselves run
            // on arbitrary addresses.
            if bytes[2] & 1 == 0 {
                d[0] %= 6;
                d[1] &= 0x0f;
                d[2] = 0;
                d[3] = 0;
                d[6] = 0;
                d[7] = 0;
                d[0x28..0x30].fill(0);
                if d[1] & FLAG_PASID == 0 {
                    d[1] &= !FLAG_PRIV;
                    d[4..8].fill(0);
                }
            }
            d[0x30] = 0;
            let s = r.submit(d);
            let (status, ..) = r.done(s);
            let waiting = r.r32(regs::STATUS) & regs::STATUS_WAITING != 0;
            prop_assert!(status != 0 || waiting);
            if waiting {
                r.dev.page_response(&PageResponse { rid: 0x20, pasid: None, prg_index: 0, code: ResponseCode::Failure });
                r.dev.page_response(&PageResponse { rid: 0x20, pasid: Some(u32::from_le_bytes([d[4], d[5], d[6], d[7]])), prg_index: 0, code: ResponseCode::Failure });
                prop_assert_ne!(r.done(s).0, 0);
            }
            prop_assert_eq!(r.r32(regs::HEAD), 1);
        }

        /// Arbitrary register and config writes never panic.
        #[test]
        fn reject_arbitrary_register_writes(ops in proptest::collection::vec((0u64..0x4010, any::<u64>(), 0usize..4, any::<bool>()), 1..64)) {
            let mut r = rig();
            for (off, val, size, cfg) in ops {
                let n = [1usize, 2, 4, 8][size];
                let b = val.to_le_bytes();
                if cfg {
                    r.dev.config_write(u16::try_from(off % 0x1000).unwrap(), &b[..n]);
                } else {
                    r.dev.bar_write(0, off, &b[..n]);
                }
                let mut out = [0u8; 8];
                r.dev.bar_read(0, off, &mut out[..n]);
            }
        }
    }
}

/// Throughput of a 64 MiB COPY with 4 KiB pages through the vIOMMU (warm
/// IOTLB), checker on and off, vs translation off and host memcpy. Run with
/// `cargo test -p devices --release -- --ignored --nocapture perf_`; the best
/// of `SVA_PERF_ROUNDS` copies (default 3) per configuration is reported
/// (more rounds give a profiler more to sample).
#[test]
#[ignore = "measurement; run in release"]
fn perf_copy_64m() {
    use crate::iommu_mmio::ViommuPort;
    use crate::iommu_mmio::tests::GuestVtd;
    use std::time::Instant;

    const LEN: u64 = 64 << 20;
    const SRC_VA: u64 = 0x1000_0000;
    const DST_VA: u64 = 0x2000_0000;
    const SRC: u64 = 0x100_0000;
    const DST: u64 = 0x500_0000;
    const RING: u64 = 0x8000;
    let run = |check: Option<viommu::CheckMode>| -> f64 {
        let config = viommu::Config {
            check: check.unwrap_or(viommu::CheckMode::Off),
            ..viommu::Config::default()
        };
        let mut g = GuestVtd::with(0x20, 0xA00_0000, config);
        g.bind_pasid(1);
        for off in (0..LEN).step_by(4096) {
            g.map(SRC_VA + off, SRC + off, false, true);
            g.map(DST_VA + off, DST + off, true, true);
        }
        if check.is_none() {
            // Translation off: the same copy with addresses used as is.
            g.w32(viommu::regs::GCMD, viommu::regs::gcmd::QIE);
        }
        let port = Arc::new(ViommuPort::new(g.viommu.clone(), g.sink.clone()));
        let mut dev = SvaDevice::new(4, g.mem.clone(), port, g.sink.clone()).unwrap();
        dev.config_write(
            COMMAND,
            &(COMMAND_MEMORY | COMMAND_BUS_MASTER).to_le_bytes(),
        );
        dev.config_write(0x106, &(PASID_CTRL_ENABLE | PASID_CTRL_PRIV).to_le_bytes());
        dev.bar_write(0, regs::RING_BASE, &RING.to_le_bytes());
        dev.bar_write(0, regs::RING_ENTRIES, &16u32.to_le_bytes());
        dev.bar_write(0, regs::CTRL, &1u32.to_le_bytes());
        g.mem
            .write_slice(
                &vec![0x77u8; usize::try_from(LEN).unwrap()],
                GuestAddress(SRC),
            )
            .unwrap();
        let (flags, src, dst) = if check.is_none() {
            (0, SRC, DST)
        } else {
            (FLAG_PASID, SRC_VA, DST_VA)
        };
        let mut best = f64::MAX;
        let rounds: u32 = std::env::var("SVA_PERF_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3);
        for i in 0..rounds {
            g.mem
                .write_slice(
                    &raw(OP_COPY, flags, u32::from(flags), src, dst, LEN, 0),
                    GuestAddress(RING + u64::from(i % 16) * 64),
                )
                .unwrap();
            let t = Instant::now();
            dev.bar_write(0, regs::TAIL, &((i + 1) % 16).to_le_bytes());
            best = best.min(t.elapsed().as_secs_f64());
            let mut st = [0u8; 1];
            g.mem
                .read_slice(&mut st, GuestAddress(RING + u64::from(i % 16) * 64 + 0x30))
                .unwrap();
            assert_eq!(st[0], STATUS_SUCCESS);
        }
        let c = g.viommu.lock().unwrap().counters().cache.iotlb;
        eprintln!(
            "check {check:?}: IOTLB hits {} misses {} fills {}",
            c.hits, c.misses, c.fills
        );
        let mut tail = [0u8; 64];
        g.mem
            .read_slice(&mut tail, GuestAddress(DST + LEN - 64))
            .unwrap();
        assert_eq!(tail, [0x77; 64]);
        LEN as f64 / best / 1e9
    };
    let src = vec![0x77u8; usize::try_from(LEN).unwrap()];
    let mut dst = vec![0u8; usize::try_from(LEN).unwrap()];
    let mut memcpy = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        memcpy = memcpy.min(t.elapsed().as_secs_f64());
    }
    assert_eq!(dst[usize::try_from(LEN).unwrap() - 1], 0x77);
    let memcpy = LEN as f64 / memcpy / 1e9;
    let on_all = run(Some(viommu::CheckMode::All));
    let on_off = run(Some(viommu::CheckMode::Off));
    let off = run(None);
    eprintln!(
        "copy 64 MiB, 4 KiB pages: vIOMMU+checker all {on_all:.2} GB/s, vIOMMU checker off {on_off:.2} GB/s, \
         translation off {off:.2} GB/s, host memcpy {memcpy:.2} GB/s ({:.0}% of memcpy with checker off)",
        100.0 * on_off / memcpy
    );
}

/// The guest's path: enumerate through ECAM, size and use BAR0 through the
/// BAR window, ring the doorbell.
#[test]
fn reachable_through_the_root_complex() {
    use crate::bus::BusDevice;
    use crate::pci::root::{BAR_WINDOW_BASE, ECAM_BASE, PciBarWindow, PciEcam, PciRoot};

    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let iommu = Arc::new(FakeIommu::default());
    iommu.map(None, RING_IOVA, RING_GPA, true, true);
    let sink = Arc::new(RecordingSink::default());
    let dev = Arc::new(Mutex::new(
        SvaDevice::new(4, mem.clone(), iommu, sink).unwrap(),
    ));
    let root = Arc::new(PciRoot::new());
    root.add_device(4, dev.clone()).unwrap();
    let mut ecam = PciEcam::new(root.clone());
    let mut win = PciBarWindow::new(root.clone());
    let cfg = |reg: u64| (4u64 << 15) | reg;
    let mut d = [0u8; 4];
    ecam.read(ECAM_BASE, cfg(0), &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x5641_5357);
    ecam.read(ECAM_BASE, cfg(0x10), &mut d);
    let bar = u64::from(u32::from_le_bytes(d) & !0xf);
    assert_eq!(bar, BAR_WINDOW_BASE);
    ecam.write(ECAM_BASE, cfg(0x10), &[0xff; 4]);
    ecam.read(ECAM_BASE, cfg(0x10), &mut d);
    assert_eq!(u32::from_le_bytes(d), 0xffff_c000, "16 KiB BAR");
    ecam.write(
        ECAM_BASE,
        cfg(0x10),
        &u32::try_from(bar).unwrap().to_le_bytes(),
    );
    ecam.write(
        ECAM_BASE,
        cfg(0x04),
        &(COMMAND_MEMORY | COMMAND_BUS_MASTER).to_le_bytes(),
    );
    win.read(bar, 0, &mut d);
    assert_eq!(u32::from_le_bytes(d), ID_VALUE);
    win.write(bar, regs::RING_BASE, &RING_IOVA.to_le_bytes());
    win.write(bar, regs::RING_ENTRIES, &16u32.to_le_bytes());
    win.write(bar, regs::CTRL, &1u32.to_le_bytes());
    mem.write_slice(&raw(OP_NOP, 0, 0, 0, 0, 0, 0), GuestAddress(RING_GPA))
        .unwrap();
    win.write(bar, regs::TAIL, &1u32.to_le_bytes());
    win.read(bar, regs::HEAD, &mut d);
    assert_eq!(u32::from_le_bytes(d), 1);
    let mut st = [0u8; 1];
    mem.read_slice(&mut st, GuestAddress(RING_GPA + 0x30))
        .unwrap();
    assert_eq!(st[0], STATUS_SUCCESS);
}
