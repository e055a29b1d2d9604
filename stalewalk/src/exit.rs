//! The exit statuses of `run`, `compare` and `replay`: one scheme, in
//! `--help` and the README. The guest's own status (its debug-exit value)
//! is in the report (`exit_status`), never the process's exit status, so
//! it cannot collide with these.

/// The guest passed (its status 0), or `replay`'s expectations held.
pub const PASS: u8 = 0;
/// The guest failed: a non-zero status or `verdict=fail` (`compare`:
/// in any policy); `replay`: an `expect` failed.
pub const FAILED: u8 = 1;
/// A usage error: a bad flag or value, an output that names an input
/// or another output; `replay`: a malformed scenario. Nothing ran.
pub const USAGE: u8 = 2;
/// An output could not be written (report file, trace, serial file,
/// standard output or error); the other outputs were still written.
pub const OUTPUT: u8 = 3;
/// `--timeout` stopped the guest (as timeout(1)).
pub const TIMEOUT: u8 = 124;
/// The VMM failed (no KVM, bad kernel, triple fault, emulation
/// failure, disk in use, ...).
pub const VMM_ERROR: u8 = 125;
/// 128 + N: signal N (SIGHUP 129, SIGINT 130, SIGQUIT 131, SIGTERM
/// 143) stopped the guest, as a shell reports a killed command.
pub fn signal(n: i32) -> u8 {
    u8::try_from(128 + n.clamp(0, 127)).unwrap_or(VMM_ERROR)
}

/// Of two statuses, the one that says more: a VMM error, then a
/// signal, the timeout, a usage error, an output failure, a failed
/// guest, a pass.
pub fn worst(a: u8, b: u8) -> u8 {
    fn rank(s: u8) -> u8 {
        match s {
            PASS => 0,
            FAILED => 1,
            OUTPUT => 2,
            USAGE => 3,
            TIMEOUT => 4,
            VMM_ERROR => 6,
            _ => 5,
        }
    }
    if rank(b) > rank(a) { b } else { a }
}

/// The text for `--help` and the README.
pub const HELP: &str = "Exit status: 0 the guest passed (status 0); 1 the guest failed \
(non-zero status or verdict=fail; replay: an expect failed); 2 usage error (nothing ran); 3 an \
output could not be written (the others were); 124 --timeout stopped the guest; 125 the VMM \
failed; 128+N signal N stopped the guest (129 SIGHUP, 130 SIGINT, 131 SIGQUIT, 143 SIGTERM). \
The guest's own status is the report's exit_status.";
