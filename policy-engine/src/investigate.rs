//! Investigations: pure analyses over action-log rows, the audit-log workflows of an incident
//! responder (timeline around an alert, where a file appeared, who keeps getting denied, which
//! rules only audit on secured machines). Every output carries the action-log ids so a reviewer
//! can re-pull the exact rows.
//!
//! Rows are de-duplicated by `actionLogId` (else `eActionLogId`) as everywhere in the engine.
//! [`timeline`] looks for the built-in LOLBins and user-writable folders;
//! [`timeline_with_rules`] for those of a configured [`Rules`] (as the engine does).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use threatlocker_api::{
    ActionLogRow, ApprovalRequest, ApprovalRequestId, Computer, ComputerId, ComputerMode,
    OrganizationId, PolicyId,
};

use crate::config::{BinaryLists, ConfigError, Rules};
use crate::detect::{self, Outcome};
use crate::engine::{row_hashes, row_order};
use crate::fx::FxSet;
use crate::text::{file_name, glob_ci};

fn dedupe<'a>(rows: impl IntoIterator<Item = &'a ActionLogRow>) -> Vec<&'a ActionLogRow> {
    let mut seen: FxSet<String> = FxSet::default();
    let mut out: Vec<&ActionLogRow> = rows
        .into_iter()
        .filter(|r| r.dedupe_key().is_none_or(|k| seen.insert(k)))
        .collect();
    out.sort_by(|a, b| row_order(a, b));
    out
}

/// Why a timeline entry is unusual.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum Anomaly {
    /// First sighting in the window of a binary that is a LOLBin, lives in a user-writable
    /// folder, or is unsigned.
    UnusualBinary(String),
    /// Started by a LOLBin parent.
    LolbinChild(String),
    /// A process with network activity.
    NetworkActive(String),
}

/// One row on a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TimelineEntry {
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Action-log id.
    pub action_log_id: String,
    /// Host.
    pub hostname: Option<String>,
    /// User.
    pub username: Option<String>,
    /// File.
    pub full_path: Option<String>,
    /// Process that acted.
    pub process_path: Option<String>,
    /// Kind of action.
    pub action_type: Option<String>,
    /// Outcome.
    pub outcome: &'static str,
    /// Anomalies on this row.
    pub anomalies: Vec<Anomaly>,
}

/// Every action on a host around a time, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Timeline {
    /// The host asked for.
    pub host: String,
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (inclusive).
    pub to: DateTime<Utc>,
    /// Entries, oldest first.
    pub entries: Vec<TimelineEntry>,
    /// Index in `entries` of the first anomaly (the inflection point).
    pub first_anomaly: Option<usize>,
}

/// Every action on `host` (hostname, case-insensitive, or computer id) within `at ± window`,
/// oldest first, with the first anomaly marked. LOLBins and user-writable folders are the
/// built-in lists ([`DEFAULT_LOLBINS`](crate::DEFAULT_LOLBINS),
/// [`DEFAULT_USER_WRITABLE_PATHS`](crate::DEFAULT_USER_WRITABLE_PATHS)); use
/// [`timeline_with_rules`] to honour a configured [`Rules`].
pub fn timeline(
    rows: &[ActionLogRow],
    host: &str,
    at: DateTime<Utc>,
    window: Duration,
) -> Timeline {
    timeline_in(rows, host, at, window, &BinaryLists::defaults())
}

/// [`timeline`] with the LOLBins (`lolbins` plus `extra_lolbins`) and user-writable folders of
/// `rules`, so an investigation marks what the engine's detections flag. The lists are checked
/// as [`Engine::new`](crate::Engine::new) checks them; the error names the key and value.
pub fn timeline_with_rules(
    rows: &[ActionLogRow],
    host: &str,
    at: DateTime<Utc>,
    window: Duration,
    rules: &Rules,
) -> Result<Timeline, ConfigError> {
    Ok(timeline_in(
        rows,
        host,
        at,
        window,
        &BinaryLists::from_rules(rules)?,
    ))
}

fn timeline_in(
    rows: &[ActionLogRow],
    host: &str,
    at: DateTime<Utc>,
    window: Duration,
    binaries: &BinaryLists,
) -> Timeline {
    let (from, to) = (at - window, at + window);
    let host_t = host.trim();
    let rows = dedupe(rows.iter().filter(|r| {
        let on_host = r
            .hostname
            .as_deref()
            .is_some_and(|h| h.trim().eq_ignore_ascii_case(host_t))
            || r.computer_id
                .as_ref()
                .is_some_and(|c| c.as_str().eq_ignore_ascii_case(host_t));
        on_host && r.date_time.is_some_and(|t| t >= from && t <= to)
    }));
    let mut seen_bins: BTreeSet<String> = BTreeSet::new();
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows {
        let mut anomalies = Vec::new();
        let (key, _) = detect::application_key(r);
        let first_time = seen_bins.insert(key.into_owned());
        if first_time {
            if let Some(p) = r.full_path.as_deref() {
                let name = file_name(p).to_owned();
                if detect::is_lolbin(binaries, Some(p)) {
                    anomalies.push(Anomaly::UnusualBinary(format!(
                        "{name}: living-off-the-land binary"
                    )));
                } else if let Some(m) = detect::user_writable(binaries, p) {
                    anomalies.push(Anomaly::UnusualBinary(format!(
                        "{name}: runs from a user-writable folder ({m})"
                    )));
                } else if r.cert_exists == Some(false) {
                    anomalies.push(Anomaly::UnusualBinary(format!("{name}: unsigned")));
                }
            }
        }
        let parent = [r.process_path.as_deref(), r.parent_process_name.as_deref()]
            .into_iter()
            .flatten()
            .find(|p| detect::is_lolbin(binaries, Some(p)));
        if let (Some(parent), Some(child)) = (parent, r.full_path.as_deref()) {
            if !file_name(parent).eq_ignore_ascii_case(file_name(child)) {
                anomalies.push(Anomaly::LolbinChild(format!(
                    "{} started by {}",
                    file_name(child),
                    file_name(parent)
                )));
            }
        }
        let network = r
            .action_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("network"))
            || r.destination_ip_address
                .as_deref()
                .is_some_and(|d| !d.trim().is_empty());
        if network {
            let who = r
                .process_path
                .as_deref()
                .or(r.full_path.as_deref())
                .map(file_name)
                .unwrap_or("unknown process");
            let dest = match (&r.destination_ip_address, &r.destination_port) {
                (Some(ip), Some(port)) => format!(" to {ip}:{port}"),
                (Some(ip), None) => format!(" to {ip}"),
                _ => String::new(),
            };
            anomalies.push(Anomaly::NetworkActive(format!(
                "{who} network activity{dest}"
            )));
        }
        entries.push(TimelineEntry {
            at: r.date_time,
            action_log_id: row_id(r),
            hostname: r.hostname.clone(),
            username: r.username.clone(),
            full_path: r.full_path.clone(),
            process_path: r.process_path.clone(),
            action_type: r.action_type.clone(),
            outcome: detect::outcome(r).label(),
            anomalies,
        });
    }
    let first_anomaly = entries.iter().position(|e| !e.anomalies.is_empty());
    Timeline {
        host: host_t.to_owned(),
        from,
        to,
        entries,
        first_anomaly,
    }
}

/// The evidence id the engine uses for a row: `actionLogId`, else `eActionLogId`.
pub fn row_id(row: &ActionLogRow) -> String {
    crate::engine::row_id(row)
}

/// The outcome label of a row (`Blocked`, `Audit only`, `Permitted`, `Ringfenced`, `Other`),
/// following the design's definitions (block = deny not in monitor mode).
pub fn outcome_label(row: &ActionLogRow) -> &'static str {
    detect::outcome(row).label()
}

/// The parent-process chain of an action, nearest parent first, from its detail
/// (`ActionLogGetByIdV2?getAllParents=true`). The chain's shape is undocumented (reference
/// §3.1.2), so any array under a key containing "parent" is read (strings, or objects with
/// `processPath`/`fullPath`/`path`/`processName`/`name`), then the row's own `processPath`,
/// `parentProcessName`, `createdByProcess` and `actionLogCreatedByProcesses`.
pub fn parent_chain(detail: &ActionLogRow) -> Vec<String> {
    let mut chain: Vec<String> = Vec::new();
    let mut push = |s: &str| {
        let s = s.trim();
        if !s.is_empty()
            && !s.eq_ignore_ascii_case("unknown")
            && !chain.iter().any(|c| c.eq_ignore_ascii_case(s))
        {
            chain.push(s.to_owned());
        }
    };
    let mut keys: Vec<&String> = detail
        .extra
        .keys()
        .filter(|k| k.to_ascii_lowercase().contains("parent"))
        .collect();
    keys.sort();
    for k in keys {
        if let Some(serde_json::Value::Array(items)) = detail.extra.get(k) {
            for item in items {
                match item {
                    serde_json::Value::String(s) => push(s),
                    serde_json::Value::Object(o) => {
                        if let Some(s) = ["processPath", "fullPath", "path", "processName", "name"]
                            .iter()
                            .find_map(|f| o.get(*f).and_then(|v| v.as_str()))
                        {
                            push(s);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    for s in [
        detail.process_path.as_deref(),
        detail.parent_process_name.as_deref(),
        detail.created_by_process.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        push(s);
    }
    for c in detail.action_log_created_by_processes.iter().flatten() {
        if let Some(p) = c.created_by_process.as_deref() {
            push(p);
        }
    }
    chain
}

/// What to look for across the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FileQuery {
    /// A hash (`sha256Hash` or `hash`, case-insensitive).
    Hash(String),
    /// A path (case-insensitive; `*` wildcards allowed).
    Path(String),
}

impl FileQuery {
    /// Whether a row is about the file: a hash equal to `sha256Hash` or `hash`
    /// (case-insensitive), or a path glob matching `fullPath`.
    pub fn matches(&self, row: &ActionLogRow) -> bool {
        match self {
            FileQuery::Hash(h) => {
                let h = h.trim();
                !h.is_empty() && row_hashes(row).any(|x| x.trim().eq_ignore_ascii_case(h))
            }
            FileQuery::Path(p) => {
                let p = p.trim().to_lowercase();
                !p.is_empty()
                    && row
                        .full_path
                        .as_deref()
                        .is_some_and(|f| glob_ci(&p, f.trim()))
            }
        }
    }
}

/// One computer that saw the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ComputerSighting {
    /// Computer id.
    pub computer_id: Option<ComputerId>,
    /// Host name.
    pub hostname: Option<String>,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Earliest sighting.
    pub first_seen: Option<DateTime<Utc>>,
    /// Latest sighting.
    pub last_seen: Option<DateTime<Utc>>,
    /// Permits: the file ran here, the computer may be impacted.
    pub permits: u64,
    /// Blocks: the control stopped it here.
    pub blocks: u64,
    /// Audit-only hits: it would have been denied but ran.
    pub audit_only: u64,
    /// The file ran here (permit or audit-only).
    pub possibly_impacted: bool,
    /// Action-log ids, oldest first.
    pub action_log_ids: Vec<String>,
}

/// Where a file appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FileSpread {
    /// The query.
    pub query: FileQuery,
    /// Distinct computers.
    pub computers_affected: u64,
    /// Per computer, patient zero (earliest sighting) first.
    pub computers: Vec<ComputerSighting>,
    /// Total permits.
    pub permits: u64,
    /// Total blocks.
    pub blocks: u64,
    /// Total audit-only hits.
    pub audit_only: u64,
}

impl FileSpread {
    /// The earliest sighting.
    pub fn patient_zero(&self) -> Option<&ComputerSighting> {
        self.computers.first()
    }
}

/// Where a hash or path appeared across the fleet: computers, earliest sighting per computer
/// (patient zero first), permits (possibly impacted) versus blocks (stopped).
pub fn file_spread(rows: &[ActionLogRow], query: FileQuery) -> FileSpread {
    let rows = dedupe(rows.iter().filter(|r| query.matches(r)));
    let mut per: BTreeMap<String, ComputerSighting> = BTreeMap::new();
    let (mut permits, mut blocks, mut audit_only) = (0, 0, 0);
    for r in rows {
        let key = r
            .computer_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_else(|| r.hostname.as_deref().unwrap_or("").trim().to_lowercase());
        let s = per.entry(key).or_insert_with(|| ComputerSighting {
            computer_id: r.computer_id.clone(),
            hostname: r.hostname.clone(),
            organization_id: r.organization_id.clone(),
            first_seen: r.date_time,
            last_seen: r.date_time,
            permits: 0,
            blocks: 0,
            audit_only: 0,
            possibly_impacted: false,
            action_log_ids: Vec::new(),
        });
        s.last_seen = r.date_time.max(s.last_seen);
        match detect::outcome(r) {
            Outcome::Permit => {
                s.permits += 1;
                permits += 1;
            }
            Outcome::Block => {
                s.blocks += 1;
                blocks += 1;
            }
            Outcome::AuditOnly => {
                s.audit_only += 1;
                audit_only += 1;
            }
            _ => {}
        }
        s.possibly_impacted = s.permits + s.audit_only > 0;
        s.action_log_ids.push(row_id(r));
    }
    let mut computers: Vec<ComputerSighting> = per.into_values().collect();
    // Undated sightings last; then by host for a total order.
    sort_by_borrowed_key!(computers, |x| (
        x.first_seen.is_none(),
        x.first_seen,
        &x.hostname,
        &x.computer_id,
    ));
    FileSpread {
        query,
        computers_affected: computers.len() as u64,
        computers,
        permits,
        blocks,
        audit_only,
    }
}

/// Whether a [`DenialSource`] is a user or a computer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A user.
    User,
    /// A computer.
    Computer,
}

/// An application among a subject's denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AppCount {
    /// Application or file name.
    pub application: String,
    /// Application key.
    pub application_key: String,
    /// Blocks.
    pub count: u64,
}

/// A user or computer with repeated denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DenialSource {
    /// User or computer.
    pub kind: SubjectKind,
    /// User name or host name.
    pub subject: String,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Blocks.
    pub blocks: u64,
    /// First block.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last block.
    pub last_seen: Option<DateTime<Utc>>,
    /// Top applications (most blocked first, at most five).
    pub top_applications: Vec<AppCount>,
    /// Approval requests by the same user / from the same computer / for the same file that may
    /// explain the denials (a user fighting their tooling).
    pub related_approvals: Vec<ApprovalRequestId>,
    /// Action-log ids, oldest first.
    pub action_log_ids: Vec<String>,
}

/// Users and computers with at least `threshold` blocks among `rows` (the caller picks the
/// window), with their top applications and approval requests that may explain them. Sorted by
/// blocks (most first), then kind and subject.
pub fn repeated_denials(
    rows: &[ActionLogRow],
    threshold: u32,
    approvals: &[ApprovalRequest],
) -> Vec<DenialSource> {
    let threshold = u64::from(threshold.max(1));
    let rows = dedupe(rows.iter().filter(|r| r.is_block()));
    let mut groups: BTreeMap<(SubjectKind, String, Option<&OrganizationId>), Vec<&ActionLogRow>> =
        BTreeMap::new();
    for r in &rows {
        if let Some(u) = r
            .username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        {
            groups
                .entry((
                    SubjectKind::User,
                    u.to_lowercase(),
                    r.organization_id.as_ref(),
                ))
                .or_default()
                .push(r);
        }
        let comp = r
            .hostname
            .as_deref()
            .map(|h| h.trim().to_lowercase())
            .filter(|h| !h.is_empty())
            .or_else(|| r.computer_id.as_ref().map(|c| c.as_str().to_owned()));
        if let Some(c) = comp {
            groups
                .entry((SubjectKind::Computer, c, r.organization_id.as_ref()))
                .or_default()
                .push(r);
        }
    }
    let mut out = Vec::new();
    for ((kind, subject, org), rs) in groups {
        if (rs.len() as u64) < threshold {
            continue;
        }
        let mut apps: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for r in &rs {
            let (k, _) = detect::application_key(r);
            let e = apps.entry(k.into_owned()).or_insert_with(|| {
                (
                    detect::application_name(r).unwrap_or("unknown").to_owned(),
                    0,
                )
            });
            e.1 += 1;
        }
        let app_keys: BTreeSet<String> = apps.keys().map(|k| k.to_lowercase()).collect();
        let mut top: Vec<AppCount> = apps
            .into_iter()
            .map(|(k, (name, count))| AppCount {
                application: name,
                application_key: k,
                count,
            })
            .collect();
        top.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.application_key.cmp(&b.application_key))
        });
        top.truncate(5);
        let display = match kind {
            SubjectKind::User => rs[0].username.clone(),
            SubjectKind::Computer => rs[0].hostname.clone(),
        }
        .unwrap_or_else(|| subject.clone());
        let mut related: BTreeSet<ApprovalRequestId> = BTreeSet::new();
        for a in approvals {
            let Some(id) = &a.approval_request_id else {
                continue;
            };
            let same_subject = match kind {
                SubjectKind::User => a
                    .username
                    .as_deref()
                    .is_some_and(|u| u.trim().eq_ignore_ascii_case(&subject)),
                SubjectKind::Computer => a
                    .hostname
                    .as_deref()
                    .is_some_and(|h| h.trim().eq_ignore_ascii_case(&subject)),
            };
            let same_file = [a.sha256.as_deref(), a.hash.as_deref()]
                .into_iter()
                .flatten()
                .any(|h| app_keys.contains(&h.trim().to_lowercase()))
                || a.path
                    .as_deref()
                    .is_some_and(|p| app_keys.contains(&p.trim().to_lowercase()));
            if same_subject || same_file {
                related.insert(id.clone());
            }
        }
        out.push(DenialSource {
            kind,
            subject: display,
            organization_id: org.cloned(),
            blocks: rs.len() as u64,
            first_seen: rs.first().and_then(|r| r.date_time),
            last_seen: rs.last().and_then(|r| r.date_time),
            top_applications: top,
            related_approvals: related.into_iter().collect(),
            action_log_ids: rs.iter().map(|r| row_id(r)).collect(),
        });
    }
    sort_by_borrowed_key!(out, |x| (
        Reverse(x.blocks),
        x.kind,
        &x.subject,
        &x.organization_id,
    ));
    out
}

use std::cmp::Reverse;

/// Audit-only hits on Secure computers grouped by the policy that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BypassGroup {
    /// Policy id.
    pub policy_id: Option<PolicyId>,
    /// Policy name.
    pub policy_name: Option<String>,
    /// Organization of the policy (else of the rows).
    pub organization_id: Option<OrganizationId>,
    /// Hits.
    pub hits: u64,
    /// Computers (host names), sorted.
    pub computers: Vec<String>,
    /// Applications (names), sorted.
    pub applications: Vec<String>,
    /// First hit.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last hit.
    pub last_seen: Option<DateTime<Utc>>,
    /// What to do about it.
    pub suggestion: String,
    /// Action-log ids, oldest first.
    pub action_log_ids: Vec<String>,
}

/// Audit-only (monitor-mode) hits on computers whose mode is Secure: a rule that matched without
/// enforcing. Grouped by policy, most hits first.
pub fn audit_only_on_secure(rows: &[ActionLogRow], computers: &[Computer]) -> Vec<BypassGroup> {
    let mut secure_ids: FxSet<&str> = FxSet::default();
    let mut secure_hosts: FxSet<String> = FxSet::default();
    for c in computers {
        if c.effective_mode() == Some(ComputerMode::Secure) {
            if let Some(id) = &c.computer_id {
                secure_ids.insert(id.as_str());
            }
            for h in [c.hostname.as_deref(), c.computer_name.as_deref()]
                .into_iter()
                .flatten()
            {
                secure_hosts.insert(h.trim().to_lowercase());
            }
        }
    }
    let known_ids: FxSet<&str> = computers
        .iter()
        .filter_map(|c| c.computer_id.as_ref().map(|i| i.as_str()))
        .collect();
    let on_secure = |r: &ActionLogRow| match r.computer_id.as_ref().map(|c| c.as_str()) {
        Some(id) if known_ids.contains(id) => secure_ids.contains(id),
        _ => r
            .hostname
            .as_deref()
            .is_some_and(|h| secure_hosts.contains(&h.trim().to_lowercase())),
    };
    let rows = dedupe(rows.iter().filter(|r| r.is_audit_only() && on_secure(r)));
    let mut groups: BTreeMap<(Option<&PolicyId>, Option<&str>), Vec<&ActionLogRow>> =
        BTreeMap::new();
    for r in rows {
        let name = if r.policy_id.is_none() {
            r.policy_name.as_deref()
        } else {
            None
        };
        groups
            .entry((r.policy_id.as_ref(), name))
            .or_default()
            .push(r);
    }
    let mut out: Vec<BypassGroup> = groups
        .into_values()
        .map(|rs| {
            let first = rs[0];
            let policy = first.policy_name.clone();
            let suggestion = format!(
                "Policy {} only audited {} hit(s) on Secure computers. If the matched applications should not run, change the policy's action to deny (block); if they should, make it a permit so the audit noise stops.",
                policy.as_deref().map(|p| format!("\"{p}\"")).unwrap_or_else(|| "(unknown)".into()),
                rs.len()
            );
            BypassGroup {
                policy_id: first.policy_id.clone(),
                policy_name: policy,
                organization_id: first.policy_organization_id.clone().or_else(|| first.organization_id.clone()),
                hits: rs.len() as u64,
                computers: rs.iter().filter_map(|r| r.hostname.clone()).collect::<BTreeSet<_>>().into_iter().collect(),
                applications: rs
                    .iter()
                    .filter_map(|r| detect::application_name(r).map(str::to_owned))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                first_seen: rs.first().and_then(|r| r.date_time),
                last_seen: rs.last().and_then(|r| r.date_time),
                suggestion,
                action_log_ids: rs.iter().map(|r| row_id(r)).collect(),
            }
        })
        .collect();
    sort_by_borrowed_key!(out, |x| (
        Reverse(x.hits),
        &x.policy_name,
        &x.policy_id,
        &x.action_log_ids,
    ));
    out
}
