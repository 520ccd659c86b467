//! Steps 1 and 2: retrieve events, computers and organizations across the whole scope — the
//! home organization (the one the API key belongs to, or `organization_id`), whose computers
//! are real machines too, and every child organization — and the pending approval requests
//! with their matching application and its research categories. Bounded concurrency; the
//! client's shared rate limit paces every call.
//!
//! The daily report (`crate::monitor::report`) reads through the same functions
//! ([`list_scope`], [`read_events`], [`computers_in_scope`], [`pending_approvals`]), so a
//! report and a run see the same data.

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
/// The organizations a run sees and which of them the action log is read for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listed {
    /// Every child organization (for names), in or out of scope.
    pub organizations: Vec<Organization>,
    /// Which organizations the action log is read for.
    pub targets: Targets,
    /// What failed, as messages for the report.
    pub errors: Vec<String>,
}

/// Lists the organizations and decides which the action log is read for.
pub(crate) async fn list_scope(client: &Client, scope: &Scope) -> Listed {
    let mut out = Listed::default();
    match organizations(client).await {
        Ok(o) => out.organizations = o,
        Err(e) => out.errors.push(format!(
            "listing child organizations: {e}",
            e = crate::errors::ErrorChain(&e)
        )),
    }
    // The home organization's own rows are read in every mode (at the client's own scope),
    // unless a company filter leaves it out.
    let home = match (&scope.company_id, client.organization()) {
        (None, _) => true,
        (Some(_), Some(home)) => scope.contains(Some(home)),
        (Some(company), None) => scope.companies.catch_all() == Some(company.as_str()),
    };
    // When the organizations were listed but the company filter keeps none of them, no child
    // is read: a parent-scope search without the child flag would only ask for rows the filter
    // drops (and a parent key gets HTTP 500 for it, reference §1.3). The home organization is
    // still read (it may be the one in scope).
    out.targets = Targets {
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
        children: out
            .organizations
            .iter()
            .filter_map(|o| o.organization_id.clone())
            .collect(),
    };
    out
}

/// The computers in scope (for their modes), or the error as a message.
pub(crate) async fn computers_in_scope(
    client: &Client,
    scope: &Scope,
) -> (Vec<Computer>, Vec<String>) {
    match computers(client, scope.include_child_organizations).await {
        Ok(mut c) => {
            c.retain(|c| scope.contains(c.organization_id.as_ref()));
            (c, Vec::new())
        }
        Err(e) => (
            Vec::new(),
            vec![format!(
                "listing computers: {e}",
                e = crate::errors::ErrorChain(&e)
            )],
        ),
    }
}

/// Names the organizations that rows or computers belong to but the child listing does not
/// (the home organization), from the rows' `organizationName` (`unlisted`, see
/// [`EventsRead::unlisted`]), so reports name the home organization like any other.
pub(crate) fn add_home_organization(
    organizations: &mut Vec<Organization>,
    unlisted: BTreeMap<OrganizationId, Option<String>>,
    computers: &[Computer],
) {
    let known: BTreeSet<OrganizationId> = organizations
        .iter()
        .flat_map(|o| o.flatten())
        .filter_map(|o| o.organization_id.clone())
        .collect();
    let mut found: BTreeMap<OrganizationId, Option<String>> = unlisted
        .into_iter()
        .filter(|(id, _)| !known.contains(id))
        .collect();
    for c in computers {
        if let Some(id) = c.organization_id.as_ref().filter(|id| !known.contains(*id)) {
            found.entry(id.clone()).or_default();
        }
    }
    for (id, name) in found {
        let mut org = Organization::default();
        org.organization_id = Some(id);
        org.display_name = name;
        organizations.push(org);
    }
}

/// What [`read_events`] saw besides the rows it passed on.
#[derive(Debug, Default)]
pub(crate) struct EventsRead {
    /// What failed, as messages; every other organization was read in full.
    pub errors: Vec<String>,
    /// Rows in scope that failed validation ([`threatlocker_api::validate_action_log_row`]):
    /// counted here, not passed on.
    pub rejected: RowRejections,
    /// Organizations that rows passed on belong to but the child listing does not (the home
    /// organization), with the first `organizationName` seen (for [`add_home_organization`]).
    pub unlisted: BTreeMap<OrganizationId, Option<String>>,
}

/// One read of the action log: an organization, the client's own scope with or without the
/// child flag, or the home organization's own rows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Organization(OrganizationId),
    Scope { child: bool },
    Home,
}

/// Streams the action-log rows of every target organization over `ranges` into `on_row`,
/// de-duplicated by id, validated against `now` (rows of organizations out of scope are
/// dropped, rejected rows counted), `scope.concurrency` organizations at a time under the
/// client's shared rate limit: rows are never all held at once.
pub(crate) async fn read_events(
    client: &Client,
    scope: &Scope,
    listed: &Listed,
    ranges: &[(DateTime<Utc>, DateTime<Utc>)],
    action_types: &[String],
    now: DateTime<Utc>,
    on_row: &mut (dyn FnMut(ActionLogRow) + Send),
) -> EventsRead {
    let mut out = EventsRead::default();
    let targets = &listed.targets;
    let mut jobs: Vec<Job> = if !targets.orgs.is_empty() {
        let mut v: Vec<Job> = targets
            .orgs
            .iter()
            .map(|o| Job::Organization(o.clone()))
            .collect();
        if targets.home {
            v.push(Job::Home);
        }
        v
    } else if targets.include_children {
        vec![Job::Scope { child: true }]
    } else if targets.home {
        // Without the child flag: a parent key may answer 500, then read as the home.
        vec![Job::Home]
    } else {
        Vec::new()
    };
    if ranges.is_empty() {
        jobs.clear();
    }
    if jobs.is_empty() {
        debug!("no organization is in scope or nothing to read; the action log is not read");
        return out;
    }
    let mut progress = Progress::new(jobs.len());
    let ranges = ranges.to_vec();
    let types = action_types.to_vec();
    let children = std::sync::Arc::new(targets.children.clone());
    let streams = stream::iter(jobs).map(move |job| {
        let label = job.clone();
        let done = job.clone();
        job_rows(
            client.clone(),
            job,
            ranges.clone(),
            types.clone(),
            std::sync::Arc::clone(&children),
        )
        .map(move |r| Item::Row(label.clone(), r))
        .chain(stream::once(async move { Item::Done(done) }))
        .boxed()
    });
    let mut items = streams.flatten_unordered(scope.concurrency.max(1));
    let mut failed: BTreeMap<Job, String> = BTreeMap::new();
    // De-duplication by row id, per read (a row belongs to one organization): each set is
    // dropped when its read is done, so this memory follows the organizations read at once,
    // not the window's rows.
    let mut seen: BTreeMap<Job, std::collections::HashSet<u64>> = BTreeMap::new();
    while let Some(item) = items.next().await {
        match item {
            Item::Row(job, Ok(row)) => {
                progress.row();
                if let Some(id) = row_id(&row) {
                    if !seen.entry(job).or_default().insert(id) {
                        continue;
                    }
                }
                if !scope.contains(row.organization_id.as_ref()) {
                    continue;
                }
                if let Err(reason) = threatlocker_api::validate_action_log_row(&row, now) {
                    out.rejected.record(&row, reason);
                    continue;
                }
                if let Some(org) = row
                    .organization_id
                    .as_ref()
                    .filter(|o| !targets.children.contains(*o))
                {
                    let name = out.unlisted.entry(org.clone()).or_default();
                    if name.is_none() {
                        name.clone_from(&row.organization_name);
                    }
                }
                on_row(row);
            }
            Item::Row(job, Err(e)) => {
                let e = crate::errors::chain(&e);
                warn!(read = ?job, error = %e, "reading the action log failed");
                failed.entry(job).or_insert(e);
            }
            Item::Done(job) => {
                progress.organization_done();
                seen.remove(&job);
                debug!(read = ?job, "action log read");
            }
        }
    }
    progress.finish();
    if !out.rejected.is_empty() {
        warn!(
            rejected = out.rejected.total,
            "action-log rows rejected: {}", out.rejected
        );
    }
    out.errors = failed
        .into_iter()
        .map(|(job, e)| match job {
            Job::Organization(org) => format!("reading the action log of organization {org}: {e}"),
            Job::Home if !targets.orgs.is_empty() => {
                format!("reading the action log of the home organization: {e}")
            }
            _ => format!("reading the action log: {e}"),
        })
        .collect();
    out
}

type RowStream = futures_util::stream::BoxStream<'static, threatlocker_api::Result<ActionLogRow>>;

/// The rows of one read over every range. The home organization's own rows are read at the
/// client's scope without the child flag; a parent key's search may answer 500 for that
/// (reference §1.3), so when it fails before any row came, they are read again with the flag,
/// keeping the rows of no listed child organization (see [`home_rows_with_child_flag`]).
fn job_rows(
    client: Client,
    job: Job,
    ranges: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    types: Vec<String>,
    children: std::sync::Arc<BTreeSet<OrganizationId>>,
) -> RowStream {
    let all = |c: Client, child: bool| -> RowStream {
        let types = types.clone();
        stream::iter(ranges.clone())
            .map(move |(start, end)| read_log(c.clone(), child, start, end, &types))
            .flatten()
            .boxed()
    };
    match job {
        Job::Organization(org) => all(client.with_organization(org), false),
        Job::Scope { child } => all(client, child),
        Job::Home => {
            let plain = all(client.clone(), false);
            let fallback = all(client, true);
            home_rows_with_child_flag(plain, fallback, children)
        }
    }
}

/// `plain`, or, when it fails before its first row, `fallback` without the rows of `children`.
fn home_rows_with_child_flag(
    plain: RowStream,
    fallback: RowStream,
    children: std::sync::Arc<BTreeSet<OrganizationId>>,
) -> RowStream {
    enum Phase {
        Plain(RowStream, Option<RowStream>),
        Fallback(RowStream),
    }
    stream::unfold(
        (Phase::Plain(plain, Some(fallback)), false),
        move |(mut phase, mut delivered)| {
            let children = std::sync::Arc::clone(&children);
            async move {
                loop {
                    match &mut phase {
                        Phase::Plain(s, fallback) => match s.next().await {
                            Some(Ok(row)) => return Some((Ok(row), (phase, true))),
                            Some(Err(e)) if !delivered => {
                                if let Some(f) = fallback.take() {
                                    warn!(error = %crate::errors::ErrorChain(&e), "reading the home organization's rows failed; retrying with the child flag");
                                    phase = Phase::Fallback(f);
                                    continue;
                                }
                                return Some((Err(e), (phase, delivered)));
                            }
                            Some(Err(e)) => return Some((Err(e), (phase, delivered))),
                            None => return None,
                        },
                        Phase::Fallback(s) => match s.next().await {
                            Some(Ok(row)) => {
                                if row
                                    .organization_id
                                    .as_ref()
                                    .is_some_and(|o| children.contains(o))
                                {
                                    continue;
                                }
                                delivered = true;
                                return Some((Ok(row), (phase, delivered)));
                            }
                            Some(Err(e)) => return Some((Err(e), (phase, delivered))),
                            None => return None,
                        },
                    }
                }
            }
        },
    )
    .boxed()
}

// Rows are nearly every item: boxing them would cost an allocation per row.
#[allow(clippy::large_enum_variant)]
enum Item {
    Row(Job, threatlocker_api::Result<ActionLogRow>),
    Done(Job),
}

/// A row's id as 8 bytes: `actionLogId` as is (never negative), else `eActionLogId` hashed
/// (FNV-1a) with the top bit set so the two never meet.
fn row_id(row: &ActionLogRow) -> Option<u64> {
    match (&row.action_log_id, &row.e_action_log_id) {
        (Some(n), _) => Some(n.get() as u64 & !(1 << 63)),
        (None, Some(e)) => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in e.as_str().bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            Some(h | (1 << 63))
        }
        (None, None) => None,
    }
}

/// Progress of a long read on a terminal (rows read, organizations done), on stderr; quiet
/// when stderr is not a terminal (a scheduler's log).
struct Progress {
    enabled: bool,
    rows: u64,
    done: usize,
    total: usize,
    last: std::time::Instant,
    shown: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        use std::io::IsTerminal;
        Self {
            enabled: std::io::stderr().is_terminal(),
            rows: 0,
            done: 0,
            total,
            last: std::time::Instant::now(),
            shown: false,
        }
    }

    fn row(&mut self) {
        self.rows += 1;
        if self.rows.is_multiple_of(1024) {
            self.show(false);
        }
    }

    fn organization_done(&mut self) {
        self.done += 1;
        self.show(false);
    }

    fn show(&mut self, force: bool) {
        if !self.enabled {
            return;
        }
        let now = std::time::Instant::now();
        if !force && now.duration_since(self.last) < std::time::Duration::from_millis(250) {
            return;
        }
        self.last = now;
        self.shown = true;
        eprint!(
            "\rreading the action log: {} rows, {}/{} organizations ",
            self.rows, self.done, self.total
        );
    }

    fn finish(&mut self) {
        if self.enabled && self.shown {
            self.show(true);
            eprintln!();
        }
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
#[derive(Debug, Clone, Default)]
pub(crate) struct Targets {
    /// Read the home organization's own rows (the client's scope, no child flag) besides
    /// `orgs`.
    pub home: bool,
    /// Organizations to read one by one (`managedOrganizationId`), or empty to read at the
    /// client's own scope.
    pub orgs: Vec<OrganizationId>,
    /// Read children through the child-organization flags (parent scope).
    pub include_children: bool,
    /// Every listed child organization (the home's rows are the rows of none of them).
    pub children: BTreeSet<OrganizationId>,
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

/// One action-log read (every page) at the client's scope, tolerant of both readings of
/// `sourceTableId` (see `AuditSearch::stream`).
fn read_log(
    client: Client,
    child: bool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    action_types: &[String],
) -> impl futures_util::Stream<Item = threatlocker_api::Result<ActionLogRow>> + Send + 'static {
    let mut s = client.audit().search(start, end).child_organizations(child);
    if !action_types.is_empty() {
        s = s.action_types(action_types.to_vec());
    }
    s.stream()
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
