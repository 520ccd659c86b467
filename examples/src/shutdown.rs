//! Graceful shutdown: SIGTERM (what systemd, Docker and Kubernetes send) and SIGINT (Ctrl-C)
//! are handled alike.
//!
//! The first signal cancels one [`CancellationToken`] and raises the stop flag the workflow
//! checks between its steps: the step in progress finishes (no side effect is left
//! half-recorded), the run is recorded as stopped, and the command exits 0. Sleeps between
//! `watch` ticks end at once. A second signal exits at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::warn;

/// Exit code after a second signal: 128 + the signal number, as a shell reports a process
/// killed by it.
const fn killed_exit_code(signal: i32) -> i32 {
    128 + signal
}

/// The shutdown request shared by everything a command runs: a token to wait on and the flag
/// the workflow polls at its safe points. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    flag: Arc<AtomicBool>,
}

impl Shutdown {
    /// A shutdown not yet requested, not tied to any signal (tests, embedding).
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests the shutdown.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    /// Whether the shutdown was requested.
    pub fn requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The token cancelled on shutdown.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The flag raised on shutdown (what [`RunOptions::stop_flag`] takes).
    ///
    /// [`RunOptions::stop_flag`]: crate::monitor::workflow::RunOptions::stop_flag
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    /// Completes when the shutdown is requested.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// A shutdown requested by the first SIGTERM or SIGINT; the second one exits the process
    /// at once. Must be called inside a tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        let shutdown = Self::new();
        let mut signals = Signals::new()?;
        let s = shutdown.clone();
        tokio::spawn(async move {
            let Some(first) = signals.next().await else {
                return;
            };
            warn!(
                signal = first.name(),
                "stopping: finishing the step in progress (send the signal again to exit now)"
            );
            s.request();
            if let Some(second) = signals.next().await {
                warn!(signal = second.name(), "second signal: exiting now");
                std::process::exit(killed_exit_code(second.number()));
            }
        });
        Ok(shutdown)
    }
}

#[derive(Debug, Clone, Copy)]
enum Signal {
    Interrupt,
    #[cfg_attr(not(unix), allow(dead_code))]
    Terminate,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    fn number(self) -> i32 {
        match self {
            Self::Interrupt => 2,
            Self::Terminate => 15,
        }
    }
}

struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn next(&mut self) -> Option<Signal> {
        #[cfg(unix)]
        {
            tokio::select! {
                s = self.term.recv() => s.map(|()| Signal::Terminate),
                s = self.int.recv() => s.map(|()| Signal::Interrupt),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c()
                .await
                .ok()
                .map(|()| Signal::Interrupt)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_cancels_the_token_and_raises_the_flag() {
        let s = Shutdown::new();
        let flag = s.flag();
        assert!(!s.requested() && !flag.load(Ordering::SeqCst));
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.wait().await }
        });
        s.request();
        waiter.await.unwrap();
        assert!(s.requested() && flag.load(Ordering::SeqCst));
    }
}
