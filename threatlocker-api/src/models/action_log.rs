use chrono::{DateTime, Utc};
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::{ActionOutcome, OsType};
use crate::ids::{ActionLogId, ApplicationId, ComputerId, EActionLogId, OrganizationId, PolicyId};

/// One row of the action log (Unified Audit), as returned by `ActionLogGetByParametersV2`,
/// `ActionLogGetByIdV2` and `ActionLogGetAllForFileHistoryV2`.
///
/// The API's `actionId` is the *outcome* (permit, deny, ...), not the row id: the row ids are
/// [`ActionLogRow::action_log_id`] and [`ActionLogRow::e_action_log_id`].
///
/// `Deserialize` is written by hand (below) rather than derived: a derived impl with
/// `#[serde(flatten)] extra` buffers every field of every row before matching names, which
/// made decoding the largest cost of streaming the action log. The hand-written visitor
/// matches known names directly and keeps only unknown fields as JSON values, with the same
/// result (unknown fields kept, `null` and missing fields read as `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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

impl<'de> Deserialize<'de> for ActionLogRow {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RowVisitor)
    }
}

struct RowVisitor;

impl<'de> Visitor<'de> for RowVisitor {
    type Value = ActionLogRow;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an action-log row object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ActionLogRow, A::Error> {
        let mut row = ActionLogRow::default();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "actionLogId" => row.action_log_id = map.next_value()?,
                "eActionLogId" => row.e_action_log_id = map.next_value()?,
                "batchId" => row.batch_id = map.next_value()?,
                "totalCount" => row.total_count = map.next_value()?,
                "groupByCount" => row.group_by_count = map.next_value()?,
                "organizationId" => row.organization_id = map.next_value()?,
                "organizationName" => row.organization_name = map.next_value()?,
                "computerId" => row.computer_id = map.next_value()?,
                "hostname" => row.hostname = map.next_value()?,
                "serialNumber" => row.serial_number = map.next_value()?,
                "deviceType" => row.device_type = map.next_value()?,
                "osType" => row.os_type = map.next_value()?,
                "dateTime" => row.date_time = map.next_value::<Timestamp>()?.0,
                "dateTimeImported" => row.date_time_imported = map.next_value::<Timestamp>()?.0,
                "username" => row.username = map.next_value()?,
                "fullPath" => row.full_path = map.next_value()?,
                "processPath" => row.process_path = map.next_value()?,
                "processId" => row.process_id = map.next_value()?,
                "processName" => row.process_name = map.next_value()?,
                "parentProcessId" => row.parent_process_id = map.next_value()?,
                "parentProcessName" => row.parent_process_name = map.next_value()?,
                "createdByProcess" => row.created_by_process = map.next_value()?,
                "actionLogCreatedByProcesses" => {
                    row.action_log_created_by_processes = map.next_value()?
                }
                "hash" => row.hash = map.next_value()?,
                "sha256Hash" => row.sha256_hash = map.next_value()?,
                "cert" => row.cert = map.next_value()?,
                "certs" => row.certs = map.next_value()?,
                "certExists" => row.cert_exists = map.next_value()?,
                "certificates" => row.certificates = map.next_value()?,
                "actionType" => row.action_type = map.next_value()?,
                "actionTypeId" => row.action_type_id = map.next_value()?,
                "actionId" => row.action_id = map.next_value()?,
                "action" => row.action = map.next_value()?,
                "effectiveAction" => row.effective_action = map.next_value()?,
                "isMonitorMode" => row.is_monitor_mode = map.next_value()?,
                "monitorMode" => row.monitor_mode = map.next_value()?,
                "optionToRequest" => row.option_to_request = map.next_value()?,
                "policyId" => row.policy_id = map.next_value()?,
                "policyName" => row.policy_name = map.next_value()?,
                "policyLocation" => row.policy_location = map.next_value()?,
                "policyOrganizationId" => row.policy_organization_id = map.next_value()?,
                "applicationId" => row.application_id = map.next_value()?,
                "applicationName" => row.application_name = map.next_value()?,
                "applicationIsBuiltIn" => row.application_is_built_in = map.next_value()?,
                "notes" => row.notes = map.next_value()?,
                "networkDirection" => row.network_direction = map.next_value()?,
                "sourceIPAddress" => row.source_ip_address = map.next_value()?,
                "destinationIPAddress" => row.destination_ip_address = map.next_value()?,
                "destinationPort" => row.destination_port = map.next_value::<LenientString>()?.0,
                "threatSeverityLevel" => row.threat_severity_level = map.next_value()?,
                "data" => row.data = map.next_value()?,
                "size" => row.size = map.next_value()?,
                _ => {
                    let value: serde_json::Value = map.next_value()?;
                    row.extra.insert(key.into_string(), value);
                }
            }
        }
        Ok(row)
    }
}

/// A map key, borrowed from the input when it has no escapes.
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Self::Borrowed(s) => s,
            Self::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Self::Borrowed(s) => s.to_owned(),
            Self::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_identifier(V)
    }
}

/// A lenient optional timestamp (see [`crate::time::option`]).
struct Timestamp(Option<DateTime<Utc>>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::time::option::deserialize(d).map(Timestamp)
    }
}

/// A string that may arrive as a number or boolean (see [`crate::de::lenient_string`]).
struct LenientString(Option<String>);

impl<'de> Deserialize<'de> for LenientString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::de::lenient_string(d).map(LenientString)
    }
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

    #[test]
    fn the_hand_written_deserializer_knows_every_field() {
        // Every name the struct serializes must be matched by the visitor (not fall into
        // `extra`): guards against a field added to the struct but not to the visitor.
        let serialized = serde_json::to_value(ActionLogRow::default()).unwrap();
        let names: Vec<String> = serialized.as_object().unwrap().keys().cloned().collect();
        assert!(names.len() > 40);
        for name in names {
            let one = serde_json::json!({ name.clone(): null });
            let row: ActionLogRow = serde_json::from_value(one).unwrap();
            assert!(row.extra.is_empty(), "{name} is not matched by the visitor");
        }
    }

    #[test]
    fn round_trips_through_serialize() {
        let raw = r#"{"actionLogId":5,"eActionLogId":"e","dateTime":"2026-05-14T13:02:11Z",
            "destinationPort":"443","certificates":[{"subject":"CN=x"}],"zNew":[1,{"a":null}]}"#;
        let row: ActionLogRow = serde_json::from_str(raw).unwrap();
        let again: ActionLogRow =
            serde_json::from_value(serde_json::to_value(&row).unwrap()).unwrap();
        assert_eq!(row, again);
        assert_eq!(again.extra["zNew"], serde_json::json!([1, {"a": null}]));
        // Keys with escapes are matched too.
        let escaped: ActionLogRow = serde_json::from_str(r#"{"host\u006eame":"H"}"#).unwrap();
        assert_eq!(escaped.hostname.as_deref(), Some("H"));
        // Not an object: a clear error.
        assert!(serde_json::from_str::<ActionLogRow>("[1]").is_err());
    }
}
