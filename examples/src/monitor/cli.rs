//! `threatlocker-monitor`: argument parsing and the commands. The binary only calls
//! [`main`]; everything it does is here so tests can drive it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::error;

use crate::config::{Config, Env, ProcessEnv};
use crate::monitor::workflow::{RunOptions, Workflow, WorkflowError};
use crate::process::{
    init_logging_as, parse_args, runtime, LogFormat, EXIT_FAILED, EXIT_OK, EXIT_TEMPFAIL,
    EXIT_USAGE,
};

const LONG_ABOUT: &str = "\
Automates ThreatLocker approval-and-block triage for an MSP: every run reads the action log and \
the pending approval requests of every client organization, auto-approves what your rules call \
safe, finds repeat blocks and suspicious patterns, opens one PSA ticket per incident (never twice, \
even across crashes), applies the approved policy changes, notifies your team and prints a JSON \
report.

Start with `threatlocker-monitor demo`: it needs no account and shows a full run against a \
simulated ThreatLocker and ConnectWise PSA. Then write a configuration file (see \
examples/config.example.toml), check it with `doctor`, try `run --dry-run`, and schedule `run` \
every 30-60 minutes (or use `watch`, which also reacts to new approval requests at once and can \
produce the daily `report` at a local time).

SIGTERM and SIGINT (Ctrl-C) finish the step in progress, record the run as stopped and exit 0; \
a second signal exits at once.

Exit codes: 0 success (or stopped by a signal), 1 the run failed (the report is still printed \
with \"success\": false), 2 bad usage or configuration.";

/// Command-line interface of `threatlocker-monitor`.
#[derive(Debug, Parser)]
#[command(name = "threatlocker-monitor", version, about = "ThreatLocker approval and block monitoring for MSPs", long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log line format on stderr: human-readable text, or one JSON object per line (for
    /// journald, Loki, Elasticsearch).
    #[arg(long, value_enum, global = true, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[cfg(feature = "demo")]
    /// Run the real workflow twice against a simulated ThreatLocker Portal API and a simulated
    /// ConnectWise PSA on loopback. Needs no account and no configuration.
    ///
    /// Shows what a run does (events, approvals auto-approved or sent to review, detections,
    /// tickets), the JSON report, the tickets the PSA received, and that the second run (which
    /// overlaps the first, as scheduled runs do) opens no ticket twice. It also writes the
    /// day's report (as `threatlocker-monitor report` would) to an HTML file and prints its path.
    Demo {
        /// Print only the first run's report JSON.
        #[arg(long)]
        json: bool,
        /// Where to write the day's HTML report (created if missing).
        #[arg(long, value_name = "DIR", default_value = ".")]
        report_dir: PathBuf,
    },
    /// Run the workflow once and print the JSON report.
    ///
    /// The report goes to stdout (or --output), logs to stderr (filter with RUST_LOG, e.g.
    /// RUST_LOG=debug). Exit 0 on success, 1 when any step failed (the report is still printed,
    /// with "success": false and the errors), 2 for bad usage or configuration, 75 when another
    /// run held the state for longer than --lock-timeout.
    Run {
        /// The configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Perform no write anywhere (ThreatLocker, PSA, notifications, state file); list the
        /// writes that would be sent under "planned_writes".
        #[arg(long)]
        dry_run: bool,
        /// Write the report to this file instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// The whole run's time budget, e.g. 15m, 90s (default: `[workflow]` deadline, else
        /// 15m). Past it the run stops at a safe point, reports what it did with
        /// "success": false and "error_kind": "deadline", and leaves the rest to the next run.
        #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_deadline)]
        deadline: Option<Duration>,
        /// How long to wait for another run holding the state (e.g. 5m; default: `[state]`
        /// lock_timeout, else 5m); then exit 75 (try again later).
        #[arg(long, value_name = "DURATION", value_parser = parse_lock_timeout)]
        lock_timeout: Option<Duration>,
        /// Re-read the whole window from the API instead of taking its older hours from the
        /// aggregates earlier runs kept (each run otherwise reads only what is new, plus
        /// `[workflow] overlap`).
        #[arg(long)]
        full: bool,
    },
    /// Run the workflow on a schedule until stopped, reacting to new approval requests at once.
    ///
    /// A full run every --interval; between runs the pending approval count is polled (a rise
    /// runs the approval steps at once), optionally the action log for new High/Critical
    /// detections, and the daily report can be produced at a local time. Scheduled and
    /// triggered runs share the state file, so nothing is done twice. Each flag overrides the
    /// matching key of the `[watch]` or `[report]` section. A failed run is logged and retried at
    /// the next tick; each run logs one summary line with its figures, and with `[watch]`
    /// report_dir its JSON report is written there. SIGTERM or Ctrl-C finishes the step in
    /// progress (no side effect is left half-recorded), records the run as stopped and exits
    /// 0; a second signal exits at once. Exit 0 when stopped, 2 for bad usage or
    /// configuration.
    Watch {
        /// The configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Time between run starts, 10s to 7d, e.g. 30m, 1h (default: `[watch]` interval, else
        /// 30m).
        #[arg(long, value_name = "DURATION", value_parser = crate::monitor::triggers::parse_interval)]
        interval: Option<Duration>,
        /// Make every run a dry run: no write anywhere (ThreatLocker, PSA, notifications,
        /// state file); each run's report lists the writes it would send.
        #[arg(long)]
        dry_run: bool,
        /// Event-driven runs and the daily report.
        #[command(flatten)]
        triggers: crate::monitor::triggers::WatchTriggerArgs,
        /// Serve Prometheus metrics at http://ADDR/metrics and a health check at /healthz
        /// (503 after `[watch]` unhealthy_after failed runs in a row), e.g. 127.0.0.1:9184.
        #[arg(long, value_name = "ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// How long a run waits for another run holding the state before that tick is
        /// skipped (logged) (default: `[state]` lock_timeout, else 5m).
        #[arg(long, value_name = "DURATION", value_parser = parse_lock_timeout)]
        lock_timeout: Option<Duration>,
    },
    /// Produce the daily security report across every organization: totals and trend, top
    /// blocked applications and users, detections with evidence, approvals, tickets, policy
    /// changes, per-organization table, computers not in Secure mode.
    ///
    /// HTML (one self-contained file), Markdown or JSON, with the same numbers as the runs.
    /// Exit 0 on success, 1 when the report is incomplete (still written) or could not be sent,
    /// 2 for bad usage or configuration.
    Report(crate::monitor::report_cli::ReportArgs),
    /// Check the configuration (as `run` and `watch` read it), the ThreatLocker key and each
    /// permission the workflow needs, the PSA, the notifiers and the state directory; print a
    /// checklist with the fix for each failure.
    ///
    /// Every check runs, whatever failed before it. Nothing is written anywhere, and Teams and
    /// Slack webhooks are not contacted unless --send-test is given. Exit 0 when every check
    /// passed, 1 when any failed, 2 when the configuration file cannot be read.
    Doctor {
        /// The configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Print the checks as JSON (for automation) instead of a checklist.
        #[arg(long)]
        json: bool,
        /// Send a test message through each notification channel (Teams, Slack, e-mail): the
        /// only way to prove a webhook works.
        #[arg(long)]
        send_test: bool,
    },
}

fn parse_lock_timeout(s: &str) -> Result<Duration, String> {
    crate::time::parse_bounded_duration(s, Duration::ZERO, Duration::from_secs(24 * 3600))
}

/// Entry point of the binary: parses arguments (usage errors exit 2), sets up logging on
/// stderr and runs the command.
pub fn main() -> ExitCode {
    let cli: Cli = match parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let default_level = match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    // The client's requests and retries are counted for the metrics whatever the log filter
    // shows.
    let client_events = {
        use tracing_subscriber::Layer as _;
        crate::monitor::metrics::ClientEvents.with_filter(tracing_subscriber::filter::filter_fn(
            |m| m.target().starts_with("threatlocker_api"),
        ))
    };
    init_logging_as(default_level, true, cli.log_format, client_events);
    let runtime = match runtime(None, EXIT_FAILED) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let code = runtime.block_on(dispatch(cli.command, &ProcessEnv));
    ExitCode::from(code)
}

/// Runs one command; returns the exit code.
pub async fn dispatch(command: Command, env: &dyn Env) -> u8 {
    match command {
        #[cfg(feature = "demo")]
        Command::Demo { json, report_dir } => crate::monitor::demo::run(json, &report_dir).await,
        Command::Run {
            config,
            dry_run,
            output,
            deadline,
            lock_timeout,
            full,
        } => {
            run_once(
                &config,
                RunFlags {
                    dry_run,
                    full,
                    deadline,
                    lock_timeout,
                },
                output.as_deref(),
                env,
            )
            .await
        }
        Command::Watch {
            config,
            interval,
            dry_run,
            triggers,
            metrics_addr,
            lock_timeout,
        } => {
            watch(
                &config,
                interval,
                dry_run,
                &triggers,
                metrics_addr,
                lock_timeout,
                env,
            )
            .await
        }
        Command::Report(args) => crate::monitor::report_cli::run_report(&args, env).await,
        Command::Doctor {
            config,
            json,
            send_test,
        } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let options = crate::monitor::doctor::Options::new()
                .json(json)
                .send_test(send_test);
            crate::monitor::doctor::run(&config, env, &options).await
        }
    }
}

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {}", crate::errors::ErrorChain(&e));
        EXIT_USAGE
    })
}

/// The configuration `run` and `watch` use: the file, with the flags they share applied.
fn load_for_runs(path: &Path, dry_run: bool, lock_timeout: Option<Duration>) -> Result<Config, u8> {
    let mut config = load(path)?;
    if let Some(t) = lock_timeout {
        config.state_mut().lock_timeout = t;
    }
    if dry_run {
        config.workflow_mut().dry_run = true;
    }
    Ok(config)
}

fn setup_error(e: &WorkflowError) -> u8 {
    eprintln!("error: {}", crate::errors::ErrorChain(e));
    e.exit_code()
}

/// The `run` flags that change what one run does.
struct RunFlags {
    dry_run: bool,
    full: bool,
    deadline: Option<Duration>,
    lock_timeout: Option<Duration>,
}

async fn run_once(path: &Path, flags: RunFlags, output: Option<&Path>, env: &dyn Env) -> u8 {
    let RunFlags {
        dry_run,
        full,
        deadline,
        lock_timeout,
    } = flags;
    let mut config = match load_for_runs(path, dry_run, lock_timeout) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(d) = deadline {
        config.workflow_mut().deadline = d;
    }
    let workflow = match Workflow::from_config(&config, env) {
        Ok(w) => w,
        Err(e) => {
            let code = setup_error(&e);
            if code == EXIT_USAGE {
                return code;
            }
            // The state file is damaged or unreadable: still a report, with the reason.
            return emit_report(&failed_report_text(&e.to_string()), code, output);
        }
    };
    let shutdown = match crate::process::shutdown_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    let options = RunOptions::new().stop_flag(shutdown.flag()).full(full);
    let (text, code) = match workflow.run(options).await {
        Ok(out) => {
            let code = if out.report.success {
                EXIT_OK
            } else {
                EXIT_FAILED
            };
            (out.report_text(), code)
        }
        Err(WorkflowError::State(e)) if e.is_busy() => {
            error!("another run holds the state; try again later: {e}");
            (failed_report_text(&crate::errors::chain(&e)), EXIT_TEMPFAIL)
        }
        // Stopped by a signal: what was done is recorded (the run as `stopped`), the rest is
        // left for the next run; that is a clean end, not a failure.
        Err(e @ WorkflowError::Interrupted { .. }) => {
            tracing::warn!("{}", crate::errors::ErrorChain(&e));
            (failed_report_text(&crate::errors::chain(&e)), EXIT_OK)
        }
        Err(e) => {
            let message = crate::errors::chain(&e);
            error!("run failed: {message}");
            (failed_report_text(&message), EXIT_FAILED)
        }
    };
    emit_report(&text, code, output)
}

/// Writes the report to `output` (else stdout) and returns `code`, or exit 1 with the reason
/// when it cannot be written (a reader that closed the pipe early is not a failure).
fn emit_report(text: &str, code: u8, output: Option<&Path>) -> u8 {
    match output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, format!("{text}\n")) {
                eprintln!("error: cannot write {}: {e}", file.display());
                return EXIT_FAILED;
            }
            code
        }
        None => crate::output::print_or(&format!("{text}\n"), code, EXIT_FAILED),
    }
}

/// The report shape as JSON text with `success: false` and the error, for a run that could not
/// produce a report (fields in the original workflow's order).
pub fn failed_report_text(message: &str) -> String {
    #[derive(serde::Serialize)]
    struct Summary {
        total_events: u64,
        approval_requests: u64,
        blocked_applications: u64,
        security_alerts: u64,
        policy_changes: u64,
    }
    #[derive(serde::Serialize)]
    struct Blocked {
        unique_applications_blocked: u64,
        repeat_blocks: u64,
        tickets_created: u64,
    }
    #[derive(serde::Serialize)]
    struct Failed<'a> {
        success: bool,
        monitoring_summary: Summary,
        approval_requests: [(); 0],
        security_events: [(); 0],
        blocked_summary: Blocked,
        auto_approvals_processed: u64,
        manual_review_required: u64,
        errors: [&'a str; 1],
    }
    serde_json::to_string_pretty(&Failed {
        success: false,
        monitoring_summary: Summary {
            total_events: 0,
            approval_requests: 0,
            blocked_applications: 0,
            security_alerts: 0,
            policy_changes: 0,
        },
        approval_requests: [],
        security_events: [],
        blocked_summary: Blocked {
            unique_applications_blocked: 0,
            repeat_blocks: 0,
            tickets_created: 0,
        },
        auto_approvals_processed: 0,
        manual_review_required: 0,
        errors: [message],
    })
    .unwrap_or_default()
}

async fn watch(
    path: &Path,
    interval: Option<Duration>,
    dry_run: bool,
    triggers: &crate::monitor::triggers::WatchTriggerArgs,
    metrics_addr: Option<std::net::SocketAddr>,
    lock_timeout: Option<Duration>,
    env: &dyn Env,
) -> u8 {
    let config = match load_for_runs(path, dry_run, lock_timeout) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let shutdown = match crate::process::shutdown_on_signals() {
        Ok(s) => s,
        Err(code) => return code,
    };
    // Scheduled runs, approval polls and action-log polls, the daily report.
    crate::monitor::triggers::watch(&config, env, interval, triggers, &shutdown, metrics_addr).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_run_that_could_not_report_still_prints_the_report_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&failed_report_text("state database locked")).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["errors"][0], "state database locked");
        assert_eq!(v["monitoring_summary"]["total_events"], 0);
        assert_eq!(v["blocked_summary"]["tickets_created"], 0);
        assert!(v["approval_requests"].as_array().unwrap().is_empty());
    }

    #[test]
    fn intervals_parse_and_are_bounded() {
        use crate::monitor::triggers::parse_interval;
        assert_eq!(parse_interval("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_interval("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_interval("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_interval("1s").is_err());
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("8d").is_err());
        let e = parse_interval("400000y").unwrap_err();
        assert!(e.contains("out of range"), "{e}");
    }
}
