//! The stalewalk VMM as a library: the `stalewalk` command (its own crate,
//! with the CLI and the tools' subcommands) is a front end over it, and the
//! integration tests drive it directly. It does not depend on the tools
//! crate: `replay` and `trace` are the command's business.
//!
//! - [`config::VmConfig`]: everything a run is configured by;
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
pub mod config;
pub mod cpuid;
pub mod disk_lock;
pub mod emulate;
pub mod event_loop;
pub mod guest;
pub mod gva;
pub mod kvm_vm;
pub mod linux_guest;
pub mod loader;
pub mod memory;
pub mod platform;
pub mod report;
pub mod scenarios;
pub mod seccomp;
pub mod serial_out;
pub mod size;
pub mod vcpu;
pub mod vm;

pub use config::VmConfig;
pub use vm::{RunHooks, RunOutcome, RunResult, VmError, run, run_with_report};
