//! Steps 1 and 2: retrieve events, computers and organizations across every child
//! organization, and the pending approval requests with their matching application and its
//! research categories. Bounded concurrency; the client's shared rate limit paces every call.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use policy_engine::PendingApproval;
use threatlocker_api::{
    ActionLogRow, ApprovalRequest, ApprovalStatus, Client, Computer, MatchQuery, Organization,
    OrganizationId,
};
use tracing::{debug, warn};

/// Which organizations a run covers.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// Organizations to read one by one (`managedOrganizationId`), or empty to read at the
    /// client's own scope.
    pub orgs: Vec<OrganizationId>,
    /// Read children through the child-organization flags (parent scope).
    pub include_children: bool,
}

/// Lists the child organizations (all descendants) visible to the client.
pub(crate) async fn organizations(client: &Client) -> threatlocker_api::Result<Vec<Organization>> {
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
pub(crate) async fn events(
    client: &Client,
    scope: &Scope,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
    concurrency: usize,
) -> (Vec<ActionLogRow>, Vec<String>) {
    let search = |c: Client, child: bool| {
        let mut s = c.audit().search(start, end).child_organizations(child);
        if !action_types.is_empty() {
            s = s.action_types(action_types.to_vec());
        }
        s.stream()
    };
    if scope.orgs.is_empty() {
        return match search(client.clone(), scope.include_children)
            .try_collect::<Vec<_>>()
            .await
        {
            Ok(rows) => (rows, Vec::new()),
            Err(e) => (Vec::new(), vec![format!("reading the action log: {e}")]),
        };
    }
    let results: Vec<(OrganizationId, threatlocker_api::Result<Vec<ActionLogRow>>)> =
        stream::iter(scope.orgs.iter().cloned())
            .map(|org| {
                let rows = search(client.with_organization(org.clone()), false).try_collect();
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

/// Reads every computer in scope (for the computer modes).
pub(crate) async fn computers(
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
/// application's research categories (`concurrency` requests at a time). A lookup that fails
/// leaves the request without research, which sends it to manual review.
pub(crate) async fn approvals(
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
    let enriched: Vec<PendingApproval> = stream::iter(requests)
        .map(|request| enrich(client, request))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    (enriched, Vec::new())
}

async fn enrich(client: &Client, request: ApprovalRequest) -> PendingApproval {
    let scoped = match &request.organization_id {
        Some(org) => client.with_organization(org.clone()),
        None => client.clone(),
    };
    let matching = match scoped
        .applications()
        .matching_list(MatchQuery::for_request(&request))
        .await
    {
        Ok(m) => m,
        Err(e) => {
            warn!(request = ?request.approval_request_id, error = %e, "matching-list lookup failed");
            return PendingApproval::new(request);
        }
    };
    // Prefer the tenant's own application over a built-in one, as the permit does.
    let mut apps = matching.matching_applications;
    apps.sort_by_key(|a| a.is_master_owned());
    let Some(app) = apps.into_iter().next() else {
        return PendingApproval::new(request);
    };
    let mut pending = PendingApproval::new(request);
    if let Some(id) = app.application_id.clone() {
        match scoped.applications().research_details(&id).await {
            Ok(r) => pending = pending.with_research(r),
            Err(e) => warn!(application = %id, error = %e, "research-details lookup failed"),
        }
    }
    pending.with_application(app)
}
