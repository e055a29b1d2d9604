//! The command line (clap). Each subcommand has an argument struct; `run`'s
//! is [`RunArgs`], turned into a [`VmConfig`] by [`RunArgs::to_config`].
//! New flags go into `RunArgs` and, when they configure the VM, into
//! `VmConfig`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, KernelSource, SerialMode, VmConfig};
use crate::cpuid::CpuProfile;
use crate::platform::PlatformConfig;
use crate::seccomp::SeccompMode;

/// stalewalk: a KVM VMM with a virtual VT-d IOMMU that detects stale
/// paging-structure-cache walks.
#[derive(Debug, Parser)]
#[command(name = "stalewalk", version, about, after_help = crate::exit::HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Boot a guest (the built-in mini guest unless --kernel is given).
    Run(RunArgs),
    /// Run a guest scenario once per kpgtable_free= policy and show the
    /// reports side by side.
    Compare(CompareArgs),
    /// Drive the vIOMMU model through a scenario file, without KVM
    /// (language: docs/SCENARIOS.md).
    Replay(ReplayArgs),
    /// Read invalidation traces written by `run --trace`
    /// (format: docs/TRACE-FORMAT.md).
    #[command(subcommand)]
    Trace(stalewalk_tools::trace::cli::TraceCommand),
    /// List the mini guest's scenarios: what each shows, the device it
    /// needs, and its command-line knobs with their defaults.
    Scenarios(ScenariosArgs),
    /// Print a shell completion script on standard output (e.g.
    /// `stalewalk completions bash > /etc/bash_completion.d/stalewalk`).
    Completions(CompletionsArgs),
    /// Write the man pages and every completion script into DIR (how
    /// docs/generated/ is made: `cargo run --bin stalewalk -- gen-docs
    /// docs/generated`; a test checks it is current).
    #[command(hide = true)]
    GenDocs(GenDocsArgs),
}

/// Arguments of `stalewalk completions`.
#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Arguments of `stalewalk gen-docs`.
#[derive(Debug, Args, Clone)]
pub struct GenDocsArgs {
    /// Where to write `man1/*.1` and `completions/*`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// Arguments of `stalewalk scenarios`.
#[derive(Debug, Args, Clone)]
pub struct ScenariosArgs {
    /// Print the list as JSON on standard output.
    #[arg(long)]
    pub json: bool,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// For people (always printed on standard error at the end of a run).
    Text,
    /// For machines: JSON on standard output.
    Json,
    /// For CI: JUnit XML on standard output, one test case per verdict
    /// and per expectation (`run` and `compare`).
    Junit,
}

/// Arguments of `stalewalk replay`.
#[derive(Debug, Args, Clone)]
pub struct ReplayArgs {
    /// The scenario file.
    pub file: PathBuf,
    /// The report on standard output: text (the summary), json, or junit
    /// (JUnit XML: a test case per `expect` line).
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// Also list every `dma`/`walk` line's outcome (output address, page
    /// size, rights, or fault reason): an `outcomes` array in the JSON
    /// report, one line each in the summary.
    #[arg(long)]
    pub outcomes: bool,
    /// --trace and --trace-events.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// `--trace PATH` and `--trace-events KINDS`, for `run`, `compare` and
/// `replay`.
#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Write a trace (JSON Lines, docs/TRACE-FORMAT.md) to PATH.
    #[arg(long = "trace", value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Event kinds to trace, comma separated.
    #[arg(
        long = "trace-events",
        value_name = "inv,walk,fault,prq,stale,hint,serial",
        default_value = "inv,walk,fault,prq,stale,hint,serial"
    )]
    pub events: String,
}

/// Arguments of `stalewalk compare`.
#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// Policies to run, in order (each adds kpgtable_free=POLICY to the
    /// guest command line).
    #[arg(long, value_delimiter = ',', default_value = "sync,deferred,eager")]
    pub policies: Vec<String>,
    /// Show the guests' serial output too.
    #[arg(long)]
    pub show_serial: bool,
    /// Everything `run` takes, applied to every policy's run: --scenario
    /// NAME is required; --report json prints all reports as one JSON
    /// object; --report-file writes that object to a file.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Arguments of `stalewalk run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Kernel to boot: ELF (PVH note or 64-bit entry) or bzImage.
    /// Without it, the built-in mini guest boots.
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Guest kernel command line.
    #[arg(long, value_name = "STR", default_value = "")]
    pub cmdline: String,
    /// Guest memory size (K, M, G, T suffixes; a plain number is MiB).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub memory: String,
    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,
    /// CPUID profile: emulation-safe hides what this KVM's instruction
    /// emulator cannot run; host passes KVM's supported CPUID through.
    #[arg(long, value_enum, default_value_t = CpuProfile::EmulationSafe)]
    pub cpu_profile: CpuProfile,
    /// Expose 5-level paging (LA57) to the guest in the emulation-safe
    /// profile.
    #[arg(long)]
    pub la57: bool,
    /// Guest console output (COM1 and virtio-console): stdio (standard
    /// output), stderr, off or file=PATH. Default: stdio, or stderr with
    /// --report json (standard output then holds the JSON alone).
    #[arg(long, value_name = "stdio|stderr|file=PATH|off")]
    pub serial: Option<String>,
    /// Guest scenario to run (appends scenario=NAME to the command line).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// Print what the VMM does on standard error.
    #[arg(short, long)]
    pub verbose: bool,
    /// The virtual VT-d IOMMU (DMAR unit at 0xfed90000).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub viommu: OnOff,
    /// vIOMMU cache policy: adversarial (cache every present non-leaf entry
    /// of every walk, never evict), lru:N (N entries per cache) or none.
    #[arg(
        long,
        value_name = "adversarial|lru:N|none",
        default_value = "adversarial"
    )]
    pub viommu_cache: String,
    /// Stale-walk checker: re-walk memory after every cache hit (all), one
    /// in a sample (sampled), or never (off).
    #[arg(long, value_name = "all|sampled|off", default_value = "all")]
    pub viommu_check: String,
    /// First-stage paging levels the vIOMMU supports (5 adds FL5LP).
    #[arg(long, value_name = "4|5", default_value = "4")]
    pub viommu_levels: String,
    /// Add SVA DMA test devices at 00:04.0, 00:05.0, ... (`--sva-dev` adds
    /// one; `--sva-dev N` adds N).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "1")]
    pub sva_dev: Option<u8>,
    /// Add a device by name (repeatable): sva-dma.
    #[arg(long = "device", value_name = "NAME")]
    pub devices: Vec<String>,
    /// A raw disk image for virtio-blk at 00:02.0; `,ro` makes it read-only.
    #[arg(long, value_name = "PATH[,ro]")]
    pub disk: Option<String>,
    /// Add virtio-console at 00:01.0 (output where --serial sends COM1's).
    #[arg(long)]
    pub virtio_console: bool,
    /// Add virtio-rng at 00:03.0.
    #[arg(long)]
    pub virtio_rng: bool,
    /// Write each ACPI table as DIR/<SIG>.dat, exactly as the guest sees it.
    #[arg(long, value_name = "DIR")]
    pub dump_acpi: Option<PathBuf>,
    /// Also print the end-of-run report on standard output as JSON or as
    /// JUnit XML (the text report is always printed on standard error).
    #[arg(long = "report", value_enum, value_name = "text|json|junit")]
    pub report_format: Option<ReportFormat>,
    /// Write the end-of-run report as JSON to PATH.
    #[arg(long, value_name = "PATH")]
    pub report_file: Option<PathBuf>,
    /// --trace and --trace-events.
    #[command(flatten)]
    pub trace: TraceArgs,
    /// seccomp filters per VMM thread (vCPU, VM, trace writer): on kills
    /// the VMM on a syscall off its thread's list, log only has the kernel
    /// log it, off installs none (docs/SECURITY.md).
    #[arg(long, value_enum, default_value_t = SeccompMode::On)]
    pub seccomp: SeccompMode,
    /// Stop the guest after this much wall time (30, 2.5, 90s, 5m): the
    /// report and trace are written and the exit status is 124.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,
    /// Instructions KVM's emulator cannot run (int3, popcnt, BMI, movbe,
    /// cmpxchg16b, fwait, x87/SSE control): on runs them in the VMM, off
    /// stops the guest (docs/EMULATION.md).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub emulate_in_vmm: OnOff,
}

/// A switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl RunArgs {
    /// The platform part of the configuration (`--viommu*`, `--sva-dev`,
    /// `--device`, `--dump-acpi`).
    pub fn platform_config(&self) -> Result<PlatformConfig, ConfigError> {
        let viommu = match self.viommu {
            OnOff::Off => None,
            OnOff::On => {
                let bad = |flag: &'static str, value: &str, e: viommu::config::ConfigError| {
                    ConfigError::Viommu {
                        flag,
                        value: value.to_string(),
                        reason: e.to_string(),
                    }
                };
                Some(viommu::Config {
                    cache: self
                        .viommu_cache
                        .parse()
                        .map_err(|e| bad("--viommu-cache", &self.viommu_cache, e))?,
                    check: self
                        .viommu_check
                        .parse()
                        .map_err(|e| bad("--viommu-check", &self.viommu_check, e))?,
                    levels: self
                        .viommu_levels
                        .parse()
                        .map_err(|e| bad("--viommu-levels", &self.viommu_levels, e))?,
                    ..viommu::Config::default()
                })
            }
        };
        let mut sva_devices = u32::from(self.sva_dev.unwrap_or(0));
        for d in &self.devices {
            match d.as_str() {
                "sva-dma" => sva_devices += 1,
                other => return Err(ConfigError::Device(other.to_string())),
            }
        }
        // A scenario gets the device it needs unless told otherwise.
        let scenario = self.scenario.as_deref().and_then(crate::scenarios::find);
        if let Some(s) = scenario {
            if s.needs == crate::scenarios::Needs::Sva
                && self.sva_dev.is_none()
                && self.devices.is_empty()
            {
                sva_devices = 1;
            }
            if s.needs == crate::scenarios::Needs::Disk && self.disk.is_none() {
                return Err(ConfigError::ScenarioNeedsDisk {
                    scenario: s.name.to_string(),
                });
            }
        }
        let sva_devices = u8::try_from(sva_devices)
            .ok()
            .filter(|&n| n <= crate::platform::MAX_SVA_DEVICES)
            .ok_or(ConfigError::SvaCount(sva_devices))?;
        let disk = match &self.disk {
            None => None,
            Some(text) => {
                let (path, read_only) = match text.rsplit_once(',') {
                    Some((p, "ro")) => (p, true),
                    Some((p, "rw")) => (p, false),
                    _ => (text.as_str(), false),
                };
                if path.is_empty() {
                    return Err(ConfigError::Disk(text.clone()));
                }
                Some(crate::platform::DiskConfig {
                    path: PathBuf::from(path),
                    read_only,
                })
            }
        };
        Ok(PlatformConfig {
            viommu,
            sva_devices,
            dump_acpi: self.dump_acpi.clone(),
            disk,
            virtio_console: self.virtio_console,
            virtio_rng: self.virtio_rng,
        })
    }

    /// The VM configuration these arguments describe.
    pub fn to_config(&self) -> Result<VmConfig, ConfigError> {
        let memory = crate::size::parse_size(&self.memory)?;
        config::check_memory(memory)?;
        config::check_cpus(self.cpus)?;
        let mut cmdline = self.cmdline.trim().to_string();
        if let Some(s) = &self.scenario {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::Scenario(s.clone()));
            }
            if !cmdline.is_empty() {
                cmdline.push(' ');
            }
            cmdline.push_str("scenario=");
            cmdline.push_str(s);
        }
        Ok(VmConfig {
            kernel: self
                .kernel
                .clone()
                .map_or(KernelSource::MiniGuest, KernelSource::Path),
            initrd: self.initrd.clone(),
            cmdline,
            memory,
            cpus: self.cpus,
            cpu_profile: self.cpu_profile,
            la57: self.la57,
            serial: match &self.serial {
                Some(s) => config::parse_serial(s)?,
                None if matches!(
                    self.report_format,
                    Some(ReportFormat::Json | ReportFormat::Junit)
                ) =>
                {
                    SerialMode::Stderr
                }
                None => SerialMode::Stdio,
            },
            verbose: self.verbose,
            platform: self.platform_config()?,
            seccomp: self.seccomp,
            timeout: self
                .timeout
                .as_deref()
                .map(config::parse_timeout)
                .transpose()?,
            emulate_in_vmm: self.emulate_in_vmm == OnOff::On,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> Result<RunArgs, clap::Error> {
        let mut v = vec!["stalewalk", "run"];
        v.extend_from_slice(args);
        Cli::try_parse_from(v).map(|c| match c.command {
            Command::Run(r) => r,
            other => panic!("not run: {other:?}"),
        })
    }

    #[test]
    fn defaults_boot_the_mini_guest() {
        let c = run_args(&[]).unwrap().to_config().unwrap();
        assert_eq!(c.kernel, KernelSource::MiniGuest);
        assert_eq!(c.memory, 256 << 20);
        assert_eq!(c.cpus, 1);
        assert_eq!(c.cpu_profile, CpuProfile::EmulationSafe);
        assert_eq!(c.cmdline, "");
    }

    #[test]
    fn scenario_is_appended_to_the_command_line() {
        let c = run_args(&[
            "--cmdline",
            "a=1",
            "--scenario",
            "smoke",
            "--memory",
            "2G",
            "--cpus",
            "2",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert_eq!(c.cmdline, "a=1 scenario=smoke");
        assert_eq!(c.memory, 2 << 30);
        assert_eq!(c.cpus, 2);
    }

    #[test]
    fn reject_bad_values() {
        let e = run_args(&["--memory", "lots"])
            .unwrap()
            .to_config()
            .unwrap_err();
        assert!(
            e.to_string().starts_with("--memory: invalid size \"lots\""),
            "{e}"
        );
        let e = run_args(&["--cpus", "0"]).unwrap().to_config().unwrap_err();
        assert_eq!(e.to_string(), "--cpus 0: give between 1 and 64");
        let e = run_args(&["--scenario", "a b"])
            .unwrap()
            .to_config()
            .unwrap_err();
        assert!(matches!(e, ConfigError::Scenario(_)));
        assert!(run_args(&["--cpus", "-1"]).is_err());
        assert!(run_args(&["--cpu-profile", "fast"]).is_err());
    }
}
