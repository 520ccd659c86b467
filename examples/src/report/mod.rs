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
use futures_util::{stream, StreamExt, TryStreamExt};
use policy_engine::{Engine, Input, PendingApproval, RiskLevel};
use psa_connectors::{Notification, Notifier, Severity};
use threatlocker_api::{
    ApprovalRequest, ApprovalStatus, Client, MatchQuery, Organization, OrganizationId,
};
use tracing::warn;

pub use compute::{
    compute, period_events, Activity, ComputeOptions, DeployDone, PermitDone, DEFAULT_TOP_N,
};
pub use model::DailyReport;
pub use render::{render, Format, RenderError};

use crate::config::CompanyMap;
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
    /// `directory` (as written; anchor relative paths at the configuration file's directory).
    pub directory: Option<PathBuf>,
    /// `top`.
    pub top: Option<usize>,
}

impl ReportSettings {
    /// Reads `[report]`; unknown keys and bad values are errors naming `report.<key>`.
    pub fn from_table(table: &toml::Table) -> Result<Self, ReportError> {
        let err = |key: &str, message: String| ReportError::Config {
            key: format!("report.{key}"),
            message,
        };
        let string = |key: &str, v: &toml::Value| -> Result<String, ReportError> {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(key, format!("expected a string, found {}", v.type_str())))
        };
        let mut out = Self::default();
        for (key, value) in table {
            match key.as_str() {
                "timezone" => {
                    out.timezone = Some(parse_timezone("report.timezone", &string(key, value)?)?)
                }
                "daily_report_at" => {
                    let s = string(key, value)?;
                    out.daily_report_at = Some(
                        crate::triggers::parse_time_of_day("report.daily_report_at", &s)
                            .map_err(|m| err(key, m))?,
                    );
                }
                "directory" => out.directory = Some(PathBuf::from(string(key, value)?)),
                "top" => {
                    let n = value
                        .as_integer()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            err(
                                key,
                                format!("expected a number from 1 to 1000, found {value:?}"),
                            )
                        })?;
                    out.top = usize::try_from(n).ok();
                }
                other => {
                    return Err(err(
                        other,
                        "unknown key (known: timezone, daily_report_at, directory, top)".to_owned(),
                    ))
                }
            }
        }
        Ok(out)
    }
}

/// Which organizations the report covers (the workflow's scope rules).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Scope {
    /// Read every child organization.
    pub include_child_organizations: bool,
    /// Only organizations mapped to this PSA company (`workflow.company_id`).
    pub company_id: Option<String>,
    /// ThreatLocker organization → PSA company.
    pub companies: CompanyMap,
    /// Organizations read at once.
    pub concurrency: usize,
}

impl Scope {
    /// Every child organization, six at a time.
    pub fn all() -> Self {
        Self {
            include_child_organizations: true,
            company_id: None,
            companies: CompanyMap::default(),
            concurrency: 6,
        }
    }

    /// The scope of a configuration file (`[threatlocker]`, `[workflow] company_id`,
    /// `[companies]`).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            include_child_organizations: config.threatlocker().include_child_organizations,
            company_id: config.workflow().company_id.clone(),
            companies: config.companies().clone(),
            concurrency: config.threatlocker().max_concurrency.unwrap_or(6).max(1),
        }
    }

    fn contains(&self, org: Option<&OrganizationId>) -> bool {
        match &self.company_id {
            None => true,
            Some(company) => org
                .and_then(|o| self.companies.company_for(o.as_str()))
                .is_some_and(|c| c == company),
        }
    }
}

/// Reads everything the engine needs for `[start, end)`: organizations, the action log of each
/// organization in scope, computers, and pending approval requests with their applications and
/// research categories. Failures are collected as messages (the report is still produced and
/// lists them); nothing is written anywhere.
pub async fn gather(
    client: &Client,
    scope: &Scope,
    now: DateTime<Utc>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> (Input, Vec<String>) {
    let mut errors = Vec::new();
    let organizations: Vec<Organization> = match client
        .organizations()
        .children()
        .include_all_children(true)
        .stream()
        .try_collect::<Vec<Organization>>()
        .await
    {
        Ok(orgs) => {
            let mut seen = std::collections::BTreeSet::new();
            orgs.iter()
                .flat_map(|o| o.flatten())
                .filter(|o| {
                    o.organization_id
                        .as_ref()
                        .is_some_and(|id| seen.insert(id.clone()))
                })
                .cloned()
                .collect()
        }
        Err(e) => {
            errors.push(format!("listing child organizations: {e}"));
            Vec::new()
        }
    };
    let orgs: Vec<OrganizationId> = if scope.include_child_organizations {
        organizations
            .iter()
            .filter_map(|o| o.organization_id.clone())
            .filter(|o| scope.contains(Some(o)))
            .collect()
    } else {
        Vec::new()
    };
    let mut events = Vec::new();
    if orgs.is_empty() {
        match client
            .audit()
            .search(start, end)
            .child_organizations(scope.include_child_organizations && organizations.is_empty())
            .stream()
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(rows) => events = rows,
            Err(e) => errors.push(format!("reading the action log: {e}")),
        }
    } else {
        let results: Vec<_> = stream::iter(orgs)
            .map(|org| {
                let c = client.with_organization(org.clone());
                async move {
                    let rows = c
                        .audit()
                        .search(start, end)
                        .child_organizations(false)
                        .stream()
                        .try_collect::<Vec<_>>()
                        .await;
                    (org, rows)
                }
            })
            .buffer_unordered(scope.concurrency.max(1))
            .collect()
            .await;
        for (org, r) in results {
            match r {
                Ok(mut rows) => events.append(&mut rows),
                Err(e) => errors.push(format!("reading the action log of organization {org}: {e}")),
            }
        }
    }
    let computers = match client
        .computers()
        .list()
        .child_organizations(scope.include_child_organizations)
        .stream()
        .try_collect::<Vec<_>>()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            errors.push(format!("listing computers: {e}"));
            Vec::new()
        }
    };
    let requests: Vec<ApprovalRequest> = match client
        .approvals()
        .search(ApprovalStatus::Pending)
        .child_organizations(scope.include_child_organizations)
        .stream()
        .try_collect()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            errors.push(format!("reading pending approval requests: {e}"));
            Vec::new()
        }
    };
    let mut approvals: Vec<PendingApproval> = stream::iter(requests)
        .map(|r| enrich(client, r))
        .buffered(scope.concurrency.max(1))
        .collect()
        .await;
    events.retain(|r| scope.contains(r.organization_id.as_ref()));
    let mut computers = computers;
    computers.retain(|c| scope.contains(c.organization_id.as_ref()));
    approvals.retain(|a| scope.contains(a.request.organization_id.as_ref()));
    let input = Input::new(now, start, end)
        .with_events(events)
        .with_approvals(approvals)
        .with_computers(computers)
        .with_organizations(organizations);
    (input, errors)
}

async fn enrich(client: &Client, request: ApprovalRequest) -> PendingApproval {
    let scoped = match &request.organization_id {
        Some(org) => client.with_organization(org.clone()),
        None => client.clone(),
    };
    let matching = match scoped
        .applications()
        .matching_list(MatchQuery::for_request(&request))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            warn!(request = ?request.approval_request_id, error = %e, "matching-list lookup failed");
            return PendingApproval::new(request);
        }
    };
    let mut apps = matching.matching_applications;
    apps.sort_by_key(|a| a.is_master_owned());
    let Some(app) = apps.into_iter().next() else {
        return PendingApproval::new(request);
    };
    let mut pending = PendingApproval::new(request);
    if let Some(id) = app.application_id.clone() {
        match scoped.applications().research_details(&id).await {
            Ok(r) => pending = pending.with_research(r),
            Err(e) => warn!(application = %id, error = %e, "research-details lookup failed"),
        }
    }
    pending.with_application(app)
}

/// Produces the daily report for the `since` hours ending at `now`: reads ThreatLocker
/// ([`gather`]), evaluates with `engine`, reads what the runs did from `state`, and computes.
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
    let (input, errors) = gather(client, scope, now, start, now).await;
    let decisions = engine.evaluate(&input);
    let intents = state.intents(None, None)?;
    let activity = Activity::from_intents(&intents, start, now);
    Ok(compute(&input, &decisions, &activity, options, errors))
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
    workflow: &crate::workflow::Workflow,
    config: &crate::config::Config,
    now: DateTime<Utc>,
    dir: &Path,
) -> Result<PathBuf, ReportError> {
    let engine = crate::workflow::engine_from_config(config).map_err(|e| ReportError::Config {
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
