//! A progress line on standard error, for people at a terminal only: a
//! spinner with the elapsed time for a `run` that lasts longer than 2 s,
//! and a bar over the policies of `compare`. Nothing is drawn when
//! standard error is not a terminal (scripts, pipes, CI logs) or when the
//! guest's console output goes to the same terminal (the line would
//! overwrite it).

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::SerialMode;

/// How long a run goes before its progress line appears.
pub const RUN_DELAY: Duration = Duration::from_secs(2);
/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(200);

/// Whether a progress line may be drawn for console output going to
/// `serial`.
pub fn wanted(serial: &SerialMode) -> bool {
    let console_on_terminal = match serial {
        SerialMode::Stdio => std::io::stdout().is_terminal(),
        SerialMode::Stderr => true,
        SerialMode::File(_) | SerialMode::Off | SerialMode::Capture(_) => false,
    };
    std::io::stderr().is_terminal() && !console_on_terminal
}

/// A progress line; `finish` (or drop) clears it.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// For `run`: tells the thread that shows the spinner to stop.
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// The bar of a `compare` over `policies` runs (hidden when not
    /// [`wanted`]).
    pub fn compare(policies: usize, serial: &SerialMode) -> Self {
        let bar = wanted(serial).then(|| {
            let b = ProgressBar::new(u64::try_from(policies).unwrap_or(u64::MAX));
            if let Ok(style) = ProgressStyle::with_template(
                "{spinner} compare [{pos}/{len}] policy {msg} ({elapsed})",
            ) {
                b.set_style(style);
            }
            b.enable_steady_tick(TICK);
            b
        });
        Self {
            bar,
            stop: None,
            thread: None,
        }
    }

    /// Marks policy number `index` (`name`) as running.
    pub fn policy(&mut self, index: usize, name: &str) {
        if let Some(b) = &self.bar {
            b.set_position(u64::try_from(index).unwrap_or(u64::MAX));
            b.set_message(name.to_string());
        }
    }

    /// The spinner of a `run`: appears after [`RUN_DELAY`] (hidden when not
    /// [`wanted`]).
    pub fn run(serial: &SerialMode) -> Self {
        if !wanted(serial) {
            return Self {
                bar: None,
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("progress".to_string())
            .spawn(move || {
                if rx.recv_timeout(RUN_DELAY) != Err(mpsc::RecvTimeoutError::Timeout) {
                    return;
                }
                let b = ProgressBar::new_spinner().with_elapsed(RUN_DELAY);
                if let Ok(style) =
                    ProgressStyle::with_template("{spinner} guest running ({elapsed})")
                {
                    b.set_style(style);
                }
                b.enable_steady_tick(TICK);
                let _ = rx.recv();
                b.finish_and_clear();
            })
            .ok();
        Self {
            bar: None,
            stop: Some(tx),
            thread,
        }
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_drawing_when_the_console_shares_the_terminal() {
        // Console output on standard error always shares it.
        assert!(!wanted(&SerialMode::Stderr));
        // Under `cargo test` standard error is captured, not a terminal.
        if !std::io::stderr().is_terminal() {
            assert!(!wanted(&SerialMode::Off));
            let mut p = Progress::run(&SerialMode::Off);
            assert!(p.thread.is_none());
            p.finish();
        }
    }
}
