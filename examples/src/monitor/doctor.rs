//! `threatlocker-monitor doctor`: proves, before `run` or `watch` is trusted, what they will
//! need — the configuration, every secret, the ThreatLocker key and each permission (one cheap
//! read per permission), the PSA, the notifiers and the state directory — and prints a
//! checklist with the fix for each failure (or JSON with `--json`).
//!
//! - **One pass.** Every check runs whatever failed before it, so one `doctor` names every
//!   problem. Only checks that cannot mean anything are skipped, with the reason (with the key
//!   refused, each permission would fail the same way).
//! - **One validation path.** The configuration is checked by the very functions `run` and
//!   `watch` call ([`Config::engine`](crate::config::Config::engine),
//!   [`WatchPlan::from_config`](crate::monitor::triggers::WatchPlan::from_config),
//!   [`secret`](crate::config::secret), [`ticket_sink`](crate::connect::ticket_sink),
//!   [`notifiers`](crate::connect::notifiers)), so the two cannot disagree.
//! - **Nothing written.** Writes are checked only as far as the API can confirm without a side
//!   effect (a permit is *planned*, not sent); what cannot be checked is listed as such. Teams
//!   and Slack webhooks cannot be checked without posting, so they are contacted only with
//!   `--send-test`, which sends a test message.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use serde::Serialize;
use threatlocker_api::{ApplicationChoice, ApprovalStatus, Client, PermitOptions};

use crate::config::{Config, Env, PsaConfig};
use crate::errors::chain;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Passed, with a detail.
    Ok(String),
    /// Failed: what happened and how to fix it.
    Failed {
        /// What happened.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// Not checked because of another failure or a setting, and why.
    Skipped(String),
    /// Cannot be checked without a side effect (or without being asked to contact it); what
    /// was not checked.
    NotChecked(String),
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it went.
    pub status: Status,
}

impl Check {
    /// Whether the check failed.
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Failed { .. })
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Ok(d) => write!(f, "[ ok ] {}: {d}", self.name),
            Status::Skipped(d) => write!(f, "[skip] {}: {d}", self.name),
            Status::NotChecked(d) => write!(f, "[ -- ] {}: {d}", self.name),
            Status::Failed { problem, fix } => {
                write!(f, "[FAIL] {}: {problem}\n       fix: {fix}", self.name)
            }
        }
    }
}

impl Serialize for Check {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Json<'a> {
            name: &'a str,
            status: &'static str,
            detail: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            fix: Option<&'a str>,
        }
        let (status, detail, fix) = match &self.status {
            Status::Ok(d) => ("ok", d.as_str(), None),
            Status::Skipped(d) => ("skipped", d.as_str(), None),
            Status::NotChecked(d) => ("not_checked", d.as_str(), None),
            Status::Failed { problem, fix } => ("failed", problem.as_str(), Some(fix.as_str())),
        };
        Json {
            name: &self.name,
            status,
            detail,
            fix,
        }
        .serialize(s)
    }
}

/// How `doctor` runs.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// Print JSON instead of the checklist.
    pub json: bool,
    /// Send a test message through each notifier.
    pub send_test: bool,
}

impl Options {
    /// The defaults: a checklist, no test message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Prints JSON instead of the checklist.
    pub fn json(mut self, yes: bool) -> Self {
        self.json = yes;
        self
    }

    /// Sends a test message through each notifier.
    pub fn send_test(mut self, yes: bool) -> Self {
        self.send_test = yes;
        self
    }
}

fn check(name: &str, status: Status) -> Check {
    Check {
        name: name.to_owned(),
        status,
    }
}

fn ok(name: &str, detail: impl Into<String>) -> Check {
    check(name, Status::Ok(detail.into()))
}

fn failed(name: &str, problem: impl Into<String>, fix: impl Into<String>) -> Check {
    check(
        name,
        Status::Failed {
            problem: problem.into(),
            fix: fix.into(),
        },
    )
}

fn skipped(name: &str, why: impl Into<String>) -> Check {
    check(name, Status::Skipped(why.into()))
}

fn not_checked(name: &str, what: impl Into<String>) -> Check {
    check(name, Status::NotChecked(what.into()))
}

// ---------------------------------------------------------------------------------------------
// Configuration and secrets

/// The configuration as `run` and `watch` read it: the engine's sections, the `[watch]` and
/// `[report]` sections; one check per problem.
pub fn configuration_checks(config: &Config) -> Vec<Check> {
    const NAME: &str = "configuration";
    let mut problems = Vec::new();
    if let Err(e) = config.engine() {
        problems.push(chain(&e));
    }
    if let Err(e) = config.check_run() {
        problems.push(chain(&e));
    }
    if let Err(list) = crate::monitor::triggers::WatchPlan::from_config(
        config,
        None,
        &crate::monitor::triggers::WatchTriggerArgs::default(),
    ) {
        problems.extend(list);
    }
    if problems.is_empty() {
        return vec![ok(
            NAME,
            format!(
                "valid for run and watch; Portal API {}, PSA {}, state {}",
                config.threatlocker().endpoint,
                config.psa().kind(),
                config.state_path().display()
            ),
        )];
    }
    problems
        .into_iter()
        .map(|p| {
            failed(
                NAME,
                p,
                "correct the key named in the message (run and watch refuse this configuration with exit 2)",
            )
        })
        .collect()
}

/// Every environment variable the configuration names, with its key: the ThreatLocker key, the
/// PSA's secrets, the notifiers' secrets.
pub fn secret_variables(config: &Config) -> Vec<(&'static str, String)> {
    let mut out = vec![(
        "threatlocker.api_key_env",
        config.threatlocker().api_key_env.clone(),
    )];
    match config.psa() {
        PsaConfig::ConnectWise(c) => {
            out.push(("psa.private_key_env", c.private_key_env.clone()));
            out.push(("psa.client_id_env", c.client_id_env.clone()));
        }
        PsaConfig::Autotask(c) => {
            out.push(("psa.secret_env", c.secret_env.clone()));
            out.push(("psa.integration_code_env", c.integration_code_env.clone()));
        }
        PsaConfig::Halo(c) => out.push(("psa.client_secret_env", c.client_secret_env.clone())),
        _ => {}
    }
    let n = config.notify();
    if let Some(var) = n.email.as_ref().and_then(|e| e.password_env.clone()) {
        out.push(("notify.email.password_env", var));
    }
    if let Some(t) = &n.teams {
        out.push(("notify.teams.webhook_url_env", t.webhook_url_env.clone()));
    }
    if let Some(s) = &n.slack {
        out.push(("notify.slack.webhook_url_env", s.webhook_url_env.clone()));
    }
    out
}

/// One check per secret variable, through the function the connectors read them with.
fn secret_checks(config: &Config, env: &dyn Env) -> (Vec<Check>, Vec<&'static str>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (key, var) in secret_variables(config) {
        let name = format!("secret ${var}");
        match crate::config::secret(env, key, &var) {
            Ok(_) => out.push(ok(&name, format!("set ({key})"))),
            Err(e) => {
                missing.push(key);
                out.push(failed(
                    &name,
                    chain(&e),
                    format!("export {var}=... in the service's environment (the EnvironmentFile of the systemd unit), or change {key}"),
                ));
            }
        }
    }
    (out, missing)
}

// ---------------------------------------------------------------------------------------------
// ThreatLocker

/// How a ThreatLocker failure should be fixed, for a call that needs `permission`.
fn permission_fix(permission: &str, config: &Config, e: &threatlocker_api::Error) -> String {
    use threatlocker_api::Error;
    let root = match e {
        Error::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    if let Error::Transport { .. } = root {
        return "no answer from the Portal API: check the network path (proxy, firewall, DNS, TLS inspection) and threatlocker.instance / base_url; the cause is at the end of the message".into();
    }
    if let Error::WrongInstanceOrRevokedKey { .. } = root {
        return key_refused_fix(root);
    }
    match root.status() {
        Some(401) => key_refused_fix(root),
        Some(403) => {
            let org = config
                .threatlocker()
                .organization_id
                .as_ref()
                .map(|o| format!("; threatlocker.organization_id = {o} must be an organization the API user can see"))
                .unwrap_or_default();
            format!(
                "give the API user's role the \"{permission}\" permission (Portal > Administrators/API Users), for every organization it must read{org}"
            )
        }
        Some(429) => "the API rate-limited the checks; lower threatlocker.max_requests_per_second or try again".into(),
        Some(s) if s >= 500 => {
            let logger = matches!(root, Error::Api { logger_id: Some(_), .. });
            if logger {
                "ThreatLocker answered with a server error; try again, and give ThreatLocker support the LoggerId in the message if it persists".into()
            } else {
                "ThreatLocker answered with a server error; try again later, and contact ThreatLocker support if it persists".into()
            }
        }
        Some(_) => format!("the API refused the call; check that the API user has \"{permission}\" and the message above"),
        None => "not a permission problem: the message says what failed".into(),
    }
}

fn key_refused_fix(e: &threatlocker_api::Error) -> String {
    match e {
        threatlocker_api::Error::WrongInstanceOrRevokedKey { .. } => "the key was refused: it belongs to another instance (set threatlocker.instance to the letter in the portal's Help menu) or was revoked".into(),
        _ => "the key is wrong or expired (keys expire after a period of inactivity): generate a new token for the API user".into(),
    }
}

/// Whether `e` means the key itself was refused (nothing else can work with it).
fn key_refused(e: &threatlocker_api::Error) -> bool {
    use threatlocker_api::Error;
    let root = match e {
        Error::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    matches!(root, Error::WrongInstanceOrRevokedKey { .. }) || root.status() == Some(401)
}

/// Whether `e` means the Portal API did not answer at all.
fn unreachable(e: &threatlocker_api::Error) -> bool {
    use threatlocker_api::Error;
    let root = match e {
        Error::RetriesExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    matches!(root, Error::Transport { .. })
}

fn permission_check(
    name: &str,
    permission: &str,
    config: &Config,
    read: Result<String, threatlocker_api::Error>,
) -> Check {
    match read {
        Ok(detail) => ok(name, detail),
        Err(e) => failed(name, chain(&e), permission_fix(permission, config, &e)),
    }
}

/// The ThreatLocker checks: the key, then one read per permission (each reported on its
/// own: a 403 on one endpoint is that permission, not the key), then the writes as far as
/// they can be checked without a side effect.
pub async fn threatlocker_checks(client: &Client, config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let children = config.threatlocker().include_child_organizations;
    let first = client.approvals().count(children).await;
    match &first {
        Err(e) if key_refused(e) => {
            out.push(failed("instance and key", chain(e), key_refused_fix_of(e)));
            out.push(skipped(
                "permissions",
                "not checked: the key was refused, so every call fails the same way",
            ));
            return out;
        }
        Err(e) if unreachable(e) => {
            out.push(failed(
                "instance and key",
                chain(e),
                permission_fix("View Approvals", config, e),
            ));
            out.push(skipped(
                "permissions",
                "not checked: the Portal API did not answer",
            ));
            return out;
        }
        // Any other answer means the key was accepted: a 403 here is the View Approvals
        // permission (or an organization the key cannot see), reported below.
        _ => out.push(ok(
            "instance and key",
            format!("accepted by {}", config.threatlocker().endpoint),
        )),
    }
    out.push(permission_check(
        "Approvals count",
        "View Approvals",
        config,
        first.map(|n| format!("{n} pending approval requests")),
    ));

    let now = Utc::now();
    let hour_ago = now - Duration::hours(1);
    out.push(permission_check(
        "View Organization",
        "View Organizations",
        config,
        client
            .organizations()
            .children()
            .include_all_children(true)
            .page_size(1)
            .send()
            .await
            .map(|p| {
                format!(
                    "child organizations readable ({} on the first page)",
                    p.items.len()
                )
            }),
    ));
    out.push(permission_check(
        "Computers",
        "View Computers",
        config,
        client
            .computers()
            .list()
            .child_organizations(children)
            .page_size(1)
            .send()
            .await
            .map(|_| "computer list readable".to_owned()),
    ));
    let pending = client
        .approvals()
        .search(ApprovalStatus::Pending)
        .child_organizations(children)
        .page_size(1)
        .send()
        .await;
    // A pending request to check the approve permissions with (below).
    let pending_readable = pending.is_ok();
    let first_request = pending
        .as_ref()
        .ok()
        .and_then(|p| p.items.first())
        .and_then(|r| Some((r.approval_request_id.clone()?, r.organization_id.clone())));
    out.push(permission_check(
        "Approvals",
        "View Approvals",
        config,
        pending.map(|_| "pending approval requests readable".to_owned()),
    ));
    out.push(permission_check(
        "Unified Audit",
        "View Unified Audit",
        config,
        client
            .audit()
            .search(hour_ago, now)
            .child_organizations(children)
            .page_size(1)
            .send()
            .await
            .map(|_| "action log readable".to_owned()),
    ));
    out.push(permission_check(
        "Policies",
        "View Application Control Policies",
        config,
        client
            .policies()
            .list()
            .page_size(1)
            .send()
            .await
            .map(|_| "application control policies readable".to_owned()),
    ));
    out.push(permission_check(
        "System Audit",
        "View System Audit",
        config,
        client
            .system_audit()
            .search(hour_ago, now)
            .child_organizations(children)
            .page_size(1)
            .send()
            .await
            .map(|_| "system audit readable".to_owned()),
    ));

    if !config.workflow().process_approvals {
        out.push(skipped("Approve", "workflow.process_approvals is false"));
        out.push(skipped(
            "Deploy policies",
            "workflow.process_approvals is false",
        ));
        return out;
    }
    // The approve permissions are checked by planning a permit of a pending request: the
    // permit DTO and matching-list reads need them; nothing is written.
    match first_request {
        None if !pending_readable => out.push(not_checked(
            "Approve",
            "not checked: the pending approval requests could not be read (see Approvals), so no permit could be planned",
        )),
        None => out.push(not_checked(
            "Approve",
            "not checked: there is no pending approval request to plan a permit with, so the approve permissions (Approve for Single Computer / Group / Entire Organization) are unproven until one arrives",
        )),
        // Scoped to the request's own organization, as the workflow's permits are.
        Some((id, org)) => out.push(permission_check(
            "Approve",
            "Approve for Single Computer / Approve for Group / Approve for Entire Organization",
            config,
            org.map_or_else(|| client.clone(), |o| client.with_organization(o))
                .approvals()
                .plan_permit(
                    &id,
                    &PermitOptions::new().application(ApplicationChoice::New(
                        "threatlocker-monitor doctor check".into(),
                    )),
                )
                .await
                .map(|_| {
                    "a permit can be prepared (permit DTO and matching list readable); the permit itself is only sent by a run".to_owned()
                }),
        )),
    }
    out.push(not_checked(
        "Deploy policies",
        "not checked: the API has no way to test deploying policies (Edit Application Control Policies) without deploying; the first run that permits a request shows it (a 403 there names the permission)",
    ));
    out
}

fn key_refused_fix_of(e: &threatlocker_api::Error) -> String {
    match e {
        threatlocker_api::Error::RetriesExhausted { last, .. } => key_refused_fix(last),
        other => key_refused_fix(other),
    }
}

// ---------------------------------------------------------------------------------------------
// PSA and notifiers

/// The fix for a PSA failure, in the terms of the PSA in use.
pub fn psa_fix(kind: &str, e: &psa_connectors::Error) -> String {
    let status = e.status();
    let transport = matches!(e, psa_connectors::Error::Transport { .. });
    match kind {
        "connectwise" => match (transport, status) {
            (true, _) => "no answer from ConnectWise: check [psa] base_url (cloud sites use the api- host, e.g. api-na.myconnectwise.net), the network path and TLS; the cause is at the end of the message".into(),
            (_, Some(401)) => "ConnectWise refused the API member's keys: check [psa] company_id, public_key and the private key variable".into(),
            (_, Some(403)) => "the API member's security role lacks a permission (Service Desk > Service Tickets: Inquire, Add, Edit); or the clientId variable is wrong".into(),
            (_, Some(404)) => "ConnectWise does not know the path: on cloud often the codebase ([psa] codebase) or the api- host prefix".into(),
            _ => "check [psa] base_url and the API member's keys and clientId".into(),
        },
        "autotask" => match (transport, status) {
            (true, _) => "no answer from Autotask: check [psa] base_url (the zone URL, or leave it unset to look the zone up), the network path and TLS; the cause is at the end of the message".into(),
            (_, Some(401)) => "Autotask refused the credentials: check [psa] username (an API-only user), the secret and the integration code (Admin > Resources > the API user's Security tab)".into(),
            (_, Some(403)) => "the Autotask API user's security level lacks ticket permissions (Tickets: view, add, edit)".into(),
            _ => "check [psa] username, the secret and the integration code of the Autotask API user".into(),
        },
        "halo" => match (transport, status) {
            (true, _) => "no answer from HaloPSA: check [psa] base_url (and auth_url for a separate authorisation server), the network path and TLS; the cause is at the end of the message".into(),
            (_, Some(401)) => "HaloPSA refused the client credentials: check [psa] client_id, tenant and the client secret variable".into(),
            (_, Some(403)) => "the Halo API application lacks permissions: give it read:tickets and edit:tickets (Configuration > Integrations > HaloPSA API > the application)".into(),
            _ => "check [psa] base_url, client_id and the client secret of the Halo API application".into(),
        },
        _ => "check the [psa] section".into(),
    }
}

async fn psa_checks(config: &Config, env: &dyn Env, secrets_missing: &[&str]) -> Vec<Check> {
    let kind = config.psa().kind();
    if matches!(config.psa(), PsaConfig::None) {
        return vec![skipped(
            "PSA",
            "[psa] kind = \"none\": tickets are reported, not opened",
        )];
    }
    if let Some(key) = secrets_missing.iter().find(|k| k.starts_with("psa.")) {
        return vec![skipped(
            "PSA",
            format!("not contacted: the secret {key} names is not set"),
        )];
    }
    let sink = match crate::connect::ticket_sink(config, env) {
        Ok(Some(s)) => s,
        Ok(None) => return vec![skipped("PSA", "no PSA configured")],
        Err(e) => {
            return vec![failed(
                "PSA",
                chain(&e),
                format!("fix the [psa] section ({kind})"),
            )]
        }
    };
    let mut out = Vec::new();
    match sink.check().await {
        Ok(()) => out.push(ok(
            "PSA",
            format!("{} reachable, credentials accepted", sink.name()),
        )),
        Err(e) => {
            out.push(failed("PSA", chain(&e), psa_fix(kind, &e)));
            out.push(skipped(
                "PSA ticket search",
                "not checked: the PSA check failed",
            ));
            return out;
        }
    }
    // The search a run makes before opening a ticket: a read, with a reference no ticket has.
    match sink.find_open("threatlocker-monitor-doctor-check").await {
        Ok(_) => out.push(ok(
            "PSA ticket search",
            "open tickets can be searched by their reference",
        )),
        Err(e) => out.push(failed("PSA ticket search", chain(&e), psa_fix(kind, &e))),
    }
    out.push(not_checked(
        "PSA ticket create",
        format!("not checked: {kind} offers no way to test creating a ticket or adding a note without doing it; the first run that opens one shows it"),
    ));
    out
}

async fn notifier_checks(
    config: &Config,
    env: &dyn Env,
    secrets_missing: &[&str],
    send_test: bool,
) -> Vec<Check> {
    if config.notify().is_empty() {
        return vec![skipped("notifications", "no [notify] channel configured")];
    }
    if let Some(key) = secrets_missing.iter().find(|k| k.starts_with("notify.")) {
        return vec![skipped(
            "notifications",
            format!("not contacted: the secret {key} names is not set"),
        )];
    }
    let list = match crate::connect::notifiers(config, env) {
        Ok(l) => l,
        Err(e) => {
            return vec![failed(
                "notifications",
                chain(&e),
                "fix the [notify] section or the environment variables it names",
            )]
        }
    };
    let mut out = Vec::new();
    for n in list {
        let name = format!("notify: {}", n.name());
        let webhook = matches!(n.name(), "teams" | "slack");
        if send_test {
            let note = psa_connectors::Notification::new(
                "threatlocker-monitor doctor: test message",
                "This is a test sent by `threatlocker-monitor doctor --send-test`. Nothing needs to be done.",
            );
            match n.send(&note).await {
                Ok(()) => out.push(ok(&name, "test message sent; check that it arrived")),
                Err(e) => out.push(failed(
                    &name,
                    chain(&e),
                    format!("check [notify.{}] and the secret it names", n.name()),
                )),
            }
        } else if webhook {
            out.push(not_checked(
                &name,
                "not contacted: a webhook cannot be checked without posting a message; `doctor --send-test` sends a test message",
            ));
        } else {
            match n.check().await {
                Ok(()) => out.push(ok(
                    &name,
                    "server reachable (no message sent; --send-test sends one)",
                )),
                Err(e) => out.push(failed(
                    &name,
                    chain(&e),
                    format!("check [notify.{}] and the secret it names", n.name()),
                )),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// State

/// The nearest ancestor of `path` that exists.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .filter(|p| !p.as_os_str().is_empty())
        .find(|p| p.exists())
        .map(Path::to_path_buf)
}

/// The state file: its directory must exist and be writable, or be creatable (a run creates
/// it).
pub fn state_check(config: &Config) -> Check {
    const NAME: &str = "state file";
    let state = config.state_path();
    let dir = state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    let writable = |d: &Path| {
        std::fs::metadata(d)
            .map(|m| m.is_dir() && !m.permissions().readonly())
            .unwrap_or(false)
    };
    if dir.is_dir() {
        return if writable(&dir) {
            ok(NAME, format!("{} (directory writable)", state.display()))
        } else {
            failed(
                NAME,
                format!("{} is read-only", dir.display()),
                "set [state] path to a writable location (under systemd, StateDirectory= gives one)",
            )
        };
    }
    match existing_ancestor(&dir) {
        Some(a) if writable(&a) => ok(
            NAME,
            format!(
                "{} (the directory does not exist yet; the first run creates it under {})",
                state.display(),
                a.display()
            ),
        ),
        Some(a) => failed(
            NAME,
            format!(
                "{} does not exist and cannot be created: {} is not a writable directory",
                dir.display(),
                a.display()
            ),
            "create the directory or set [state] path",
        ),
        None => failed(
            NAME,
            format!("{} does not exist", dir.display()),
            "create the directory or set [state] path",
        ),
    }
}

// ---------------------------------------------------------------------------------------------

/// Runs every check against a configuration.
pub async fn checks(config: &Config, env: &dyn Env, options: &Options) -> Vec<Check> {
    let mut out = configuration_checks(config);
    let (secrets, missing) = secret_checks(config, env);
    out.extend(secrets);

    if missing.contains(&"threatlocker.api_key_env") {
        out.push(skipped(
            "instance and key",
            "not checked: the API key variable is not set",
        ));
    } else {
        match config.threatlocker_client(env) {
            Ok(client) => out.extend(threatlocker_checks(&client, config).await),
            Err(e) => out.push(failed(
                "instance and key",
                chain(&e),
                "fix the [threatlocker] section",
            )),
        }
    }
    out.extend(psa_checks(config, env, &missing).await);
    out.extend(notifier_checks(config, env, &missing, options.send_test).await);
    if matches!(
        config.state().backend,
        crate::config::StateBackendConfig::Sqlite
    ) {
        out.push(state_check(config));
    }
    // The database itself: reachable, its schema version, its lease table.
    out.extend(
        crate::state::doctor_checks(config, env)
            .into_iter()
            .map(|c| match c.outcome {
                Ok(detail) => ok(&c.name, detail),
                Err((problem, fix)) => failed(&c.name, problem, fix),
            }),
    );
    out
}

/// Runs the checks, prints the checklist (or JSON), and returns the exit code (0 all passed,
/// 1 any failed).
pub async fn run(config: &Config, env: &dyn Env, options: &Options) -> u8 {
    let list = checks(config, env, options).await;
    let failures = list.iter().filter(|c| c.failed()).count();
    if options.json {
        let doc = serde_json::json!({
            "ok": failures == 0,
            "failures": failures,
            "checks": list,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into())
        );
    } else {
        for c in &list {
            println!("{c}");
        }
        if failures == 0 {
            println!("\nAll checks passed.");
        } else {
            println!("\n{failures} check(s) failed.");
        }
    }
    if failures == 0 {
        crate::process::EXIT_OK
    } else {
        crate::process::EXIT_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str, dir: &Path) -> Config {
        Config::from_toml_str(text, dir).unwrap()
    }

    #[test]
    fn a_state_directory_that_can_be_created_passes() {
        let base = crate::state::scratch_path("doctor-state").with_extension("d");
        std::fs::create_dir_all(&base).unwrap();
        let c = config(
            "[threatlocker]\ninstance = \"g\"\n[state]\npath = \"not/yet/state.db\"\n",
            &base,
        );
        let check = state_check(&c);
        assert!(matches!(check.status, Status::Ok(_)), "{check}");
        assert!(!base.join("not").exists(), "doctor creates nothing");
        // Under a regular file it cannot be created.
        std::fs::write(base.join("file"), "x").unwrap();
        let c = config(
            "[threatlocker]\ninstance = \"g\"\n[state]\npath = \"file/state.db\"\n",
            &base,
        );
        assert!(state_check(&c).failed());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn tickets_without_a_psa_section_fail_as_run_fails() {
        let dir = std::env::temp_dir();
        let without = config("[threatlocker]\ninstance = \"g\"\n", &dir);
        assert!(without.check_run().is_err(), "run refuses it");
        let checks = configuration_checks(&without);
        assert!(
            checks
                .iter()
                .any(|c| c.failed() && c.to_string().contains("psa")),
            "{checks:?}"
        );
        let none = config(
            "[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"none\"\n",
            &dir,
        );
        assert!(configuration_checks(&none).iter().all(|c| !c.failed()));
    }

    #[test]
    fn psa_hints_fit_the_psa_in_use() {
        let e = psa_connectors::Error::Auth {
            backend: "halo",
            status: 403,
            message: "forbidden".into(),
        };
        let halo = psa_fix("halo", &e);
        assert!(
            halo.contains("Halo") && !halo.contains("ConnectWise"),
            "{halo}"
        );
        let at = psa_fix("autotask", &e);
        assert!(
            at.contains("Autotask") && !at.contains("ConnectWise"),
            "{at}"
        );
        assert!(!at.contains("codebase") && !halo.contains("codebase"));
    }

    #[test]
    fn checks_serialize_with_their_status() {
        let v = serde_json::to_value(vec![
            ok("a", "fine"),
            failed("b", "broken", "mend it"),
            not_checked("c", "cannot"),
        ])
        .unwrap();
        assert_eq!(v[0]["status"], "ok");
        assert_eq!(v[1]["fix"], "mend it");
        assert_eq!(v[2]["status"], "not_checked");
        assert!(v[0].get("fix").is_none());
    }
}
