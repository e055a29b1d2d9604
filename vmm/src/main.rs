//! The `stalewalk` command: parses the command line and runs it.
//!
//! Exit status of `run`: the guest's debug-exit value (0 after a guest
//! reset); 2 for a usage error; 125 when the VMM itself fails (no KVM,
//! bad kernel, triple fault, emulation failure, ...), with the reason on
//! standard error.

use std::process::ExitCode;

use clap::Parser;
use stalewalk::cli::{Cli, Command};

/// Exit status when the VMM fails (as opposed to the guest's own status).
const EXIT_VMM_ERROR: u8 = 125;
/// Exit status for a usage error (as clap uses).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            let cfg = match args.to_config() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("stalewalk: error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            match stalewalk::run(&cfg) {
                Ok(outcome) => ExitCode::from(outcome.exit_status),
                Err(e) => {
                    eprintln!("stalewalk: error: {e}");
                    ExitCode::from(EXIT_VMM_ERROR)
                }
            }
        }
    }
}
