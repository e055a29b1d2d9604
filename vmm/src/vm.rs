//! A VM run from start to end: KVM, guest memory, in-kernel irqchip,
//! devices, kernel loading, one thread per vCPU, and a clean stop with
//! every vCPU thread joined.
//!
//! Interrupt controller: the full in-kernel irqchip (`KVM_CREATE_IRQCHIP`:
//! PIC, IOAPIC and every LAPIC in KVM). MSIs from our devices are injected
//! with `KVM_SIGNAL_MSI` or an irqfd with an MSI route, which work with the
//! full in-kernel irqchip on these machines (docs: KVM-NOTES.md), so a split
//! irqchip (IOAPIC in user space) would only add code and exits. The legacy
//! COM1 line is an irqfd on GSI 4.

use std::fs::File;
use std::io::Write;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use devices::layout::COM1_IRQ;
use devices::legacy::serial::{IrqTrigger, Serial, SerialOutput};
use devices::legacy::{ShutdownReason, ShutdownSignal};
use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::Kvm;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::config::{ConfigError, SerialMode, VmConfig};
use crate::cpuid::{self, CpuProfile};
use crate::event_loop::{self, LoopError, RunLoop, StopCause};
use crate::kvm_vm::GuestVm;
use crate::report::{self, GuestLines, RunReport};
use crate::seccomp::{self, ThreadKind};
use crate::serial_out::{self, SerialBuffer, SerialSink, SerialStats};
use crate::vcpu::{self, VcpuShared, VcpuStop};
use crate::{boot, loader, memory, platform};

/// The KVM device.
pub const KVM_PATH: &str = "/dev/kvm";
/// Where KVM's private TSS pages go (Intel VMX needs three pages of guest
/// physical space; they sit in the MMIO hole, below the BIOS area).
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Largest capture buffer: a guest printing forever must not grow the
/// VMM's memory without bound.
pub const MAX_CAPTURE: usize = 16 << 20;
/// Makes SIGINT, SIGTERM, SIGHUP and SIGQUIT stop the guest cleanly
/// (report and trace written) instead of killing the VMM. The `stalewalk`
/// binary calls this; library users choose for themselves.
pub fn install_termination_handlers() -> Result<(), VmError> {
    event_loop::install_termination_handlers().map_err(VmError::from)
}

/// Sent by a vCPU thread as it ends, whether it returned or panicked: why
/// it stopped, on the channel the event loop reads, and a write to the
/// loop's eventfd.
struct StopNotice {
    id: u32,
    tx: mpsc::Sender<(u32, VcpuStop)>,
    wake: Arc<EventFd>,
    stop: Option<VcpuStop>,
}

impl Drop for StopNotice {
    fn drop(&mut self) {
        let stop = self
            .stop
            .take()
            .unwrap_or_else(|| VcpuStop::RunFailed("the vCPU thread panicked".to_string()));
        // The receiver lives until the run ends; a failed send or write
        // only means the run is already over.
        let _ = self.tx.send((self.id, stop));
        let _ = self.wake.write(1);
    }
}

/// How often a stopping VM re-kicks vCPUs still inside `KVM_RUN`.
const KICK_INTERVAL: Duration = Duration::from_millis(1);

/// Errors of a run. Each says what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A seccomp filter could not be installed (`--seccomp`).
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// /dev/kvm does not exist.
    #[error(
        "{path} does not exist: KVM is not available on this host (load the kvm module, enable \
         virtualization, or in a container pass the device through, e.g. --device /dev/kvm)"
    )]
    KvmMissing {
        /// The device path.
        path: PathBuf,
    },
    /// /dev/kvm exists but cannot be opened.
    #[error(
        "no permission to open {path}: add your user to the group owning it (usually 'kvm') or run as root"
    )]
    KvmPermission {
        /// The device path.
        path: PathBuf,
    },
    /// Another error opening /dev/kvm.
    #[error("cannot open {path}: {source}")]
    KvmOpen {
        /// The device path.
        path: PathBuf,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// A KVM VM ioctl failed.
    #[error("{what} failed: {source}")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// The error.
        source: kvm_ioctls::Error,
    },
    /// Guest memory.
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    /// Kernel or initrd.
    #[error(transparent)]
    Loader(#[from] loader::LoaderError),
    /// vCPU set-up.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The serial output file.
    #[error("cannot create serial output file {path}: {source}")]
    SerialFile {
        /// The path given.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The disk image is in use by another run, or cannot be locked.
    #[error(transparent)]
    DiskLock(#[from] crate::disk_lock::DiskLockError),
    /// The VM thread's event loop or the signal handlers.
    #[error(transparent)]
    EventLoop(#[from] LoopError),
    /// Building the platform (ACPI, PCI, vIOMMU, SVA devices).
    #[error(transparent)]
    Platform(#[from] platform::PlatformError),
    /// A host resource (eventfd, thread, signal handler).
    #[error("cannot create {what}: {source}")]
    Host {
        /// What.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The guest triple-faulted.
    #[error(
        "the guest triple-faulted on vCPU {vcpu} at RIP {rip:#x} (KVM_EXIT_SHUTDOWN): it hit an \
         exception while it could not handle exceptions (no or broken IDT, stack or page tables)"
    )]
    TripleFault {
        /// The vCPU.
        vcpu: u32,
        /// Its RIP.
        rip: u64,
    },
    /// KVM could not run an instruction.
    #[error(
        "KVM could not emulate an instruction on vCPU {vcpu} at RIP {rip:#x} (KVM_EXIT_INTERNAL_ERROR, \
         suberror {suberror}); instruction bytes: {bytes}. Hint: {hint}"
    )]
    EmulationFailure {
        /// The vCPU.
        vcpu: u32,
        /// Its RIP.
        rip: u64,
        /// KVM's suberror.
        suberror: u32,
        /// The bytes at RIP, in hex.
        bytes: String,
        /// What to try.
        hint: String,
    },
    /// VM entry failed.
    #[error("KVM could not enter vCPU {vcpu} (KVM_EXIT_FAIL_ENTRY, reason {reason:#x})")]
    FailEntry {
        /// The vCPU.
        vcpu: u32,
        /// Hardware reason.
        reason: u64,
    },
    /// The run reached `--timeout` and the VMM stopped the guest.
    #[error(
        "the guest was still running after --timeout {seconds}s and was stopped; the report and trace were written"
    )]
    TimedOut {
        /// The limit, in seconds.
        seconds: f64,
    },
    /// The VMM received SIGINT, SIGTERM, SIGHUP or SIGQUIT and stopped the
    /// guest.
    #[error(
        "stopped by signal {signal} ({}); the report and trace were written",
        signal_name(*signal)
    )]
    Interrupted {
        /// The signal number.
        signal: i32,
    },
    /// Any other vCPU stop.
    #[error("vCPU {vcpu} stopped: {what}")]
    VcpuStopped {
        /// The vCPU.
        vcpu: u32,
        /// What happened.
        what: String,
    },
}

/// How a run ended when the guest ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The VMM's exit status (the debug-exit value, 0 after a reset).
    pub exit_status: u8,
    /// What the guest did.
    pub reason: ShutdownReason,
    /// Wall time from the start of `run` to the guest's exit.
    pub elapsed: Duration,
}

/// Opens the KVM device at `path`, turning the common failures into
/// errors that say what to do.
pub fn open_kvm(path: &Path) -> Result<Kvm, VmError> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| VmError::KvmMissing { path: path.into() })?;
    Kvm::new_with_path(c).map_err(|e| kvm_open_error(path, e))
}

/// The error for a failed open of `path`.
pub fn kvm_open_error(path: &Path, e: kvm_ioctls::Error) -> VmError {
    match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => VmError::KvmMissing { path: path.into() },
        libc::EACCES | libc::EPERM => VmError::KvmPermission { path: path.into() },
        _ => VmError::KvmOpen {
            path: path.into(),
            source: e,
        },
    }
}

/// The hint printed with an emulation failure.
pub fn emulation_hint(profile: CpuProfile) -> String {
    match profile {
        CpuProfile::Host => "this host's KVM emulates guest kernel-mode code and cannot run every \
                             instruction; retry with --cpu-profile emulation-safe so the guest is \
                             told not to use them"
            .to_string(),
        CpuProfile::EmulationSafe => "this host's KVM emulates guest kernel-mode code; the guest used an \
                                      instruction its emulator lacks although --cpu-profile emulation-safe \
                                      hides the CPUID features that announce them (the guest must not use \
                                      such instructions unconditionally; on a host with hardware \
                                      virtualization use --cpu-profile host)"
            .to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(unreadable)".to_string();
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `Write` that appends to a shared buffer, up to [`MAX_CAPTURE`] bytes.
#[derive(Debug)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_CAPTURE.saturating_sub(v.len());
        v.extend_from_slice(&buf[..buf.len().min(room)]);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The guest's console output: a file or a standard stream go through a
/// [`SerialBuffer`] (a stalled reader never blocks a vCPU); `off` and the
/// in-memory capture are written directly (neither can block).
enum ConsoleOut {
    Buffered(SerialBuffer, SerialSink),
    Direct(fn(&SerialMode) -> SerialOutput),
}

fn console_out(
    mode: &SerialMode,
    seccomp: crate::seccomp::SeccompMode,
) -> Result<ConsoleOut, VmError> {
    let host = |source| VmError::Host {
        what: "the serial output writer",
        source,
    };
    let out: Box<dyn Write + Send> = match mode {
        SerialMode::Stdio => {
            // A descriptor of our own on the same open file: the writer
            // never takes std's stdout lock, so a stalled reader cannot
            // block the thread that prints the report.
            let fd = std::os::fd::AsFd::as_fd(&std::io::stdout())
                .try_clone_to_owned()
                .map_err(host)?;
            Box::new(File::from(fd))
        }
        SerialMode::Stderr => {
            let fd = std::os::fd::AsFd::as_fd(&std::io::stderr())
                .try_clone_to_owned()
                .map_err(host)?;
            Box::new(File::from(fd))
        }
        SerialMode::File(p) => Box::new(File::create(p).map_err(|source| VmError::SerialFile {
            path: p.clone(),
            source,
        })?),
        SerialMode::Off | SerialMode::Capture(_) => {
            return Ok(ConsoleOut::Direct(direct_output));
        }
    };
    let (buf, sink) =
        SerialBuffer::start(out, serial_out::SERIAL_BUFFER_BYTES, seccomp).map_err(host)?;
    Ok(ConsoleOut::Buffered(buf, sink))
}

fn direct_output(mode: &SerialMode) -> SerialOutput {
    match mode {
        SerialMode::Capture(buf) => Box::new(Capture(buf.clone())),
        _ => Box::new(std::io::sink()),
    }
}

impl ConsoleOut {
    fn writer(&self, mode: &SerialMode) -> SerialOutput {
        match self {
            ConsoleOut::Buffered(_, sink) => Box::new(sink.clone()),
            ConsoleOut::Direct(f) => f(mode),
        }
    }

    fn finish(&self) -> SerialStats {
        match self {
            ConsoleOut::Buffered(buf, _) => buf.finish(serial_out::FLUSH_DEADLINE),
            ConsoleOut::Direct(_) => SerialStats::default(),
        }
    }
}

/// The usual name of a termination signal.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        _ => "a signal",
    }
}

fn kvm<T>(what: &'static str, r: Result<T, kvm_ioctls::Error>) -> Result<T, VmError> {
    r.map_err(|source| VmError::Kvm { what, source })
}

extern "C" fn kick_handler(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// The signal that interrupts `KVM_RUN` in a vCPU thread.
fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

fn install_kick_handler() -> Result<(), VmError> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = vmm_sys_util::signal::register_signal_handler(kick_signal(), kick_handler)
            .map_err(|e| VmError::Host {
                what: "the vCPU kick signal handler",
                source: e.into(),
            });
    });
    result
}

/// Boots the VM described by `cfg` and runs it until the guest ends it.
pub fn run(cfg: &VmConfig) -> Result<RunOutcome, VmError> {
    run_with_report(cfg, RunHooks::default()).result
}

/// What a caller may attach to a run: an extra vIOMMU event sink (the trace
/// writer) and a hook that sees every guest serial line.
#[derive(Default)]
pub struct RunHooks {
    /// Receives every vIOMMU event (after the report's own accounting).
    pub events: Option<Box<dyn viommu::EventSink>>,
    /// Receives every complete guest serial line.
    pub serial_line: Option<crate::report::LineHook>,
}

impl std::fmt::Debug for RunHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunHooks")
            .field("events", &self.events.is_some())
            .field("serial_line", &self.serial_line.is_some())
            .finish()
    }
}

/// A run's outcome and, whenever the VM got as far as running, its report
/// (also when the guest crashed or the VMM stopped it on an error).
#[derive(Debug)]
pub struct RunResult {
    /// How the run ended.
    pub result: Result<RunOutcome, VmError>,
    /// The end-of-run report; `None` when set-up failed before the guest ran.
    pub report: Option<RunReport>,
    /// What the guest console output did (also in the report's `vmm`
    /// section): a write error here means output was lost.
    pub serial: SerialStats,
}

/// Like [`run`], with hooks, returning the end-of-run report too.
///
/// The VM is driven from a thread of its own ("vm"), which installs the VM
/// thread's seccomp filter and starts the vCPU threads; the caller's thread
/// only waits, so no filter stays on it (library users and tests keep
/// their thread as it was).
pub fn run_with_report(cfg: &VmConfig, hooks: RunHooks) -> RunResult {
    let owned = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name("vm".to_string())
        .spawn(move || run_on_this_thread(&owned, hooks));
    match spawned {
        Ok(handle) => handle.join().unwrap_or_else(|_| RunResult {
            result: Err(VmError::Host {
                what: "the VM thread",
                source: std::io::Error::other("the VM thread panicked"),
            }),
            report: None,
            serial: SerialStats::default(),
        }),
        Err(source) => RunResult {
            result: Err(VmError::Host {
                what: "the VM thread",
                source,
            }),
            report: None,
            serial: SerialStats::default(),
        },
    }
}

fn run_on_this_thread(cfg: &VmConfig, hooks: RunHooks) -> RunResult {
    let start = Instant::now();
    let guest_lines = Arc::new(Mutex::new(GuestLines::default()));
    let mut report_inputs = None;
    let mut serial = SerialStats::default();
    let result = run_inner(
        cfg,
        hooks,
        start,
        &guest_lines,
        &mut report_inputs,
        &mut serial,
    );
    let report = report_inputs.map(|(platform, unclaimed, emulated, added): ReportInputs| {
        let (exit_status, ended_by) = match &result {
            Ok(o) => (Some(o.exit_status), format!("{:?}", o.reason)),
            Err(e) => (None, e.to_string()),
        };
        let end = report::RunEnd {
            exit_status,
            ended_by,
            elapsed: start.elapsed(),
        };
        let mut r = report::build_report(cfg, end, &platform, unclaimed, &guest_lines);
        r.vmm_emulated = emulated;
        r.guest_cmdline_added = added;
        r.vmm.serial_dropped_bytes = serial.dropped_bytes;
        r.vmm.serial_error = serial.error.clone();
        r
    });
    RunResult {
        result,
        report,
        serial,
    }
}

/// What a run leaves for its report: the platform, unclaimed I/O, what the
/// VMM emulated, and what it added to a Linux guest's command line.
type ReportInputs = (
    platform::Platform,
    u64,
    std::collections::BTreeMap<String, u64>,
    Vec<String>,
);

/// The words added to a Linux guest's command line under the
/// emulation-safe profile (none for the mini guest, another kernel, or the
/// host profile).
fn linux_cmdline_added(
    cfg: &VmConfig,
    supported: &[kvm_bindings::kvm_cpuid_entry2],
) -> Vec<String> {
    let crate::config::KernelSource::Path(path) = &cfg.kernel else {
        return Vec::new();
    };
    // An unreadable kernel is the loader's to report.
    if cfg.cpu_profile != CpuProfile::EmulationSafe
        || !crate::linux_guest::is_linux_kernel(path).unwrap_or(false)
    {
        return Vec::new();
    }
    cpuid::linux_switches(supported, &cpuid::host_cpuid, &cfg.cmdline)
}

fn run_inner(
    cfg: &VmConfig,
    hooks: RunHooks,
    start: Instant,
    guest_lines: &Arc<Mutex<GuestLines>>,
    report_inputs: &mut Option<ReportInputs>,
    serial_stats: &mut SerialStats,
) -> Result<RunOutcome, VmError> {
    cfg.validate()?;
    let verbose = |msg: &dyn Fn() -> String| {
        if cfg.verbose {
            let _ = writeln!(std::io::stderr(), "stalewalk: {}", msg());
        }
    };
    let kvm_sys = open_kvm(Path::new(KVM_PATH))?;
    let mem = memory::create_guest_memory(cfg.memory)?;
    let vm = kvm("KVM_CREATE_VM", kvm_sys.create_vm())?;
    let vm = Arc::new(kvm("KVM_SET_USER_MEMORY_REGION", GuestVm::new(vm, &mem))?);
    kvm("KVM_SET_TSS_ADDR", vm.set_tss_address(KVM_TSS_ADDRESS))?;
    kvm("KVM_CREATE_IRQCHIP", vm.create_irq_chip())?;

    let supported = kvm(
        "KVM_GET_SUPPORTED_CPUID",
        kvm_sys.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES),
    )?;
    // A Linux guest gets noxsave/clearcpuid= for what CPUID cannot hide
    // here (docs/EMULATION.md).
    let cmdline_added = linux_cmdline_added(cfg, supported.as_slice());
    if !cmdline_added.is_empty() {
        verbose(&|| {
            format!(
                "Linux guest under --cpu-profile emulation-safe: this KVM shows the guest host CPU \
                 features that CPUID filtering cannot hide, so the VMM adds to its command line: {}",
                cmdline_added.join(" ")
            )
        });
    }
    let effective;
    let cfg = if cmdline_added.is_empty() {
        cfg
    } else {
        effective = VmConfig {
            cmdline: crate::linux_guest::with_words(&cfg.cmdline, &cmdline_added),
            ..cfg.clone()
        };
        &effective
    };

    let loaded = loader::load(&mem, cfg)?;
    boot::write_boot_tables(&mem, &loaded.entry)?;
    verbose(&|| {
        let name = match &cfg.kernel {
            crate::config::KernelSource::MiniGuest => "built-in mini guest".to_string(),
            crate::config::KernelSource::Path(p) => p.display().to_string(),
        };
        format!(
            "kernel {name}: {}, entry {:x?}",
            loaded.format, loaded.entry
        )
    });

    // Devices.
    let shutdown = Arc::new(ShutdownSignal::new());
    let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(|e| VmError::Host {
        what: "the serial interrupt eventfd",
        source: e,
    })?;
    kvm("KVM_IRQFD (COM1)", vm.register_irqfd(&serial_irq, COM1_IRQ))?;
    // Held until the run ends: a second writer of the image is refused.
    let _disk_lock = cfg
        .platform
        .disk
        .as_ref()
        .map(|d| crate::disk_lock::DiskLock::acquire(&d.path, d.read_only))
        .transpose()?;
    let console = console_out(&cfg.serial, cfg.seccomp)?;
    // Whatever happens next, the writer is told to finish (at most the
    // flush deadline) and what it did goes into the report.
    struct FinishConsole<'a>(&'a ConsoleOut, &'a mut SerialStats);
    impl Drop for FinishConsole<'_> {
        fn drop(&mut self) {
            *self.1 = self.0.finish();
        }
    }
    let _finish_console = FinishConsole(&console, serial_stats);
    let serial_out = report::GuestLog::new(
        console.writer(&cfg.serial),
        guest_lines.clone(),
        hooks.serial_line,
    );
    let serial = Serial::new(IrqTrigger(serial_irq), Box::new(serial_out));
    // The report's figures are counted inside the vIOMMU: a sink is
    // installed only for a trace (`--trace`).
    let events = cfg.platform.viommu.as_ref().and(hooks.events);
    let (buses, platform) = platform::build(
        &cfg.platform,
        cfg.cpus,
        &mem,
        platform::PlatformWiring {
            vm: vm.clone(),
            serial,
            console: console.writer(&cfg.serial),
            events,
            shutdown: shutdown.clone(),
        },
    )?;
    verbose(&|| {
        format!(
            "platform: vIOMMU {}, {} SVA device(s), ACPI RSDP at {:#x}",
            match &cfg.platform.viommu {
                Some(v) => format!(
                    "on ({} levels, cache {}, check {})",
                    v.levels.count(),
                    v.cache,
                    v.check
                ),
                None => "off".to_string(),
            },
            platform.devices.sva.len(),
            platform.acpi.rsdp_gpa()
        )
    });

    // CPUID.
    let mut base = supported.as_slice().to_vec();
    let hidden = cpuid::apply_profile(&mut base, cfg.cpu_profile, cfg.la57);
    verbose(&|| {
        let what = if hidden.is_empty() {
            "nothing hidden".to_string()
        } else {
            format!("hidden: {}", hidden.join(" "))
        };
        format!(
            "cpu profile {} ({what}); {} vCPUs, {} MiB",
            cfg.cpu_profile,
            cfg.cpus,
            cfg.memory >> 20
        )
    });

    let mut vcpus = Vec::new();
    for id in 0..cfg.cpus {
        let fd = kvm("KVM_CREATE_VCPU", vm.create_vcpu(u64::from(id)))?;
        let mut entries = base.clone();
        cpuid::set_topology(&mut entries, id, cfg.cpus);
        let cpuid = kvm_bindings::CpuId::from_entries(&entries).map_err(|_| VmError::Kvm {
            what: "building CPUID",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        kvm("KVM_SET_CPUID2", fd.set_cpuid2(&cpuid))?;
        boot::setup_common(&fd, id)?;
        if id == 0 {
            boot::setup_boot_vcpu(&fd, &loaded.entry)?;
        }
        vcpus.push(fd);
    }

    install_kick_handler()?;
    let shared = Arc::new(VcpuShared {
        pio: buses.pio,
        mmio: buses.mmio,
        shutdown,
        stop: AtomicBool::new(false),
        mem: mem.clone(),
        unclaimed: AtomicU64::new(0),
        emulate: cfg.emulate_in_vmm,
        emulated: crate::emulate::EmulatedCounts::default(),
        sync_regs: u64::try_from(vm.check_extension_int(kvm_ioctls::Cap::SyncRegs)).is_ok_and(
            |bits| bits & crate::emulate::SYNC_REGS_NEEDED == crate::emulate::SYNC_REGS_NEEDED,
        ),
    });
    let (tx, rx) = mpsc::channel::<(u32, VcpuStop)>();
    let vcpu_wake = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| VmError::Host {
        what: "the vCPU-stopped eventfd",
        source: e,
    })?);
    // The deadline counts from the start of the run, set-up included.
    let time_left = cfg.timeout.map(|t| t.saturating_sub(start.elapsed()));
    let mut events = RunLoop::new(
        event_loop::process_signals(),
        time_left,
        vcpu_wake.clone(),
        rx,
    )?;
    // Set-up is done: from here this thread only starts the vCPUs (which
    // inherit this filter, then add their own), waits and reports.
    seccomp::install(ThreadKind::Vm, cfg.seccomp)?;
    // When the first vCPU entered KVM_RUN (the guest's first instruction),
    // for the verbose line that tools/bench.sh reads.
    let first_run: Arc<OnceLock<(Instant, SystemTime)>> = Arc::default();
    let mut threads = Vec::new();
    for (id, fd) in (0u32..).zip(vcpus) {
        let shared = shared.clone();
        let mode = cfg.seccomp;
        let first_run = first_run.clone();
        let notice = StopNotice {
            id,
            tx: tx.clone(),
            wake: vcpu_wake.clone(),
            stop: None,
        };
        let t = std::thread::Builder::new()
            .name(format!("vcpu{id}"))
            .spawn(move || {
                // Moved in whole (not just its field), so it drops here.
                let mut notice = notice;
                notice.stop = Some(match seccomp::install(ThreadKind::Vcpu, mode) {
                    Ok(()) => {
                        first_run.get_or_init(|| (Instant::now(), SystemTime::now()));
                        vcpu::run(fd, &shared)
                    }
                    Err(e) => VcpuStop::RunFailed(e.to_string()),
                });
                // `notice` tells the event loop as it drops, also on a panic.
            })
            .map_err(|e| VmError::Host {
                what: "a vCPU thread",
                source: e,
            })?;
        threads.push(t);
    }
    drop(tx);

    // Sleep until the first event that ends the run: a vCPU stopped, a
    // termination signal, or --timeout. Then the VMM stops the guest
    // itself, so the report and the trace are still written.
    let cause = events.wait();
    let elapsed = start.elapsed();
    shared.stop.store(true, Ordering::Release);
    while threads.iter().any(|t| !t.is_finished()) {
        for t in threads.iter().filter(|t| !t.is_finished()) {
            // SAFETY: the thread is alive (not finished, not joined), so its
            // pthread_t is valid; the signal's handler does nothing.
            unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
        }
        std::thread::sleep(KICK_INTERVAL);
    }
    for t in threads {
        let _ = t.join();
    }
    let first = match cause? {
        StopCause::Vcpu { id, stop } => (id, stop),
        StopCause::Signal(sig) => (0, VcpuStop::Signal(sig)),
        StopCause::TimedOut => (0, VcpuStop::TimedOut),
        StopCause::VcpusGone => (0, VcpuStop::Stopped),
    };
    verbose(&|| {
        format!(
            "{} unclaimed I/O accesses; run took {:.1} ms",
            shared.unclaimed.load(Ordering::Relaxed),
            elapsed.as_secs_f64() * 1e3
        )
    });
    if let Some((at, wall)) = first_run.get() {
        verbose(&|| {
            let since_start = at.duration_since(start);
            let unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
            format!(
                "first KVM_RUN entry {:.3} ms after run start (first_run_unix_us={})",
                since_start.as_secs_f64() * 1e3,
                unix.as_micros()
            )
        });
    }

    *report_inputs = Some((
        platform,
        shared.unclaimed.load(Ordering::Relaxed),
        shared.emulated.snapshot(),
        cmdline_added,
    ));
    let (vcpu, stop) = first;
    match stop {
        VcpuStop::Shutdown(reason) => {
            let exit_status = match reason {
                ShutdownReason::DebugExit(s) => s,
                ShutdownReason::Reset | ShutdownReason::PowerOff => 0,
            };
            verbose(&|| format!("guest ended the run: {reason:?}"));
            Ok(RunOutcome {
                exit_status,
                reason,
                elapsed,
            })
        }
        VcpuStop::TripleFault { rip } => Err(VmError::TripleFault { vcpu, rip }),
        VcpuStop::InternalError {
            suberror,
            rip,
            bytes,
            note,
        } => Err(VmError::EmulationFailure {
            vcpu,
            rip,
            suberror,
            bytes: hex(&bytes),
            hint: match note {
                Some(n) => format!("{n}; {}", emulation_hint(cfg.cpu_profile)),
                None => emulation_hint(cfg.cpu_profile),
            },
        }),
        VcpuStop::FailEntry { reason } => Err(VmError::FailEntry { vcpu, reason }),
        VcpuStop::Signal(signal) => Err(VmError::Interrupted { signal }),
        VcpuStop::TimedOut => Err(VmError::TimedOut {
            seconds: cfg.timeout.unwrap_or_default().as_secs_f64(),
        }),
        other => Err(VmError::VcpuStopped {
            vcpu,
            what: format!("{other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_missing_kvm_device() {
        let e = open_kvm(Path::new("/nonexistent/kvm")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/kvm does not exist: KVM is not available on this host (load the kvm module, enable \
             virtualization, or in a container pass the device through, e.g. --device /dev/kvm)"
        );
    }

    #[test]
    fn reject_kvm_without_permission() {
        let e = kvm_open_error(Path::new("/dev/kvm"), kvm_ioctls::Error::new(libc::EACCES));
        assert_eq!(
            e.to_string(),
            "no permission to open /dev/kvm: add your user to the group owning it (usually 'kvm') or run as root"
        );
    }

    #[test]
    fn emulation_failure_message_names_vcpu_rip_bytes_and_profile() {
        let e = VmError::EmulationFailure {
            vcpu: 1,
            rip: 0x10_2345,
            suberror: 1,
            bytes: hex(&[0xf0, 0x48, 0x0f, 0xc7, 0x0e]),
            hint: emulation_hint(CpuProfile::Host),
        };
        let s = e.to_string();
        assert!(s.starts_with("KVM could not emulate an instruction on vCPU 1 at RIP 0x102345 (KVM_EXIT_INTERNAL_ERROR, suberror 1); instruction bytes: f0 48 0f c7 0e."), "{s}");
        assert!(s.contains("retry with --cpu-profile emulation-safe"), "{s}");
        assert!(emulation_hint(CpuProfile::EmulationSafe).contains("--cpu-profile host"));
        assert_eq!(hex(&[]), "(unreadable)");
    }

    #[test]
    fn triple_fault_message() {
        let e = VmError::TripleFault {
            vcpu: 0,
            rip: 0x100abc,
        };
        assert!(
            e.to_string().starts_with(
                "the guest triple-faulted on vCPU 0 at RIP 0x100abc (KVM_EXIT_SHUTDOWN)"
            )
        );
    }

    #[test]
    fn reject_bad_config_before_touching_kvm() {
        let cfg = VmConfig {
            cpus: 0,
            ..Default::default()
        };
        assert_eq!(
            run(&cfg).unwrap_err().to_string(),
            "--cpus 0: give between 1 and 64"
        );
        let cfg = VmConfig {
            memory: 4096,
            ..Default::default()
        };
        assert!(matches!(
            run(&cfg),
            Err(VmError::Config(ConfigError::MemoryRange { .. }))
        ));
    }

    #[test]
    fn capture_is_bounded() {
        let buf = Arc::new(Mutex::new(vec![0u8; MAX_CAPTURE - 2]));
        let mut c = Capture(buf.clone());
        assert_eq!(c.write(b"abcd").unwrap(), 4);
        assert_eq!(buf.lock().unwrap().len(), MAX_CAPTURE);
    }

    #[test]
    fn only_a_linux_kernel_under_emulation_safe_gets_switches() {
        let supported = vec![kvm_bindings::kvm_cpuid_entry2 {
            function: 1,
            ecx: 1 << 13,
            ..Default::default()
        }];
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let path = std::env::temp_dir().join(format!("stalewalk-vm-bz-{}", std::process::id()));
        std::fs::write(&path, &bz).unwrap();
        let linux = VmConfig {
            kernel: crate::config::KernelSource::Path(path.clone()),
            cmdline: "console=ttyS0".into(),
            ..Default::default()
        };
        let want = cpuid::linux_switches(&supported, &cpuid::host_cpuid, "console=ttyS0");
        assert_eq!(linux_cmdline_added(&linux, &supported), want);
        if cpuid::host_cpuid(1, 0)[2] & (1 << 26) != 0 {
            assert_eq!(
                want.first().map(String::as_str),
                Some("noxsave"),
                "{want:?}"
            );
        }
        let host = VmConfig {
            cpu_profile: CpuProfile::Host,
            ..linux.clone()
        };
        assert!(linux_cmdline_added(&host, &supported).is_empty());
        assert!(linux_cmdline_added(&VmConfig::default(), &supported).is_empty());
        std::fs::remove_file(path).unwrap();
    }
}
