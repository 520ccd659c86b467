//! The monitoring report in the original workflow's shape, built purely from the engine's
//! [`Decisions`] and what the workflow reports back ([`Outcomes`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use threatlocker_api::ApprovalRequestId;

use crate::decisions::Decisions;
use crate::rules::RiskLevel;

/// What the workflow did with the decisions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Outcomes {
    /// Nothing was applied: planned changes are reported as such.
    pub dry_run: bool,
    /// Per approval request: was it permitted, and any error.
    pub approvals: BTreeMap<ApprovalRequestId, ApprovalOutcome>,
    /// Per ticket dedupe key: the PSA ticket holding it and whether it was opened this run.
    pub tickets: BTreeMap<String, TicketOutcome>,
    /// Requests whose policy change was applied (deployed) this run.
    pub policy_changes_applied: BTreeSet<ApprovalRequestId>,
    /// Run-level errors (a failed fetch, a failed notification, ...).
    pub errors: Vec<String>,
}

impl Outcomes {
    /// Empty outcomes; `dry_run` as given.
    pub fn new(dry_run: bool) -> Self {
        Self {
            dry_run,
            ..Self::default()
        }
    }
}

/// What happened to one approval request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApprovalOutcome {
    /// The request was permitted this run.
    pub permitted: bool,
    /// Why applying the decision failed, if it did.
    pub error: Option<String>,
}

impl ApprovalOutcome {
    /// Permitted.
    pub fn permitted() -> Self {
        Self {
            permitted: true,
            error: None,
        }
    }

    /// Failed with an error.
    pub fn failed(error: impl Into<String>) -> Self {
        Self {
            permitted: false,
            error: Some(error.into()),
        }
    }
}

/// The PSA ticket holding an incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TicketOutcome {
    /// PSA ticket id.
    pub ticket_id: String,
    /// Opened this run (false: a note was added to an open ticket).
    pub created: bool,
}

impl TicketOutcome {
    /// A ticket outcome.
    pub fn new(ticket_id: impl Into<String>, created: bool) -> Self {
        Self {
            ticket_id: ticket_id.into(),
            created,
        }
    }
}

/// The report, in the original workflow's shape (plus `dry_run`, `window`, `errors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MonitoringReport {
    /// No errors.
    pub success: bool,
    /// Totals.
    pub monitoring_summary: MonitoringSummary,
    /// One entry per pending request.
    pub approval_requests: Vec<ReportApproval>,
    /// One entry per detection.
    pub security_events: Vec<ReportSecurityEvent>,
    /// Block totals.
    pub blocked_summary: BlockedSummary,
    /// Requests auto-approved (permitted) this run.
    pub auto_approvals_processed: u64,
    /// Pending requests left for a technician.
    pub manual_review_required: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// The window evaluated.
    pub window: ReportWindow,
    /// Errors, if any.
    pub errors: Vec<String>,
}

/// `monitoring_summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitoringSummary {
    /// Events in the window (de-duplicated rows).
    pub total_events: u64,
    /// Pending approval requests found.
    pub approval_requests: u64,
    /// Blocks in the window (rows, not distinct applications).
    pub blocked_applications: u64,
    /// Entries in `security_events`.
    pub security_alerts: u64,
    /// Policy changes applied this run (planned ones in a dry run).
    pub policy_changes: u64,
}

/// One `approval_requests[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportApproval {
    /// Request id.
    pub request_id: Option<String>,
    /// Application.
    pub application: String,
    /// Hash.
    pub hash: Option<String>,
    /// Requesting user.
    pub requested_by: Option<String>,
    /// Organization name.
    pub company: Option<String>,
    /// Computer name.
    pub device: Option<String>,
    /// Auto-approved (permitted, or planned in a dry run).
    pub auto_approved: bool,
    /// Why, either way.
    pub reason: String,
    /// The rule that decided.
    pub rule: String,
}

/// One `security_events[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSecurityEvent {
    /// Event type.
    pub event_type: String,
    /// Application.
    pub application: String,
    /// Organization name.
    pub company: Option<String>,
    /// Computer name(s).
    pub device: Option<String>,
    /// User(s).
    pub user: Option<String>,
    /// Worst outcome.
    pub action_taken: String,
    /// Risk.
    pub risk_level: RiskLevel,
    /// Its incident's ticket was opened this run.
    pub ticket_created: bool,
    /// The ticket of its incident (new or existing), whenever one holds it.
    pub ticket_id: Option<String>,
    /// The rule that fired (the strongest matching these rows).
    pub rule: String,
    /// Detection key.
    pub key: String,
    /// Incident key (organization + computer, or organization + file): also the ticket's
    /// dedupe key.
    #[serde(default)]
    pub incident: String,
    /// Action-log ids behind the detection (oldest first, capped at `rules.max_evidence_ids`,
    /// never empty).
    #[serde(default)]
    pub action_log_ids: Vec<String>,
    /// Weaker rules that matched the same rows.
    #[serde(default)]
    pub also_matched: Vec<String>,
}

/// `blocked_summary`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedSummary {
    /// Distinct application keys among the blocks.
    pub unique_applications_blocked: u64,
    /// Repeat-block pairs.
    pub repeat_blocks: u64,
    /// New tickets opened this run.
    pub tickets_created: u64,
}

/// The evaluated window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportWindow {
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
    /// When the run evaluated it.
    pub generated_at: DateTime<Utc>,
}

/// Builds the report. Pure: the numbers follow the design's definitions table.
///
/// - `auto_approved` is true for a request the engine auto-approved and the workflow permitted
///   (or, in a dry run, would have permitted); a failed permit is reported as manual review
///   with the error in `reason`.
/// - `auto_approvals_processed` counts requests actually permitted this run (0 in a dry run);
///   `manual_review_required` counts the pending requests not permitted.
/// - `policy_changes` counts applied changes, or planned ones in a dry run.
/// - `ticket_created` is true when the ticket of the detection's incident was opened this run;
///   `ticket_id` is set whenever a ticket holds the incident.
/// - `success` is false when there is any run error or approval error.
pub fn build_report(decisions: &Decisions, outcomes: &Outcomes) -> MonitoringReport {
    let mut errors = outcomes.errors.clone();
    let mut approval_requests = Vec::with_capacity(decisions.approvals.len());
    let mut permitted = 0u64;
    for a in &decisions.approvals {
        let outcome = a
            .request_id
            .as_ref()
            .and_then(|id| outcomes.approvals.get(id));
        let was_permitted = a.auto_approve && outcome.is_some_and(|o| o.permitted);
        if was_permitted {
            permitted += 1;
        }
        let (auto_approved, reason) = match (a.auto_approve, outcome) {
            (true, _) if outcomes.dry_run => (true, format!("{} (dry run: not applied)", a.reason)),
            (true, Some(o)) if o.permitted => (true, a.reason.clone()),
            (true, Some(ApprovalOutcome { error: Some(e), .. })) => (
                false,
                format!(
                    "Auto-approval failed ({e}); left for manual review. {}",
                    a.reason
                ),
            ),
            (true, _) => (
                false,
                format!(
                    "Auto-approval not applied; left for manual review. {}",
                    a.reason
                ),
            ),
            (false, _) => (false, a.reason.clone()),
        };
        if let Some(ApprovalOutcome { error: Some(e), .. }) = outcome {
            let id = a.request_id.as_ref().map(|i| i.as_str()).unwrap_or("?");
            errors.push(format!("approval request {id}: {e}"));
        }
        approval_requests.push(ReportApproval {
            request_id: a.request_id.as_ref().map(|i| i.to_string()),
            application: a.application.clone(),
            hash: a.hash.clone(),
            requested_by: a.requested_by.clone(),
            company: a.organization_name.clone(),
            device: a.device.clone(),
            auto_approved,
            reason,
            rule: a.rule.to_owned(),
        });
    }

    // Every detection of an incident shares the incident's ticket.
    let ticketed: BTreeSet<&str> = decisions
        .tickets
        .iter()
        .map(|t| t.dedupe_key.as_str())
        .collect();
    let ticket_for = |incident: &str| {
        ticketed
            .contains(incident)
            .then(|| outcomes.tickets.get(incident))
            .flatten()
    };
    let security_events: Vec<ReportSecurityEvent> = decisions
        .detections
        .iter()
        .map(|d| {
            let t = ticket_for(&d.incident);
            ReportSecurityEvent {
                event_type: d.event_type.to_owned(),
                application: d.application.clone(),
                company: d.organization_name.clone(),
                device: d.device.clone(),
                user: d.user.clone(),
                action_taken: d.action_taken.to_owned(),
                risk_level: d.risk_level,
                ticket_created: t.is_some_and(|t| t.created),
                ticket_id: t.map(|t| t.ticket_id.clone()),
                rule: d.rule.to_owned(),
                key: d.key.clone(),
                incident: d.incident.clone(),
                action_log_ids: d.action_log_ids.clone(),
                also_matched: d.also_matched.iter().map(|s| (*s).to_owned()).collect(),
            }
        })
        .collect();
    let tickets_created = decisions
        .tickets
        .iter()
        .filter(|t| {
            outcomes
                .tickets
                .get(&t.dedupe_key)
                .is_some_and(|o| o.created)
        })
        .count() as u64;
    let policy_changes = if outcomes.dry_run {
        decisions.policy_changes.len() as u64
    } else {
        decisions
            .policy_changes
            .iter()
            .filter(|p| outcomes.policy_changes_applied.contains(&p.request_id))
            .count() as u64
    };
    let pending = decisions.approvals.len() as u64;
    MonitoringReport {
        success: errors.is_empty(),
        monitoring_summary: MonitoringSummary {
            total_events: decisions.blocks.total_events,
            approval_requests: pending,
            blocked_applications: decisions.blocks.blocks,
            security_alerts: security_events.len() as u64,
            policy_changes,
        },
        approval_requests,
        security_events,
        blocked_summary: BlockedSummary {
            unique_applications_blocked: decisions.blocks.unique_applications_blocked,
            repeat_blocks: decisions.blocks.repeat_blocks.len() as u64,
            tickets_created,
        },
        auto_approvals_processed: permitted,
        manual_review_required: pending - permitted,
        dry_run: outcomes.dry_run,
        window: ReportWindow {
            start: decisions.window_start,
            end: decisions.window_end,
            generated_at: decisions.now,
        },
        errors,
    }
}
