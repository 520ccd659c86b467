//! Steps 1 and 2: retrieve events, computers and organizations across the whole scope — the
//! home organization (the one the API key belongs to, or `organization_id`), whose computers
//! are real machines too, and every child organization — and the pending approval requests
//! with their matching application and its research categories. Bounded concurrency; the
//! client's shared rate limit paces every call.
//!
//! The daily report ([`crate::monitor::report::gather`]) reads through the same two functions,
//! [`retrieve`] and [`pending_approvals`], so a report and a run see the same data.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use policy_engine::PendingApproval;
use threatlocker_api::{
    ActionLogRow, Application, ApplicationId, ApprovalRequest, ApprovalStatus, Client, Computer,
    MatchQuery, Organization, OrganizationId, ResearchDetails, RowRejections,
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
    /// Every child organization (for names), in or out of scope, and the home organization
    /// once its rows or computers name it.
    pub organizations: Vec<Organization>,
    /// The action-log rows of the organizations in scope.
    pub events: Vec<ActionLogRow>,
    /// The computers in scope.
    pub computers: Vec<Computer>,
    /// Rows of the organizations in scope that failed validation
    /// ([`threatlocker_api::validate_action_log_row`]): counted, not evaluated.
    pub rejected: RowRejections,
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
        Err(e) => out.errors.push(format!(
            "listing child organizations: {e}",
            e = crate::errors::ErrorChain(&e)
        )),
    }
    if !read_log {
        return out;
    }
    // The home organization's own rows are read in every mode (at the client's own scope),
    // unless a company filter leaves it out.
    let home = match (&scope.company_id, client.organization()) {
        (None, _) => true,
        (Some(_), Some(home)) => scope.contains(Some(home)),
        (Some(company), None) => scope.companies.catch_all() == Some(company.as_str()),
    };
    let targets = Targets {
        home,
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
    // The home organization is still read (it may be the one in scope).
    let children: BTreeSet<OrganizationId> = out
        .organizations
        .iter()
        .filter_map(|o| o.organization_id.clone())
        .collect();
    let (mut rows, mut errors) = events(
        client,
        &targets,
        &children,
        start,
        end,
        action_types,
        scope.concurrency,
    )
    .await;
    out.errors.append(&mut errors);
    match computers(client, scope.include_child_organizations).await {
        Ok(c) => out.computers = c,
        Err(e) => out.errors.push(format!(
            "listing computers: {e}",
            e = crate::errors::ErrorChain(&e)
        )),
    }
    rows.retain(|r| scope.contains(r.organization_id.as_ref()));
    // The window ends at the run's start: that is the `now` rows are judged against.
    out.rejected.filter(&mut rows, end);
    if !out.rejected.is_empty() {
        warn!(
            rejected = out.rejected.total,
            "action-log rows rejected: {}", out.rejected
        );
    }
    out.events = rows;
    out.computers
        .retain(|c| scope.contains(c.organization_id.as_ref()));
    add_home_organization(&mut out);
    out
}

/// Names the organizations that rows or computers belong to but the child listing does not
/// (the home organization), from the rows' `organizationName`, so reports name the home
/// organization like any other.
fn add_home_organization(out: &mut Retrieved) {
    let mut known: BTreeSet<OrganizationId> = out
        .organizations
        .iter()
        .flat_map(|o| o.flatten())
        .filter_map(|o| o.organization_id.clone())
        .collect();
    let mut found: BTreeMap<OrganizationId, Option<String>> = BTreeMap::new();
    for r in &out.events {
        if let Some(id) = r.organization_id.as_ref().filter(|id| !known.contains(*id)) {
            let name = found.entry(id.clone()).or_default();
            if name.is_none() {
                name.clone_from(&r.organization_name);
            }
        }
    }
    for c in &out.computers {
        if let Some(id) = c.organization_id.as_ref().filter(|id| !known.contains(*id)) {
            found.entry(id.clone()).or_default();
        }
    }
    for (id, name) in found {
        known.insert(id.clone());
        let mut org = Organization::default();
        org.organization_id = Some(id);
        org.display_name = name;
        out.organizations.push(org);
    }
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
    /// Read the home organization's own rows (the client's scope, no child flag) besides
    /// `orgs`.
    home: bool,
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

/// Reads the action log of every organization in scope, `concurrency` organizations at a time,
/// and the home organization's own rows.
async fn events(
    client: &Client,
    scope: &Targets,
    children: &BTreeSet<OrganizationId>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
    concurrency: usize,
) -> (Vec<ActionLogRow>, Vec<String>) {
    let search = |c: Client, child: bool| read_log(c, child, start, end, action_types);
    if scope.orgs.is_empty() && !scope.include_children && !scope.home {
        debug!("no organization is in scope; the action log is not read");
        return (Vec::new(), Vec::new());
    }
    if scope.orgs.is_empty() {
        return match search(client.clone(), scope.include_children).await {
            Ok(rows) => (rows, Vec::new()),
            Err(e) if !scope.include_children => {
                // A parent key's search without the child flag may answer 500 (reference
                // §1.3): read with the flag and keep the home's own rows.
                warn!(error = %crate::errors::ErrorChain(&e), "reading the home organization's rows failed; retrying with the child flag");
                match home_rows_with_child_flag(client, children, &search).await {
                    Ok(rows) => (rows, Vec::new()),
                    Err(e) => (
                        Vec::new(),
                        vec![format!(
                            "reading the action log: {}",
                            crate::errors::ErrorChain(&e)
                        )],
                    ),
                }
            }
            Err(e) => (
                Vec::new(),
                vec![format!(
                    "reading the action log: {}",
                    crate::errors::ErrorChain(&e)
                )],
            ),
        };
    }
    let home = async {
        if !scope.home {
            return Ok(Vec::new());
        }
        match search(client.clone(), false).await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                warn!(error = %e, "reading the home organization's rows failed; retrying with the child flag");
                home_rows_with_child_flag(client, children, &search).await
            }
        }
    };
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
    match home.await {
        Ok(mut v) => {
            debug!(rows = v.len(), "home organization's action log read");
            rows.append(&mut v);
        }
        Err(e) => errors.push(format!(
            "reading the action log of the home organization: {e}"
        )),
    }
    for (org, r) in results {
        match r {
            Ok(mut v) => {
                debug!(organization = %org, rows = v.len(), "action log read");
                rows.append(&mut v);
            }
            Err(e) => {
                warn!(organization = %org, error = %crate::errors::ErrorChain(&e), "reading the action log failed");
                errors.push(format!(
                    "reading the action log of organization {org}: {e}",
                    e = crate::errors::ErrorChain(&e)
                ));
            }
        }
    }
    (rows, errors)
}

/// The home organization's own rows through a search with the child flag: the rows of no listed
/// child organization.
async fn home_rows_with_child_flag<F, Fut>(
    client: &Client,
    children: &BTreeSet<OrganizationId>,
    search: &F,
) -> threatlocker_api::Result<Vec<ActionLogRow>>
where
    F: Fn(Client, bool) -> Fut,
    Fut: std::future::Future<Output = threatlocker_api::Result<Vec<ActionLogRow>>>,
{
    let mut rows = search(client.clone(), true).await?;
    rows.retain(|r| {
        r.organization_id
            .as_ref()
            .is_none_or(|o| !children.contains(o))
    });
    Ok(rows)
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
                vec![format!(
                    "reading pending approval requests: {e}",
                    e = crate::errors::ErrorChain(&e)
                )],
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
                    warn!(application = %id, error = %crate::errors::ErrorChain(&e), "research-details lookup failed");
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
            warn!(request = ?request.approval_request_id, error = %crate::errors::ErrorChain(&e), "matching-list lookup failed");
            (request, None)
        }
    }
}
