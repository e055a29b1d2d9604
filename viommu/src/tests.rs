//! Unit tests of the whole unit through its register and queue interfaces,
//! the seed's story, and property tests against an independent reference
//! walker.

use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::descriptor::{
    self as qi, ContextGranularity, IotlbGranularity, PasidCacheGranularity, PiotlbGranularity,
};
use crate::event::SharedSink;
use crate::prq::PrqError;
use crate::regs::{fsts, gcmd};
use crate::tables::pgtt;
use crate::walk::{PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD, index};

use crate::fixture::{
    CTX, K, MEM_SIZE, PASID_DIR, PASID_TABLE, PRQ, QUEUE, RID, ROOT, STATUS,
    ScalableUnit as Harness, U,
};

fn read(h: &mut Harness, pasid: u32, va: u64) -> Result<Translation, TranslationFault> {
    h.dma(Some(pasid), va, Access::Read, false)
}

// ------------------------------------------------------------- registers

#[test]
fn gcmd_reflects_in_gsts() {
    let mut h = Harness::new(Config::default());
    let gsts = h.rd32(regs::GSTS);
    assert_eq!(
        gsts & (gcmd::TE | gcmd::QIE | gcmd::SRTP),
        gcmd::TE | gcmd::QIE | gcmd::SRTP
    );
    // Linux rewrites persistent bits: turning TE off keeps QIE.
    h.reg32(regs::GCMD, gcmd::QIE);
    assert_eq!(h.rd32(regs::GSTS) & (gcmd::TE | gcmd::QIE), gcmd::QIE);
    assert!(!h.unit.translation_enabled());
    // With TE off, DMA passes through untranslated.
    let t = read(&mut h, 1, 0x1234_5678).unwrap();
    assert!(t.pass_through);
    assert_eq!(t.addr, 0x1234_5678);
    h.reg32(regs::GCMD, 0);
    assert_eq!(h.rd32(regs::GSTS) & gcmd::QIE, 0);
}

#[test]
fn qie_enable_resets_head() {
    let mut h = Harness::new(Config::default());
    h.submit(&[Descriptor::Iec {
        global: true,
        index: 0,
        im: 0,
    }]);
    assert_eq!(h.rd64(regs::IQH), 32);
    h.reg32(regs::GCMD, gcmd::TE);
    h.reg64(regs::IQT, 0);
    h.reset_tail();
    h.reg32(regs::GCMD, gcmd::TE | gcmd::QIE);
    assert_eq!(h.rd64(regs::IQH), 0);
}

#[test]
fn reject_legacy_root_table() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x1000, 0x5000, true);
    h.bind(1, false);
    h.reg64(regs::RTADDR, ROOT);
    h.reg32(regs::GCMD, gcmd::TE | gcmd::QIE | gcmd::SRTP);
    h.submit(&[Descriptor::ContextCache {
        granularity: ContextGranularity::Global,
    }]);
    let f = read(&mut h, 1, 0x1000).unwrap_err();
    assert_eq!(
        f.reason,
        FaultReason::Table(TableError::NotScalableMode { ttm: 0 })
    );
}

#[test]
fn register_based_invalidations() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x1000, 0x5000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x1000).unwrap();
    let (ctx, _, iotlb, _) = h.unit.caches().sizes();
    assert_eq!((ctx, iotlb), (1, 1));
    h.reg64(regs::CCMD, (1 << 63) | (1 << 61));
    let ccmd = h.rd64(regs::CCMD);
    assert_eq!(
        (ccmd >> 63, (ccmd >> 59) & 3),
        (0, 1),
        "ICC clear, CAIG = global"
    );
    h.reg64(regs::IVA, 0x1000);
    h.reg64(regs::IOTLB, (1 << 63) | (3 << 60) | (1 << 32));
    let iotlb = h.rd64(regs::IOTLB);
    assert_eq!(
        (iotlb >> 63, (iotlb >> 57) & 3),
        (0, 3),
        "IVT clear, IAIG = page"
    );
    let (ctx, _, iotlb, _) = h.unit.caches().sizes();
    assert_eq!((ctx, iotlb), (0, 0));
    assert_eq!(h.unit.counters().invalidations.context, 1);
    assert_eq!(h.unit.counters().invalidations.iotlb, 1);
}

// ------------------------------------------------------------ translation

#[test]
fn translate_user_pages_and_fill_caches() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x7000_0000, 0x40_0000, true);
    h.bind(1, false);
    let t = h.dma(Some(1), 0x7000_0123, Access::Write, false).unwrap();
    assert_eq!(
        (t.addr, t.page_size, t.writable, t.pass_through),
        (0x40_0123, 4096, true, false)
    );
    assert!(!t.hits.iotlb);
    let t = read(&mut h, 1, 0x7000_0456).unwrap();
    assert!(t.hits.iotlb && t.hits.context && t.hits.pasid);
    let c = h.unit.counters();
    assert_eq!((c.translations, c.faults, c.stale_walks.total()), (2, 0, 0));
    assert_eq!(
        (c.cache.iotlb.hits, c.cache.pde.fills, c.cache.pml4e.fills),
        (1, 1, 1)
    );
    // Accessed and dirty were set by compare-exchange.
    let leaf = h.entry_addr(0x7000_0000, 1);
    assert_eq!(
        h.r64(leaf) & (walk::PTE_A | walk::PTE_D),
        walk::PTE_A | walk::PTE_D
    );
}

/// Repeated IOTLB hits (the memoized last-hit route) give the same results,
/// rights checks and counts as the first hit, and stop at invalidations,
/// other pages, other requesters and a translation-enable change.
#[test]
fn reject_repeated_hits_that_the_rights_forbid() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x7000_0000, 0x40_0000, false);
    h.map_user(0x7000_1000, 0x41_0000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x7000_0000).unwrap();
    for _ in 0..3 {
        let t = read(&mut h, 1, 0x7000_0008).unwrap();
        assert_eq!((t.addr, t.writable, t.hits.iotlb), (0x40_0008, false, true));
        let f = h
            .dma(Some(1), 0x7000_0010, Access::Write, false)
            .unwrap_err();
        assert_eq!(
            f.reason,
            FaultReason::Walk(WalkError::Write { addr: 0x7000_0010 })
        );
        // SRE=0: a supervisor request faults even on a cached page.
        let f = h.dma(Some(1), 0x7000_0010, Access::Read, true).unwrap_err();
        assert_eq!(f.reason, FaultReason::Walk(WalkError::SupervisorDisabled));
        let t = h.dma(Some(1), 0x7000_0018, Access::Execute, false).unwrap();
        assert_eq!(t.addr, 0x40_0018);
        // Another page (neighbour) is not served by the last hit.
        let t = h.dma(Some(1), 0x7000_1000, Access::Write, false).unwrap();
        assert_eq!(t.addr, 0x41_0000);
        // Non-canonical addresses never match a cached page.
        assert!(read(&mut h, 1, 0x8000_7000_0000_0000).is_err());
    }
    let c = h.unit.counters();
    assert_eq!((c.translations, c.faults), (1 + 3 * 6, 3 * 3));
    assert_eq!(c.cache.iotlb.hits, 3 * 3 + 2);
    // An invalidation ends it: the next access walks memory again.
    h.unmap_leaf_for_test(0x7000_0000);
    h.piotlb_page(1, 0x7000_0000, 0, false);
    assert!(read(&mut h, 1, 0x7000_0000).is_err());
    // Translation disabled: pass-through, even right after a hit.
    h.map_user(0x7000_0000, 0x40_0000, false);
    read(&mut h, 1, 0x7000_0000).unwrap();
    read(&mut h, 1, 0x7000_0000).unwrap();
    h.reg32(regs::GCMD, gcmd::QIE);
    assert!(read(&mut h, 1, 0x7000_0000).unwrap().pass_through);
}

/// A write that hits an IOTLB entry filled by a read sets D in the guest's
/// leaf (the unit walks again, as hardware must), and the refilled entry
/// serves later writes; a write the rights refuse still faults on the hit.
#[test]
fn write_hit_on_read_filled_entry_sets_dirty() {
    let mut h = Harness::new(Config::default());
    let leaf = h.map_user(0x4000, 0x60_0000, true);
    let ro = h.map_user(0x5000, 0x61_0000, false);
    h.bind(1, false);
    read(&mut h, 1, 0x4000).unwrap();
    read(&mut h, 1, 0x4008).unwrap();
    assert_eq!(h.r64(leaf) & (walk::PTE_A | walk::PTE_D), walk::PTE_A);
    let t = h.dma(Some(1), 0x4010, Access::Write, false).unwrap();
    assert_eq!(t.addr, 0x60_0010);
    assert_ne!(h.r64(leaf) & walk::PTE_D, 0, "D set by the write");
    let hits = h.unit.counters().cache.iotlb.hits;
    for _ in 0..3 {
        h.dma(Some(1), 0x4018, Access::Write, false).unwrap();
    }
    assert_eq!(h.unit.counters().cache.iotlb.hits, hits + 3);
    // A read-only page: the write faults on the hit, D stays clear.
    read(&mut h, 1, 0x5000).unwrap();
    let f = h.dma(Some(1), 0x5000, Access::Write, false).unwrap_err();
    assert_eq!(
        f.reason,
        FaultReason::Walk(WalkError::Write { addr: 0x5000 })
    );
    assert_eq!(h.r64(ro) & walk::PTE_D, 0);
    assert_eq!(h.unit.counters().stale_walks.total(), 0);
}

#[test]
fn pde_cache_hit_for_neighbouring_page() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x7000_0000, 0x40_0000, true);
    h.map_user(0x7000_1000, 0x41_0000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x7000_0000).unwrap();
    let t = read(&mut h, 1, 0x7000_1000).unwrap();
    assert_eq!(t.hits.psc_level, Some(2));
    assert_eq!(t.addr, 0x41_0000);
    assert_eq!(h.unit.counters().cache.pde.hits, 1);
}

#[test]
fn requests_without_pasid_use_rid_pasid() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x2000, 0x9000, true);
    h.bind(0, false);
    let t = h.dma(None, 0x2010, Access::Read, true).unwrap();
    assert_eq!(t.addr, 0x9010);
}

#[test]
fn pass_through_pasid_entry() {
    let mut h = Harness::new(Config::default());
    h.w64(PASID_DIR, PASID_TABLE | 1);
    h.w64(PASID_TABLE + 64 * 3 + 8, 1);
    h.w64(
        PASID_TABLE + 64 * 3,
        1 | (u64::from(pgtt::PASS_THROUGH) << 6),
    );
    let t = read(&mut h, 3, 0xabc_d000).unwrap();
    assert!(t.pass_through);
    assert_eq!(t.addr, 0xabc_d000);
    let mut h = Harness::new(Config {
        pass_through: false,
        ..Config::default()
    });
    h.w64(PASID_DIR, PASID_TABLE | 1);
    h.w64(
        PASID_TABLE + 64 * 3,
        1 | (u64::from(pgtt::PASS_THROUGH) << 6),
    );
    assert_eq!(
        read(&mut h, 3, 0).unwrap_err().reason,
        FaultReason::PassThroughUnsupported
    );
}

#[test]
fn five_level_translation() {
    let cfg = Config {
        levels: Levels::Five,
        ..Config::default()
    };
    let mut h = Harness::new(cfg);
    let va = 0x00f0_1234_5678_9000;
    h.map_user(va, 0x50_0000, false);
    h.bind(1, false);
    let t = read(&mut h, 1, va + 8).unwrap();
    assert_eq!(t.addr, 0x50_0008);
    let t = read(&mut h, 1, va + 16).unwrap();
    assert!(t.hits.iotlb);
    assert_eq!(h.unit.counters().cache.pml5e.fills, 1);
    let f = h.dma(Some(1), va, Access::Write, false).unwrap_err();
    assert_eq!(f.reason, FaultReason::Walk(WalkError::Write { addr: va }));
}

#[test]
fn reject_five_level_entry_on_four_level_unit() {
    let mut h = Harness::new(Config::default());
    h.bind(1, false);
    let pe = PASID_TABLE + 64;
    let v = h.r64(pe + 16);
    h.w64(pe + 16, v | (1 << 2));
    assert_eq!(
        read(&mut h, 1, 0).unwrap_err().reason,
        FaultReason::Levels { levels: 5 }
    );
}

/// ECAP matches behaviour: the unit honours supervisor and execute
/// requests, and advertises SRS and ERS.
#[test]
fn ecap_advertises_the_request_kinds_it_honours() {
    let mut h = Harness::new(Config::default());
    let ecap = h.rd64(regs::ECAP);
    h.map(0x4000, 0x60_0000, K, K);
    h.map_user(0x5000, 0x61_0000, true);
    h.bind(1, true);
    let supervisor = h.dma(Some(1), 0x4000, Access::Read, true).is_ok();
    let execute = h.dma(Some(1), 0x5000, Access::Execute, false).is_ok();
    assert!(supervisor && execute);
    assert_eq!(ecap & (1 << 31) != 0, supervisor, "ECAP.SRS");
    assert_eq!(ecap & (1 << 30) != 0, execute, "ECAP.ERS");
}

#[test]
fn reject_supervisor_request_without_sre() {
    let mut h = Harness::new(Config::default());
    h.map(0xffff_8880_0000_0000, 0x50_0000, K, K);
    h.bind(1, false);
    let f = h
        .dma(Some(1), 0xffff_8880_0000_0000, Access::Read, true)
        .unwrap_err();
    assert_eq!(f.reason, FaultReason::Walk(WalkError::SupervisorDisabled));
    h.bind(2, true);
    let t = h
        .dma(Some(2), 0xffff_8880_0000_0010, Access::Read, true)
        .unwrap();
    assert_eq!(t.addr, 0x50_0010);
}

/// VT-d blocks a translation whose output lands in the interrupt address
/// range (SGN.8, reason 0x87), on a walk and on an IOTLB hit alike; a large
/// page overlapping the range is handed out in 4-KiB pieces.
#[test]
fn reject_output_in_interrupt_range() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x4000, 0xfee0_0000, true);
    h.map_user(0x5000, 0xfeef_f000, true);
    h.map_user(0x6000, 0xfef0_0000, true);
    // A 2-MiB user leaf at 0xfee00000: the first MiB is the window.
    h.map_at(0x4000_0000, 0xfee0_0000, 2, U, U);
    h.bind(1, false);
    for va in [0x4008, 0x5ff8, 0x4000_0000, 0x400f_f000] {
        let f = h.dma(Some(1), va, Access::Write, false).unwrap_err();
        assert_eq!(f.reason.code(), 0x87, "{va:#x}");
        assert!(f.recorded);
    }
    assert_eq!(read(&mut h, 1, 0x6000).unwrap().addr, 0xfef0_0000);
    // Past the window inside the large page: allowed, in a 4-KiB piece.
    let t = read(&mut h, 1, 0x4010_0010).unwrap();
    assert_eq!((t.addr, t.page_size), (0xfef0_0010, 0x1000));
    // The IOTLB now holds the large leaf: a hit into the window still faults.
    let f = read(&mut h, 1, 0x4000_1000).unwrap_err();
    assert_eq!(
        f.reason,
        FaultReason::InterruptRange {
            output: 0xfee0_1000
        }
    );
    assert!(h.unit.counters().cache.iotlb.hits >= 1);
}

#[test]
fn reject_non_canonical_and_pasid_without_paside() {
    let mut h = Harness::new(Config::default());
    h.bind(1, false);
    let f = read(&mut h, 1, 0x0000_8000_0000_0000).unwrap_err();
    assert!(matches!(
        f.reason,
        FaultReason::Walk(WalkError::NonCanonical { .. })
    ));
    h.w64(CTX + u64::from(RID & 0x7f) * 32, PASID_DIR | 1);
    h.submit(&[Descriptor::ContextCache {
        granularity: ContextGranularity::Global,
    }]);
    let f = read(&mut h, 1, 0).unwrap_err();
    assert_eq!(
        f.reason,
        FaultReason::Table(TableError::PasidDisabled { rid: RID, pasid: 1 })
    );
}

#[test]
fn reject_torn_pasid_entry() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x1000, 0x5000, true);
    h.bind(1, false);
    // Teardown caught halfway: qword 0 still present, qword 2 already zero.
    h.w64(PASID_TABLE + 64 + 16, 0);
    assert_eq!(
        read(&mut h, 1, 0x1000).unwrap_err().reason,
        FaultReason::Table(TableError::PasidNotPresent { pasid: 1 })
    );
}

// ----------------------------------------------------------------- faults

#[test]
fn faults_are_recorded_and_signalled() {
    let mut h = Harness::new(Config::default());
    h.bind(1, false);
    h.reg32(regs::FEDATA, 0x45);
    h.reg32(regs::FEADDR, 0xfee0_0000);
    h.reg32(regs::FECTL, 0);
    let f = read(&mut h, 1, 0x5000).unwrap_err();
    assert!(f.recorded);
    assert_eq!(
        h.unit.take_msis(),
        vec![Msi {
            address: 0xfee0_0000,
            data: 0x45
        }]
    );
    let fsts_v = h.rd32(regs::FSTS);
    assert_eq!(fsts_v & fsts::PPF, fsts::PPF);
    let hi = h.rd64(regs::FRCD + 8);
    assert_eq!((hi >> 32) & 0xff, 0x71, "not-present first-stage entry");
    assert_eq!(hi & 0xffff, u64::from(RID));
    assert_eq!(h.rd64(regs::FRCD), 0x5000);
    // Second fault while PPF pending: recorded, no new interrupt.
    read(&mut h, 1, 0x6000).unwrap_err();
    assert!(h.unit.take_msis().is_empty());
    // Clear both records: PPF drops.
    h.reg32(regs::FRCD + 12, 1 << 31);
    h.reg32(regs::FRCD + 16 + 12, 1 << 31);
    assert_eq!(h.rd32(regs::FSTS) & fsts::PPF, 0);
}

#[test]
fn fault_overflow_sets_pfo() {
    let mut h = Harness::new(Config {
        fault_records: 1,
        ..Config::default()
    });
    h.bind(1, false);
    assert!(read(&mut h, 1, 0x5000).unwrap_err().recorded);
    assert!(!read(&mut h, 1, 0x6000).unwrap_err().recorded);
    assert_ne!(h.rd32(regs::FSTS) & fsts::PFO, 0);
    assert_eq!(h.unit.counters().faults, 2);
    assert_eq!(h.unit.counters().faults_recorded, 1);
    // Masked fault event stays pending; unmasking delivers it.
    assert!(h.unit.take_msis().is_empty());
    assert_ne!(h.rd32(regs::FECTL) & regs::CTL_IP, 0);
    h.reg32(regs::FECTL, 0);
    assert_eq!(h.unit.take_msis().len(), 1);
}

#[test]
fn fpd_and_ats_suppress_recording() {
    let mut h = Harness::new(Config::default());
    h.bind(1, false);
    let mem = h.mem.clone();
    let req = DmaRequest {
        rid: RID,
        pasid: Some(1),
        addr: 0x5000,
        access: Access::Read,
        privileged: false,
    };
    assert!(!h.unit.translate_ats(&mem, &req).unwrap_err().recorded);
    let pe = PASID_TABLE + 64;
    let v = h.r64(pe);
    h.w64(pe, v | 2);
    h.submit(&[Descriptor::PasidCache {
        did: 1,
        granularity: PasidCacheGranularity::Global,
    }]);
    assert!(!read(&mut h, 1, 0x5000).unwrap_err().recorded);
    assert_eq!(h.rd32(regs::FSTS) & fsts::PPF, 0);
    assert_eq!(h.unit.counters().faults, 2);
}

// ---------------------------------------------------------- invalidations

#[test]
fn every_descriptor_type_is_counted() {
    let mut h = Harness::new(Config::default());
    let inv = DevTlbInvalidation {
        sid: RID,
        pasid: None,
        addr: 0x4000,
        size: 0x2000,
        global: false,
    };
    h.submit(&[
        Descriptor::ContextCache {
            granularity: ContextGranularity::Global,
        },
        Descriptor::ContextCache {
            granularity: ContextGranularity::Domain { did: 1 },
        },
        Descriptor::ContextCache {
            granularity: ContextGranularity::Device {
                did: 1,
                sid: RID,
                fm: 0,
            },
        },
        Descriptor::Iotlb {
            granularity: IotlbGranularity::Global,
            dr: false,
            dw: false,
        },
        Descriptor::Iotlb {
            granularity: IotlbGranularity::Domain { did: 1 },
            dr: false,
            dw: false,
        },
        Descriptor::Iotlb {
            granularity: IotlbGranularity::Page {
                did: 1,
                addr: 0,
                am: 0,
                ih: true,
            },
            dr: false,
            dw: false,
        },
        Descriptor::DevTlb { inv, qdep: 0 },
        Descriptor::Iec {
            global: true,
            index: 0,
            im: 0,
        },
        Descriptor::Wait {
            sw: true,
            interrupt: false,
            fence: true,
            pd: true,
            status_data: 1,
            status_addr: STATUS,
        },
        Descriptor::Piotlb {
            did: 1,
            pasid: 1,
            granularity: PiotlbGranularity::Pasid,
        },
        Descriptor::Piotlb {
            did: 1,
            pasid: 1,
            granularity: PiotlbGranularity::Page {
                addr: 0x1000,
                am: 0,
                ih: false,
            },
        },
        Descriptor::PasidCache {
            did: 1,
            granularity: PasidCacheGranularity::Domain,
        },
        Descriptor::PasidCache {
            did: 1,
            granularity: PasidCacheGranularity::Pasid { pasid: 1 },
        },
        Descriptor::PasidCache {
            did: 1,
            granularity: PasidCacheGranularity::Global,
        },
        Descriptor::PasidDevTlb {
            inv: DevTlbInvalidation {
                pasid: Some(1),
                size: u64::MAX,
                addr: 0,
                ..inv
            },
        },
        Descriptor::PageGroupResponse {
            rid: RID,
            pasid: Some(1),
            code: 0,
            group_index: 1,
            lpig: true,
        },
    ]);
    let c = h.unit.counters().clone();
    let i = c.invalidations;
    assert_eq!(
        (
            i.context,
            i.iotlb,
            i.devtlb,
            i.iec,
            i.wait,
            i.piotlb,
            i.pasid_cache,
            i.pdevtlb,
            i.page_response
        ),
        (3, 3, 1, 1, 1, 2, 3, 1, 1)
    );
    let g = c.granularity;
    assert_eq!(
        (g.context_global, g.context_domain, g.context_device),
        (1, 1, 1)
    );
    assert_eq!((g.iotlb_global, g.iotlb_domain, g.iotlb_page), (1, 1, 1));
    assert_eq!((g.piotlb_pasid, g.piotlb_page, g.ih0, g.ih1), (1, 1, 1, 1));
    assert_eq!(
        (
            g.pasid_cache_domain,
            g.pasid_cache_pasid,
            g.pasid_cache_global
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (g.wait_sw, g.wait_fn, g.wait_pd, g.devtlb_all),
        (1, 1, 1, 1)
    );
    assert_eq!(c.page_requests.unmatched_responses, 1);
    assert_eq!(h.r64(STATUS) & 0xffff_ffff, 1);
    let d = h.unit.take_devtlb_invalidations();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0], inv);
    assert!(d[1].covers(0xdead_0000));
    assert_eq!(h.rd64(regs::IQH), 16 * 32);
    assert_eq!(c.kva_invalidations, 0);
}

#[test]
fn kva_invalidations_count_kernel_half_ranges() {
    let mut h = Harness::new(Config::default());
    h.piotlb_page(1, 0xffff_8000_0000_0000, 52, false);
    h.piotlb_page(1, 0x7fff_f000, 0, false);
    h.piotlb_page(1, 0xffff_c900_0000_0000, 9, true);
    h.submit(&[Descriptor::Piotlb {
        did: 1,
        pasid: 1,
        granularity: PiotlbGranularity::Pasid,
    }]);
    assert_eq!(h.unit.counters().kva_invalidations, 2);
    let mut h5 = Harness::new(Config {
        levels: Levels::Five,
        ..Config::default()
    });
    h5.piotlb_page(1, 0xff00_0000_0000_0000, 40, false);
    h5.piotlb_page(1, 0x00ff_ffff_ffff_f000, 0, false);
    assert_eq!(h5.unit.counters().kva_invalidations, 1);
}

#[test]
fn wait_with_interrupt_raises_invalidation_event() {
    let mut h = Harness::new(Config::default());
    h.reg32(regs::IEDATA, 0x77);
    h.reg32(regs::IEADDR, 0xfee0_1000);
    h.reg32(regs::IECTL, 0);
    h.submit(&[Descriptor::Wait {
        sw: false,
        interrupt: true,
        fence: false,
        pd: false,
        status_data: 0,
        status_addr: 0,
    }]);
    assert_eq!(
        h.unit.take_msis(),
        vec![Msi {
            address: 0xfee0_1000,
            data: 0x77
        }]
    );
    assert_eq!(h.rd32(regs::ICS), 1);
    h.reg32(regs::ICS, 1);
    assert_eq!(h.rd32(regs::ICS), 0);
}

#[test]
fn reject_bad_descriptor_stops_queue_until_iqe_cleared() {
    let mut h = Harness::new(Config::default());
    h.submit(&[Descriptor::Iec {
        global: true,
        index: 0,
        im: 0,
    }]);
    h.submit_raw([0xf, 0, 0, 0]);
    assert_ne!(h.rd32(regs::FSTS) & fsts::IQE, 0);
    assert_eq!(h.rd64(regs::IQH), 32, "head stays at the bad descriptor");
    assert_eq!(h.rd64(regs::IQER) & 0xf, 3);
    assert_eq!(h.unit.counters().queue_errors, 1);
    // Queue is stopped: a good descriptor after it is not processed.
    h.submit(&[Descriptor::Iec {
        global: true,
        index: 0,
        im: 0,
    }]);
    assert_eq!(h.unit.counters().invalidations.iec, 1);
    // Software fixes the descriptor in place and clears IQE.
    let fixed = qi::encode(&Descriptor::Iec {
        global: true,
        index: 0,
        im: 0,
    });
    h.w64(QUEUE + 32, fixed[0]);
    h.reg32(regs::FSTS, fsts::IQE);
    assert_eq!(h.unit.counters().invalidations.iec, 3);
    assert_eq!(h.rd64(regs::IQH), 96);
}

#[test]
fn reject_bad_tail_and_unreadable_queue() {
    let mut h = Harness::new(Config::default());
    h.reg64(regs::IQT, 0x10);
    assert_ne!(h.rd32(regs::FSTS) & fsts::IQE, 0);
    assert_eq!(h.rd64(regs::IQER) & 0xf, 1);
    let mut h = Harness::new(Config::default());
    h.reg64(regs::IQA, (MEM_SIZE + 0x10000) | (1 << 11));
    h.reg64(regs::IQT, 0x20);
    assert_eq!(h.rd64(regs::IQER) & 0xf, 2);
    let mut h = Harness::new(Config::default());
    h.submit(&[Descriptor::Wait {
        sw: true,
        interrupt: false,
        fence: false,
        pd: false,
        status_data: 1,
        status_addr: MEM_SIZE + 4,
    }]);
    assert_eq!(h.rd64(regs::IQER) & 0xf, 7);
}

#[test]
fn legacy_128_bit_descriptors() {
    let mut h = Harness::new(Config::default());
    h.reg64(regs::IQA, QUEUE);
    h.w64(
        QUEUE,
        qi::encode(&Descriptor::Iec {
            global: true,
            index: 0,
            im: 0,
        })[0],
    );
    let w = qi::encode(&Descriptor::Wait {
        sw: true,
        interrupt: false,
        fence: false,
        pd: false,
        status_data: 9,
        status_addr: STATUS,
    });
    h.w64(QUEUE + 16, w[0]);
    h.w64(QUEUE + 24, w[1]);
    h.reg64(regs::IQT, 32);
    assert_eq!(h.unit.counters().invalidations.wait, 1);
    assert_eq!(h.r64(STATUS) & 0xffff_ffff, 9);
    assert_eq!(h.rd64(regs::IQH), 32);
}

#[test]
fn devtlb_failure_sets_ite() {
    let mut h = Harness::new(Config::default());
    h.unit.devtlb_invalidation_failed(RID, true);
    assert_ne!(h.rd32(regs::FSTS) & fsts::ITE, 0);
    assert_eq!((h.rd64(regs::IQER) >> 32) & 0xffff, u64::from(RID));
    h.submit(&[Descriptor::Iec {
        global: true,
        index: 0,
        im: 0,
    }]);
    assert_eq!(
        h.unit.counters().invalidations.iec,
        0,
        "queue stopped by ITE"
    );
    h.reg32(regs::FSTS, fsts::ITE);
    assert_eq!(h.unit.counters().invalidations.iec, 1);
    h.unit.devtlb_invalidation_failed(RID, false);
    assert_ne!(h.rd32(regs::FSTS) & fsts::ICE, 0);
    assert_eq!(h.rd64(regs::IQER) >> 48, u64::from(RID));
}

// ---------------------------------------------------------- page requests

#[test]
fn page_request_round_trip() {
    let mut h = Harness::new(Config::default());
    h.reg32(regs::PEDATA, 0x50);
    h.reg32(regs::PEADDR, 0xfee0_2000);
    h.reg32(regs::PECTL, 0);
    let mem = h.mem.clone();
    let req = PageRequest {
        rid: RID,
        pasid: Some(1),
        addr: 0x7000_0000,
        read: true,
        write: false,
        exec: false,
        privileged: false,
        last: true,
        group_index: 5,
        private_data: 0,
    };
    h.unit.page_request(&mem, req).unwrap();
    assert_eq!(
        h.unit.take_msis(),
        vec![Msi {
            address: 0xfee0_2000,
            data: 0x50
        }]
    );
    assert_eq!(h.rd64(regs::PQT), 32);
    assert_eq!(h.rd32(regs::PRS) & 1, 1);
    assert_eq!(h.r64(PRQ + 8) & !0xfff, 0x7000_0000);
    h.submit(&[Descriptor::PageGroupResponse {
        rid: RID,
        pasid: Some(1),
        code: 0,
        group_index: 5,
        lpig: true,
    }]);
    assert_eq!(
        h.unit.take_page_responses(),
        vec![PageResponse {
            rid: RID,
            pasid: Some(1),
            group_index: 5,
            code: 0
        }]
    );
    assert_eq!(h.unit.counters().page_requests.responses, 1);
}

#[test]
fn reject_page_request_when_disabled_or_full() {
    let mut h = Harness::new(Config::default());
    let mem = h.mem.clone();
    let req = PageRequest {
        rid: 0x0028,
        pasid: Some(1),
        addr: 0,
        read: true,
        write: false,
        exec: false,
        privileged: false,
        last: true,
        group_index: 0,
        private_data: 0,
    };
    assert_eq!(
        h.unit.page_request(&mem, req),
        Err(PrqError::NotEnabled { rid: 0x28 })
    );
    let req = PageRequest {
        rid: RID,
        last: false,
        ..req
    };
    for _ in 0..127 {
        h.unit.page_request(&mem, req).unwrap();
    }
    let last = PageRequest { last: true, ..req };
    assert!(matches!(
        h.unit.page_request(&mem, last),
        Err(PrqError::Overflow { .. })
    ));
    assert_eq!(h.rd32(regs::PRS) & 2, 2);
    assert_eq!(
        h.unit.take_page_responses().len(),
        1,
        "auto-response for the dropped group"
    );
    let mut off = Harness::new(Config {
        page_requests: false,
        ..Config::default()
    });
    let mem = off.mem.clone();
    assert_eq!(
        off.unit.page_request(&mem, req),
        Err(PrqError::NotSupported)
    );
}

// ------------------------------------------------------- stale walks, hint

const KVA: u64 = 0xffff_8880_0020_0000;

/// The seed's story. A kernel PTE page P is mapped under a PDE; a user DMA to
/// the kernel address faults but the walk caches the PDE; the kernel replaces
/// the PTE table with a huge mapping and frees P (optionally flushing the
/// kernel range first); P is reused with forged PTEs; the device retries
/// (as a user request, or as a supervisor request on an SRE PASID).
fn seed_story(
    flush: bool,
    privileged: bool,
) -> (Harness, Result<Translation, TranslationFault>, u64) {
    let mut h = Harness::new(Config::default());
    h.map(KVA, 0x60_0000, K, K);
    let pte_page = h.entry_addr(KVA, 1) & !0xfff;
    h.bind(1, privileged);
    let f = read(&mut h, 1, KVA).unwrap_err();
    assert_eq!(f.reason, FaultReason::Walk(WalkError::User { addr: KVA }));
    assert!(
        h.unit.caches().points_at(pte_page),
        "faulting walk cached the PDE"
    );
    // pmd_free_pte_page: the PDE becomes a 2-MiB kernel leaf, P is freed.
    h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
    if flush {
        h.piotlb_page(1, 0xffff_8000_0000_0000, 52, false);
        h.submit(&[Descriptor::Wait {
            sw: true,
            interrupt: false,
            fence: false,
            pd: false,
            status_data: 1,
            status_addr: STATUS,
        }]);
    }
    h.unit.hint_pgtable_freed(pte_page);
    // P is reused: someone writes forged PTEs to a secret page.
    for i in 0..512 {
        h.w64(pte_page + i * 8, 0x70_0000 | U);
    }
    let r = h.dma(Some(1), KVA + 0x10, Access::Read, privileged);
    (h, r, pte_page)
}

#[test]
fn seed_story_without_flush_is_reused() {
    let (h, r, _) = seed_story(false, false);
    assert_eq!(
        r.unwrap_err().reason,
        FaultReason::Walk(WalkError::User { addr: KVA + 0x10 })
    );
    let c = h.unit.counters();
    assert_eq!(
        (
            c.stale_walks.reused,
            c.stale_walks.unlinked,
            c.stale_walks.leaf
        ),
        (1, 0, 0)
    );
    assert_eq!(c.freed_while_cached, 1);
}

#[test]
fn seed_story_supervisor_device_reaches_forged_page() {
    let (h, r, pte_page) = seed_story(false, true);
    let t = r.unwrap();
    assert_eq!(t.addr, 0x70_0010, "the device walked the reused page");
    assert_eq!(t.hits.psc_level, Some(2));
    assert_eq!(h.unit.counters().stale_walks.reused, 1);
    // ... and the IOMMU set the Accessed bit inside the reused page.
    assert_ne!(h.r64(pte_page + index(KVA, 1) * 8) & walk::PTE_A, 0);
}

#[test]
fn seed_story_with_flush_is_clean() {
    for privileged in [false, true] {
        let (h, r, _) = seed_story(true, privileged);
        let c = h.unit.counters();
        assert_eq!(c.stale_walks.total(), 0);
        assert_eq!(c.freed_while_cached, 0);
        assert_eq!(c.kva_invalidations, 1);
        if privileged {
            assert_eq!(r.unwrap().addr, 0x80_0010, "the new huge mapping");
        } else {
            assert!(r.is_err());
        }
    }
}

#[test]
fn speculative_walk_caches_and_unlinked_window() {
    let mut h = Harness::new(Config::default());
    h.map(KVA, 0x60_0000, K, K);
    h.bind(1, false);
    h.walk(1, KVA);
    assert_eq!(h.unit.counters().translations, 0);
    assert_eq!(h.unit.counters().speculative_walks, 1);
    assert_eq!(h.unit.counters().cache.pde.fills, 1);
    assert_eq!(
        h.unit.caches().sizes().2,
        0,
        "no IOTLB fill without an access"
    );
    // Unlink (deferred free): the page is untouched but no longer linked.
    h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
    h.walk(1, KVA);
    let c = h.unit.counters();
    assert_eq!((c.stale_walks.unlinked, c.stale_walks.reused), (1, 0));
    assert_eq!(c.faults, 0);
}

/// A PTE table that gains an entry while linked (every vmalloc PTE table
/// does) and is then unlinked but not reused is `unlinked`: the check that
/// found the cached PDE still pointing at it refreshed what "unchanged"
/// means. Against its contents at fill time it would look reused.
#[test]
fn grown_then_unlinked_table_is_unlinked_not_reused() {
    let mut h = Harness::new(Config::default());
    h.map(KVA, 0x60_0000, K, K);
    h.bind(1, false);
    h.walk(1, KVA);
    assert_eq!(h.unit.counters().cache.pde.fills, 1);
    // vmalloc maps one more page in the same (linked) PTE table ...
    h.map(KVA + 0x1000, 0x61_0000, K, K);
    // ... and a walk through the cached PDE finds it still linked.
    h.walk(1, KVA + 0x1000);
    assert_eq!(h.unit.counters().cache.pde.hits, 1);
    assert_eq!(h.unit.counters().stale_walks.total(), 0);
    // Unlinked (the PDE becomes a huge leaf), the table left as it was.
    h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
    h.walk(1, KVA);
    let c = h.unit.counters();
    assert_eq!((c.stale_walks.unlinked, c.stale_walks.reused), (1, 0));
}

/// The same, refreshed by a fill: a full walk from the root (another
/// PASID's, through the same shared kernel tables) sees the page linked.
#[test]
fn fill_walk_refreshes_last_seen_linked() {
    let mut h = Harness::new(Config::default());
    h.map(KVA, 0x60_0000, K, K);
    h.bind(1, false);
    h.bind(2, false);
    h.walk(1, KVA);
    h.map(KVA + 0x1000, 0x61_0000, K, K);
    h.walk(2, KVA + 0x1000);
    h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
    h.walk(1, KVA);
    let c = h.unit.counters();
    assert_eq!((c.stale_walks.unlinked, c.stale_walks.reused), (1, 0));
}

/// Repeated IOTLB hits are each checked against memory: a change at any
/// level after many clean checks is found on the next hit, a change that
/// keeps the outcome (A/D bits, a relink to an identical table) is not stale.
#[test]
fn repeated_hits_are_each_rechecked() {
    let mut h = Harness::new(Config::default());
    let leaf = h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    for _ in 0..5 {
        read(&mut h, 1, 0x4008).unwrap();
    }
    assert_eq!(h.unit.counters().checked, 4);
    // The CPU sets A/D in an upper entry: same outcome, not stale.
    let pde = h.entry_addr(0x4000, 2);
    let v = h.r64(pde);
    h.w64(pde, v | walk::PTE_A | walk::PTE_D);
    read(&mut h, 1, 0x4000).unwrap();
    // Relinked to an identical copy of the PTE page: same outcome.
    let copy = h.alloc_page();
    let old = v & walk::PTE_ADDR;
    for i in 0..512 {
        h.w64(copy + i * 8, h.r64(old + i * 8));
    }
    h.w64(pde, copy | U);
    read(&mut h, 1, 0x4000).unwrap();
    read(&mut h, 1, 0x4000).unwrap();
    assert_eq!(h.unit.counters().stale_walks.total(), 0);
    // Now the copy's leaf changes without an invalidation: every later hit
    // is stale, including the ones after the first detection.
    h.w64(copy + index(0x4000, 1) * 8, 0x61_0000 | U);
    for _ in 0..3 {
        assert_eq!(read(&mut h, 1, 0x4000).unwrap().addr, 0x60_0000);
    }
    assert_eq!(h.unit.counters().stale_walks.leaf, 3);
    // The old leaf gets the new value too: still stale through the copy.
    h.w64(leaf, 0x61_0000 | U);
    read(&mut h, 1, 0x4000).unwrap();
    assert_eq!(h.unit.counters().stale_walks.leaf, 4);
    assert_eq!(h.unit.counters().checked, 4 + 7);
}

/// A device alternating between pages (a copy's source and destination)
/// keeps each page's hit, with what its last check verified, in the memo;
/// a leaf changed under one of them is still found on that page's next hit,
/// and the other page stays clean.
#[test]
fn alternating_hits_keep_their_checks_and_find_a_changed_leaf() {
    let mut h = Harness::new(Config::default());
    let pages = [0x4000, 0x20_0000, 0x40_6000, 0x7f_f000, 0x100_0000];
    let leaves: Vec<u64> = pages
        .iter()
        .enumerate()
        .map(|(i, &va)| h.map_user(va, 0x60_0000 + (i as u64) * 0x1000, true))
        .collect();
    h.bind(1, false);
    // More pages than the memo keeps, interleaved, many rounds.
    for _ in 0..6 {
        for &va in &pages {
            read(&mut h, 1, va + 8).unwrap();
        }
    }
    assert_eq!(h.unit.counters().stale_walks.total(), 0);
    // The second page's leaf changes without an invalidation.
    h.w64(leaves[1], 0x70_0000 | U);
    for round in 1..=3u64 {
        for (i, &va) in pages.iter().enumerate() {
            let t = read(&mut h, 1, va).unwrap();
            assert_eq!(t.addr, 0x60_0000 + (i as u64) * 0x1000, "cached result");
        }
        assert_eq!(h.unit.counters().stale_walks.leaf, round);
    }
    // Every hit after each page's fill was checked, and so were the fills
    // of the four later pages (walks through the cached PDPE).
    assert_eq!(h.unit.counters().checked, 6 * 5 - 5 + 4 + 3 * 5);
}

#[test]
fn missing_leaf_invalidation_is_leaf_class() {
    let mut h = Harness::new(Config::default());
    let leaf = h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x4000).unwrap();
    h.w64(leaf, 0x61_0000 | U);
    let t = read(&mut h, 1, 0x4000).unwrap();
    assert_eq!(t.addr, 0x60_0000, "device gets the cached result");
    assert_eq!(h.unit.counters().stale_walks.leaf, 1);
    // With the leaf invalidation (IH=1 is enough) it is clean.
    h.piotlb_page(1, 0x4000, 0, true);
    let t = read(&mut h, 1, 0x4000).unwrap();
    assert_eq!(t.addr, 0x61_0000);
    assert_eq!(h.unit.counters().stale_walks.leaf, 1);
}

#[test]
fn ih1_keeps_paging_structure_caches() {
    let mut h = Harness::new(Config::default());
    h.map(KVA, 0x60_0000, K, K);
    h.bind(1, false);
    h.walk(1, KVA);
    h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
    h.piotlb_page(1, KVA, 9, true);
    h.walk(1, KVA);
    assert_eq!(h.unit.counters().stale_walks.unlinked, 1);
    h.piotlb_page(1, KVA, 9, false);
    h.walk(1, KVA);
    assert_eq!(h.unit.counters().stale_walks.unlinked, 1);
}

#[test]
fn events_reach_the_sink() {
    let sink = SharedSink::default();
    let (mut h, _) = {
        let mut h = Harness::new(Config::default());
        h.unit.set_event_sink(Some(Box::new(sink.clone())));
        h.map(KVA, 0x60_0000, K, K);
        h.bind(1, false);
        h.walk(1, KVA);
        h.w64(h.entry_addr(KVA, 2), 0x80_0000 | K | PTE_PS);
        h.walk(1, KVA);
        h.unit.hint_pgtable_freed(0x1000);
        h.piotlb_page(1, KVA, 9, false);
        (h, ())
    };
    read(&mut h, 1, KVA).unwrap_err();
    let events = sink.0.lock().unwrap().events.clone();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| match e {
            Event::Translation { .. } => "translation",
            Event::StaleWalk(_) => "stale",
            Event::Hint { .. } => "hint",
            Event::Invalidation { .. } => "inv",
            Event::Fault { .. } => "fault",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "translation",
            "stale",
            "translation",
            "hint",
            "inv",
            "translation",
            "fault"
        ]
    );
    let Event::StaleWalk(w) = events[1] else {
        unreachable!()
    };
    assert_eq!(
        (w.class, w.level, w.rid, w.pasid, w.addr),
        (checker::StaleClass::Unlinked, 2, RID, 1, KVA)
    );
    assert_eq!(w.memory & PTE_PS, PTE_PS);
    let Event::Invalidation { slot, removed, .. } = events[4] else {
        unreachable!()
    };
    assert_eq!((slot, removed), (Some(0), 3));
    let json = serde_json::to_string(&events).unwrap();
    assert!(json.contains("\"class\":\"unlinked\""));
}

#[test]
fn none_policy_never_stale_and_lru_bounds() {
    let (mut h, _) = (
        Harness::new(Config {
            cache: CachePolicy::None,
            ..Config::default()
        }),
        (),
    );
    h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x4000).unwrap();
    let leaf = h.entry_addr(0x4000, 1);
    h.w64(leaf, 0x61_0000 | U);
    assert_eq!(read(&mut h, 1, 0x4000).unwrap().addr, 0x61_0000);
    assert_eq!(h.unit.counters().stale_walks.total(), 0);
    let mut h = Harness::new(Config {
        cache: "lru:2".parse().unwrap(),
        ..Config::default()
    });
    for i in 0..8u64 {
        h.map_user(0x10_0000 * i, 0x60_0000, true);
    }
    h.bind(1, false);
    for i in 0..8u64 {
        read(&mut h, 1, 0x10_0000 * i).unwrap();
    }
    let (_, _, iotlb, psc) = h.unit.caches().sizes();
    assert!(iotlb <= 2 && psc.iter().all(|n| *n <= 2));
    assert!(h.unit.counters().cache.iotlb.evictions >= 6);
}

#[test]
fn sampled_checker_checks_a_fraction() {
    let mut h = Harness::new(Config {
        check: CheckMode::Sampled,
        ..Config::default()
    });
    h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    for _ in 0..64 {
        read(&mut h, 1, 0x4000).unwrap();
    }
    assert_eq!(h.unit.counters().checked, 63 / checker::SAMPLE_PERIOD);
    let mut h = Harness::new(Config {
        check: CheckMode::Off,
        ..Config::default()
    });
    h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    read(&mut h, 1, 0x4000).unwrap();
    read(&mut h, 1, 0x4000).unwrap();
    assert_eq!(h.unit.counters().checked, 0);
    assert_eq!(
        serde_json::to_value(h.unit.counters()).unwrap()["checker"],
        "off"
    );
}

#[test]
fn freed_hint_counts_only_cached_pages() {
    let mut h = Harness::new(Config::default());
    h.map_user(0x4000, 0x60_0000, true);
    h.bind(1, false);
    let pt = h.entry_addr(0x4000, 1) & !0xfff;
    h.unit.hint_pgtable_freed(pt);
    assert_eq!(
        h.unit.counters().freed_while_cached,
        0,
        "nothing cached yet"
    );
    read(&mut h, 1, 0x4000).unwrap();
    h.unit.hint_pgtable_freed(pt + 0x18);
    assert_eq!(h.unit.counters().freed_while_cached, 1);
    h.submit(&[Descriptor::Piotlb {
        did: 1,
        pasid: 1,
        granularity: PiotlbGranularity::Pasid,
    }]);
    h.unit.hint_pgtable_freed(pt);
    assert_eq!(h.unit.counters().freed_while_cached, 1);
    assert_eq!(h.unit.counters().free_hints, 3);
}

#[test]
fn reject_hostile_mmio_sizes() {
    let mut h = Harness::new(Config::default());
    let mem = h.mem.clone();
    for len in [0usize, 1, 2, 3, 5, 16] {
        let buf = vec![0xffu8; len];
        h.unit.mmio_write(&mem, regs::GCMD, &buf);
        let mut out = vec![0xaau8; len];
        h.unit.mmio_read(regs::CAP, &mut out);
    }
    h.unit.mmio_write(&mem, u64::MAX - 3, &[0; 4]);
    assert!(h.unit.translation_enabled());
}

// ------------------------------------------------------------- properties

/// Reference first-stage walk, written apart from `walk`: returns the output
/// address and (writable, user, executable), or None for any fault, for a
/// user read/write/execute request.
fn reference(
    mem: &GuestMemoryMmap<()>,
    pgd: u64,
    levels: u32,
    va: u64,
    access: Access,
) -> Option<u64> {
    let mut table = pgd;
    let (mut w, mut u, mut x) = (true, true, true);
    for depth in 0..levels {
        let level = levels - depth;
        let shift = 12 + 9 * (level - 1);
        let idx = (va >> shift) & 511;
        let e: u64 = mem.read_obj(GuestAddress(table + idx * 8)).ok()?;
        if e & 1 == 0 {
            return None;
        }
        w &= e & 2 != 0;
        u &= e & 4 != 0;
        x &= e >> 63 == 0;
        let addr = e & 0x000f_ffff_ffff_f000;
        let huge = (level == 2 || level == 3) && e & 0x80 != 0;
        if level == 1 || huge {
            let ok = u
                && match access {
                    Access::Read => true,
                    Access::Write => w,
                    Access::Execute => x,
                };
            let mask = (1u64 << shift) - 1;
            return ok.then_some((addr & !mask) | (va & mask));
        }
        table = addr;
    }
    None
}

#[derive(Debug, Clone)]
enum Op {
    Map {
        slot: u8,
        page: u8,
        writable: bool,
        nx: bool,
    },
    Unmap {
        slot: u8,
    },
    Huge {
        slot: u8,
        writable: bool,
    },
    Relink {
        slot: u8,
    },
    Dma {
        slot: u8,
        off: u16,
        access: u8,
    },
    Walk {
        slot: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..16, 0u8..32, any::<bool>(), any::<bool>()).prop_map(|(slot, page, writable, nx)| {
            Op::Map {
                slot,
                page,
                writable,
                nx,
            }
        }),
        (0u8..16).prop_map(|slot| Op::Unmap { slot }),
        (0u8..16, any::<bool>()).prop_map(|(slot, writable)| Op::Huge { slot, writable }),
        (0u8..16).prop_map(|slot| Op::Relink { slot }),
        (0u8..16, 0u16..4096, 0u8..3).prop_map(|(slot, off, access)| Op::Dma { slot, off, access }),
        (0u8..16).prop_map(|slot| Op::Walk { slot }),
    ]
}

/// 16 virtual slots spread over user and kernel halves and over 2-MiB regions
/// (two slots per region, so PDE sharing happens).
fn slot_va(slot: u8) -> u64 {
    let s = u64::from(slot);
    let region = s / 2;
    let base = if region % 2 == 0 {
        0x0000_7f00_0000_0000
    } else {
        0xffff_8880_0000_0000
    };
    base + (region << 30) + ((region & 3) << 21) + ((s & 1) << 12)
}

fn access_of(a: u8) -> Access {
    match a {
        0 => Access::Read,
        1 => Access::Write,
        _ => Access::Execute,
    }
}

/// Applies one edit; `flush` decides whether the matching invalidation is
/// sent. Returns whether memory changed in a way a cache could hold.
fn apply(h: &mut Harness, op: &Op, flush: bool) -> bool {
    let pasid = 1;
    match *op {
        Op::Map {
            slot,
            page,
            writable,
            nx,
        } => {
            let va = slot_va(slot);
            let mut leaf = PTE_P | PTE_US;
            if writable {
                leaf |= PTE_RW;
            }
            if nx {
                leaf |= PTE_XD;
            }
            // A huge page at the PDE is replaced by a fresh PTE table.
            let pde = h.entry_addr(va, 2);
            if h.r64(pde) & PTE_PS != 0 {
                h.w64(pde, 0);
            }
            h.map(va, 0x40_0000 + u64::from(page) * 0x1000, leaf, U);
            if flush {
                h.piotlb_page(pasid, va, 9, false);
            }
            true
        }
        Op::Unmap { slot } => {
            let va = slot_va(slot);
            let pde = h.entry_addr(va, 2);
            let v = h.r64(pde);
            if v & PTE_P == 0 || v & PTE_PS != 0 {
                h.w64(pde, 0);
            } else {
                h.w64(h.entry_addr(va, 1), 0);
            }
            if flush {
                h.piotlb_page(pasid, va, 9, false);
            }
            true
        }
        Op::Huge { slot, writable } => {
            let va = slot_va(slot) & !0x1f_ffff;
            let flags = PTE_P | PTE_US | PTE_PS | if writable { PTE_RW } else { 0 };
            h.map_at(va, 0x20_0000, 2, flags & !PTE_PS, U);
            if flush {
                h.piotlb_page(pasid, va, 9, false);
            }
            true
        }
        Op::Relink { slot } => {
            // Move the PTE table under this PDE to a new page (old one left
            // intact but unlinked).
            let va = slot_va(slot);
            let pde = h.entry_addr(va, 2);
            let v = h.r64(pde);
            if v & PTE_P == 0 || v & PTE_PS != 0 {
                return false;
            }
            let new = h.alloc_page();
            let mut buf = [0u8; 4096];
            h.mem
                .read_slice(&mut buf, GuestAddress(v & walk::PTE_ADDR))
                .unwrap();
            h.mem.write_slice(&buf, GuestAddress(new)).unwrap();
            h.w64(pde, new | (v & 0xfff));
            if flush {
                h.piotlb_page(pasid, va, 9, false);
            }
            true
        }
        Op::Dma { .. } | Op::Walk { .. } => false,
    }
}

fn new_prop_harness() -> Harness {
    let mut h = Harness::new(Config::default());
    // Every slot's tables exist from the start (both halves), so edits below
    // only change entries.
    for s in 0..16 {
        h.map(slot_va(s), 0x40_0000, PTE_P | PTE_US, U);
    }
    h.bind(1, false);
    h
}

/// One step of the sink property test: an edit (with or without its
/// invalidation), or an access by one of three PASIDs (0: a request without
/// PASID), user or supervisor, or a freed-page hint.
#[derive(Debug, Clone)]
struct Step {
    op: Op,
    flush: bool,
    pasid: u8,
    privileged: bool,
    /// An access is repeated this many more times in the same page (what
    /// the fast paths serve).
    repeat: u8,
}

fn step() -> impl Strategy<Value = Step> {
    (op(), any::<bool>(), 0u8..3, any::<bool>(), 0u8..4).prop_map(
        |(op, flush, pasid, privileged, repeat)| Step {
            op,
            flush,
            pasid,
            privileged,
            repeat,
        },
    )
}

/// What a run shows from outside: every access's result, the counters, the
/// breakdowns, the events (when a sink listened) and the stale walks.
#[derive(Debug, PartialEq)]
struct Observed {
    results: Vec<Result<Translation, TranslationFault>>,
    counters: serde_json::Value,
    breakdowns: Breakdowns,
    events: Option<Vec<Event>>,
}

fn run_steps(steps: &[Step], check: CheckMode, sink: bool, fast_paths: bool) -> Observed {
    let mut h = Harness::new(Config {
        check,
        ..Config::default()
    });
    h.unit.set_fast_paths(fast_paths);
    for s in 0..16 {
        h.map(slot_va(s), 0x40_0000, PTE_P | PTE_US, U);
    }
    h.bind(0, true);
    h.bind(1, false);
    h.bind(2, true);
    let events = Arc::new(Mutex::new(event::VecSink::default()));
    if sink {
        h.unit
            .set_event_sink(Some(Box::new(SharedSink(events.clone()))));
    }
    let mut results = Vec::new();
    for st in steps {
        apply(&mut h, &st.op, st.flush);
        let pasid = (st.pasid != 0).then_some(u32::from(st.pasid));
        match st.op {
            Op::Dma { slot, off, access } => {
                for i in 0..=u64::from(st.repeat) {
                    let va = slot_va(slot) + ((u64::from(off) + i * 8) & 0xfff);
                    results.push(h.dma(pasid, va, access_of(access), st.privileged));
                }
            }
            Op::Walk { slot } => h.walk(u32::from(st.pasid), slot_va(slot)),
            Op::Unmap { slot } if !st.flush => {
                let page = h.r64(h.entry_addr(slot_va(slot), 2)) & walk::PTE_ADDR;
                h.unit.hint_pgtable_freed(page);
            }
            _ => {}
        }
    }
    let events = sink.then(|| std::mem::take(&mut events.lock().unwrap().events));
    Observed {
        results,
        counters: serde_json::to_value(h.unit.counters()).unwrap(),
        breakdowns: h.unit.breakdowns(),
        events,
    }
}

/// Cases of [`sink_never_changes_what_the_unit_does`]: 256 by default,
/// 10 000 in `tools/test-all.sh` (and so in CI);
/// `STALEWALK_SINK_CASES=10000` for the full run.
fn sink_cases() -> u32 {
    std::env::var("STALEWALK_SINK_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: sink_cases(), .. ProptestConfig::default() })]

    /// One translation path: installing a sink changes nothing but what is
    /// emitted (results, counters and breakdowns are identical), the fast
    /// paths emit and count exactly what the full path does, and the
    /// breakdowns the unit keeps equal those rebuilt from its events.
    #[test]
    fn sink_never_changes_what_the_unit_does(
        steps in proptest::collection::vec(step(), 1..48),
        check_all in any::<bool>(),
    ) {
        let check = if check_all { CheckMode::All } else { CheckMode::Sampled };
        let with_sink = run_steps(&steps, check, true, true);
        let without = run_steps(&steps, check, false, true);
        let full_path = run_steps(&steps, check, true, false);
        prop_assert_eq!(&with_sink.results, &without.results);
        prop_assert_eq!(&with_sink.counters, &without.counters);
        prop_assert_eq!(&with_sink.breakdowns, &without.breakdowns);
        prop_assert_eq!(&with_sink, &full_path);
        let mut rebuilt = Breakdowns::default();
        for e in with_sink.events.iter().flatten() {
            rebuilt.record(e);
        }
        prop_assert_eq!(&rebuilt, &with_sink.breakdowns);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// With correct invalidations, no stale walks and every translation
    /// equals the reference walk.
    #[test]
    fn correct_invalidations_match_reference(ops in proptest::collection::vec(op(), 1..40)) {
        let mut h = new_prop_harness();
        for op in &ops {
            apply(&mut h, op, true);
            match *op {
                Op::Dma { slot, off, access } => {
                    let va = slot_va(slot) + u64::from(off);
                    let acc = access_of(access);
                    let expect = reference(&h.mem, h.pgd, 4, va, acc);
                    let got = h.dma(Some(1), va, acc, false).ok().map(|t| t.addr);
                    prop_assert_eq!(got, expect, "va {:#x} {:?}", va, acc);
                }
                Op::Walk { slot } => h.walk(1, slot_va(slot)),
                _ => {}
            }
        }
        prop_assert_eq!(h.unit.counters().stale_walks.total(), 0);
    }

    /// Leaving the invalidation out after an edit whose entry was cached is
    /// reported by the checker on the next access through it.
    #[test]
    fn missing_invalidation_is_reported(slot in 0u8..16, edit in 0u8..4, page in 1u8..32) {
        let mut h = new_prop_harness();
        let va = slot_va(slot);
        // Cache the leaf and the PDE.
        h.dma(Some(1), va, Access::Read, false).unwrap();
        let op = match edit {
            0 => Op::Map { slot, page, writable: true, nx: false },
            1 => Op::Unmap { slot },
            2 => Op::Huge { slot, writable: true },
            _ => Op::Relink { slot },
        };
        prop_assert!(apply(&mut h, &op, false));
        // Through the cached leaf, then through the cached PDE (the sibling
        // slot shares the 2-MiB region and was never accessed).
        let _ = h.dma(Some(1), va, Access::Read, false);
        let _ = h.dma(Some(1), va ^ 0x1000, Access::Read, false);
        prop_assert!(h.unit.counters().stale_walks.total() >= 1, "{:?}", op);
    }

    /// Arbitrary descriptors never panic and the queue never loops.
    #[test]
    fn arbitrary_descriptors_are_safe(qws in proptest::collection::vec(any::<[u64; 4]>(), 1..20)) {
        let mut h = new_prop_harness();
        for qw in qws {
            h.submit_raw(qw);
            if h.rd32(regs::FSTS) & fsts::IQE != 0 {
                h.reg32(regs::FSTS, fsts::IQE);
            }
            let _ = h.dma(Some(1), slot_va(0), Access::Read, false);
        }
    }
}

#[test]
fn shared_unit_in_mutex_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Viommu>();
    let _ = Arc::new(Mutex::new(Viommu::new(Config::default())));
}
