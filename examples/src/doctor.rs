//! `threatlocker-monitor doctor`: checks the instance, the key, each permission the workflow
//! needs (one cheap call per permission), the PSA, the notifiers and the state file, and prints
//! a checklist with the fix for each failure.

use std::fmt;

use chrono::{Duration, Utc};
use threatlocker_api::{ApplicationChoice, ApprovalStatus, Client, PermitOptions};

use crate::config::{Config, Env};

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Not checked, and why.
    Skipped(String),
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// How it went.
    pub status: Status,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.status {
            Status::Ok(d) => write!(f, "[ ok ] {}: {d}", self.name),
            Status::Skipped(d) => write!(f, "[skip] {}: {d}", self.name),
            Status::Failed { problem, fix } => {
                write!(f, "[FAIL] {}: {problem}\n       fix: {fix}", self.name)
            }
        }
    }
}

fn ok(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        status: Status::Ok(detail.into()),
    }
}

fn failed(name: &str, problem: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        status: Status::Failed {
            problem: problem.into(),
            fix: fix.into(),
        },
    }
}

/// A check of one Portal API permission: `read` is the cheap read that needs it (its `Ok` is
/// what was seen).
fn permission_check(
    name: &str,
    permission: &str,
    read: Result<String, threatlocker_api::Error>,
) -> Check {
    match read {
        Ok(detail) => ok(name, detail),
        Err(e) => failed(name, e.to_string(), permission_fix(permission, &e)),
    }
}

fn permission_fix(permission: &str, e: &threatlocker_api::Error) -> String {
    if let threatlocker_api::Error::Transport { .. } = e {
        return "check the network path to the Portal API (proxy, firewall, DNS) and the base URL"
            .into();
    }
    match e.status() {
        Some(401) | Some(403) => format!(
            "give the API user the \"{permission}\" permission (Portal > Administrators/API Users > the user's role), for every organization it must read"
        ),
        Some(440) => "the key belongs to another instance: set threatlocker.instance to the letter in the portal's Help menu".into(),
        Some(s) if s >= 500 => "ThreatLocker answered with a server error; try again, and report the LoggerId to ThreatLocker support if it persists".into(),
        Some(_) => format!("check that the API user has \"{permission}\""),
        None => "see the error above; this is not a permission problem".into(),
    }
}

/// Runs every check against a configuration.
pub async fn checks(config: &Config, env: &dyn Env) -> Vec<Check> {
    let mut out = vec![ok(
        "configuration",
        format!(
            "valid; Portal API {}, PSA {}, state file {}",
            config.threatlocker().endpoint,
            config.psa().kind(),
            config.state_path().display()
        ),
    )];

    let client = match config.threatlocker_client(env) {
        Ok(c) => c,
        Err(e) => {
            out.push(failed(
                "API key",
                e.to_string(),
                format!(
                    "export {}=<the API user's token> (Portal > API Users > Generate API Token)",
                    config.threatlocker().api_key_env
                ),
            ));
            return out;
        }
    };
    out.push(ok(
        "API key",
        format!("read from ${}", config.threatlocker().api_key_env),
    ));

    // Instance and key: the cheapest authenticated call.
    match client.approvals().count(true).await {
        Ok(n) => out.push(ok(
            "instance and key",
            format!("accepted ({n} pending approval requests)"),
        )),
        Err(e) => {
            let fix = match e.status() {
                Some(401) => "the key is wrong or expired (keys expire after a period of inactivity): generate a new token for the API user".to_owned(),
                Some(440) | Some(403) => "the key was refused: it belongs to another instance (set threatlocker.instance to the letter in the portal's Help menu) or was revoked".to_owned(),
                _ => permission_fix("View Approvals", &e),
            };
            out.push(failed("instance and key", e.to_string(), fix));
            // Nothing else can work.
            return out;
        }
    }

    out.extend(permission_checks(&client, config).await);
    out.extend(connector_checks(config, env).await);

    let state = config.state_path();
    let dir = state
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    match std::fs::metadata(&dir) {
        Ok(m) if !m.permissions().readonly() => out.push(ok(
            "state file",
            format!("{} (directory writable)", state.display()),
        )),
        Ok(_) => out.push(failed(
            "state file",
            format!("{} is read-only", dir.display()),
            "set [state] path to a writable location",
        )),
        Err(e) => out.push(failed(
            "state file",
            format!("{}: {e}", dir.display()),
            "create the directory or set [state] path",
        )),
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

async fn permission_checks(client: &Client, config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let children = config.threatlocker().include_child_organizations;
    let now = Utc::now();

    let hour_ago = now - Duration::hours(1);
    out.push(permission_check(
        "View Organization",
        "View Organizations",
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
    let first = pending
        .as_ref()
        .ok()
        .and_then(|p| p.items.first())
        .and_then(|r| Some((r.approval_request_id.clone()?, r.organization_id.clone())));
    out.push(permission_check(
        "Approvals",
        "View Approvals",
        pending.map(|_| "pending approval requests readable".to_owned()),
    ));
    out.push(permission_check(
        "Unified Audit",
        "View Unified Audit",
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
        out.push(Check {
            name: "Approve".into(),
            status: Status::Skipped("workflow.process_approvals is false".into()),
        });
        return out;
    }
    // The approve permissions are checked by planning a permit of a pending request: the
    // permit DTO and matching-list reads need them; nothing is written.
    match first {
        None => out.push(Check {
            name: "Approve".into(),
            status: Status::Skipped(
                "no pending approval request to check the approve permissions with".into(),
            ),
        }),
        // A new application for the file: valid for any request, and nothing is written.
        // Scoped to the request's own organization, as the workflow's permits are (a parent
        // key's unscoped reads may only see its home organization).
        Some((id, org)) => out.push(permission_check(
            "Approve",
            "Approve for Single Computer / Approve for Group / Approve for Entire Organization",
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
                    "a permit can be prepared (permit DTO and matching list readable)".to_owned()
                }),
        )),
    }
    out
}

async fn connector_checks(config: &Config, env: &dyn Env) -> Vec<Check> {
    let mut out = Vec::new();
    match crate::connect::ticket_sink(config, env) {
        Ok(None) => out.push(Check {
            name: "PSA".into(),
            status: Status::Skipped("[psa] kind = \"none\": tickets are reported, not opened".into()),
        }),
        Ok(Some(sink)) => match sink.check().await {
            Ok(()) => out.push(ok("PSA", format!("{} reachable, credentials accepted", sink.name()))),
            Err(e) => out.push(failed(
                "PSA",
                e.to_string(),
                "check [psa] base_url and the API member's keys and clientId (a 401 is the keys, a 403 the member's security role, a 404 on cloud often the codebase or the api- host prefix)",
            )),
        },
        Err(e) => out.push(failed("PSA", e.to_string(), "fix the [psa] section or the environment variables it names")),
    }
    match crate::connect::notifiers(config, env) {
        Ok(list) if list.is_empty() => out.push(Check {
            name: "notifications".into(),
            status: Status::Skipped("no [notify] channel configured".into()),
        }),
        Ok(list) => {
            for n in list {
                let name = format!("notify: {}", n.name());
                match n.check().await {
                    Ok(()) => out.push(ok(&name, "reachable")),
                    Err(e) => out.push(failed(
                        &name,
                        e.to_string(),
                        "check the [notify] section and the secret it names",
                    )),
                }
            }
        }
        Err(e) => out.push(failed(
            "notifications",
            e.to_string(),
            "fix the [notify] section or the environment variables it names",
        )),
    }
    out
}

/// Runs the checks, prints the checklist, and returns the exit code (0 all passed, 1 any
/// failed).
pub async fn run(config: &Config, env: &dyn Env) -> u8 {
    let list = checks(config, env).await;
    for c in &list {
        println!("{c}");
    }
    let failures = list
        .iter()
        .filter(|c| matches!(c.status, Status::Failed { .. }))
        .count();
    if failures == 0 {
        println!("\nAll checks passed.");
        crate::cli::EXIT_OK
    } else {
        println!("\n{failures} check(s) failed.");
        crate::cli::EXIT_RUN_FAILED
    }
}
