//! The end-of-run report: what the vIOMMU counted and detected, per device
//! and per PASID, what the devices and paravirtual ports saw, and what the
//! guest itself said it observed.
//!
//! The JSON form (`--report json`, `--report-file`) has the scenario-replay
//! report's keys at its top level (`translations`, `faults`,
//! `stale_walks`, `freed_while_cached`, `invalidations`,
//! `kva_invalidations`, ...; see `docs/SCENARIOS.md`) plus the run's own
//! sections (`guest`, `per_device`, `per_pasid`, `sva_devices`, `vmm`).
//! The text form is for people and is always printed on standard error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use viommu::event::{Event, EventSink};

use crate::config::VmConfig;
use devices::layout::requester_id;

/// Prefix of the guest's result lines on its serial console.
pub const GUEST_LINE_PREFIX: &str = "stalewalk-guest: ";
/// Most distinct keys kept from guest result lines, so a guest printing
/// endless keys cannot grow the VMM's memory.
pub const MAX_GUEST_KEYS: usize = 256;
/// Longest guest key or value kept (longer ones are cut).
pub const MAX_GUEST_VALUE: usize = 256;
/// Longest serial line buffered while looking for result lines.
const MAX_LINE: usize = 4096;
pub use viommu::MAX_BREAKDOWN_KEYS;

/// What the guest printed as `stalewalk-guest: key=value ...`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GuestLines {
    /// The last value of every key, in key order.
    pub values: BTreeMap<String, String>,
    /// Keys dropped because [`MAX_GUEST_KEYS`] was reached.
    pub dropped_keys: u64,
    /// Every `stalewalk-guest:` line, in order (bounded like the keys).
    #[serde(skip)]
    pub lines: Vec<String>,
}

impl GuestLines {
    fn take_line(&mut self, line: &str) {
        let Some(rest) = line.trim_end().strip_prefix(GUEST_LINE_PREFIX) else {
            return;
        };
        if self.lines.len() < MAX_GUEST_KEYS {
            self.lines.push(rest.to_string());
        }
        for word in rest.split_whitespace() {
            let Some((k, v)) = word.split_once('=') else {
                continue;
            };
            let k: String = k.chars().take(MAX_GUEST_VALUE).collect();
            let v: String = v.chars().take(MAX_GUEST_VALUE).collect();
            if self.values.len() >= MAX_GUEST_KEYS && !self.values.contains_key(&k) {
                self.dropped_keys += 1;
                continue;
            }
            self.values.insert(k, v);
        }
    }
}

/// Called with every complete serial line (the trace's `serial` markers).
pub type LineHook = Box<dyn FnMut(&str) + Send>;

/// A serial output that forwards everything to `inner` and collects the
/// guest's result lines.
pub struct GuestLog {
    inner: Box<dyn Write + Send>,
    partial: Vec<u8>,
    lines: Arc<Mutex<GuestLines>>,
    hook: Option<LineHook>,
}

impl std::fmt::Debug for GuestLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestLog").finish_non_exhaustive()
    }
}

impl GuestLog {
    /// Wraps `inner`; result lines go to `lines`, every line to `hook`.
    pub fn new(
        inner: Box<dyn Write + Send>,
        lines: Arc<Mutex<GuestLines>>,
        hook: Option<LineHook>,
    ) -> Self {
        Self {
            inner,
            partial: Vec::new(),
            lines,
            hook,
        }
    }

    fn line_done(&mut self) {
        let text = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        let text = text.trim_end_matches('\r');
        if let Some(h) = self.hook.as_mut() {
            h(text);
        }
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_line(text);
    }
}

impl Write for GuestLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for &b in buf {
            if b == b'\n' {
                self.line_done();
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

// Per-device and per-PASID counts are kept by the vIOMMU itself (no event
// sink needed); the report serializes them as they are.
pub use viommu::breakdown::{Breakdown, Breakdowns, pasid_name, rid_name};

/// Sends every event to several sinks, in order.
pub struct FanOut(pub Vec<Box<dyn EventSink>>);

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FanOut({} sinks)", self.0.len())
    }
}

impl EventSink for FanOut {
    fn event(&mut self, event: &Event) {
        for s in &mut self.0 {
            s.event(event);
        }
    }
}

/// One SVA device's counters in the report.
#[derive(Debug, Clone, Serialize)]
pub struct SvaReport {
    /// Where it sits (`00:04.0`).
    pub device: String,
    /// Its counters.
    #[serde(flatten)]
    pub counters: devices::sva::SvaCounters,
}

/// One virtio device's counters in the report.
#[derive(Debug, Clone, Serialize)]
pub struct VirtioReport {
    /// Where it sits (`00:03.0`).
    pub device: String,
    /// Its kind, transport and device counters.
    #[serde(flatten)]
    pub metrics: devices::virtio::transport::VirtioMetrics,
}

/// What the VMM itself counted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VmmCounters {
    /// Port or MMIO accesses no device claimed.
    pub unclaimed_io: u64,
    /// MSIs and interrupt-line changes delivered to KVM.
    pub interrupts_delivered: u64,
    /// ... that KVM refused.
    pub interrupts_failed: u64,
    /// Page-table-freed hints received on port 0xf0.
    pub hints: u64,
    /// Malformed hint-port writes.
    pub hints_rejected: u64,
    /// Guest actions the vIOMMU and devices rejected, each counted where it
    /// was rejected (see [`rejected_guest_actions`]).
    pub rejected_guest_actions: u64,
    /// Guest console bytes (COM1 and virtio-console) that never reached
    /// the output: the reader stalled and the bounded buffer was full, the
    /// run ended before they were written, or a write failed.
    pub serial_dropped_bytes: u64,
    /// The first error writing the guest console output (e.g. `--serial
    /// file=` on a full disk), if any.
    pub serial_error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Report format version.
    pub report_version: u32,
    /// The guest scenario (`scenario=` on the guest command line), if any.
    pub scenario: Option<String>,
    /// The guest's `kpgtable_free=` policy, if given.
    pub policy: Option<String>,
    /// "on" or "off".
    pub viommu: &'static str,
    /// Cache policy, when the vIOMMU is on.
    pub cache_policy: Option<String>,
    /// The VMM's exit status (the guest's debug-exit value), if it ended
    /// normally.
    pub exit_status: Option<u8>,
    /// Why the run ended.
    pub ended_by: String,
    /// Wall time of the run in milliseconds.
    pub elapsed_ms: f64,
    /// The vIOMMU's counters (the replay report's keys), flattened.
    #[serde(flatten)]
    pub counters: viommu::counters::Counters,
    /// Per-device and per-PASID breakdowns.
    #[serde(flatten)]
    pub breakdowns: Breakdowns,
    /// SVA devices.
    pub sva_devices: Vec<SvaReport>,
    /// virtio devices.
    pub virtio_devices: Vec<VirtioReport>,
    /// What the VMM counted.
    pub vmm: VmmCounters,
    /// Instructions the VMM ran because KVM's emulator could not
    /// (`--emulate-in-vmm on`), per mnemonic.
    pub vmm_emulated: std::collections::BTreeMap<String, u64>,
    /// Words the VMM added to a Linux guest's command line (`noxsave`,
    /// `clearcpuid=...`) for CPUID it cannot hide on this host.
    pub guest_cmdline_added: Vec<String>,
    /// What the guest said (`stalewalk-guest:` lines).
    pub guest: GuestLines,
}

/// The value of `key=` in a kernel command line.
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline.split_whitespace().rev().find_map(|w| {
        w.strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .map(str::to_string)
    })
}

impl RunReport {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The guest's own verdict, when its scenario printed one.
    pub fn guest_verdict(&self) -> Option<&str> {
        self.guest.values.get("verdict").map(String::as_str)
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let c = &self.counters;
        let mut s = String::new();
        let _ = writeln!(s, "== stalewalk report ==");
        let _ = writeln!(
            s,
            "scenario {}  policy {}  vIOMMU {}{}  checker {}",
            self.scenario.as_deref().unwrap_or("-"),
            self.policy.as_deref().unwrap_or("-"),
            self.viommu,
            self.cache_policy
                .as_deref()
                .map(|p| format!(" (cache {p})"))
                .unwrap_or_default(),
            match c.checker {
                Some(m) => m.to_string(),
                None => "-".to_string(),
            }
        );
        let _ = writeln!(
            s,
            "ended by {}  exit status {}  {:.0} ms",
            self.ended_by,
            self.exit_status
                .map_or_else(|| "-".to_string(), |e| e.to_string()),
            self.elapsed_ms
        );
        if let Some(note) = checker_note(c.checker) {
            let _ = writeln!(s, "{note}");
        }
        let _ = writeln!(
            s,
            "translations {}  faults {}  speculative walks {}",
            c.translations, c.faults, c.speculative_walks
        );
        let _ = writeln!(
            s,
            "stale walks: reused {}  unlinked {}  leaf {}   freed_while_cached {} (of {} hints)",
            c.stale_walks.reused,
            c.stale_walks.unlinked,
            c.stale_walks.leaf,
            c.freed_while_cached,
            c.free_hints
        );
        let i = &c.invalidations;
        let _ = writeln!(
            s,
            "invalidations: context {} iotlb {} piotlb {} pasid-cache {} devtlb {} pdevtlb {} iec {} wait {} page-response {}",
            i.context,
            i.iotlb,
            i.piotlb,
            i.pasid_cache,
            i.devtlb,
            i.pdevtlb,
            i.iec,
            i.wait,
            i.page_response
        );
        let _ = writeln!(
            s,
            "kva invalidations {}  (IH=0 {}, IH=1 {})  queue errors {}",
            c.kva_invalidations, c.granularity.ih0, c.granularity.ih1, c.queue_errors
        );
        let k = &c.cache;
        let _ = writeln!(
            s,
            "cache hits/misses: iotlb {}/{}  pde {}/{}  pdpe {}/{}  pml4e {}/{}  pml5e {}/{}",
            k.iotlb.hits,
            k.iotlb.misses,
            k.pde.hits,
            k.pde.misses,
            k.pdpe.hits,
            k.pdpe.misses,
            k.pml4e.hits,
            k.pml4e.misses,
            k.pml5e.hits,
            k.pml5e.misses
        );
        for (dev, b) in &self.breakdowns.per_device {
            let dev = rid_name(*dev);
            let _ = writeln!(
                s,
                "device {dev}: translations {} faults {} stale {} (reused {})",
                b.translations, b.faults, b.stale_walks, b.reused
            );
        }
        for (p, b) in &self.breakdowns.per_pasid {
            let p = pasid_name(*p);
            let _ = writeln!(
                s,
                "pasid {p}: translations {} faults {} stale {} (reused {}) piotlb {}",
                b.translations, b.faults, b.stale_walks, b.reused, b.piotlb
            );
        }
        for d in &self.sva_devices {
            let _ = writeln!(
                s,
                "sva {}: ops {} failed {} page requests {} responses {} atc invalidations {}",
                d.device,
                d.counters.ops_completed,
                d.counters.ops_failed,
                d.counters.page_requests,
                d.counters.page_responses,
                d.counters.atc_invalidations
            );
        }
        for d in &self.virtio_devices {
            let _ = writeln!(
                s,
                "virtio-{} {}: notifications {} interrupts {} {}",
                d.metrics.kind,
                d.device,
                d.metrics.transport.notifications,
                d.metrics.transport.interrupts,
                serde_json::to_string(&d.metrics.device_counters).unwrap_or_default()
            );
        }
        let v = &self.vmm;
        let _ = writeln!(
            s,
            "vmm: rejected guest actions {}  unclaimed I/O {}  interrupts {} (failed {})  hints {} (rejected {})",
            v.rejected_guest_actions,
            v.unclaimed_io,
            v.interrupts_delivered,
            v.interrupts_failed,
            v.hints,
            v.hints_rejected
        );
        // The report goes to standard error, so this line also reaches a
        // user whose console output was the thing lost.
        if v.serial_dropped_bytes > 0 || v.serial_error.is_some() {
            let _ = writeln!(
                s,
                "serial: {} bytes of guest console output lost{}",
                v.serial_dropped_bytes,
                v.serial_error
                    .as_deref()
                    .map(|e| format!(" (write error: {e})"))
                    .unwrap_or_default()
            );
        }
        if !self.vmm_emulated.is_empty() {
            let each: Vec<String> = self
                .vmm_emulated
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            let _ = writeln!(s, "vmm emulated: {}", each.join("  "));
        }
        if !self.guest_cmdline_added.is_empty() {
            let _ = writeln!(
                s,
                "guest command line: the VMM added {}",
                self.guest_cmdline_added.join(" ")
            );
        }
        if self.guest.lines.is_empty() {
            let _ = writeln!(s, "guest: (no stalewalk-guest lines)");
        }
        for l in &self.guest.lines {
            let _ = writeln!(s, "guest: {l}");
        }
        s
    }
}

/// The note a report carries when the checker did not look at every
/// translation: with `off` no stale walk is seen, with `sampled` most are
/// missed (the exploit can pass unnoticed), and a reader must know either.
pub fn checker_note(mode: Option<viommu::config::CheckMode>) -> Option<String> {
    match mode? {
        viommu::config::CheckMode::Off => Some(
            "NOTE: the stale-walk checker was off (--viommu-check off): stale walks are not detected"
                .to_string(),
        ),
        viommu::config::CheckMode::Sampled => Some(format!(
            "NOTE: the stale-walk checker was sampled (--viommu-check sampled): it re-walked one in {} \
             cached translations, so stale walks (the exploit among them) can go unseen; use all to see every one",
            viommu::checker::SAMPLE_PERIOD
        )),
        viommu::config::CheckMode::All => None,
    }
}

/// How a run ended, for the report (the VMM's view of the outcome, so that
/// this module does not depend on `vm`).
#[derive(Debug, Clone)]
pub struct RunEnd {
    /// The VMM's exit status when the guest ended the run.
    pub exit_status: Option<u8>,
    /// What ended it (`DebugExit(N)`, `Reset`, ... or the error's message).
    pub ended_by: String,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Guest actions rejected across the platform: each device counts its own
/// where it refuses them; the vIOMMU counts queue errors and page responses
/// that matched no request.
pub fn rejected_guest_actions(
    viommu: &viommu::counters::Counters,
    hint: &devices::hint::HintCounters,
    sva: &[SvaReport],
    virtio: &[VirtioReport],
) -> u64 {
    viommu.queue_errors
        + viommu.page_requests.unmatched_responses
        + hint.rejected
        + sva
            .iter()
            .map(|d| d.counters.rejected_guest_actions)
            .sum::<u64>()
        + virtio
            .iter()
            .map(|d| d.metrics.rejected_guest_actions())
            .sum::<u64>()
}

/// Assembles the end-of-run report from what the run counted.
pub fn build_report(
    cfg: &VmConfig,
    end: RunEnd,
    platform: &crate::platform::Platform,
    unclaimed_io: u64,
    guest_lines: &Mutex<GuestLines>,
) -> RunReport {
    let devices = &platform.devices;
    let (counters, breakdowns) = devices
        .viommu
        .as_ref()
        .map(|v| {
            let v = v.lock().unwrap_or_else(|p| p.into_inner());
            (v.counters().clone(), v.breakdowns())
        })
        .unwrap_or_default();
    let sva_devices: Vec<SvaReport> = devices
        .sva
        .iter()
        .map(|d| SvaReport {
            device: rid_name(requester_id(d.number)),
            counters: d.counters(),
        })
        .collect();
    let virtio_devices: Vec<VirtioReport> = devices
        .virtio
        .iter()
        .map(|d| VirtioReport {
            device: rid_name(requester_id(d.number())),
            metrics: d.metrics(),
        })
        .collect();
    let hint = devices.hint_counters();
    let interrupts = platform.interrupts.counters();
    let rejected_guest_actions =
        rejected_guest_actions(&counters, &hint, &sva_devices, &virtio_devices);
    let RunEnd {
        exit_status,
        ended_by,
        elapsed,
    } = end;
    RunReport {
        report_version: 1,
        scenario: cmdline_value(&cfg.cmdline, "scenario"),
        policy: cmdline_value(&cfg.cmdline, "kpgtable_free"),
        viommu: if devices.viommu.is_some() {
            "on"
        } else {
            "off"
        },
        cache_policy: cfg.platform.viommu.as_ref().map(|v| v.cache.to_string()),
        exit_status,
        ended_by,
        elapsed_ms: elapsed.as_secs_f64() * 1e3,
        counters,
        breakdowns,
        sva_devices,
        virtio_devices,
        // Filled by the VM from what its vCPUs emulated and what it added
        // to a Linux command line.
        vmm_emulated: std::collections::BTreeMap::new(),
        guest_cmdline_added: Vec::new(),
        vmm: VmmCounters {
            unclaimed_io,
            interrupts_delivered: interrupts.delivered,
            interrupts_failed: interrupts.failed,
            hints: hint.hints,
            hints_rejected: hint.rejected,
            rejected_guest_actions,
            // Filled in by the VM once the serial writer has finished.
            ..VmmCounters::default()
        },
        guest: guest_lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_and_off_checkers_carry_a_note() {
        use viommu::config::CheckMode;
        let off = checker_note(Some(CheckMode::Off)).unwrap();
        assert!(off.contains("--viommu-check off"), "{off}");
        let sampled = checker_note(Some(CheckMode::Sampled)).unwrap();
        assert!(
            sampled.starts_with("NOTE:") && sampled.contains("one in 16"),
            "{sampled}"
        );
        assert_eq!(checker_note(Some(CheckMode::All)), None);
        assert_eq!(checker_note(None), None);
    }

    #[test]
    fn guest_lines_are_collected_and_forwarded() {
        let lines = Arc::new(Mutex::new(GuestLines::default()));
        let out = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen2 = seen.clone();
        let mut log = GuestLog::new(
            Box::new(W(out.clone())),
            lines.clone(),
            Some(Box::new(move |l: &str| {
                seen2.lock().unwrap().push(l.to_string())
            })),
        );
        log.write_all(b"hello\r\nstalewalk-guest: verdict=pass secret")
            .unwrap();
        log.write_all(b"_leaked=1 junk\n").unwrap();
        assert_eq!(out.lock().unwrap().len(), 58);
        let l = lines.lock().unwrap();
        assert_eq!(l.values["verdict"], "pass");
        assert_eq!(l.values["secret_leaked"], "1");
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(seen.lock().unwrap()[0], "hello");
    }

    #[test]
    fn reject_unbounded_guest_keys_and_lines() {
        let mut g = GuestLines::default();
        for i in 0..(MAX_GUEST_KEYS + 10) {
            g.take_line(&format!("stalewalk-guest: k{i}=v"));
        }
        assert_eq!(g.values.len(), MAX_GUEST_KEYS);
        assert_eq!(g.dropped_keys, 10);
        assert_eq!(g.lines.len(), MAX_GUEST_KEYS);
        let mut log = GuestLog::new(
            Box::new(std::io::sink()),
            Arc::new(Mutex::new(GuestLines::default())),
            None,
        );
        log.write_all(&vec![b'x'; MAX_LINE * 4]).unwrap();
        assert_eq!(log.partial.len(), MAX_LINE);
    }

    // breakdowns_are_bounded lives with the breakdowns, in viommu.

    #[test]
    fn rejected_guest_actions_include_every_device() {
        use devices::virtio::DeviceCounters;
        use devices::virtio::blk::BlockCounters;
        use devices::virtio::rng::RngCounters;
        use devices::virtio::transport::{TransportCounters, VirtioMetrics};
        let viommu = viommu::counters::Counters {
            queue_errors: 1,
            ..Default::default()
        };
        let hint = devices::hint::HintCounters {
            hints: 0,
            rejected: 10,
        };
        let sva = [SvaReport {
            device: rid_name(0x20),
            counters: devices::sva::SvaCounters {
                rejected_guest_actions: 100,
                ..Default::default()
            },
        }];
        let virtio = |device_counters| VirtioReport {
            device: rid_name(0x10),
            metrics: VirtioMetrics {
                kind: "test",
                transport: TransportCounters {
                    needs_reset: 1000,
                    ..Default::default()
                },
                device_counters,
            },
        };
        let blk = virtio(DeviceCounters::Block(BlockCounters {
            requests_failed: 7,
            rejected_guest_actions: 5_000,
            ..Default::default()
        }));
        let rng = virtio(DeviceCounters::Rng(RngCounters {
            rejected_guest_actions: 50_000,
            source_errors: 3,
            ..Default::default()
        }));
        assert_eq!(
            rejected_guest_actions(&viommu, &hint, &sva, &[blk, rng]),
            1 + 10 + 100 + 1000 + 5_000 + 1000 + 50_000
        );
    }

    #[test]
    fn cmdline_values() {
        assert_eq!(
            cmdline_value("a=1 kpgtable_free=sync scenario=exploit", "kpgtable_free").as_deref(),
            Some("sync")
        );
        assert_eq!(cmdline_value("kpgtable_free_x=1", "kpgtable_free"), None);
        assert_eq!(
            cmdline_value("scenario=a scenario=b", "scenario").as_deref(),
            Some("b")
        );
    }
}
