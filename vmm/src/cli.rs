//! The command line (clap). Each subcommand has an argument struct; `run`'s
//! is [`RunArgs`], turned into a [`VmConfig`] by [`RunArgs::to_config`].
//! New flags go into `RunArgs` and, when they configure the VM, into
//! `VmConfig`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, KernelSource, VmConfig};
use crate::cpuid::CpuProfile;

/// stalewalk: a KVM VMM with a virtual VT-d IOMMU that detects stale
/// paging-structure-cache walks.
#[derive(Debug, Parser)]
#[command(name = "stalewalk", version, about)]
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
    /// Serial output: stdio, off or file=PATH.
    #[arg(long, value_name = "stdio|file=PATH|off", default_value = "stdio")]
    pub serial: String,
    /// Guest scenario to run (appends scenario=NAME to the command line).
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
    /// Print what the VMM does on standard error.
    #[arg(short, long)]
    pub verbose: bool,
}

impl RunArgs {
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
            serial: config::parse_serial(&self.serial)?,
            verbose: self.verbose,
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
