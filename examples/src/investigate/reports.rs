//! The five investigations: fleet queries against the Portal API, analysed by the engine's pure
//! functions in `policy_engine::investigate`, packaged as reports that render as a table, JSON
//! or CSV. Every row carries the action-log ids (`actionLogId` and the `eActionLogId` string
//! that `show` and the portal need) so a reviewer can re-pull the exact source rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use futures_util::{StreamExt, TryStreamExt};
use policy_engine::investigate::{
    self, Anomaly, BypassGroup, ComputerSighting, DenialSource, FileQuery, SubjectKind,
};
use policy_engine::Rules;
use serde::Serialize;
use threatlocker_api::{
    ActionLogRow, ApprovalRequest, ApprovalStatus, Client, Computer, ComputerMode, Enforcement,
};

use super::output::{join_ids, Cell, Render, Rows};
use super::progress::Progress;
use super::time::{iso, iso_opt};

/// An investigation failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvestigateError {
    /// Bad arguments (exit code 2).
    #[error("{0}")]
    Usage(String),
    /// The Portal API failed.
    #[error("{context}: {source}")]
    Api {
        /// What was being fetched.
        context: String,
        /// The client error (boxed: it is large).
        #[source]
        source: Box<threatlocker_api::Error>,
    },
}

fn api(context: impl Into<String>) -> impl FnOnce(threatlocker_api::Error) -> InvestigateError {
    let context = context.into();
    move |source| InvestigateError::Api {
        context,
        source: Box::new(source),
    }
}

pub use policy_engine::investigate::{outcome_label, parent_chain, row_id};

/// Splits a period into query windows: a day each, or a sixteenth of the period when that is
/// longer. Long pulls stay under the client's page cap per query, and a 7-day hunt is 7 queries.
pub fn query_windows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let size = ((to - from) / 16).max(Duration::days(1));
    let mut out = Vec::new();
    let mut a = from;
    while a < to {
        let b = (a + size).min(to);
        out.push((a, b));
        a = b;
    }
    if out.is_empty() {
        out.push((from, to));
    }
    out
}

/// Reads the action log over `[from, to]` window by window (see [`query_windows`]), keeping
/// the rows `keep` accepts, each once (windows share their boundary instant).
async fn collect_rows(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    search: impl Fn(DateTime<Utc>, DateTime<Utc>) -> threatlocker_api::AuditSearch,
    progress: &Progress,
    label: &str,
    mut keep: impl FnMut(&ActionLogRow) -> bool,
) -> Result<(Vec<ActionLogRow>, u64), InvestigateError> {
    let mut rows = Vec::new();
    let mut seen: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut scanned = 0u64;
    for (a, b) in query_windows(from, to) {
        let mut stream = std::pin::pin!(search(a, b).stream());
        while let Some(row) = stream.next().await {
            let row = row.map_err(api("searching the action log"))?;
            if let Some(k) = row.dedupe_key() {
                if !seen.insert(k) {
                    continue;
                }
            }
            scanned += 1;
            progress.update(label, scanned);
            if keep(&row) {
                rows.push(row);
            }
        }
    }
    Ok((rows, scanned))
}

/// Shared context of every investigation.
#[derive(Debug)]
pub struct Investigator {
    client: Client,
    child_organizations: bool,
    progress: Progress,
    rules: Rules,
}

impl Investigator {
    /// An investigator over `client`; `child_organizations` searches every child organization
    /// (the configuration's `include_child_organizations`).
    pub fn new(client: Client, child_organizations: bool, progress: Progress) -> Self {
        Self {
            client,
            child_organizations,
            progress,
            rules: Rules::default(),
        }
    }

    /// Uses the engine's configured rules (LOLBins, user-writable folders) for the timeline's
    /// anomaly marking, so an investigation flags what the monitor's detections flag.
    pub fn with_rules(mut self, rules: Rules) -> Self {
        self.rules = rules;
        self
    }

    fn search(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> threatlocker_api::AuditSearch {
        self.client
            .audit()
            .search(from, to)
            .child_organizations(self.child_organizations)
            .page_size(500)
    }

    /// `timeline`: every action on a host within `at ± window`, oldest first, the first anomaly
    /// marked, and parent chains for up to `max_details` rows that have an `eActionLogId`
    /// (anomalies first, then the rest in time order).
    pub async fn timeline(
        &self,
        host: &str,
        at: DateTime<Utc>,
        window: Duration,
        max_details: usize,
    ) -> Result<TimelineReport, InvestigateError> {
        let host = host.trim();
        if host.is_empty() {
            return Err(InvestigateError::Usage("--host must not be empty".into()));
        }
        let (from, to) = (at - window, at + window);
        let (rows, scanned) = collect_rows(
            from,
            to,
            |a, b| self.search(a, b).hostname(host),
            &self.progress,
            "action log rows",
            |_| true,
        )
        .await?;
        let tl = investigate::timeline_with_rules(&rows, host, at, window, &self.rules)
            .map_err(|e| InvestigateError::Usage(e.to_string()))?;
        let by_id: HashMap<String, &ActionLogRow> = rows.iter().map(|r| (row_id(r), r)).collect();
        let mut entries: Vec<TimelineRow> = tl
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let row = by_id.get(&e.action_log_id).copied();
                TimelineRow {
                    index: i,
                    at: e.at,
                    action_log_id: row.and_then(|r| r.action_log_id).map(|i| i.get()),
                    e_action_log_id: row
                        .and_then(|r| r.e_action_log_id.as_ref())
                        .map(|e| e.to_string()),
                    hostname: e.hostname.clone(),
                    username: e.username.clone(),
                    full_path: e.full_path.clone(),
                    process_path: e.process_path.clone(),
                    action_type: e.action_type.clone(),
                    outcome: e.outcome,
                    sha256: row.and_then(|r| r.sha256_hash.clone().or(r.hash.clone())),
                    policy_name: row.and_then(|r| r.policy_name.clone()),
                    first_anomaly: tl.first_anomaly == Some(i),
                    anomalies: e.anomalies.clone(),
                    parent_chain: None,
                }
            })
            .collect();
        // Detail calls, bounded: anomalous rows first, then the others in time order.
        let mut order: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].e_action_log_id.is_some())
            .collect();
        order.sort_by_key(|&i| (entries[i].anomalies.is_empty(), i));
        let wanted: Vec<(usize, String)> = order
            .into_iter()
            .take(max_details)
            .filter_map(|i| entries[i].e_action_log_id.clone().map(|e| (i, e)))
            .collect();
        let with_id = entries
            .iter()
            .filter(|e| e.e_action_log_id.is_some())
            .count();
        let details_skipped = with_id - wanted.len();
        let audit = self.client.audit();
        let progress = &self.progress;
        let total = wanted.len();
        let results: Vec<(usize, String, Result<ActionLogRow, threatlocker_api::Error>)> =
            futures_util::stream::iter(wanted.into_iter().map(|(i, e)| {
                let get = audit.get(e.as_str()).all_parents(true);
                async move { (i, e, get.send().await) }
            }))
            .buffer_unordered(4)
            .inspect(|_| progress.step(&format!("action details (of {total})")))
            .collect()
            .await;
        let mut detail_errors = Vec::new();
        let mut details_fetched = 0;
        for (i, e, result) in results {
            match result {
                Ok(detail) => {
                    details_fetched += 1;
                    entries[i].parent_chain = Some(parent_chain(&detail));
                }
                Err(err) => detail_errors.push(format!("{e}: {err}")),
            }
        }
        detail_errors.sort();
        self.progress.finish();
        let first_anomaly = tl.first_anomaly.map(|i| entries[i].clone());
        Ok(TimelineReport {
            host: host.to_owned(),
            at,
            window_minutes: window.num_minutes(),
            from,
            to,
            rows_fetched: scanned,
            first_anomaly,
            entries,
            details_fetched,
            details_skipped,
            detail_errors,
        })
    }

    /// `file`: where a hash or path appeared across the fleet since `since`, with each
    /// affected computer's file history (`ActionLogGetAllForFileHistoryV2`, which is
    /// per computer and per path: a hash pivot first finds the paths in the action log).
    pub async fn file(
        &self,
        query: FileQuery,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        max_history: usize,
    ) -> Result<FileReport, InvestigateError> {
        let mut path_filter = None;
        let hash = match &query {
            FileQuery::Hash(h) => {
                let h = h.trim();
                if h.len() < 32 || h.len() > 128 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(InvestigateError::Usage(format!(
                        "--hash {h:?} is not a hex digest (a SHA-256 is 64 hex digits)"
                    )));
                }
                Some(h.to_ascii_lowercase())
            }
            FileQuery::Path(p) => {
                if p.trim().is_empty() {
                    return Err(InvestigateError::Usage("--path must not be empty".into()));
                }
                path_filter = Some(p.trim().to_owned());
                None
            }
        };
        // The API has no hash filter: scan the period, keep only matching rows (memory holds
        // matches, not the period).
        let search = |a, b| match &path_filter {
            Some(p) => self.search(a, b).full_path(p.clone()),
            None => self.search(a, b),
        };
        let (rows, scanned) = collect_rows(
            since,
            now,
            search,
            &self.progress,
            "action log rows scanned",
            // A path query is filtered by the server; a hash query here, as the engine matches.
            |r| hash.is_none() || query.matches(r),
        )
        .await?;
        let spread = investigate::file_spread(&rows, query.clone());
        let mut computers = Vec::with_capacity(spread.computers.len());
        for (n, sighting) in spread.computers.iter().enumerate() {
            self.progress.step(&format!(
                "file history: computer {} of {}",
                n + 1,
                spread.computers.len()
            ));
            let ids: BTreeSet<&str> = sighting.action_log_ids.iter().map(String::as_str).collect();
            let mut paths: Vec<String> = rows
                .iter()
                .filter(|r| ids.contains(row_id(r).as_str()))
                .filter_map(|r| r.full_path.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            paths.truncate(5);
            let e_ids: Vec<String> = rows
                .iter()
                .filter(|r| ids.contains(row_id(r).as_str()))
                .filter_map(|r| r.e_action_log_id.as_ref().map(|e| e.to_string()))
                .collect();
            let mut history = Vec::new();
            let mut history_error = None;
            for path in &paths {
                let mut fh = self.client.audit().file_history(path.clone());
                fh = match (&sighting.computer_id, &sighting.hostname) {
                    (Some(id), _) => fh.computer(id.clone()),
                    (None, Some(h)) => fh.hostname(h.clone()),
                    (None, None) => continue,
                };
                let got: Result<Vec<ActionLogRow>, _> = fh
                    .page_size(100)
                    .stream()
                    .take(max_history)
                    .try_collect()
                    .await;
                match got {
                    Ok(rs) => history.extend(rs.iter().map(HistoryEntry::from_row)),
                    Err(e) => history_error = Some(format!("{path}: {e}")),
                }
            }
            history.sort_by(|a, b| (a.at, &a.action_log_id).cmp(&(b.at, &b.action_log_id)));
            history.dedup_by(|a, b| {
                a.action_log_id.is_some() && a.action_log_id == b.action_log_id
                    || a.e_action_log_id.is_some() && a.e_action_log_id == b.e_action_log_id
            });
            computers.push(FileComputer {
                patient_zero: n == 0,
                sighting: sighting.clone(),
                e_action_log_ids: e_ids,
                paths,
                history,
                history_error,
            });
        }
        self.progress.finish();
        Ok(FileReport {
            query,
            from: since,
            to: now,
            rows_scanned: scanned,
            rows_matched: rows.len() as u64,
            computers_affected: spread.computers_affected,
            permits: spread.permits,
            blocks: spread.blocks,
            audit_only: spread.audit_only,
            patient_zero: spread.patient_zero().and_then(|s| s.hostname.clone()),
            computers,
        })
    }

    /// `denials`: users and computers with at least `threshold` enforced blocks since `since`,
    /// their top applications and the pending approval requests that may explain them.
    pub async fn denials(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        threshold: u32,
    ) -> Result<DenialsReport, InvestigateError> {
        if threshold == 0 {
            return Err(InvestigateError::Usage(
                "--threshold must be at least 1".into(),
            ));
        }
        let (rows, _) = collect_rows(
            since,
            now,
            |a, b| self.search(a, b).enforcement(Enforcement::Enforced),
            &self.progress,
            "blocks",
            |_| true,
        )
        .await?;
        self.progress.step("pending approval requests");
        let approvals: Vec<ApprovalRequest> = self
            .client
            .approvals()
            .search(ApprovalStatus::Pending)
            .child_organizations(self.child_organizations)
            .stream()
            .try_collect()
            .await
            .map_err(api("reading pending approval requests"))?;
        self.progress.finish();
        let sources = investigate::repeated_denials(&rows, threshold, &approvals);
        let by_id: HashMap<&str, &ApprovalRequest> = approvals
            .iter()
            .filter_map(|a| a.approval_request_id.as_ref().map(|i| (i.as_str(), a)))
            .collect();
        let by_row: HashMap<String, &ActionLogRow> = rows.iter().map(|r| (row_id(r), r)).collect();
        let sources = sources
            .into_iter()
            .map(|s| DenialRow {
                e_action_log_ids: s
                    .action_log_ids
                    .iter()
                    .filter_map(|id| by_row.get(id).and_then(|r| r.e_action_log_id.as_ref()))
                    .map(|e| e.to_string())
                    .collect(),
                approvals: s
                    .related_approvals
                    .iter()
                    .filter_map(|id| by_id.get(id.as_str()))
                    .map(|a| ApprovalBrief::from_request(a))
                    .collect(),
                source: s,
            })
            .collect();
        Ok(DenialsReport {
            from: since,
            to: now,
            threshold,
            blocks: rows.len() as u64,
            pending_approvals: approvals.len() as u64,
            sources,
        })
    }

    /// `bypass`: audit-only (monitor-mode) denies since `since` on computers whose mode is
    /// Secure, grouped by policy, each with the suggestion to make the rule a block.
    pub async fn bypass(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<BypassReport, InvestigateError> {
        let (rows, _) = collect_rows(
            since,
            now,
            |a, b| self.search(a, b).enforcement(Enforcement::MonitorOnly),
            &self.progress,
            "audit-only rows",
            |r| r.is_audit_only(),
        )
        .await?;
        self.progress.step("computers");
        let computers: Vec<Computer> = self
            .client
            .computers()
            .list()
            .child_organizations(self.child_organizations)
            .stream()
            .try_collect()
            .await
            .map_err(api("listing computers (their modes)"))?;
        self.progress.finish();
        let secure = computers
            .iter()
            .filter(|c| c.effective_mode() == Some(ComputerMode::Secure))
            .count() as u64;
        let groups = investigate::audit_only_on_secure(&rows, &computers);
        let by_row: HashMap<String, &ActionLogRow> = rows.iter().map(|r| (row_id(r), r)).collect();
        let groups = groups
            .into_iter()
            .map(|g| BypassRow {
                e_action_log_ids: g
                    .action_log_ids
                    .iter()
                    .filter_map(|id| by_row.get(id).and_then(|r| r.e_action_log_id.as_ref()))
                    .map(|e| e.to_string())
                    .collect(),
                group: g,
            })
            .collect();
        Ok(BypassReport {
            from: since,
            to: now,
            audit_only_rows: rows.len() as u64,
            computers_listed: computers.len() as u64,
            secure_computers: secure,
            groups,
        })
    }

    /// `show`: one action with full detail and its parent chain. `id` must be the row's
    /// `eActionLogId` string; a numeric `actionLogId` is refused with an explanation.
    pub async fn show(&self, id: &str) -> Result<ShowReport, InvestigateError> {
        let id = id.trim();
        check_show_id(id)?;
        let detail = self
            .client
            .audit()
            .get(id)
            .all_parents(true)
            .send()
            .await
            .map_err(api(format!("getting action {id}")))?;
        Ok(ShowReport {
            e_action_log_id: id.to_owned(),
            outcome: outcome_label(&detail),
            parent_chain: parent_chain(&detail),
            action: detail,
        })
    }
}

/// Refuses an id `show` cannot use: empty, or all digits (the numeric `actionLogId`, which
/// `ActionLogGetByIdV2` answers with HTTP 500).
pub fn check_show_id(id: &str) -> Result<(), InvestigateError> {
    if id.is_empty() {
        return Err(InvestigateError::Usage(
            "ACTION_ID must not be empty".into(),
        ));
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvestigateError::Usage(format!(
            "{id} is a numeric actionLogId; the V2 API looks actions up by the eActionLogId string \
             (a GUID such as 6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f). Every row printed by \
             timeline, file, denials and bypass carries it in the e_action_log_id column."
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reports

/// One row of a timeline.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    /// Position, oldest first.
    pub index: usize,
    /// When (UTC).
    pub at: Option<DateTime<Utc>>,
    /// Numeric `actionLogId`.
    pub action_log_id: Option<i64>,
    /// `eActionLogId` (for `show` and the portal).
    pub e_action_log_id: Option<String>,
    /// Host.
    pub hostname: Option<String>,
    /// User.
    pub username: Option<String>,
    /// File acted on.
    pub full_path: Option<String>,
    /// Process that acted.
    pub process_path: Option<String>,
    /// Action type (`execute`, `network`, ...).
    pub action_type: Option<String>,
    /// Outcome label.
    pub outcome: &'static str,
    /// SHA-256 (else ThreatLocker's `hash`).
    pub sha256: Option<String>,
    /// Policy that handled it.
    pub policy_name: Option<String>,
    /// Whether this is the first anomaly (the inflection point).
    pub first_anomaly: bool,
    /// Why the row is unusual.
    pub anomalies: Vec<Anomaly>,
    /// Parent processes, nearest first, when the detail was fetched.
    pub parent_chain: Option<Vec<String>>,
}

/// `timeline` output.
#[derive(Debug, Clone, Serialize)]
pub struct TimelineReport {
    /// Host asked for.
    pub host: String,
    /// Centre time.
    pub at: DateTime<Utc>,
    /// Half-width of the window, minutes.
    pub window_minutes: i64,
    /// Window start.
    pub from: DateTime<Utc>,
    /// Window end.
    pub to: DateTime<Utc>,
    /// Rows the search returned.
    pub rows_fetched: u64,
    /// The first anomaly, repeated from `entries`.
    pub first_anomaly: Option<TimelineRow>,
    /// Every action, oldest first.
    pub entries: Vec<TimelineRow>,
    /// Detail calls that succeeded.
    pub details_fetched: usize,
    /// Rows with an `eActionLogId` left without detail (over `--max-details`).
    pub details_skipped: usize,
    /// Detail calls that failed (id: error).
    pub detail_errors: Vec<String>,
}

fn anomalies_text(a: &[Anomaly]) -> String {
    a.iter()
        .map(|a| match a {
            Anomaly::UnusualBinary(d) => format!("unusual binary: {d}"),
            Anomaly::LolbinChild(d) => format!("LOLBin child: {d}"),
            Anomaly::NetworkActive(d) => format!("network: {d}"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Render for TimelineReport {
    fn summary(&self) -> Vec<String> {
        let mut v = vec![format!(
            "Timeline for {} from {} to {} ({} actions)",
            self.host,
            iso(self.from),
            iso(self.to),
            self.entries.len()
        )];
        match &self.first_anomaly {
            Some(e) => v.push(format!(
                "First anomaly (marked >>): {} at {} — {} [actionLogId {} / eActionLogId {}]",
                e.full_path.as_deref().unwrap_or("?"),
                iso_opt(e.at),
                anomalies_text(&e.anomalies),
                e.action_log_id.map(|i| i.to_string()).unwrap_or_default(),
                e.e_action_log_id.as_deref().unwrap_or(""),
            )),
            None => v.push("No anomaly found.".into()),
        }
        if self.details_skipped > 0 {
            v.push(format!(
                "Parent chains fetched for {} rows; {} more skipped (raise --max-details).",
                self.details_fetched, self.details_skipped
            ));
        }
        for e in &self.detail_errors {
            v.push(format!("detail failed: {e}"));
        }
        v
    }

    fn rows(&self) -> Rows {
        Rows {
            header: vec![
                "mark",
                "time",
                "action_log_id",
                "e_action_log_id",
                "hostname",
                "username",
                "outcome",
                "action_type",
                "full_path",
                "process_path",
                "sha256",
                "policy",
                "anomalies",
                "parent_chain",
            ],
            rows: self
                .entries
                .iter()
                .map(|e| {
                    vec![
                        Cell::from(if e.first_anomaly {
                            ">>"
                        } else if e.anomalies.is_empty() {
                            ""
                        } else {
                            "!"
                        }),
                        Cell::from(iso_opt(e.at)),
                        e.action_log_id
                            .map(Cell::Num)
                            .unwrap_or_else(|| Cell::from("")),
                        Cell::from(&e.e_action_log_id),
                        Cell::from(&e.hostname),
                        Cell::from(&e.username),
                        Cell::from(e.outcome),
                        Cell::from(&e.action_type),
                        Cell::from(&e.full_path),
                        Cell::from(&e.process_path),
                        Cell::from(&e.sha256),
                        Cell::from(&e.policy_name),
                        Cell::from(anomalies_text(&e.anomalies)),
                        Cell::from(
                            e.parent_chain
                                .as_ref()
                                .map(|c| c.join(" < "))
                                .unwrap_or_default(),
                        ),
                    ]
                })
                .collect(),
        }
    }
}

/// One row of a computer's file history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Numeric `actionLogId`.
    pub action_log_id: Option<i64>,
    /// `eActionLogId`.
    pub e_action_log_id: Option<String>,
    /// Outcome label.
    pub outcome: &'static str,
    /// File.
    pub full_path: Option<String>,
    /// User.
    pub username: Option<String>,
    /// Process.
    pub process_path: Option<String>,
}

impl HistoryEntry {
    fn from_row(r: &ActionLogRow) -> Self {
        Self {
            at: r.date_time,
            action_log_id: r.action_log_id.map(|i| i.get()),
            e_action_log_id: r.e_action_log_id.as_ref().map(|e| e.to_string()),
            outcome: outcome_label(r),
            full_path: r.full_path.clone(),
            username: r.username.clone(),
            process_path: r.process_path.clone(),
        }
    }
}

/// One computer that saw the file.
#[derive(Debug, Clone, Serialize)]
pub struct FileComputer {
    /// Whether this is patient zero (earliest sighting).
    pub patient_zero: bool,
    /// The engine's sighting: first/last seen, permits, blocks, audit-only, ids.
    #[serde(flatten)]
    pub sighting: ComputerSighting,
    /// `eActionLogId`s of the sightings.
    pub e_action_log_ids: Vec<String>,
    /// Paths the file had on this computer (history is pulled per path, at most five).
    pub paths: Vec<String>,
    /// The computer's file history, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Why the history could not be read, if it could not.
    pub history_error: Option<String>,
}

/// `file` output.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// What was looked for.
    pub query: FileQuery,
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end.
    pub to: DateTime<Utc>,
    /// Action-log rows read.
    pub rows_scanned: u64,
    /// Rows matching the hash or path.
    pub rows_matched: u64,
    /// Distinct computers.
    pub computers_affected: u64,
    /// Permits (the file ran).
    pub permits: u64,
    /// Blocks (stopped).
    pub blocks: u64,
    /// Audit-only hits (would have been blocked, ran).
    pub audit_only: u64,
    /// Host name of the earliest sighting.
    pub patient_zero: Option<String>,
    /// Per computer, patient zero first.
    pub computers: Vec<FileComputer>,
}

impl Render for FileReport {
    fn summary(&self) -> Vec<String> {
        let what = match &self.query {
            FileQuery::Hash(h) => format!("hash {h}"),
            FileQuery::Path(p) => format!("path {p}"),
        };
        let mut v = vec![
            format!(
                "File {what}, {} to {}: {} computer(s), {} permit(s) (possibly impacted), {} block(s) (stopped), {} audit-only",
                iso(self.from),
                iso(self.to),
                self.computers_affected,
                self.permits,
                self.blocks,
                self.audit_only
            ),
            format!("Rows scanned: {}, matched: {}", self.rows_scanned, self.rows_matched),
        ];
        if let Some(p) = &self.patient_zero {
            v.push(format!("Patient zero: {p}"));
        }
        for c in &self.computers {
            if let Some(e) = &c.history_error {
                v.push(format!(
                    "history of {} failed: {e}",
                    c.sighting.hostname.as_deref().unwrap_or("?")
                ));
            }
        }
        v
    }

    fn rows(&self) -> Rows {
        Rows {
            header: vec![
                "patient_zero",
                "hostname",
                "computer_id",
                "organization_id",
                "first_seen",
                "last_seen",
                "permits",
                "blocks",
                "audit_only",
                "status",
                "paths",
                "history_rows",
                "action_log_ids",
                "e_action_log_ids",
            ],
            rows: self
                .computers
                .iter()
                .map(|c| {
                    let s = &c.sighting;
                    vec![
                        Cell::from(c.patient_zero),
                        Cell::from(&s.hostname),
                        Cell::from(s.computer_id.as_ref().map(|i| i.as_str())),
                        Cell::from(s.organization_id.as_ref().map(|i| i.as_str())),
                        Cell::from(iso_opt(s.first_seen)),
                        Cell::from(iso_opt(s.last_seen)),
                        Cell::from(s.permits),
                        Cell::from(s.blocks),
                        Cell::from(s.audit_only),
                        Cell::from(if s.possibly_impacted {
                            "possibly impacted"
                        } else {
                            "stopped"
                        }),
                        Cell::from(c.paths.join(" | ")),
                        Cell::from(c.history.len() as u64),
                        Cell::from(join_ids(&s.action_log_ids)),
                        Cell::from(join_ids(&c.e_action_log_ids)),
                    ]
                })
                .collect(),
        }
    }
}

/// An approval request that may explain denials.
#[derive(Debug, Clone, Serialize)]
pub struct ApprovalBrief {
    /// Request id.
    pub approval_request_id: String,
    /// Requesting user.
    pub username: Option<String>,
    /// Computer.
    pub hostname: Option<String>,
    /// File.
    pub path: Option<String>,
    /// The user's reason (decoded).
    pub reason: Option<String>,
    /// When requested.
    pub requested_at: Option<DateTime<Utc>>,
}

impl ApprovalBrief {
    fn from_request(a: &ApprovalRequest) -> Self {
        Self {
            approval_request_id: a
                .approval_request_id
                .as_ref()
                .map(|i| i.to_string())
                .unwrap_or_default(),
            username: a.username.clone(),
            hostname: a.hostname.clone(),
            path: a.path.clone(),
            reason: a
                .requestor_reason_decoded
                .clone()
                .or(a.requestor_reason.clone()),
            requested_at: a.date_time,
        }
    }
}

/// One user or computer with repeated denials.
#[derive(Debug, Clone, Serialize)]
pub struct DenialRow {
    /// The engine's finding: subject, blocks, top applications, ids.
    #[serde(flatten)]
    pub source: DenialSource,
    /// `eActionLogId`s of the blocks.
    pub e_action_log_ids: Vec<String>,
    /// The related pending approval requests, in full.
    pub approvals: Vec<ApprovalBrief>,
}

/// `denials` output.
#[derive(Debug, Clone, Serialize)]
pub struct DenialsReport {
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end.
    pub to: DateTime<Utc>,
    /// Blocks needed to be listed.
    pub threshold: u32,
    /// Enforced blocks in the period.
    pub blocks: u64,
    /// Pending approval requests considered.
    pub pending_approvals: u64,
    /// Users and computers, most blocks first.
    pub sources: Vec<DenialRow>,
}

impl Render for DenialsReport {
    fn summary(&self) -> Vec<String> {
        vec![
            format!(
                "Repeated denials {} to {}: {} block(s), threshold {}, {} user(s)/computer(s) listed",
                iso(self.from),
                iso(self.to),
                self.blocks,
                self.threshold,
                self.sources.len()
            ),
            "A subject with a related approval request is probably a user fighting their tooling; without one, check for malware retrying.".into(),
        ]
    }

    fn rows(&self) -> Rows {
        Rows {
            header: vec![
                "kind",
                "subject",
                "organization_id",
                "blocks",
                "first_seen",
                "last_seen",
                "top_applications",
                "approval_requests",
                "action_log_ids",
                "e_action_log_ids",
            ],
            rows: self
                .sources
                .iter()
                .map(|d| {
                    let s = &d.source;
                    vec![
                        Cell::from(match s.kind {
                            SubjectKind::User => "user",
                            SubjectKind::Computer => "computer",
                        }),
                        Cell::from(s.subject.clone()),
                        Cell::from(s.organization_id.as_ref().map(|i| i.as_str())),
                        Cell::from(s.blocks),
                        Cell::from(iso_opt(s.first_seen)),
                        Cell::from(iso_opt(s.last_seen)),
                        Cell::from(
                            s.top_applications
                                .iter()
                                .map(|a| format!("{} ({})", a.application, a.count))
                                .collect::<Vec<_>>()
                                .join("; "),
                        ),
                        Cell::from(join_ids(
                            &s.related_approvals
                                .iter()
                                .map(|i| i.to_string())
                                .collect::<Vec<_>>(),
                        )),
                        Cell::from(join_ids(&s.action_log_ids)),
                        Cell::from(join_ids(&d.e_action_log_ids)),
                    ]
                })
                .collect(),
        }
    }
}

/// Audit-only hits of one policy on Secure computers.
#[derive(Debug, Clone, Serialize)]
pub struct BypassRow {
    /// The engine's group: policy, hits, computers, applications, suggestion, ids.
    #[serde(flatten)]
    pub group: BypassGroup,
    /// `eActionLogId`s of the hits.
    pub e_action_log_ids: Vec<String>,
}

/// `bypass` output.
#[derive(Debug, Clone, Serialize)]
pub struct BypassReport {
    /// Period start.
    pub from: DateTime<Utc>,
    /// Period end.
    pub to: DateTime<Utc>,
    /// Audit-only rows in the period (any computer).
    pub audit_only_rows: u64,
    /// Computers listed.
    pub computers_listed: u64,
    /// Of which in Secure mode.
    pub secure_computers: u64,
    /// Groups by policy, most hits first.
    pub groups: Vec<BypassRow>,
}

impl Render for BypassReport {
    fn summary(&self) -> Vec<String> {
        let hits: u64 = self.groups.iter().map(|g| g.group.hits).sum();
        let mut v = vec![format!(
            "Audit-only hits on Secure computers {} to {}: {} hit(s) under {} polic(ies) ({} audit-only rows in all, {} of {} computers Secure)",
            iso(self.from),
            iso(self.to),
            hits,
            self.groups.len(),
            self.audit_only_rows,
            self.secure_computers,
            self.computers_listed
        )];
        for g in &self.groups {
            v.push(format!("- {}", g.group.suggestion));
        }
        v
    }

    fn rows(&self) -> Rows {
        Rows {
            header: vec![
                "policy_name",
                "policy_id",
                "organization_id",
                "hits",
                "computers",
                "applications",
                "first_seen",
                "last_seen",
                "suggestion",
                "action_log_ids",
                "e_action_log_ids",
            ],
            rows: self
                .groups
                .iter()
                .map(|b| {
                    let g = &b.group;
                    vec![
                        Cell::from(&g.policy_name),
                        Cell::from(g.policy_id.as_ref().map(|i| i.as_str())),
                        Cell::from(g.organization_id.as_ref().map(|i| i.as_str())),
                        Cell::from(g.hits),
                        Cell::from(g.computers.join(" | ")),
                        Cell::from(g.applications.join(" | ")),
                        Cell::from(iso_opt(g.first_seen)),
                        Cell::from(iso_opt(g.last_seen)),
                        Cell::from(g.suggestion.clone()),
                        Cell::from(join_ids(&g.action_log_ids)),
                        Cell::from(join_ids(&b.e_action_log_ids)),
                    ]
                })
                .collect(),
        }
    }
}

/// `show` output.
#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    /// The id asked for.
    pub e_action_log_id: String,
    /// Outcome label.
    pub outcome: &'static str,
    /// Parent processes, nearest first.
    pub parent_chain: Vec<String>,
    /// The action as the API returned it (unknown fields kept).
    pub action: ActionLogRow,
}

impl Render for ShowReport {
    fn max_cell_width(&self) -> usize {
        1000
    }

    fn summary(&self) -> Vec<String> {
        let mut v = vec![format!(
            "Action {} — {}",
            self.e_action_log_id, self.outcome
        )];
        if !self.parent_chain.is_empty() {
            v.push(format!("Parent chain: {}", self.parent_chain.join(" < ")));
        }
        v
    }

    fn rows(&self) -> Rows {
        let mut flat: BTreeMap<String, String> = BTreeMap::new();
        if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(&self.action) {
            for (k, v) in map {
                match v {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => {
                        flat.insert(k, s);
                    }
                    other => {
                        flat.insert(k, other.to_string());
                    }
                }
            }
        }
        flat.insert("outcome".into(), self.outcome.into());
        flat.insert("parentChain".into(), self.parent_chain.join(" < "));
        Rows {
            header: vec!["field", "value"],
            rows: flat
                .into_iter()
                .map(|(k, v)| vec![Cell::from(k), Cell::from(v)])
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> ActionLogRow {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parent_chains_read_every_known_shape() {
        let cases: &[(serde_json::Value, &[&str])] = &[
            // An array of objects under a "parent" key, then the row's own fields.
            (
                json!({"parentProcesses": [{"processPath": "c:\\a.exe"}, {"fullPath": "c:\\b.exe"}], "processPath": "c:\\a.exe", "createdByProcess": "c:\\c.exe"}),
                &["c:\\a.exe", "c:\\b.exe", "c:\\c.exe"],
            ),
            // An array of strings.
            (
                json!({"allParents": ["x.exe", "  ", "unknown", "y.exe"]}),
                &["x.exe", "y.exe"],
            ),
            // No chain: the row's own process fields, de-duplicated case-insensitively.
            (
                json!({"processPath": "C:\\P.exe", "parentProcessName": "c:\\p.exe", "actionLogCreatedByProcesses": [{"createdByProcess": "q.exe", "count": 2}]}),
                &["C:\\P.exe", "q.exe"],
            ),
            (json!({}), &[]),
        ];
        for (v, want) in cases {
            assert_eq!(parent_chain(&row(v.clone())), *want, "{v}");
        }
    }

    #[test]
    fn query_windows_cover_the_period_in_days_or_sixteenths() {
        use chrono::TimeZone;
        let t = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap();
        let w = query_windows(t, t + Duration::days(7));
        assert_eq!(w.len(), 7);
        assert_eq!(w[0], (t, t + Duration::days(1)));
        assert_eq!(w[6].1, t + Duration::days(7));
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0));
        assert_eq!(
            query_windows(t, t + Duration::hours(2)),
            vec![(t, t + Duration::hours(2))]
        );
        assert_eq!(query_windows(t, t + Duration::days(160)).len(), 16);
        assert_eq!(query_windows(t, t), vec![(t, t)]);
    }

    #[test]
    fn show_ids_must_be_the_string_id() {
        assert!(check_show_id("6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f").is_ok());
        let e = check_show_id("81234567890").unwrap_err().to_string();
        assert!(e.contains("eActionLogId") && e.contains("numeric"), "{e}");
        assert!(check_show_id("").is_err());
    }

    #[test]
    fn outcome_labels_follow_the_design() {
        let cases = [
            (json!({"actionId": 2}), "Blocked"),
            (json!({"actionId": 3, "isMonitorMode": false}), "Blocked"),
            (json!({"actionId": 2, "isMonitorMode": true}), "Audit only"),
            (json!({"actionId": 1}), "Permitted"),
            (json!({"actionId": 6}), "Ringfenced"),
            (json!({"actionId": 5}), "Other"),
        ];
        for (v, want) in cases {
            assert_eq!(outcome_label(&row(v.clone())), want, "{v}");
        }
    }
}
