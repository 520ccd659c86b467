use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::ids::OrganizationId;

/// An organization (tenant) from `OrganizationGetChildOrganizationsByParameters` or the
/// accessible-organization list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Organization {
    /// Organization id.
    pub organization_id: Option<OrganizationId>,
    /// Slug-like name.
    pub name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Parent organization, when the endpoint reports it.
    pub parent_id: Option<OrganizationId>,
    /// When it was added.
    #[serde(default, with = "crate::time::option")]
    pub date_added: Option<DateTime<Utc>>,
    /// Number of computers.
    pub computer_count: Option<i64>,
    /// Nested child organizations, when the endpoint nests them.
    #[serde(
        default,
        alias = "organizationHierarchyDtos",
        alias = "childOrganizations",
        deserialize_with = "crate::de::null_as_empty"
    )]
    pub children: Vec<Organization>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Organization {
    /// The best name to show: `displayName`, else `name`.
    pub fn label(&self) -> Option<&str> {
        self.display_name.as_deref().or(self.name.as_deref())
    }

    /// This organization and every nested child, depth first.
    pub fn flatten(&self) -> Vec<&Organization> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.flatten());
        }
        out
    }
}

/// An entry of a dropdown-style list (`{label, value}`), as several organization and
/// application list endpoints return.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DropdownOption {
    /// Label.
    pub label: Option<String>,
    /// Value (usually a GUID).
    #[serde(default, deserialize_with = "crate::de::lenient_string")]
    pub value: Option<String>,
    /// Numeric value.
    pub numeric_value: Option<i64>,
    /// Entity type.
    #[serde(default, deserialize_with = "crate::de::lenient_string")]
    pub entity_type: Option<String>,
    /// Parent id.
    #[serde(default, deserialize_with = "crate::de::lenient_string")]
    pub parent_id: Option<String>,
    /// Disabled.
    pub disabled: Option<bool>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
