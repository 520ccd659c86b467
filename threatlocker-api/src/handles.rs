//! One small handle per API resource, returned by `client.audit()`, `client.approvals()`, ...
//!
//! Read operations live in `endpoints/`, write operations in `write/`; both add `impl` blocks
//! to these types so a reader finds any endpoint from its resource in one hop.

use crate::client::Client;

macro_rules! handle {
    (
        $(#[$meta:meta])* $name:ident, $accessor:ident;
        $(#[$example:meta])*
    ) => {
        $(#[$meta])*
        #[doc = concat!("\n\nMade by [`Client::", stringify!($accessor), "`].")]
        #[derive(Debug, Clone)]
        pub struct $name {
            pub(crate) client: Client,
        }

        impl Client {
            $(#[$meta])*
            ///
            $(#[$example])*
            pub fn $accessor(&self) -> $name {
                $name { client: self.clone() }
            }
        }
    };
}

handle!(
    /// The action log (Unified Audit): search, get one event, file history.
    Audit, audit;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let end = Utc::now();
    /// let mut denies = client
    ///     .audit()
    ///     .search(end - TimeDelta::hours(24), end)
    ///     .outcome(ActionOutcome::AnyDeny)
    ///     .child_organizations(true)
    ///     .stream();
    /// while let Some(row) = denies.try_next().await? {
    ///     println!("{:?} denied on {:?}", row.full_path, row.hostname);
    /// }
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Approval requests: search, count, get, permit, reject, ignore.
    Approvals, approvals;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let pending: Vec<ApprovalRequest> = client
    ///     .approvals()
    ///     .search(ApprovalStatus::Pending)
    ///     .child_organizations(true)
    ///     .stream()
    ///     .try_collect()
    ///     .await?;
    /// println!("{} pending, {} counted", pending.len(), client.approvals().count(true).await?);
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Computers: list, get.
    Computers, computers;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let mut learning = client
    ///     .computers()
    ///     .list()
    ///     .mode(ComputerMode::Learning)
    ///     .child_organizations(true)
    ///     .stream();
    /// while let Some(c) = learning.try_next().await? {
    ///     println!("{:?} in {:?}", c.computer_name, c.organization_name);
    /// }
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Organizations: child organizations, accessible organizations.
    Organizations, organizations;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let children: Vec<Organization> = client
    ///     .organizations()
    ///     .children()
    ///     .include_all_children(true)
    ///     .stream()
    ///     .try_collect()
    ///     .await?;
    /// for org in &children {
    ///     // Act on each child organization with a scoped clone.
    ///     if let Some(id) = &org.organization_id {
    ///         let scoped = client.with_organization(id.clone());
    ///         println!("{:?}: {} pending", org.name, scoped.approvals().count(false).await?);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Applications: search, get, matching list, research details, insert, file rules.
    Applications, applications;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// use threatlocker_api::SearchBy;
    /// let page = client.applications().search("zoom", SearchBy::Name).send().await?;
    /// for app in page.items() {
    ///     println!("{:?} {:?}", app.application_id, app.name);
    /// }
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Policies: list, get, insert, update, delete, deploy.
    Policies, policies;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let policies: Vec<Policy> = client.policies().list().stream().try_collect().await?;
    /// println!("{} policies", policies.len());
    /// # Ok(()) }
    /// ```
);
handle!(
    /// The portal's own (administrator) audit log.
    SystemAudit, system_audit;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let end = Utc::now();
    /// let entries: Vec<SystemAuditEntry> = client
    ///     .system_audit()
    ///     .search(end - TimeDelta::hours(24), end)
    ///     .stream()
    ///     .try_collect()
    ///     .await?;
    /// println!("{} portal actions today", entries.len());
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Maintenance mode: history by computer, insert, end.
    Maintenance, maintenance;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client, computer: threatlocker_api::ComputerId)
    /// # -> threatlocker_api::Result<()> {
    /// use threatlocker_api::prelude::*;
    /// let windows: Vec<MaintenanceWindow> = client
    ///     .maintenance()
    ///     .by_computer(&computer)
    ///     .stream()
    ///     .try_collect()
    ///     .await?;
    /// println!("{} maintenance windows", windows.len());
    /// # Ok(()) }
    /// ```
);
handle!(
    /// Tags: the dropdown list.
    Tags, tags;
    /// ```no_run
    /// # async fn f(client: threatlocker_api::Client) -> threatlocker_api::Result<()> {
    /// for tag in client.tags().dropdown().send().await? {
    ///     println!("{:?} = {:?}", tag.label, tag.value);
    /// }
    /// # Ok(()) }
    /// ```
);
