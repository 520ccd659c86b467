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
    /// User with repeated denials.
    REPEATED_DENIALS_USER = "detect.repeated_denials_user",
    /// Computer with repeated denials.
    REPEATED_DENIALS_COMPUTER = "detect.repeated_denials_computer",
    /// Ringfence violation.
    RINGFENCE = "detect.ringfence_violation",
    /// Same application blocked repeatedly on one computer.
    REPEAT_BLOCK = "detect.repeat_block",
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
    /// Manual: hash blocked fleet-wide.
    MANUAL_FLEET = "manual.fleet_spread",
    /// Manual: a detection involves the same hash.
    MANUAL_DETECTION = "manual.detection_on_hash",
    /// Manual: unsigned in a user-writable path.
    MANUAL_UNSIGNED_USER_PATH = "manual.unsigned_user_writable_path",
    /// Manual: auto-approval off for the organization.
    MANUAL_DISABLED = "manual.auto_approve_disabled",
    /// Manual: categories unknown.
    MANUAL_UNKNOWN_CATEGORIES = "manual.categories_unknown",
    /// Manual: a category outside the list.
    MANUAL_CATEGORY = "manual.category_not_allowed",
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

/// Every rule, detections first, then approval rules in the order they are checked.
pub static RULES: &[Rule] = &[
    det(ids::ENCODED_POWERSHELL, "suspicious_execution", High, true,
        "PowerShell with an encoded or obfuscated command (-EncodedCommand/-enc with base64, FromBase64String, IEX/Invoke-Expression, hidden window, [char] joins) in fullPath, processPath, data or a command-line field."),
    det(ids::LOLBIN_USER_PATH, "lolbin_execution", High, true,
        "A living-off-the-land binary run from, or pointed at, a user-writable folder (\\users\\, \\appdata\\, \\temp\\, \\downloads\\, \\programdata\\)."),
    det(ids::LOLBIN_OFFICE_BROWSER, "lolbin_execution", High, true,
        "A living-off-the-land binary started by an Office application or a web browser (processPath, parentProcessName or createdByProcess)."),
    det(ids::FLEET_SPREAD, "fleet_spread", High, false,
        "An unknown hash (not trusted, not permitted anywhere in the window) blocked on at least fleet_spread_threshold computers of one organization; patient zero is the earliest sighting."),
    det(ids::POLICY_BYPASS, "policy_bypass", High, false,
        "An audit-only (monitor-mode) deny on a computer whose mode is Secure: a rule matched but did not enforce."),
    det(ids::RINGFENCE, "ringfence_violation", Medium, false,
        "A ringfenced application tried an access its ringfence does not allow (actionId 6)."),
    det(ids::REPEATED_DENIALS_USER, "repeated_denials", Medium, false,
        "A user with at least threatlocker_block_alert_threshold blocks across two or more applications (a single application is reported as a repeat block instead)."),
    det(ids::REPEATED_DENIALS_COMPUTER, "repeated_denials", Medium, false,
        "A computer with at least threatlocker_block_alert_threshold blocks across two or more applications (a single application is reported as a repeat block instead)."),
    det(ids::REPEAT_BLOCK, "repeat_block", Low, false,
        "One application blocked at least threatlocker_block_alert_threshold times on one computer: a user fighting their tooling, or malware retrying."),
    appr(ids::MANUAL_MISSING_ID, ManualReview, "The request has no approvalRequestId, so nothing can be applied to it."),
    appr(ids::MANUAL_NEVER_HASH, ManualReview, "The file's hash is on the never-approve list."),
    appr(ids::MANUAL_NEVER_PATH, ManualReview, "The file's path matches a never-approve path pattern."),
    appr(ids::MANUAL_NEVER_SIGNER, ManualReview, "The file's signer is on the never-approve list."),
    appr(ids::MANUAL_LOLBIN, ManualReview, "The file is a living-off-the-land binary; approving it widens the attack surface."),
    appr(ids::MANUAL_FLEET, ManualReview, "The hash was blocked on at least fleet_spread_threshold computers (all organizations) in the window."),
    appr(ids::MANUAL_DETECTION, ManualReview, "A detection in this run involves the same hash."),
    appr(ids::MANUAL_UNSIGNED_USER_PATH, ManualReview, "The file is unsigned (or has no signature evidence) and lives in a user-writable folder. Skipped for trusted hashes."),
    appr(ids::AUTO_TRUSTED_HASH, AutoApprove, "The hash is on the trusted list (no categories needed)."),
    appr(ids::AUTO_TRUSTED_SIGNER, AutoApprove, "The signer is on the trusted list (no categories needed)."),
    appr(ids::MANUAL_DISABLED, ManualReview, "threatlocker_auto_approve_categories is empty for the organization."),
    appr(ids::MANUAL_UNKNOWN_CATEGORIES, ManualReview, "The application's research categories are unknown (no research details, or none listed)."),
    appr(ids::MANUAL_CATEGORY, ManualReview, "At least one of the application's categories is not in threatlocker_auto_approve_categories."),
    appr(ids::MANUAL_SCOPE, ManualReview, "The approval scope needs a computer, group or organization id the request does not carry."),
    appr(ids::AUTO_CATEGORY, AutoApprove, "Every research category of the application is in threatlocker_auto_approve_categories (case-insensitive)."),
];

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
