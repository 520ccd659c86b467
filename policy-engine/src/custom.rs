//! Custom detections: rules an MSP adds without forking the engine.
//!
//! Two ways to write one:
//!
//! - in Rust, a type implementing [`Rule`], registered with [`Engine::with_rule`];
//! - in the configuration, a `[[rules.custom]]` table ([`CustomRuleConfig`]) for MSPs who do not
//!   write Rust: it matches rows on path, process, parent process, user, action and
//!   organization, and names a risk and a reason.
//!
//! Both look at one accepted action-log row at a time (inside the window, de-duplicated) and may
//! return a [`Finding`]. The engine groups the findings of one rule by (organization, computer),
//! as it does its own per-row rules, into one [`SecurityEvent`] per group; from there a custom
//! detection flows into incidents, tickets, notifications, approvals (a detection on a hash
//! holds its auto-approval) and the report exactly like a built-in one.
//!
//! Row by row on purpose: a rule keeps no state between rows, so an engine that streams rows can
//! call it as they arrive, and grouping stays the engine's business.
//!
//! ```
//! use policy_engine::{Engine, EngineConfig, Finding, RiskLevel, Rule};
//! use threatlocker_api::ActionLogRow;
//!
//! /// Anything run from the `d:` to `h:` drive letters (where USB drives mount).
//! struct UsbDrive;
//!
//! impl Rule for UsbDrive {
//!     fn id(&self) -> &'static str {
//!         "msp.usb_drive"
//!     }
//!     fn check(&self, row: &ActionLogRow) -> Option<Finding> {
//!         let path = row.full_path.as_deref()?.to_ascii_lowercase();
//!         let on_usb = ["d:\\", "e:\\", "f:\\", "g:\\", "h:\\"].iter().any(|d| path.starts_with(d));
//!         on_usb.then(|| Finding::new(RiskLevel::High, "A program ran from a removable drive."))
//!     }
//! }
//!
//! let engine = Engine::new(EngineConfig::default())?.with_rule(UsbDrive)?;
//! # let _ = engine;
//! # Ok::<(), policy_engine::ConfigError>(())
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use threatlocker_api::{ActionLogRow, ComputerId, OrganizationId};

use crate::accumulate::{CustomAgg, CustomKey};
use crate::config::ConfigError;
use crate::decisions::SecurityEvent;
use crate::detect::{self, Outcome};
use crate::engine::{computer_incident, detection_key, Engine};
use crate::rules::RiskLevel;
use crate::text::{clean, file_name, glob_ci};

/// The event type of a custom detection unless its rule names another.
pub const CUSTOM_EVENT_TYPE: &str = "custom_detection";

/// The prefix the engine gives the id of a `[[rules.custom]]` rule (`id = "usb_drive"` fires
/// as `custom.usb_drive`), so a configured rule can never take a built-in rule's id.
pub const CONFIG_RULE_PREFIX: &str = "custom.";

/// A detection rule written in Rust.
///
/// Pure: no I/O, no clock, no state between rows (see the [module docs](self)). Implementations
/// must be `Send + Sync` so one engine can be shared across threads.
pub trait Rule: Send + Sync {
    /// Stable id, e.g. `msp.usb_drive`: detections, tickets and reports name it as `rule`, and
    /// it is part of the incident's dedupe key, so changing it opens new tickets.
    fn id(&self) -> &'static str;

    /// The detection's event type (default [`CUSTOM_EVENT_TYPE`]).
    fn event_type(&self) -> &'static str {
        CUSTOM_EVENT_TYPE
    }

    /// Looks at one accepted row; `Some` when the rule fires on it.
    fn check(&self, row: &ActionLogRow) -> Option<Finding>;
}

/// What a [`Rule`] says about one row: a risk and a plain-language reason.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Finding {
    /// Risk of this row.
    pub risk: RiskLevel,
    /// Why, in plain language (shown in the detection, its ticket and the report).
    pub reason: String,
    /// Whether the risk is raised one level when the row was not stopped (it ran, or was only
    /// audited), as the built-in execution rules do.
    pub escalates_when_not_stopped: bool,
}

impl Finding {
    /// A finding of `risk` because of `reason`.
    pub fn new(risk: RiskLevel, reason: impl Into<String>) -> Self {
        Self {
            risk,
            reason: reason.into(),
            escalates_when_not_stopped: false,
        }
    }

    /// Raises the risk one level when the row was not stopped (permitted or audit only).
    pub fn escalate_when_not_stopped(mut self) -> Self {
        self.escalates_when_not_stopped = true;
        self
    }
}

/// The outcome a `[[rules.custom]]` rule can require with `action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CustomAction {
    /// A block (`actionId` 2 or 3, not in monitor mode).
    Block,
    /// A permit (`actionId` 1, or installation mode).
    Permit,
    /// An audit-only deny (`isMonitorMode` true).
    Audit,
}

/// One `[[rules.custom]]` table: a declarative detection rule.
///
/// Every match key that is set must match (and at least one must be set); a key given a list
/// matches when any of its patterns does. Patterns are case-insensitive and `*` matches any run
/// of characters, path separators included.
///
/// ```toml
/// [[rules.custom]]
/// id = "usb_drive"                       # fires as rule `custom.usb_drive`
/// path = ["d:\\*", "e:\\*", "f:\\*"]     # fullPath
/// process = "explorer.exe"               # processPath (file name, or the whole path if the
///                                        # pattern has a separator), else processName
/// parent_process = "*\\winword.exe"      # parentProcessName or createdByProcess
/// user = "contoso\\*"                    # username
/// action = "permit"                      # block, permit or audit
/// organization = "Contoso Dental"        # organizationId, or the row's organizationName
/// risk = "High"                          # Low, Medium, High, Critical
/// reason = "A program ran from a removable drive."
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRuleConfig {
    /// Id, letters, digits, `_`, `-` and `.`; the detection's rule is `custom.<id>`.
    pub id: String,
    /// Risk of a match.
    pub risk: RiskLevel,
    /// Why a match matters, in plain language.
    pub reason: String,
    /// Globs on `fullPath`.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub path: Vec<String>,
    /// Globs on the acting process (`processPath`, else `processName`).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub process: Vec<String>,
    /// Globs on the parent process (`parentProcessName` or `createdByProcess`).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub parent_process: Vec<String>,
    /// Globs on `username`.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub user: Vec<String>,
    /// The outcome the row must have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<CustomAction>,
    /// Organization ids or names (exact, case-insensitive).
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub organization: Vec<String>,
    /// Raise the risk one level when the row was not stopped (permitted or audit only).
    #[serde(default)]
    pub escalate_when_not_stopped: bool,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A validated `[[rules.custom]]` rule.
#[derive(Debug)]
struct Declarative {
    id: &'static str,
    path: Vec<String>,
    process: Vec<String>,
    parent_process: Vec<String>,
    user: Vec<String>,
    action: Option<CustomAction>,
    organization: Vec<String>,
    finding: Finding,
}

/// Whether `value` (a path or a name) matches a lower-case glob: a pattern with a path separator
/// is matched against the whole value, one without against its file name.
fn process_matches(pattern: &str, value: &str) -> bool {
    let value = value.trim();
    if value.is_empty() {
        return false;
    }
    if pattern.contains(['\\', '/']) {
        glob_ci(pattern, value)
    } else {
        glob_ci(pattern, file_name(value))
    }
}

fn any_glob(patterns: &[String], value: Option<&str>) -> bool {
    let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return false;
    };
    patterns.iter().any(|p| glob_ci(p, v))
}

impl Declarative {
    fn matches(&self, row: &ActionLogRow) -> bool {
        if !self.path.is_empty() && !any_glob(&self.path, row.full_path.as_deref()) {
            return false;
        }
        if !self.process.is_empty() {
            let process = row
                .process_path
                .as_deref()
                .filter(|p| !p.trim().is_empty())
                .or(row.process_name.as_deref());
            let hit = process.is_some_and(|p| self.process.iter().any(|g| process_matches(g, p)));
            if !hit {
                return false;
            }
        }
        if !self.parent_process.is_empty() {
            let hit = [
                row.parent_process_name.as_deref(),
                row.created_by_process.as_deref(),
            ]
            .into_iter()
            .flatten()
            .any(|p| self.parent_process.iter().any(|g| process_matches(g, p)));
            if !hit {
                return false;
            }
        }
        if !self.user.is_empty() && !any_glob(&self.user, row.username.as_deref()) {
            return false;
        }
        if let Some(action) = self.action {
            let wanted = match action {
                CustomAction::Block => Outcome::Block,
                CustomAction::Permit => Outcome::Permit,
                CustomAction::Audit => Outcome::AuditOnly,
            };
            if detect::outcome(row) != wanted {
                return false;
            }
        }
        if !self.organization.is_empty() {
            let id = row.organization_id.as_ref().map(|o| o.as_str());
            let name = row.organization_name.as_deref();
            let hit = [id, name]
                .into_iter()
                .flatten()
                .map(|s| s.trim().to_lowercase())
                .any(|s| self.organization.contains(&s));
            if !hit {
                return false;
            }
        }
        true
    }
}

impl Rule for Declarative {
    fn id(&self) -> &'static str {
        self.id
    }

    fn check(&self, row: &ActionLogRow) -> Option<Finding> {
        self.matches(row).then(|| self.finding.clone())
    }
}

/// The `&'static str` for a configured rule id. Ids are interned once per distinct value, so
/// reloading a configuration does not grow memory; the set is bounded by the ids ever
/// configured.
fn intern(id: String) -> &'static str {
    static IDS: OnceLock<Mutex<BTreeSet<&'static str>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(s) = ids.get(id.as_str()) {
        return s;
    }
    let s: &'static str = Box::leak(id.into_boxed_str());
    ids.insert(s);
    s
}

/// The custom rules of an engine, in registration order (configured ones first).
#[derive(Clone, Default)]
pub(crate) struct CustomRules {
    rules: Vec<Arc<dyn Rule>>,
}

impl fmt::Debug for CustomRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|r| r.id()))
            .finish()
    }
}

impl CustomRules {
    /// Adds a rule; `key` names it in errors. Refuses an id that is empty, not printable, a
    /// built-in rule's, or already taken.
    fn push(&mut self, key: &str, rule: Arc<dyn Rule>) -> Result<(), ConfigError> {
        let id = rule.id();
        let bad = |problem: &str| ConfigError::new(key, format!("{id:?}"), problem);
        if id.trim().is_empty() || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(bad("a rule id must be non-empty and without spaces"));
        }
        if crate::rules::rule(id).is_some() {
            return Err(bad("is the id of a built-in rule"));
        }
        if self.rules.iter().any(|r| r.id() == id) {
            return Err(bad("is the id of another custom rule"));
        }
        let event_type = rule.event_type();
        if event_type.trim().is_empty() {
            return Err(ConfigError::new(
                key,
                format!("{id:?}"),
                "the rule's event type must not be empty",
            ));
        }
        self.rules.push(rule);
        Ok(())
    }
}

fn check_patterns(key: &str, list: &[String]) -> Result<Vec<String>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, p)| {
            if p.trim().is_empty() || p.chars().any(char::is_control) {
                Err(ConfigError::new(
                    format!("{key}[{i}]"),
                    format!("{p:?}"),
                    "must be a non-empty pattern without control characters",
                ))
            } else {
                Ok(p.trim().to_lowercase())
            }
        })
        .collect()
}

/// Validates `rules.custom`; errors name the key (`rules.custom[2].path[0]`).
pub(crate) fn compile(list: &[CustomRuleConfig]) -> Result<CustomRules, ConfigError> {
    let mut out = CustomRules::default();
    for (i, c) in list.iter().enumerate() {
        let p = format!("rules.custom[{i}]");
        let id = c.id.trim();
        if id.is_empty()
            || !id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'))
        {
            return Err(ConfigError::new(
                format!("{p}.id"),
                format!("{:?}", c.id),
                "must be letters, digits, `_`, `-` or `.`",
            ));
        }
        if c.reason.trim().is_empty() || c.reason.chars().any(char::is_control) {
            return Err(ConfigError::new(
                format!("{p}.reason"),
                format!("{:?}", c.reason),
                "must be non-empty text without control characters",
            ));
        }
        let rule = Declarative {
            id: intern(format!("{CONFIG_RULE_PREFIX}{id}")),
            path: check_patterns(&format!("{p}.path"), &c.path)?,
            process: check_patterns(&format!("{p}.process"), &c.process)?,
            parent_process: check_patterns(&format!("{p}.parent_process"), &c.parent_process)?,
            user: check_patterns(&format!("{p}.user"), &c.user)?,
            action: c.action,
            organization: check_patterns(&format!("{p}.organization"), &c.organization)?,
            finding: Finding {
                risk: c.risk,
                reason: c.reason.trim().to_owned(),
                escalates_when_not_stopped: c.escalate_when_not_stopped,
            },
        };
        if rule.path.is_empty()
            && rule.process.is_empty()
            && rule.parent_process.is_empty()
            && rule.user.is_empty()
            && rule.action.is_none()
            && rule.organization.is_empty()
        {
            return Err(ConfigError::new(
                format!("{p}.id"),
                format!("{:?}", c.id),
                "set at least one of path, process, parent_process, user, action, organization",
            ));
        }
        out.push(&format!("{p}.id"), Arc::new(rule))?;
    }
    Ok(out)
}

impl Engine {
    /// Registers a custom [`Rule`]; its detections flow into incidents, tickets and the report
    /// like built-in ones. The error names a rule id that is empty, has spaces, or is already
    /// taken (by a built-in rule, a `[[rules.custom]]` rule or another registered rule).
    pub fn with_rule(mut self, rule: impl Rule + 'static) -> Result<Self, ConfigError> {
        self.compiled
            .custom
            .push("Engine::with_rule", Arc::new(rule))?;
        Ok(self)
    }
}

impl CustomRules {
    /// Whether no custom rule is registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The findings of every rule on one accepted row: (the rule's place, its risk — raised
    /// when the finding asks and the row was not stopped —, its reason).
    pub(crate) fn findings<'r>(
        &'r self,
        row: &'r ActionLogRow,
        outcome: Outcome,
    ) -> impl Iterator<Item = (usize, RiskLevel, String)> + 'r {
        let not_stopped = outcome.not_stopped();
        self.rules.iter().enumerate().filter_map(move |(r, rule)| {
            rule.check(row).map(|f| {
                let risk = if f.escalates_when_not_stopped && not_stopped {
                    f.risk.escalated()
                } else {
                    f.risk
                };
                (r, risk, f.reason)
            })
        })
    }
}

/// One detection per (rule, organization, computer) from the groups the accumulator kept
/// (see [`CustomAgg`]), each with the index `first_index + i` standing for its rows.
pub(crate) fn detections(
    custom: &CustomRules,
    groups: &[(CustomKey, CustomAgg)],
    first_index: u32,
    org_name: impl Fn(&str, &ActionLogRow) -> Option<String>,
) -> Vec<(SecurityEvent, Vec<u32>)> {
    groups
        .iter()
        .enumerate()
        .filter_map(|(i, (key, agg))| {
            let rule = custom.rules.get(key.rule as usize)?;
            let (risk, _, reason) = agg.best.as_ref()?;
            let oldest = agg.cited.first()?;
            let org = key.org.as_str();
            let computer = key.computer.as_str();
            let action_taken = Outcome::least_stopped_label(|o| agg.outcomes.contains(&o));
            let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(", "));
            let device = joined(&agg.devices);
            let user = joined(&agg.users);
            let application = match agg.names.len() {
                0 => "unknown application".to_owned(),
                1 => agg.names[0].clone(),
                n => format!("{n} applications"),
            };
            let reason = format!(
                "{} ({} row(s) on {}; outcome {}.)",
                clean(reason),
                agg.count,
                device
                    .as_deref()
                    .map(clean)
                    .unwrap_or("an unknown computer".into()),
                action_taken
            );
            let organization_id = (!org.is_empty()).then(|| OrganizationId::new(org));
            let event = SecurityEvent::builder(rule.id(), *risk, reason)
                .event_type(rule.event_type())
                .key(detection_key(&[org, rule.id(), "", computer]))
                .incident(computer_incident(org, computer))
                .organization(organization_id, org_name(org, &oldest.to_row()))
                .device(device)
                .computer_id(match agg.computers.as_slice() {
                    [one] => Some(ComputerId::new(one.as_str())),
                    _ => None,
                })
                .user(user)
                .application(application)
                .application_key(match agg.keys.as_slice() {
                    [one] => Some(one.clone()),
                    _ => None,
                })
                .action_taken(action_taken)
                .seen(Some(oldest.key.at), agg.last)
                .rows(agg.count, agg.ids.iter().map(|k| k.text()).collect())
                .hashes(agg.hashes.clone())
                .build();
            Some((event, vec![first_index + i as u32]))
        })
        .collect()
}

/// Builds a [`SecurityEvent`] outside the engine's own rules: for custom detections, for an
/// embedder's own analyses, and for tests of code that consumes detections.
///
/// ```
/// use policy_engine::{RiskLevel, SecurityEvent};
///
/// let event = SecurityEvent::builder("msp.usb_drive", RiskLevel::High, "Ran from a USB drive.")
///     .device(Some("WS-1".to_owned()))
///     .application("setup.exe")
///     .build();
/// assert_eq!(event.event_type, "custom_detection");
/// assert!(event.key.starts_with("tl:det:"));
/// assert!(event.incident.starts_with("tl:inc:"));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityEventBuilder {
    event: SecurityEvent,
    key: Option<String>,
}

impl SecurityEvent {
    /// A detection by `rule` of `risk` because of `reason`; every other field starts empty (event
    /// type [`CUSTOM_EVENT_TYPE`], action taken `Observed`).
    pub fn builder(
        rule: &'static str,
        risk: RiskLevel,
        reason: impl Into<String>,
    ) -> SecurityEventBuilder {
        SecurityEventBuilder {
            event: SecurityEvent {
                key: String::new(),
                incident: String::new(),
                event_type: CUSTOM_EVENT_TYPE,
                rule,
                also_matched: Vec::new(),
                risk_level: risk,
                reason: reason.into(),
                organization_id: None,
                organization_name: None,
                device: None,
                computer_id: None,
                user: None,
                application: String::new(),
                application_key: None,
                action_taken: "Observed",
                first_seen: None,
                last_seen: None,
                row_count: 0,
                action_log_ids: Vec::new(),
                hashes: Vec::new(),
                patient_zero: None,
                computers_affected: 0,
            },
            key: None,
        }
    }
}

impl SecurityEventBuilder {
    /// The event type (`custom_detection` unless set).
    pub fn event_type(mut self, event_type: &'static str) -> Self {
        self.event.event_type = event_type;
        self
    }

    /// The detection key. Default: derived from organization, rule, application key and
    /// computer (id, else name), so the same finding in the next window gets the same key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The incident (and ticket) the detection belongs to. Default: its organization and
    /// computer (id, else name), like the built-in per-computer detections.
    pub fn incident(mut self, incident: impl Into<String>) -> Self {
        self.event.incident = incident.into();
        self
    }

    /// Organization id and name.
    pub fn organization(mut self, id: Option<OrganizationId>, name: Option<String>) -> Self {
        self.event.organization_id = id;
        self.event.organization_name = name;
        self
    }

    /// Computer name(s), comma-separated when several.
    pub fn device(mut self, device: Option<String>) -> Self {
        self.event.device = device;
        self
    }

    /// Computer id, when one computer is involved.
    pub fn computer_id(mut self, id: Option<ComputerId>) -> Self {
        self.event.computer_id = id;
        self
    }

    /// User(s), comma-separated when several.
    pub fn user(mut self, user: Option<String>) -> Self {
        self.event.user = user;
        self
    }

    /// Application or file name.
    pub fn application(mut self, application: impl Into<String>) -> Self {
        self.event.application = application.into();
        self
    }

    /// Application key (`sha256Hash`, else `hash`, else the lower-cased `fullPath`).
    pub fn application_key(mut self, key: Option<String>) -> Self {
        self.event.application_key = key;
        self
    }

    /// The least stopped outcome among the rows: `Permitted`, `Audit only`, `Ringfenced`,
    /// `Blocked` (or `Observed`).
    pub fn action_taken(mut self, action: &'static str) -> Self {
        self.event.action_taken = action;
        self
    }

    /// First and last row times.
    pub fn seen(mut self, first: Option<DateTime<Utc>>, last: Option<DateTime<Utc>>) -> Self {
        self.event.first_seen = first;
        self.event.last_seen = last;
        self
    }

    /// How many rows are behind the detection, and the action-log ids cited (oldest first).
    pub fn rows(mut self, count: u64, action_log_ids: Vec<String>) -> Self {
        self.event.row_count = count;
        self.event.action_log_ids = action_log_ids;
        self
    }

    /// Hashes involved (a pending approval of one of them goes to manual review).
    pub fn hashes(mut self, hashes: Vec<String>) -> Self {
        self.event.hashes = hashes;
        self
    }

    /// The detection.
    pub fn build(self) -> SecurityEvent {
        let mut event = self.event;
        let org = event
            .organization_id
            .as_ref()
            .map_or(String::new(), |o| o.as_str().to_owned());
        let computer = event
            .computer_id
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .or_else(|| event.device.as_deref().map(str::to_lowercase))
            .unwrap_or_default();
        event.key = match self.key {
            Some(k) => k,
            None => detection_key(&[
                &org,
                event.rule,
                event.application_key.as_deref().unwrap_or(""),
                &computer,
            ]),
        };
        if event.incident.is_empty() {
            event.incident = computer_incident(&org, &computer);
        }
        event
    }
}
