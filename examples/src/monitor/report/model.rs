//! The daily report's data: every number, list and table the three renderers show.
//!
//! The monitoring numbers (`monitoring_summary`, `blocked_summary`, `auto_approvals_processed`,
//! `manual_review_required`) are copied from [`policy_engine::build_report`] over the same
//! decisions, so the daily report and the runs can never disagree. The rest is detail computed
//! from the same decisions and rows with the same definitions, plus what the state store says
//! the runs did in the period (tickets, permits, policy deploys).

use chrono::{DateTime, Utc};
use policy_engine::{BlockedSummary, MonitoringSummary, RiskLevel};
use serde::{Deserialize, Serialize};

/// The daily security report across every organization in scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DailyReport {
    /// The period covered.
    pub period: Period,
    /// `build_report`'s `monitoring_summary` for the period (same definitions as every run).
    pub monitoring_summary: MonitoringSummary,
    /// `build_report`'s `blocked_summary` for the period.
    pub blocked_summary: BlockedSummary,
    /// `build_report`'s `auto_approvals_processed`.
    pub auto_approvals_processed: u64,
    /// `build_report`'s `manual_review_required`.
    pub manual_review_required: u64,
    /// Totals for the headline.
    pub totals: Totals,
    /// Blocks per hour (UTC hours, oldest first, every hour of the period present).
    pub blocks_per_hour: Vec<HourBucket>,
    /// Most blocked applications, most blocks first.
    pub top_applications: Vec<TopApplication>,
    /// Users with the most blocks, most first.
    pub top_users: Vec<TopUser>,
    /// Repeat blocks: (application, computer) pairs at or over the organization's threshold.
    pub repeat_blocks: Vec<RepeatBlockLine>,
    /// Detections by risk.
    pub detections_by_risk: RiskCounts,
    /// Detections, most severe first, with their evidence.
    pub detections: Vec<DetectionLine>,
    /// Requests auto-approved (permitted) by the runs in the period.
    pub auto_approved: Vec<ApprovalLine>,
    /// Pending requests sent to a technician, with the reason.
    pub sent_to_review: Vec<ApprovalLine>,
    /// Tickets opened or updated by the runs in the period.
    pub tickets: Vec<TicketActivity>,
    /// Policy deploys applied by the runs in the period.
    pub policy_changes: Vec<PolicyChangeLine>,
    /// One row per organization.
    pub organizations: Vec<OrganizationRow>,
    /// Computers whose mode is not Secure (Learning, Installation, Monitor-only, unknown).
    pub computers_not_secure: Vec<ComputerLine>,
    /// Problems met while gathering the data (the report is still produced).
    pub errors: Vec<String>,
}

/// The period covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Period {
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
    /// When the report was produced.
    pub generated_at: DateTime<Utc>,
    /// The IANA zone times are shown in (HTML and Markdown), e.g. `Europe/Berlin`.
    pub timezone: String,
}

/// Headline totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Totals {
    /// Events (de-duplicated action-log rows in the period).
    pub events: u64,
    /// Blocks (`actionId` 2 or 3, not monitor mode).
    pub blocks: u64,
    /// Audit-only denies (monitor mode).
    pub audit_only: u64,
    /// Permits.
    pub permits: u64,
    /// Distinct blocked applications.
    pub unique_applications_blocked: u64,
    /// Repeat-block pairs.
    pub repeat_blocks: u64,
    /// Detections.
    pub detections: u64,
    /// Requests auto-approved by the runs in the period.
    pub auto_approved: u64,
    /// Pending requests sent to review.
    pub sent_to_review: u64,
    /// Tickets opened by the runs in the period.
    pub tickets_opened: u64,
    /// Tickets updated (a note added) by the runs in the period.
    pub tickets_updated: u64,
    /// Policy deploys applied in the period.
    pub policy_changes_applied: u64,
    /// Computers not in Secure mode.
    pub computers_not_secure: u64,
    /// Organizations in the report.
    pub organizations: u64,
}

/// Blocks in one hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct HourBucket {
    /// The hour's start (UTC).
    pub hour: DateTime<Utc>,
    /// Blocks whose `dateTime` falls in the hour.
    pub blocks: u64,
}

/// A blocked application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopApplication {
    /// Application name or file name.
    pub application: String,
    /// Application key (`sha256Hash`, else `hash`, else lower-cased `fullPath`).
    pub application_key: String,
    /// A path it was blocked at.
    pub path: Option<String>,
    /// Blocks.
    pub blocks: u64,
    /// Distinct computers.
    pub computers: u64,
    /// Distinct organizations.
    pub organizations: u64,
}

/// A user with blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TopUser {
    /// The user (as first seen; grouped case-insensitively).
    pub user: String,
    /// Blocks.
    pub blocks: u64,
    /// Distinct applications.
    pub applications: u64,
}

/// A repeat block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RepeatBlockLine {
    /// Organization name (else id).
    pub organization: Option<String>,
    /// Application.
    pub application: String,
    /// Computer name.
    pub device: Option<String>,
    /// Blocks.
    pub count: u64,
    /// First block.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last block.
    pub last_seen: Option<DateTime<Utc>>,
}

/// Detections per risk level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RiskCounts {
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
}

impl RiskCounts {
    /// Adds one detection of `risk`.
    pub fn add(&mut self, risk: RiskLevel) {
        match risk {
            RiskLevel::Critical => self.critical += 1,
            RiskLevel::High => self.high += 1,
            RiskLevel::Medium => self.medium += 1,
            RiskLevel::Low => self.low += 1,
        }
    }

    /// All detections.
    pub fn total(&self) -> u64 {
        self.critical + self.high + self.medium + self.low
    }
}

/// A detection with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DetectionLine {
    /// Risk.
    pub risk_level: RiskLevel,
    /// Event type.
    pub event_type: String,
    /// The rule that fired.
    pub rule: String,
    /// Why, in plain language.
    pub reason: String,
    /// Organization name.
    pub organization: Option<String>,
    /// Computer name(s).
    pub device: Option<String>,
    /// User(s).
    pub user: Option<String>,
    /// Application.
    pub application: String,
    /// The worst outcome among its rows.
    pub action_taken: String,
    /// First row.
    pub first_seen: Option<DateTime<Utc>>,
    /// Last row.
    pub last_seen: Option<DateTime<Utc>>,
    /// Rows behind it.
    pub row_count: u64,
    /// Action-log ids (evidence).
    pub action_log_ids: Vec<String>,
    /// Hashes involved.
    pub hashes: Vec<String>,
    /// The PSA ticket holding it, when the state store knows one.
    pub ticket_id: Option<String>,
    /// Incident key.
    pub key: String,
}

/// An approval request, auto-approved or sent to review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApprovalLine {
    /// Request id.
    pub request_id: Option<String>,
    /// Application.
    pub application: String,
    /// Organization name (else id).
    pub organization: Option<String>,
    /// Requesting user.
    pub requested_by: Option<String>,
    /// Computer.
    pub device: Option<String>,
    /// The rule that decided.
    pub rule: String,
    /// Why.
    pub reason: String,
    /// When it was permitted (auto-approvals).
    pub at: Option<DateTime<Utc>>,
}

/// A ticket a run opened or updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TicketActivity {
    /// PSA ticket id.
    pub ticket_id: String,
    /// `opened` or `updated`.
    pub action: String,
    /// Summary, when known.
    pub summary: Option<String>,
    /// Dedupe key (the PSA's external reference), when known.
    pub dedupe_key: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A policy deploy a run applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PolicyChangeLine {
    /// Organization name (else id).
    pub organization: Option<String>,
    /// Approval requests whose permits it deployed.
    pub requests: Vec<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// One organization's numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OrganizationRow {
    /// Organization id.
    pub organization_id: Option<String>,
    /// Name.
    pub name: String,
    /// Events.
    pub events: u64,
    /// Blocks.
    pub blocks: u64,
    /// Audit-only denies.
    pub audit_only: u64,
    /// Detections.
    pub detections: u64,
    /// Detections at High or Critical.
    pub high_or_critical: u64,
    /// Pending requests sent to review.
    pub pending_review: u64,
    /// Computers known.
    pub computers: u64,
    /// Computers not in Secure mode.
    pub not_secure: u64,
}

/// A computer not in Secure mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ComputerLine {
    /// Organization name (else id).
    pub organization: Option<String>,
    /// Computer name.
    pub name: String,
    /// Mode (`Learning`, `Installation`, `MonitorOnly`, `unknown`, ...).
    pub mode: String,
    /// Last check-in.
    pub last_checkin: Option<DateTime<Utc>>,
}
