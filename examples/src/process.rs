//! Process plumbing the three binaries share (`threatlocker-monitor`, `tl-investigate`,
//! `siem-forward`): the exit codes, argument parsing with the same codes for usage errors, logs
//! on stderr, and one async runtime.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and failed (a run's report is still printed, with
/// `"success": false`).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or configuration.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: another run holds the state; try again later (`EX_TEMPFAIL` of sysexits.h).
pub const EXIT_TEMPFAIL: u8 = 75;

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Parses the command line; `--help`/`--version` exit 0, usage errors exit 2 (the message
/// printed by clap).
pub fn parse_args<C: Parser>() -> Result<C, ExitCode> {
    // The shared conventions: --color, completions, man, configuration discovery.
    match crate::cli_common::parse::<C>(&crate::config::ProcessEnv) {
        crate::cli_common::Parsed::Args(c) => Ok(c),
        crate::cli_common::Parsed::Exit(code) => Err(code),
    }
}

/// Logs on stderr, filtered by `RUST_LOG` (else `default_level`); colours as `--color` and
/// `NO_COLOR` decide (by default only on a terminal).
pub fn init_logging(default_level: &str, with_time: bool) {
    init_logging_as(
        default_level,
        with_time,
        LogFormat::Text,
        tracing_subscriber::layer::Identity::new(),
    );
}

/// [`init_logging`] in `format`, with `extra` seeing every event whatever the filter shows
/// (`threatlocker-monitor` counts the client's retries for its metrics that way).
pub fn init_logging_as<L>(default_level: &str, with_time: bool, format: LogFormat, extra: L)
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    use tracing_subscriber::prelude::*;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
    };
    let registry = tracing_subscriber::registry().with(extra);
    let _ = match (format, with_time) {
        (LogFormat::Json, _) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr)
                    .with_filter(filter()),
            )
            .try_init(),
        (LogFormat::Text, true) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(crate::cli_common::stderr_color())
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
        (LogFormat::Text, false) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .without_time()
                    .with_writer(std::io::stderr)
                    .with_ansi(crate::cli_common::stderr_color())
                    .with_target(false)
                    .with_filter(filter()),
            )
            .try_init(),
    };
}

/// The multi-threaded runtime (`workers` threads, or one per core); if it cannot start, says
/// so and returns `fail_code`.
pub fn runtime(workers: Option<usize>, fail_code: u8) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(fail_code)
    })
}

/// Stops on the first SIGTERM or SIGINT (a second exits at once; see
/// [`Shutdown::on_signals`](crate::shutdown::Shutdown::on_signals)); if the handlers cannot be
/// installed, says so and returns [`EXIT_FAILED`]. Must be called inside a tokio runtime.
pub fn shutdown_on_signals() -> Result<crate::shutdown::Shutdown, u8> {
    crate::shutdown::Shutdown::on_signals().map_err(|e| {
        eprintln!(
            "error: cannot handle signals: {}",
            crate::errors::ErrorChain(&e)
        );
        EXIT_FAILED
    })
}
