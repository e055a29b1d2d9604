//! The `stalewalk` command: parses the command line and runs it.
//!
//! Exit status of `run`: the guest's debug-exit value (0 after a guest
//! reset or power-off); 2 for a usage error; 124 when `--timeout` stopped
//! the guest; 125 when the VMM itself fails
//! (no KVM, bad kernel, triple fault, emulation failure, ...), with the
//! reason on standard error. `compare` exits 0 only when every policy's
//! guest exited 0. `replay` exits 0, 1 (an `expect` failed) or 2 (a
//! malformed scenario).

use std::process::ExitCode;

use clap::Parser;
use stalewalk::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => stalewalk::commands::run(&args),
        Command::Compare(args) => stalewalk::commands::compare(&args),
        Command::Replay(args) => stalewalk::commands::replay(&args),
        Command::Trace(cmd) => stalewalk_tools::trace::cli::trace_command(cmd),
        Command::Scenarios(args) => stalewalk::commands::scenarios(&args),
    }
}
