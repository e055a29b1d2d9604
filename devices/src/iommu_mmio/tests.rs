//! Tests of the front end and port against a real `viommu::Viommu`, driven
//! through its registers by a tiny in-test VT-d driver ([`GuestVtd`]) that
//! sets up scalable-mode tables, first-stage page tables, queued
//! invalidation and the page-request queue in guest memory.

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::dma::{Access, DevTlbInvalidation};
use crate::pci::msix::tests::RecordingSink;
use viommu::qi::{self, Descriptor};
use viommu::regs;

/// Guest memory size of the rig.
pub(crate) const MEM_SIZE: u64 = 0x40_0000;
const ROOT: u64 = 0x1000;
const CONTEXT: u64 = 0x2000;
const PASID_DIR: u64 = 0x3000;
const PASID_TABLE: u64 = 0x4000;
const IQ: u64 = 0x5000;
const PRQ: u64 = 0x6000;
const PML4: u64 = 0x10000;
/// MSI data of the fault event.
pub(crate) const FAULT_DATA: u32 = 0x51;
/// MSI data of the page request event.
pub(crate) const PRQ_DATA: u32 = 0x52;
/// First-stage PTE bits.
const P: u64 = 1;
const RW: u64 = 2;
const US: u64 = 4;

/// A guest VT-d driver for tests: owns the unit's front end and the tables.
pub(crate) struct GuestVtd {
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) viommu: Arc<Mutex<Viommu>>,
    pub(crate) mmio: ViommuMmio<GuestMemoryMmap>,
    pub(crate) sink: Arc<RecordingSink>,
    next_table: u64,
    iq_tail: u64,
}

impl GuestVtd {
    /// Unit initialised in scalable mode with QI, PRQ, fault and page request
    /// MSIs set up, translation on, and requester `rid` given a context
    /// entry (PASID, PRE and DTE on) whose PASID 0 (RID_PASID) is
    /// pass-through.
    pub(crate) fn new(rid: u16) -> Self {
        Self::with(rid, MEM_SIZE, viommu::Config::default())
    }

    /// As [`Self::new`] with `mem_size` bytes of guest memory and `config`.
    pub(crate) fn with(rid: u16, mem_size: u64, config: viommu::Config) -> Self {
        let mem =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(mem_size).unwrap())])
                .unwrap();
        let viommu = Arc::new(Mutex::new(Viommu::new(config)));
        let sink = Arc::new(RecordingSink::default());
        let mmio = ViommuMmio::new(viommu.clone(), mem.clone(), sink.clone());
        let mut g = Self {
            mem,
            viommu,
            mmio,
            sink,
            next_table: PML4 + 0x1000,
            iq_tail: 0,
        };
        let devfn = u64::from(rid & 0xff);
        assert!(rid >> 8 == 0 && devfn < 128);
        g.store(ROOT, CONTEXT | 1);
        g.store(
            CONTEXT + devfn * 32,
            PASID_DIR | (1 << 4) | (1 << 3) | (1 << 2) | 1,
        );
        g.store(PASID_DIR, PASID_TABLE | 1);
        // PASID 0: pass-through, DID 1.
        g.store(PASID_TABLE + 8, 1);
        g.store(PASID_TABLE, 1 | (4 << 6));
        // The one scalable-mode enable sequence (viommu's fixture), here
        // through the MMIO front end.
        let layout = viommu::fixture::EnableLayout {
            root: ROOT,
            queue: IQ,
            queue_order: 0,
            prq: PRQ,
            fault_msi: Some((0xfee0_0000, FAULT_DATA)),
            prq_msi: Some((0xfee0_0000, PRQ_DATA)),
        };
        for w in viommu::fixture::enable_sequence(&layout) {
            if w.bytes == 8 {
                g.w64(w.offset, w.value);
            } else {
                g.w32(w.offset, u32::try_from(w.value).unwrap());
            }
        }
        assert_ne!(g.r32(regs::GSTS) & regs::gcmd::TE, 0);
        g
    }

    pub(crate) fn store(&self, gpa: u64, v: u64) {
        self.mem.write_obj(v, GuestAddress(gpa)).unwrap();
    }

    fn load(&self, gpa: u64) -> u64 {
        self.mem.read_obj(GuestAddress(gpa)).unwrap()
    }

    pub(crate) fn w32(&mut self, off: u64, v: u32) {
        self.mmio.write(VIOMMU_MMIO_BASE, off, &v.to_le_bytes());
    }

    pub(crate) fn w64(&mut self, off: u64, v: u64) {
        self.mmio.write(VIOMMU_MMIO_BASE, off, &v.to_le_bytes());
    }

    pub(crate) fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.mmio.read(VIOMMU_MMIO_BASE, off, &mut b);
        u32::from_le_bytes(b)
    }

    /// Binds `pasid` (< 64) to a fresh first-stage page table (DID 2, SRE).
    pub(crate) fn bind_pasid(&mut self, pasid: u32) {
        let pe = PASID_TABLE + u64::from(pasid) * 64;
        self.store(pe + 8, 2);
        self.store(pe + 16, PML4 | 1);
        self.store(pe, 1 | (1 << 6));
    }

    fn table(&mut self) -> u64 {
        let t = self.next_table;
        self.next_table += 0x1000;
        assert!(self.next_table < 0x10_0000, "page-table area exhausted");
        t
    }

    /// Maps the 4 KiB page at `va` to `gpa` in the shared first-stage table.
    pub(crate) fn map(&mut self, va: u64, gpa: u64, write: bool, user: bool) {
        let mut table = PML4;
        for level in (1..4).rev() {
            let idx = (va >> (12 + 9 * level)) & 0x1ff;
            let slot = table + idx * 8;
            let e = self.load(slot);
            table = if e & P != 0 {
                e & 0x000f_ffff_ffff_f000
            } else {
                let t = self.table();
                self.store(slot, t | P | RW | US);
                t
            };
        }
        let idx = (va >> 12) & 0x1ff;
        let bits = P | if write { RW } else { 0 } | if user { US } else { 0 };
        self.store(table + idx * 8, gpa | bits);
    }

    /// Submits one invalidation descriptor and rings IQT.
    pub(crate) fn submit(&mut self, d: &Descriptor) {
        let words = qi::encode(d);
        let slot = IQ + self.iq_tail * 32;
        for (i, w) in words.iter().enumerate() {
            self.store(slot + 8 * i as u64, *w);
        }
        self.iq_tail = (self.iq_tail + 1) % 128;
        let t = self.iq_tail << 5;
        self.w64(regs::IQT, t);
    }

    /// The page requests waiting in the page-request queue (raw qwords 0
    /// and 1), consumed (PQH moved to PQT).
    pub(crate) fn take_page_requests(&mut self) -> Vec<(u64, u64)> {
        let mut b = [0u8; 8];
        self.mmio.read(VIOMMU_MMIO_BASE, regs::PQH, &mut b);
        let mut head = u64::from_le_bytes(b);
        self.mmio.read(VIOMMU_MMIO_BASE, regs::PQT, &mut b);
        let tail = u64::from_le_bytes(b);
        let mut out = Vec::new();
        while head != tail {
            out.push((self.load(PRQ + head), self.load(PRQ + head + 8)));
            head = (head + 32) % 4096;
        }
        self.w64(regs::PQH, head);
        self.w32(regs::PRS, 1);
        out
    }
}

#[derive(Debug, Default)]
struct Recorder {
    responses: Vec<PageResponse>,
    invalidations: Vec<DevTlbInvalidation>,
}

#[derive(Debug)]
struct FakeEndpoint {
    rid: u16,
    seen: Arc<Mutex<Recorder>>,
}

impl IommuEndpoint for FakeEndpoint {
    fn requester_id(&self) -> u16 {
        self.rid
    }
    fn page_response(&mut self, resp: &PageResponse) {
        self.seen.lock().unwrap().responses.push(*resp);
    }
    fn devtlb_invalidate(&mut self, inv: &DevTlbInvalidation) {
        self.seen.lock().unwrap().invalidations.push(*inv);
    }
}

const RID: u16 = 0x20;

#[test]
fn register_reads_match_the_unit() {
    let mut g = GuestVtd::new(RID);
    let mut b = [0u8; 8];
    g.mmio.read(VIOMMU_MMIO_BASE, regs::ECAP, &mut b);
    let mut direct = [0u8; 8];
    g.viommu.lock().unwrap().mmio_read(regs::ECAP, &mut direct);
    assert_eq!(b, direct);
    assert_ne!(u64::from_le_bytes(b), 0);
}

#[test]
fn translation_through_the_port_and_fault_event_msi() {
    let mut g = GuestVtd::new(RID);
    g.bind_pasid(1);
    g.map(0x40_0000, 0x20_0000, true, true);
    let port = ViommuPort::new(g.viommu.clone(), g.sink.clone());
    let req = |addr, pasid| DmaRequest {
        rid: RID,
        pasid,
        addr,
        access: Access::Write,
        privileged: false,
    };
    let plain = RequestKind::Untranslated;
    assert_eq!(
        port.translate(&g.mem, &req(0x40_0123, Some(1)), plain),
        Ok(0x20_0123)
    );
    assert_eq!(
        port.translate(&g.mem, &req(0x8000, None), plain),
        Ok(0x8000),
        "RID_PASID is pass-through"
    );
    let fault = port
        .translate(&g.mem, &req(0x50_0000, Some(1)), plain)
        .unwrap_err();
    assert_eq!(fault.addr, 0x50_0000);
    assert_ne!(fault.reason, 0);
    let msis = g.sink.take();
    assert_eq!(msis.len(), 1);
    assert_eq!(
        msis[0],
        MsiMessage {
            address: 0xfee0_0000,
            data: FAULT_DATA
        }
    );
    assert_ne!(g.r32(regs::FSTS) & regs::fsts::PPF, 0, "fault recorded");
}

#[test]
fn ats_translation_faults_are_not_recorded() {
    let g = GuestVtd::new(RID);
    let port = ViommuPort::new(g.viommu.clone(), g.sink.clone());
    let req = DmaRequest {
        rid: RID,
        pasid: Some(3),
        addr: 0x1000,
        access: Access::Read,
        privileged: false,
    };
    assert!(
        DmaTranslate::<GuestMemoryMmap>::translate(
            &port,
            &g.mem,
            &req,
            RequestKind::AtsTranslation
        )
        .is_err()
    );
    assert!(g.sink.take().is_empty());
}

#[test]
fn page_requests_reach_the_queue_and_responses_reach_the_endpoint() {
    let mut g = GuestVtd::new(RID);
    let seen = Arc::new(Mutex::new(Recorder::default()));
    g.mmio
        .add_endpoint(Arc::new(Mutex::new(FakeEndpoint {
            rid: RID,
            seen: seen.clone(),
        })))
        .unwrap();
    let port = ViommuPort::new(g.viommu.clone(), g.sink.clone());
    let pr = PageRequest {
        rid: RID,
        pasid: Some(1),
        addr: 0x50_0000,
        read: false,
        write: true,
        exec: false,
        privileged: false,
        last: true,
        group_index: 5,
        private_data: 0,
    };
    port.page_request(&g.mem, &pr).unwrap();
    assert_eq!(
        g.sink.take(),
        vec![MsiMessage {
            address: 0xfee0_0000,
            data: PRQ_DATA
        }]
    );
    let reqs = g.take_page_requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1 & !0xfff, 0x50_0000);
    g.submit(&Descriptor::PageGroupResponse {
        rid: RID,
        pasid: Some(1),
        code: 0,
        group_index: 5,
        lpig: true,
    });
    let got = seen.lock().unwrap().responses.clone();
    assert_eq!(
        got,
        vec![PageResponse {
            rid: RID,
            pasid: Some(1),
            prg_index: 5,
            code: ResponseCode::Success
        }]
    );
}

#[test]
fn devtlb_invalidations_are_routed_by_requester_id() {
    let mut g = GuestVtd::new(RID);
    let seen = Arc::new(Mutex::new(Recorder::default()));
    g.mmio
        .add_endpoint(Arc::new(Mutex::new(FakeEndpoint {
            rid: RID,
            seen: seen.clone(),
        })))
        .unwrap();
    let inv = viommu::DevTlbInvalidation {
        sid: RID,
        pasid: Some(1),
        addr: 0x40_0000,
        size: 0x1000,
        global: false,
    };
    g.submit(&Descriptor::PasidDevTlb { inv });
    let other = viommu::DevTlbInvalidation {
        sid: 0x28,
        pasid: None,
        addr: 0,
        size: u64::MAX,
        global: false,
    };
    g.submit(&Descriptor::DevTlb {
        inv: other,
        qdep: 0,
    });
    let got = seen.lock().unwrap().invalidations.clone();
    assert_eq!(got, vec![inv]);
    assert_eq!(
        g.mmio.counters(),
        FrontEndCounters {
            dropped_responses: 0,
            dropped_invalidations: 1
        }
    );
}

#[test]
fn reject_duplicate_and_excess_endpoints() {
    let mut g = GuestVtd::new(RID);
    let ep = |rid| {
        Arc::new(Mutex::new(FakeEndpoint {
            rid,
            seen: Arc::default(),
        }))
    };
    g.mmio.add_endpoint(ep(RID)).unwrap();
    assert_eq!(
        g.mmio.add_endpoint(ep(RID)),
        Err(FrontEndError::DuplicateRequester(RID))
    );
    for i in 1..MAX_ENDPOINTS {
        g.mmio
            .add_endpoint(ep(RID + u16::try_from(i).unwrap()))
            .unwrap();
    }
    assert_eq!(
        g.mmio.add_endpoint(ep(0x1000)),
        Err(FrontEndError::TooManyEndpoints)
    );
}

#[test]
fn reject_odd_register_accesses() {
    let mut g = GuestVtd::new(RID);
    let mut b = [0u8; 3];
    g.mmio.read(VIOMMU_MMIO_BASE, 0x7, &mut b);
    g.mmio.write(VIOMMU_MMIO_BASE, 0xfff, &[0xff]);
    g.mmio.write(VIOMMU_MMIO_BASE, 0x5000, &[0xff; 8]);
    g.mmio.read(VIOMMU_MMIO_BASE, u64::MAX, &mut b);
    assert_ne!(g.r32(regs::GSTS) & regs::gcmd::TE, 0, "unit still on");
}

impl GuestVtd {
    /// Makes RID_PASID (PASID 0) translate through the shared first-stage
    /// table instead of passing through (a DMA domain with first-stage
    /// tables, as Linux 6.12 sets up in scalable mode).
    pub(crate) fn rid_pasid_first_stage(&mut self) {
        self.store(PASID_TABLE + 8, 1);
        self.store(PASID_TABLE + 16, PML4);
        self.store(PASID_TABLE, 1 | (1 << 6));
    }
}
