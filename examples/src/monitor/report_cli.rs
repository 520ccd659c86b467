//! `threatlocker-monitor report`: the daily security report from the command line.
//!
//! ```text
//! threatlocker-monitor report --config FILE [--since 24h] [--format html|markdown|json]
//!                             [--output FILE] [--send] [--timezone Europe/Berlin] [--top N]
//! ```
//!
//! `--timezone` and `--top` override the `[report]` section's `timezone` and `top`.
//!
//! Reads ThreatLocker (nothing is written there), evaluates with the engine of the runs, reads
//! what the runs did from the state file (opened read-only), and prints the report (or writes
//! it to `--output`). `--send` e-mails the HTML with a plain-text alternative to
//! `org_variables.threatlocker_notification_recipients` through `[notify.email]`.
//!
//! Exit codes as for `run`: 0 success, 1 the report is incomplete (it is still written, with the
//! errors in it) or could not be sent, 2 bad usage or configuration.

use std::path::PathBuf;
use std::time::Duration as StdDuration;

use chrono::{Duration, Utc};
use chrono_tz::Tz;
use clap::Args;

use crate::config::{Config, Env};
use crate::monitor::report::{self, ComputeOptions, Format, ReportSettings, Scope, DEFAULT_TOP_N};
use crate::process::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};
use crate::state::StateStore;

/// Arguments of `threatlocker-monitor report`.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// The configuration file (TOML).
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The period, ending now: 1h to 90d (e.g. 24h, 7d).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_since)]
    pub since: StdDuration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    pub format: Format,
    /// Write the report to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// E-mail the report (HTML with a plain-text alternative) to
    /// threatlocker_notification_recipients through [notify.email].
    #[arg(long)]
    pub send: bool,
    /// The IANA time zone times are shown in, e.g. Europe/Berlin (default: [report] timezone,
    /// else UTC).
    #[arg(long, value_name = "ZONE", env = "THREATLOCKER_REPORT_TIMEZONE")]
    pub timezone: Option<String>,
    /// Entries in the top-applications and top-users lists (default: [report] top, else 10).
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
}

/// Parses `--since`: a humantime duration from one hour to 90 days.
pub fn parse_since(s: &str) -> Result<StdDuration, String> {
    crate::time::parse_bounded_duration(
        s,
        StdDuration::from_secs(3600),
        StdDuration::from_secs(90 * 24 * 3600),
    )
}

/// The recipients in `org_variables.threatlocker_notification_recipients` (a list, or a
/// comma-separated string).
pub fn recipients(config: &Config) -> Vec<String> {
    match config
        .org_variables()
        .get("threatlocker_notification_recipients")
    {
        Some(toml::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        Some(toml::Value::String(s)) => s
            .split([',', ';'])
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs `report` with `env` supplying secrets; returns the exit code.
pub async fn run_report(args: &ReportArgs, env: &dyn Env) -> u8 {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            return EXIT_USAGE;
        }
    };
    let settings = match ReportSettings::from_config(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            return EXIT_USAGE;
        }
    };
    // The flag (or its environment variable) overrides [report] timezone.
    let tz: Tz = match &args.timezone {
        None => settings.timezone.unwrap_or(Tz::UTC),
        Some(name) => match report::parse_timezone("--timezone", name) {
            Ok(tz) => tz,
            Err(e) => {
                eprintln!("error: {}", crate::errors::ErrorChain(&e));
                return EXIT_USAGE;
            }
        },
    };
    let setup = || -> Result<_, String> {
        let client = config
            .threatlocker_client(env)
            .map_err(|e| crate::errors::chain(&e))?;
        let engine = config.engine().map_err(|e| crate::errors::chain(&e))?;
        let state = StateStore::open_config_read_only(&config, env)
            .map_err(|e| crate::errors::chain(&e))?;
        let email = if args.send {
            let to = recipients(&config);
            if config.notify().email.is_none() {
                return Err("--send needs [notify.email] in the configuration".to_owned());
            }
            if to.is_empty()
                && config
                    .notify()
                    .email
                    .as_ref()
                    .is_some_and(|e| e.to.is_empty())
            {
                return Err("key `org_variables.threatlocker_notification_recipients`: --send needs at least one recipient".to_owned());
            }
            let notifier = crate::connect::notifiers(&config, env)
                .map_err(|e| crate::errors::chain(&e))?
                .into_iter()
                .find(|n| n.name() == "email");
            Some((notifier, to))
        } else {
            None
        };
        Ok((client, engine, state, email))
    };
    let (client, engine, state, email) = match setup() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let since = Duration::from_std(args.since).unwrap_or(Duration::hours(24));
    let options = ComputeOptions {
        top_n: args.top.or(settings.top).unwrap_or(DEFAULT_TOP_N),
        timezone: tz.name().to_owned(),
    };
    let daily = match report::daily_report(
        &client,
        &engine,
        &state,
        &Scope::from_config(&config),
        Utc::now(),
        since,
        &options,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            return EXIT_FAILED;
        }
    };
    let text = match report::render(&daily, args.format) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            return EXIT_FAILED;
        }
    };
    match &args.output {
        Some(path) => {
            if let Err(e) = report::write_file(path, &text) {
                eprintln!("error: {}", crate::errors::ErrorChain(&e));
                return EXIT_FAILED;
            }
            eprintln!("report written to {}", path.display());
        }
        None => {
            if crate::output::print_or(&format!("{text}\n"), EXIT_OK, EXIT_FAILED) != EXIT_OK {
                return EXIT_FAILED;
            }
        }
    }
    let mut code = if daily.errors.is_empty() {
        EXIT_OK
    } else {
        eprintln!("the report is incomplete: {}", daily.errors.join("; "));
        EXIT_FAILED
    };
    if let Some((Some(notifier), to)) = email {
        match report::send_report(notifier.as_ref(), &daily, &to).await {
            Ok(()) => eprintln!(
                "report sent to {}",
                if to.is_empty() {
                    "the [notify.email] recipients".to_owned()
                } else {
                    to.join(", ")
                }
            ),
            Err(e) => {
                eprintln!("error: {}", crate::errors::ErrorChain(&e));
                code = EXIT_FAILED;
            }
        }
    }
    code
}
