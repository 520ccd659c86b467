//! The daily security report: one report across every organization for a period (by default
//! the last 24 hours), as a self-contained HTML file, Markdown or JSON, optionally e-mailed.
//!
//! # Same numbers as the runs
//!
//! The report is computed from the same engine as every workflow run: the period's action-log
//! rows, pending approval requests and computers go through [`policy_engine::Engine::evaluate`],
//! and the headline numbers (`monitoring_summary`, `blocked_summary`,
//! `auto_approvals_processed`, `manual_review_required`) are [`policy_engine::build_report`]'s,
//! with the [`Outcomes`](policy_engine::Outcomes) rebuilt from the state store's intents
//! ([`Activity`]). The details (blocks per hour, top applications and users, per-organization
//! counts) follow the same definitions, and [`compute()`] reports an error in the report itself
//! if its own counts ever differed from the engine's.
//!
//! What the runs *did* in the period — tickets opened and updated, requests permitted, policy
//! deploys — comes from the state store shared with the runs, so the report shows exactly what
//! was done, once.
//!
//! # Shape
//!
//! - [`model`]: the [`DailyReport`] data, serialised as the JSON format.
//! - [`compute()`]: pure, from an engine [`Input`], its
//!   [`Decisions`](policy_engine::Decisions) and the [`Activity`].
//! - [`mod@render`]: `minijinja` templates (escaping on for every value), `plotters` SVG charts.
//! - [`gather`] and [`daily_report`]: the I/O edge — reads ThreatLocker and the state store.
//! - [`send_report`]: e-mails the HTML with a plain-text (Markdown) alternative.

pub mod chart;
mod compute;
pub mod model;
pub mod render;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use policy_engine::{Engine, Input, RiskLevel, WindowState};
use psa_connectors::{Notification, Notifier, Severity};
use threatlocker_api::{ActionLogRow, Client};

pub use compute::{
    compute, compute_with, period_events, Activity, ComputeOptions, DeployDone, PermitDone,
    RowTally, DEFAULT_TOP_N,
};
pub use model::DailyReport;
pub use render::{render, Format, RenderError};

use crate::monitor::workflow::fetch;
pub use crate::monitor::workflow::Scope;
use crate::state::StateStore;

/// Why a report could not be produced, written or sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// A configuration value is unusable; names the key.
    #[error("key `{key}`: {message}")]
    Config {
        /// The dotted key (`report.timezone`) or flag (`--since`).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The state store could not be read.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Writing the file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A section of the configuration file is malformed (an unknown key, a wrong type).
    #[error(transparent)]
    File(#[from] crate::config::ConfigError),
    /// Sending failed.
    #[error("sending the report through {channel}: {message}")]
    Send {
        /// The notifier.
        channel: String,
        /// Why.
        message: String,
    },
}

/// Parses an IANA zone name (`Europe/Berlin`, `UTC`); the error names `key`.
pub fn parse_timezone(key: &str, name: &str) -> Result<Tz, ReportError> {
    name.trim().parse::<Tz>().map_err(|_| ReportError::Config {
        key: key.to_owned(),
        message: format!(
            "{name:?} is not an IANA time zone name (for example \"Europe/London\", \"America/New_York\", \"UTC\")"
        ),
    })
}

/// The `[report]` section of the configuration file:
///
/// ```toml
/// [report]
/// timezone = "Europe/Berlin"    # IANA zone of the report's times and of daily_report_at (default UTC)
/// daily_report_at = "07:00"     # watch: produce the daily report at this local time
/// directory = "reports"         # watch: where daily reports are written (relative to the file)
/// top = 10                      # entries in the top lists
/// ```
///
/// Command-line flags (`--timezone`, `--daily-report-at`, `--report-dir`, `--top`) override it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ReportSettings {
    /// `timezone`.
    pub timezone: Option<Tz>,
    /// `daily_report_at`.
    pub daily_report_at: Option<chrono::NaiveTime>,
    /// `directory` (relative paths anchored at the configuration file's directory).
    pub directory: Option<PathBuf>,
    /// `top`.
    pub top: Option<usize>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReport {
    timezone: Option<String>,
    daily_report_at: Option<String>,
    directory: Option<PathBuf>,
    top: Option<i64>,
}

impl ReportSettings {
    /// Reads the `[report]` section of `config` (all unset when there is none); unknown keys
    /// and bad values are errors naming `report.<key>`. A relative `directory` is anchored at
    /// the configuration file's directory.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, ReportError> {
        let Some(raw) = config.section::<RawReport>("report")? else {
            return Ok(Self::default());
        };
        let err = |key: &str, message: String| ReportError::Config {
            key: format!("report.{key}"),
            message,
        };
        Ok(Self {
            timezone: raw
                .timezone
                .map(|name| parse_timezone("report.timezone", &name))
                .transpose()?,
            daily_report_at: raw
                .daily_report_at
                .map(|s| {
                    crate::time::parse_time_of_day("report.daily_report_at", &s)
                        .map_err(|m| err("daily_report_at", m))
                })
                .transpose()?,
            directory: raw.directory.map(|d| config.base_dir().join(d)),
            top: raw
                .top
                .map(|n| {
                    usize::try_from(n)
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            err(
                                "top",
                                format!("expected a number from 1 to 1000, found {n}"),
                            )
                        })
                })
                .transpose()?,
        })
    }
}

/// Reads everything the engine needs for `[start, end)` except the rows, which go to `on_row`
/// as they arrive: organizations (the home organization once its rows or computers name it),
/// computers and pending approval requests with their applications and research categories.
/// The returned [`Input`] holds no events. Failures are collected as messages (the report is
/// still produced and lists them); nothing is written anywhere.
///
/// These are the workflow's own steps 1 and 2 (every action type, whatever the `[workflow]`
/// switches), so the report reads exactly what a run reads. The reader de-duplicates rows per
/// organization, and a row belongs to one.
async fn read_period(
    client: &Client,
    scope: &Scope,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    on_row: &mut (dyn FnMut(ActionLogRow) + Send),
) -> (Input, Vec<String>) {
    let listed = fetch::list_scope(client, scope).await;
    let mut errors = listed.errors.clone();
    // The window ends at the run's start: that is the `now` rows are judged against.
    let read = fetch::read_events(client, scope, &listed, &[(start, end)], &[], end, on_row).await;
    errors.extend(read.errors);
    let (computers, mut more) = fetch::computers_in_scope(client, scope).await;
    errors.append(&mut more);
    let mut organizations = listed.organizations;
    fetch::add_home_organization(&mut organizations, read.unlisted, &computers);
    let (approvals, mut more) = fetch::pending_approvals(client, scope).await;
    errors.append(&mut more);
    let input = Input::new(now, start, end)
        .with_approvals(approvals)
        .with_computers(computers)
        .with_organizations(organizations);
    (input, errors)
}

/// Reads everything the engine needs for `[start, end)`: organizations, the action log of each
/// organization in scope, computers, and pending approval requests with their applications and
/// research categories, as a run reads them (every action type). The rows are held in the
/// returned [`Input`]; [`daily_report`] reads the same but streams the rows instead. Failures
/// are collected as messages; nothing is written anywhere.
pub async fn gather(
    client: &Client,
    scope: &Scope,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (Input, Vec<String>) {
    let mut rows = Vec::new();
    let (input, errors) = read_period(client, scope, now, start, end, &mut |r| rows.push(r)).await;
    (input.with_events(rows), errors)
}

/// Produces the daily report for the `since` hours ending at `now`: reads what [`gather`]
/// reads, with each row counted into the report's tally and the engine's state as
/// it arrives (memory follows the window's keys, not its rows), evaluates with `engine`,
/// reads what the runs did from `state`, and computes.
pub async fn daily_report(
    client: &Client,
    engine: &Engine,
    state: &StateStore,
    scope: &Scope,
    now: DateTime<Utc>,
    since: Duration,
    options: &ComputeOptions,
) -> Result<DailyReport, ReportError> {
    let start = now - since;
    let mut window = WindowState::default();
    let mut tally = RowTally::new(start, now);
    let (input, errors) = read_period(client, scope, now, start, now, &mut |row| {
        if tally.count(&row) {
            window.push_selected(engine, &row);
        }
    })
    .await;
    let mut acc = engine.accumulator(&input);
    acc.merge_state(window);
    let decisions = acc.finish();
    let intents = state.intents(None, None)?;
    let activity = Activity::from_intents(&intents, start, now);
    Ok(compute_with(
        &input, tally, &decisions, &activity, options, errors,
    ))
}

/// The notification carrying the report: the HTML body, the Markdown as its plain-text
/// alternative, severity from the worst detection, to `recipients`.
pub fn notification(
    report: &DailyReport,
    recipients: &[String],
) -> Result<Notification, ReportError> {
    let html = render::to_html(report)?;
    let text = render::to_markdown(report)?;
    let severity = match report.detections.iter().map(|d| d.risk_level).max() {
        Some(RiskLevel::Critical) => Severity::Critical,
        Some(RiskLevel::High) => Severity::High,
        Some(RiskLevel::Medium) => Severity::Medium,
        Some(RiskLevel::Low) => Severity::Low,
        None => Severity::Info,
    };
    let tz: Tz = report.period.timezone.parse().unwrap_or(Tz::UTC);
    let subject = format!(
        "ThreatLocker daily report {}: {} blocks, {} detections, {} waiting for review",
        report.period.end.with_timezone(&tz).format("%Y-%m-%d"),
        report.monitoring_summary.blocked_applications,
        report.monitoring_summary.security_alerts,
        report.totals.sent_to_review,
    );
    let mut n = Notification::new(subject, text)
        .html(html)
        .severity(severity);
    for r in recipients {
        n = n.recipient(r.clone());
    }
    Ok(n)
}

/// Sends the report through `notifier` (HTML with a plain-text alternative).
pub async fn send_report(
    notifier: &dyn Notifier,
    report: &DailyReport,
    recipients: &[String],
) -> Result<(), ReportError> {
    let n = notification(report, recipients)?;
    notifier.send(&n).await.map_err(|e| ReportError::Send {
        channel: notifier.name().to_owned(),
        message: e.to_string(),
    })
}

/// Writes `contents` to `path`, creating its directory.
pub fn write_file(path: &Path, contents: &str) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, contents).map_err(err)
}

/// For `demo`: produces the day's report against the simulated tenant — the same client,
/// engine configuration and state store the demo's runs used — and writes it as HTML into `dir`
/// (`threatlocker-daily-report-YYYY-MM-DD.html`). The period is the 24 hours ending at `now`
/// or at the current time, whichever is later (so the runs' side effects, recorded as they
/// happened, are inside it). Returns the file's path, for the demo to say where it is.
pub async fn write_demo_report(
    workflow: &crate::monitor::workflow::Workflow,
    config: &crate::config::Config,
    now: DateTime<Utc>,
    dir: &Path,
) -> Result<PathBuf, ReportError> {
    let engine = config.engine().map_err(|e| ReportError::Config {
        key: "org_variables".to_owned(),
        message: e.to_string(),
    })?;
    let end = now.max(Utc::now());
    let report = daily_report(
        workflow.client(),
        &engine,
        workflow.state(),
        &Scope::from_config(config),
        end,
        Duration::hours(24),
        &ComputeOptions::default(),
    )
    .await?;
    let path = dir.join(format!(
        "threatlocker-daily-report-{}.html",
        end.format("%Y-%m-%d")
    ));
    write_file(&path, &render::to_html(&report)?)?;
    Ok(path)
}
