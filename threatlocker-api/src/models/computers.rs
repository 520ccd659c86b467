use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::{ComputerMode, MaintenanceType, OsType};
use crate::ids::{ComputerGroupId, ComputerId, OrganizationId};

/// A computer (endpoint) row from `ComputerGetByAllParameters`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Computer {
    /// Computer id.
    pub computer_id: Option<ComputerId>,
    /// Computer name.
    pub computer_name: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// Group name.
    pub group: Option<String>,
    /// Group id.
    pub computer_group_id: Option<ComputerGroupId>,
    /// Organization.
    pub organization_id: Option<OrganizationId>,
    /// Organization name, when sent.
    pub organization_name: Option<String>,
    /// Operating system.
    pub os_type: Option<OsType>,
    /// Mode string as the `action` field carries it.
    pub action: Option<String>,
    /// Mode.
    pub mode: Option<ComputerMode>,
    /// Last check-in (note the API's lowercase `i`).
    #[serde(default, rename = "lastCheckin", with = "crate::time::option")]
    pub last_checkin: Option<DateTime<Utc>>,
    /// Agent version.
    #[serde(rename = "threatLockerVersion")]
    pub threatlocker_version: Option<String>,
    /// Service version.
    pub service_version: Option<String>,
    /// Active maintenance type (0 = none).
    pub maintenance_type_id: Option<MaintenanceType>,
    /// End of the active maintenance window.
    #[serde(default, with = "crate::time::option")]
    pub maintenance_end_date: Option<DateTime<Utc>>,
    /// Network isolated.
    pub is_isolated: Option<bool>,
    /// Lockdown.
    pub is_lock_down_mode: Option<bool>,
    /// Locked out.
    pub is_locked_out: Option<bool>,
    /// Tamper protection disabled.
    pub is_tamper_protection_disabled: Option<bool>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}

impl Computer {
    /// The computer's mode: `mode`, else the `action` string, else unknown (`None`).
    pub fn effective_mode(&self) -> Option<ComputerMode> {
        self.mode
            .clone()
            .or_else(|| self.action.as_deref().map(ComputerMode::parse))
    }

    /// The display name: `computerName`, else `hostname`.
    pub fn name(&self) -> Option<&str> {
        self.computer_name.as_deref().or(self.hostname.as_deref())
    }
}
