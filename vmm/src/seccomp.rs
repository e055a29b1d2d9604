//! seccomp filters per VMM thread kind: what each thread may ask of the
//! host kernel once the guest can reach it.
//!
//! A guest drives the vCPU threads directly (every exit runs device code
//! there), the trace writer and the serial writer indirectly (through the
//! events and the console output it causes);
//! the VM thread (the "vm" thread [`crate::vm::run_with_report`] starts for
//! each VM) sets the VM up, starts the vCPUs, waits for them, stops them
//! and builds the report. Each kind gets an allow-list built from what it
//! was seen to call (strace of `run`, `compare`, `--trace`,
//! `--report-file`, `--serial file=`, virtio devices, and the integration
//! tests); anything else ends the process with `SIGSYS` (`--seccomp on`),
//! is allowed and logged by the kernel (`log`, the `SECCOMP_RET_LOG`
//! action, visible in the audit log / `dmesg`), or is not filtered at all
//! (`off`). `docs/SECURITY.md` lists the policy.
//!
//! A filter cannot be removed from a thread, and threads inherit their
//! creator's. The VM thread installs its filter once set-up is done, just
//! before it starts the vCPU threads; they inherit it and add their own, so
//! its list holds theirs (a unit test checks that) and what starting a
//! thread takes. The thread ends with the run, so the caller's thread (the
//! binary's main thread, a library user's, a test's) is never filtered.
//! What no list holds is what an escaped guest would want first: sockets,
//! `execve`, `ptrace`, `mount`, module and BPF loading, namespaces,
//! keyrings, `process_vm_*`, `kexec`, and more; opening a file is refused
//! with `EACCES` (everything is opened during set-up).

use std::collections::BTreeMap;
use std::fmt;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What `--seccomp` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SeccompMode {
    /// Enforce: a syscall off the list kills the process with `SIGSYS`.
    #[default]
    On,
    /// Audit: a syscall off the list is allowed and logged by the kernel.
    Log,
    /// No filters.
    Off,
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SeccompMode::On => "on",
            SeccompMode::Log => "log",
            SeccompMode::Off => "off",
        })
    }
}

/// The kinds of VMM thread, each with its own filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// A vCPU thread: `KVM_RUN` and the device emulation behind each exit.
    Vcpu,
    /// The VM thread: waits for the vCPUs, stops them, writes the report
    /// (and, under `compare`, sets up the next VM).
    Vm,
    /// The trace writer thread: serializes events into the trace file.
    TraceWriter,
    /// The serial writer thread: drains guest console output into standard
    /// output, standard error or a file (`serial_out`).
    SerialWriter,
}

impl ThreadKind {
    /// Every kind.
    pub const ALL: [ThreadKind; 4] = [
        ThreadKind::Vcpu,
        ThreadKind::Vm,
        ThreadKind::TraceWriter,
        ThreadKind::SerialWriter,
    ];

    /// Its name in messages and in `STALEWALK_SECCOMP_SELFTEST`.
    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Vm => "vm",
            ThreadKind::TraceWriter => "trace-writer",
            ThreadKind::SerialWriter => "serial-writer",
        }
    }
}

impl fmt::Display for ThreadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors building or installing a filter (host errors, never
/// guest-caused).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter did not compile (a rule or size problem: a bug here).
    #[error("building the seccomp filter for {kind} threads: {source}")]
    Build {
        /// Which filter.
        kind: ThreadKind,
        /// Why.
        source: seccompiler::BackendError,
    },
    /// The kernel refused the filter (no seccomp support, or a limit).
    #[error("installing the seccomp filter for a {kind} thread: {source}")]
    Install {
        /// Which filter.
        kind: ThreadKind,
        /// Why.
        source: seccompiler::Error,
    },
}

/// Environment variable naming a thread kind ("vcpu", "vm",
/// "trace-writer", "serial-writer") that calls a forbidden syscall (`socket`) right after
/// its filter is installed: how the tests show the filter is in place in
/// the real threads. Not for users.
pub const SELFTEST_ENV: &str = "STALEWALK_SECCOMP_SELFTEST";

/// The `ioctl` group of KVM requests (`KVMIO`).
const KVMIO: u64 = 0xae;

/// An `_IOC` request number of the KVM group.
const fn kvm_ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}
const IOC_NONE: u64 = 0;
const IOC_WRITE: u64 = 1;
const IOC_READ: u64 = 2;

/// `KVM_RUN`.
pub const KVM_RUN: u64 = kvm_ioc(IOC_NONE, 0x80, 0);
/// `KVM_GET_REGS` (the RIP in error reports).
pub const KVM_GET_REGS: u64 = kvm_ioc(IOC_READ, 0x81, size_of::<kvm_bindings::kvm_regs>());
/// `KVM_SET_REGS` (RIP and results of an instruction the VMM emulated).
pub const KVM_SET_REGS: u64 = kvm_ioc(IOC_WRITE, 0x82, size_of::<kvm_bindings::kvm_regs>());
/// `KVM_GET_SREGS` (the paging mode in error reports and emulation).
pub const KVM_GET_SREGS: u64 = kvm_ioc(IOC_READ, 0x83, size_of::<kvm_bindings::kvm_sregs>());
/// `KVM_GET_XSAVE` (x87/SSE control state for emulated `fnstsw` & co.).
pub const KVM_GET_XSAVE: u64 = kvm_ioc(IOC_READ, 0xa4, size_of::<kvm_bindings::kvm_xsave>());
/// `KVM_SET_XSAVE` (emulated `fninit`, `fldcw`, `ldmxcsr`).
pub const KVM_SET_XSAVE: u64 = kvm_ioc(IOC_WRITE, 0xa5, size_of::<kvm_bindings::kvm_xsave>());
/// `KVM_GET_VCPU_EVENTS` (before injecting an exception).
pub const KVM_GET_VCPU_EVENTS: u64 =
    kvm_ioc(IOC_READ, 0x9f, size_of::<kvm_bindings::kvm_vcpu_events>());
/// `KVM_SET_VCPU_EVENTS` (#BP for `int3`, and the faults the emulated
/// instructions raise).
pub const KVM_SET_VCPU_EVENTS: u64 =
    kvm_ioc(IOC_WRITE, 0xa0, size_of::<kvm_bindings::kvm_vcpu_events>());
/// `KVM_IRQ_LINE` (level interrupts from devices).
pub const KVM_IRQ_LINE: u64 = kvm_ioc(IOC_WRITE, 0x61, size_of::<kvm_bindings::kvm_irq_level>());
/// `KVM_IRQ_LINE_STATUS`.
pub const KVM_IRQ_LINE_STATUS: u64 = kvm_ioc(
    IOC_READ | IOC_WRITE,
    0x67,
    size_of::<kvm_bindings::kvm_irq_level>(),
);
/// `KVM_SIGNAL_MSI` (device MSIs).
pub const KVM_SIGNAL_MSI: u64 = kvm_ioc(IOC_WRITE, 0xa5, size_of::<kvm_bindings::kvm_msi>());

/// The ioctls a vCPU thread makes (the register, FPU and event ones for
/// the instructions the VMM emulates, `crate::emulate`).
pub const VCPU_IOCTLS: [u64; 11] = [
    KVM_RUN,
    KVM_GET_REGS,
    KVM_SET_REGS,
    KVM_GET_SREGS,
    KVM_GET_XSAVE,
    KVM_SET_XSAVE,
    KVM_GET_VCPU_EVENTS,
    KVM_SET_VCPU_EVENTS,
    KVM_IRQ_LINE,
    KVM_IRQ_LINE_STATUS,
    KVM_SIGNAL_MSI,
];

/// Every thread: memory, locks, signals, time, thread exit, and writing
/// diagnostics to standard error.
const COMMON: &[i64] = &[
    libc::SYS_brk,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_close,
    libc::SYS_exit,
    libc::SYS_exit_group,
    // Debug builds of std check that a descriptor is open (F_GETFD) before
    // closing it, e.g. when a vCPU thread drops its vCPU fd.
    libc::SYS_fcntl,
    libc::SYS_futex,
    libc::SYS_getpid,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_madvise,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_munmap,
    libc::SYS_nanosleep,
    // Let through this filter only to be refused with EACCES by the
    // file filter ([`NO_FILES`]): glibc opens /sys/devices/system/cpu/online
    // when a thread's first allocation makes a new malloc arena, and copes
    // with a refusal; being killed for it would not be graceful.
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_restart_syscall,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_sigaltstack,
    // abort() and panics that abort raise a signal at themselves.
    libc::SYS_tgkill,
    libc::SYS_write,
    libc::SYS_writev,
];

/// vCPU threads, beyond [`COMMON`] (and `ioctl` limited to
/// [`VCPU_IOCTLS`]): device I/O behind exits — serial and virtio-console
/// output, the serial interrupt eventfd, virtio-blk image reads and writes,
/// virtio-rng reads.
const VCPU: &[i64] = &[
    libc::SYS_fdatasync,
    libc::SYS_fsync,
    libc::SYS_lseek,
    libc::SYS_pread64,
    libc::SYS_preadv,
    libc::SYS_pwrite64,
    libc::SYS_pwritev,
    libc::SYS_read,
    libc::SYS_readv,
];

/// The trace writer, beyond [`COMMON`]: flushing the trace file.
const TRACE_WRITER: &[i64] = &[libc::SYS_fdatasync, libc::SYS_fsync, libc::SYS_lseek];

/// The serial writer needs nothing beyond [`COMMON`] (`write`, `futex`):
/// its output was opened before it started.
const SERIAL_WRITER: &[i64] = &[];

/// The VM thread, beyond [`COMMON`] and what the threads it starts need
/// ([`VCPU`], [`TRACE_WRITER`], `ioctl` limited to [`VCPU_IOCTLS`]):
/// starting the vCPU threads, whose start-up calls run under this filter
/// until they install their own; its event loop (`event_loop`: epoll on
/// the signal eventfd, the `--timeout` timerfd and the vCPU-stopped
/// eventfd, each read when ready).
const VM: &[i64] = &[
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_wait,
    libc::SYS_clone,
    libc::SYS_clone3,
    libc::SYS_prctl,
    libc::SYS_rseq,
    // New vCPU threads install their own (narrower) filter under this one.
    libc::SYS_seccomp,
    libc::SYS_set_robust_list,
];

/// The syscalls a kind may make (`ioctl` included where its requests are
/// limited), sorted.
pub fn allowed_syscalls(kind: ThreadKind) -> Vec<i64> {
    let mut v: Vec<i64> = COMMON.to_vec();
    match kind {
        ThreadKind::Vcpu => {
            v.extend_from_slice(VCPU);
            v.push(libc::SYS_ioctl);
        }
        ThreadKind::TraceWriter => v.extend_from_slice(TRACE_WRITER),
        ThreadKind::SerialWriter => v.extend_from_slice(SERIAL_WRITER),
        ThreadKind::Vm => {
            v.extend_from_slice(VCPU);
            v.extend_from_slice(TRACE_WRITER);
            v.extend_from_slice(VM);
            v.push(libc::SYS_ioctl);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

fn ioctl_rules(kind: ThreadKind) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let request = |op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(1, SeccompCmpArgLen::Dword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
    };
    match kind {
        // The VM thread makes none itself; its vCPU threads start under it.
        ThreadKind::Vcpu | ThreadKind::Vm => VCPU_IOCTLS
            .iter()
            .map(|&r| request(SeccompCmpOp::Eq, r))
            .collect(),
        ThreadKind::TraceWriter | ThreadKind::SerialWriter => Ok(Vec::new()),
    }
}

/// Syscalls every filtered thread gets `EACCES` for: no thread opens a
/// file once its filter is on (everything is opened during set-up).
pub const NO_FILES: [i64; 3] = [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2];

/// The BPF programs for `kind` under `mode`, in the order to install them
/// (none for `off`): the file filter (every syscall allowed but
/// [`NO_FILES`], answered `EACCES`), then the allow-list. The kernel applies
/// the stricter verdict of the two.
pub fn programs(kind: ThreadKind, mode: SeccompMode) -> Result<Vec<BpfProgram>, SeccompError> {
    let mismatch = match mode {
        SeccompMode::Off => return Ok(Vec::new()),
        SeccompMode::On => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
    };
    let build = |source| SeccompError::Build { kind, source };
    let no_files: BTreeMap<i64, Vec<SeccompRule>> =
        NO_FILES.iter().map(|&nr| (nr, Vec::new())).collect();
    let no_files = SeccompFilter::new(
        no_files,
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(libc::EACCES).unwrap_or(1)),
        TargetArch::x86_64,
    )
    .map_err(build)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in allowed_syscalls(kind) {
        let r = if nr == libc::SYS_ioctl {
            ioctl_rules(kind).map_err(build)?
        } else {
            Vec::new()
        };
        rules.insert(nr, r);
    }
    let allow = SeccompFilter::new(rules, mismatch, SeccompAction::Allow, TargetArch::x86_64)
        .map_err(build)?;
    Ok(vec![
        BpfProgram::try_from(no_files).map_err(build)?,
        BpfProgram::try_from(allow).map_err(build)?,
    ])
}

/// Installs the filter for `kind` on the calling thread (nothing for
/// `off`); it stays until the thread ends. With [`SELFTEST_ENV`] naming
/// `kind`, then calls `socket(2)`, which the `on` filter answers by killing
/// the process.
pub fn install(kind: ThreadKind, mode: SeccompMode) -> Result<(), SeccompError> {
    let selftest = std::env::var(SELFTEST_ENV).is_ok_and(|v| v == kind.name());
    for prog in programs(kind, mode)? {
        seccompiler::apply_filter(&prog)
            .map_err(|source| SeccompError::Install { kind, source })?;
    }
    if selftest {
        forbidden_syscall();
    }
    Ok(())
}

/// Calls `socket(AF_UNIX, SOCK_STREAM)` (on no list) and closes what it
/// got, if anything.
pub fn forbidden_syscall() {
    // SAFETY: socket(2) takes no pointers; a returned descriptor is ours
    // and closed at once.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        if fd >= 0 {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_IRQ_LINE, 0x4008_ae61);
        assert_eq!(KVM_IRQ_LINE_STATUS, 0xc008_ae67);
        assert_eq!(KVM_SIGNAL_MSI, 0x4020_aea5);
        assert_eq!(KVM_SET_REGS, 0x4090_ae82);
        assert_eq!(KVM_GET_XSAVE, 0x9000_aea4);
        assert_eq!(KVM_SET_XSAVE, 0x5000_aea5);
        assert_eq!(KVM_GET_VCPU_EVENTS, 0x8040_ae9f);
        assert_eq!(KVM_SET_VCPU_EVENTS, 0x4040_aea0);
    }

    #[test]
    fn vcpu_ioctls_are_exactly_what_the_run_loop_and_emulation_need() {
        // The run loop and its device exits, plus the emulation's state
        // reads and writes; nothing that changes the VM or memory layout.
        let want = [
            KVM_RUN,
            KVM_GET_REGS,
            KVM_SET_REGS,
            KVM_GET_SREGS,
            KVM_GET_XSAVE,
            KVM_SET_XSAVE,
            KVM_GET_VCPU_EVENTS,
            KVM_SET_VCPU_EVENTS,
            KVM_IRQ_LINE,
            KVM_IRQ_LINE_STATUS,
            KVM_SIGNAL_MSI,
        ];
        let mut got = VCPU_IOCTLS.to_vec();
        got.sort_unstable();
        let mut want = want.to_vec();
        want.sort_unstable();
        assert_eq!(got, want);
        // Not KVM_SET_SREGS (0x4138ae84): a guest-controlled path must not
        // rewrite control registers or segments.
        assert!(!VCPU_IOCTLS.contains(&0x4138_ae84));
    }

    #[test]
    fn vm_list_covers_the_threads_it_creates() {
        let vm = allowed_syscalls(ThreadKind::Vm);
        for kind in [ThreadKind::Vcpu, ThreadKind::TraceWriter] {
            for nr in allowed_syscalls(kind) {
                assert!(vm.contains(&nr), "{kind} allows {nr}, the VM thread not");
            }
        }
    }

    #[test]
    fn only_the_vm_thread_waits_on_the_event_loop() {
        let vm = allowed_syscalls(ThreadKind::Vm);
        for nr in [
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_ctl,
        ] {
            assert!(vm.contains(&nr), "the VM thread cannot make syscall {nr}");
            for kind in [
                ThreadKind::Vcpu,
                ThreadKind::TraceWriter,
                ThreadKind::SerialWriter,
            ] {
                assert!(!allowed_syscalls(kind).contains(&nr), "{kind} allows {nr}");
            }
        }
    }

    #[test]
    fn serial_writer_only_writes() {
        let w = allowed_syscalls(ThreadKind::SerialWriter);
        assert!(w.contains(&libc::SYS_write) && w.contains(&libc::SYS_futex));
        for nr in [
            libc::SYS_ioctl,
            libc::SYS_read,
            libc::SYS_pread64,
            libc::SYS_clone,
        ] {
            assert!(!w.contains(&nr), "serial writer allows {nr}");
        }
    }

    #[test]
    fn no_list_holds_what_an_escape_wants() {
        let forbidden = [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_bind,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_bpf,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_process_vm_writev,
            libc::SYS_kexec_load,
            libc::SYS_keyctl,
            libc::SYS_creat,
        ];
        for kind in ThreadKind::ALL {
            let allowed = allowed_syscalls(kind);
            for nr in forbidden {
                assert!(!allowed.contains(&nr), "{kind} allows syscall {nr}");
            }
        }
    }

    #[test]
    fn every_filter_compiles_and_off_has_none() {
        for kind in ThreadKind::ALL {
            for mode in [SeccompMode::On, SeccompMode::Log] {
                let p = programs(kind, mode).unwrap();
                assert_eq!(p.len(), 2, "{kind} {mode}");
                assert!(p[1].len() > allowed_syscalls(kind).len(), "{kind} {mode}");
            }
            assert!(programs(kind, SeccompMode::Off).unwrap().is_empty());
        }
    }

    /// What the forked child does once its filters are on.
    #[derive(Clone, Copy)]
    enum Probe {
        /// `getpid` (on every list): exit 0.
        Allowed,
        /// `socket` (on no list): exit 0 if it returns.
        Socket,
        /// `open("/dev/null")`: exit 0 if refused with EACCES, 4 if not.
        Open,
    }

    /// Forks; the child installs `kind`'s filters under `mode`, probes, and
    /// exits. Returns the child's wait status.
    fn child_status(kind: ThreadKind, mode: SeccompMode, probe: Probe) -> libc::c_int {
        // Built before fork: the child only makes syscalls.
        let progs = programs(kind, mode).unwrap();
        let path = c"/dev/null";
        // SAFETY: fork in a test process; the child calls only
        // async-signal-safe functions (prctl/seccomp via apply_filter,
        // socket, open, getpid, _exit) and never returns into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let mut code = 0;
            for p in &progs {
                if seccompiler::apply_filter(p).is_err() {
                    code = 3;
                }
            }
            if code == 0 {
                match probe {
                    Probe::Allowed => {
                        // SAFETY: getpid has no arguments.
                        unsafe { libc::getpid() };
                    }
                    Probe::Socket => forbidden_syscall(),
                    Probe::Open => {
                        // SAFETY: a NUL-terminated path; the result is
                        // only compared.
                        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
                        let err = std::io::Error::last_os_error().raw_os_error();
                        if fd >= 0 || err != Some(libc::EACCES) {
                            code = 4;
                        }
                    }
                }
            }
            // SAFETY: ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; status is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        status
    }

    fn exited_0(s: libc::c_int) -> bool {
        libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0
    }

    #[test]
    fn reject_socket_in_every_thread_kind() {
        for kind in ThreadKind::ALL {
            let s = child_status(kind, SeccompMode::On, Probe::Socket);
            assert!(
                libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGSYS,
                "{kind}: child status {s:#x}, expected death by SIGSYS"
            );
        }
    }

    #[test]
    fn reject_opening_files_with_eacces_in_every_thread_kind() {
        for kind in ThreadKind::ALL {
            for mode in [SeccompMode::On, SeccompMode::Log] {
                let s = child_status(kind, mode, Probe::Open);
                assert!(exited_0(s), "{kind} {mode}: {s:#x}");
            }
        }
    }

    #[test]
    fn allowed_syscall_passes_in_every_thread_kind() {
        for kind in ThreadKind::ALL {
            let s = child_status(kind, SeccompMode::On, Probe::Allowed);
            assert!(exited_0(s), "{kind}: {s:#x}");
        }
    }

    #[test]
    fn log_mode_lets_a_forbidden_syscall_through() {
        let s = child_status(ThreadKind::Vcpu, SeccompMode::Log, Probe::Socket);
        assert!(exited_0(s), "{s:#x}");
    }

    #[test]
    fn mode_names_round_trip_through_clap() {
        use clap::ValueEnum;
        for m in SeccompMode::value_variants() {
            let name = m.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name, m.to_string());
            assert_eq!(SeccompMode::from_str(&name, false).unwrap(), *m);
        }
        assert_eq!(SeccompMode::default(), SeccompMode::On);
    }
}
