//! The replay harness: guest memory, one `viommu` unit, and a tiny VT-d
//! driver that runs scenario commands against the unit through its real
//! interfaces — registers for enabling, the invalidation queue in guest
//! memory for every invalidation, `translate`/`speculative_walk` for device
//! accesses, and the page-freed hint.
//!
//! The register offsets and bits used here are written down again from
//! `shared/VTD-FACTS.md` rather than taken from the model, so that a wrong
//! offset in either shows up as a failing scenario.

use std::collections::BTreeMap;

use thiserror::Error;
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::descriptors::{self, Descriptor};
use super::parser::{Access, CachePolicy, CheckMode, Command, Rid, Scenario, ScenarioConfig};
use super::report::{Report, ReportError};
use super::tables::{self, Area, Binding, Tables, TablesError};

/// Register offsets (VT-d spec, chapter 11).
mod reg {
    pub const VER: u64 = 0x00;
    pub const CAP: u64 = 0x08;
    pub const ECAP: u64 = 0x10;
    pub const GCMD: u64 = 0x18;
    pub const GSTS: u64 = 0x1c;
    pub const RTADDR: u64 = 0x20;
    pub const FSTS: u64 = 0x34;
    pub const IQH: u64 = 0x80;
    pub const IQT: u64 = 0x88;
    pub const IQA: u64 = 0x90;
    pub const IQER: u64 = 0xb0;
    pub const PQH: u64 = 0xc0;
    pub const PQT: u64 = 0xc8;
    pub const PQA: u64 = 0xd0;
}

/// GCMD/GSTS bits.
const GCMD_TE: u32 = 1 << 31;
const GCMD_SRTP: u32 = 1 << 30;
const GCMD_QIE: u32 = 1 << 26;
/// RTADDR translation table mode 01: scalable mode.
const RTADDR_TTM_SCALABLE: u64 = 1 << 10;
/// IQA: 256-bit descriptors.
const IQA_DW: u64 = 1 << 11;
/// IQA queue size: 2^1 pages, 2^(1+7) = 256 descriptors of 32 bytes.
const IQA_QS: u64 = 1;
/// Descriptors in the queue.
const QUEUE_ENTRIES: u64 = 256;
/// Bytes per descriptor.
const DESCRIPTOR_SIZE: u64 = 32;
/// FSTS bits.
const FSTS_PFO: u32 = 1 << 0;
const FSTS_PPF: u32 = 1 << 1;
const FSTS_IQE: u32 = 1 << 4;
const FSTS_ICE: u32 = 1 << 5;
const FSTS_ITE: u32 = 1 << 6;
/// ECAP bits the harness needs.
const ECAP_QI: u64 = 1 << 1;
const ECAP_PRS: u64 = 1 << 29;
const ECAP_PASID: u64 = 1 << 40;
const ECAP_SMTS: u64 = 1 << 43;
const ECAP_FLTS: u64 = 1 << 47;
/// CAP.FL5LP.
const CAP_FL5LP: u64 = 1 << 60;
/// Fault recording register: F bit in the dword at +12.
const FRCD_F: u32 = 1 << 31;

/// Register reads while polling GSTS for a command to take effect. The model
/// acts synchronously, so one read should do; the bound keeps a model that
/// never sets the bit from hanging the replay.
const MAX_STATUS_POLLS: u32 = 64;

/// What went wrong running a command.
#[derive(Debug, Error)]
pub enum HarnessError {
    /// Guest memory could not be created.
    #[error("cannot create {mem:#x} bytes of guest memory: {reason}")]
    Memory {
        /// Size asked for.
        mem: u64,
        /// Why.
        reason: String,
    },
    /// The model refused the configuration.
    #[error("the model refused the configuration: {0}")]
    Model(String),
    /// Building harness structures failed.
    #[error(transparent)]
    Tables(#[from] TablesError),
    /// The unit lacks a capability the harness needs.
    #[error("the unit does not report {what} ({register} = {value:#x})")]
    MissingCapability {
        /// Capability.
        what: &'static str,
        /// Register read.
        register: &'static str,
        /// Its value.
        value: u64,
    },
    /// A GCMD command never showed in GSTS.
    #[error("GSTS bit {bit:#x} not set after GCMD {command:#x} ({MAX_STATUS_POLLS} reads)")]
    StatusTimeout {
        /// Command written.
        command: u32,
        /// Status bit awaited.
        bit: u32,
    },
    /// The invalidation queue reported an error.
    #[error(
        "invalidation queue error after the descriptor in slot {slot}: FSTS {fsts:#x}, IQER {iqer:#x}"
    )]
    QueueError {
        /// Slot of the descriptor.
        slot: u64,
        /// FSTS.
        fsts: u32,
        /// IQER.
        iqer: u64,
    },
    /// The queue head did not reach the tail.
    #[error("invalidation queue stalled: IQH {iqh:#x}, IQT {iqt:#x}")]
    QueueStalled {
        /// IQH.
        iqh: u64,
        /// IQT.
        iqt: u64,
    },
    /// A wait descriptor's status write did not arrive.
    #[error("wait status at {gpa:#x} is {found:#x}, expected {expected:#x}")]
    WaitIncomplete {
        /// Status address.
        gpa: u64,
        /// Value the descriptor carried.
        expected: u32,
        /// Value found.
        found: u32,
    },
    /// The report could not be built.
    #[error(transparent)]
    Report(#[from] ReportError),
}

type Result<T> = std::result::Result<T, HarnessError>;

/// One `expect` key that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Dotted report key.
    pub key: String,
    /// Value the scenario expected.
    pub expected: u64,
    /// Value in the report (`None`: the key names no number).
    pub actual: Option<u64>,
}

/// `KEY: expected X, actual Y` (`actual not a number` when the key names
/// none): how replay's diagnostics and its JUnit failures say it.
impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: expected {}, actual ", self.key, self.expected)?;
        match self.actual {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("not a number"),
        }
    }
}

/// What one command did, for the runner.
#[derive(Debug)]
pub enum Step {
    /// Done.
    Done,
    /// A `dma` or `walk` line ran, with this outcome.
    Translated(AccessOutcome),
    /// An `expect` line did not hold.
    ExpectFailed(Vec<Mismatch>),
}

/// Rights of a translated page, as the model reports them to the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeRights {
    /// Writes allowed (for this request's privilege).
    pub write: bool,
    /// Instruction fetches allowed (for this request's privilege).
    pub execute: bool,
    /// A user-accessible page.
    pub user: bool,
}

/// The outcome of one `dma` or `walk` line (`--outcomes`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AccessOutcome {
    /// Translated (for a `walk`: the leaf the walk reached; no access was
    /// checked).
    Ok {
        /// Output address, `0x` hexadecimal.
        output: String,
        /// Page size in bytes.
        page_size: u64,
        /// Rights.
        rights: OutcomeRights,
        /// Not translated (translation disabled or a pass-through entry).
        pass_through: bool,
    },
    /// Faulted.
    Fault {
        /// VT-d fault reason code.
        reason: u8,
        /// The model's description.
        reason_text: String,
    },
}

impl AccessOutcome {
    fn of(
        result: &std::result::Result<viommu::Translation, viommu::TranslationFault>,
    ) -> AccessOutcome {
        match result {
            Ok(t) => AccessOutcome::Ok {
                output: format!("{:#x}", t.addr),
                page_size: t.page_size,
                rights: OutcomeRights {
                    write: t.writable,
                    execute: t.executable,
                    user: t.user,
                },
                pass_through: t.pass_through,
            },
            Err(f) => AccessOutcome::Fault {
                reason: f.reason.code(),
                reason_text: f.reason.to_string(),
            },
        }
    }
}

/// Guest memory, the unit, and the harness's driver state.
///
/// Its set-up is its own on purpose, not `viommu::fixture`: the harness lays
/// out root, context and PASID tables for any requesters, PASIDs, levels and
/// memory sizes a scenario names, keeps its tables in an area the scenario
/// cannot write, and is the documented reference behaviour of
/// `docs/SCENARIOS.md`; the fixture is one fixed unit for tests and benches.
#[derive(Debug)]
pub struct Harness {
    config: ScenarioConfig,
    mem: GuestMemoryMmap,
    unit: viommu::Viommu,
    area: Area,
    tables: Tables,
    queue: u64,
    queue_tail: u64,
    status: u64,
    wait_sequence: u32,
    page_request_queue: u64,
    /// Persistent GCMD bits (TE, QIE), rewritten with every command as the
    /// Linux driver does.
    gcmd: u32,
    enabled: bool,
}

/// The PDTS each requester needs: enough directory for the largest PASID
/// the scenario binds for it.
pub fn plan_pasid_directories(scenario: &Scenario) -> BTreeMap<Rid, u8> {
    let mut largest: BTreeMap<Rid, u32> = BTreeMap::new();
    for line in &scenario.lines {
        if let Command::Bind { rid, pasid, .. } = line.command {
            let max = largest.entry(rid).or_insert(0);
            *max = (*max).max(pasid);
        }
    }
    largest
        .into_iter()
        .map(|(rid, pasid)| (rid, tables::pdts_for(pasid)))
        .collect()
}

impl Harness {
    /// Sends the unit's events (translations, invalidations, stale walks,
    /// ...) to `sink`, e.g. a trace writer (`stalewalk replay --trace`).
    pub fn set_event_sink(&mut self, sink: Option<Box<dyn viommu::EventSink>>) {
        self.unit.set_event_sink(sink);
    }

    /// Guest memory and a fresh unit for `scenario`; nothing is enabled yet.
    pub fn new(scenario: &Scenario) -> Result<Self> {
        let config = scenario.config;
        let size = usize::try_from(config.mem).map_err(|_| HarnessError::Memory {
            mem: config.mem,
            reason: "larger than the host address space".to_string(),
        })?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).map_err(|e| {
            HarnessError::Memory {
                mem: config.mem,
                reason: e.to_string(),
            }
        })?;
        let model_config = model_config(&config);
        model_config
            .validate()
            .map_err(|e| HarnessError::Model(e.to_string()))?;
        let unit = viommu::Viommu::new(model_config);
        let mut area = Area::new(config.mem)?;
        let tables = Tables::new(&mut area, config.levels, plan_pasid_directories(scenario))?;
        // The queue is two pages, aligned to its size.
        let queue = area.alloc(2, 2)?;
        let status = area.alloc(1, 1)?;
        let page_request_queue = area.alloc(1, 1)?;
        Ok(Harness {
            config,
            mem,
            unit,
            area,
            tables,
            queue,
            queue_tail: 0,
            status,
            wait_sequence: 0,
            page_request_queue,
            gcmd: 0,
            enabled: false,
        })
    }

    /// The counters so far.
    pub fn report(&self) -> Result<Report> {
        Ok(Report::from_counters(&self.unit.counters())?)
    }

    /// Runs one command.
    pub fn execute(&mut self, command: &Command) -> Result<Step> {
        let step = self.execute_inner(command);
        // No interrupt controller and no device ATCs here: drop what the
        // unit hands out for them, so nothing piles up over a long run.
        self.unit.take_msis();
        self.unit.take_devtlb_invalidations();
        self.unit.take_page_responses();
        step
    }

    fn execute_inner(&mut self, command: &Command) -> Result<Step> {
        match command {
            Command::Write { gpa, value } => tables::write_u64(&self.mem, *gpa, *value)?,
            Command::Table { gpa, index, value } => {
                let entry = gpa.saturating_add(u64::from(*index) * 8);
                tables::write_u64(&self.mem, entry, *value)?;
            }
            Command::Bind {
                pasid,
                pgd,
                did,
                sre,
                rid,
            } => {
                let binding = Binding {
                    rid: *rid,
                    pasid: *pasid,
                    pgd: *pgd,
                    did: *did,
                    sre: *sre,
                };
                self.tables.bind(&self.mem, &mut self.area, &binding)?;
                self.ensure_enabled()?;
            }
            Command::Dma {
                pasid,
                addr,
                access,
                privileged,
                rid,
            } => {
                self.ensure_enabled()?;
                let request = dma_request(*rid, *pasid, *addr, *access, *privileged);
                let result = self.unit.translate(&self.mem, &request);
                if result.is_err() {
                    self.service_faults()?;
                }
                return Ok(Step::Translated(AccessOutcome::of(&result)));
            }
            Command::Walk { pasid, addr, rid } => {
                self.ensure_enabled()?;
                let request = dma_request(*rid, *pasid, *addr, Access::Read, false);
                let result = self.unit.speculative_walk_outcome(&self.mem, &request);
                return Ok(Step::Translated(AccessOutcome::of(&result)));
            }
            Command::Inv(inv) => {
                self.ensure_enabled()?;
                self.submit(&descriptors::encode(inv))?;
            }
            Command::Wait => {
                self.ensure_enabled()?;
                self.wait_sequence = self.wait_sequence.wrapping_add(1);
                let sequence = self.wait_sequence;
                self.submit(&descriptors::wait(self.status, sequence))?;
                let found = tables::read_u32(&self.mem, self.status)?;
                if found != sequence {
                    return Err(HarnessError::WaitIncomplete {
                        gpa: self.status,
                        expected: sequence,
                        found,
                    });
                }
            }
            Command::Free { gpa } => self.unit.hint_pgtable_freed(*gpa),
            Command::Expect(pairs) => {
                let report = self.report()?;
                let mismatches: Vec<Mismatch> = pairs
                    .iter()
                    .filter_map(|(key, expected)| {
                        let actual = report.get(key);
                        (actual != Some(*expected)).then(|| Mismatch {
                            key: key.clone(),
                            expected: *expected,
                            actual,
                        })
                    })
                    .collect();
                if !mismatches.is_empty() {
                    return Ok(Step::ExpectFailed(mismatches));
                }
            }
        }
        Ok(Step::Done)
    }

    fn read32(&mut self, offset: u64) -> u32 {
        let mut bytes = [0u8; 4];
        self.unit.mmio_read(offset, &mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn read64(&mut self, offset: u64) -> u64 {
        let mut bytes = [0u8; 8];
        self.unit.mmio_read(offset, &mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn write32(&mut self, offset: u64, value: u32) {
        self.unit
            .mmio_write(&self.mem, offset, &value.to_le_bytes());
    }

    fn write64(&mut self, offset: u64, value: u64) {
        self.unit
            .mmio_write(&self.mem, offset, &value.to_le_bytes());
    }

    /// Writes GCMD (persistent bits plus `command`) and polls GSTS for `bit`.
    fn command(&mut self, command: u32, bit: u32) -> Result<()> {
        let value = self.gcmd | command;
        self.write32(reg::GCMD, value);
        for _ in 0..MAX_STATUS_POLLS {
            if self.read32(reg::GSTS) & bit != 0 {
                return Ok(());
            }
        }
        Err(HarnessError::StatusTimeout {
            command: value,
            bit,
        })
    }

    /// Enables the unit the way Linux 6.12 does, once: queued invalidation,
    /// the scalable-mode root table, the page-request queue, translation.
    /// Sends no invalidation descriptor.
    fn ensure_enabled(&mut self) -> Result<()> {
        if self.enabled {
            return Ok(());
        }
        let _version = self.read32(reg::VER);
        let cap = self.read64(reg::CAP);
        let ecap = self.read64(reg::ECAP);
        for (what, bit) in [
            ("queued invalidation (ECAP.QI)", ECAP_QI),
            ("scalable mode (ECAP.SMTS)", ECAP_SMTS),
            ("first-stage translation (ECAP.FLTS)", ECAP_FLTS),
            ("PASID (ECAP.PASID)", ECAP_PASID),
        ] {
            if ecap & bit == 0 {
                return Err(HarnessError::MissingCapability {
                    what,
                    register: "ECAP",
                    value: ecap,
                });
            }
        }
        if self.config.levels == 5 && cap & CAP_FL5LP == 0 {
            return Err(HarnessError::MissingCapability {
                what: "5-level first-stage paging (CAP.FL5LP)",
                register: "CAP",
                value: cap,
            });
        }
        // Queued invalidation: tail 0, queue address, QIE.
        self.write64(reg::IQT, 0);
        self.write64(reg::IQA, self.queue | IQA_DW | IQA_QS);
        self.command(GCMD_QIE, GCMD_QIE)?;
        self.gcmd |= GCMD_QIE;
        self.queue_tail = 0;
        // Root table, scalable mode.
        self.write64(reg::RTADDR, self.tables.root() | RTADDR_TTM_SCALABLE);
        self.command(GCMD_SRTP, GCMD_SRTP)?;
        // Page-request queue of one page (PQS 0: 128 requests).
        if ecap & ECAP_PRS != 0 {
            self.write64(reg::PQH, 0);
            self.write64(reg::PQT, 0);
            self.write64(reg::PQA, self.page_request_queue);
        }
        self.command(GCMD_TE, GCMD_TE)?;
        self.gcmd |= GCMD_TE;
        self.enabled = true;
        Ok(())
    }

    /// Writes one descriptor at the tail, advances IQT, and checks that the
    /// unit consumed it without error.
    fn submit(&mut self, descriptor: &Descriptor) -> Result<()> {
        let slot = self.queue_tail;
        let mut gpa = self.queue.saturating_add(slot * DESCRIPTOR_SIZE);
        for qword in descriptor {
            tables::write_u64(&self.mem, gpa, *qword)?;
            gpa = gpa.saturating_add(8);
        }
        self.queue_tail = (slot + 1) % QUEUE_ENTRIES;
        let iqt = self.queue_tail * DESCRIPTOR_SIZE;
        self.write64(reg::IQT, iqt);
        let fsts = self.read32(reg::FSTS);
        if fsts & (FSTS_IQE | FSTS_ICE | FSTS_ITE) != 0 {
            return Err(HarnessError::QueueError {
                slot,
                fsts,
                iqer: self.read64(reg::IQER),
            });
        }
        let iqh = self.read64(reg::IQH);
        if iqh != iqt {
            return Err(HarnessError::QueueStalled { iqh, iqt });
        }
        Ok(())
    }

    /// Clears every pending fault record and the overflow flag, as a
    /// driver's fault handler does, so recording never stops.
    fn service_faults(&mut self) -> Result<()> {
        let fsts = self.read32(reg::FSTS);
        if fsts & (FSTS_PPF | FSTS_PFO) == 0 {
            return Ok(());
        }
        let cap = self.read64(reg::CAP);
        // NFR (47:40) + 1 records at FRO (33:24) * 16; both fields are at
        // most 8 and 10 bits, so the loop and offsets stay small.
        let records = ((cap >> 40) & 0xff) + 1;
        let base = ((cap >> 24) & 0x3ff) * 16;
        for index in 0..records {
            let hi_dword = base + index * 16 + 12;
            if self.read32(hi_dword) & FRCD_F != 0 {
                self.write32(hi_dword, FRCD_F);
            }
        }
        self.write32(reg::FSTS, FSTS_PFO);
        Ok(())
    }
}

/// The model configuration for a scenario's `config`.
fn model_config(config: &ScenarioConfig) -> viommu::Config {
    let cache = match config.cache {
        CachePolicy::Adversarial => viommu::CachePolicy::Adversarial,
        CachePolicy::None => viommu::CachePolicy::None,
        CachePolicy::Lru(n) => std::num::NonZeroUsize::new(usize::try_from(n).unwrap_or(1))
            .map_or(viommu::CachePolicy::None, viommu::CachePolicy::Lru),
    };
    viommu::Config {
        levels: if config.levels == 5 {
            viommu::Levels::Five
        } else {
            viommu::Levels::Four
        },
        cache,
        check: match config.check {
            CheckMode::All => viommu::CheckMode::All,
            CheckMode::Off => viommu::CheckMode::Off,
        },
        ..viommu::Config::default()
    }
}

fn dma_request(
    rid: Rid,
    pasid: u32,
    addr: u64,
    access: Access,
    privileged: bool,
) -> viommu::DmaRequest {
    viommu::DmaRequest {
        rid: rid.source_id(),
        pasid: Some(pasid),
        addr,
        access: match access {
            Access::Read => viommu::Access::Read,
            Access::Write => viommu::Access::Write,
            Access::Execute => viommu::Access::Execute,
        },
        privileged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::parser::{self, DEFAULT_RID, DevtlbSize, Invalidation};

    fn harness(text: &str) -> Harness {
        let scenario = parser::parse_with(text, &|_| true).unwrap();
        Harness::new(&scenario).unwrap()
    }

    fn run_lines(h: &mut Harness, text: &str) {
        let scenario = parser::parse_with(text, &|_| true).unwrap();
        for line in &scenario.lines {
            match h.execute(&line.command) {
                Ok(Step::Done | Step::Translated(_)) => {}
                other => panic!("line {}: {other:?}", line.number),
            }
        }
    }

    #[test]
    fn enabling_programs_queue_root_table_and_translation() {
        let mut h = harness("config mem=4M");
        assert_eq!(h.read32(reg::GSTS) & (GCMD_TE | GCMD_QIE | GCMD_SRTP), 0);
        h.ensure_enabled().unwrap();
        let gsts = h.read32(reg::GSTS);
        assert_ne!(gsts & GCMD_TE, 0, "GSTS {gsts:#x}");
        assert_ne!(gsts & GCMD_QIE, 0, "GSTS {gsts:#x}");
        assert_ne!(gsts & GCMD_SRTP, 0, "GSTS {gsts:#x}");
        assert_eq!(h.read64(reg::IQA), h.queue | IQA_DW | IQA_QS);
        assert_eq!(h.read64(reg::RTADDR), h.tables.root() | RTADDR_TTM_SCALABLE);
        assert!(h.unit.translation_enabled());
        // Harness structures sit in the top 1 MiB.
        assert!(h.queue >= (4 << 20) - (1 << 20));
        assert_eq!(h.queue % 0x2000, 0);
        // Enabling sends no descriptor.
        assert_eq!(h.report().unwrap().get("invalidations.wait"), Some(0));
        assert_eq!(h.read64(reg::IQT), 0);
    }

    #[test]
    fn devtlb_descriptors_decode_as_written() {
        let mut h = harness("");
        h.ensure_enabled().unwrap();
        let rid = Rid {
            bus: 0,
            device: 5,
            function: 0,
        };
        let cases = [
            (None, 0x3000, DevtlbSize::Pages { order: 0 }, 0x3000, 0x1000),
            (
                None,
                0x20_0000,
                DevtlbSize::Pages { order: 9 },
                0x20_0000,
                0x20_0000,
            ),
            (
                Some(7),
                0x6000,
                DevtlbSize::Pages { order: 1 },
                0x6000,
                0x2000,
            ),
            (Some(7), 0, DevtlbSize::All, 0, u64::MAX),
            (None, 0, DevtlbSize::All, 0, u64::MAX),
        ];
        for (pasid, addr, size, want_addr, want_size) in cases {
            h.submit(&descriptors::encode(&Invalidation::Devtlb {
                rid,
                pasid,
                addr,
                size,
            }))
            .unwrap();
            let got = h.unit.take_devtlb_invalidations();
            assert_eq!(got.len(), 1, "{pasid:?} {addr:#x} {size:?}");
            assert_eq!(got[0].sid, rid.source_id());
            assert_eq!(got[0].pasid, pasid);
            assert_eq!((got[0].addr, got[0].size), (want_addr, want_size));
        }
    }

    #[test]
    fn wait_writes_a_fresh_status_each_time() {
        let mut h = harness("");
        run_lines(&mut h, "wait\nwait\nwait\n");
        assert_eq!(tables::read_u32(&h.mem, h.status).unwrap(), 3);
        assert_eq!(h.report().unwrap().get("invalidations.wait"), Some(3));
    }

    #[test]
    fn queue_wraps_after_256_descriptors() {
        let mut h = harness("");
        let text = "inv iotlb global\n".repeat(300);
        run_lines(&mut h, &text);
        assert_eq!(h.report().unwrap().get("invalidations.iotlb"), Some(300));
        assert_eq!(h.queue_tail, 300 % QUEUE_ENTRIES);
    }

    #[test]
    fn reject_descriptor_the_unit_refuses() {
        let mut h = harness("");
        h.ensure_enabled().unwrap();
        // Type 0 is no descriptor: the unit must stop the queue with IQE.
        let err = h.submit(&[0, 0, 0, 0]).unwrap_err();
        assert!(
            matches!(err, HarnessError::QueueError { slot: 0, fsts, .. } if fsts & FSTS_IQE != 0),
            "{err}"
        );
    }

    #[test]
    fn faults_keep_being_recorded_past_the_record_count() {
        let mut h = harness("");
        // No tables at all: every access faults (root entry not present).
        let text = "dma pasid=1 addr=0x1000 access=r\n".repeat(40);
        run_lines(&mut h, &text);
        let report = h.report().unwrap();
        assert_eq!(report.get("translations"), Some(40));
        assert_eq!(report.get("faults"), Some(40));
        assert_eq!(report.get("faults_recorded"), Some(40));
        assert_eq!(h.read32(reg::FSTS) & (FSTS_PPF | FSTS_PFO), 0);
    }

    #[test]
    fn plan_sizes_directories_per_requester() {
        let scenario = parser::parse_with(
            "bind pasid=1 pgd=0x1000\nbind pasid=0xfffff pgd=0x1000 rid=00:05.0\nbind pasid=9000 pgd=0x1000\n",
            &|_| true,
        )
        .unwrap();
        let plan = plan_pasid_directories(&scenario);
        assert_eq!(plan.get(&DEFAULT_RID), Some(&1));
        let rid5 = Rid {
            bus: 0,
            device: 5,
            function: 0,
        };
        assert_eq!(plan.get(&rid5), Some(&7));
    }

    #[test]
    fn reject_more_pasid_directories_than_the_area_holds() {
        // Eight requesters with 128 KiB directories need 8 * 32 pages.
        let text: String = (0..8)
            .map(|d| format!("bind pasid=0xfffff pgd=0x1000 rid=00:{d:02x}.0\n"))
            .collect();
        let scenario = parser::parse_with(&text, &|_| true).unwrap();
        let mut h = Harness::new(&scenario).unwrap();
        let mut failed = None;
        for line in &scenario.lines {
            if let Err(e) = h.execute(&line.command) {
                failed = Some((line.number, e));
                break;
            }
        }
        let (line, err) = failed.expect("the area cannot hold eight directories");
        assert!(line > 1, "{line}");
        assert!(
            matches!(err, HarnessError::Tables(TablesError::AreaExhausted { .. })),
            "{err}"
        );
    }
}
