//! `siem-forward`: argument parsing and the pass loop. The binary only calls [`main`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use policy_engine::{Engine, EngineConfig};
use psa_connectors::syslog::SyslogSink;

use super::config::{load, SeverityMode, SourceKind};
use super::forward::{Forwarder, SiemError};
use super::store::SentStore;
use crate::config::{Env, ProcessEnv};
use crate::process::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::state::StateStore;

const LONG_ABOUT: &str = "\
Forwards ThreatLocker's action log (and, per [siem] sources, the portal's system audit and the \
monitoring workflow's own decisions) to a syslog receiver over UDP, TCP or TLS (octet-counting or \
newline framing), as CEF or JSON. Each record is sent once: a checkpoint and the ids sent are kept in the state \
file and move only after the receiver accepted a batch; overlapping windows are de-duplicated by \
id; a receiver that goes away is retried with backoff.

Configure it in the [siem] section of the threatlocker-monitor configuration file: transport \
and address are required; examples/config.example.toml documents every key (format, sources, \
framing, sd_id, max_datagram, batch_size, overlap, initial_lookback, max_window, severity, \
retain_ids, facility, hostname, app_name, max_attempts, [siem.tls] ca_file, pinned_cert and \
server_name) with its default. The --once report counts records sent, already sent, batches, \
retries and records truncated to fit a UDP datagram.

Without --once it polls every --interval until Ctrl-C (the batch in flight is either recorded \
or resent later, never lost). Exit codes: 0 success, 1 a pass failed, 2 bad usage or \
configuration.";

/// Command line of `siem-forward`.
#[derive(Debug, Parser)]
#[command(name = "siem-forward", version, about = "Forward ThreatLocker events to a SIEM over syslog, each once", long_about = LONG_ABOUT)]
pub struct Cli {
    /// The configuration file (TOML, shared with threatlocker-monitor; needs a `[siem]` section).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// One pass, then exit.
    #[arg(long)]
    pub once: bool,
    /// Time between pass starts, at least 1s (e.g. 30s, 1m, 5m).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 1m)"))?;
    if d < Duration::from_secs(1) {
        return Err("the interval must be at least 1s".into());
    }
    Ok(d)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli: Cli = match crate::process::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::process::init_logging("info", true);
    let runtime = match crate::process::runtime(Some(2), EXIT_FAILED) {
        Ok(r) => r,
        Err(code) => return code,
    };
    // SIGTERM (systemd, Docker) and Ctrl-C alike; a second signal exits at once.
    ExitCode::from(runtime.block_on(async {
        let shutdown = match crate::process::shutdown_on_signals() {
            Ok(s) => s,
            Err(code) => return code,
        };
        run(&cli, &ProcessEnv, async move { shutdown.wait().await }).await
    }))
}

/// Builds the forwarder from the configuration file (errors are usage errors, exit 2).
pub fn build(path: &Path, env: &dyn Env) -> Result<Forwarder, String> {
    let (config, siem) = load(path).map_err(|e| crate::errors::chain(&e))?;
    let siem = siem.ok_or_else(|| {
        format!(
            "{}: key `siem`: missing; add a [siem] section with at least transport and address",
            path.display()
        )
    })?;
    let sink = SyslogSink::new(siem.sink_config()).map_err(|e| format!("key `siem`: {e}"))?;
    let store = SentStore::new(Arc::new(
        StateStore::open_config(&config, env).map_err(|e| crate::errors::chain(&e))?,
    ));
    let needs_client = siem
        .sources
        .iter()
        .any(|s| matches!(s, SourceKind::ActionLog | SourceKind::SystemAudit));
    let engine = if siem.severity == SeverityMode::Engine {
        let ec: EngineConfig = config
            .engine_section()
            .map_err(|e| crate::errors::chain(&e))?;
        Some(Engine::new(ec).map_err(|e| format!("engine configuration: {e}"))?)
    } else {
        None
    };
    let decisions = siem.sources.contains(&SourceKind::Decisions);
    let mut fwd = Forwarder::new(siem, Arc::new(sink), store);
    if needs_client {
        let client = config
            .threatlocker_client(env)
            .map_err(|e| crate::errors::chain(&e))?;
        fwd = fwd.with_client(client, config.threatlocker().include_child_organizations);
    }
    if decisions {
        fwd = fwd.with_state(
            StateStore::open_config(&config, env).map_err(|e| crate::errors::chain(&e))?,
        );
    }
    if let Some(engine) = engine {
        fwd = fwd.with_engine(engine);
    }
    Ok(fwd)
}

/// Runs the command line until done or `shutdown`; returns the exit code.
pub async fn run(cli: &Cli, env: &dyn Env, shutdown: impl std::future::Future<Output = ()>) -> u8 {
    let fwd = match build(&cli.config, env) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if cli.once {
        let mut shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => EXIT_OK,
            r = fwd.run_once() => match r {
                Ok(summary) => match serde_json::to_string(&summary) {
                    // A reader that left early (`| head`) is not a failure; a failed write is.
                    Ok(s) => crate::output::print_or(&format!("{s}\n"), EXIT_OK, EXIT_FAILED),
                    Err(e) => {
                        eprintln!("error: {e}");
                        EXIT_FAILED
                    }
                },
                Err(e) => report(&e),
            }
        }
    } else {
        match fwd
            .with_max_attempts(None)
            .run(cli.interval, shutdown)
            .await
        {
            Ok(()) => EXIT_OK,
            Err(e) => report(&e),
        }
    }
}

fn report(e: &SiemError) -> u8 {
    eprintln!("error: {}", crate::errors::ErrorChain(e));
    EXIT_FAILED
}
