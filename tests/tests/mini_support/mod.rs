//! Shared by the `mini_*` integration tests: boots the built-in mini guest
//! with SVA devices and a scenario, and returns its serial output, exit
//! status and the VMM's end-of-run report as JSON.

use std::path::Path;
use std::sync::{Arc, Mutex};

use stalewalk_integration::require_kvm;
use stalewalk_vmm::RunHooks;
use stalewalk_vmm::config::{SerialMode, VmConfig};
use stalewalk_vmm::platform::DiskConfig;

/// How to run one scenario.
#[derive(Debug, Clone)]
pub struct MiniRun<'a> {
    /// Guest command line (`scenario=...` and knobs).
    pub cmdline: &'a str,
    /// SVA DMA test devices.
    pub sva_devices: u8,
    /// vIOMMU cache policy (`adversarial`, `lru:N`, `none`).
    pub cache: &'a str,
    /// Stale-walk checker (`all`, `sampled`, `off`).
    pub check: &'a str,
    /// A virtio-blk disk image and whether it is read-only.
    pub disk: Option<(&'a Path, bool)>,
    /// The vIOMMU (`cache` and `check` apply only when it is on).
    pub viommu: bool,
}

impl Default for MiniRun<'_> {
    fn default() -> Self {
        MiniRun {
            cmdline: "",
            sva_devices: 1,
            cache: "adversarial",
            check: "all",
            disk: None,
            viommu: true,
        }
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct MiniResult {
    /// The VMM's exit status (the guest's debug-exit value).
    pub exit_status: u8,
    /// Everything the guest printed.
    pub serial: String,
    /// The end-of-run report.
    pub report: serde_json::Value,
}

impl MiniResult {
    /// The guest's `stalewalk-guest: ... key=value ...` value for `key`
    /// (the last line that has it).
    pub fn guest(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}=");
        self.serial
            .lines()
            .filter(|l| l.starts_with("stalewalk-guest:"))
            .flat_map(|l| l.split_whitespace())
            .filter_map(|w| w.strip_prefix(prefix.as_str()))
            .next_back()
            .map(str::to_string)
    }

    /// The guest value for `key` as a number (decimal or 0x hex); panics
    /// with the serial output when it is missing or not a number.
    pub fn guest_u64(&self, key: &str) -> u64 {
        self.guest(key)
            .and_then(|v| match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).ok(),
                None => v.parse().ok(),
            })
            .unwrap_or_else(|| panic!("no numeric guest value {key}=\n{}", self.serial))
    }

    /// A number from the report at a dotted path (`stale_walks.reused`).
    pub fn counter(&self, path: &str) -> u64 {
        let mut v = &self.report;
        for k in path.split('.') {
            v = v
                .get(k)
                .unwrap_or_else(|| panic!("report has no {path}:\n{}", self.report));
        }
        v.as_u64()
            .unwrap_or_else(|| panic!("report {path} is not a number: {v}"))
    }
}

/// Runs the mini guest as `run` says; `None` (after one `SKIPPED:` line)
/// where KVM is not usable.
pub fn run_mini(test: &str, run: &MiniRun<'_>) -> Option<MiniResult> {
    if !require_kvm(test) {
        return None;
    }
    let buf = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = VmConfig {
        cmdline: run.cmdline.to_string(),
        serial: SerialMode::Capture(buf.clone()),
        ..Default::default()
    };
    cfg.platform.sva_devices = run.sva_devices;
    cfg.platform.disk = run.disk.map(|(path, read_only)| DiskConfig {
        path: path.to_path_buf(),
        read_only,
    });
    if run.viommu {
        let viommu = cfg
            .platform
            .viommu
            .as_mut()
            .expect("the vIOMMU is on by default");
        viommu.cache = run.cache.parse().expect("cache policy");
        viommu.check = run.check.parse().expect("checker mode");
    } else {
        cfg.platform.viommu = None;
    }
    // The run installs the VMM's seccomp filter on the thread that calls
    // it; a thread of its own keeps the test's thread unfiltered (the
    // tests remove their disk images afterwards).
    let r = std::thread::spawn(move || stalewalk_vmm::run_with_report(&cfg, RunHooks::default()))
        .join()
        .expect("the VM thread panicked");
    let serial = String::from_utf8_lossy(&buf.lock().expect("serial buffer")).into_owned();
    let outcome = r
        .result
        .unwrap_or_else(|e| panic!("run failed: {e}\n{serial}"));
    let report = r
        .report
        .unwrap_or_else(|| panic!("no report\n{serial}"))
        .to_json();
    let report = serde_json::from_str(&report).expect("the report is JSON");
    Some(MiniResult {
        exit_status: outcome.exit_status,
        serial,
        report,
    })
}
