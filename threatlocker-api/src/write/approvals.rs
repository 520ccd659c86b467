//! Acting on approval requests: permit (approve), reject, ignore, take ownership.
//!
//! # Permit order
//!
//! A permit reads before it writes, so that every refusal leaves the request untouched:
//!
//! | step | call | kind |
//! |---|---|---|
//! | 1 | `GET ApprovalRequestGetById` (already actioned → refused) | read |
//! | 2 | `GET ApprovalRequestGetPermitApplicationById` (the DTO) | read |
//! | 3 | `POST Application/ApplicationGetMatchingList` (from the DTO's `fileDetails`, falling back to the request's path/hash/sha256) | read |
//! | 4 | choose the application; built-in without entire-organization scope → refused | pure |
//! | 5 | `POST ApprovalRequestUpdateForTakeOwnership` | first write |
//! | 6 | `POST ApprovalRequestPermitApplication`, once | write |
//! | 7 | `GET ApprovalRequestGetById` (verify) | read |
//!
//! `Approvals::plan_permit` runs steps 1–4 and
//! returns the writes of steps 5–6 unsent.

use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::ids::ApprovalRequestId;
use crate::request::{Method, PreparedRequest};

#[cfg(feature = "client")]
use super::permit::{
    build_permit_body, matching_query, permit_recovery, prepare_permit, prepare_take_ownership,
    request_scope, PermitOptions, PermitOutcome, PermitPlan, PermitRecovery,
};
#[cfg(feature = "client")]
use crate::{
    codes::ApprovalStatus,
    decode::{decode_one, decode_optional, decode_value},
    handles::Approvals,
    ids::OrganizationId,
    models::{ApprovalRequest, MatchingList},
    Client, RawResponse,
};

/// Path of the reject endpoint.
pub const REJECT_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestUpdateForReject";
/// Path of the (deprecated) ignore endpoint.
pub const IGNORE_PATH: &str = "/portalapi/ApprovalRequest/ApprovalRequestUpdateForIgnore";

/// How to reject approval requests (`ApprovalRequestUpdateForReject`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RejectOptions {
    /// Why (`rejectReason`, recorded on the request).
    pub reason: String,
    /// Subject of the message to the requester (`responseSubject`).
    pub response_subject: Option<String>,
    /// Body of the message to the requester (`responseReason`).
    pub response_reason: Option<String>,
    /// Whether to notify the requester (`notifyOnResponse`).
    pub notify: bool,
}

impl RejectOptions {
    /// A rejection with a reason and no message to the requester.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            ..Self::default()
        }
    }
    /// Sends the requester a message with this subject and text, and notifies them.
    pub fn respond(mut self, subject: impl Into<String>, reason: impl Into<String>) -> Self {
        self.response_subject = Some(subject.into());
        self.response_reason = Some(reason.into());
        self.notify = true;
        self
    }
    setters! {
        /// Sets whether the requester is notified.
        notify(notify: bool) = notify;
    }
}

/// How to ignore approval requests (`ApprovalRequestUpdateForIgnore`, deprecated by ThreatLocker
/// in favour of reject).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct IgnoreOptions {
    /// Subject of the message to the requester (`ignoreSubject`).
    pub subject: Option<String>,
    /// Why (`ignoreReason`).
    pub reason: Option<String>,
    /// Whether to notify the requester (`notifyOnIgnore`).
    pub notify: bool,
}

impl IgnoreOptions {
    /// An ignore with a reason and no notification.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: Some(reason.into()),
            ..Self::default()
        }
    }
    setters! {
        /// Sets the subject.
        subject(subject: impl Into<String>) = Some(subject.into());

        /// Sets whether the requester is notified.
        notify(notify: bool) = notify;
    }
}

fn request_dtos(ids: &[ApprovalRequestId]) -> Result<Value> {
    if ids.is_empty() {
        return Err(Error::InvalidRequest(
            "no approval request ids were given".into(),
        ));
    }
    if let Some(i) = ids.iter().position(|id| id.as_str().trim().is_empty()) {
        return Err(Error::InvalidRequest(format!(
            "approval request id at index {i} is empty"
        )));
    }
    Ok(Value::Array(
        ids.iter()
            .map(|id| json!({ "approvalRequestId": id }))
            .collect(),
    ))
}

/// The reject write (reference Appendix A.5): `approvalRequestDtos` `[{approvalRequestId}]`,
/// `type: "reject"`, `rejectReason`, `responseSubject`, `responseReason`, `notifyOnResponse`.
/// Several ids are rejected in one call.
pub fn prepare_reject(ids: &[ApprovalRequestId], opts: &RejectOptions) -> Result<PreparedRequest> {
    let body = json!({
        "approvalRequestDtos": request_dtos(ids)?,
        "type": "reject",
        "rejectReason": opts.reason,
        "responseSubject": opts.response_subject,
        "responseReason": opts.response_reason,
        "notifyOnResponse": opts.notify,
    });
    Ok(PreparedRequest::write(
        Method::Post,
        REJECT_PATH,
        Some(body),
    ))
}

/// The ignore write: `approvalRequestDtos`, `ignoreSubject`, `ignoreReason`, `notifyOnIgnore`.
pub fn prepare_ignore(ids: &[ApprovalRequestId], opts: &IgnoreOptions) -> Result<PreparedRequest> {
    let body = json!({
        "approvalRequestDtos": request_dtos(ids)?,
        "ignoreSubject": opts.subject,
        "ignoreReason": opts.reason,
        "notifyOnIgnore": opts.notify,
    });
    Ok(PreparedRequest::write(
        Method::Post,
        IGNORE_PATH,
        Some(body),
    ))
}

// ---- reads the write side needs (kept private; named apart from the read side's) ----

#[cfg(feature = "client")]
fn scoped(req: PreparedRequest, org: Option<&OrganizationId>) -> PreparedRequest {
    match org {
        Some(o) => req.with_organization(o.clone()),
        None => req,
    }
}

/// `GET path?approvalRequestId=id`, scoped to `org`: the request sent and its answer.
#[cfg(feature = "client")]
async fn get_for_request(
    client: &Client,
    path: &str,
    id: &ApprovalRequestId,
    org: Option<&OrganizationId>,
) -> Result<(PreparedRequest, RawResponse)> {
    let req = scoped(
        PreparedRequest::get(path).with_query("approvalRequestId", id),
        org,
    );
    let raw = client.execute(&req).await?;
    Ok((req, raw))
}

#[cfg(feature = "client")]
async fn fetch_status_for_write(
    client: &Client,
    id: &ApprovalRequestId,
    org: Option<&OrganizationId>,
) -> Result<ApprovalRequest> {
    let (req, raw) = get_for_request(
        client,
        "/portalapi/ApprovalRequest/ApprovalRequestGetById",
        id,
        org,
    )
    .await?;
    let mut request: ApprovalRequest = decode_one(&req.endpoint(), &raw.body)?;
    request.decode_fields();
    if request.approval_request_id.is_none() {
        request.approval_request_id = Some(id.clone());
    }
    Ok(request)
}

#[cfg(feature = "client")]
async fn fetch_permit_dto_for_write(
    client: &Client,
    id: &ApprovalRequestId,
    org: Option<&OrganizationId>,
) -> Result<Value> {
    let (req, raw) = get_for_request(
        client,
        "/portalapi/ApprovalRequest/ApprovalRequestGetPermitApplicationById",
        id,
        org,
    )
    .await?;
    let dto = decode_value(&req.endpoint(), trim_or_null(&raw.body))?;
    if !dto.is_object() {
        return Err(Error::Decode {
            endpoint: req.endpoint(),
            path: ".".into(),
            message: "expected the permit-application DTO (a JSON object)".into(),
        });
    }
    Ok(dto)
}

#[cfg(feature = "client")]
fn trim_or_null(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        body
    }
}

#[cfg(feature = "client")]
async fn fetch_matching_for_write(
    client: &Client,
    dto: &Value,
    request: &ApprovalRequest,
    org: Option<&OrganizationId>,
) -> Result<MatchingList> {
    let req = scoped(
        PreparedRequest::search(
            "/portalapi/Application/ApplicationGetMatchingList",
            matching_query(dto, request),
        ),
        org,
    );
    let raw = client.execute(&req).await?;
    let Some(mut value) = decode_optional::<Value>(&req.endpoint(), &raw.body)? else {
        return Ok(MatchingList::default());
    };
    if value.is_array() {
        value = json!({ "matchingApplications": value });
    }
    let rows = match value.get_mut("matchingApplications").map(Value::take) {
        Some(Value::Array(rows)) => rows,
        _ => Vec::new(),
    };
    let decode_err = |path: String, e: serde_json::Error| Error::Decode {
        endpoint: req.endpoint(),
        path,
        message: e.to_string(),
    };
    let mut list: MatchingList =
        serde_json::from_value(value).map_err(|e| decode_err(".".into(), e))?;
    list.matching_applications = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            super::decode_application(row)
                .map_err(|e| decode_err(format!("matchingApplications[{i}]"), e))
        })
        .collect::<Result<_>>()?;
    Ok(list)
}

#[cfg(feature = "client")]
impl Approvals {
    /// Takes ownership of (assigns to the API user) an approval request.
    pub async fn take_ownership(&self, id: &ApprovalRequestId) -> Result<()> {
        let req = prepare_take_ownership(id);
        self.client.execute(&req).await.map(drop).map_err(|e| {
            super::classify_write_error(|| format!("take ownership of approval request {id}"), e)
        })
    }

    /// Approves (permits) an approval request. Every check that can refuse the permit runs on
    /// reads, before the first write:
    ///
    /// 1. read the request (`ApprovalRequestGetById`): an already actioned request is refused
    ///    with [`Error::AlreadyActioned`];
    /// 2. fetch the permit DTO (`ApprovalRequestGetPermitApplicationById`; a read, needed first
    ///    because the matching lookup describes the file from its `fileDetails`) and the
    ///    matching applications (`Application/ApplicationGetMatchingList`);
    /// 3. choose the application and build the body with [`build_permit_body`], which refuses
    ///    options that cannot succeed, such as a built-in (`master`) application without
    ///    entire-organization scope;
    /// 4. only then take ownership (`ApprovalRequestUpdateForTakeOwnership`), the first write;
    /// 5. post the permit once (`ApprovalRequestPermitApplication`);
    /// 6. read the request back: `verified` when it is Approved.
    ///
    /// A refusal at steps 1–3 therefore leaves the request untouched (not assigned to the API
    /// user). The live-verified order of the reference fetched the DTO after taking ownership;
    /// fetching it before is a read of the same request and needs no ownership.
    /// [`Approvals::plan_permit`] performs exactly steps 1–3 and shows the writes of 4–5.
    ///
    /// If the permit POST's outcome is unknown (timeout, reset, 5xx) it is **never** posted
    /// again: the request's status is re-read; Approved → success with
    /// `recovered_after_unknown`; still pending → [`Error::OutcomeUnknown`]; actioned otherwise →
    /// [`Error::AlreadyActioned`].
    ///
    /// Every call after the first is scoped to the request's own organization
    /// (`managedOrganizationId`), as writes on a child organization's objects must be.
    ///
    /// ```no_run
    /// # async fn run() -> threatlocker_api::Result<()> {
    /// use threatlocker_api::{ApprovalRequestId, Client, Error, PermitOptions, PermitScope};
    ///
    /// let client = Client::builder("api-key").instance("g").build()?;
    /// let id = ApprovalRequestId::from("c3d4e5f6-a7b8-4901-8cde-f1234567890a");
    /// let opts = PermitOptions::default().scope(PermitScope::EntireOrganization);
    ///
    /// // Dry run: the reads happen, the writes are only shown.
    /// println!("{}", client.approvals().plan_permit(&id, &opts).await?);
    ///
    /// match client.approvals().permit(&id, &opts).await {
    ///     Ok(done) if done.verified => println!("approved"),
    ///     Ok(_) => println!("sent; the read-back does not show it approved yet"),
    ///     Err(Error::AlreadyActioned { status, .. }) => println!("already {status}"),
    ///     Err(Error::OutcomeUnknown { .. }) => println!("unknown: check before trying again"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn permit(
        &self,
        id: &ApprovalRequestId,
        opts: &PermitOptions,
    ) -> Result<PermitOutcome> {
        let (checked, owned) = match self.permit_reads(id, opts).await {
            Ok(checked) => (checked, false),
            // The live-verified flow takes ownership before reading the DTO. If this tenant
            // refuses the DTO to a non-owner, fall back to that order: take ownership, then
            // read again (every other refusal has already had its chance on the request).
            Err(e) if refused_before_ownership(&e) => {
                let org = self
                    .client
                    .approvals()
                    .get(id)
                    .await
                    .ok()
                    .and_then(|r| r.organization_id.clone());
                self.take_ownership_scoped(id, org.as_ref()).await?;
                (self.permit_reads(id, opts).await?, true)
            }
            Err(e) => return Err(e),
        };
        let client = &self.client;
        let org = checked.org.as_ref();

        // First write: only after every refusal above had its chance.
        if !owned {
            self.take_ownership_scoped(id, org).await?;
        }

        let post = scoped(prepare_permit(checked.body), org);

        match client.execute(&post).await {
            Ok(raw) => {
                let response = decode_optional::<Value>(&post.endpoint(), &raw.body)
                    .ok()
                    .flatten();
                let status_after = fetch_status_for_write(client, id, org)
                    .await
                    .ok()
                    .and_then(|r| r.status_id);
                Ok(PermitOutcome {
                    request_id: id.clone(),
                    verified: status_after == Some(ApprovalStatus::Approved),
                    recovered_after_unknown: false,
                    status_after,
                    response,
                })
            }
            Err(err) if err.is_outcome_unknown() => {
                let reread = fetch_status_for_write(client, id, org).await;
                let status = reread.as_ref().ok().and_then(|r| r.status_id);
                match (reread, permit_recovery(status)) {
                    (Ok(_), PermitRecovery::Permitted) => Ok(PermitOutcome {
                        request_id: id.clone(),
                        verified: true,
                        recovered_after_unknown: true,
                        status_after: status,
                        response: None,
                    }),
                    (Ok(_), PermitRecovery::ActionedOtherwise(s)) => Err(Error::AlreadyActioned {
                        request_id: id.to_string(),
                        status: format!("{s} (read after the permit's answer was lost)"),
                    }),
                    (Ok(_), PermitRecovery::Unknown) => Err(Error::OutcomeUnknown {
                        operation: format!(
                            "permit of approval request {id} (re-read status: {}; not posted again)",
                            status.map_or_else(|| "none".to_owned(), |s| s.to_string())
                        ),
                        source: Box::new(err),
                    }),
                    (Err(read_err), _) => Err(Error::OutcomeUnknown {
                        operation: format!(
                            "permit of approval request {id} (status re-read failed: {read_err}; not posted again)"
                        ),
                        source: Box::new(err),
                    }),
                }
            }
            Err(err) => Err(already_actioned_or(id, err, || {
                format!("permit of approval request {id}")
            })),
        }
    }

    /// The dry run of [`Approvals::permit`]: performs only its reads (request status, permit
    /// DTO, matching list), applies the same checks in the same order, and returns the exact
    /// writes `permit` would send (take ownership, then the permit POST) without sending any.
    pub async fn plan_permit(
        &self,
        id: &ApprovalRequestId,
        opts: &PermitOptions,
    ) -> Result<PermitPlan> {
        let checked = self.permit_reads(id, opts).await?;
        let org = checked.org.as_ref();
        let requests = vec![
            scoped(prepare_take_ownership(id), org),
            scoped(prepare_permit(checked.body), org),
        ];
        Ok(PermitPlan {
            request: checked.request,
            matching: checked.matching,
            requests,
        })
    }

    /// The read-only half of a permit, shared by [`Approvals::permit`] and
    /// [`Approvals::plan_permit`]: every read and every check that can refuse, no write.
    async fn take_ownership_scoped(
        &self,
        id: &ApprovalRequestId,
        org: Option<&OrganizationId>,
    ) -> Result<()> {
        let own = scoped(prepare_take_ownership(id), org);
        self.client.execute(&own).await.map(|_| ()).map_err(|e| {
            already_actioned_or(id, e, || format!("take ownership of approval request {id}"))
        })
    }

    async fn permit_reads(
        &self,
        id: &ApprovalRequestId,
        opts: &PermitOptions,
    ) -> Result<CheckedPermit> {
        opts.validate()?;
        let client = &self.client;
        let request = fetch_status_for_write(client, id, None).await?;
        ensure_pending(id, &request)?;
        let org = request_scope(&request);
        let dto = fetch_permit_dto_for_write(client, id, org.as_ref()).await?;
        let matching = fetch_matching_for_write(client, &dto, &request, org.as_ref()).await?;
        let body = build_permit_body(&dto, &request, &matching, opts)?;
        Ok(CheckedPermit {
            request,
            org,
            matching,
            body,
        })
    }

    /// Rejects one or more approval requests in one call (`ApprovalRequestUpdateForReject`).
    ///
    /// If the outcome is unknown the requests are re-read: when every one of them now shows
    /// Ignored or Denied (the API uses either for a rejection) the call is taken as done;
    /// otherwise [`Error::OutcomeUnknown`]. The call is never repeated.
    pub async fn reject(&self, ids: &[ApprovalRequestId], opts: &RejectOptions) -> Result<()> {
        let req = prepare_reject(ids, opts)?;
        self.send_bulk_status_write(&req, ids, "reject").await
    }

    /// Ignores one or more approval requests (`ApprovalRequestUpdateForIgnore`; deprecated by
    /// ThreatLocker in favour of [`Approvals::reject`]). Outcome-unknown handling as `reject`.
    pub async fn ignore(&self, ids: &[ApprovalRequestId], opts: &IgnoreOptions) -> Result<()> {
        let req = prepare_ignore(ids, opts)?;
        self.send_bulk_status_write(&req, ids, "ignore").await
    }

    async fn send_bulk_status_write(
        &self,
        req: &PreparedRequest,
        ids: &[ApprovalRequestId],
        what: &str,
    ) -> Result<()> {
        let err = match self.client.execute(req).await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_outcome_unknown() => e,
            Err(e) => return Err(super::add_write_hint(e)),
        };
        let mut pending = Vec::new();
        for id in ids {
            match fetch_status_for_write(&self.client, id, None).await {
                Ok(r)
                    if matches!(
                        r.status_id,
                        Some(ApprovalStatus::Ignored | ApprovalStatus::Denied)
                    ) => {}
                Ok(r) => pending.push(format!(
                    "{id}: {}",
                    r.status_id
                        .map_or_else(|| "no status".to_owned(), |s| s.to_string())
                )),
                Err(e) => pending.push(format!("{id}: re-read failed: {e}")),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        Err(Error::OutcomeUnknown {
            operation: format!(
                "{what} of {} approval request(s) (not sent again; unconfirmed: {})",
                ids.len(),
                pending.join(", ")
            ),
            source: Box::new(err),
        })
    }
}

/// What the reads of a permit established: the pending request, its organization, the
/// matching list and the body that passed every check.
#[cfg(feature = "client")]
struct CheckedPermit {
    request: ApprovalRequest,
    org: Option<OrganizationId>,
    matching: MatchingList,
    body: Value,
}

/// Whether a read of the permit flow was refused in a way taking ownership could cure: the
/// server answered the permit DTO read with 400, 401 or 403 before ownership (the API documents
/// no status for "not the owner", so any refusal of the caller is taken as possibly that).
#[cfg(feature = "client")]
fn refused_before_ownership(e: &Error) -> bool {
    matches!(e, Error::Api { status: 400 | 401 | 403, endpoint, .. } if endpoint.contains("GetPermitApplicationById"))
}

#[cfg(feature = "client")]
fn ensure_pending(id: &ApprovalRequestId, request: &ApprovalRequest) -> Result<()> {
    match request.status_id {
        Some(s) if s.is_actioned() => Err(Error::AlreadyActioned {
            request_id: id.to_string(),
            status: s.to_string(),
        }),
        Some(_) => Ok(()),
        None => Err(Error::Decode {
            endpoint: "GET /portalapi/ApprovalRequest/ApprovalRequestGetById".into(),
            path: "statusId".into(),
            message: "the request has no statusId, so it cannot be told apart from an actioned one; refusing to permit".into(),
        }),
    }
}

/// A 400 "already actioned" from the server becomes [`Error::AlreadyActioned`]; an unknown
/// outcome becomes [`Error::OutcomeUnknown`]; anything else passes through with its hint.
#[cfg(feature = "client")]
fn already_actioned_or(
    id: &ApprovalRequestId,
    err: Error,
    operation: impl FnOnce() -> String,
) -> Error {
    if let Error::Api {
        status: 400,
        message: Some(m),
        ..
    } = &err
    {
        if m.to_ascii_lowercase().contains("already actioned") {
            return Error::AlreadyActioned {
                request_id: id.to_string(),
                status: format!("server said: {m}"),
            };
        }
    }
    super::classify_write_error(operation, err)
}
