//! Steps 1 and 2: retrieve events, computers and organizations across every child
//! organization, and the pending approval requests with their matching application and its
//! research categories. Bounded concurrency; the client's shared rate limit paces every call.
//!
//! The daily report ([`crate::report::gather`]) reads through the same two functions,
//! [`retrieve`] and [`pending_approvals`], so a report and a run see the same data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use policy_engine::PendingApproval;
use threatlocker_api::{
    ActionLogRow, Application, ApplicationId, ApprovalRequest, ApprovalStatus, Client, Computer,
    MatchQuery, Organization, OrganizationId, ResearchDetails,
};
use tracing::{debug, warn};

use crate::config::{CompanyMap, Config};

/// Which organizations a run (or a report) covers: the workflow's scope rules.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Scope {
    /// Read every child organization.
    pub include_child_organizations: bool,
    /// Only organizations mapped to this PSA company (`workflow.company_id`).
    pub company_id: Option<String>,
    /// ThreatLocker organization → PSA company.
    pub companies: CompanyMap,
    /// Organizations (or approval lookups) read at once.
    pub concurrency: usize,
}

impl Scope {
    /// Every child organization, [`super::DEFAULT_CONCURRENCY`] at a time.
    pub fn all() -> Self {
        Self {
            include_child_organizations: true,
            company_id: None,
            companies: CompanyMap::default(),
            concurrency: super::DEFAULT_CONCURRENCY,
        }
    }

    /// The scope of a configuration file (`[threatlocker]`, `[workflow] company_id`,
    /// `[companies]`).
    pub fn from_config(config: &Config) -> Self {
        let t = config.threatlocker();
        Self {
            include_child_organizations: t.include_child_organizations,
            company_id: config.workflow().company_id.clone(),
            companies: config.companies().clone(),
            concurrency: t
                .max_concurrency
                .unwrap_or(super::DEFAULT_CONCURRENCY)
                .max(1),
        }
    }

    /// Whether a row of `org` is in scope (everything is when no `company_id` is set).
    pub fn contains(&self, org: Option<&OrganizationId>) -> bool {
        match &self.company_id {
            None => true,
            Some(company) => org
                .and_then(|o| self.companies.company_for(o.as_str()))
                .is_some_and(|c| c == company),
        }
    }
}

/// What step 1 read.
#[derive(Debug, Default)]
pub(crate) struct Retrieved {
    /// Every child organization (for names), in or out of scope.
    pub organizations: Vec<Organization>,
    /// The action-log rows of the organizations in scope.
    pub events: Vec<ActionLogRow>,
    /// The computers in scope.
    pub computers: Vec<Computer>,
    /// What failed, as messages for the report.
    pub errors: Vec<String>,
}

/// Step 1: the organizations, then (with `read_log`) the action log of each organization in
/// scope and the computers, all filtered to `scope`. Failures become messages; what could be
/// read is returned.
pub(crate) async fn retrieve(
    client: &Client,
    scope: &Scope,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
    read_log: bool,
) -> Retrieved {
    let mut out = Retrieved::default();
    match organizations(client).await {
        Ok(o) => out.organizations = o,
        Err(e) => out.errors.push(format!("listing child organizations: {e}")),
    }
    if !read_log {
        return out;
    }
    let targets = Targets {
        orgs: if scope.include_child_organizations {
            out.organizations
                .iter()
                .filter_map(|o| o.organization_id.clone())
                .filter(|o| scope.contains(Some(o)))
                .collect()
        } else {
            Vec::new()
        },
        include_children: scope.include_child_organizations && out.organizations.is_empty(),
    };
    // The organizations were listed but the company filter keeps none of them: nothing to
    // read. Falling through to a parent-scope search without the child flag would only ask
    // for rows the filter drops (and a parent key gets HTTP 500 for it, reference §1.3).
    let nothing_in_scope = scope.include_child_organizations
        && !out.organizations.is_empty()
        && targets.orgs.is_empty();
    let (mut rows, mut errors) = if nothing_in_scope {
        debug!("no child organization is in scope; the action log is not read");
        (Vec::new(), Vec::new())
    } else {
        events(
            client,
            &targets,
            start,
            end,
            action_types,
            scope.concurrency,
        )
        .await
    };
    out.errors.append(&mut errors);
    match computers(client, scope.include_child_organizations).await {
        Ok(c) => out.computers = c,
        Err(e) => out.errors.push(format!("listing computers: {e}")),
    }
    rows.retain(|r| scope.contains(r.organization_id.as_ref()));
    out.events = rows;
    out.computers
        .retain(|c| scope.contains(c.organization_id.as_ref()));
    out
}

/// Step 2: the pending approval requests in scope, enriched (see [`approvals`]).
pub(crate) async fn pending_approvals(
    client: &Client,
    scope: &Scope,
) -> (Vec<PendingApproval>, Vec<String>) {
    let (mut found, errors) =
        approvals(client, scope.include_child_organizations, scope.concurrency).await;
    found.retain(|a| scope.contains(a.request.organization_id.as_ref()));
    (found, errors)
}

/// Which organizations the action log is read for.
#[derive(Debug, Clone)]
struct Targets {
    /// Organizations to read one by one (`managedOrganizationId`), or empty to read at the
    /// client's own scope.
    orgs: Vec<OrganizationId>,
    /// Read children through the child-organization flags (parent scope).
    include_children: bool,
}

/// Lists the child organizations (all descendants) visible to the client.
async fn organizations(client: &Client) -> threatlocker_api::Result<Vec<Organization>> {
    let mut out: Vec<Organization> = client
        .organizations()
        .children()
        .include_all_children(true)
        .stream()
        .try_collect()
        .await?;
    // Some tenants nest descendants inside their parent; flatten and de-duplicate.
    let mut seen = BTreeSet::new();
    let mut flat = Vec::with_capacity(out.len());
    for org in out.drain(..) {
        for o in org.flatten() {
            if let Some(id) = o.organization_id.clone() {
                if seen.insert(id) {
                    flat.push(o.clone());
                }
            }
        }
    }
    Ok(flat)
}

/// Reads the action log of every organization in scope, `concurrency` organizations at a time.
async fn events(
    client: &Client,
    scope: &Targets,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
    concurrency: usize,
) -> (Vec<ActionLogRow>, Vec<String>) {
    let search = |c: Client, child: bool| read_log(c, child, start, end, action_types);
    if scope.orgs.is_empty() {
        return match search(client.clone(), scope.include_children).await {
            Ok(rows) => (rows, Vec::new()),
            Err(e) => (Vec::new(), vec![format!("reading the action log: {e}")]),
        };
    }
    let results: Vec<(OrganizationId, threatlocker_api::Result<Vec<ActionLogRow>>)> =
        stream::iter(scope.orgs.iter().cloned())
            .map(|org| {
                let rows = search(client.with_organization(org.clone()), false);
                async move { (org, rows.await) }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    for (org, r) in results {
        match r {
            Ok(mut v) => {
                debug!(organization = %org, rows = v.len(), "action log read");
                rows.append(&mut v);
            }
            Err(e) => {
                warn!(organization = %org, error = %e, "reading the action log failed");
                errors.push(format!("reading the action log of organization {org}: {e}"));
            }
        }
    }
    (rows, errors)
}

/// One action-log read (every page) at the client's scope, tolerant of both readings of
/// `sourceTableId` (see `AuditSearch::stream`).
async fn read_log(
    client: Client,
    child: bool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
) -> threatlocker_api::Result<Vec<ActionLogRow>> {
    let mut s = client.audit().search(start, end).child_organizations(child);
    if !action_types.is_empty() {
        s = s.action_types(action_types.to_vec());
    }
    s.stream().try_collect().await
}

/// Reads every computer in scope (for the computer modes).
async fn computers(
    client: &Client,
    include_children: bool,
) -> threatlocker_api::Result<Vec<Computer>> {
    client
        .computers()
        .list()
        .child_organizations(include_children)
        .stream()
        .try_collect()
        .await
}

/// Reads the pending approval requests, then for each its matching application and that
/// application's research categories (`concurrency` lookups at a time; research once per
/// distinct application). A lookup that fails leaves the request without research, which sends
/// it to manual review.
async fn approvals(
    client: &Client,
    include_children: bool,
    concurrency: usize,
) -> (Vec<PendingApproval>, Vec<String>) {
    let requests: Vec<ApprovalRequest> = match client
        .approvals()
        .search(ApprovalStatus::Pending)
        .child_organizations(include_children)
        .stream()
        .try_collect()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            return (
                Vec::new(),
                vec![format!("reading pending approval requests: {e}")],
            )
        }
    };
    // Matching application per request, then research once per distinct application (many
    // requests name the same application: Zoom across every client).
    let matched: Vec<(ApprovalRequest, Option<Application>)> = stream::iter(requests)
        .map(|request| matching_application(client, request))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut wanted: BTreeMap<ApplicationId, Option<OrganizationId>> = BTreeMap::new();
    for (request, app) in &matched {
        if let Some(id) = app.as_ref().and_then(|a| a.application_id.clone()) {
            wanted
                .entry(id)
                .or_insert_with(|| request.organization_id.clone());
        }
    }
    let research: BTreeMap<ApplicationId, ResearchDetails> = stream::iter(wanted)
        .map(|(id, org)| async move {
            let scoped = match org {
                Some(org) => client.with_organization(org),
                None => client.clone(),
            };
            match scoped.applications().research_details(&id).await {
                Ok(r) => Some((id, r)),
                Err(e) => {
                    warn!(application = %id, error = %e, "research-details lookup failed");
                    None
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(|x| async move { x })
        .collect()
        .await;
    let enriched = matched
        .into_iter()
        .map(|(request, app)| {
            let mut pending = PendingApproval::new(request);
            if let Some(app) = app {
                if let Some(r) = app.application_id.as_ref().and_then(|id| research.get(id)) {
                    pending = pending.with_research(r.clone());
                }
                pending = pending.with_application(app);
            }
            pending
        })
        .collect();
    (enriched, Vec::new())
}

/// The request's matching application (the tenant's own preferred over a built-in, as the
/// permit does); `None` when there is none or the lookup failed (the request then goes to
/// manual review).
async fn matching_application(
    client: &Client,
    request: ApprovalRequest,
) -> (ApprovalRequest, Option<Application>) {
    let scoped = match &request.organization_id {
        Some(org) => client.with_organization(org.clone()),
        None => client.clone(),
    };
    match scoped
        .applications()
        .matching_list(MatchQuery::for_request(&request))
        .await
    {
        Ok(m) => {
            let mut apps = m.matching_applications;
            apps.sort_by_key(|a| a.is_master_owned());
            (request, apps.into_iter().next())
        }
        Err(e) => {
            warn!(request = ?request.approval_request_id, error = %e, "matching-list lookup failed");
            (request, None)
        }
    }
}
