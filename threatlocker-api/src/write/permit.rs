//! Permitting (approving) an approval request: the options, the pure body builder and the
//! plan/outcome types.
//!
//! The permit body is the server's own `PermitApplicationDto` (fetched with
//! `ApprovalRequestGetPermitApplicationById`) kept as a [`serde_json::Value`] and patched key by
//! key: every key the server sent is sent back, `null`s included (stripping them makes the API
//! answer an opaque 500), and `approvalRequest.json` is copied verbatim because the server
//! rebuilds the request's context from it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::codes::ApprovalStatus;
use crate::error::{Error, Result};
use crate::ids::{ApplicationId, ApprovalRequestId, ComputerGroupId, OrganizationId};
use crate::models::{Application, ApprovalRequest, MatchingList};
use crate::request::{Method, PreparedRequest};
use crate::time::format_request_date;

/// Path of the permit endpoint.
pub const PERMIT_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestPermitApplication";
/// Path of the take-ownership endpoint.
pub const TAKE_OWNERSHIP_PATH: &str =
    "/portalapi/ApprovalRequest/ApprovalRequestUpdateForTakeOwnership";
const DTO_ENDPOINT: &str = "GET /portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById";

/// Which application the permitted file is added to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ApplicationChoice {
    /// The best entry of `ApplicationGetMatchingList`: a tenant-owned application is preferred
    /// over a ThreatLocker built-in (`organizationName: "master"`).
    #[default]
    Matching,
    /// A specific entry of the matching list.
    MatchingId(ApplicationId),
    /// An existing application (for example one found with `ApplicationGetForApplicationOptions`).
    Existing(ApplicationId),
    /// A new application with this name.
    New(String),
}

/// Where the permit applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PermitScope {
    /// Only the requesting computer. Sent as all three `policyLevel` flags `false` (the API
    /// infers the computer from `computerId`; `toComputer: true` is refused with a 417).
    #[default]
    Computer,
    /// A computer group (`toComputerGroup` + `selectedComputerGroup`).
    ComputerGroup(ComputerGroupId),
    /// The request's whole organization (`toEntireOrganization`). Required for built-in
    /// applications.
    EntireOrganization,
}

/// The kind of rule the permit creates (`policyConditions.ruleId`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PermitRule {
    /// A permanent permit policy (`ruleId` 0).
    #[default]
    Permanent,
    /// A timed Installation Mode window, one hour (`ruleId` 1).
    InstallationMode,
    /// A timed Learning Mode window, one hour (`ruleId` 2).
    LearningMode,
    /// A timed Monitor Mode window, one hour (`ruleId` 3).
    MonitorMode,
}

impl PermitRule {
    /// The `ruleId` sent on the wire.
    pub fn rule_id(self) -> i32 {
        match self {
            Self::Permanent => 0,
            Self::InstallationMode => 1,
            Self::LearningMode => 2,
            Self::MonitorMode => 3,
        }
    }
}

/// Administrator notes stored with the permit (`adminNotes`, and the matching
/// `approvalRequest` fields). Unset fields keep what the server sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct AdminNotes {
    /// Ticket reference (`adminNotes.ticket`, `approvalRequest.ticketId`).
    pub ticket: Option<String>,
    /// Requestor's e-mail (`adminNotes.requestorEmail`, `approvalRequest.requestorEmailAddress`).
    pub requestor_email: Option<String>,
    /// Comments (`adminNotes.comments`, `approvalRequest.comments`).
    pub comments: Option<String>,
}

impl AdminNotes {
    setters! {
        /// Sets the ticket reference.
        ticket(ticket: impl Into<String>) = Some(ticket.into());

        /// Sets the requestor's e-mail.
        requestor_email(email: impl Into<String>) = Some(email.into());

        /// Sets the comments.
        comments(comments: impl Into<String>) = Some(comments.into());
    }
}

/// The message sent back to the requester (`responseSubject`, `responseReason`,
/// `notifyOnResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PermitResponse {
    /// Subject.
    pub subject: Option<String>,
    /// Body text.
    pub reason: Option<String>,
    /// Whether to notify the requester.
    pub notify: bool,
}

impl PermitResponse {
    /// A response with a subject and a reason that notifies the requester.
    pub fn new(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            subject: Some(subject.into()),
            reason: Some(reason.into()),
            notify: true,
        }
    }
    setters! {
        /// Sets whether the requester is notified.
        notify(notify: bool) = notify;
    }
}

/// How to permit an approval request. `PermitOptions::default()` permits into the best matching
/// application, for this computer only, as a permanent rule, with no expiry.
///
/// ```
/// use threatlocker_api::{PermitOptions, PermitScope, PermitRule, AdminNotes};
/// let opts = PermitOptions::default()
///     .scope(PermitScope::EntireOrganization)
///     .rule(PermitRule::Permanent)
///     .admin_notes(AdminNotes::default().ticket("PSA-48213"));
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct PermitOptions {
    /// Which application the file goes into.
    pub application: ApplicationChoice,
    /// Where the permit applies.
    pub scope: PermitScope,
    /// Permanent rule or a timed mode.
    pub rule: PermitRule,
    /// When the policy expires (`policyExpirationDate`); `None` = never.
    pub expires_at: Option<DateTime<Utc>>,
    /// Ringfence the application (`isRingfenced`); `None` keeps the server's value.
    pub ringfence: Option<bool>,
    /// Administrator notes.
    pub admin_notes: Option<AdminNotes>,
    /// Message to the requester; `None` keeps the server's values.
    pub response: Option<PermitResponse>,
    /// Further edits applied last, as (JSON pointer, value), e.g. `("/elevationStatus", 1)`.
    pub overrides: Vec<(String, Value)>,
}

impl PermitOptions {
    /// Same as `default()`.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        /// Sets the application choice.
        application(choice: ApplicationChoice) = choice;

        /// Sets the scope.
        scope(scope: PermitScope) = scope;

        /// Sets the rule kind.
        rule(rule: PermitRule) = rule;

        /// Sets the expiry.
        expires_at(at: DateTime<Utc>) = Some(at);

        /// Sets ringfencing on or off.
        ringfence(on: bool) = Some(on);

        /// Sets the administrator notes.
        admin_notes(notes: AdminNotes) = Some(notes);

        /// Sets the response to the requester.
        response(response: PermitResponse) = Some(response);
    }
    /// Sets any key of the body by JSON pointer (applied after every other edit). The parent of
    /// the pointer must exist in the body.
    pub fn set_field(mut self, pointer: impl Into<String>, value: impl Into<Value>) -> Self {
        self.overrides.push((pointer.into(), value.into()));
        self
    }

    /// Checks what can be checked without the server's data.
    pub fn validate(&self) -> Result<()> {
        if let ApplicationChoice::New(name) = &self.application {
            if name.trim().is_empty() {
                return Err(Error::InvalidRequest(
                    "ApplicationChoice::New needs a non-empty name (the API answers 417 \"Must enter a name for a new application\")".into(),
                ));
            }
        }
        match &self.application {
            ApplicationChoice::MatchingId(id) | ApplicationChoice::Existing(id)
                if id.as_str().trim().is_empty() =>
            {
                return Err(Error::InvalidRequest("the application id is empty".into()));
            }
            _ => {}
        }
        if let PermitScope::ComputerGroup(g) = &self.scope {
            if g.as_str().trim().is_empty() {
                return Err(Error::InvalidRequest(
                    "PermitScope::ComputerGroup needs a computer group id".into(),
                ));
            }
        }
        for (pointer, _) in &self.overrides {
            if !pointer.starts_with('/') {
                return Err(Error::InvalidRequest(format!(
                    "override key {pointer:?} is not a JSON pointer (it must start with '/')"
                )));
            }
        }
        Ok(())
    }
}

/// What `plan_permit` found and would send: the reads are done, no write was sent.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PermitPlan {
    /// The approval request as read before planning.
    pub request: ApprovalRequest,
    /// The matching list the choice was made from.
    pub matching: MatchingList,
    /// The writes, in order: take ownership, then the permit POST.
    pub requests: Vec<PreparedRequest>,
}

impl PermitPlan {
    /// The permit POST.
    pub fn permit_request(&self) -> Option<&PreparedRequest> {
        self.requests.iter().find(|r| r.path == PERMIT_PATH)
    }

    /// The permit body.
    pub fn permit_body(&self) -> Option<&Value> {
        self.permit_request().and_then(|r| r.body.as_ref())
    }
}

impl fmt::Display for PermitPlan {
    /// The dry-run view: every write that would be sent, in order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requests.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// What a permit did.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PermitOutcome {
    /// The request.
    pub request_id: ApprovalRequestId,
    /// Whether a read-back showed the request Approved.
    pub verified: bool,
    /// Whether the permit POST's answer was lost (timeout, reset, 5xx) and the read-back then
    /// showed it had taken effect.
    pub recovered_after_unknown: bool,
    /// The request's status read back after the permit, when the read succeeded.
    pub status_after: Option<ApprovalStatus>,
    /// The permit POST's response body, when there was one (its shape is undocumented).
    pub response: Option<Value>,
}

/// The take-ownership write: `POST ApprovalRequestUpdateForTakeOwnership {approvalRequestId}`.
pub fn prepare_take_ownership(id: &ApprovalRequestId) -> PreparedRequest {
    PreparedRequest::write(
        Method::Post,
        TAKE_OWNERSHIP_PATH,
        Some(json!({ "approvalRequestId": id })),
    )
}

/// The permit write: `POST ApprovalRequestPermitApplication` with a body from
/// [`build_permit_body`].
pub fn prepare_permit(body: Value) -> PreparedRequest {
    PreparedRequest::write(Method::Post, PERMIT_PATH, Some(body))
}

/// What a status read after a lost permit answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) enum PermitRecovery {
    /// The permit took effect.
    Permitted,
    /// Still waiting: the permit may or may not arrive; do not post again.
    Unknown,
    /// Someone (or something) actioned it otherwise.
    ActionedOtherwise(ApprovalStatus),
}

/// Decides what a status read after a lost permit answer means (pure; table-tested).
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn permit_recovery(status: Option<ApprovalStatus>) -> PermitRecovery {
    match status {
        Some(ApprovalStatus::Approved) => PermitRecovery::Permitted,
        Some(s) if s.is_actioned() => PermitRecovery::ActionedOtherwise(s),
        _ => PermitRecovery::Unknown,
    }
}

/// Builds the permit body: the fetched `PermitApplicationDto` with every key kept (explicit
/// `null`s included) and these edits:
///
/// - `approvalRequest`: `approvalRequestId`, and `json` copied verbatim from the request;
///   admin notes copied into `comments` / `ticketId` / `requestorEmailAddress`;
/// - `userInstance` = the instance letter from the request's `portalApiUrl`;
/// - `isFromApproval` and `hasOriginApprovalCenter` = `true`; `actionType` from the request with
///   `isElevationRequest` / `isExecutionRequest` matching it;
/// - `computerId`, `computerGroupId`, `organizationId`, `osType` filled from the request where
///   the DTO has none; `organizationIds` `[]` when missing; `fileDetails.fullPath` filled from
///   the request's `path` when missing;
/// - `matchingApplications` per [`ApplicationChoice`] (unused objects `null`, unused flags
///   `false`), `hasMatchingApplication` from the matching list's `hasMatching`;
/// - `policyConditions.ruleId` per [`PermitRule`]; `policyLevel` per [`PermitScope`];
///   `policyExpirationDate`; `isRingfenced`; `adminNotes`; the response fields;
/// - finally the options' JSON-pointer overrides.
///
/// Refuses (before anything is sent) a built-in (`master`-owned) application without
/// [`PermitScope::EntireOrganization`]: the API would answer with a misleading
/// `401 "Missing the '' permission"`.
pub fn build_permit_body(
    dto: &Value,
    request: &ApprovalRequest,
    matching: &MatchingList,
    opts: &PermitOptions,
) -> Result<Value> {
    opts.validate()?;
    let Value::Object(src) = dto else {
        return Err(dto_error(".", "expected a JSON object"));
    };
    let mut body = src.clone();
    let request_id = request
        .approval_request_id
        .as_ref()
        .filter(|id| !id.as_str().is_empty())
        .ok_or_else(|| {
            Error::InvalidRequest("the approval request has no approvalRequestId".into())
        })?;

    // approvalRequest: id, verbatim json, notes.
    let mut ar = match body.get("approvalRequest") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(dto_error("approvalRequest", "expected an object")),
    };
    ar.insert("approvalRequestId".into(), json!(request_id));
    match (&request.json, ar.get("json")) {
        (Some(j), _) => {
            ar.insert("json".into(), Value::String(j.clone()));
        }
        (None, Some(Value::String(_))) => {}
        (None, _) => {
            return Err(Error::InvalidRequest(format!(
                "approval request {request_id} has no `json` (neither the request nor the permit DTO's approvalRequest.json); the API needs it verbatim to permit"
            )))
        }
    }
    for key in [
        "comments",
        "ticketId",
        "requestorEmailAddress",
        "ticketApprovalManager",
    ] {
        ar.entry(key).or_insert(Value::Null);
    }
    if let Some(notes) = &opts.admin_notes {
        if let Some(c) = &notes.comments {
            ar.insert("comments".into(), json!(c));
        }
        if let Some(t) = &notes.ticket {
            ar.insert("ticketId".into(), json!(t));
        }
        if let Some(e) = &notes.requestor_email {
            ar.insert("requestorEmailAddress".into(), json!(e));
        }
    }
    body.insert("approvalRequest".into(), Value::Object(ar));

    // Instance letter.
    let instance = request
        .instance()
        .or_else(|| non_empty_str(body.get("userInstance")).map(str::to_owned))
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "cannot tell the portal instance for approval request {request_id}: it has no portalApiUrl and the DTO no userInstance (the permit needs userInstance)"
            ))
        })?;
    body.insert("userInstance".into(), json!(instance));
    body.insert("isFromApproval".into(), json!(true));
    body.insert("hasOriginApprovalCenter".into(), json!(true));

    // Action type and the two flags that must agree with it.
    let action = request
        .action_type
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| non_empty_str(body.get("actionType")).map(str::to_owned))
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "approval request {request_id} has no actionType (execute, elevate, ...)"
            ))
        })?;
    let elevation =
        action.eq_ignore_ascii_case("elevate") || action.eq_ignore_ascii_case("elevation");
    body.insert("actionType".into(), json!(action));
    body.insert("isElevationRequest".into(), json!(elevation));
    body.insert("isExecutionRequest".into(), json!(!elevation));

    // Where it came from: keep the DTO's values, fill gaps from the request.
    fill_if_null(&mut body, "computerId", json!(request.computer_id));
    fill_if_null(
        &mut body,
        "computerGroupId",
        json!(request.computer_group_id),
    );
    fill_if_null(&mut body, "organizationId", json!(request.organization_id));
    fill_if_null(&mut body, "osType", json!(request.os_type));
    fill_if_null(&mut body, "organizationIds", json!([]));

    let mut file = match body.get("fileDetails") {
        Some(Value::Object(m)) => m.clone(),
        Some(Value::Null) | None => Map::new(),
        Some(_) => return Err(dto_error("fileDetails", "expected an object")),
    };
    if non_empty_str(file.get("fullPath")).is_none() {
        let path = request
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                "approval request {request_id} has no file path (fileDetails.fullPath is required)"
            ))
            })?;
        file.insert("fullPath".into(), json!(path));
    }
    body.insert("fileDetails".into(), Value::Object(file));

    // The application.
    let chosen = choose_application(&body, matching, &opts.application)?;
    if let Some((name, true)) = chosen.built_in() {
        if opts.scope != PermitScope::EntireOrganization {
            return Err(Error::InvalidRequest(format!(
                "application {name:?} is a ThreatLocker built-in (owned by the master organization): it can only be permitted with PermitScope::EntireOrganization; sent with a narrower scope the API answers with a misleading 401 \"Missing the '' permission\""
            )));
        }
    }
    let mut ma = match body.get("matchingApplications") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let has_matching = matching
        .has_matching
        .unwrap_or(!matching.matching_applications.is_empty());
    ma.insert("hasMatchingApplication".into(), json!(has_matching));
    ma.insert("useMatchingApplication".into(), json!(false));
    ma.insert("matchingApplication".into(), Value::Null);
    ma.insert("useExistingApplication".into(), json!(false));
    ma.insert("existingApplication".into(), Value::Null);
    ma.insert("useNewApplication".into(), json!(false));
    ma.insert("newApplicationName".into(), Value::Null);
    match chosen {
        Chosen::Matching { app, .. } => {
            ma.insert("useMatchingApplication".into(), json!(true));
            ma.insert("matchingApplication".into(), app);
        }
        Chosen::Existing { app, .. } => {
            ma.insert("useExistingApplication".into(), json!(true));
            ma.insert("existingApplication".into(), app);
        }
        Chosen::New(name) => {
            ma.insert("useNewApplication".into(), json!(true));
            ma.insert("newApplicationName".into(), json!(name));
        }
    }
    body.insert("matchingApplications".into(), Value::Object(ma));

    // Rule.
    let mut pc = match body.get("policyConditions") {
        Some(Value::Object(m)) => m.clone(),
        _ => {
            let mut m = Map::new();
            m.insert("useExistingPolicy".into(), json!(false));
            m.insert("createManualPolicy".into(), json!(false));
            m.insert("manualOptions".into(), json!([]));
            m
        }
    };
    pc.insert("ruleId".into(), json!(opts.rule.rule_id()));
    body.insert("policyConditions".into(), Value::Object(pc));

    // Scope.
    let mut pl = match body.get("policyLevel") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let (org, group, group_item) = match &opts.scope {
        PermitScope::Computer => (false, false, Value::Null),
        PermitScope::EntireOrganization => (true, false, Value::Null),
        PermitScope::ComputerGroup(id) => {
            let existing = pl
                .get("selectedComputerGroup")
                .filter(|g| id_eq(g.get("computerGroupId"), id.as_str()))
                .cloned();
            let item = existing.unwrap_or_else(|| {
                json!({
                    "computerGroupId": id,
                    "organizationId": body.get("organizationId").cloned().unwrap_or(Value::Null),
                    "osType": body.get("osType").cloned().unwrap_or(Value::Null),
                })
            });
            (false, true, item)
        }
    };
    pl.insert("toEntireOrganization".into(), json!(org));
    pl.insert("toComputerGroup".into(), json!(group));
    pl.insert("selectedComputerGroup".into(), group_item);
    // `toComputer: true` is refused (417); computer scope is all flags false.
    pl.insert("toComputer".into(), json!(false));
    body.insert("policyLevel".into(), Value::Object(pl));

    body.insert(
        "policyExpirationDate".into(),
        opts.expires_at
            .map_or(Value::Null, |d| json!(format_request_date(d))),
    );
    if let Some(rf) = opts.ringfence {
        body.insert("isRingfenced".into(), json!(rf));
    }

    // Notes and the response to the requester.
    let mut notes = match body.get("adminNotes") {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    for key in ["ticket", "requestorEmail", "comments"] {
        notes.entry(key).or_insert(Value::Null);
    }
    if let Some(n) = &opts.admin_notes {
        if let Some(t) = &n.ticket {
            notes.insert("ticket".into(), json!(t));
        }
        if let Some(e) = &n.requestor_email {
            notes.insert("requestorEmail".into(), json!(e));
        }
        if let Some(c) = &n.comments {
            notes.insert("comments".into(), json!(c));
        }
    }
    body.insert("adminNotes".into(), Value::Object(notes));
    if let Some(r) = &opts.response {
        body.insert("responseSubject".into(), json!(r.subject));
        body.insert("responseReason".into(), json!(r.reason));
        body.insert("notifyOnResponse".into(), json!(r.notify));
    } else {
        fill_if_null(&mut body, "notifyOnResponse", json!(false));
    }

    let mut out = Value::Object(body);
    for (pointer, value) in &opts.overrides {
        set_pointer(&mut out, pointer, value.clone())?;
    }
    Ok(out)
}

/// The `ApplicationGetMatchingList` body for a permit: the file's hashes, path, certificates
/// and creators from the DTO's `fileDetails`, falling back to the request.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn matching_query(dto: &Value, request: &ApprovalRequest) -> Value {
    let file = dto.get("fileDetails").cloned().unwrap_or(Value::Null);
    let s = |key: &str, fallback: Option<&str>| -> Value {
        json!(non_empty_str(file.get(key)).or(fallback).unwrap_or(""))
    };
    let certs: Vec<Value> = file
        .get("certificates")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| c.is_object())
                .map(|c| {
                    json!({
                        "sha": c.get("sha").cloned().unwrap_or(json!("")),
                        "subject": c.get("subject").cloned().unwrap_or(json!("")),
                        "validCert": c.get("validCert").cloned().unwrap_or(json!(false)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let created_bys: Vec<Value> = file
        .get("createdByProcesses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|v| v.is_string()).cloned().collect())
        .unwrap_or_default();
    let os_type = match dto.get("osType") {
        Some(v) if !v.is_null() => v.clone(),
        _ => json!(request.os_type.map_or(1, |o| o.code())),
    };
    json!({
        "osType": os_type,
        "hash": s("hash", request.hash.as_deref()),
        "sha256": s("sha256", request.sha256.as_deref()),
        "path": s("fullPath", request.path.as_deref()),
        "processPath": s("processPath", None),
        "filename": s("filename", request.file_name()),
        "certs": certs,
        "createdBys": created_bys,
        "organizationIds": dto.get("organizationIds").filter(|v| v.is_array()).cloned().unwrap_or(json!([])),
        "approvalRequestId": request.approval_request_id,
    })
}

enum Chosen {
    Matching {
        app: Value,
        name: String,
        built_in: bool,
    },
    Existing {
        app: Value,
        name: String,
        built_in: bool,
    },
    New(String),
}

impl Chosen {
    fn built_in(&self) -> Option<(&str, bool)> {
        match self {
            Self::Matching { name, built_in, .. } | Self::Existing { name, built_in, .. } => {
                Some((name, *built_in))
            }
            Self::New(_) => None,
        }
    }
}

fn choose_application(
    body: &Map<String, Value>,
    matching: &MatchingList,
    choice: &ApplicationChoice,
) -> Result<Chosen> {
    let apps = &matching.matching_applications;
    let display = |a: &Application| {
        a.display_name()
            .map(str::to_owned)
            .or_else(|| a.application_id.as_ref().map(|i| i.to_string()))
            .unwrap_or_default()
    };
    match choice {
        ApplicationChoice::Matching => {
            let app = apps
                .iter()
                .find(|a| !a.is_master_owned())
                .or_else(|| apps.first())
                .ok_or_else(|| {
                    Error::InvalidRequest(
                        "no application matches this file (ApplicationGetMatchingList returned none); choose ApplicationChoice::Existing or ApplicationChoice::New".into(),
                    )
                })?;
            Ok(Chosen::Matching {
                app: application_json(app),
                name: display(app),
                built_in: app.is_master_owned(),
            })
        }
        ApplicationChoice::MatchingId(id) => {
            let app = apps
                .iter()
                .find(|a| {
                    a.application_id
                        .as_ref()
                        .is_some_and(|x| x.as_str().eq_ignore_ascii_case(id.as_str()))
                })
                .ok_or_else(|| {
                    Error::InvalidRequest(format!(
                        "application {id} is not in the matching list for this file"
                    ))
                })?;
            Ok(Chosen::Matching {
                app: application_json(app),
                name: display(app),
                built_in: app.is_master_owned(),
            })
        }
        ApplicationChoice::Existing(id) => {
            if let Some(app) = apps.iter().find(|a| {
                a.application_id
                    .as_ref()
                    .is_some_and(|x| x.as_str().eq_ignore_ascii_case(id.as_str()))
            }) {
                return Ok(Chosen::Existing {
                    app: application_json(app),
                    name: display(app),
                    built_in: app.is_master_owned(),
                });
            }
            // The DTO's own application list, when the server sent one.
            let listed = body
                .get("applicationList")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .find(|v| id_eq(v.get("applicationId"), id.as_str()))
                });
            if let Some(v) = listed {
                let built_in = v.get("isBuiltIn").and_then(Value::as_bool) == Some(true)
                    || non_empty_str(v.get("organizationName"))
                        .is_some_and(|n| n.eq_ignore_ascii_case("master"));
                let name = non_empty_str(v.get("name"))
                    .or_else(|| non_empty_str(v.get("applicationName")))
                    .unwrap_or(id.as_str())
                    .to_owned();
                return Ok(Chosen::Existing {
                    app: v.clone(),
                    name,
                    built_in,
                });
            }
            Ok(Chosen::Existing {
                app: json!({ "applicationId": id }),
                name: id.to_string(),
                built_in: false,
            })
        }
        ApplicationChoice::New(name) => Ok(Chosen::New(name.trim().to_owned())),
    }
}

/// An application as the permit DTO's `ApplicationOnlineDto`: every key the server sent (kept in
/// `extra`) plus the modelled ones.
fn application_json(app: &Application) -> Value {
    let mut m = app.extra.clone();
    m.insert("applicationId".into(), json!(app.application_id));
    m.insert("name".into(), json!(app.display_name()));
    m.insert(
        "applicationName".into(),
        json!(app.application_name.as_deref().or(app.name.as_deref())),
    );
    m.insert("organizationId".into(), json!(app.organization_id));
    m.insert("organizationName".into(), json!(app.organization_name));
    m.insert("osType".into(), json!(app.os_type));
    Value::Object(m)
}

fn fill_if_null(body: &mut Map<String, Value>, key: &str, value: Value) {
    if body.get(key).is_none_or(Value::is_null) {
        body.insert(key.to_owned(), value);
    }
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

fn id_eq(v: Option<&Value>, id: &str) -> bool {
    v.and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case(id))
}

fn dto_error(path: &str, message: &str) -> Error {
    Error::Decode {
        endpoint: DTO_ENDPOINT.into(),
        path: path.into(),
        message: message.into(),
    }
}

/// Sets `pointer` in `doc`, creating the last key when its parent object exists.
fn set_pointer(doc: &mut Value, pointer: &str, value: Value) -> Result<()> {
    if let Some(slot) = doc.pointer_mut(pointer) {
        *slot = value;
        return Ok(());
    }
    let (parent, last) = pointer.rsplit_once('/').ok_or_else(|| {
        Error::InvalidRequest(format!("override key {pointer:?} is not a JSON pointer"))
    })?;
    let last = last.replace("~1", "/").replace("~0", "~");
    let parent_value = if parent.is_empty() {
        Some(doc)
    } else {
        doc.pointer_mut(parent)
    };
    match parent_value {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        _ => Err(Error::InvalidRequest(format!(
            "override {pointer:?}: its parent {parent:?} is not an object in the permit body"
        ))),
    }
}

/// The organization a permit's calls are scoped to: the request's own organization (writes on
/// a child organization's objects must name it in `managedOrganizationId`), else none.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
pub(crate) fn request_scope(request: &ApprovalRequest) -> Option<OrganizationId> {
    request
        .organization_id
        .clone()
        .filter(|o| !o.as_str().trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_table() {
        let cases = [
            (Some(ApprovalStatus::Approved), PermitRecovery::Permitted),
            (Some(ApprovalStatus::Pending), PermitRecovery::Unknown),
            (
                Some(ApprovalStatus::PendingEscalation),
                PermitRecovery::Unknown,
            ),
            (None, PermitRecovery::Unknown),
            (
                Some(ApprovalStatus::Denied),
                PermitRecovery::ActionedOtherwise(ApprovalStatus::Denied),
            ),
            (
                Some(ApprovalStatus::Ignored),
                PermitRecovery::ActionedOtherwise(ApprovalStatus::Ignored),
            ),
        ];
        for (status, want) in cases {
            assert_eq!(permit_recovery(status), want, "{status:?}");
        }
    }

    #[test]
    fn rule_ids() {
        assert_eq!(PermitRule::Permanent.rule_id(), 0);
        assert_eq!(PermitRule::InstallationMode.rule_id(), 1);
        assert_eq!(PermitRule::LearningMode.rule_id(), 2);
        assert_eq!(PermitRule::MonitorMode.rule_id(), 3);
    }

    #[test]
    fn set_pointer_creates_last_key_only() {
        let mut v = json!({"a": {"b": 1}});
        set_pointer(&mut v, "/a/c", json!(2)).unwrap();
        set_pointer(&mut v, "/a/b", json!(3)).unwrap();
        assert_eq!(v, json!({"a": {"b": 3, "c": 2}}));
        assert!(set_pointer(&mut v, "/x/y", json!(1)).is_err());
    }
}
