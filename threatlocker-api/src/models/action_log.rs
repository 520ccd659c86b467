use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::{ActionOutcome, OsType};
use crate::ids::{ActionLogId, ApplicationId, ComputerId, EActionLogId, OrganizationId, PolicyId};

/// One row of the action log (Unified Audit), as returned by `ActionLogGetByParametersV2`,
/// `ActionLogGetByIdV2` and `ActionLogGetAllForFileHistoryV2`.
///
/// The API's `actionId` is the *outcome* (permit, deny, ...), not the row id: the row ids are
/// [`ActionLogRow::action_log_id`] and [`ActionLogRow::e_action_log_id`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ActionLogRow {
    /// Numeric (V1) row id.
    pub action_log_id: Option<ActionLogId>,
    /// String row id; the one `ActionLogGetByIdV2` needs.
    #[serde(rename = "eActionLogId")]
    pub e_action_log_id: Option<EActionLogId>,
    /// Batch id.
    pub batch_id: Option<String>,
    /// Total count, when the request asked for it.
    pub total_count: Option<i64>,
    /// Rows folded into this one on grouped searches.
    pub group_by_count: Option<i64>,
    /// Owning organization.
    pub organization_id: Option<OrganizationId>,
    /// Owning organization's name.
    pub organization_name: Option<String>,
    /// Computer the action happened on.
    pub computer_id: Option<ComputerId>,
    /// Computer name.
    pub hostname: Option<String>,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Device type.
    pub device_type: Option<String>,
    /// Operating system.
    pub os_type: Option<OsType>,
    /// When the action happened (UTC).
    #[serde(default, with = "crate::time::option")]
    pub date_time: Option<DateTime<Utc>>,
    /// When the row was imported (UTC).
    #[serde(default, with = "crate::time::option")]
    pub date_time_imported: Option<DateTime<Utc>>,
    /// User, often `DOMAIN\user`.
    pub username: Option<String>,
    /// Full path of the file acted on.
    pub full_path: Option<String>,
    /// Path of the process that performed the action (null on network denies).
    pub process_path: Option<String>,
    /// Process id.
    pub process_id: Option<i64>,
    /// Process name.
    pub process_name: Option<String>,
    /// Parent process id.
    pub parent_process_id: Option<i64>,
    /// Parent process name.
    pub parent_process_name: Option<String>,
    /// The process that created the file.
    pub created_by_process: Option<String>,
    /// Creating processes with counts.
    pub action_log_created_by_processes: Option<Vec<CreatedByProcess>>,
    /// ThreatLocker's hash of the file.
    pub hash: Option<String>,
    /// SHA-256 of the file.
    pub sha256_hash: Option<String>,
    /// Signer subject text.
    pub cert: Option<String>,
    /// Signer subjects.
    pub certs: Option<Vec<String>>,
    /// Whether the file is signed.
    pub cert_exists: Option<bool>,
    /// Certificates.
    pub certificates: Option<Vec<Certificate>>,
    /// Kind of action (`execute`, `install`, `network`, `registry`, ...).
    pub action_type: Option<String>,
    /// Numeric kind of action.
    pub action_type_id: Option<i32>,
    /// Outcome (permit, deny, ...).
    pub action_id: Option<ActionOutcome>,
    /// Outcome text.
    pub action: Option<String>,
    /// Effective outcome text.
    pub effective_action: Option<String>,
    /// `true` for a deny that was only observed (monitor-only / learning computers).
    pub is_monitor_mode: Option<bool>,
    /// Monitor mode text.
    pub monitor_mode: Option<String>,
    /// Whether the user was offered the request prompt.
    pub option_to_request: Option<bool>,
    /// Policy that handled the event.
    pub policy_id: Option<PolicyId>,
    /// Policy name.
    pub policy_name: Option<String>,
    /// Where the policy lives.
    pub policy_location: Option<String>,
    /// Organization owning the policy.
    pub policy_organization_id: Option<OrganizationId>,
    /// Application matched.
    pub application_id: Option<ApplicationId>,
    /// Application name.
    pub application_name: Option<String>,
    /// Whether the application is a ThreatLocker built-in.
    pub application_is_built_in: Option<bool>,
    /// Notes.
    pub notes: Option<String>,
    /// Network direction code.
    pub network_direction: Option<i32>,
    /// Source IP (network rows).
    #[serde(rename = "sourceIPAddress")]
    pub source_ip_address: Option<String>,
    /// Destination IP (network rows).
    #[serde(rename = "destinationIPAddress")]
    pub destination_ip_address: Option<String>,
    /// Destination port (network rows); a string or a number on the wire.
    #[serde(default, deserialize_with = "crate::de::lenient_string")]
    pub destination_port: Option<String>,
    /// Threat severity text.
    pub threat_severity_level: Option<String>,
    /// Free data (e.g. a command line or registry value on some rows).
    pub data: Option<String>,
    /// File size in bytes.
    pub size: Option<i64>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl ActionLogRow {
    /// The key that identifies the row across pages and runs: `actionLogId`, else
    /// `eActionLogId`.
    pub fn dedupe_key(&self) -> Option<String> {
        if let Some(id) = self.action_log_id {
            return Some(id.to_string());
        }
        self.e_action_log_id.as_ref().map(|e| format!("e:{e}"))
    }

    /// The file name part of `fullPath` (either separator), if any.
    pub fn file_name(&self) -> Option<&str> {
        let p = self.full_path.as_deref()?;
        p.rsplit(['\\', '/']).next().filter(|s| !s.is_empty())
    }

    /// Whether this row is an enforced block: outcome 2 or 3 and not monitor mode.
    pub fn is_block(&self) -> bool {
        self.action_id.is_some_and(ActionOutcome::is_deny) && self.is_monitor_mode != Some(true)
    }

    /// Whether this row is an audit-only (would-have-been-denied) observation.
    pub fn is_audit_only(&self) -> bool {
        self.is_monitor_mode == Some(true)
    }
}

/// A creating process with the number of rows it accounts for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CreatedByProcess {
    /// Creating process path.
    pub created_by_process: Option<String>,
    /// Count.
    pub count: Option<i64>,
}

/// A code-signing certificate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Certificate {
    /// Subject.
    pub subject: Option<String>,
    /// Thumbprint.
    pub sha: Option<String>,
    /// Raw value.
    pub value: Option<String>,
    /// Whether the certificate validated.
    pub valid_cert: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_reference_example_row() {
        let row: ActionLogRow = serde_json::from_str(
            r#"{
            "actionLogId": 81234567890,
            "eActionLogId": "6f1c2d3e-4b5a-4c7d-9e8f-0a1b2c3d4e5f",
            "organizationId": "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d",
            "hostname": "WS-FRONTDESK-02",
            "username": "CONTOSO\\jsmith",
            "dateTime": "2026-05-14T13:02:11.483Z",
            "fullPath": "c:\\users\\jsmith\\downloads\\anydesk.exe",
            "sha256Hash": "2cf24dba",
            "actionId": 2,
            "isMonitorMode": false,
            "applicationName": null,
            "destinationPort": 443,
            "someNewField": {"x": 1}
        }"#,
        )
        .unwrap();
        assert_eq!(row.action_log_id, Some(ActionLogId(81_234_567_890)));
        assert_eq!(row.action_id, Some(ActionOutcome::Deny));
        assert!(row.is_block());
        assert_eq!(row.file_name(), Some("anydesk.exe"));
        assert_eq!(row.destination_port.as_deref(), Some("443"));
        assert!(row.extra.contains_key("someNewField"));
    }
}
