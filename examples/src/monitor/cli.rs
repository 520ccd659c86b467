//! `threatlocker-monitor`: argument parsing and the commands. The binary only calls
//! [`main`]; everything it does is here so tests can drive it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::{error, warn};

use crate::config::{Config, Env, ProcessEnv};
use crate::monitor::workflow::{RunOptions, Workflow, WorkflowError};
use crate::process::{init_logging, parse_args, runtime, EXIT_FAILED, EXIT_OK, EXIT_USAGE};

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

Exit codes: 0 success, 1 the run failed (the report is still printed with \"success\": false), \
2 bad usage or configuration.";

/// Command-line interface of `threatlocker-monitor`.
#[derive(Debug, Parser)]
#[command(name = "threatlocker-monitor", version, about = "ThreatLocker approval and block monitoring for MSPs", long_about = LONG_ABOUT)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// with "success": false and the errors), 2 for bad usage or configuration.
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
        /// Re-read the whole window from the API instead of taking its older hours from the
        /// aggregates earlier runs kept (each run otherwise reads only what is new, plus
        /// [workflow] overlap).
        #[arg(long)]
        full: bool,
    },
    /// Run the workflow on a schedule until stopped, reacting to new approval requests at once.
    ///
    /// A full run every --interval; between runs the pending approval count is polled (a rise
    /// runs the approval steps at once), optionally the action log for new High/Critical
    /// detections, and the daily report can be produced at a local time. Scheduled and
    /// triggered runs share the state file, so nothing is done twice. Each flag overrides the
    /// matching key of the [watch] or [report] section. A failed run is logged and retried at
    /// the next tick. Ctrl-C finishes the step in progress (no side effect is left
    /// half-recorded) and exits; a second Ctrl-C exits at once. Exit 0 when stopped, 2 for bad
    /// usage or configuration.
    Watch {
        /// The configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Time between run starts, e.g. 30m, 1h (default: [watch] interval, else 30m).
        #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
        interval: Option<Duration>,
        /// Make every run a dry run: no write anywhere (ThreatLocker, PSA, notifications,
        /// state file); each run's report lists the writes it would send.
        #[arg(long)]
        dry_run: bool,
        /// Event-driven runs and the daily report (issue 8).
        #[command(flatten)]
        triggers: crate::monitor::triggers::WatchTriggerArgs,
    },
    /// Produce the daily security report across every organization: totals and trend, top
    /// blocked applications and users, detections with evidence, approvals, tickets, policy
    /// changes, per-organization table, computers not in Secure mode.
    ///
    /// HTML (one self-contained file), Markdown or JSON, with the same numbers as the runs.
    /// Exit 0 on success, 1 when the report is incomplete (still written) or could not be sent,
    /// 2 for bad usage or configuration.
    Report(crate::monitor::report_cli::ReportArgs),
    /// Check the configuration, the ThreatLocker key and each permission the workflow needs,
    /// the PSA and the notifiers; print a checklist with the fix for each failure.
    ///
    /// Nothing is written anywhere. Exit 0 when every check passed, 1 when one failed, 2 for
    /// bad usage or configuration.
    Doctor {
        /// The configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30m, 1h)"))?;
    if d < Duration::from_secs(10) {
        return Err("the interval must be at least 10s".into());
    }
    Ok(d)
}

/// Entry point of the binary: parses arguments (usage errors exit 2), sets up logging on
/// stderr and runs the command.
pub fn main() -> ExitCode {
    let cli: Cli = match parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    init_logging(default_level, true);
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
        Command::Demo { json, report_dir } => crate::monitor::demo::run(json, &report_dir).await,
        Command::Run {
            config,
            dry_run,
            output,
            full,
        } => run_once(&config, dry_run, full, output.as_deref(), env).await,
        Command::Watch {
            config,
            interval,
            dry_run,
            triggers,
        } => watch(&config, interval, dry_run, &triggers, env).await,
        Command::Report(args) => crate::monitor::report_cli::run_report(&args, env).await,
        Command::Doctor { config } => {
            let config = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::monitor::doctor::run(&config, env).await
        }
    }
}

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

fn setup_error(e: &WorkflowError) -> u8 {
    eprintln!("error: {e}");
    match e {
        WorkflowError::Config(_) | WorkflowError::Connector { .. } => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

async fn run_once(
    path: &Path,
    dry_run: bool,
    full: bool,
    output: Option<&Path>,
    env: &dyn Env,
) -> u8 {
    let mut config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if dry_run {
        config.workflow_mut().dry_run = true;
    }
    let workflow = match build(&config, env) {
        Ok(w) => w,
        Err(code) => return code,
    };
    let (text, code) = match workflow.run(RunOptions::new().full(full)).await {
        Ok(out) => {
            let code = if out.report.success {
                EXIT_OK
            } else {
                EXIT_FAILED
            };
            (out.report_text(), code)
        }
        Err(e) => {
            error!("run failed: {e}");
            (failed_report_text(&e.to_string()), EXIT_FAILED)
        }
    };
    match output {
        Some(file) => {
            if let Err(e) = std::fs::write(file, format!("{text}\n")) {
                eprintln!("error: cannot write {}: {e}", file.display());
                return EXIT_FAILED;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
    }
    code
}

fn build(config: &Config, env: &dyn Env) -> Result<Workflow, u8> {
    // With `dry_run` the state file is only read: a dry run writes nothing anywhere.
    Workflow::from_config(config, env).map_err(|e| setup_error(&e))
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
    env: &dyn Env,
) -> u8 {
    let mut config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if dry_run {
        config.workflow_mut().dry_run = true;
    }
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                warn!("stopping: finishing the step in progress (Ctrl-C again to exit now)");
                stop.store(true, Ordering::SeqCst);
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    // Scheduled runs, approval-count and action-log polls, the daily report (issue 8).
    crate::monitor::triggers::watch(&config, env, interval, triggers, stop).await
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
        assert_eq!(parse_interval("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_interval("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_interval("1s").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
