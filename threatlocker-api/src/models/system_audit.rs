use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::Extra;
use crate::ids::{OrganizationId, SystemAuditId, UserId};

/// A portal (administrator) audit entry from `SystemAuditGetByParameters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SystemAuditEntry {
    /// Entry id (may be null).
    pub system_audit_id: Option<SystemAuditId>,
    /// The administrator (the filter is `emailAddress`, not `username`).
    #[serde(alias = "username")]
    pub email_address: Option<String>,
    /// Administrator user id.
    pub user_id: Option<UserId>,
    /// `Create`, `Delete`, `Logon`, `Logoff`, `Modify`, `Read`.
    pub action: Option<String>,
    /// `Permitted` or `Denied`.
    pub effective_action: Option<String>,
    /// Details (an object on the wire; a bare string is read into `details`).
    #[serde(default, deserialize_with = "details_lenient")]
    pub details: Option<SystemAuditDetails>,
    /// Client IP.
    pub ip_address: Option<String>,
    /// When.
    #[serde(default, with = "crate::time::option")]
    pub date_time: Option<DateTime<Utc>>,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// Object type code.
    pub system_audit_object_type_id: Option<i64>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `details` object of a system audit entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SystemAuditDetails {
    /// Portal page.
    pub page: Option<String>,
    /// Function.
    pub function: Option<String>,
    /// Object acted on.
    #[serde(default, deserialize_with = "crate::de::lenient_string")]
    pub object_id: Option<String>,
    /// Text.
    pub details: Option<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

fn details_lenient<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SystemAuditDetails>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Shape {
        Object(SystemAuditDetails),
        Text(String),
    }
    Ok(match Option::<Shape>::deserialize(d)? {
        None => None,
        Some(Shape::Object(o)) => Some(o),
        Some(Shape::Text(t)) => Some(SystemAuditDetails {
            details: Some(t),
            ..SystemAuditDetails::default()
        }),
    })
}
