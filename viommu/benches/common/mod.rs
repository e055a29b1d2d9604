//! The VT-d unit set-up shared by the viommu benchmarks and the `hotpath`
//! callgrind driver (`examples/hotpath.rs`): the crate's scalable-mode
//! fixture (`viommu::fixture`, feature `test-utils`) with 64 MiB of memory,
//! a 32-KiB invalidation queue and PASID 1 of 00:04.0 bound, configured as
//! `stalewalk run` configures the unit (adversarial caches; the checker as
//! asked; no event sink, as the report needs none; `traced` adds the sink a
//! `--trace` run installs, minus the file I/O).

// Every target includes this file and uses a different part of it.
#![allow(dead_code)]

use std::ops::{Deref, DerefMut};

use viommu::fixture::ScalableUnit;
#[allow(unused_imports)]
pub use viommu::fixture::{QUEUE, RID, TABLES, U};
use viommu::{Access, CachePolicy, CheckMode, Config, DmaRequest, Event, EventSink, Levels, regs};

/// Queue order: 4096 << 3 bytes, 1024 256-bit descriptors.
pub const QS: u64 = 3;

/// A sink that looks at every event and keeps a count (what a trace
/// writer's sink costs before its I/O).
#[derive(Debug, Default)]
pub struct CountingSink(pub u64);

impl EventSink for CountingSink {
    fn event(&mut self, e: &Event) {
        self.0 += u64::from(std::hint::black_box(matches!(e, Event::Translation { .. })));
    }
}

pub struct Bench(ScalableUnit);

impl Deref for Bench {
    type Target = ScalableUnit;
    fn deref(&self) -> &ScalableUnit {
        &self.0
    }
}

impl DerefMut for Bench {
    fn deref_mut(&mut self) -> &mut ScalableUnit {
        &mut self.0
    }
}

impl Bench {
    pub fn new(cache: CachePolicy, check: CheckMode, levels: Levels) -> Self {
        let config = Config {
            cache,
            check,
            levels,
            ..Config::default()
        };
        let mut fx = ScalableUnit::with_memory(config, 64 << 20, 3);
        fx.bind(1, false);
        Bench(fx)
    }

    /// As [`Bench::new`], with an event sink installed (a `--trace` run).
    pub fn traced(cache: CachePolicy, check: CheckMode, levels: Levels) -> Self {
        let mut b = Self::new(cache, check, levels);
        b.unit
            .set_event_sink(Some(Box::new(CountingSink::default())));
        b
    }

    pub fn w(&self, gpa: u64, v: u64) {
        self.0.w64(gpa, v);
    }

    pub fn r(&self, gpa: u64) -> u64 {
        self.0.r64(gpa)
    }

    pub fn reg(&mut self, off: u64, v: u64) {
        if off == regs::GCMD {
            self.0.reg32(off, u32::try_from(v).unwrap());
        } else {
            self.0.reg64(off, v);
        }
    }

    /// Maps the 4-KiB user page `va` to `pa` (user, writable at every level).
    pub fn map(&mut self, va: u64, pa: u64) {
        self.0.map(va, pa, U, U);
    }

    pub fn req(va: u64) -> DmaRequest {
        DmaRequest {
            rid: RID,
            pasid: Some(1),
            addr: va,
            access: Access::Read,
            privileged: false,
        }
    }
}
