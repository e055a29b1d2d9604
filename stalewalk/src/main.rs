//! The `stalewalk` command: parses the command line and runs it.
//!
//! Exit status: one scheme for `run`, `compare` and `replay`
//! ([`stalewalk::exit`], also in `--help` and the README): 0 the
//! guest passed, 1 it failed, 2 usage error, 3 an output could not be
//! written, 124 timeout, 125 VMM error, 128+N signal N.

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
        Command::Completions(args) => stalewalk::commands::completions(&args),
        Command::GenDocs(args) => stalewalk::commands::gen_docs(&args),
    }
}
