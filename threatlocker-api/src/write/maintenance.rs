//! Maintenance-mode writes: put a computer into Installation / Learning / Monitor-only mode for a
//! window, and end a window early.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::codes::MaintenanceType;
use crate::error::{Error, Result};
use crate::ids::{ApplicationId, ComputerId, MaintenanceModeId, OrganizationId};
use crate::request::{Method, PreparedRequest};
use crate::time::format_request_date;

#[cfg(feature = "client")]
use crate::handles::Maintenance;

/// Path of `MaintenanceModeInsert`.
pub const MAINTENANCE_INSERT_PATH: &str = "/portalapi/MaintenanceMode/MaintenanceModeInsert";
/// Path of `MaintenanceModeEndById`.
pub const MAINTENANCE_END_PATH: &str = "/portalapi/MaintenanceMode/MaintenanceModeEndById";

/// What a learning/installation window does with what it learns.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MaintenanceApplication {
    /// Nothing (`automaticApplication: false`, type 0).
    #[default]
    None,
    /// Automatic applications (`automaticApplicationType`: 1 per computer, 2 per group,
    /// 3 system).
    Automatic(i32),
    /// Learn into a new application with this name (`createNewApplication` + `newApplication`).
    New {
        /// Application name.
        name: String,
        /// `appliesToId` of the new application's policy, if any.
        applies_to_id: Option<String>,
        /// Create the application only, without a policy.
        create_application_only: bool,
    },
    /// Learn into an existing application (`useExistingApplication` + `existingApplication`).
    Existing {
        /// Application id.
        id: ApplicationId,
        /// Application name.
        name: Option<String>,
    },
}

/// A maintenance window to start (`MaintenanceModeInsert`, reference Appendix A.10).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceRequest {
    /// The computer.
    pub computer_id: ComputerId,
    /// The mode (Installation, Learning, Monitor Only, ...).
    pub maintenance_type: MaintenanceType,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// End (UTC).
    pub end: DateTime<Utc>,
    /// The computer's local "now" (`computerDateTime`); `None` sends `start`.
    pub computer_date_time: Option<DateTime<Utc>>,
    /// Applies to all users (default true); otherwise `users`.
    pub all_users: bool,
    /// Users (`DOMAIN\\user`) when not all users.
    pub users: Vec<String>,
    /// Return the computer to secured at the end (`permitEnd`, default true).
    pub permit_end: bool,
    /// What happens to what is learned.
    pub application: MaintenanceApplication,
    /// Ticket number.
    pub ticket_number: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Organization to scope the call to; `None` uses the client's.
    pub organization: Option<OrganizationId>,
}

impl MaintenanceRequest {
    /// A window for all users that re-secures the computer at its end.
    pub fn new(
        computer_id: impl Into<ComputerId>,
        maintenance_type: MaintenanceType,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Self {
        Self {
            computer_id: computer_id.into(),
            maintenance_type,
            start,
            end,
            computer_date_time: None,
            all_users: true,
            users: Vec::new(),
            permit_end: true,
            application: MaintenanceApplication::None,
            ticket_number: None,
            notes: None,
            organization: None,
        }
    }
    /// Restricts the window to these users.
    pub fn users(mut self, users: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.users = users.into_iter().map(Into::into).collect();
        self.all_users = false;
        self
    }
    setters! {
        /// Sets the ticket number.
        ticket_number(t: impl Into<String>) = Some(t.into());

        /// Sets the notes.
        notes(n: impl Into<String>) = Some(n.into());

        /// Sets what happens to what is learned.
        application(a: MaintenanceApplication) = a;

        /// Sets whether the computer is re-secured at the end.
        permit_end(on: bool) = on;

        /// Sets the computer's local time.
        computer_date_time(at: DateTime<Utc>) = Some(at);

        /// Scopes the call to an organization.
        organization(org: impl Into<OrganizationId>) = Some(org.into());
    }

    /// The request body.
    pub fn to_body(&self) -> Result<Value> {
        if self.computer_id.as_str().trim().is_empty() {
            return Err(Error::InvalidRequest(
                "MaintenanceRequest.computer_id is empty".into(),
            ));
        }
        if self.end <= self.start {
            return Err(Error::InvalidRequest(format!(
                "maintenance window ends ({}) before it starts ({})",
                format_request_date(self.end),
                format_request_date(self.start)
            )));
        }
        if !self.all_users && self.users.is_empty() {
            return Err(Error::InvalidRequest(
                "MaintenanceRequest: all_users is false but no users were given".into(),
            ));
        }
        let (automatic, automatic_type) = match &self.application {
            MaintenanceApplication::Automatic(t) => {
                if !(1..=3).contains(t) {
                    return Err(Error::InvalidRequest(format!(
                        "automaticApplicationType {t} is not 1 (computer), 2 (group) or 3 (system)"
                    )));
                }
                (true, *t)
            }
            _ => (false, 0),
        };
        let mut m = Map::new();
        m.insert("computerId".into(), json!(self.computer_id));
        m.insert("maintenanceTypeId".into(), json!(self.maintenance_type));
        m.insert(
            "startDateTime".into(),
            json!(format_request_date(self.start)),
        );
        m.insert("endDateTime".into(), json!(format_request_date(self.end)));
        m.insert(
            "computerDateTime".into(),
            json!(format_request_date(
                self.computer_date_time.unwrap_or(self.start)
            )),
        );
        m.insert("allUsers".into(), json!(self.all_users));
        m.insert("usersList".into(), json!(self.users));
        m.insert("permitEnd".into(), json!(self.permit_end));
        m.insert("automaticApplication".into(), json!(automatic));
        m.insert("automaticApplicationType".into(), json!(automatic_type));
        m.insert("createNewApplication".into(), json!(false));
        m.insert("useExistingApplication".into(), json!(false));
        match &self.application {
            MaintenanceApplication::New {
                name,
                applies_to_id,
                create_application_only,
            } => {
                if name.trim().is_empty() {
                    return Err(Error::InvalidRequest(
                        "MaintenanceApplication::New needs a name".into(),
                    ));
                }
                m.insert("createNewApplication".into(), json!(true));
                m.insert(
                    "newApplication".into(),
                    json!({
                        "applicationId": null,
                        "applicationName": name.trim(),
                        "createApplicationOnly": create_application_only,
                        "appliesToId": applies_to_id,
                    }),
                );
            }
            MaintenanceApplication::Existing { id, name } => {
                m.insert("useExistingApplication".into(), json!(true));
                m.insert(
                    "existingApplication".into(),
                    json!({ "applicationId": id, "name": name }),
                );
            }
            MaintenanceApplication::None | MaintenanceApplication::Automatic(_) => {}
        }
        m.insert(
            "ticketNumber".into(),
            json!(self.ticket_number.as_deref().unwrap_or("")),
        );
        m.insert("notes".into(), json!(self.notes.as_deref().unwrap_or("")));
        Ok(Value::Object(m))
    }
}

/// Ends a maintenance window early (`PATCH MaintenanceModeEndById`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaintenanceEnd {
    /// The computer.
    pub computer_id: ComputerId,
    /// The window (from `MaintenanceModeGetByComputerIdV2`).
    pub maintenance_mode_id: MaintenanceModeId,
    /// The window's mode (must match the active mode).
    pub maintenance_type: MaintenanceType,
    /// `appliesToType` (0 application, 1 computer, 2 group, 3 system), sent only when set.
    pub applies_to_type: Option<i32>,
    /// Organization to scope the call to; `None` uses the client's.
    pub organization: Option<OrganizationId>,
}

impl MaintenanceEnd {
    /// Ends `maintenance_mode_id` on `computer_id`.
    pub fn new(
        computer_id: impl Into<ComputerId>,
        maintenance_mode_id: impl Into<MaintenanceModeId>,
        maintenance_type: MaintenanceType,
    ) -> Self {
        Self {
            computer_id: computer_id.into(),
            maintenance_mode_id: maintenance_mode_id.into(),
            maintenance_type,
            applies_to_type: None,
            organization: None,
        }
    }
    setters! {
        /// Sets `appliesToType`.
        applies_to_type(t: i32) = Some(t);

        /// Scopes the call to an organization.
        organization(org: impl Into<OrganizationId>) = Some(org.into());
    }
}

/// The insert write (reference A.10).
pub fn prepare_maintenance_insert(req: &MaintenanceRequest) -> Result<PreparedRequest> {
    let r = PreparedRequest::write(Method::Post, MAINTENANCE_INSERT_PATH, Some(req.to_body()?));
    Ok(match &req.organization {
        Some(o) => r.with_organization(o.clone()),
        None => r,
    })
}

/// The end write (reference A.10): `{computerId, maintenanceModeId, maintenanceTypeId}`
/// (+ `appliesToType` when set).
pub fn prepare_maintenance_end(end: &MaintenanceEnd) -> Result<PreparedRequest> {
    if end.computer_id.as_str().trim().is_empty()
        || end.maintenance_mode_id.as_str().trim().is_empty()
    {
        return Err(Error::InvalidRequest(
            "MaintenanceEnd needs a computer id and a maintenance mode id".into(),
        ));
    }
    let mut body = json!({
        "computerId": end.computer_id,
        "maintenanceModeId": end.maintenance_mode_id,
        "maintenanceTypeId": end.maintenance_type,
    });
    if let (Some(t), Some(m)) = (end.applies_to_type, body.as_object_mut()) {
        m.insert("appliesToType".into(), json!(t));
    }
    let r = PreparedRequest::write(Method::Patch, MAINTENANCE_END_PATH, Some(body));
    Ok(match &end.organization {
        Some(o) => r.with_organization(o.clone()),
        None => r,
    })
}

#[cfg(feature = "client")]
impl Maintenance {
    /// Starts a maintenance window (`MaintenanceModeInsert`). Not retried; an unknown outcome
    /// is [`Error::OutcomeUnknown`] — read the computer's maintenance history before trying
    /// again.
    pub async fn insert(&self, req: &MaintenanceRequest) -> Result<()> {
        let r = prepare_maintenance_insert(req)?;
        self.client.execute(&r).await.map(drop).map_err(|e| {
            super::classify_write_error(
                || format!("maintenance-mode insert for computer {}", req.computer_id),
                e,
            )
        })
    }

    /// Ends a maintenance window early (`PATCH MaintenanceModeEndById`).
    pub async fn end(&self, end: &MaintenanceEnd) -> Result<()> {
        let r = prepare_maintenance_end(end)?;
        self.client.execute(&r).await.map(drop).map_err(|e| {
            super::classify_write_error(
                || format!("end of maintenance window {}", end.maintenance_mode_id),
                e,
            )
        })
    }
}
