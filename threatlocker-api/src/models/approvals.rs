use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::{ApprovalStatus, OsType, RequestType};
use crate::ids::{
    ApplicationId, ApprovalRequestId, ComputerGroupId, ComputerId, OrganizationId, PolicyId,
};

/// An approval request (`ApprovalRequestDto`), as returned by the search and get-by-id calls.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// Request id.
    pub approval_request_id: Option<ApprovalRequestId>,
    /// Organization the request belongs to.
    pub organization_id: Option<OrganizationId>,
    /// Organization name.
    pub organization_name: Option<String>,
    /// Computer the request came from.
    pub computer_id: Option<ComputerId>,
    /// Computer group of that computer.
    pub computer_group_id: Option<ComputerGroupId>,
    /// Computer name.
    pub hostname: Option<String>,
    /// Requesting user.
    pub username: Option<String>,
    /// Requestor display name.
    pub requestor: Option<String>,
    /// Requestor e-mail.
    pub requestor_email_address: Option<String>,
    /// Path of the file (the API calls it `path`, not `fullPath`).
    pub path: Option<String>,
    /// Hash of the file.
    pub hash: Option<String>,
    /// SHA-256 of the file, when sent.
    pub sha256: Option<String>,
    /// Kind of action (`execute`, `elevate`, `install`, ...).
    pub action_type: Option<String>,
    /// Status.
    pub status_id: Option<ApprovalStatus>,
    /// Kind of request.
    pub request_type_id: Option<RequestType>,
    /// The user's reason, base64-encoded as the API sends it.
    pub requestor_reason: Option<String>,
    /// The user's reason decoded from base64 (filled by [`ApprovalRequest::decode_fields`];
    /// the raw value stays in `requestor_reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requestor_reason_decoded: Option<String>,
    /// PSA ticket id recorded on the request.
    pub ticket_id: Option<String>,
    /// Whether someone owns the request.
    pub is_assigned: Option<bool>,
    /// When the request was made.
    #[serde(default, with = "crate::time::option")]
    pub date_time: Option<DateTime<Utc>>,
    /// When the request was actioned.
    #[serde(default, with = "crate::time::option")]
    pub action_date: Option<DateTime<Utc>>,
    /// JSON-encoded action description; copied verbatim into a permit.
    pub json: Option<String>,
    /// Comments.
    pub comments: Option<String>,
    /// Who approved it.
    pub approved_by: Option<String>,
    /// Operating system.
    pub os_type: Option<OsType>,
    /// Policy created by the approval.
    pub policy_id: Option<PolicyId>,
    /// Application the request was added to.
    pub application_id: Option<ApplicationId>,
    /// Portal API URL of the tenant's instance (the instance letter is parsed from it).
    pub portal_api_url: Option<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ApprovalRequest {
    /// Decodes derived fields: `requestorReason` from base64 into
    /// [`ApprovalRequest::requestor_reason_decoded`]. A value that is not valid base64 UTF-8 is
    /// taken as already plain text. The client calls this on every request it returns.
    pub fn decode_fields(&mut self) {
        self.requestor_reason_decoded = self.requestor_reason.as_deref().map(decode_reason);
    }

    /// The instance letter parsed from `portalApiUrl` (`https://portalapi.h.threatlocker.com/..`
    /// → `h`).
    pub fn instance(&self) -> Option<String> {
        let url = self.portal_api_url.as_deref()?;
        let host = url.split("://").nth(1)?.split('/').next()?;
        let mut parts = host.split('.');
        let first = parts.next()?;
        if first.eq_ignore_ascii_case("portalapi") || first.eq_ignore_ascii_case("betaportalapi") {
            parts.next().map(str::to_owned)
        } else {
            None
        }
    }

    /// The action description carried in `json` (or in a `threatLockerActionDto` object), with
    /// both the Swagger's casing (`fullpath`, `policyid`, `SerialNumber`, ...) and the live
    /// API's camelCase accepted. `None` when neither is present or parseable; the raw `json`
    /// string is left untouched for permits.
    pub fn action_details(&self) -> Option<ThreatLockerAction> {
        if let Some(raw) = self.json.as_deref().filter(|j| !j.trim().is_empty()) {
            if let Ok(a) = serde_json::from_str(raw) {
                return Some(a);
            }
        }
        self.extra
            .get("threatLockerActionDto")
            .filter(|v| v.is_object())
            .and_then(|v| ThreatLockerAction::deserialize(v).ok())
    }

    /// The file name part of `path`.
    pub fn file_name(&self) -> Option<&str> {
        let p = self.path.as_deref()?;
        p.rsplit(['\\', '/']).next().filter(|s| !s.is_empty())
    }
}

/// The action an approval request is about (`ThreatLockerActionDto`, also JSON-encoded in
/// the request's `json` field). The Swagger spells some names in lower or Pascal case
/// (`fullpath`, `policyid`, `actionid`, `SerialNumber`, `DomainName`); the live API uses
/// camelCase. Both are read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThreatLockerAction {
    /// Full path of the file.
    #[serde(alias = "fullpath", alias = "FullPath")]
    pub full_path: Option<String>,
    /// Process path.
    #[serde(alias = "processpath")]
    pub process_path: Option<String>,
    /// User.
    pub username: Option<String>,
    /// ThreatLocker hash.
    pub hash: Option<String>,
    /// SHA-256.
    #[serde(alias = "sha256Hash")]
    pub sha256: Option<String>,
    /// Signing certificates.
    #[serde(default, deserialize_with = "crate::de::null_as_empty")]
    pub certs: Vec<super::Certificate>,
    /// Kind of action (`execute`, `elevate`, ...).
    #[serde(alias = "actiontype")]
    pub action_type: Option<String>,
    /// Outcome code.
    #[serde(alias = "actionid")]
    pub action_id: Option<i64>,
    /// Policy.
    #[serde(alias = "policyid")]
    pub policy_id: Option<PolicyId>,
    /// Serial number.
    #[serde(alias = "SerialNumber")]
    pub serial_number: Option<String>,
    /// Domain name.
    #[serde(alias = "DomainName")]
    pub domain_name: Option<String>,
    /// Device type.
    pub device_type: Option<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

fn decode_reason(raw: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_requestor_reason_and_keeps_raw() {
        let mut r: ApprovalRequest = serde_json::from_str(
            r#"{"approvalRequestId":"c3d4","statusId":1,
                "requestorReason":"TmVlZCB0aGlzIGZvciB0aGUgcGF0aWVudCBjYWxs",
                "portalApiUrl":"https://portalapi.h.threatlocker.com/portalapi",
                "path":"c:\\users\\jsmith\\downloads\\zoominstallerfull.exe"}"#,
        )
        .unwrap();
        r.decode_fields();
        assert_eq!(
            r.requestor_reason_decoded.as_deref(),
            Some("Need this for the patient call")
        );
        assert_eq!(
            r.requestor_reason.as_deref(),
            Some("TmVlZCB0aGlzIGZvciB0aGUgcGF0aWVudCBjYWxs")
        );
        assert_eq!(r.instance().as_deref(), Some("h"));
        assert_eq!(r.status_id, Some(ApprovalStatus::Pending));
        assert_eq!(r.file_name(), Some("zoominstallerfull.exe"));
    }

    #[test]
    fn action_details_read_either_casing() {
        let r = ApprovalRequest {
            json: Some(
                r#"{"fullpath":"c:\\x.exe","policyid":"p1","actionid":2,"SerialNumber":"SN1","DomainName":"CONTOSO","certs":[{"sha":"ab","subject":"CN=Zoom"}],"hash":"h1"}"#
                    .into(),
            ),
            ..ApprovalRequest::default()
        };
        let a = r.action_details().unwrap();
        assert_eq!(a.full_path.as_deref(), Some("c:\\x.exe"));
        assert_eq!(a.policy_id.as_ref().map(PolicyId::as_str), Some("p1"));
        assert_eq!(a.action_id, Some(2));
        assert_eq!(a.serial_number.as_deref(), Some("SN1"));
        assert_eq!(a.domain_name.as_deref(), Some("CONTOSO"));
        assert_eq!(a.certs[0].subject.as_deref(), Some("CN=Zoom"));
        let camel = ApprovalRequest {
            json: Some(r#"{"fullPath":"c:\\y.exe","serialNumber":"SN2"}"#.into()),
            ..ApprovalRequest::default()
        };
        assert_eq!(
            camel.action_details().unwrap().serial_number.as_deref(),
            Some("SN2")
        );
        assert_eq!(ApprovalRequest::default().action_details(), None);
    }

    #[test]
    fn plain_text_reason_is_kept_as_is() {
        assert_eq!(decode_reason("not base64!"), "not base64!");
    }
}
