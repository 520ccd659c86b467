//! Mapping ThreatLocker rows, system-audit entries and the workflow's decisions to
//! vendor-neutral [`SiemRecord`]s, and the severity rules. Pure functions.
//!
//! Severity (CEF 0-10; the syslog severity follows the CEF band: 0-3 info, 4-6 warning, 7-8
//! err, 9-10 crit):
//!
//! | row | CEF |
//! |---|---|
//! | permit (or install mode) | 1 |
//! | other / unknown outcome | 2 |
//! | audit-only (would have been denied, ran) | 4 |
//! | block (enforced deny) | 5 |
//! | ringfenced | 6 |
//! | evidence of an engine detection | at least Low 3, Medium 5, High 7, Critical 9 |
//!
//! With `severity = "engine"` each polled window is run through the policy engine and a row
//! that is evidence for a detection (an action-log id listed by it) gets the higher of its
//! outcome's severity and the detection's risk; the detection types go in `cs4`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use policy_engine::{Engine, Input, RiskLevel};
use psa_connectors::SiemRecord;
use threatlocker_api::{ActionLogRow, ActionOutcome, SystemAuditEntry};

use crate::state::IntentRecord;

/// The CEF severity for an engine risk level.
pub fn risk_severity(risk: RiskLevel) -> u8 {
    match risk {
        RiskLevel::Low => 3,
        RiskLevel::Medium => 5,
        RiskLevel::High => 7,
        RiskLevel::Critical => 9,
    }
}

/// What happened to a row, for signatures and `outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// Enforced deny.
    Block,
    /// Would have been denied, only observed.
    AuditOnly,
    /// Ran.
    Permit,
    /// A ringfence constrained it.
    Ringfenced,
    /// Anything else.
    Other,
}

impl RowOutcome {
    /// Classifies a row by the design's definitions.
    pub fn of(row: &ActionLogRow) -> Self {
        if row.is_audit_only() {
            Self::AuditOnly
        } else if row.is_block() {
            Self::Block
        } else {
            match row.action_id {
                Some(ActionOutcome::Permit | ActionOutcome::InstallMode) => Self::Permit,
                Some(ActionOutcome::Ringfenced) => Self::Ringfenced,
                _ => Self::Other,
            }
        }
    }

    /// Short key for signatures (`deny`, `audit`, `permit`, `ringfence`, `other`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Block => "deny",
            Self::AuditOnly => "audit",
            Self::Permit => "permit",
            Self::Ringfenced => "ringfence",
            Self::Other => "other",
        }
    }

    /// CEF `outcome`.
    pub fn cef_outcome(self) -> &'static str {
        match self {
            Self::Block => "blocked",
            Self::AuditOnly => "audited",
            Self::Permit => "allowed",
            Self::Ringfenced => "restricted",
            Self::Other => "unknown",
        }
    }

    /// The severity of the outcome alone.
    pub fn severity(self) -> u8 {
        match self {
            Self::Permit => 1,
            Self::Other => 2,
            Self::AuditOnly => 4,
            Self::Block => 5,
            Self::Ringfenced => 6,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::Block => "blocked",
            Self::AuditOnly => "denied in audit-only mode (ran)",
            Self::Permit => "permitted",
            Self::Ringfenced => "restricted by ringfence",
            Self::Other => "logged",
        }
    }
}

/// The forwarding id of a row: `actionLogId`, else `e:` + `eActionLogId`, else a hash of the
/// row's JSON (stable for identical rows).
pub fn row_key(row: &ActionLogRow) -> String {
    row.dedupe_key().unwrap_or_else(|| {
        format!(
            "h:{:016x}",
            fnv1a(serde_json::to_string(row).unwrap_or_default().as_bytes())
        )
    })
}

/// 64-bit FNV-1a (stable across releases and platforms, unlike `DefaultHasher`).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the engine found about a row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finding {
    /// The highest risk of the detections the row is evidence for.
    pub risk: Option<RiskLevel>,
    /// Their event types, comma-separated.
    pub event_types: String,
    /// The first detection's reason.
    pub reason: Option<String>,
}

/// Runs the engine over one window of rows and returns, per action-log id (the engine's
/// evidence id: `actionLogId`, else `eActionLogId`), what it found. The rows are lent to the
/// engine and handed back untouched.
pub fn engine_findings(
    engine: &Engine,
    rows: &mut Vec<ActionLogRow>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> HashMap<String, Finding> {
    let mut input = Input::new(to, from, to + chrono::Duration::milliseconds(1));
    input.events = std::mem::take(rows);
    let decisions = engine.evaluate(&input);
    *rows = std::mem::take(&mut input.events);
    let mut out: HashMap<String, Finding> = HashMap::new();
    for d in &decisions.detections {
        for id in &d.action_log_ids {
            let f = out.entry(id.clone()).or_default();
            if f.risk.is_none_or(|r| d.risk_level > r) {
                f.risk = Some(d.risk_level);
                f.reason = Some(d.reason.clone());
            }
            if !f.event_types.split(',').any(|t| t == d.event_type) {
                if !f.event_types.is_empty() {
                    f.event_types.push(',');
                }
                f.event_types.push_str(d.event_type);
            }
        }
    }
    out
}

fn push(rec: &mut SiemRecord, key: &str, value: Option<&str>) {
    if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
        rec.fields.push((key.to_owned(), v.to_owned()));
    }
}

/// The record for one action-log row. `raw` includes the row as JSON (used by the JSON
/// format; skip it for CEF, which does not carry it).
pub fn action_log_record(row: &ActionLogRow, finding: Option<&Finding>, raw: bool) -> SiemRecord {
    let mut rec = SiemRecord::new(Utc::now(), 0, String::new(), String::new());
    fill_action_log_record(&mut rec, row, finding, raw);
    rec
}

/// Writes `key = value` into slot `*n` of `fields`, reusing the slot's strings (the forwarder
/// refills one batch of records, so steady state allocates nothing here).
fn set(fields: &mut Vec<(String, String)>, n: &mut usize, key: &str, value: &str) {
    if let Some((k, v)) = fields.get_mut(*n) {
        k.clear();
        k.push_str(key);
        v.clear();
        v.push_str(value);
    } else {
        fields.push((key.to_owned(), value.to_owned()));
    }
    *n += 1;
}

fn set_opt(fields: &mut Vec<(String, String)>, n: &mut usize, key: &str, value: Option<&str>) {
    if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
        set(fields, n, key, v);
    }
}

fn set_string(slot: &mut String, parts: &[&str]) {
    slot.clear();
    for p in parts {
        slot.push_str(p);
    }
}

/// [`action_log_record`] into an existing record, reusing its buffers.
pub fn fill_action_log_record(
    rec: &mut SiemRecord,
    row: &ActionLogRow,
    finding: Option<&Finding>,
    raw: bool,
) {
    use std::fmt::Write as _;
    let outcome = RowOutcome::of(row);
    rec.severity = finding
        .and_then(|f| f.risk)
        .map(risk_severity)
        .unwrap_or(0)
        .max(outcome.severity());
    rec.timestamp = row.date_time.unwrap_or_else(Utc::now);
    let action_type = row
        .action_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("action");
    let file = row.file_name().unwrap_or("unknown file");
    let host = row.hostname.as_deref().unwrap_or("unknown computer");
    set_string(
        &mut rec.name,
        &[
            action_type,
            " of ",
            file,
            " ",
            outcome.title(),
            " on ",
            host,
        ],
    );
    set_string(
        &mut rec.signature,
        &["tl:", action_type, ":", outcome.key()],
    );
    rec.signature.make_ascii_lowercase();
    let msg_id = rec.msg_id.get_or_insert_with(String::new);
    set_string(msg_id, &["TL_", action_type, "_", outcome.key()]);
    msg_id.retain(|c| c.is_ascii_graphic());
    msg_id.make_ascii_uppercase();
    msg_id.truncate(32);
    match (&mut rec.hostname, &row.hostname) {
        (Some(slot), Some(h)) => set_string(slot, &[h]),
        (slot, h) => *slot = h.clone(),
    }
    rec.app_name = None;
    let f = &mut rec.fields;
    let mut n = 0;
    if let Some(t) = row.date_time {
        set(f, &mut n, "rt", "");
        let _ = write!(f[n - 1].1, "{}", t.timestamp_millis());
    }
    set_opt(f, &mut n, "duser", row.username.as_deref());
    set_opt(f, &mut n, "fname", row.file_name());
    set_opt(f, &mut n, "filePath", row.full_path.as_deref());
    set_opt(
        f,
        &mut n,
        "fileHash",
        row.sha256_hash.as_deref().or(row.hash.as_deref()),
    );
    set_opt(f, &mut n, "sproc", row.process_path.as_deref());
    set_opt(
        f,
        &mut n,
        "act",
        row.action.as_deref().or(Some(outcome.key())),
    );
    set(f, &mut n, "outcome", outcome.cef_outcome());
    set(f, &mut n, "cat", "ApplicationControl");
    if let Some(id) = row.action_log_id {
        set(f, &mut n, "externalId", "");
        let _ = write!(f[n - 1].1, "{id}");
    }
    set_opt(f, &mut n, "dst", row.destination_ip_address.as_deref());
    set_opt(f, &mut n, "dpt", row.destination_port.as_deref());
    if let Some(o) = row
        .organization_name
        .as_deref()
        .or(row.organization_id.as_ref().map(|o| o.as_str()))
    {
        set(f, &mut n, "cs1Label", "organization");
        set_opt(f, &mut n, "cs1", Some(o));
    }
    if let Some(p) = row.policy_name.as_deref() {
        set(f, &mut n, "cs2Label", "policyName");
        set_opt(f, &mut n, "cs2", Some(p));
    }
    if let Some(e) = &row.e_action_log_id {
        set(f, &mut n, "cs3Label", "eActionLogId");
        set(f, &mut n, "cs3", e.as_str());
    }
    if let Some(found) = finding.filter(|f| f.risk.is_some()) {
        set(f, &mut n, "cs4Label", "detections");
        set(f, &mut n, "cs4", &found.event_types);
        if let Some(r) = found.risk {
            set(f, &mut n, "cs5Label", "riskLevel");
            set(f, &mut n, "cs5", r.as_str());
        }
        set_opt(f, &mut n, "msg", found.reason.as_deref());
    }
    f.truncate(n);
    rec.raw_json = if raw {
        serde_json::to_value(row).ok()
    } else {
        None
    };
}

/// The forwarding id of a system-audit entry: `systemAuditId`, else a hash of its JSON.
pub fn system_audit_key(e: &SystemAuditEntry) -> String {
    match &e.system_audit_id {
        Some(id) => id.to_string(),
        None => format!(
            "h:{:016x}",
            fnv1a(serde_json::to_string(e).unwrap_or_default().as_bytes())
        ),
    }
}

/// The record for one system-audit entry (portal logons, policy edits). Denied actions are
/// severity 5, writes (Create/Modify/Delete) 3, the rest 1.
pub fn system_audit_record(e: &SystemAuditEntry, raw: bool) -> SiemRecord {
    let action = e.action.as_deref().unwrap_or("Action");
    let effective = e.effective_action.as_deref().unwrap_or("");
    let denied = effective.eq_ignore_ascii_case("denied");
    let write = ["create", "modify", "delete"]
        .iter()
        .any(|a| action.eq_ignore_ascii_case(a));
    let severity = if denied {
        5
    } else if write {
        3
    } else {
        1
    };
    let who = e.email_address.as_deref().unwrap_or("unknown user");
    let what = e
        .details
        .as_ref()
        .and_then(|d| d.details.as_deref().or(d.function.as_deref()))
        .unwrap_or("");
    let mut rec = SiemRecord::new(
        e.date_time.unwrap_or_else(Utc::now),
        severity,
        format!(
            "tl:portal:{}:{}",
            action.to_ascii_lowercase(),
            effective.to_ascii_lowercase()
        ),
        format!(
            "Portal {action} by {who} {}",
            effective.to_ascii_lowercase()
        )
        .trim_end()
        .to_owned(),
    )
    .msg_id("TL_SYSTEM_AUDIT");
    if let Some(t) = e.date_time {
        rec.fields
            .push(("rt".into(), t.timestamp_millis().to_string()));
    }
    push(&mut rec, "suser", e.email_address.as_deref());
    push(&mut rec, "src", e.ip_address.as_deref());
    push(&mut rec, "act", Some(action));
    push(&mut rec, "outcome", Some(effective));
    rec.fields.push(("cat".into(), "PortalAudit".into()));
    push(&mut rec, "msg", Some(what));
    if let Some(id) = &e.system_audit_id {
        rec.fields.push(("cs3Label".into(), "systemAuditId".into()));
        rec.fields.push(("cs3".into(), id.to_string()));
    }
    if let Some(o) = e.organization_name.as_deref() {
        rec.fields.push(("cs1Label".into(), "organization".into()));
        push(&mut rec, "cs1", Some(o));
    }
    if raw {
        if let Ok(v) = serde_json::to_value(e) {
            rec = rec.raw_json(v);
        }
    }
    rec
}

/// The record for one completed side effect of the workflow (a ticket opened, a request
/// permitted, a notification sent), keyed by its idempotency key. Severity 3 (Low), the
/// reference's band for approval decisions.
pub fn decision_record(intent: &IntentRecord, raw: bool) -> SiemRecord {
    let kind = intent.kind.as_str();
    let mut rec = SiemRecord::new(
        intent.updated_at,
        3,
        format!("tl:workflow:{kind}"),
        format!("Workflow {kind} done"),
    )
    .msg_id(format!("TLM_{}", kind.to_ascii_uppercase()));
    rec.fields.push((
        "rt".into(),
        intent.updated_at.timestamp_millis().to_string(),
    ));
    rec.fields.push(("act".into(), kind.to_owned()));
    rec.fields.push(("cat".into(), "WorkflowDecision".into()));
    rec.fields
        .push(("cs3Label".into(), "idempotencyKey".into()));
    rec.fields.push(("cs3".into(), intent.key.clone()));
    if let Some(r) = &intent.result {
        rec.fields.push(("cs6Label".into(), "result".into()));
        rec.fields.push(("cs6".into(), r.clone()));
    }
    if raw {
        rec = rec.raw_json(intent.payload.clone());
    }
    rec
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: serde_json::Value) -> ActionLogRow {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn outcome_severities_follow_the_table() {
        let cases: &[(serde_json::Value, RowOutcome, u8)] = &[
            (json!({"actionId": 1}), RowOutcome::Permit, 1),
            (json!({"actionId": 4}), RowOutcome::Permit, 1),
            (
                json!({"actionId": 2, "isMonitorMode": false}),
                RowOutcome::Block,
                5,
            ),
            (json!({"actionId": 3}), RowOutcome::Block, 5),
            (
                json!({"actionId": 2, "isMonitorMode": true}),
                RowOutcome::AuditOnly,
                4,
            ),
            (json!({"actionId": 6}), RowOutcome::Ringfenced, 6),
            (json!({"actionId": 5}), RowOutcome::Other, 2),
            (json!({}), RowOutcome::Other, 2),
        ];
        for (v, outcome, sev) in cases {
            let r = row(v.clone());
            assert_eq!(RowOutcome::of(&r), *outcome, "{v}");
            assert_eq!(action_log_record(&r, None, false).severity, *sev, "{v}");
        }
        assert_eq!(
            [
                RiskLevel::Low,
                RiskLevel::Medium,
                RiskLevel::High,
                RiskLevel::Critical
            ]
            .map(risk_severity),
            [3, 5, 7, 9]
        );
    }

    #[test]
    fn detections_raise_severity_never_lower_it() {
        let r = row(json!({"actionLogId": 7, "actionId": 6}));
        let low = Finding {
            risk: Some(RiskLevel::Low),
            event_types: "x".into(),
            reason: None,
        };
        assert_eq!(action_log_record(&r, Some(&low), false).severity, 6);
        let crit = Finding {
            risk: Some(RiskLevel::Critical),
            event_types: "lolbin_execution".into(),
            reason: Some("why".into()),
        };
        let rec = action_log_record(&r, Some(&crit), false);
        assert_eq!(rec.severity, 9);
        assert!(rec
            .fields
            .contains(&("cs4".into(), "lolbin_execution".into())));
        assert!(rec.fields.contains(&("msg".into(), "why".into())));
    }

    #[test]
    fn record_fields_carry_ids_and_names() {
        let r = row(json!({
            "actionLogId": 81234567890i64, "eActionLogId": "6f1c", "hostname": "WS-02",
            "username": "CONTOSO\\jsmith", "dateTime": "2026-05-14T13:02:11.483Z",
            "fullPath": "c:\\users\\jsmith\\downloads\\anydesk.exe", "actionType": "execute",
            "actionId": 2, "action": "Deny", "policyName": "Default - Deny",
            "sha256Hash": "2cf2", "organizationName": "Contoso"
        }));
        let rec = action_log_record(&r, None, true);
        assert_eq!(rec.signature, "tl:execute:deny");
        assert_eq!(rec.msg_id.as_deref(), Some("TL_EXECUTE_DENY"));
        assert_eq!(rec.hostname.as_deref(), Some("WS-02"));
        assert_eq!(rec.name, "execute of anydesk.exe blocked on WS-02");
        for (k, v) in [
            ("externalId", "81234567890"),
            ("cs3", "6f1c"),
            ("fname", "anydesk.exe"),
            ("duser", "CONTOSO\\jsmith"),
            ("rt", "1778763731483"),
            ("fileHash", "2cf2"),
            ("cs2", "Default - Deny"),
            ("cs1", "Contoso"),
            ("outcome", "blocked"),
        ] {
            assert!(
                rec.fields.contains(&(k.into(), v.into())),
                "{k}: {:?}",
                rec.fields
            );
        }
        assert!(rec.raw_json.is_some());
        assert_eq!(row_key(&r), "81234567890");
        let only_e = row(json!({"eActionLogId": "abc"}));
        assert_eq!(row_key(&only_e), "e:abc");
        let none = row(json!({"hostname": "x"}));
        assert_eq!(row_key(&none), row_key(&none.clone()));
        assert!(row_key(&none).starts_with("h:"));
    }

    #[test]
    fn a_reused_record_keeps_nothing_from_the_previous_row() {
        let rich = row(json!({
            "actionLogId": 1, "eActionLogId": "e-1", "hostname": "WS-1", "username": "u",
            "dateTime": "2026-05-14T13:02:11Z", "fullPath": "c:\\a.exe", "actionId": 2,
            "policyName": "P", "organizationName": "O", "destinationIPAddress": "203.0.113.9"
        }));
        let sparse = row(json!({"eActionLogId": "e-2", "actionId": 1}));
        let finding = Finding {
            risk: Some(RiskLevel::High),
            event_types: "t".into(),
            reason: Some("r".into()),
        };
        let mut rec = action_log_record(&rich, Some(&finding), true);
        fill_action_log_record(&mut rec, &sparse, None, false);
        let fresh = action_log_record(&sparse, None, false);
        assert_eq!(rec.fields, fresh.fields);
        assert_eq!(
            (
                rec.severity,
                &rec.signature,
                &rec.name,
                &rec.msg_id,
                &rec.hostname
            ),
            (
                fresh.severity,
                &fresh.signature,
                &fresh.name,
                &fresh.msg_id,
                &fresh.hostname
            )
        );
        assert!(rec.raw_json.is_none());
    }
}
