//! The stalewalk VMM as a library: the `stalewalk` binary is a thin
//! front end over it, and the integration tests drive it directly.
//!
//! - [`cli`]: the command line (clap) and [`config::VmConfig`] built from it;
//! - [`vm::run`]: one VM from start to end;
//! - [`memory`], [`loader`], [`boot`], [`cpuid`]: guest memory, kernel
//!   loading and boot information, vCPU state, CPUID profiles;
//! - [`event_loop`]: what ends a run (signals, `--timeout`, a vCPU
//!   stopped) as events; [`serial_out`]: guest console output that never
//!   blocks a vCPU;
//! - [`vcpu`]: the per-vCPU run loop; [`gva`]: guest page walks for
//!   diagnostics and emulation; [`emulate`]: instructions the VMM runs when
//!   KVM's emulator cannot; [`guest`]: the built-in mini guest images.

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cpuid;
pub mod emulate;
pub mod event_loop;
pub mod guest;
pub mod gva;
pub mod junit;
pub mod linux_guest;
pub mod loader;
pub mod memory;
pub mod outputs;
pub mod platform;
pub mod progress;
pub mod report;
pub mod scenarios;
pub mod seccomp;
pub mod serial_out;
pub mod size;
pub mod vcpu;
pub mod vm;

pub use config::VmConfig;
pub use vm::{RunHooks, RunOutcome, RunResult, VmError, run, run_with_report};
