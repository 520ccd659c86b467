use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::OsType;
use crate::ids::{ApplicationId, OrganizationId};

/// An application (`ApplicationGetByParameters`, `ApplicationGetById`, matching list entries).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Application {
    /// Application id.
    pub application_id: Option<ApplicationId>,
    /// Name.
    #[serde(alias = "applicationName")]
    pub name: Option<String>,
    /// Operating system.
    pub os_type: Option<OsType>,
    /// Whether it is a ThreatLocker built-in (owned by the `master` organization).
    pub is_built_in: Option<bool>,
    /// Computers it was seen on (the API's plural name).
    pub computer_counts: Option<i64>,
    /// Review rating.
    pub review_rating: Option<i64>,
    /// Concern rating.
    pub concern_rating: Option<i64>,
    /// Owning organization.
    pub organization_id: Option<OrganizationId>,
    /// Owning organization's name (`master` for built-ins).
    pub organization_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Status (0 = disabled).
    pub status: Option<i64>,
    /// Hidden.
    pub is_hidden: Option<bool>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Application {
    /// Whether the application is a built-in: `isBuiltIn`, or owned by `master`.
    pub fn is_master_owned(&self) -> bool {
        self.is_built_in == Some(true)
            || self
                .organization_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case("master"))
    }
}

/// ThreatLocker's research on an application (`ApplicationGetResearchDetailsById`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResearchDetails {
    /// Product name.
    pub product_name: Option<String>,
    /// Product description.
    pub product_description: Option<String>,
    /// Concern rating.
    pub concern_rating: Option<i64>,
    /// Business rating.
    pub business_rating: Option<i64>,
    /// Review rating.
    pub review_rating: Option<i64>,
    /// Risk strategy text.
    pub potential_risk_strategy_text: Option<String>,
    /// Remediation text.
    pub remediation_text: Option<String>,
    /// Countries where the code was compiled.
    #[serde(default, deserialize_with = "crate::de::null_as_empty")]
    pub countries_where_code_compiled: Vec<String>,
    /// Research categories (the auto-approve list matches these).
    #[serde(default, deserialize_with = "crate::de::null_as_empty")]
    pub categories: Vec<String>,
    /// Access levels (shape varies).
    pub access_levels: Option<serde_json::Value>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

/// The answer of `ApplicationGetMatchingList`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MatchingList {
    /// Applications the file matches.
    #[serde(default, deserialize_with = "crate::de::null_as_empty")]
    pub matching_applications: Vec<Application>,
    /// Whether anything matched (trust this, not the permit DTO's flag).
    pub has_matching: Option<bool>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
