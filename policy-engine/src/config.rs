//! Engine configuration: the four organization variables of the original workflow, their
//! per-organization overrides, and the extended rules. Validated once by
//! [`Engine::new`](crate::Engine::new).

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use threatlocker_api::OrganizationId;

use crate::rules::RiskLevel;
use crate::text;

/// The complete engine configuration.
///
/// ```toml
/// [org_variables]
/// threatlocker_ticket_board = "ThreatLocker"
/// threatlocker_auto_approve_categories = ["Communication", "Productivity"]
/// threatlocker_block_alert_threshold = 5
/// threatlocker_notification_recipients = ["soc@msp.example"]
///
/// [org_overrides."3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d"]
/// threatlocker_block_alert_threshold = 3
///
/// [rules]
/// approval_scope = "computer"
/// fleet_spread_threshold = 3
/// never_approve_signers = ["AnyDesk Software GmbH"]
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The organization variables every organization gets unless overridden.
    pub org_variables: OrgVariables,
    /// Per-organization overrides, keyed by organization id.
    pub org_overrides: BTreeMap<OrganizationId, OrgOverride>,
    /// Extended rules.
    pub rules: Rules,
}

/// The four organization variables of the original workflow.
///
/// The two list variables accept a TOML/JSON list or one comma-separated string (the form
/// low-code platforms store them in).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgVariables {
    /// PSA board tickets are opened on. Default `"ThreatLocker"`.
    pub threatlocker_ticket_board: String,
    /// Research categories that may be auto-approved (case-insensitive). Default empty:
    /// auto-approval off.
    #[serde(deserialize_with = "list_or_csv")]
    pub threatlocker_auto_approve_categories: Vec<String>,
    /// Blocks before a repeat block / repeated denials is reported. Default 3; at least 1.
    pub threatlocker_block_alert_threshold: u32,
    /// Who is notified. Default empty: nobody.
    #[serde(deserialize_with = "list_or_csv")]
    pub threatlocker_notification_recipients: Vec<String>,
}

impl Default for OrgVariables {
    fn default() -> Self {
        Self {
            threatlocker_ticket_board: "ThreatLocker".to_owned(),
            threatlocker_auto_approve_categories: Vec::new(),
            threatlocker_block_alert_threshold: 3,
            threatlocker_notification_recipients: Vec::new(),
        }
    }
}

/// Overrides for one organization; every field is optional and falls back to
/// [`EngineConfig::org_variables`] (or [`Rules::approval_scope`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrgOverride {
    /// Board override.
    pub threatlocker_ticket_board: Option<String>,
    /// Auto-approve categories override (an empty list turns auto-approval off).
    #[serde(deserialize_with = "opt_list_or_csv")]
    pub threatlocker_auto_approve_categories: Option<Vec<String>>,
    /// Threshold override.
    pub threatlocker_block_alert_threshold: Option<u32>,
    /// Recipients override.
    #[serde(deserialize_with = "opt_list_or_csv")]
    pub threatlocker_notification_recipients: Option<Vec<String>>,
    /// Approval scope override.
    pub approval_scope: Option<ApprovalScope>,
}

/// Where an auto-approval's permit applies.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalScope {
    /// The requesting computer only (the narrowest; the default).
    #[default]
    Computer,
    /// The requesting computer's group.
    Group,
    /// The whole organization.
    Organization,
}

impl ApprovalScope {
    /// The scope's name as configured (`computer`, `group`, `organization`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Computer => "computer",
            Self::Group => "group",
            Self::Organization => "organization",
        }
    }
}

/// PSA priority names per risk level.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskPriorities {
    /// Priority for Low.
    pub low: String,
    /// Priority for Medium.
    pub medium: String,
    /// Priority for High.
    pub high: String,
    /// Priority for Critical.
    pub critical: String,
}

impl Default for RiskPriorities {
    fn default() -> Self {
        Self {
            low: "Priority 4 - Low".to_owned(),
            medium: "Priority 3 - Medium".to_owned(),
            high: "Priority 2 - High".to_owned(),
            critical: "Priority 1 - Critical".to_owned(),
        }
    }
}

impl RiskPriorities {
    /// The priority for a risk level.
    pub fn for_risk(&self, risk: RiskLevel) -> &str {
        match risk {
            RiskLevel::Low => &self.low,
            RiskLevel::Medium => &self.medium,
            RiskLevel::High => &self.high,
            RiskLevel::Critical => &self.critical,
        }
    }
}

/// Built-in living-off-the-land binaries (lower-case file names).
pub const DEFAULT_LOLBINS: &[&str] = &[
    "powershell.exe",
    "powershell_ise.exe",
    "pwsh.exe",
    "cmd.exe",
    "mshta.exe",
    "rundll32.exe",
    "regsvr32.exe",
    "wscript.exe",
    "cscript.exe",
    "certutil.exe",
    "bitsadmin.exe",
    "msiexec.exe",
    "installutil.exe",
    "regasm.exe",
    "regsvcs.exe",
    "msbuild.exe",
    "wmic.exe",
    "forfiles.exe",
    "hh.exe",
    "cmstp.exe",
    "msxsl.exe",
    "odbcconf.exe",
    "ieexec.exe",
    "mavinject.exe",
    "presentationhost.exe",
    "syncappvpublishingserver.exe",
    "control.exe",
    "pcalua.exe",
    "scriptrunner.exe",
    "esentutl.exe",
    "expand.exe",
    "extrac32.exe",
    "finger.exe",
    "ftp.exe",
    "curl.exe",
    "schtasks.exe",
    "sc.exe",
    "reg.exe",
    "msdt.exe",
    "csc.exe",
    "vbc.exe",
    "jsc.exe",
    "dnscmd.exe",
    "at.exe",
    "bash.exe",
    "wsl.exe",
    "desktopimgdownldr.exe",
];

/// Built-in Office applications and browsers whose LOLBin children are suspicious.
pub const DEFAULT_OFFICE_AND_BROWSERS: &[&str] = &[
    "winword.exe",
    "excel.exe",
    "powerpnt.exe",
    "outlook.exe",
    "msaccess.exe",
    "mspub.exe",
    "onenote.exe",
    "visio.exe",
    "eqnedt32.exe",
    "chrome.exe",
    "msedge.exe",
    "firefox.exe",
    "iexplore.exe",
    "brave.exe",
    "opera.exe",
    "vivaldi.exe",
];

/// Built-in user-writable folder markers (lower-case, matched as substrings of a path).
pub const DEFAULT_USER_WRITABLE_PATHS: &[&str] = &[
    "\\users\\",
    "\\appdata\\",
    "\\temp\\",
    "\\downloads\\",
    "\\programdata\\",
    "/tmp/",
    "/home/",
];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Extended rules.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rules {
    /// Signers whose files may be auto-approved without categories (matched
    /// case-insensitively against the whole subject or its `CN=` value).
    pub trusted_signers: Vec<String>,
    /// Hashes (SHA-256 or ThreatLocker hash, hex) that may be auto-approved without categories.
    pub trusted_hashes: Vec<String>,
    /// Hashes that are never auto-approved.
    pub never_approve_hashes: Vec<String>,
    /// Path patterns never auto-approved (case-insensitive, `*` matches any run of characters).
    pub never_approve_paths: Vec<String>,
    /// Signers never auto-approved (same matching as `trusted_signers`).
    pub never_approve_signers: Vec<String>,
    /// LOLBin file names (replaces the built-in list when set).
    pub lolbins: Vec<String>,
    /// LOLBin file names added to `lolbins`.
    pub extra_lolbins: Vec<String>,
    /// Office and browser process names (parents that make a LOLBin suspicious).
    pub office_and_browser_processes: Vec<String>,
    /// User-writable folder markers (substrings of a lower-cased path).
    pub user_writable_paths: Vec<String>,
    /// Where auto-approvals apply. Default `computer`.
    pub approval_scope: ApprovalScope,
    /// Distinct computers a file that is not known-good must be blocked on to count as fleet
    /// spread (a known-good one is a policy gap). Default 3; at least 2.
    pub fleet_spread_threshold: u32,
    /// When set, repeat blocks and repeated denials need their threshold of blocks within this
    /// many minutes (a sliding span) rather than anywhere in the run's window.
    pub repeat_window_minutes: Option<u32>,
    /// PSA priority per risk level.
    pub ticket_priority: RiskPriorities,
    /// Lowest worst-risk of an incident that opens a ticket. Default `Medium`. Incidents holding
    /// a repeat block open one whatever their risk; policy gaps never do.
    pub ticket_min_risk: RiskLevel,
    /// Lowest risk notified immediately; lower ones go into a per-organization summary.
    /// Default `High`.
    pub notify_immediately_min_risk: RiskLevel,
    /// Most action-log ids kept per detection (all rows are still counted). Default 100.
    pub max_evidence_ids: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            trusted_signers: Vec::new(),
            trusted_hashes: Vec::new(),
            never_approve_hashes: Vec::new(),
            never_approve_paths: Vec::new(),
            never_approve_signers: Vec::new(),
            lolbins: strings(DEFAULT_LOLBINS),
            extra_lolbins: Vec::new(),
            office_and_browser_processes: strings(DEFAULT_OFFICE_AND_BROWSERS),
            user_writable_paths: strings(DEFAULT_USER_WRITABLE_PATHS),
            approval_scope: ApprovalScope::Computer,
            fleet_spread_threshold: 3,
            repeat_window_minutes: None,
            ticket_priority: RiskPriorities::default(),
            ticket_min_risk: RiskLevel::Medium,
            notify_immediately_min_risk: RiskLevel::High,
            max_evidence_ids: 100,
        }
    }
}

/// A configuration value the engine refuses. `Display` names the key and the value, e.g.
/// `org_variables.threatlocker_block_alert_threshold = 0: must be at least 1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value}: {problem}")]
#[non_exhaustive]
pub struct ConfigError {
    /// Dotted path of the offending key (`org_overrides.<id>.threatlocker_block_alert_threshold`).
    pub key: String,
    /// The offending value as configured (quoted when a string).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, value: impl fmt::Display, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.to_string(),
            problem: problem.into(),
        }
    }
}

/// Organization variables after applying an override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedOrg {
    pub board: String,
    /// Lower-cased, trimmed.
    pub categories: HashSet<String>,
    pub threshold: u32,
    pub recipients: Vec<String>,
    pub scope: ApprovalScope,
}

/// Validated, pre-normalized configuration used during evaluation.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub default_org: ResolvedOrg,
    pub orgs: BTreeMap<OrganizationId, ResolvedOrg>,
    pub trusted_signers: Vec<String>,
    pub trusted_hashes: HashSet<String>,
    pub never_hashes: HashSet<String>,
    pub never_paths: Vec<String>,
    pub never_signers: Vec<String>,
    pub binaries: BinaryLists,
    pub office_browsers: HashSet<String>,
    pub fleet_threshold: u32,
    pub repeat_window: Option<chrono::Duration>,
    pub priorities: RiskPriorities,
    pub ticket_min_risk: RiskLevel,
    pub notify_min_risk: RiskLevel,
    pub max_evidence: usize,
}

impl Compiled {
    pub fn org(&self, id: Option<&OrganizationId>) -> &ResolvedOrg {
        id.and_then(|id| self.orgs.get(id))
            .unwrap_or(&self.default_org)
    }
}

fn check_text(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(
            key,
            format!("{value:?}"),
            "must not be empty",
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ConfigError::new(
            key,
            format!("{value:?}"),
            "must not contain control characters",
        ));
    }
    Ok(())
}

fn check_list(key: &str, list: &[String]) -> Result<(), ConfigError> {
    for (i, v) in list.iter().enumerate() {
        check_text(&format!("{key}[{i}]"), v)?;
    }
    Ok(())
}

fn check_threshold(key: &str, v: u32) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(ConfigError::new(key, v, "must be at least 1"));
    }
    Ok(())
}

fn hashes(key: &str, list: &[String]) -> Result<HashSet<String>, ConfigError> {
    let mut out = HashSet::new();
    for (i, h) in list.iter().enumerate() {
        let t = h.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError::new(
                format!("{key}[{i}]"),
                format!("{h:?}"),
                "must be a hexadecimal hash",
            ));
        }
        out.insert(t.to_ascii_lowercase());
    }
    Ok(out)
}

fn file_names(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::with_capacity(list.len());
    for (i, n) in list.iter().enumerate() {
        let k = format!("{key}[{i}]");
        check_text(&k, n)?;
        if n.contains(['\\', '/']) {
            return Err(ConfigError::new(
                k,
                format!("{n:?}"),
                "must be a file name, not a path",
            ));
        }
        out.push(n.trim().to_lowercase());
    }
    Ok(out)
}

fn lowered(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    check_list(key, list)?;
    Ok(list.iter().map(|s| s.trim().to_lowercase()).collect())
}

/// The LOLBin names and user-writable folder markers of a [`Rules`], normalized (lower-case,
/// trimmed): what the detections and the investigations both look for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BinaryLists {
    /// LOLBin file names (`lolbins` plus `extra_lolbins`).
    pub lolbins: HashSet<String>,
    /// User-writable folder markers.
    pub user_writable: Vec<String>,
}

impl BinaryLists {
    /// Validates and normalizes the lists of `r`; the error names the key and value.
    pub(crate) fn from_rules(r: &Rules) -> Result<Self, ConfigError> {
        let mut lolbins: HashSet<String> = file_names("rules.lolbins", &r.lolbins)?
            .into_iter()
            .collect();
        lolbins.extend(file_names("rules.extra_lolbins", &r.extra_lolbins)?);
        Ok(Self {
            lolbins,
            user_writable: lowered("rules.user_writable_paths", &r.user_writable_paths)?,
        })
    }

    /// The built-in lists (what `from_rules(&Rules::default())` gives, without the checks).
    pub(crate) fn defaults() -> Self {
        Self {
            lolbins: DEFAULT_LOLBINS.iter().map(|s| s.to_lowercase()).collect(),
            user_writable: DEFAULT_USER_WRITABLE_PATHS
                .iter()
                .map(|s| s.to_lowercase())
                .collect(),
        }
    }
}

impl EngineConfig {
    pub(crate) fn compile(&self) -> Result<Compiled, ConfigError> {
        let v = &self.org_variables;
        check_text(
            "org_variables.threatlocker_ticket_board",
            &v.threatlocker_ticket_board,
        )?;
        check_list(
            "org_variables.threatlocker_auto_approve_categories",
            &v.threatlocker_auto_approve_categories,
        )?;
        check_threshold(
            "org_variables.threatlocker_block_alert_threshold",
            v.threatlocker_block_alert_threshold,
        )?;
        check_list(
            "org_variables.threatlocker_notification_recipients",
            &v.threatlocker_notification_recipients,
        )?;
        let r = &self.rules;
        let default_org = ResolvedOrg {
            board: v.threatlocker_ticket_board.trim().to_owned(),
            categories: categories(&v.threatlocker_auto_approve_categories),
            threshold: v.threatlocker_block_alert_threshold,
            recipients: recipients(&v.threatlocker_notification_recipients),
            scope: r.approval_scope,
        };
        let mut orgs = BTreeMap::new();
        for (id, o) in &self.org_overrides {
            let p = format!("org_overrides.{id}");
            if id.as_str().trim().is_empty() {
                return Err(ConfigError::new(
                    "org_overrides",
                    "\"\"",
                    "organization id must not be empty",
                ));
            }
            let mut org = default_org.clone();
            if let Some(b) = &o.threatlocker_ticket_board {
                check_text(&format!("{p}.threatlocker_ticket_board"), b)?;
                org.board = b.trim().to_owned();
            }
            if let Some(c) = &o.threatlocker_auto_approve_categories {
                check_list(&format!("{p}.threatlocker_auto_approve_categories"), c)?;
                org.categories = categories(c);
            }
            if let Some(t) = o.threatlocker_block_alert_threshold {
                check_threshold(&format!("{p}.threatlocker_block_alert_threshold"), t)?;
                org.threshold = t;
            }
            if let Some(rc) = &o.threatlocker_notification_recipients {
                check_list(&format!("{p}.threatlocker_notification_recipients"), rc)?;
                org.recipients = recipients(rc);
            }
            if let Some(s) = o.approval_scope {
                org.scope = s;
            }
            orgs.insert(id.clone(), org);
        }
        let trusted_hashes = hashes("rules.trusted_hashes", &r.trusted_hashes)?;
        let never_hashes = hashes("rules.never_approve_hashes", &r.never_approve_hashes)?;
        if let Some((i, h)) = r
            .trusted_hashes
            .iter()
            .enumerate()
            .find(|(_, h)| never_hashes.contains(&h.trim().to_ascii_lowercase()))
        {
            return Err(ConfigError::new(
                format!("rules.trusted_hashes[{i}]"),
                format!("{h:?}"),
                "is also in rules.never_approve_hashes",
            ));
        }
        let binaries = BinaryLists::from_rules(r)?;
        let office_browsers = file_names(
            "rules.office_and_browser_processes",
            &r.office_and_browser_processes,
        )?
        .into_iter()
        .collect();
        if r.fleet_spread_threshold < 2 {
            return Err(ConfigError::new(
                "rules.fleet_spread_threshold",
                r.fleet_spread_threshold,
                "must be at least 2 (one computer is not a spread)",
            ));
        }
        if r.repeat_window_minutes == Some(0) {
            return Err(ConfigError::new(
                "rules.repeat_window_minutes",
                0,
                "must be at least 1 when set",
            ));
        }
        if r.max_evidence_ids == 0 {
            return Err(ConfigError::new(
                "rules.max_evidence_ids",
                0,
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("rules.ticket_priority.low", &r.ticket_priority.low),
            ("rules.ticket_priority.medium", &r.ticket_priority.medium),
            ("rules.ticket_priority.high", &r.ticket_priority.high),
            (
                "rules.ticket_priority.critical",
                &r.ticket_priority.critical,
            ),
        ] {
            check_text(key, value)?;
        }
        Ok(Compiled {
            default_org,
            orgs,
            trusted_signers: lowered("rules.trusted_signers", &r.trusted_signers)?,
            trusted_hashes,
            never_hashes,
            never_paths: lowered("rules.never_approve_paths", &r.never_approve_paths)?,
            never_signers: lowered("rules.never_approve_signers", &r.never_approve_signers)?,
            binaries,
            office_browsers,
            fleet_threshold: r.fleet_spread_threshold,
            repeat_window: r
                .repeat_window_minutes
                .map(|m| chrono::Duration::minutes(i64::from(m))),
            priorities: r.ticket_priority.clone(),
            ticket_min_risk: r.ticket_min_risk,
            notify_min_risk: r.notify_immediately_min_risk,
            max_evidence: r.max_evidence_ids,
        })
    }
}

fn categories(list: &[String]) -> HashSet<String> {
    list.iter().map(|c| text::fold(c)).collect()
}

fn recipients(list: &[String]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.trim().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrCsv {
    List(Vec<String>),
    Csv(String),
}

impl ListOrCsv {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::List(v) => v,
            Self::Csv(s) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    ListOrCsv::deserialize(d).map(ListOrCsv::into_vec)
}

fn opt_list_or_csv<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Option::<ListOrCsv>::deserialize(d).map(|o| o.map(ListOrCsv::into_vec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_binary_lists_are_those_of_the_default_rules() {
        assert_eq!(
            BinaryLists::from_rules(&Rules::default()),
            Ok(BinaryLists::defaults())
        );
    }
}
