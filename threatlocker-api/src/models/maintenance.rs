use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Extra;
use crate::codes::MaintenanceType;
use crate::ids::MaintenanceModeId;

/// A maintenance-mode window from `MaintenanceModeGetByComputerIdV2`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct MaintenanceWindow {
    /// Window id.
    pub maintenance_mode_id: Option<MaintenanceModeId>,
    /// Mode.
    pub maintenance_type_id: Option<MaintenanceType>,
    /// Mode name.
    pub display_name: Option<String>,
    /// Start.
    #[serde(default, with = "crate::time::option")]
    pub start_date_time: Option<DateTime<Utc>>,
    /// End.
    #[serde(default, with = "crate::time::option")]
    pub end_date_time: Option<DateTime<Utc>>,
    /// Who started it.
    pub added_by: Option<String>,
    /// Who ended it.
    pub ended_by: Option<String>,
    /// Fields this crate does not model.
    #[serde(flatten)]
    pub extra: Extra,
}
