//! Progress of long pulls, on stderr and only when stderr is a terminal (so pipes, cron mail
//! and CI logs stay clean).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counts rows as they arrive and shows `label: N rows` on one rewritten stderr line.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    shown: AtomicU64,
}

impl Progress {
    /// Shown only when stderr is a terminal.
    pub fn auto() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }

    /// Explicitly on or off.
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            started: Instant::now(),
            shown: AtomicU64::new(0),
        }
    }

    /// Whether anything is printed.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Reports `n` items of `label` so far (printed every 250 items).
    pub fn update(&self, label: &str, n: u64) {
        if !self.enabled || (!n.is_multiple_of(250) && n != 1) {
            return;
        }
        self.shown.store(n, Ordering::Relaxed);
        let secs = self.started.elapsed().as_secs_f64();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{label}: {n} ({secs:.0}s)");
        let _ = err.flush();
    }

    /// Reports a step without a count.
    pub fn step(&self, message: &str) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K{message}");
            let _ = err.flush();
        }
    }

    /// Clears the progress line.
    pub fn finish(&self) {
        if self.enabled {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}
