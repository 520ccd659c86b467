//! `tl-investigate`: argument parsing and dispatch. The binary only calls [`main`].

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use policy_engine::investigate::FileQuery;

use super::output::{render, Format};
use super::progress::Progress;
use super::reports::{check_show_id, InvestigateError, Investigator};
use super::time::{parse_duration, parse_since, parse_time};
use crate::config::{Env, ProcessEnv};
use crate::process::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

const LONG_ABOUT: &str = "\
Investigates the ThreatLocker action log (the Unified Audit) across every client organization, \
with the same configuration file as threatlocker-monitor: every command needs --config FILE \
(it reads [threatlocker]; the API key comes from the variable named by api_key_env).

  timeline  every action on a host around a time, the first anomaly marked, parent chains
  file      where a hash or path appeared across the fleet: patient zero, permits vs blocks
  denials   users and computers with repeated blocks, and approval requests explaining them
  bypass    audit-only denies on Secure-mode computers, grouped by policy
  show      one action in full detail, by its eActionLogId

Output is a table by default, --json for machines, --csv for spreadsheets; every row carries the \
action-log ids (actionLogId and eActionLogId) so the source rows can be pulled again. Times are \
UTC ISO 8601 (2026-05-14T13:00:00Z); relative forms such as 30m, 24h, 7d are accepted. Progress \
of long pulls is shown on stderr when it is a terminal.

Exit codes: 0 success, 1 the Portal API failed, 2 bad usage or configuration.";

/// Command line of `tl-investigate`.
#[derive(Debug, Parser)]
#[command(name = "tl-investigate", version, about = "Investigate the ThreatLocker action log across the fleet", long_about = LONG_ABOUT)]
pub struct Cli {
    /// The configuration file (TOML, shared with threatlocker-monitor).
    #[arg(long, short, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true, conflicts_with = "csv")]
    pub json: bool,
    /// Print CSV (RFC 4180, a header row) instead of a table.
    #[arg(long, global = true)]
    pub csv: bool,
    /// The investigation.
    #[command(subcommand)]
    pub command: Command,
}

/// The investigations.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every action on a host within --at ± --window, oldest first, the first anomaly (first
    /// unusual binary, first child of a LOLBin, first network-active process) marked `>>`,
    /// with parent-process chains from the action details.
    Timeline {
        /// Host name as ThreatLocker shows it (case-insensitive).
        #[arg(long, value_name = "NAME")]
        host: String,
        /// The time of the alert: UTC ISO 8601, or how long ago (2h).
        #[arg(long, value_name = "TIME")]
        at: String,
        /// Half-width of the window around --at.
        #[arg(long, default_value = "1h", value_name = "DURATION")]
        window: String,
        /// Most action-detail calls for parent chains (anomalies first).
        #[arg(long, default_value_t = 25, value_name = "N")]
        max_details: usize,
    },
    /// Where a file appeared across the fleet: computers, earliest sighting per computer
    /// (patient zero first), permits (possibly impacted) vs blocks (stopped), and each
    /// computer's file history. A hash pivot scans the action log over the period.
    File {
        /// The file to look for.
        #[command(flatten)]
        target: FileTarget,
        /// How far back: a duration (7d) or a UTC time.
        #[arg(long, default_value = "7d", value_name = "WHEN")]
        since: String,
        /// Most file-history rows per computer and path.
        #[arg(long, default_value_t = 100, value_name = "N")]
        max_history: usize,
    },
    /// Users and computers with at least --threshold enforced blocks, their top applications
    /// and the pending approval requests that may explain them.
    Denials {
        /// How far back: a duration (24h) or a UTC time.
        #[arg(long, default_value = "24h", value_name = "WHEN")]
        since: String,
        /// Blocks needed to be listed (default: org_variables.threatlocker_block_alert_threshold,
        /// else 3).
        #[arg(long, value_name = "N")]
        threshold: Option<u32>,
    },
    /// Audit-only (monitor-mode) denies on Secure-mode computers, grouped by policy, with the
    /// suggestion to turn the rule into a block.
    Bypass {
        /// How far back: a duration (24h) or a UTC time.
        #[arg(long, default_value = "24h", value_name = "WHEN")]
        since: String,
    },
    /// One action in full detail with its parent chain.
    Show {
        /// The action's eActionLogId (the string id; the numeric actionLogId cannot be looked
        /// up through the V2 API).
        #[arg(value_name = "ACTION_ID")]
        id: String,
    },
}

/// `--hash` or `--path`, exactly one.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct FileTarget {
    /// SHA-256 of the file (ThreatLocker's sha256Hash or hash).
    #[arg(long, value_name = "SHA256")]
    pub hash: Option<String>,
    /// Full path (case-insensitive, `*` wildcards allowed).
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
}

/// The `[investigate]` section: no keys yet, so any key in it is a mistake to report.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct InvestigateSection {}

/// Checks `[investigate]` (read through [`Config::section`](crate::config::Config::section));
/// an unknown key is an error naming `investigate.<key>`.
pub fn check_section(config: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    config
        .section::<InvestigateSection>("investigate")
        .map(|_| ())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli: Cli = match crate::process::parse_args() {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::process::init_logging("warn", false);
    let runtime = match crate::process::runtime(Some(2), EXIT_FAILED) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let now = Utc::now();
    let now = now - chrono::Duration::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
    let (code, out) = runtime.block_on(run(cli, &ProcessEnv, now));
    if out.is_empty() {
        return ExitCode::from(code);
    }
    // A reader that left early (`| head`) is not a failure; a failed write is.
    ExitCode::from(crate::output::print_or(&out, code, EXIT_FAILED))
}

fn usage(message: impl std::fmt::Display) -> (u8, String) {
    eprintln!("error: {message}");
    (EXIT_USAGE, String::new())
}

/// Runs a parsed command line at `now`; returns the exit code and what goes to stdout.
/// Errors are printed on stderr.
pub async fn run(cli: Cli, env: &dyn Env, now: DateTime<Utc>) -> (u8, String) {
    let format = if cli.json {
        Format::Json
    } else if cli.csv {
        Format::Csv
    } else {
        Format::Table
    };
    // Argument checks that need no configuration come first.
    if let Command::Show { id } = &cli.command {
        if let Err(e) = check_show_id(id.trim()) {
            return usage(e);
        }
    }
    let Some(path) = cli.config else {
        return usage(crate::cli_common::NO_CONFIG);
    };
    let config = match crate::config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    if let Err(e) = check_section(&config) {
        return usage(e);
    }
    let client = match config.threatlocker_client(env) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    // The configured rules, validated as the monitor validates them.
    let rules = match config.engine() {
        Ok(engine) => engine.config().rules.clone(),
        Err(e) => return usage(e),
    };
    let inv = Investigator::new(
        client,
        config.threatlocker().include_child_organizations,
        Progress::auto(),
    )
    .with_rules(rules);
    let result = match cli.command {
        Command::Timeline {
            host,
            at,
            window,
            max_details,
        } => {
            let at = match parse_time(&at, now) {
                Ok(t) => t,
                Err(e) => return usage(format!("--at: {e}")),
            };
            let window = match parse_duration(&window) {
                Ok(w) => w,
                Err(e) => return usage(format!("--window: {e}")),
            };
            inv.timeline(&host, at, window, max_details)
                .await
                .map(|r| render(&r, format))
        }
        Command::File {
            target,
            since,
            max_history,
        } => {
            let since = match parse_since(&since, now) {
                Ok(t) => t,
                Err(e) => return usage(format!("--since: {e}")),
            };
            let query = match (target.hash, target.path) {
                (Some(h), _) => FileQuery::Hash(h.trim().to_owned()),
                (None, Some(p)) => FileQuery::Path(p),
                (None, None) => return usage("give --hash SHA256 or --path PATH"),
            };
            inv.file(query, since, now, max_history)
                .await
                .map(|r| render(&r, format))
        }
        Command::Denials { since, threshold } => {
            let since = match parse_since(&since, now) {
                Ok(t) => t,
                Err(e) => return usage(format!("--since: {e}")),
            };
            let threshold = match threshold {
                Some(t) => t,
                None => match config
                    .org_variables()
                    .get("threatlocker_block_alert_threshold")
                {
                    None => 3,
                    Some(toml::Value::Integer(n)) if (1..=i64::from(u32::MAX)).contains(n) => {
                        *n as u32
                    }
                    Some(other) => {
                        return usage(format!(
                            "key `org_variables.threatlocker_block_alert_threshold`: expected a positive integer, found {}", other.type_str()
                        ))
                    }
                },
            };
            inv.denials(since, now, threshold)
                .await
                .map(|r| render(&r, format))
        }
        Command::Bypass { since } => {
            let since = match parse_since(&since, now) {
                Ok(t) => t,
                Err(e) => return usage(format!("--since: {e}")),
            };
            inv.bypass(since, now).await.map(|r| render(&r, format))
        }
        Command::Show { id } => inv.show(&id).await.map(|r| render(&r, format)),
    };
    match result {
        Ok(out) => (EXIT_OK, out),
        Err(InvestigateError::Usage(m)) => usage(m),
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            (EXIT_FAILED, String::new())
        }
    }
}
