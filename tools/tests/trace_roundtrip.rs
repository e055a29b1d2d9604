//! Round trip: drive the `viommu` model through its register interface with
//! the trace writer as its event sink (translations, speculative walks, a
//! page table unlinked and then reused behind a cached entry, a freed-page
//! hint, queued invalidations including a KVA one, a page request), read the
//! trace back, and check that every counter the trace determines equals the
//! model's report counters.

use std::collections::BTreeMap;
use std::path::Path;

use stalewalk_tools::replay::descriptors::{self, Descriptor};
use stalewalk_tools::replay::parser::{Invalidation, Rid};
use stalewalk_tools::replay::tables::{Area, Binding, Tables, write_u64};
use stalewalk_tools::trace::summary::flatten;
use stalewalk_tools::trace::{TraceOptions, TraceWriter, summary_counters};
use viommu::regs;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM: u64 = 16 << 20;
const RID: Rid = Rid {
    bus: 0,
    device: 4,
    function: 0,
};
const PASID: u32 = 1;
const DID: u16 = 1;
/// x86 page-table entry bits: present, writable, user.
const PTE: u64 = 0b111;
/// The user address the device translates.
const VA: u64 = 0x40_0000;
/// A kernel-half address (direct map) for the KVA invalidation.
const KVA: u64 = 0xffff_8880_0000_0000;

struct Rig {
    mem: GuestMemoryMmap,
    unit: viommu::Viommu,
    area: Area,
    queue: u64,
    tail: u64,
    status: u64,
    wait_data: u32,
}

impl Rig {
    fn new() -> Rig {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), usize::try_from(MEM).unwrap())])
            .unwrap();
        let config = viommu::Config {
            cache: viommu::CachePolicy::Adversarial,
            check: viommu::CheckMode::All,
            ..viommu::Config::default()
        };
        let unit = viommu::Viommu::new(config);
        let mut area = Area::new(MEM).unwrap();
        let queue = area.alloc(2, 2).unwrap();
        let status = area.alloc(1, 1).unwrap();
        Rig {
            mem,
            unit,
            area,
            queue,
            tail: 0,
            status,
            wait_data: 0,
        }
    }

    fn w32(&mut self, off: u64, v: u32) {
        self.unit.mmio_write(&self.mem, off, &v.to_le_bytes());
    }

    fn w64(&mut self, off: u64, v: u64) {
        self.unit.mmio_write(&self.mem, off, &v.to_le_bytes());
    }

    fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.unit.mmio_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    /// Queued invalidation (256-bit descriptors, 256 slots), the
    /// scalable-mode root table, translation.
    fn enable(&mut self, root: u64) {
        use viommu::regs::gcmd;
        self.w64(regs::IQT, 0);
        self.w64(regs::IQA, self.queue | (1 << 11) | 1);
        self.w32(regs::GCMD, gcmd::QIE);
        self.w64(regs::RTADDR, root | (1 << 10));
        self.w32(regs::GCMD, gcmd::QIE | gcmd::SRTP);
        self.w32(regs::GCMD, gcmd::QIE | gcmd::TE);
        assert_ne!(self.r32(regs::GSTS) & gcmd::TE, 0, "translation enabled");
    }

    fn submit(&mut self, d: Descriptor) {
        let mut gpa = self.queue + self.tail * 32;
        for q in d {
            write_u64(&self.mem, gpa, q).unwrap();
            gpa += 8;
        }
        self.tail = (self.tail + 1) % 256;
        self.w64(regs::IQT, self.tail * 32);
        assert_eq!(self.r32(regs::FSTS) & 0x70, 0, "no queue error");
    }

    fn wait(&mut self) {
        self.wait_data += 1;
        self.submit(descriptors::wait(self.status, self.wait_data));
    }

    /// First-stage tables for VA (PML4 -> PDPT -> PD -> PT -> page), bound
    /// to PASID 1 of the requester; enables the unit. Returns (PD, PT).
    fn map_and_enable(&mut self) -> (u64, u64) {
        let rig = self;
        // First-stage tables for VA: PML4 -> PDPT -> PD -> PT -> page.
        let [pml4, pdpt, pd, pt, page] = std::array::from_fn(|_| rig.area.alloc(1, 1).unwrap());
        let index = |level: u32| (VA >> (12 + 9 * level)) & 0x1ff;
        write_u64(&rig.mem, pml4 + index(3) * 8, pdpt | PTE).unwrap();
        write_u64(&rig.mem, pdpt + index(2) * 8, pd | PTE).unwrap();
        write_u64(&rig.mem, pd + index(1) * 8, pt | PTE).unwrap();
        write_u64(&rig.mem, pt + index(0) * 8, page | PTE).unwrap();

        let mut tables = Tables::new(&mut rig.area, 4, BTreeMap::new()).unwrap();
        let binding = Binding {
            rid: RID,
            pasid: PASID,
            pgd: pml4,
            did: DID,
            sre: false,
        };
        tables.bind(&rig.mem, &mut rig.area, &binding).unwrap();
        rig.enable(tables.root());
        (pd, pt)
    }

    fn dma(&mut self, addr: u64, speculative: bool) {
        let req = viommu::DmaRequest {
            rid: RID.source_id(),
            pasid: Some(PASID),
            addr,
            access: viommu::Access::Read,
            privileged: false,
        };
        if speculative {
            self.unit.speculative_walk(&self.mem, &req);
        } else {
            let _ = self.unit.translate(&self.mem, &req);
        }
        self.unit.take_msis();
    }
}

/// Runs the scenario with a trace at `path`; returns the model's counters.
fn run(path: &Path) -> serde_json::Value {
    let mut rig = Rig::new();
    let writer = TraceWriter::create(
        path,
        TraceOptions {
            command: "trace_roundtrip".into(),
            ..TraceOptions::default()
        },
    )
    .unwrap();
    rig.unit.set_event_sink(Some(Box::new(writer.sink())));

    let (pd, pt) = rig.map_and_enable();
    let index = |level: u32| (VA >> (12 + 9 * level)) & 0x1ff;
    writer.marker("stalewalk-guest: tables ready");

    rig.dma(VA, false); // walk, fills the caches
    rig.dma(VA + 0x1000, true); // speculative walk (not mapped: PT entry empty)
    rig.dma(VA, false); // cache hit
    // Unlink the page table without an invalidation: the cached PDE still
    // points at it (unlinked), then reuse the page (reused).
    write_u64(&rig.mem, pd + index(1) * 8, 0).unwrap();
    rig.dma(VA + 0x2000, false);
    write_u64(&rig.mem, pt + 8 * 3, 0xdead_b000 | PTE).unwrap();
    rig.dma(VA + 0x2000, false);
    rig.unit.hint_pgtable_freed(pt);
    writer.marker("stalewalk-guest: flushing");
    rig.submit(descriptors::encode(&Invalidation::PiotlbPage {
        pasid: PASID,
        did: DID,
        addr: VA,
        am: 9,
        ih: false,
    }));
    rig.submit(descriptors::encode(&Invalidation::PiotlbPage {
        pasid: PASID,
        did: DID,
        addr: KVA,
        am: 0,
        ih: true,
    }));
    rig.submit(descriptors::encode(&Invalidation::PasidCache {
        pasid: PASID,
        did: DID,
    }));
    rig.submit(descriptors::encode(&Invalidation::IotlbGlobal));
    rig.wait();
    rig.dma(VA, false); // faults now: PD entry cleared
    let _ = rig.unit.page_request(
        &rig.mem,
        viommu::PageRequest {
            rid: RID.source_id(),
            pasid: Some(PASID),
            addr: VA,
            read: true,
            write: false,
            exec: false,
            privileged: false,
            last: true,
            group_index: 1,
            private_data: 0,
        },
    );
    rig.unit.hint_pgtable_freed(pd);

    let totals = writer.finish().unwrap();
    assert_eq!(totals.dropped_total(), 0);
    serde_json::to_value(rig.unit.counters()).unwrap()
}

#[test]
fn trace_counters_equal_the_report() {
    let dir = std::env::temp_dir().join(format!("stalewalk-trace-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.trace");
    let report = run(&path);
    let from_trace = summary_counters(&path).unwrap();
    let report_flat = flatten(&report);
    let trace_flat = flatten(&from_trace);
    assert!(
        trace_flat.len() >= 35,
        "trace gives {} counters",
        trace_flat.len()
    );
    for (key, value) in &trace_flat {
        assert_eq!(
            report_flat.get(key),
            Some(value),
            "counter {key}: report {:?}, trace {value}",
            report_flat.get(key)
        );
    }
    // The scenario exercises what it claims to.
    for key in [
        "translations",
        "speculative_walks",
        "faults",
        "stale_walks.unlinked",
        "stale_walks.reused",
        "freed_while_cached",
        "kva_invalidations",
        "invalidations.piotlb",
        "invalidations.wait",
        "granularity.ih1",
    ] {
        assert_ne!(
            trace_flat[key], 0,
            "{key} is zero: the scenario did not exercise it"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nanoseconds per translation over `n` cache-hitting translations, with
/// the trace writer (all kinds) as the sink or without a sink.
fn time_translations(n: u64, traced: bool) -> (f64, u64, u64) {
    let mut rig = Rig::new();
    rig.map_and_enable();
    let path =
        std::env::temp_dir().join(format!("stalewalk-trace-ovh-{}.trace", std::process::id()));
    let writer = traced.then(|| TraceWriter::create(&path, TraceOptions::default()).unwrap());
    if let Some(w) = &writer {
        rig.unit.set_event_sink(Some(Box::new(w.sink())));
    }
    let start = std::time::Instant::now();
    for _ in 0..n {
        rig.dma(VA, false);
    }
    let per = start.elapsed().as_secs_f64() * 1e9 / n as f64;
    let (written, dropped) = match writer {
        Some(w) => {
            let t = w.finish().unwrap();
            let _ = std::fs::remove_file(&path);
            (t.events.iter().sum(), t.dropped_total())
        }
        None => (0, 0),
    };
    (per, written, dropped)
}

/// The tracing overhead on the model itself (for `docs/PERFORMANCE.md`):
/// translations through the model, with and without the writer. Run with
/// `cargo test --release -p stalewalk-tools --test trace_roundtrip -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn tracing_overhead_on_translations() {
    const N: u64 = 200_000;
    let mut ratios = Vec::new();
    for _ in 0..5 {
        let (plain, _, _) = time_translations(N, false);
        let (traced, written, dropped) = time_translations(N, true);
        println!(
            "translation: {plain:.0} ns untraced, {traced:.0} ns traced (x{:.2}); {written} events written, {dropped} dropped",
            traced / plain
        );
        ratios.push(traced / plain);
    }
    ratios.sort_by(f64::total_cmp);
    println!("median traced/untraced: x{:.2}", ratios[ratios.len() / 2]);
}
