//! Pure computation of the [`DailyReport`] from the engine's input and decisions and from what
//! the state store recorded in the period ([`Activity`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use policy_engine::{build_report, Decisions, Input, Outcomes, RiskLevel, TicketOutcome};
use threatlocker_api::{ActionLogRow, ApprovalRequestId, ComputerMode};

use super::model::{
    ApprovalLine, ComputerLine, DailyReport, DetectionLine, HourBucket, OrganizationRow, Period,
    PolicyChangeLine, RepeatBlockLine, RiskCounts, TicketActivity, TopApplication, TopUser, Totals,
};
use crate::state::{IntentKind, IntentRecord, IntentState};

/// Default number of entries in the "top" lists.
pub const DEFAULT_TOP_N: usize = 10;

/// What the runs did in the period, read from the state store's intents.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Activity {
    /// Permits done in the period.
    pub permits: Vec<PermitDone>,
    /// Tickets opened or updated in the period.
    pub tickets: Vec<TicketActivity>,
    /// Policy deploys done in the period.
    pub deploys: Vec<DeployDone>,
    /// Every ticket the store knows (dedupe key → ticket id, opened in the period or not), so
    /// detections can name the ticket holding them.
    pub known_tickets: BTreeMap<String, (String, bool)>,
}

/// A permit a run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PermitDone {
    /// Approval request id.
    pub request_id: String,
    /// Application (from the intent's payload).
    pub application: Option<String>,
    /// Organization id.
    pub organization_id: Option<String>,
    /// The engine rule that approved it.
    pub rule: Option<String>,
    /// Scope (`computer`, `group`, `organization`).
    pub scope: Option<String>,
    /// When it was confirmed.
    pub at: DateTime<Utc>,
}

/// A policy deploy a run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeployDone {
    /// Organization id.
    pub organization_id: Option<String>,
    /// Requests whose permits it deployed.
    pub requests: Vec<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The dedupe key of a ticket intent: `ticket:<dedupe key>`, or
/// `ticket:<dedupe key>:after:<closed ticket id>` for a ticket opened after the previous one of
/// the incident was closed.
fn ticket_dedupe_key(key: &str) -> String {
    let k = key.strip_prefix("ticket:").unwrap_or(key);
    k.split_once(":after:").map_or(k, |(d, _)| d).to_owned()
}

fn in_period(at: DateTime<Utc>, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
    start <= at && at < end
}

fn payload_str(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

impl Activity {
    /// Reads the intents the workflow recorded (keys `permit:<request>`, `ticket:<dedupe key>`,
    /// `note:<dedupe key>:<time>`, policy deploys) and keeps those confirmed done in
    /// `[start, end)`. Payloads are read leniently: a missing field leaves a blank, never an
    /// error.
    pub fn from_intents(
        intents: &[IntentRecord],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        let mut out = Activity::default();
        let mut summaries: BTreeMap<String, String> = BTreeMap::new();
        for i in intents.iter().filter(|i| i.state == IntentState::Done) {
            if i.kind == IntentKind::Ticket {
                let dedupe = ticket_dedupe_key(&i.key);
                if let Some(s) = i
                    .payload
                    .get("ticket")
                    .and_then(|t| payload_str(t, "summary"))
                {
                    summaries.insert(dedupe.clone(), s);
                }
                if let Some(id) = &i.result {
                    let opened_now = in_period(i.updated_at, start, end);
                    out.known_tickets.insert(dedupe, (id.clone(), opened_now));
                }
            }
        }
        for i in intents.iter().filter(|i| i.state == IntentState::Done) {
            if !in_period(i.updated_at, start, end) {
                continue;
            }
            match i.kind {
                IntentKind::Permit => out.permits.push(PermitDone {
                    request_id: payload_str(&i.payload, "request_id").unwrap_or_else(|| {
                        i.key.strip_prefix("permit:").unwrap_or(&i.key).to_owned()
                    }),
                    application: payload_str(&i.payload, "application"),
                    organization_id: payload_str(&i.payload, "organization_id"),
                    rule: payload_str(&i.payload, "rule"),
                    scope: payload_str(&i.payload, "scope"),
                    at: i.updated_at,
                }),
                IntentKind::Ticket => {
                    let dedupe = ticket_dedupe_key(&i.key);
                    out.tickets.push(TicketActivity {
                        ticket_id: i.result.clone().unwrap_or_default(),
                        action: "opened".to_owned(),
                        summary: summaries.get(&dedupe).cloned(),
                        dedupe_key: Some(dedupe),
                        at: i.updated_at,
                    });
                }
                IntentKind::Note => {
                    // note:<dedupe key>:<last seen>; both parts may contain ':', so the key
                    // is recognised among the tickets the store knows.
                    let dedupe = i.key.strip_prefix("note:").and_then(|rest| {
                        out.known_tickets
                            .keys()
                            .chain(summaries.keys())
                            .find(|k| {
                                rest.strip_prefix(k.as_str())
                                    .is_some_and(|tail| tail.is_empty() || tail.starts_with(':'))
                            })
                            .cloned()
                    });
                    out.tickets.push(TicketActivity {
                        ticket_id: payload_str(&i.payload, "ticket_id").unwrap_or_default(),
                        action: "updated".to_owned(),
                        summary: dedupe.as_ref().and_then(|d| summaries.get(d).cloned()),
                        dedupe_key: dedupe,
                        at: i.updated_at,
                    });
                }
                IntentKind::PolicyDeploy => out.deploys.push(DeployDone {
                    organization_id: payload_str(&i.payload, "organization_id"),
                    requests: i
                        .payload
                        .get("requests")
                        .and_then(|r| r.as_array())
                        .map(|a| {
                            a.iter()
                                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    at: i.updated_at,
                }),
                _ => {}
            }
        }
        out.tickets
            .sort_by(|a, b| (a.at, &a.ticket_id, &a.action).cmp(&(b.at, &b.ticket_id, &b.action)));
        out
    }

    /// The [`Outcomes`] these records mean for [`build_report`]: permitted requests, the
    /// ticket holding each incident (opened in the period or earlier), deployed requests.
    pub fn outcomes(&self) -> Outcomes {
        let mut o = Outcomes::new(false);
        for p in &self.permits {
            o.approvals.insert(
                ApprovalRequestId::new(p.request_id.clone()),
                policy_engine::ApprovalOutcome::permitted(),
            );
        }
        for (key, (id, opened)) in &self.known_tickets {
            o.tickets
                .insert(key.clone(), TicketOutcome::new(id.clone(), *opened));
        }
        for d in &self.deploys {
            for r in &d.requests {
                o.policy_changes_applied
                    .insert(ApprovalRequestId::new(r.clone()));
            }
        }
        o
    }
}

/// Options of the computation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ComputeOptions {
    /// Entries in the top lists.
    pub top_n: usize,
    /// IANA zone name for display.
    pub timezone: String,
}

impl Default for ComputeOptions {
    fn default() -> Self {
        Self {
            top_n: DEFAULT_TOP_N,
            timezone: "UTC".to_owned(),
        }
    }
}

/// The application key of the design: `sha256Hash`, else `hash`, else the lower-cased
/// `fullPath`.
fn application_key(row: &ActionLogRow) -> String {
    let nonempty = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    nonempty(&row.sha256_hash)
        .or_else(|| nonempty(&row.hash))
        .or_else(|| nonempty(&row.full_path).map(|p| p.to_lowercase()))
        .unwrap_or_default()
}

fn application_name(row: &ActionLogRow) -> String {
    row.application_name
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| row.file_name())
        .or(row.full_path.as_deref())
        .unwrap_or("(unknown)")
        .to_owned()
}

/// The period's events with the engine's definition: `dateTime` in `[start, end)`,
/// de-duplicated by `actionLogId` (else `eActionLogId`), the first kept; rows with neither id
/// count each.
pub fn period_events(input: &Input) -> Vec<&ActionLogRow> {
    let mut seen = HashSet::new();
    input
        .events
        .iter()
        .filter(|r| {
            r.date_time
                .is_some_and(|t| in_period(t, input.window_start, input.window_end))
        })
        .filter(|r| r.dedupe_key().is_none_or(|k| seen.insert(k)))
        .collect()
}

/// Where a row stands in the period: its time, then its id. Names and paths come from the
/// first row in this order, so the report does not depend on the order rows arrive in (the
/// action log is read per organization, concurrently).
type RowOrder = (DateTime<Utc>, String);

fn row_order(r: &ActionLogRow, at: DateTime<Utc>) -> RowOrder {
    (at, r.dedupe_key().unwrap_or_default())
}

#[derive(Debug)]
struct App {
    first: RowOrder,
    name: String,
    path: Option<String>,
    blocks: u64,
    computers: BTreeSet<String>,
    orgs: BTreeSet<String>,
}

#[derive(Debug)]
struct User {
    first: RowOrder,
    name: String,
    blocks: u64,
    apps: BTreeSet<String>,
}

#[derive(Debug, Default)]
struct OrgCount {
    events: u64,
    blocks: u64,
    audit_only: u64,
}

/// What the report counts from the period's rows, built one row at a time: counts, blocks per
/// hour, per-application, per-user and per-organization figures, and the organization names
/// rows carry. Its memory follows those keys, not the rows, so the daily report streams the
/// action log into it (and into the engine's state) instead of holding the window's rows.
#[derive(Debug)]
pub struct RowTally {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    totals: Totals,
    per_hour: BTreeMap<DateTime<Utc>, u64>,
    apps: BTreeMap<String, App>,
    users: BTreeMap<String, User>,
    per_org: BTreeMap<Option<String>, OrgCount>,
    /// The name the first row (in [`RowOrder`]) gives each organization id.
    row_org_names: BTreeMap<String, (RowOrder, String)>,
}

impl RowTally {
    /// An empty tally for the period `[start, end)`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self {
            start,
            end,
            totals: Totals::default(),
            per_hour: BTreeMap::new(),
            apps: BTreeMap::new(),
            users: BTreeMap::new(),
            per_org: BTreeMap::new(),
            row_org_names: BTreeMap::new(),
        }
    }

    /// Counts `r` if its `dateTime` is in the period; returns whether it did. The caller
    /// de-duplicates (as [`period_events`] does, or as the action-log reader does per
    /// organization).
    pub fn count(&mut self, r: &ActionLogRow) -> bool {
        let Some(at) = r.date_time.filter(|t| in_period(*t, self.start, self.end)) else {
            return false;
        };
        let order = row_order(r, at);
        if let (Some(id), Some(name)) = (&r.organization_id, &r.organization_name) {
            match self.row_org_names.get_mut(id.as_str()) {
                Some(known) if known.0 <= order => {}
                Some(known) => *known = (order.clone(), name.clone()),
                None => {
                    self.row_org_names
                        .insert(id.to_string(), (order.clone(), name.clone()));
                }
            }
        }
        let totals = &mut self.totals;
        totals.events += 1;
        let org = r.organization_id.as_ref().map(ToString::to_string);
        let oc = self.per_org.entry(org.clone()).or_default();
        oc.events += 1;
        if r.is_audit_only() {
            totals.audit_only += 1;
            oc.audit_only += 1;
        }
        if r.action_id.is_some_and(|a| a.code() == 1) {
            totals.permits += 1;
        }
        if !r.is_block() {
            return true;
        }
        totals.blocks += 1;
        oc.blocks += 1;
        let hour = at.duration_trunc(Duration::hours(1)).unwrap_or(at);
        *self.per_hour.entry(hour).or_insert(0) += 1;
        let key = application_key(r);
        let computer = r
            .computer_id
            .as_ref()
            .map(ToString::to_string)
            .or_else(|| r.hostname.as_ref().map(|h| h.to_lowercase()));
        let app = self.apps.entry(key.clone()).or_insert_with(|| App {
            first: order.clone(),
            name: application_name(r),
            path: r.full_path.clone(),
            blocks: 0,
            computers: BTreeSet::new(),
            orgs: BTreeSet::new(),
        });
        if order < app.first {
            app.first = order.clone();
            app.name = application_name(r);
            app.path.clone_from(&r.full_path);
        }
        app.blocks += 1;
        app.computers.extend(computer);
        app.orgs.extend(org);
        if let Some(u) = r.username.as_deref().filter(|u| !u.trim().is_empty()) {
            let user = self.users.entry(u.to_lowercase()).or_insert_with(|| User {
                first: order.clone(),
                name: u.to_owned(),
                blocks: 0,
                apps: BTreeSet::new(),
            });
            if order < user.first {
                user.first = order;
                u.clone_into(&mut user.name);
            }
            user.blocks += 1;
            user.apps.insert(key);
        }
        true
    }
}

/// Computes the report. Pure: the same arguments always give the same report.
pub fn compute(
    input: &Input,
    decisions: &Decisions,
    activity: &Activity,
    options: &ComputeOptions,
    errors: Vec<String>,
) -> DailyReport {
    let mut tally = RowTally::new(input.window_start, input.window_end);
    for r in period_events(input) {
        tally.count(r);
    }
    compute_with(input, tally, decisions, activity, options, errors)
}

/// [`compute`] with the period's rows already counted into `tally`; the rows of `input` are
/// not read (its window, organizations, computers and approvals are).
pub fn compute_with(
    input: &Input,
    tally: RowTally,
    decisions: &Decisions,
    activity: &Activity,
    options: &ComputeOptions,
    errors: Vec<String>,
) -> DailyReport {
    let monitoring = build_report(decisions, &activity.outcomes());
    let mut errors = errors;
    let RowTally {
        mut totals,
        per_hour: blocks_by_hour,
        apps,
        users,
        per_org,
        row_org_names,
        ..
    } = tally;

    // Organization names: the listed organizations', then the rows', then the computers'.
    let mut org_names: BTreeMap<String, String> = BTreeMap::new();
    for o in &input.organizations {
        for o in o.flatten() {
            if let (Some(id), Some(name)) = (&o.organization_id, o.label()) {
                org_names.insert(id.to_string(), name.to_owned());
            }
        }
    }
    for (id, (_, name)) in row_org_names {
        org_names.entry(id).or_insert(name);
    }
    for c in &input.computers {
        if let (Some(id), Some(name)) = (&c.organization_id, &c.organization_name) {
            org_names
                .entry(id.to_string())
                .or_insert_with(|| name.clone());
        }
    }
    let org_label = |id: Option<&str>| -> Option<String> {
        id.map(|id| org_names.get(id).cloned().unwrap_or_else(|| id.to_owned()))
    };

    // Blocks per hour (every hour of the period, blocked or not).
    let first_hour = input
        .window_start
        .duration_trunc(Duration::hours(1))
        .unwrap_or(input.window_start);
    let mut per_hour: BTreeMap<DateTime<Utc>, u64> = BTreeMap::new();
    let mut h = first_hour;
    while h < input.window_end {
        per_hour.insert(h, 0);
        h += Duration::hours(1);
    }
    for (hour, n) in blocks_by_hour {
        *per_hour.entry(hour).or_insert(0) += n;
    }
    if totals.events != decisions.blocks.total_events || totals.blocks != decisions.blocks.blocks {
        errors.push(format!(
            "internal: the report counted {} events and {} blocks where the engine counted {} and {}",
            totals.events, totals.blocks, decisions.blocks.total_events, decisions.blocks.blocks
        ));
    }
    let blocks_per_hour = per_hour
        .into_iter()
        .map(|(hour, blocks)| HourBucket { hour, blocks })
        .collect();
    let mut top_applications: Vec<TopApplication> = apps
        .into_iter()
        .map(|(key, a)| TopApplication {
            application: a.name,
            application_key: key,
            path: a.path,
            blocks: a.blocks,
            computers: a.computers.len() as u64,
            organizations: a.orgs.len() as u64,
        })
        .collect();
    top_applications.sort_by(|a, b| {
        b.blocks
            .cmp(&a.blocks)
            .then_with(|| a.application_key.cmp(&b.application_key))
    });
    top_applications.truncate(options.top_n);
    let mut top_users: Vec<TopUser> = users
        .into_iter()
        .map(|(key, u)| {
            (
                key,
                TopUser {
                    user: u.name,
                    blocks: u.blocks,
                    applications: u.apps.len() as u64,
                },
            )
        })
        .map(|(_, u)| u)
        .collect();
    top_users.sort_by(|a, b| {
        b.blocks
            .cmp(&a.blocks)
            .then_with(|| a.user.to_lowercase().cmp(&b.user.to_lowercase()))
    });
    top_users.truncate(options.top_n);

    // Repeat blocks and detections (the engine's, with the report's ticket ids).
    let repeat_blocks: Vec<RepeatBlockLine> = decisions
        .blocks
        .repeat_blocks
        .iter()
        .map(|r| RepeatBlockLine {
            organization: org_label(r.organization_id.as_ref().map(|o| o.as_str())),
            application: r.application.clone(),
            device: r.device.clone(),
            count: r.count,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
        })
        .collect();
    let ticket_of: BTreeMap<&str, Option<&String>> = monitoring
        .security_events
        .iter()
        .map(|e| (e.key.as_str(), e.ticket_id.as_ref()))
        .collect();
    let mut by_risk = RiskCounts::default();
    let mut org_detections: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    let detections: Vec<DetectionLine> = decisions
        .detections
        .iter()
        .map(|d| {
            by_risk.add(d.risk_level);
            let e = org_detections
                .entry(d.organization_id.as_ref().map(ToString::to_string))
                .or_default();
            e.0 += 1;
            if d.risk_level >= RiskLevel::High {
                e.1 += 1;
            }
            DetectionLine {
                risk_level: d.risk_level,
                event_type: d.event_type.to_owned(),
                rule: d.rule.to_owned(),
                reason: d.reason.clone(),
                organization: d
                    .organization_name
                    .clone()
                    .or_else(|| org_label(d.organization_id.as_ref().map(|o| o.as_str()))),
                device: d.device.clone(),
                user: d.user.clone(),
                application: d.application.clone(),
                action_taken: d.action_taken.to_owned(),
                first_seen: d.first_seen,
                last_seen: d.last_seen,
                row_count: d.row_count,
                action_log_ids: d.action_log_ids.clone(),
                hashes: d.hashes.clone(),
                ticket_id: ticket_of.get(d.key.as_str()).copied().flatten().cloned(),
                key: d.key.clone(),
            }
        })
        .collect();

    // Approvals: permitted in the period (state store), and those left for a technician.
    let auto_approved: Vec<ApprovalLine> = activity
        .permits
        .iter()
        .map(|p| {
            let rule = p.rule.clone().unwrap_or_default();
            let reason = policy_engine::rules::rule(&rule)
                .map(|r| r.description.to_owned())
                .unwrap_or_else(|| "Auto-approved by the workflow.".to_owned());
            let pending = decisions.approvals.iter().find(|a| {
                a.request_id
                    .as_ref()
                    .is_some_and(|id| id.as_str() == p.request_id)
            });
            ApprovalLine {
                request_id: Some(p.request_id.clone()),
                application: p
                    .application
                    .clone()
                    .unwrap_or_else(|| "(unknown)".to_owned()),
                organization: org_label(p.organization_id.as_deref()),
                requested_by: pending.and_then(|a| a.requested_by.clone()),
                device: pending.and_then(|a| a.device.clone()),
                rule,
                reason,
                at: Some(p.at),
            }
        })
        .collect();
    let mut org_review: BTreeMap<Option<String>, u64> = BTreeMap::new();
    let sent_to_review: Vec<ApprovalLine> = decisions
        .approvals
        .iter()
        .zip(&monitoring.approval_requests)
        .filter(|(_, r)| !r.auto_approved)
        .map(|(a, r)| {
            *org_review
                .entry(a.organization_id.as_ref().map(ToString::to_string))
                .or_default() += 1;
            ApprovalLine {
                request_id: r.request_id.clone(),
                application: r.application.clone(),
                organization: r
                    .company
                    .clone()
                    .or_else(|| org_label(a.organization_id.as_ref().map(|o| o.as_str()))),
                requested_by: r.requested_by.clone(),
                device: r.device.clone(),
                rule: r.rule.clone(),
                reason: r.reason.clone(),
                at: None,
            }
        })
        .collect();

    // Computers not in Secure mode, and the per-organization table.
    let mut org_computers: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    let mut computers_not_secure = Vec::new();
    for c in &input.computers {
        let org = c.organization_id.as_ref().map(ToString::to_string);
        let e = org_computers.entry(org.clone()).or_default();
        e.0 += 1;
        if matches!(c.mode, Some(ComputerMode::Secure)) {
            continue;
        }
        e.1 += 1;
        computers_not_secure.push(ComputerLine {
            organization: org_label(org.as_deref()),
            name: c
                .computer_name
                .clone()
                .or_else(|| c.hostname.clone())
                .or_else(|| c.computer_id.as_ref().map(ToString::to_string))
                .unwrap_or_else(|| "(unnamed)".to_owned()),
            mode: c.mode.as_ref().map_or("unknown", |m| m.as_str()).to_owned(),
            last_checkin: c.last_checkin,
        });
    }
    computers_not_secure.sort_by(|a, b| {
        (&a.organization, &a.name, &a.mode).cmp(&(&b.organization, &b.name, &b.mode))
    });
    let mut org_ids: BTreeSet<Option<String>> = BTreeSet::new();
    org_ids.extend(org_names.keys().cloned().map(Some));
    org_ids.extend(per_org.keys().cloned());
    org_ids.extend(org_detections.keys().cloned());
    org_ids.extend(org_review.keys().cloned());
    org_ids.extend(org_computers.keys().cloned());
    let mut organizations: Vec<OrganizationRow> = org_ids
        .into_iter()
        .map(|id| {
            let counts = per_org.get(&id);
            let det = org_detections.get(&id).copied().unwrap_or_default();
            let comp = org_computers.get(&id).copied().unwrap_or_default();
            OrganizationRow {
                name: org_label(id.as_deref()).unwrap_or_else(|| "(no organization)".to_owned()),
                organization_id: id.clone(),
                events: counts.map_or(0, |c| c.events),
                blocks: counts.map_or(0, |c| c.blocks),
                audit_only: counts.map_or(0, |c| c.audit_only),
                detections: det.0,
                high_or_critical: det.1,
                pending_review: org_review.get(&id).copied().unwrap_or_default(),
                computers: comp.0,
                not_secure: comp.1,
            }
        })
        .collect();
    organizations.sort_by(|a, b| {
        b.blocks
            .cmp(&a.blocks)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.organization_id.cmp(&b.organization_id))
    });

    let policy_changes: Vec<PolicyChangeLine> = activity
        .deploys
        .iter()
        .map(|d| PolicyChangeLine {
            organization: org_label(d.organization_id.as_deref()),
            requests: d.requests.clone(),
            at: d.at,
        })
        .collect();

    totals.unique_applications_blocked = decisions.blocks.unique_applications_blocked;
    totals.repeat_blocks = repeat_blocks.len() as u64;
    totals.detections = detections.len() as u64;
    totals.auto_approved = auto_approved.len() as u64;
    totals.sent_to_review = sent_to_review.len() as u64;
    totals.tickets_opened = activity
        .tickets
        .iter()
        .filter(|t| t.action == "opened")
        .count() as u64;
    totals.tickets_updated = activity
        .tickets
        .iter()
        .filter(|t| t.action == "updated")
        .map(|t| &t.ticket_id)
        .collect::<BTreeSet<_>>()
        .len() as u64;
    totals.policy_changes_applied = policy_changes.len() as u64;
    totals.computers_not_secure = computers_not_secure.len() as u64;
    totals.organizations = organizations.len() as u64;
    errors.extend(monitoring.errors.iter().cloned());

    DailyReport {
        period: Period {
            start: input.window_start,
            end: input.window_end,
            generated_at: input.now,
            timezone: options.timezone.clone(),
        },
        monitoring_summary: monitoring.monitoring_summary,
        blocked_summary: monitoring.blocked_summary,
        auto_approvals_processed: monitoring.auto_approvals_processed,
        manual_review_required: monitoring.manual_review_required,
        totals,
        blocks_per_hour,
        top_applications,
        top_users,
        repeat_blocks,
        detections_by_risk: by_risk,
        detections,
        auto_approved,
        sent_to_review,
        tickets: activity.tickets.clone(),
        policy_changes,
        organizations,
        computers_not_secure,
        errors,
    }
}
