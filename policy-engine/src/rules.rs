//! The rule table: every rule the engine can fire, in one place.
//!
//! The README renders this table; a test keeps the two in step. A rule's id is stable and is
//! what decisions, detections, tickets and reports name as `rule`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How serious a detection is. Ordered `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RiskLevel {
    /// Worth a look during normal triage.
    Low,
    /// Needs a technician this shift.
    Medium,
    /// Needs a technician now.
    High,
    /// Likely compromise: something suspicious ran.
    Critical,
}

impl RiskLevel {
    /// Every level, lowest first.
    pub const ALL: [RiskLevel; 4] = [Self::Low, Self::Medium, Self::High, Self::Critical];

    /// The level's name as it appears in reports (`"High"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    /// One level up (Critical stays Critical).
    pub fn escalated(self) -> Self {
        match self {
            Self::Low => Self::Medium,
            Self::Medium => Self::High,
            Self::High | Self::Critical => Self::Critical,
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of rule a [`Rule`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// Produces a detection (security event) from action-log rows.
    Detection,
    /// Decides an approval request automatically.
    AutoApprove,
    /// Sends an approval request to manual review.
    ManualReview,
}

/// One row of the rule table.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `detect.encoded_powershell`.
    pub id: &'static str,
    /// Kind of rule.
    pub kind: RuleKind,
    /// For detections, the security event type (`suspicious_execution`, ...); empty otherwise.
    pub event_type: &'static str,
    /// For detections, the default risk level.
    pub default_risk: Option<RiskLevel>,
    /// Whether the risk is raised one level when the action was not stopped (it ran, or was
    /// only audited).
    pub escalates_when_not_stopped: bool,
    /// What the rule means, in plain language.
    pub description: &'static str,
}

macro_rules! rule_ids {
    ($($(#[$m:meta])* $name:ident = $id:literal),+ $(,)?) => {
        /// Stable rule ids as constants.
        pub mod ids {
            $($(#[$m])* pub const $name: &str = $id;)+
        }
    };
}

rule_ids! {
    /// Encoded or obfuscated PowerShell.
    ENCODED_POWERSHELL = "detect.encoded_powershell",
    /// LOLBin run from a user-writable path.
    LOLBIN_USER_PATH = "detect.lolbin_user_writable_path",
    /// LOLBin started by an Office application or a browser.
    LOLBIN_OFFICE_BROWSER = "detect.lolbin_office_or_browser_parent",
    /// Unknown hash blocked on many computers.
    FLEET_SPREAD = "detect.fleet_spread",
    /// Audit-only deny on a Secure computer.
    POLICY_BYPASS = "detect.policy_bypass",
    /// A (user, computer) pair with repeated denials.
    REPEATED_DENIALS = "detect.repeated_denials",
    /// Ringfence violation.
    RINGFENCE = "detect.ringfence_violation",
    /// Same application blocked repeatedly on one computer.
    REPEAT_BLOCK = "detect.repeat_block",
    /// A known-good file blocked on many computers: a policy gap, not an outbreak.
    POLICY_GAP = "detect.policy_gap",
    /// Auto-approved: categories in the auto-approve list.
    AUTO_CATEGORY = "auto_approve.category",
    /// Auto-approved: trusted hash.
    AUTO_TRUSTED_HASH = "auto_approve.trusted_hash",
    /// Auto-approved: trusted signer.
    AUTO_TRUSTED_SIGNER = "auto_approve.trusted_signer",
    /// Manual: request has no id.
    MANUAL_MISSING_ID = "manual.missing_request_id",
    /// Manual: never-approve hash.
    MANUAL_NEVER_HASH = "manual.never_approve_hash",
    /// Manual: never-approve path.
    MANUAL_NEVER_PATH = "manual.never_approve_path",
    /// Manual: never-approve signer.
    MANUAL_NEVER_SIGNER = "manual.never_approve_signer",
    /// Manual: LOLBin.
    MANUAL_LOLBIN = "manual.lolbin",
    /// Manual: a detection implicates the file itself.
    MANUAL_IMPLICATED = "manual.file_implicated",
    /// Manual: unsigned in a user-writable path.
    MANUAL_UNSIGNED_USER_PATH = "manual.unsigned_user_writable_path",
    /// Manual: auto-approval off for the organization.
    MANUAL_DISABLED = "manual.auto_approve_disabled",
    /// Manual: categories unknown.
    MANUAL_UNKNOWN_CATEGORIES = "manual.categories_unknown",
    /// Manual: a category outside the list.
    MANUAL_CATEGORY = "manual.category_not_allowed",
    /// Manual: the categories fit but the file is not known-good.
    MANUAL_NOT_KNOWN_GOOD = "manual.not_known_good",
    /// Manual: the scope target is unknown.
    MANUAL_SCOPE = "manual.scope_target_missing",
}

use RiskLevel::*;
use RuleKind::*;

const fn det(
    id: &'static str,
    event_type: &'static str,
    risk: RiskLevel,
    esc: bool,
    description: &'static str,
) -> Rule {
    Rule {
        id,
        kind: Detection,
        event_type,
        default_risk: Some(risk),
        escalates_when_not_stopped: esc,
        description,
    }
}

const fn appr(id: &'static str, kind: RuleKind, description: &'static str) -> Rule {
    Rule {
        id,
        kind,
        event_type: "",
        default_risk: None,
        escalates_when_not_stopped: false,
        description,
    }
}

/// Every rule, detections first in order of strength (when several match the same rows, the
/// first one listed owns the detection and the others are listed as also matched), then the
/// approval rules in the order they are checked.
pub static RULES: &[Rule] = &[
    det(ids::ENCODED_POWERSHELL, "suspicious_execution", High, true,
        "PowerShell with an encoded or obfuscated command (-EncodedCommand/-enc with base64, FromBase64String, IEX/Invoke-Expression, hidden window, [char] joins) in fullPath, processPath, data or a command-line field."),
    det(ids::LOLBIN_USER_PATH, "lolbin_execution", High, true,
        "A living-off-the-land binary run from, or pointed at, a user-writable folder (\\users\\, \\appdata\\, \\temp\\, \\downloads\\, \\programdata\\)."),
    det(ids::LOLBIN_OFFICE_BROWSER, "lolbin_execution", High, true,
        "A living-off-the-land binary started by an Office application or a web browser (processPath, parentProcessName or createdByProcess)."),
    det(ids::FLEET_SPREAD, "fleet_spread", High, false,
        "A file that is not known-good (not trusted, not a signed built-in) and not permitted anywhere in the window, blocked on at least fleet_spread_threshold computers of one organization; patient zero is the earliest sighting. One incident per (organization, file)."),
    det(ids::POLICY_BYPASS, "policy_bypass", High, false,
        "An audit-only (monitor-mode) deny on a computer whose mode is Secure: a rule matched but did not enforce."),
    det(ids::RINGFENCE, "ringfence_violation", Medium, false,
        "A ringfenced application tried an access its ringfence does not allow (actionId 6)."),
    det(ids::REPEATED_DENIALS, "repeated_denials", Medium, false,
        "A (user, computer) pair with at least threatlocker_block_alert_threshold blocks across two or more applications; rows without a user count under the computer alone (a single application is reported as a repeat block instead)."),
    det(ids::REPEAT_BLOCK, "repeat_block", Low, false,
        "One application blocked at least threatlocker_block_alert_threshold times on one computer: a user fighting their tooling, or malware retrying. An incident holding one opens a ticket whatever ticket_min_risk says."),
    det(ids::POLICY_GAP, "policy_gap", Low, false,
        "A known-good file (trusted, or signed and a built-in application) blocked on at least fleet_spread_threshold computers of one organization: a policy gap, not an outbreak. Reported only; it never opens a ticket."),
    appr(ids::MANUAL_MISSING_ID, ManualReview, "The request has no approvalRequestId, so nothing can be applied to it."),
    appr(ids::MANUAL_NEVER_HASH, ManualReview, "The file's hash (the request's, or the SHA-256 in its json) is on the never-approve list. Never-approve lists always win."),
    appr(ids::MANUAL_NEVER_PATH, ManualReview, "The file's path matches a never-approve path pattern."),
    appr(ids::MANUAL_NEVER_SIGNER, ManualReview, "The file's signer (certificates in the request's json, or on its rows) is on the never-approve list."),
    appr(ids::MANUAL_IMPLICATED, ManualReview, "A suspicious_execution, lolbin_execution, policy_bypass or fleet_spread detection (as owner or also matched) is on the file's application key. Repeat blocks of the file, a noisy user or other findings on the computer do not hold a request."),
    appr(ids::AUTO_TRUSTED_HASH, AutoApprove, "A hash of the request (sha256, hash, or the SHA-256 in its json) is on trusted_hashes (no categories needed)."),
    appr(ids::AUTO_TRUSTED_SIGNER, AutoApprove, "A valid certificate of the request is on trusted_signers (no categories needed)."),
    appr(ids::MANUAL_LOLBIN, ManualReview, "The file is a living-off-the-land binary; approving it widens the attack surface."),
    appr(ids::MANUAL_UNSIGNED_USER_PATH, ManualReview, "The file is unsigned (or has no signature evidence) and lives in a user-writable folder."),
    appr(ids::MANUAL_DISABLED, ManualReview, "threatlocker_auto_approve_categories is empty for the organization."),
    appr(ids::MANUAL_UNKNOWN_CATEGORIES, ManualReview, "The application's research categories are unknown (no research details, or none listed)."),
    appr(ids::MANUAL_CATEGORY, ManualReview, "At least one of the application's categories is not in threatlocker_auto_approve_categories."),
    appr(ids::MANUAL_NOT_KNOWN_GOOD, ManualReview, "The categories fit but the file is not known-good: it has no valid signature, or its matching application is neither a built-in nor researched by ThreatLocker."),
    appr(ids::AUTO_CATEGORY, AutoApprove, "Every research category of the application is in threatlocker_auto_approve_categories (case-insensitive) and the file is known-good: signed, and its matching application is a built-in or researched by ThreatLocker."),
    appr(ids::MANUAL_SCOPE, ManualReview, "The approval scope needs a computer, group or organization id the request does not carry."),
];

/// A detection rule's strength rank: its position in [`RULES`] (lower is stronger).
pub(crate) fn strength(id: &str) -> usize {
    RULES.iter().position(|r| r.id == id).unwrap_or(usize::MAX)
}

/// Looks a rule up by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// Renders the rule table as Markdown (the README embeds this output).
pub fn rules_markdown() -> String {
    let mut out = String::from("| rule | kind | event type | default risk | escalates if not stopped | meaning |\n|---|---|---|---|---|---|\n");
    for r in RULES {
        let kind = match r.kind {
            Detection => "detection",
            AutoApprove => "auto-approve",
            ManualReview => "manual review",
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            r.id,
            kind,
            if r.event_type.is_empty() {
                ""
            } else {
                r.event_type
            },
            r.default_risk.map(RiskLevel::as_str).unwrap_or(""),
            if r.escalates_when_not_stopped {
                "yes"
            } else {
                ""
            },
            r.description.replace('|', "\\|"),
        ));
    }
    out
}
