//! The `stalewalk` command as a library: the command line ([`cli`]) and the
//! subcommands ([`commands`]) over the VMM library (`stalewalk-vmm`: `run`,
//! `compare`) and the tools library (`stalewalk-tools`: `replay`, `trace`).
//! The binary (`src/main.rs`) only parses and dispatches.
//!
//! The VMM's modules the CLI builds on are re-exported here under their own
//! names, so the CLI reads as it did inside the VMM crate.

pub mod cli;
pub mod commands;
pub mod exit;
pub mod junit;
pub mod outputs;
pub mod progress;

pub use stalewalk_vmm::{
    config, cpuid, event_loop, platform, report, scenarios, seccomp, size, vm,
};
