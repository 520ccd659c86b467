//! What one evaluation decides. Every list is sorted with a total order, so the same input
//! always serializes to the same bytes.

use chrono::{DateTime, Utc};
use serde::Serialize;
use threatlocker_api::{
    ApplicationId, ApprovalRequestId, ComputerGroupId, ComputerId, OrganizationId,
};

use crate::config::ApprovalScope;
use crate::rules::RiskLevel;

/// The engine's output for one [`Input`](crate::Input).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Decisions {
    /// The caller's `now`.
    pub now: DateTime<Utc>,
    /// Window start (inclusive).
    pub window_start: DateTime<Utc>,
    /// Window end (exclusive).
    pub window_end: DateTime<Utc>,
    /// Input the engine set aside, with counts.
    pub ignored: Ignored,
    /// One decision per pending approval request, sorted by request id.
    pub approvals: Vec<ApprovalDecision>,
    /// Block analysis.
    pub blocks: BlockAnalysis,
    /// Detections, most severe first.
    pub detections: Vec<SecurityEvent>,
    /// One planned ticket per incident (organization + computer, or organization + file for
    /// fleet spread) whose worst risk reaches `rules.ticket_min_risk` or that holds a repeat
    /// block, in the order of its worst detection.
    pub tickets: Vec<PlannedTicket>,
    /// One planned policy change per auto-approved request, sorted by request id.
    pub policy_changes: Vec<PlannedPolicyChange>,
    /// Planned notifications, sorted by organization then urgency.
    pub notifications: Vec<PlannedNotification>,
}

/// Input the engine did not count, so totals can be reconciled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Ignored {
    /// Rows whose `actionLogId` (else `eActionLogId`) was already seen.
    pub duplicate_rows: u64,
    /// Rows with a `dateTime` outside `[window_start, window_end)`.
    pub outside_window: u64,
    /// Rows without a `dateTime`.
    pub undated_rows: u64,
    /// Rows with neither id; each is counted as its own event (they cannot be de-duplicated).
    pub rows_without_id: u64,
    /// Approval requests whose status is no longer pending.
    pub approvals_not_pending: u64,
    /// Approval requests whose id was already seen (the first is decided).
    pub duplicate_approvals: u64,
}

/// The decision on one pending approval request.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ApprovalDecision {
    /// Request id (absent on malformed requests, which go to manual review).
    pub request_id: Option<ApprovalRequestId>,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// Application name (matching application, else file name).
    pub application: String,
    /// SHA-256 (else ThreatLocker hash) of the file.
    pub hash: Option<String>,
    /// File path.
    pub path: Option<String>,
    /// Requesting user.
    pub requested_by: Option<String>,
    /// Requesting computer name.
    pub device: Option<String>,
    /// Whether the engine auto-approves it.
    pub auto_approve: bool,
    /// The rule that decided (see the rule table).
    pub rule: &'static str,
    /// Why, in plain language.
    pub reason: String,
    /// Every other risk rule that also flagged the request.
    pub also_flagged_by: Vec<&'static str>,
    /// Research categories considered.
    pub categories: Vec<String>,
    /// Signers considered (from the request's `json` and matching action-log rows).
    pub signers: Vec<String>,
    /// Whether the file is known-good: trusted, or signed and a built-in (or researched)
    /// application.
    pub known_good: bool,
    /// Action-log rows with the same hash in the window (evidence).
    pub action_log_ids: Vec<String>,
    /// Keys of detections on the same hash.
    pub detection_keys: Vec<String>,
    /// Planned scope (auto-approvals only).
    pub scope: Option<ApprovalScope>,
}

/// Block counts and groupings, following the design's definitions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BlockAnalysis {
    /// Events in the window (de-duplicated rows).
    pub total_events: u64,
    /// Blocks: `actionId` 2 or 3 and `isMonitorMode` not true.
    pub blocks: u64,
    /// Audit-only: `isMonitorMode` true.
    pub audit_only: u64,
    /// Permits (`actionId` 1).
    pub permits: u64,
    /// Ringfenced (`actionId` 6).
    pub ringfenced: u64,
    /// Distinct application keys among the blocks.
    pub unique_applications_blocked: u64,
    /// (application key, computer) pairs with at least the organization's threshold of blocks.
    pub repeat_blocks: Vec<RepeatBlock>,
    /// (user, computer) pairs with at least the threshold of blocks across applications; rows
    /// without a user count under the computer alone.
    pub denials: Vec<DenialCount>,
}

/// A repeat block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RepeatBlock {
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Application key (`sha256Hash`, else `hash`, else lower-cased `fullPath`).
    pub application_key: String,
    /// Application name or file name.
    pub application: String,
    /// Computer id.
    pub computer_id: Option<ComputerId>,
    /// Computer name.
    pub device: Option<String>,
    /// Blocks in the window.
    pub count: u64,
    /// First block.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last block.
    pub last_seen: Option<DateTime<Utc>>,
    /// Action-log ids (oldest first; capped at `rules.max_evidence_ids`).
    pub action_log_ids: Vec<String>,
}

/// A (user, computer) pair with repeated denials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DenialCount {
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// The user (absent for rows without one, counted under the computer alone).
    pub user: Option<String>,
    /// Computer name.
    pub device: Option<String>,
    /// Computer id.
    pub computer_id: Option<ComputerId>,
    /// Blocks in the window.
    pub count: u64,
    /// Distinct application keys among them.
    pub applications: u64,
    /// Action-log ids (oldest first; capped).
    pub action_log_ids: Vec<String>,
}

/// A detection.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SecurityEvent {
    /// Stable detection key (organization, rule, application key, computer and user): the same
    /// finding in the next overlapping window gives the same key.
    pub key: String,
    /// Stable key of the incident the detection belongs to (also its ticket's dedupe key):
    /// organization + computer, or organization + file for fleet spread and policy gaps.
    pub incident: String,
    /// Event type (`suspicious_execution`, `lolbin_execution`, ...).
    pub event_type: &'static str,
    /// The rule that fired (the strongest of those matching these rows).
    pub rule: &'static str,
    /// Weaker rules that matched the same rows; they yield no detection of their own.
    pub also_matched: Vec<&'static str>,
    /// Risk.
    pub risk_level: RiskLevel,
    /// Why, in plain language.
    pub reason: String,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// Computer name(s), comma-separated when several.
    pub device: Option<String>,
    /// Computer id when one computer is involved.
    pub computer_id: Option<ComputerId>,
    /// User(s), comma-separated when several.
    pub user: Option<String>,
    /// Application name or file name.
    pub application: String,
    /// Application key, when the incident is about one application.
    pub application_key: Option<String>,
    /// The worst outcome among the rows: `Permitted`, `Audit only`, `Ringfenced`, `Blocked`.
    pub action_taken: &'static str,
    /// First row.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last row.
    pub last_seen: Option<DateTime<Utc>>,
    /// Rows behind the detection.
    pub row_count: u64,
    /// Action-log ids (oldest first; capped).
    pub action_log_ids: Vec<String>,
    /// Hashes involved.
    pub hashes: Vec<String>,
    /// Fleet spread: the earliest sighting.
    pub patient_zero: Option<Sighting>,
    /// Fleet spread: computers the hash was blocked on.
    pub computers_affected: u64,
}

/// One sighting of a file on a computer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Sighting {
    /// Computer id.
    pub computer_id: Option<ComputerId>,
    /// Computer name.
    pub device: Option<String>,
    /// When.
    pub at: Option<DateTime<Utc>>,
    /// Action-log id.
    pub action_log_id: Option<String>,
}

/// The ticket of one incident: opened, or (if the PSA holds an open ticket with the dedupe key)
/// added to as a note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedTicket {
    /// Dedupe key: the incident key (≤ 40 characters, fits ConnectWise `externalXRef` and
    /// Autotask `externalID`).
    pub dedupe_key: String,
    /// Keys of the incident's detections, worst first.
    pub detection_keys: Vec<String>,
    /// The newest row among the incident's detections (a later sighting adds a note).
    pub last_seen: Option<DateTime<Utc>>,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// PSA board (organization variable).
    pub board: String,
    /// PSA priority (from the risk).
    pub priority: String,
    /// Risk.
    pub risk_level: RiskLevel,
    /// One-line summary naming the computer (or the file), at most 100 characters.
    pub summary: String,
    /// Plain-text description with the evidence; untrusted values have control characters made
    /// visible so they cannot forge lines.
    pub description: String,
}

/// A permit to apply for an auto-approved request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedPolicyChange {
    /// Request to permit.
    pub request_id: ApprovalRequestId,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Scope.
    pub scope: ApprovalScope,
    /// Computer (computer scope).
    pub computer_id: Option<ComputerId>,
    /// Computer group (group scope).
    pub computer_group_id: Option<ComputerGroupId>,
    /// Matching application, if known (else the permit creates one from the file details).
    pub application_id: Option<ApplicationId>,
    /// Application name.
    pub application: String,
    /// Hash.
    pub hash: Option<String>,
    /// Path.
    pub path: Option<String>,
    /// The rule that approved it.
    pub rule: &'static str,
}

/// How soon a notification goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Now: detections at or above `rules.notify_immediately_min_risk`.
    Immediate,
    /// With the run's summary: lower detections and manual reviews.
    Summary,
}

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PlannedNotification {
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// Recipients (organization variable).
    pub recipients: Vec<String>,
    /// Urgency.
    pub urgency: Urgency,
    /// Highest risk in it.
    pub risk_level: Option<RiskLevel>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Detections it covers.
    pub detection_keys: Vec<String>,
    /// Manual-review requests it mentions.
    pub approval_request_ids: Vec<ApprovalRequestId>,
}
