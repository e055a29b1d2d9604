//! The stalewalk VMM as a library: the `stalewalk` binary is a thin
//! front end over it, and the integration tests drive it directly.
//!
//! - [`cli`]: the command line (clap) and [`config::VmConfig`] built from it;
//! - [`vm::run`]: one VM from start to end;
//! - [`memory`], [`loader`], [`boot`], [`cpuid`]: guest memory, kernel
//!   loading and boot information, vCPU state, CPUID profiles;
//! - [`vcpu`]: the per-vCPU run loop; [`gva`]: guest page walks for
//!   diagnostics; [`guest`]: the built-in mini guest images.

pub mod acpi;
pub mod boot;
pub mod cli;
pub mod commands;
pub mod config;
pub mod cpuid;
pub mod guest;
pub mod gva;
pub mod kvm_vm;
pub mod loader;
pub mod memory;
pub mod platform;
pub mod report;
pub mod seccomp;
pub mod size;
pub mod vcpu;
pub mod vm;

pub use config::VmConfig;
pub use vm::{RunHooks, RunOutcome, RunResult, VmError, run, run_with_report};
