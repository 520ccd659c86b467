//! `threatlocker-monitor demo`: the real workflow, twice, against the simulators on loopback.
//!
//! The demo goes through the same path as `run`: a configuration (TOML text pointing at the
//! simulators), secrets from an environment (an in-memory one here), [`Workflow::from_config`],
//! a state file (a scratch file, removed afterwards).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use crate::config::Config;
use crate::monitor::workflow::{RunOptions, RunOutput, Workflow};
use crate::sim::{
    ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, SimTicket, DEMO_API_KEY,
};
use crate::state::scratch_path;

/// The demo's configuration, pointing at the simulators.
pub fn demo_config(portal: &str, psa: &str, state: &Path) -> String {
    format!(
        r#"# The configuration `demo` runs with (a real file looks the same; see config.example.toml).
[threatlocker]
base_url = "{portal}"
api_key_env = "THREATLOCKER_API_KEY"
include_child_organizations = true
max_requests_per_second = 200

[workflow]
time_range_hours = 24
process_approvals = true
monitor_blocks = true
create_tickets = true

[org_variables]
threatlocker_ticket_board = "ThreatLocker"
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing", "Utilities"]
threatlocker_block_alert_threshold = 3
threatlocker_notification_recipients = ["soc@msp.example"]

[companies]
"*" = "250"

[psa]
kind = "connectwise"
base_url = "{psa}"
company_id = "msp"
public_key = "sim-public"
private_key_env = "CW_PRIVATE_KEY"
client_id_env = "CW_CLIENT_ID"

[state]
path = "{}"
"#,
        state.display().to_string().replace('\\', "\\\\")
    )
}

/// What the demo did: both runs and the tickets the simulated PSA holds afterwards.
#[derive(Debug)]
#[non_exhaustive]
pub struct DemoOutcome {
    /// The first run.
    pub first: RunOutput,
    /// The second, overlapping run.
    pub second: RunOutput,
    /// Tickets in the simulated ConnectWise after both runs.
    pub tickets: Vec<SimTicket>,
    /// Permits the simulated Portal API accepted.
    pub permits: usize,
    /// Organizations `DeployPolicies` was called for.
    pub deploys: usize,
    /// Organizations in the data set.
    pub organizations: usize,
    /// Where the simulators listened.
    pub portal_uri: String,
    /// Where the simulated PSA listened.
    pub psa_uri: String,
    /// The day's report (HTML), written after the second run.
    pub report_path: PathBuf,
}

/// Starts both simulators, runs the workflow twice (the second run a minute later, over an
/// overlapping window) with a scratch state file, writes the day's report as HTML into
/// `report_dir` (see [`crate::monitor::report::write_demo_report`]), and returns what happened.
pub async fn demo_runs(now: DateTime<Utc>, report_dir: &Path) -> Result<DemoOutcome, String> {
    let portal = PortalSim::start(Dataset::generate(SimConfig::demo(now)), DEMO_API_KEY).await;
    let creds = CwCredentials::default();
    let psa = ConnectWiseSim::start(creds.clone()).await;
    let state_path = scratch_path("threatlocker-monitor-demo");
    let text = demo_config(&portal.uri(), &psa.uri(), &state_path);
    let env: HashMap<String, String> = [
        ("THREATLOCKER_API_KEY", DEMO_API_KEY.to_owned()),
        ("CW_PRIVATE_KEY", creds.private_key.clone()),
        ("CW_CLIENT_ID", creds.client_id.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let result = async {
        let config = Config::from_toml_str(&text, &std::env::temp_dir())
            .map_err(|e| crate::errors::chain(&e))?;
        let workflow =
            Workflow::from_config(&config, &env).map_err(|e| crate::errors::chain(&e))?;
        let first = workflow
            .run(RunOptions::new().now(now))
            .await
            .map_err(|e| crate::errors::chain(&e))?;
        let second = workflow
            .run(RunOptions::new().now(now + Duration::minutes(1)))
            .await
            .map_err(|e| crate::errors::chain(&e))?;
        let report_path = crate::monitor::report::write_demo_report(
            &workflow,
            &config,
            second.window_end,
            report_dir,
        )
        .await
        .map_err(|e| {
            format!(
                "writing the day's report: {}",
                crate::errors::ErrorChain(&e)
            )
        })?;
        // The full path, so it can be opened from anywhere after the demo exits.
        let report_path = std::path::absolute(&report_path).unwrap_or(report_path);
        Ok::<_, String>((first, second, report_path))
    }
    .await;
    crate::state::remove_sqlite_files(&state_path);
    let (first, second, report_path) = result?;
    Ok(DemoOutcome {
        first,
        second,
        tickets: psa.tickets(),
        permits: portal.permits().len(),
        deploys: portal.deploys().len(),
        organizations: portal.dataset().orgs.len(),
        portal_uri: portal.uri(),
        psa_uri: psa.uri(),
        report_path,
    })
}

/// Runs the demo (the day's report goes into `report_dir`) and prints it; returns the exit
/// code.
pub async fn run(json_only: bool, report_dir: &Path) -> u8 {
    let outcome = match demo_runs(Utc::now(), report_dir).await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: the demo failed: {e}");
            return crate::process::EXIT_FAILED;
        }
    };
    let json = outcome.first.report_text();
    if json_only {
        println!("{json}");
        eprintln!("The day's report (HTML): {}", outcome.report_path.display());
    } else {
        print!("{}", render(&outcome));
        println!("\nThe report of run 1, as `threatlocker-monitor run` prints it:\n{json}");
    }
    if outcome.first.report.success && outcome.second.report.success {
        crate::process::EXIT_OK
    } else {
        crate::process::EXIT_FAILED
    }
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The readable terminal summary.
pub fn render(o: &DemoOutcome) -> String {
    let mut s = String::new();
    let r = &o.first.report;
    let m = &r.monitoring_summary;
    let _ = writeln!(s, "ThreatLocker monitor: demo");
    let _ = writeln!(s, "  simulated ThreatLocker Portal API  {}", o.portal_uri);
    let _ = writeln!(s, "  simulated ConnectWise PSA          {}", o.psa_uri);
    let _ = writeln!(
        s,
        "\nRun 1: {} organizations (the MSP's own included), window {} to {} UTC",
        o.organizations,
        o.first.window_start.format("%Y-%m-%d %H:%M"),
        o.first.window_end.format("%Y-%m-%d %H:%M")
    );
    let _ = writeln!(s, "  events             {}", m.total_events);
    let _ = writeln!(
        s,
        "  blocks             {} ({} distinct applications, {} repeat blocks)",
        m.blocked_applications,
        r.blocked_summary.unique_applications_blocked,
        r.blocked_summary.repeat_blocks
    );
    let _ = writeln!(
        s,
        "  approval requests  {} pending: {} auto-approved, {} left for review",
        m.approval_requests, r.auto_approvals_processed, r.manual_review_required
    );
    for a in &r.approval_requests {
        let _ = writeln!(
            s,
            "    {} {:<22} {:<18} {:<16} {}",
            if a.auto_approved {
                "approved"
            } else {
                "review  "
            },
            clip(&a.application, 22),
            clip(a.company.as_deref().unwrap_or("-"), 18),
            clip(a.device.as_deref().unwrap_or("-"), 16),
            clip(&a.reason, 90)
        );
    }
    let incidents: std::collections::BTreeSet<&str> = r
        .security_events
        .iter()
        .map(|e| e.incident.as_str())
        .collect();
    let _ = writeln!(
        s,
        "  security events    {} in {} incidents (one ticket per incident)",
        m.security_alerts,
        incidents.len()
    );
    for e in &r.security_events {
        let ticket = match (&e.ticket_id, e.ticket_created) {
            (Some(id), true) => format!("ticket #{id} opened"),
            (Some(id), false) => format!("ticket #{id}"),
            (None, _) => "no ticket".to_owned(),
        };
        let also = if e.also_matched.is_empty() {
            String::new()
        } else {
            format!("  (also matched {})", e.also_matched.join(", "))
        };
        let _ = writeln!(
            s,
            "    {:<8} {:<22} {:<28} {:<18} {:<16} {}{}",
            e.risk_level.as_str(),
            e.event_type,
            clip(&e.application, 28),
            clip(e.company.as_deref().unwrap_or("-"), 18),
            clip(e.device.as_deref().unwrap_or("-"), 16),
            ticket,
            also
        );
    }
    let _ = writeln!(
        s,
        "  tickets opened     {}\n  policy changes     {} applied ({} permits, policies deployed to {} organizations)",
        r.blocked_summary.tickets_created, m.policy_changes, o.permits, o.deploys
    );
    if !r.errors.is_empty() {
        let _ = writeln!(s, "  errors             {}", r.errors.join("; "));
    }

    let r2 = &o.second.report;
    let found = o.second.tickets.iter().filter(|t| !t.created).count();
    let _ = writeln!(
        s,
        "\nRun 2, one minute later over an overlapping window (as a scheduled run would be):\n  {} tickets opened ({} incidents already have theirs), {} approvals actioned again, success: {}",
        r2.blocked_summary.tickets_created,
        found,
        r2.auto_approvals_processed,
        r2.success
    );

    let _ = writeln!(
        s,
        "\nTickets in the simulated ConnectWise PSA ({}):",
        o.tickets.len()
    );
    for t in &o.tickets {
        let _ = writeln!(
            s,
            "  #{}  {}\n         externalXRef {}",
            t.id,
            clip(&t.summary, 100),
            t.external_xref.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(
        s,
        "\nThe day's report (HTML, open it in a browser): {}",
        o.report_path.display()
    );
    s
}
