//! A simulated ThreatLocker Portal API on loopback, with the real API's quirks.
//!
//! Behaviour copied from the reference (`threatlocker-api.md`): the raw key in `Authorization`
//! (no `Bearer`), `usenewsearch: true` on the V2 action-log search (else 200 with an empty
//! body), `paramsFieldsDto` required there (else 500), a date range required (else 417),
//! `statusId` required on the approval search (else 500), bare-array bodies with a JSON
//! `pagination` header, base64 `requestorReason`, `managedOrganizationId` scoping and the
//! child-organization flags (a parent-scoped action-log search without them is a 500), the
//! permit flow (take ownership, the permit DTO, the matching list, the permit → `statusId` 4; a
//! second permit → 400 "Approval Request already actioned by "), reject, `DeployPolicies`, the
//! bare-integer approval count, research details with `categories`, computers with modes.
//!
//! State (request statuses, permits, deploys) lives behind a mutex; the bulk data is the
//! immutable, lazily generated [`Dataset`]. Faults (429 storms, 5xx on given pages) can be
//! injected while it runs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::data::{Dataset, SimApproval};

/// The status the simulator gives a rejected request (the reference is unsure between 10 and
/// 11; both are accepted by the client).
pub const REJECTED_STATUS: i32 = 10;

/// A fault to inject: the next `times` requests whose path contains `route` (case-insensitive;
/// empty = any) and, when `page` is set, whose body asks for that `pageNumber`, get `status`.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Path fragment, e.g. `ActionLogGetByParametersV2`; empty matches every route.
    pub route: String,
    /// Only requests for this page number.
    pub page: Option<u64>,
    /// Status to answer with (429 gets a `Retry-After`).
    pub status: u16,
    /// How many requests to fail.
    pub times: u32,
    /// `Retry-After` seconds sent with a 429.
    pub retry_after: Option<u32>,
}

impl Fault {
    /// A storm: the next `times` requests to any route get 429 with `Retry-After: 0`.
    pub fn rate_limit_storm(times: u32) -> Self {
        Self {
            route: String::new(),
            page: None,
            status: 429,
            times,
            retry_after: Some(0),
        }
    }

    /// `times` failures with `status` for `page` of the route.
    pub fn on_page(route: &str, page: u64, status: u16, times: u32) -> Self {
        Self {
            route: route.to_owned(),
            page: Some(page),
            status,
            times,
            retry_after: None,
        }
    }
}

/// A permit the simulator accepted.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PermitRecord {
    /// Request id.
    pub approval_request_id: String,
    /// Organization id of the request.
    pub organization_id: String,
    /// `"computer"`, `"group"` or `"organization"`.
    pub scope: &'static str,
    /// Application id used (matching or existing), if any.
    pub application_id: Option<String>,
}

#[derive(Debug, Default)]
struct Mutable {
    status: HashMap<String, (i32, Option<String>)>,
    owned: HashSet<String>,
    permits: Vec<PermitRecord>,
    rejects: Vec<String>,
    deploys: Vec<String>,
    faults: Vec<Fault>,
    owning_org_only: bool,
    source_table_required: bool,
    parent_needs_child_flag: bool,
    counts: BTreeMap<String, u64>,
    spans: BTreeMap<String, (Instant, Instant)>,
    total: u64,
    first: Option<Instant>,
    last: Option<Instant>,
    /// Action-log rows held back (ids), as if their computers had not uploaded them yet.
    held_back: HashSet<i64>,
    /// Bytes of action-log answers sent.
    action_log_bytes: u64,
}

struct Portal {
    ds: Arc<Dataset>,
    key: String,
    state: Mutex<Mutable>,
}

/// Request statistics of the simulator.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PortalStats {
    /// Requests per route (`Controller/Action`).
    pub per_route: BTreeMap<String, u64>,
    /// All requests.
    pub total: u64,
    /// Seconds between the first and the last request.
    pub span_seconds: f64,
    /// Seconds between the first and the last request, per route.
    pub per_route_span_seconds: BTreeMap<String, f64>,
    /// Bytes of action-log answers (bodies) sent.
    pub action_log_bytes: u64,
}

/// A running simulated Portal API.
pub struct PortalSim {
    server: MockServer,
    portal: Arc<Portal>,
}

impl std::fmt::Debug for PortalSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalSim")
            .field("uri", &self.server.uri())
            .finish_non_exhaustive()
    }
}

impl PortalSim {
    /// Starts the simulator on a loopback port, serving `ds` to callers presenting `api_key`.
    pub async fn start(ds: Dataset, api_key: &str) -> Self {
        // Request recording would keep every request in memory; the simulator keeps counts.
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let status = ds
            .approvals
            .iter()
            .map(|a| (a.id.clone(), (1, None)))
            .collect();
        let portal = Arc::new(Portal {
            ds: Arc::new(ds),
            key: api_key.to_owned(),
            state: Mutex::new(Mutable {
                status,
                ..Mutable::default()
            }),
        });
        Mock::given(wiremock::matchers::any())
            .respond_with(Responder(Arc::clone(&portal)))
            .with_priority(u8::MAX)
            .mount(&server)
            .await;
        Self { server, portal }
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// The underlying mock server, to mount extra expectations (they take precedence).
    pub fn server(&self) -> &MockServer {
        &self.server
    }

    /// The data set served.
    pub fn dataset(&self) -> &Dataset {
        &self.portal.ds
    }

    /// Injects a fault.
    pub fn inject(&self, fault: Fault) {
        self.portal.lock().faults.push(fault);
    }

    /// Removes every injected fault that has not fired yet.
    pub fn clear_faults(&self) {
        self.portal.lock().faults.clear();
    }

    /// The strict reading of `managedOrganizationId` (reference §1.3): a call without the
    /// header acts on the key's home (parent) organization only, so looking up, taking
    /// ownership of, permitting or rejecting a child organization's approval request by id
    /// needs the header naming that organization (else 400 "Approval request not found").
    /// Off by default (the lenient reading: the parent sees its children's requests).
    pub fn require_owning_organization(&self, on: bool) {
        self.portal.lock().owning_org_only = on;
    }

    /// The reading in which the V2 action-log search needs `sourceTableId` (reference
    /// §3.1.1, UNCERTAIN: one source reports HTTP 500 without it): a search without it gets
    /// a 500, and one with it gets that table's rows only (1 permits and other non-denies,
    /// 2 denies, 3 and 4 none). Off by default.
    pub fn require_source_table(&self, on: bool) {
        self.portal.lock().source_table_required = on;
    }

    /// The other reading of reference §1.3: a parent key's action-log search without the child
    /// flag answers HTTP 500 even though the home organization has rows of its own (they come
    /// with the child flag only). Off by default.
    pub fn require_child_flag_at_parent_scope(&self, on: bool) {
        self.portal.lock().parent_needs_child_flag = on;
    }

    /// Permits accepted so far.
    pub fn permits(&self) -> Vec<PermitRecord> {
        self.portal.lock().permits.clone()
    }

    /// Request ids rejected so far.
    pub fn rejects(&self) -> Vec<String> {
        self.portal.lock().rejects.clone()
    }

    /// Organization ids `DeployPolicies` was called for, in order.
    pub fn deploys(&self) -> Vec<String> {
        self.portal.lock().deploys.clone()
    }

    /// The current status of a request.
    pub fn approval_status(&self, id: &str) -> Option<i32> {
        self.portal.lock().status.get(id).map(|s| s.0)
    }

    /// Marks a request as actioned by someone else (a technician in the portal).
    pub fn action_elsewhere(&self, id: &str, status: i32, by: &str) {
        self.portal
            .lock()
            .status
            .insert(id.to_owned(), (status, Some(by.to_owned())));
    }

    /// Request counts.
    pub fn stats(&self) -> PortalStats {
        let s = self.portal.lock();
        PortalStats {
            per_route: s.counts.clone(),
            total: s.total,
            span_seconds: match (s.first, s.last) {
                (Some(a), Some(b)) => (b - a).as_secs_f64(),
                _ => 0.0,
            },
            per_route_span_seconds: s
                .spans
                .iter()
                .map(|(k, (a, b))| (k.clone(), (*b - *a).as_secs_f64()))
                .collect(),
            action_log_bytes: s.action_log_bytes,
        }
    }

    /// Holds action-log rows back (by `actionLogId`): searches leave them out, as if their
    /// computers had not uploaded them yet, until [`release_held_back`](Self::release_held_back).
    pub fn hold_back(&self, ids: impl IntoIterator<Item = i64>) {
        self.portal.lock().held_back.extend(ids);
    }

    /// Serves the held-back rows again (late uploads arriving).
    pub fn release_held_back(&self) {
        self.portal.lock().held_back.clear();
    }

    /// Write calls (permit, reject, take ownership, deploy) received so far.
    pub fn write_calls(&self) -> u64 {
        let s = self.portal.lock();
        [
            "ApprovalRequest/ApprovalRequestPermitApplication",
            "ApprovalRequest/ApprovalRequestUpdateForReject",
            "ApprovalRequest/ApprovalRequestUpdateForTakeOwnership",
            "DeployPolicyQueue/DeployPolicies",
        ]
        .iter()
        .map(|r| s.counts.get(*r).copied().unwrap_or(0))
        .sum()
    }
}

struct Responder(Arc<Portal>);

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.0.handle(req)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    Parent,
    Org(usize),
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "LoggerId": "0HSIM00000001",
        "StatusCode": status,
        "Message": message,
    }))
}

fn raw_json(status: u16, body: Vec<u8>) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(body, "application/json")
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
}

fn page_args(body: &Value) -> (u64, u64) {
    let n = |k: &str, d: u64| body.get(k).and_then(Value::as_u64).unwrap_or(d);
    (n("pageNumber", 1).max(1), n("pageSize", 25).max(1))
}

/// Page `page` (1-based) of `size` items of `all`, each rendered by `row`, with the
/// pagination header.
fn page_of<T>(all: Vec<T>, page: u64, size: u64, row: impl FnMut(T) -> Value) -> ResponseTemplate {
    let total = all.len() as u64;
    let rows: Vec<Value> = all
        .into_iter()
        .skip((page.saturating_sub(1) * size) as usize)
        .take(size as usize)
        .map(row)
        .collect();
    paged(
        Value::Array(rows).to_string().into_bytes(),
        page,
        size,
        total,
    )
}

fn paged(rows: Vec<u8>, page: u64, size: u64, total: u64) -> ResponseTemplate {
    let pages = total.div_ceil(size);
    raw_json(200, rows).insert_header(
        "pagination",
        json!({"currentPage": page, "itemsPerPage": size, "totalItems": total, "totalPages": pages})
            .to_string(),
    )
}

fn parse_date(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let s = v?.as_str()?;
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

impl Portal {
    fn lock(&self) -> MutexGuard<'_, Mutable> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handle(&self, req: &Request) -> ResponseTemplate {
        let path = req.url.path().to_owned();
        let route = path
            .trim_start_matches('/')
            .strip_prefix("portalapi/")
            .or_else(|| path.trim_start_matches('/').strip_prefix("portalApi/"))
            .unwrap_or(path.trim_start_matches('/'))
            .to_owned();
        let body: Value = if req.body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(_) => return error(400, "The request body is not valid JSON"),
            }
        };
        {
            let mut s = self.lock();
            let now = Instant::now();
            s.total += 1;
            s.first.get_or_insert(now);
            s.last = Some(now);
            *s.counts.entry(route.clone()).or_default() += 1;
            s.spans
                .entry(route.clone())
                .and_modify(|span| span.1 = now)
                .or_insert((now, now));
            let page = body.get("pageNumber").and_then(Value::as_u64);
            let lower = route.to_ascii_lowercase();
            if let Some(f) = s.faults.iter_mut().find(|f| {
                f.times > 0
                    && lower.contains(&f.route.to_ascii_lowercase())
                    && (f.page.is_none() || f.page == page)
            }) {
                f.times -= 1;
                let (status, retry_after) = (f.status, f.retry_after);
                s.faults.retain(|f| f.times > 0);
                let mut t = error(status, "Simulated failure");
                if status == 429 {
                    t = ResponseTemplate::new(429)
                        .insert_header("Retry-After", retry_after.unwrap_or(1).to_string());
                }
                return t;
            }
        }

        // Authentication: the raw key, no scheme.
        match header(req, "authorization") {
            Some(k) if k == self.key => {}
            _ => {
                return error(401, "Authorization has been denied for this request.");
            }
        }
        let scope = match header(req, "managedorganizationid") {
            None => Scope::Parent,
            Some(id) if id.eq_ignore_ascii_case(&self.ds.parent.id) => Scope::Parent,
            Some(id) => match self.ds.org_index(id) {
                Some(i) => Scope::Org(i),
                None => return error(403, "You do not have access to this organization."),
            },
        };
        let method = req.method.as_str();
        match (method, route.to_ascii_lowercase().as_str()) {
            ("POST", "actionlog/actionloggetbyparametersv2") => self.action_log(req, &body, scope),
            ("POST", "approvalrequest/approvalrequestgetbyparameters") => {
                self.approval_search(&body, scope)
            }
            ("GET", "approvalrequest/approvalrequestgetcount") => self.approval_count(req, scope),
            ("GET", "approvalrequest/approvalrequestgetbyid") => {
                match self.find_approval(query(req, "approvalRequestId"), scope) {
                    Ok(a) => ResponseTemplate::new(200).set_body_json(self.approval_row(a)),
                    Err(t) => *t,
                }
            }
            ("POST", "approvalrequest/approvalrequestupdatefortakeownership") => {
                let id = body
                    .get("approvalRequestId")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                match self.find_approval(id, scope) {
                    Ok(a) => {
                        self.lock().owned.insert(a.id.clone());
                        ResponseTemplate::new(200)
                    }
                    Err(t) => *t,
                }
            }
            ("GET", "approvalrequest/approvalrequestgetpermitapplicationbyid") => {
                match self.find_approval(query(req, "approvalRequestId"), scope) {
                    Ok(a) => ResponseTemplate::new(200).set_body_json(self.permit_dto(a)),
                    Err(t) => *t,
                }
            }
            ("POST", "approvalrequest/approvalrequestpermitapplication") => {
                self.permit(&body, scope)
            }
            ("POST", "approvalrequest/approvalrequestupdateforreject") => self.reject(&body, scope),
            ("POST", "application/applicationgetmatchinglist") => self.matching(&body),
            ("GET", "application/applicationgetresearchdetailsbyid") => {
                let id = query(req, "applicationId").unwrap_or_default();
                match self.ds.apps.iter().find(|a| a.id.eq_ignore_ascii_case(&id) && a.known) {
                    Some(a) => ResponseTemplate::new(200).set_body_json(json!({
                        "productName": a.name,
                        "productDescription": format!("{} ({})", a.name, a.file),
                        "concernRating": if a.categories.contains(&"Remote Access") { 3 } else { 1 },
                        "businessRating": 4,
                        "reviewRating": 4,
                        "potentialRiskStrategyText": null,
                        "remediationText": null,
                        "countriesWhereCodeCompiled": ["US"],
                        "categories": a.categories,
                        "accessLevels": ["File System"],
                    })),
                    None => error(400, "Unable to retrieve application research details"),
                }
            }
            ("POST", "deploypolicyqueue/deploypolicies") => match scope {
                Scope::Org(i) => {
                    self.lock().deploys.push(self.ds.orgs[i].id.clone());
                    ResponseTemplate::new(200)
                }
                Scope::Parent => {
                    self.lock().deploys.push(self.ds.parent.id.clone());
                    ResponseTemplate::new(200)
                }
            },
            ("POST", "computer/computergetbyallparameters") => self.computers(&body, scope),
            ("POST", "organization/organizationgetchildorganizationsbyparameters") => {
                self.children(&body, scope)
            }
            ("POST", "systemaudit/systemauditgetbyparameters") => {
                if parse_date(body.get("startDate")).is_none()
                    || parse_date(body.get("endDate")).is_none()
                {
                    return error(417, "Invalid Date Range");
                }
                let (page, size) = page_args(&body);
                let rows = if page == 1 {
                    json!([{
                        "systemAuditId": null,
                        "emailAddress": "api@msp.example",
                        "action": "Read",
                        "effectiveAction": "Permitted",
                        "ipAddress": "127.0.0.1",
                        "details": {"page": "API", "function": "ActionLogGetByParametersV2", "objectId": null, "details": "Searched the unified audit"},
                        "dateTime": self.ds.config.now.to_rfc3339_opts(SecondsFormat::Millis, true),
                        "organizationId": self.ds.parent.id,
                    }])
                } else {
                    json!([])
                };
                paged(rows.to_string().into_bytes(), page, size, 1)
            }
            ("POST", "policy/policygetbyparameters") => {
                if body.get("filter").is_none() {
                    return error(500, "A problem occurred with the request (0HSIM00000002)");
                }
                let (page, size) = page_args(&body);
                let rows: Vec<Value> = if page == 1 {
                    self.ds
                        .apps
                        .iter()
                        .filter(|a| a.known)
                        .take(size as usize)
                        .map(|a| {
                            json!({
                                "policyId": super::data::guid(self.ds.config.seed, 7, self.ds.apps.iter().position(|x| x.id == a.id).unwrap_or(0) as u64),
                                "name": format!("Permit {}", a.name),
                                "policyActionId": 1,
                                "applicationId": a.id,
                                "organizationId": self.ds.parent.id,
                                "isEnabled": true,
                            })
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let total = rows.len() as u64;
                paged(
                    Value::Array(rows).to_string().into_bytes(),
                    page,
                    size,
                    total,
                )
            }
            _ => error(404, "Not Found"),
        }
    }

    fn action_log(&self, req: &Request, body: &Value, scope: Scope) -> ResponseTemplate {
        let new_search =
            header(req, "usenewsearch").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !new_search {
            // The legacy path: 200 with an empty body, even when data exists.
            return ResponseTemplate::new(200);
        }
        if !body.get("paramsFieldsDto").is_some_and(Value::is_array) {
            return error(500, "A problem occurred with the request (0HSIM00000003)");
        }
        let (Some(from), Some(to)) = (
            parse_date(body.get("startDate")),
            parse_date(body.get("endDate")),
        ) else {
            return error(417, "Invalid Date Range");
        };
        if from > to {
            return error(417, "Invalid Date Range");
        }
        if self.lock().source_table_required && body.get("sourceTableId").is_none() {
            return error(500, "A problem occurred with the request (0HSIM00000007)");
        }
        let child = body
            .get("showChildOrganizations")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let orgs: Vec<usize> = match (scope, self.ds.home) {
            (Scope::Org(i), _) => vec![i],
            // The parent's search with the child flag covers the home organization too.
            (Scope::Parent, _) if child => (0..self.ds.orgs.len()).collect(),
            // Without it: the home organization's own rows.
            (Scope::Parent, Some(home)) if !self.lock().parent_needs_child_flag => vec![home],
            (Scope::Parent, Some(_)) => {
                return error(500, "A problem occurred with the request (0HSIM00000004)")
            }
            (Scope::Parent, None) => {
                return error(500, "A problem occurred with the request (0HSIM00000004)")
            }
        };
        let (page, size) = page_args(body);
        let filter = EventFilter::from_body(body);
        let offset = (page - 1).saturating_mul(size);
        let mut rows = Vec::with_capacity(size.min(5000) as usize);
        let mut total = 0u64;
        let held_back = self.lock().held_back.clone();
        if filter.is_empty() && held_back.is_empty() {
            // Arithmetic paging: generate only the requested rows.
            for &o in &orgs {
                let ev = self.ds.events_in(o, from, to);
                let n = ev.len();
                let lo = offset.saturating_sub(total);
                let hi = (offset + size).saturating_sub(total).min(n);
                for i in lo..hi {
                    if let Some(e) = ev.get(i) {
                        rows.push(self.ds.row(&e));
                    }
                }
                total += n;
            }
        } else {
            for &o in &orgs {
                let ev = self.ds.events_in(o, from, to);
                for i in 0..ev.len() {
                    let Some(e) = ev.get(i) else { continue };
                    let row = self.ds.row(&e);
                    if filter.matches(&row) && !held_back.contains(&row.action_log_id) {
                        if total >= offset && total < offset + size {
                            rows.push(row);
                        }
                        total += 1;
                    }
                }
            }
        }
        let bytes = serde_json::to_vec(&rows).unwrap_or_else(|_| b"[]".to_vec());
        self.lock().action_log_bytes += bytes.len() as u64;
        paged(bytes, page, size, total)
    }

    fn visible(&self, scope: Scope, org: usize, child: bool) -> bool {
        match scope {
            Scope::Org(i) => i == org,
            // The home organization's own objects are always the parent's to see.
            Scope::Parent => child || self.ds.home == Some(org),
        }
    }

    fn approval_search(&self, body: &Value, scope: Scope) -> ResponseTemplate {
        let Some(status) = body.get("statusId").and_then(Value::as_i64) else {
            return error(500, "A problem occurred with the request (0HSIM00000005)");
        };
        let child = body
            .get("showChildOrganizations")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let (page, size) = page_args(body);
        let states = self.lock().status.clone();
        let mut matching: Vec<&SimApproval> = self
            .ds
            .approvals
            .iter()
            .filter(|a| self.visible(scope, a.org, child))
            .filter(|a| states.get(&a.id).map(|s| i64::from(s.0)) == Some(status))
            .collect();
        // Newest first (orderBy datetime, isAscending false), the usual request.
        let ascending = body
            .get("isAscending")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        matching.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
        if ascending {
            matching.reverse();
        }
        page_of(matching, page, size, |a| self.approval_row(a))
    }

    fn approval_count(&self, req: &Request, scope: Scope) -> ResponseTemplate {
        let child = query(req, "includeChildOrganizations")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(true);
        let states = self.lock().status.clone();
        let n = self
            .ds
            .approvals
            .iter()
            .filter(|a| self.visible(scope, a.org, child))
            .filter(|a| states.get(&a.id).map(|s| s.0) == Some(1))
            .count();
        raw_json(200, n.to_string().into_bytes())
    }

    fn find_approval(
        &self,
        id: Option<String>,
        scope: Scope,
    ) -> Result<&SimApproval, Box<ResponseTemplate>> {
        let id = id.unwrap_or_default();
        let a = self
            .ds
            .approvals
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(id.trim()))
            .ok_or_else(|| Box::new(error(400, "Approval request not found")))?;
        let visible = match scope {
            Scope::Org(i) => i == a.org,
            Scope::Parent => self.ds.home == Some(a.org) || !self.lock().owning_org_only,
        };
        if !visible {
            return Err(Box::new(error(400, "Approval request not found")));
        }
        Ok(a)
    }

    fn action_json(&self, a: &SimApproval) -> String {
        let app = &self.ds.apps[a.app];
        let (sha256, legacy) = self.ds.approval_hashes(a);
        let comp = &self.ds.computers[a.computer];
        let user_short = a.user.rsplit('\\').next().unwrap_or(&a.user);
        json!({
            "fullPath": app.path.replace("{user}", user_short),
            "username": a.user,
            "hash": legacy,
            "sha256": sha256,
            "certs": app.cert.map(|c| vec![json!({"sha": super::data::fake_sha256(c)[..40].to_owned(), "subject": c, "validCert": true})]).unwrap_or_default(),
            "serialNumber": null,
            "deviceType": "Workstation",
            "actionType": a.action_type,
            "hostname": comp.name,
        })
        .to_string()
    }

    fn approval_row(&self, a: &SimApproval) -> Value {
        let app = &self.ds.apps[a.app];
        let comp = &self.ds.computers[a.computer];
        let org = &self.ds.orgs[a.org];
        let user_short = a.user.rsplit('\\').next().unwrap_or(&a.user);
        let (status, by) = self.lock().status.get(&a.id).cloned().unwrap_or((1, None));
        json!({
            "approvalRequestId": a.id,
            "organizationId": org.id,
            "organizationName": org.display_name,
            "computerId": comp.id,
            "computerGroupId": comp.group_id,
            "hostname": comp.name,
            "username": a.user,
            "requestor": a.user,
            "requestorEmailAddress": format!("{user_short}@{}.example", org.name),
            "path": app.path.replace("{user}", user_short),
            // The legacy hash only: the SHA-256 and the certificates are inside `json`.
            "hash": self.ds.approval_hashes(a).1,
            "actionType": a.action_type,
            "statusId": status,
            "requestTypeId": 1,
            "requestorReason": b64(&a.reason),
            "ticketId": null,
            "isAssigned": false,
            "dateTime": a.time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "actionDate": null,
            "json": self.action_json(a),
            "approvedBy": by,
            "osType": 1,
            // The tenant this simulator stands in for is on instance "g"; clients parse the
            // instance letter from this URL for the permit's `userInstance`.
            "portalApiUrl": "https://portalapi.g.threatlocker.com/portalapi",
            "applicationId": null,
        })
    }

    fn permit_dto(&self, a: &SimApproval) -> Value {
        let app = &self.ds.apps[a.app];
        let (sha256, legacy) = self.ds.approval_hashes(a);
        let comp = &self.ds.computers[a.computer];
        let org = &self.ds.orgs[a.org];
        let user_short = a.user.rsplit('\\').next().unwrap_or(&a.user);
        let full_path = app.path.replace("{user}", user_short);
        json!({
            "approvalRequest": self.approval_row(a),
            "computerId": comp.id,
            "computerGroupId": comp.group_id,
            "organizationId": org.id,
            "organizationIds": [],
            "osType": 1,
            "userInstance": null,
            "isFromApproval": false,
            "hasOriginApprovalCenter": false,
            "isFromActionLog": false,
            "actionType": a.action_type,
            "isElevationRequest": a.action_type == "elevate",
            "isExecutionRequest": a.action_type != "elevate",
            "fileDetails": {
                "fullPath": full_path,
                "processPath": "c:\\windows\\explorer.exe",
                "hash": legacy,
                "sha256": sha256,
                "certificates": app.cert.map(|c| vec![json!({"sha": null, "subject": c, "validCert": true})]).unwrap_or_default(),
                "createdByProcesses": [],
                "filename": app.file,
                "date": a.time.to_rfc3339_opts(SecondsFormat::Millis, true),
                "hostname": comp.name,
                "username": a.user,
                "organizationName": org.display_name,
                "policyName": null,
                "applicationName": null,
                "requestorReason": a.reason,
                "approvalStatus": "Pending",
                "approvalBy": null,
                "size": 1_482_752,
            },
            "matchingApplications": {
                "hasMatchingApplication": false,
                "useMatchingApplication": false,
                "matchingApplication": null,
                "useExistingApplication": false,
                "existingApplication": null,
                "useNewApplication": false,
                "newApplicationName": null,
            },
            "policyConditions": {
                "useExistingPolicy": false,
                "createManualPolicy": false,
                "manualOptions": [],
                "ruleId": 0,
                "certSubjects": [],
                "createdByProcesses": [],
                "disableProtection": false,
                "includedAdditionalFiles": [],
            },
            "policyLevel": {
                "canUseEntireOrganization": true,
                "toEntireOrganization": false,
                "toComputerGroup": false,
                "selectedComputerGroup": null,
                "toComputer": false,
            },
            "policyExpirationDate": null,
            "elevationStatus": 0,
            "elevationExpiration": 0,
            "elevationExpirationDate": null,
            "organizationHasElevation": true,
            "hasElevation": false,
            "ringfenceActionId": 1,
            "isRingfenced": false,
            "hasRingfencingAsProduct": true,
            "ringfencingOptions": null,
            "networkExclusions": [],
            "fileExclusions": [],
            "adminNotes": null,
            "responseSubject": null,
            "responseReason": null,
            "notifyOnResponse": false,
        })
    }

    fn permit(&self, body: &Value, scope: Scope) -> ResponseTemplate {
        let opaque = || error(500, "A problem occurred with the request (0HSIM00000006)");
        let Some(ar) = body.get("approvalRequest").filter(|v| v.is_object()) else {
            return opaque();
        };
        let id = ar
            .get("approvalRequestId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let a = match self.find_approval(id, scope) {
            Ok(a) => a,
            Err(t) => return *t,
        };
        if let Some((status, by)) = self.lock().status.get(&a.id).cloned() {
            if status != 1 {
                return error(
                    400,
                    &format!(
                        "Approval Request already actioned by {}",
                        by.unwrap_or_default()
                    ),
                );
            }
        }
        // The server rebuilds the context from `json`: it must be the stored text verbatim.
        if ar.get("json").and_then(Value::as_str) != Some(self.action_json(a).as_str()) {
            return opaque();
        }
        // Stripped nulls give an opaque 500.
        for key in [
            "policyExpirationDate",
            "elevationExpirationDate",
            "matchingApplications",
            "policyLevel",
            "fileDetails",
            "organizationIds",
            "policyConditions",
        ] {
            if body.get(key).is_none() {
                return opaque();
            }
        }
        if body
            .get("userInstance")
            .and_then(Value::as_str)
            .is_none_or(|i| i.trim().is_empty())
        {
            return opaque();
        }
        if body.get("isFromApproval") != Some(&Value::Bool(true))
            || body.get("hasOriginApprovalCenter") != Some(&Value::Bool(true))
        {
            return opaque();
        }
        let level = &body["policyLevel"];
        let flag = |k: &str| level.get(k).and_then(Value::as_bool).unwrap_or(false);
        if flag("toComputer") {
            return error(
                417,
                "Provided applies to ID does not associate with a known OS type",
            );
        }
        let scope_name = if flag("toEntireOrganization") {
            "organization"
        } else if flag("toComputerGroup") {
            "group"
        } else {
            "computer"
        };
        let m = &body["matchingApplications"];
        let use_flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
        let chosen = [
            use_flag("useMatchingApplication"),
            use_flag("useExistingApplication"),
            use_flag("useNewApplication"),
        ];
        if chosen.iter().filter(|b| **b).count() != 1 {
            return opaque();
        }
        let mut application_id = None;
        if use_flag("useNewApplication") {
            if m.get("newApplicationName")
                .and_then(Value::as_str)
                .is_none()
            {
                return error(417, "Must enter a name for a new application");
            }
        } else {
            let key = if use_flag("useMatchingApplication") {
                "matchingApplication"
            } else {
                "existingApplication"
            };
            let Some(app) = m.get(key).filter(|v| v.is_object()) else {
                return opaque();
            };
            let master = app
                .get("organizationName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case("master"));
            if master && scope_name != "organization" {
                return error(401, "Missing the '' permission");
            }
            application_id = app
                .get("applicationId")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let mut s = self.lock();
        s.status
            .insert(a.id.clone(), (4, Some("api@msp.example".to_owned())));
        s.permits.push(PermitRecord {
            approval_request_id: a.id.clone(),
            organization_id: self.ds.orgs[a.org].id.clone(),
            scope: scope_name,
            application_id,
        });
        ResponseTemplate::new(200)
    }

    fn reject(&self, body: &Value, scope: Scope) -> ResponseTemplate {
        let Some(dtos) = body.get("approvalRequestDtos").and_then(Value::as_array) else {
            return error(400, "One or more validation errors occurred.");
        };
        let mut ids = Vec::new();
        for d in dtos {
            let id = d
                .get("approvalRequestId")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match self.find_approval(id, scope) {
                Ok(a) => ids.push(a.id.clone()),
                Err(t) => return *t,
            }
        }
        let mut s = self.lock();
        for id in &ids {
            if let Some((status, by)) = s.status.get(id).cloned() {
                if status != 1 {
                    return error(
                        400,
                        &format!(
                            "Approval Request already actioned by {}",
                            by.unwrap_or_default()
                        ),
                    );
                }
            }
        }
        for id in ids {
            s.status.insert(
                id.clone(),
                (REJECTED_STATUS, Some("api@msp.example".to_owned())),
            );
            s.rejects.push(id);
        }
        ResponseTemplate::new(200)
    }

    fn matching(&self, body: &Value) -> ResponseTemplate {
        let s = |k: &str| {
            body.get(k)
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .filter(|v| !v.is_empty())
        };
        let (sha, hash) = (s("sha256"), s("hash"));
        // Besides exact hashes, the portal matches a file to an application by its name (and
        // signer): a new version of a known application still matches it.
        let file = s("filename")
            .or_else(|| s("path").and_then(|p| p.rsplit(['\\', '/']).next().map(str::to_owned)));
        let org = body
            .get("approvalRequestId")
            .and_then(Value::as_str)
            .and_then(|id| self.ds.approvals.iter().find(|a| a.id == id))
            .map(|a| a.org);
        let apps: Vec<Value> = self
            .ds
            .apps
            .iter()
            .filter(|a| a.known)
            .filter(|a| {
                sha.as_deref() == Some(a.sha256.as_str())
                    || hash.as_deref() == Some(a.sha256.as_str())
                    || hash.as_deref() == Some(a.hash.as_str())
                    || file.as_deref() == Some(a.file)
            })
            .map(|a| {
                let (oid, oname) = if a.built_in {
                    (self.ds.parent.id.clone(), "master".to_owned())
                } else {
                    let o = org.map_or(&self.ds.parent, |o| &self.ds.orgs[o]);
                    (o.id.clone(), o.display_name.clone())
                };
                json!({
                    "applicationId": a.id,
                    "name": a.name,
                    "applicationName": a.name,
                    "organizationId": oid,
                    "organizationName": oname,
                    "osType": 1,
                    "isBuiltIn": a.built_in,
                })
            })
            .collect();
        let has = !apps.is_empty();
        ResponseTemplate::new(200)
            .set_body_json(json!({"matchingApplications": apps, "hasMatching": has}))
    }

    fn computers(&self, body: &Value, scope: Scope) -> ResponseTemplate {
        let child = body
            .get("childOrganizations")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mode = body
            .get("action")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("All Computer Mode"));
        let (page, size) = page_args(body);
        let all: Vec<_> = self
            .ds
            .computers
            .iter()
            .filter(|c| self.visible(scope, c.org, child))
            .filter(|c| mode.is_none_or(|m| m.eq_ignore_ascii_case(c.mode)))
            .collect();
        page_of(all, page, size, |c| {
            json!({
                "computerId": c.id,
                "computerName": c.name,
                "hostname": c.name,
                "group": c.group,
                "computerGroupId": c.group_id,
                "organizationId": self.ds.orgs[c.org].id,
                "osType": 1,
                "action": c.mode,
                "mode": c.mode,
                "maintenanceTypeId": match c.mode { "MonitorOnly" => 1, "Installation" => 2, "Learning" => 3, _ => 0 },
                "maintenanceEndDate": null,
                "isIsolated": false,
                "isLockedOut": false,
                "isTamperProtectionDisabled": false,
                "lastCheckin": (self.ds.config.now - chrono::Duration::minutes(7)).to_rfc3339_opts(SecondsFormat::Micros, true),
                "threatLockerVersion": "10.3.4",
            })
        })
    }

    fn children(&self, body: &Value, scope: Scope) -> ResponseTemplate {
        let (page, size) = page_args(body);
        let search = body
            .get("searchText")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let all: Vec<_> = match scope {
            Scope::Parent => self
                .ds
                .orgs
                .iter()
                .filter(|o| !o.home)
                .filter(|o| {
                    search.is_empty() || o.display_name.to_ascii_lowercase().contains(&search)
                })
                .collect(),
            Scope::Org(_) => Vec::new(),
        };
        page_of(all, page, size, |o| {
            json!({
                "organizationId": o.id,
                "name": o.name,
                "displayName": o.display_name,
                "dateAdded": "2023-02-01T15:22:10Z",
                "computerCount": o.computers.len(),
            })
        })
    }
}

/// Filters of the action-log search the simulator honours besides the date range.
#[derive(Debug, Default)]
struct EventFilter {
    action_ids: Option<Vec<i32>>,
    monitor_only: Option<bool>,
    action_types: Option<Vec<String>>,
    hostname: Option<String>,
    source_table: Option<i64>,
}

impl EventFilter {
    fn from_body(body: &Value) -> Self {
        let mut f = Self::default();
        match body.get("actionId").and_then(Value::as_i64) {
            Some(99) => f.action_ids = Some(vec![2, 3]),
            Some(0) | None => {}
            Some(n) => f.action_ids = Some(vec![n as i32]),
        }
        if f.action_ids.as_deref() == Some(&[2, 3]) {
            if let Some(entries) = body.get("paramsFieldsDto").and_then(Value::as_array) {
                for e in entries {
                    if e.get("name").and_then(Value::as_str) == Some("MonitorOnly") {
                        f.monitor_only = e
                            .get("value")
                            .and_then(Value::as_str)
                            .map(|v| v.eq_ignore_ascii_case("true"));
                    }
                }
            }
        }
        let mut types: Vec<String> = body
            .get("actionTypes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if let Some(t) = body
            .get("actionType")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            types.push(t.to_ascii_lowercase());
        }
        if !types.is_empty() {
            f.action_types = Some(types);
        }
        f.source_table = body.get("sourceTableId").and_then(Value::as_i64);
        f.hostname = body
            .get("hostname")
            .and_then(Value::as_str)
            .filter(|h| !h.is_empty())
            .map(str::to_ascii_lowercase);
        f
    }

    fn is_empty(&self) -> bool {
        self.action_ids.is_none()
            && self.action_types.is_none()
            && self.hostname.is_none()
            && self.source_table.is_none()
    }

    fn matches(&self, row: &super::data::ActionLogRowOut) -> bool {
        if let Some(table) = self.source_table {
            let deny = matches!(row.action_id, 2 | 3);
            let in_table = match table {
                1 => !deny,
                2 => deny,
                _ => false,
            };
            if !in_table {
                return false;
            }
        }
        if let Some(ids) = &self.action_ids {
            if !ids.contains(&row.action_id) {
                return false;
            }
        }
        if let Some(m) = self.monitor_only {
            if row.is_monitor_mode != m {
                return false;
            }
        }
        if let Some(types) = &self.action_types {
            if !types.iter().any(|t| t == row.action_type) {
                return false;
            }
        }
        if let Some(h) = &self.hostname {
            let host = row.hostname.to_ascii_lowercase();
            let ok = match h.strip_suffix('*') {
                Some(prefix) => host.starts_with(prefix),
                None => &host == h,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}
