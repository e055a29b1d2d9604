//! The VM configuration: everything `run` needs, built from the command
//! line (`cli::RunArgs`) or directly by library users such as the
//! integration tests.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cpuid::CpuProfile;

/// Most vCPUs a VM may have: the mini guest's per-CPU tables and the xAPIC
/// IDs in CPUID leaf 1 (8 bits) are sized for this.
pub const MAX_VCPUS: u32 = 64;
/// Least guest memory: boot structures, the kernel and its page tables.
pub const MIN_MEMORY: u64 = 16 << 20;
/// Most guest memory accepted, so a typo cannot reserve absurd amounts.
pub const MAX_MEMORY: u64 = 1 << 40;
/// The default guest memory size.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// Which kernel to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelSource {
    /// The built-in mini guest (with its PVH note).
    MiniGuest,
    /// A file: ELF (with or without a PVH note) or bzImage.
    Path(PathBuf),
}

/// Where the guest's serial output goes.
#[derive(Clone, Debug, Default)]
pub enum SerialMode {
    /// The VMM's standard output.
    #[default]
    Stdio,
    /// The VMM's standard error (the default with `--report json`, which
    /// has standard output to itself).
    Stderr,
    /// A file (created or truncated).
    File(PathBuf),
    /// Discarded.
    Off,
    /// Appended to a shared buffer (for library users and tests).
    Capture(Arc<Mutex<Vec<u8>>>),
}

/// A complete VM configuration.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// The kernel to boot.
    pub kernel: KernelSource,
    /// An initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// The guest command line.
    pub cmdline: String,
    /// Guest memory in bytes (a multiple of 4 KiB).
    pub memory: u64,
    /// Number of vCPUs.
    pub cpus: u32,
    /// Which CPUID features the guest sees.
    pub cpu_profile: CpuProfile,
    /// Expose 5-level paging (LA57) in the emulation-safe profile.
    pub la57: bool,
    /// Serial output.
    pub serial: SerialMode,
    /// Print what the VMM does on standard error.
    pub verbose: bool,
    /// ACPI, PCI, vIOMMU and SVA devices.
    pub platform: crate::platform::PlatformConfig,
    /// seccomp filters for the VMM's threads (`--seccomp`).
    pub seccomp: crate::seccomp::SeccompMode,
    /// Stop the guest after this much wall time (`--timeout`).
    pub timeout: Option<std::time::Duration>,
    /// Run the instructions KVM's emulator cannot, from a documented set
    /// (`--emulate-in-vmm`, docs/EMULATION.md).
    pub emulate_in_vmm: bool,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            kernel: KernelSource::MiniGuest,
            initrd: None,
            cmdline: String::new(),
            memory: DEFAULT_MEMORY,
            cpus: 1,
            cpu_profile: CpuProfile::EmulationSafe,
            la57: false,
            serial: SerialMode::Stdio,
            verbose: false,
            platform: crate::platform::PlatformConfig::default(),
            seccomp: crate::seccomp::SeccompMode::On,
            timeout: None,
            emulate_in_vmm: true,
        }
    }
}

/// Errors in a configuration (each names the option to fix).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// --memory could not be parsed.
    #[error("--memory: {0}")]
    Size(#[from] crate::size::SizeError),
    /// --memory is outside the accepted range.
    #[error("--memory {value:#x} bytes is out of range: give between 16M and 1T")]
    MemoryRange {
        /// The rejected size.
        value: u64,
    },
    /// --memory is not a whole number of 4 KiB pages.
    #[error("--memory {value:#x} bytes is not a multiple of 4 KiB")]
    MemoryAlignment {
        /// The rejected size.
        value: u64,
    },
    /// --cpus is zero or too many.
    #[error("--cpus {value}: give between 1 and {max}")]
    CpuCount {
        /// The rejected count.
        value: u32,
        /// The limit.
        max: u32,
    },
    /// --timeout is not a positive duration.
    #[error("--timeout {0:?}: give a positive number of seconds, e.g. 30, 2.5, 90s or 5m")]
    Timeout(String),
    /// --serial has an unknown form.
    #[error("--serial {0:?}: use stdio, off or file=PATH")]
    Serial(String),
    /// A --viommu-* value is invalid.
    #[error("{flag} {value:?}: {reason}")]
    Viommu {
        /// The flag.
        flag: &'static str,
        /// The value given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// --disk has no path.
    #[error("--disk {0:?}: give PATH or PATH,ro")]
    Disk(String),
    /// --device names an unknown device.
    #[error("--device {0:?}: unknown device (known: sva-dma)")]
    Device(String),
    /// Too many SVA devices.
    #[error("{0} SVA devices requested: at most 28 fit on bus 0 (00:04.0 to 00:1f.0)")]
    SvaCount(u32),
    /// --scenario holds characters that would split the command line.
    #[error("--scenario {0:?}: a scenario name is one word of letters, digits, '-' and '_'")]
    Scenario(String),
    /// The scenario needs a disk and none was given.
    #[error(
        "scenario {scenario} needs a virtio-blk disk: add --disk PATH (a scratch file will do: \
         truncate -s 128M disk.img); `stalewalk scenarios` lists what each scenario needs"
    )]
    ScenarioNeedsDisk {
        /// The scenario.
        scenario: String,
    },
}

impl VmConfig {
    /// Checks the limits of a configuration built by hand.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_memory(self.memory)?;
        check_cpus(self.cpus)
    }
}

/// Checks a guest memory size.
pub fn check_memory(value: u64) -> Result<(), ConfigError> {
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&value) {
        return Err(ConfigError::MemoryRange { value });
    }
    if value % 4096 != 0 {
        return Err(ConfigError::MemoryAlignment { value });
    }
    Ok(())
}

/// Checks a vCPU count.
pub fn check_cpus(value: u32) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_VCPUS {
        return Err(ConfigError::CpuCount {
            value,
            max: MAX_VCPUS,
        });
    }
    Ok(())
}

/// Longest `--timeout` (a year: beyond it the flag is surely a mistake).
pub const MAX_TIMEOUT_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses `--timeout`: seconds (`30`, `2.5`, `90s`) or minutes (`5m`).
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, ConfigError> {
    let bad = || ConfigError::Timeout(text.to_string());
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t.strip_suffix('s').unwrap_or(t), 1.0)
    };
    let secs = number.parse::<f64>().map_err(|_| bad())? * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > MAX_TIMEOUT_SECS {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Parses `--serial`.
pub fn parse_serial(text: &str) -> Result<SerialMode, ConfigError> {
    match text {
        "stdio" | "stdout" => Ok(SerialMode::Stdio),
        "stderr" => Ok(SerialMode::Stderr),
        "off" | "none" => Ok(SerialMode::Off),
        _ => match text.strip_prefix("file=") {
            Some(p) if !p.is_empty() => Ok(SerialMode::File(PathBuf::from(p))),
            _ => Err(ConfigError::Serial(text.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_in_seconds_or_minutes() {
        use std::time::Duration;
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout(" 5m "), Ok(Duration::from_secs(300)));
        for bad in ["", "0", "-1", "s", "1h", "nan", "inf", "1e30", "5 m"] {
            assert_eq!(
                parse_timeout(bad),
                Err(ConfigError::Timeout(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn reject_bad_memory_sizes() {
        assert_eq!(
            check_memory(1 << 20),
            Err(ConfigError::MemoryRange { value: 1 << 20 })
        );
        assert_eq!(
            check_memory(2 << 40),
            Err(ConfigError::MemoryRange { value: 2 << 40 })
        );
        assert_eq!(
            check_memory((64 << 20) + 1),
            Err(ConfigError::MemoryAlignment {
                value: (64 << 20) + 1
            })
        );
        assert_eq!(
            check_memory(1 << 20).unwrap_err().to_string(),
            "--memory 0x100000 bytes is out of range: give between 16M and 1T"
        );
        check_memory(512 << 20).unwrap();
    }

    #[test]
    fn reject_bad_cpu_counts() {
        assert_eq!(
            check_cpus(0).unwrap_err().to_string(),
            "--cpus 0: give between 1 and 64"
        );
        assert!(check_cpus(65).is_err());
        check_cpus(2).unwrap();
    }

    #[test]
    fn serial_forms() {
        assert!(matches!(parse_serial("stdio"), Ok(SerialMode::Stdio)));
        assert!(matches!(parse_serial("off"), Ok(SerialMode::Off)));
        assert!(matches!(parse_serial("stderr"), Ok(SerialMode::Stderr)));
        assert!(
            matches!(parse_serial("file=/tmp/x"), Ok(SerialMode::File(p)) if p == std::path::Path::new("/tmp/x"))
        );
    }

    #[test]
    fn reject_bad_serial_forms() {
        assert_eq!(
            parse_serial("file=").unwrap_err().to_string(),
            "--serial \"file=\": use stdio, off or file=PATH"
        );
        assert!(parse_serial("pty").is_err());
    }
}
