use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::{OsType, PolicyAction};
use crate::ids::{ApplicationId, ComputerGroupId, OrganizationId, PolicyId};

/// A policy row (`PolicyGetByParameters`, `PolicyGetById`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Policy {
    /// Policy id.
    pub policy_id: Option<PolicyId>,
    /// Name (some endpoints say `policyName`).
    #[serde(alias = "policyName")]
    pub name: Option<String>,
    /// What the policy does.
    pub policy_action_id: Option<PolicyAction>,
    /// Application, for single-application policies.
    pub application_id: Option<ApplicationId>,
    /// Applications.
    pub application_id_list: Option<Vec<ApplicationId>>,
    /// Where it applies (group, computer or organization id).
    pub computer_group_id: Option<ComputerGroupId>,
    /// Where it applies, as text.
    pub applies_to: Option<String>,
    /// Owning organization (policy reads and writes need it in the header).
    pub organization_id: Option<OrganizationId>,
    /// Operating system.
    pub os_type: Option<OsType>,
    /// Enabled.
    pub is_enabled: Option<bool>,
    /// Status (1 enabled).
    pub status: Option<i64>,
    /// Ringfenced.
    pub ringfence: Option<bool>,
    /// Monitor mode (0 inherit, 1 secured, 2 monitor-only). Sources disagree on its type
    /// (reference §3.6: an integer, or a boolean in one client), so both are read: `true` as
    /// 2 (monitor-only), `false` as 0; a numeric string as its number.
    #[serde(default, deserialize_with = "monitor_mode_lenient")]
    pub monitor_mode: Option<i64>,
    /// Write matches to the unified audit.
    pub log_action: Option<bool>,
    /// Last time the policy matched.
    #[serde(default, with = "crate::time::option")]
    pub last_match_date_time: Option<DateTime<Utc>>,
    /// Expiry.
    #[serde(default, with = "crate::time::option")]
    pub end_date: Option<DateTime<Utc>>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Reads `monitorMode` as an integer, a numeric string or a boolean (`true` → 2, `false` → 0).
fn monitor_mode_lenient<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error as _;
    use serde_json::Value;
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(if b { 2 } else { 0 })),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("monitorMode {n} is not an integer"))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| D::Error::custom(format!("monitorMode {s:?} is not an integer"))),
        Some(other) => Err(D::Error::custom(format!(
            "monitorMode {other} is not an integer or a boolean"
        ))),
    }
}
