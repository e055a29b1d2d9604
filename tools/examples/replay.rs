//! `cargo run -p stalewalk-tools --example replay -- FILE [--report json]`:
//! the replay command without the rest of the `stalewalk` binary, for
//! working on the model or on scenarios.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut file: Option<PathBuf> = None;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--report" => match args.next().as_deref() {
                Some("json") => json = true,
                _ => {
                    eprintln!("usage: replay FILE [--report json]");
                    return ExitCode::from(2);
                }
            },
            _ if file.is_none() => file = Some(PathBuf::from(arg)),
            _ => {
                eprintln!("usage: replay FILE [--report json]");
                return ExitCode::from(2);
            }
        }
    }
    match file {
        Some(file) => stalewalk_tools::replay_command(&file, json),
        None => {
            eprintln!("usage: replay FILE [--report json]");
            ExitCode::from(2)
        }
    }
}
