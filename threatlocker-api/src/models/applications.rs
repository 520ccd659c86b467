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
    pub name: Option<String>,
    /// Name as `ApplicationOnlineDto` rows (matching list, permit DTO) also carry it; read
    /// apart from `name` because those rows send both keys.
    pub application_name: Option<String>,
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
    /// The application's name: `name`, else `applicationName`.
    pub fn display_name(&self) -> Option<&str> {
        self.name.as_deref().or(self.application_name.as_deref())
    }

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

/// The body of `ApplicationGetMatchingList`: which applications does this file match?
///
/// Build it with [`MatchQuery::new`] and the setters; unset strings are sent as `""` (the shape
/// clients send live, reference A.8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MatchQuery {
    /// Operating system (`osType`, 1 Windows by default).
    pub os_type: i32,
    /// ThreatLocker hash.
    pub hash: String,
    /// SHA-256.
    pub sha256: String,
    /// Full path of the file.
    pub path: String,
    /// Process path.
    pub process_path: String,
    /// Signing certificates.
    pub certs: Vec<MatchCert>,
    /// Creating processes.
    pub created_bys: Vec<String>,
    /// File name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Organizations to look in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organization_ids: Vec<OrganizationId>,
    /// The approval request the file comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_request_id: Option<crate::ids::ApprovalRequestId>,
}

/// A certificate in a [`MatchQuery`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MatchCert {
    /// Thumbprint.
    pub sha: String,
    /// Subject.
    pub subject: String,
    /// Whether the certificate validated.
    pub valid_cert: bool,
}

impl MatchCert {
    /// A certificate by subject and thumbprint.
    pub fn new(subject: impl Into<String>, sha: impl Into<String>, valid: bool) -> Self {
        Self {
            sha: sha.into(),
            subject: subject.into(),
            valid_cert: valid,
        }
    }
}

impl MatchQuery {
    /// An empty query for an operating system.
    pub fn new(os_type: OsType) -> Self {
        Self {
            os_type: os_type.code(),
            ..Self::default()
        }
    }

    /// The query for the file of an approval request: its path, hash and (when the row carries
    /// one) SHA-256, and the request id. Windows unless the request says otherwise.
    pub fn for_request(request: &super::ApprovalRequest) -> Self {
        let mut q = Self::new(request.os_type.unwrap_or(OsType::Windows));
        q.path = request.path.clone().unwrap_or_default();
        q.hash = request.hash.clone().unwrap_or_default();
        q.sha256 = request.sha256.clone().unwrap_or_default();
        q.approval_request_id = request.approval_request_id.clone();
        q
    }

    setters! {
        /// Sets the ThreatLocker hash.
        hash(hash: impl Into<String>) = hash.into();

        /// Sets the SHA-256.
        sha256(sha256: impl Into<String>) = sha256.into();

        /// Sets the full path.
        path(path: impl Into<String>) = path.into();

        /// Sets the process path.
        process_path(path: impl Into<String>) = path.into();
    }

    /// Adds a certificate.
    pub fn cert(mut self, cert: MatchCert) -> Self {
        self.certs.push(cert);
        self
    }

    /// Adds a creating process.
    pub fn created_by(mut self, process: impl Into<String>) -> Self {
        self.created_bys.push(process.into());
        self
    }

    /// Sets the approval request.
    pub fn approval_request(mut self, id: impl Into<crate::ids::ApprovalRequestId>) -> Self {
        self.approval_request_id = Some(id.into());
        self
    }

    /// Limits the lookup to these organizations.
    pub fn organizations(mut self, ids: Vec<OrganizationId>) -> Self {
        self.organization_ids = ids;
        self
    }
}
