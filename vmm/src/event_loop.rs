//! The VM thread's event loop: what may end a run, as events on one epoll
//! set (the `event-manager` crate, as Firecracker drives its VMM).
//!
//! Three sources, one subscriber each:
//! - a termination signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT): the handler
//!   only records the signal number and writes an eventfd (both
//!   async-signal-safe); the eventfd is never read, so once a signal came
//!   every later run in the process ends at once too (`compare` stops);
//! - `--timeout`: a one-shot timerfd armed for the time left;
//! - a vCPU stopped: each vCPU thread sends why on a channel and writes an
//!   eventfd, also when it panics.
//!
//! The first event decides how the run ends ([`StopCause`]); the VM thread
//! then stops the vCPUs and writes the report. Nothing here polls: the
//! thread sleeps in `epoll_wait` until one of the three happens.
//!
//! Not here: stopping the vCPUs (`vm`), guest console output
//! (`serial_out`).

use std::cell::RefCell;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmm_sys_util::timerfd::TimerFd;

use crate::vcpu::VcpuStop;

/// The signals that end a run cleanly (report and trace written).
pub const TERMINATION_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Errors of the event loop (host errors, never guest-caused).
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    /// An eventfd, timerfd or the epoll set could not be made or used.
    #[error("the VM event loop: cannot {what}: {source}")]
    Host {
        /// What failed.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A termination signal handler could not be installed.
    #[error("cannot install a handler for signal {signal}: {source}")]
    Handler {
        /// The signal.
        signal: libc::c_int,
        /// The error.
        source: std::io::Error,
    },
}

/// Why the event loop ended a run.
#[derive(Debug)]
pub enum StopCause {
    /// A vCPU stopped (the guest ended the run, crashed, or a vCPU failed).
    Vcpu {
        /// The vCPU.
        id: u32,
        /// Why.
        stop: VcpuStop,
    },
    /// A termination signal arrived.
    Signal(libc::c_int),
    /// `--timeout` passed.
    TimedOut,
    /// Every vCPU thread ended without saying why (cannot happen while the
    /// threads send on exit; kept so the loop can never wait forever).
    VcpusGone,
}

/// Where a signal handler records its signal: the number (first one wins)
/// and an eventfd to wake the loop.
#[derive(Debug)]
pub struct SignalSource {
    number: AtomicI32,
    wake: EventFd,
}

impl SignalSource {
    /// A new source with no signal recorded.
    pub fn new() -> Result<Self, LoopError> {
        Ok(Self {
            number: AtomicI32::new(0),
            wake: EventFd::new(EFD_NONBLOCK).map_err(|source| LoopError::Host {
                what: "create the signal eventfd",
                source,
            })?,
        })
    }

    /// Records `signal` and wakes every loop watching this source. Only an
    /// atomic and `write(2)`: async-signal-safe. `errno` is preserved.
    pub fn raise(&self, signal: libc::c_int) {
        let _ = self
            .number
            .compare_exchange(0, signal, Ordering::AcqRel, Ordering::Acquire);
        // SAFETY: __errno_location returns this thread's errno slot.
        let errno = unsafe { *libc::__errno_location() };
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        unsafe {
            libc::write(
                self.wake.as_raw_fd(),
                std::ptr::from_ref(&one).cast(),
                size_of::<u64>(),
            )
        };
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
    }

    /// The signal recorded, if any.
    pub fn signal(&self) -> Option<libc::c_int> {
        match self.number.load(Ordering::Acquire) {
            0 => None,
            s => Some(s),
        }
    }
}

/// The process's termination signal source, set by
/// [`install_termination_handlers`].
static PROCESS_SIGNALS: OnceLock<SignalSource> = OnceLock::new();

extern "C" fn termination_handler(sig: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    if let Some(s) = PROCESS_SIGNALS.get() {
        s.raise(sig);
    }
}

/// Makes [`TERMINATION_SIGNALS`] end runs cleanly (report and trace
/// written) instead of killing the process. The `stalewalk` binary calls
/// this; library users choose for themselves. Idempotent.
pub fn install_termination_handlers() -> Result<(), LoopError> {
    if PROCESS_SIGNALS.get().is_none() {
        let source = SignalSource::new()?;
        // A racing caller's source wins; ours is dropped.
        let _ = PROCESS_SIGNALS.set(source);
    }
    for signal in TERMINATION_SIGNALS {
        vmm_sys_util::signal::register_signal_handler(signal, termination_handler).map_err(
            |e| LoopError::Handler {
                signal,
                source: e.into(),
            },
        )?;
    }
    Ok(())
}

/// The termination signal this process received, if any (only with
/// [`install_termination_handlers`]).
pub fn termination_signal() -> Option<libc::c_int> {
    PROCESS_SIGNALS.get().and_then(SignalSource::signal)
}

/// The process's signal source, when the handlers are installed.
pub fn process_signals() -> Option<&'static SignalSource> {
    PROCESS_SIGNALS.get()
}

type Decision = Rc<RefCell<Option<StopCause>>>;

fn decide(d: &Decision, cause: StopCause) {
    let mut d = d.borrow_mut();
    if d.is_none() {
        *d = Some(cause);
    }
}

struct SignalWatch {
    source: &'static SignalSource,
    decided: Decision,
}

impl MutEventSubscriber for SignalWatch {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        // Not read: the eventfd stays readable, so later runs end too.
        if let Some(s) = self.source.signal() {
            decide(&self.decided, StopCause::Signal(s));
        }
    }
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.source.wake, EventSet::IN));
    }
}

struct Deadline {
    timer: TimerFd,
    decided: Decision,
}

impl MutEventSubscriber for Deadline {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.timer.wait();
        decide(&self.decided, StopCause::TimedOut);
    }
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&self.timer, EventSet::IN));
    }
}

struct VcpuWatch {
    wake: Arc<EventFd>,
    stops: Receiver<(u32, VcpuStop)>,
    decided: Decision,
}

impl MutEventSubscriber for VcpuWatch {
    fn process(&mut self, _: Events, _: &mut EventOps) {
        let _ = self.wake.read();
        loop {
            match self.stops.try_recv() {
                Ok((id, stop)) => decide(&self.decided, StopCause::Vcpu { id, stop }),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    decide(&self.decided, StopCause::VcpusGone);
                    break;
                }
            }
        }
    }
    fn init(&mut self, ops: &mut EventOps) {
        let _ = ops.add(Events::new(&*self.wake, EventSet::IN));
    }
}

/// One run's event loop.
pub struct RunLoop {
    manager: EventManager<Box<dyn MutEventSubscriber>>,
    decided: Decision,
}

impl std::fmt::Debug for RunLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunLoop")
            .field("decided", &self.decided.borrow().is_some())
            .finish_non_exhaustive()
    }
}

impl RunLoop {
    /// A loop that ends on a signal recorded in `signals`, after `timeout`
    /// (from now), or when a vCPU reports on `stops` (and writes
    /// `vcpu_wake`).
    pub fn new(
        signals: Option<&'static SignalSource>,
        timeout: Option<Duration>,
        vcpu_wake: Arc<EventFd>,
        stops: Receiver<(u32, VcpuStop)>,
    ) -> Result<Self, LoopError> {
        let host = |what| move |source| LoopError::Host { what, source };
        let mut manager: EventManager<Box<dyn MutEventSubscriber>> =
            EventManager::new().map_err(|e| LoopError::Host {
                what: "create the epoll set",
                source: std::io::Error::other(e.to_string()),
            })?;
        let decided = Decision::default();
        if let Some(source) = signals {
            manager.add_subscriber(Box::new(SignalWatch {
                source,
                decided: decided.clone(),
            }));
        }
        if let Some(t) = timeout {
            let mut timer =
                TimerFd::new().map_err(|e| host("create the timeout timerfd")(e.into()))?;
            // A zero duration would disarm the timer: an expired timeout
            // fires at once instead.
            timer
                .reset(t.max(Duration::from_nanos(1)), None)
                .map_err(|e| host("arm the timeout timerfd")(e.into()))?;
            manager.add_subscriber(Box::new(Deadline {
                timer,
                decided: decided.clone(),
            }));
        }
        manager.add_subscriber(Box::new(VcpuWatch {
            wake: vcpu_wake,
            stops,
            decided: decided.clone(),
        }));
        Ok(Self { manager, decided })
    }

    /// Sleeps until the first event that ends the run, and returns it.
    pub fn wait(&mut self) -> Result<StopCause, LoopError> {
        loop {
            if let Some(c) = self.decided.borrow_mut().take() {
                return Ok(c);
            }
            self.manager
                .run_with_timeout(-1)
                .map_err(|e| LoopError::Host {
                    what: "wait for events",
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    type Channel = (
        Arc<EventFd>,
        mpsc::Sender<(u32, VcpuStop)>,
        Receiver<(u32, VcpuStop)>,
    );

    fn vcpu_channel() -> Channel {
        let (tx, rx) = mpsc::channel();
        (Arc::new(EventFd::new(EFD_NONBLOCK).unwrap()), tx, rx)
    }

    #[test]
    fn timeout_ends_the_loop_on_time() {
        let (wake, _tx, rx) = vcpu_channel();
        let mut l = RunLoop::new(None, Some(Duration::from_millis(30)), wake, rx).unwrap();
        let t = Instant::now();
        assert!(matches!(l.wait().unwrap(), StopCause::TimedOut));
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(30), "{took:?}");
        assert!(took < Duration::from_millis(130), "{took:?}");
    }

    #[test]
    fn an_expired_timeout_fires_at_once() {
        let (wake, _tx, rx) = vcpu_channel();
        let mut l = RunLoop::new(None, Some(Duration::ZERO), wake, rx).unwrap();
        assert!(matches!(l.wait().unwrap(), StopCause::TimedOut));
    }

    #[test]
    fn first_vcpu_stop_decides() {
        let (wake, tx, rx) = vcpu_channel();
        let mut l = RunLoop::new(None, Some(Duration::from_secs(60)), wake.clone(), rx).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send((1, VcpuStop::Stopped)).unwrap();
            tx.send((0, VcpuStop::Halted)).unwrap();
            wake.write(1).unwrap();
        });
        match l.wait().unwrap() {
            StopCause::Vcpu {
                id: 1,
                stop: VcpuStop::Stopped,
            } => {}
            other => panic!("{other:?}"),
        }
        t.join().unwrap();
    }

    #[test]
    fn vcpus_gone_ends_the_loop() {
        let (wake, tx, rx) = vcpu_channel();
        drop(tx);
        wake.write(1).unwrap();
        let mut l = RunLoop::new(None, None, wake, rx).unwrap();
        assert!(matches!(l.wait().unwrap(), StopCause::VcpusGone));
    }

    #[test]
    fn a_signal_ends_this_run_and_every_later_one() {
        // A source of our own: the process's handlers stay untouched.
        let source: &'static SignalSource = Box::leak(Box::new(SignalSource::new().unwrap()));
        let (wake, _tx, rx) = vcpu_channel();
        let mut l = RunLoop::new(Some(source), None, wake, rx).unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            source.raise(libc::SIGHUP);
            source.raise(libc::SIGTERM);
        });
        let start = Instant::now();
        assert!(matches!(l.wait().unwrap(), StopCause::Signal(libc::SIGHUP)));
        assert!(start.elapsed() < Duration::from_millis(120));
        t.join().unwrap();
        let (wake, _tx, rx) = vcpu_channel();
        let mut later = RunLoop::new(Some(source), None, wake, rx).unwrap();
        assert!(matches!(
            later.wait().unwrap(),
            StopCause::Signal(libc::SIGHUP)
        ));
    }
}
