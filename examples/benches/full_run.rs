//! A full monitoring run over 200 organizations and 1 000 000 events in the window against the
//! local simulators: wall time, peak memory (VmHWM), ThreatLocker requests and action-log bytes,
//! and the request rate achieved against the configured rate limit; then a second run 30 minutes
//! later on the same state file, which reads only what is new (from the hour the overlap starts
//! in, plus the window's first, partial hour): its requests, bytes and wall time.
//!
//! ```sh
//! cargo bench -p examples --bench full_run
//! # knobs: BENCH_ORGS (200), BENCH_EVENTS (1000000), BENCH_RPS (200), BENCH_RUNS (3)
//! # with the workflow's log of each run (rows received, distinct keys) on stderr:
//! # BENCH_LOG=examples=info cargo bench -p examples --bench full_run
//! ```
//!
//! The simulators run in this (the parent) process; each run of the monitor is a child process
//! of its own, so its VmHWM is the monitor's peak alone (the simulators' memory, which grows
//! with the requests they answer, is not in it). Each measurement has fresh simulators and a
//! fresh state file; the parent prints every measurement and the medians.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, Utc};
use examples::config::Config;
use examples::monitor::workflow::{RunOptions, Workflow};
use examples::sim::{ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::{remove_sqlite_files, scratch_path};
use serde_json::{json, Value};

/// Set in a child: the monitor's configuration (TOML text).
const CHILD_CONFIG: &str = "BENCH_FULL_RUN_CONFIG";
/// Set in a child: the run's "now" (RFC 3339).
const CHILD_NOW: &str = "BENCH_FULL_RUN_NOW";
/// The secrets the configuration names, passed to the child.
const SECRETS: [&str; 3] = ["THREATLOCKER_API_KEY", "CW_PRIVATE_KEY", "CW_CLIENT_ID"];

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One monitoring run, as the child process: prints one line of JSON for the parent.
fn child(config_text: &str, now: &str) {
    // The parent sets RUST_LOG from BENCH_LOG.
    if std::env::var_os("RUST_LOG").is_some() {
        examples::process::init_logging("warn", false);
    }
    let now: DateTime<Utc> = now.parse().expect("BENCH_FULL_RUN_NOW is RFC 3339");
    let env: HashMap<String, String> = SECRETS
        .iter()
        .filter_map(|k| Some(((*k).to_owned(), std::env::var(k).ok()?)))
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = Config::from_toml_str(config_text, &std::env::temp_dir()).expect("config");
    let workflow = Workflow::from_config(&config, &env).expect("workflow");
    let started = Instant::now();
    let out = runtime
        .block_on(workflow.run(RunOptions::new().now(now)))
        .expect("run");
    let wall = started.elapsed().as_secs_f64();
    let r = &out.report;
    println!(
        "{}",
        json!({
            "wall_s": wall,
            "vm_hwm_mib": vm_hwm_kib() as f64 / 1024.0,
            "rows_received": out.rows_received,
            "events": r.monitoring_summary.total_events,
            "approvals": r.monitoring_summary.approval_requests,
            "auto_approved": r.auto_approvals_processed,
            "alerts": r.monitoring_summary.security_alerts,
            "tickets": r.blocked_summary.tickets_created,
            "success": r.success,
            "steps": out.timings.iter().map(|t| (t.step, (t.seconds * 100.0).round() / 100.0)).collect::<Vec<_>>(),
        })
    );
}

/// Runs the monitor once in a child process at `now`; its JSON line.
fn run_child(config_text: &str, now: DateTime<Utc>, secrets: &HashMap<String, String>) -> Value {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command
        .env(CHILD_CONFIG, config_text)
        .env(CHILD_NOW, now.to_rfc3339())
        .envs(secrets)
        .env_remove("RUST_LOG");
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        command
            .env("RUST_LOG", filter)
            .stderr(std::process::Stdio::inherit());
    }
    let out = command.output().expect("child run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
    {
        Some(v) => v,
        None => {
            eprintln!(
                "a monitor run failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::process::exit(1);
        }
    }
}

/// One measurement: fresh simulators and state, a first run, a second run 30 minutes later.
async fn measure(orgs: usize, events: u64, rps: u64) -> Value {
    let now = Utc::now();
    let portal = PortalSim::start(
        Dataset::generate(SimConfig::scale(orgs, events, now)),
        DEMO_API_KEY,
    )
    .await;
    let creds = CwCredentials::default();
    let psa = ConnectWiseSim::start(creds.clone()).await;
    let state = scratch_path("bench-full-run");
    let text = format!(
        r#"[threatlocker]
base_url = "{}"
max_requests_per_second = {rps}
max_concurrency = 8

[org_variables]
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing", "Utilities"]
threatlocker_block_alert_threshold = 3

[companies]
"*" = "250"

[psa]
kind = "connectwise"
base_url = "{}"
company_id = "msp"
public_key = "sim-public"
private_key_env = "CW_PRIVATE_KEY"
client_id_env = "CW_CLIENT_ID"

[state]
path = "{}"
"#,
        portal.uri(),
        psa.uri(),
        state.display()
    );
    let secrets: HashMap<String, String> = SECRETS
        .into_iter()
        .map(str::to_owned)
        .zip([
            DEMO_API_KEY.to_owned(),
            creds.private_key.clone(),
            creds.client_id.clone(),
        ])
        .collect();
    // The simulators answer on their own threads; the children are waited for off the runtime.
    let (t, s) = (text.clone(), secrets.clone());
    let first = tokio::task::spawn_blocking(move || run_child(&t, now, &s))
        .await
        .expect("first run");
    let stats = portal.stats();
    let (psa_creates, psa_searches) = (psa.create_calls(), psa.search_calls());
    let second = tokio::task::spawn_blocking(move || {
        run_child(&text, now + chrono::Duration::minutes(30), &secrets)
    })
    .await
    .expect("second run");
    let stats_2 = portal.stats();
    remove_sqlite_files(&state);
    // The action-log retrieval is the phase where the client is busiest: its rate shows
    // whether the run is bound by the configured limit.
    let audit = "ActionLog/ActionLogGetByParametersV2";
    let audit_requests = stats.per_route.get(audit).copied().unwrap_or(0);
    let audit_span = stats
        .per_route_span_seconds
        .get(audit)
        .copied()
        .unwrap_or(0.0);
    let run2_bytes = stats_2.action_log_bytes - stats.action_log_bytes;
    let mut row = first;
    let extra = json!({
        "tl_requests": stats.total,
        "log_bytes": stats.action_log_bytes,
        "tl_span_s": stats.span_seconds,
        "tl_rps": stats.total as f64 / stats.span_seconds.max(1e-9),
        "limit_rps": rps,
        "audit_requests": audit_requests,
        "audit_span_s": audit_span,
        "audit_rps": audit_requests as f64 / audit_span.max(1e-9),
        "psa_creates": psa_creates,
        "psa_searches": psa_searches,
        "run2_wall_s": second["wall_s"],
        "run2_vm_hwm_mib": second["vm_hwm_mib"],
        "run2_rows_received": second["rows_received"],
        "run2_events": second["events"],
        "run2_success": second["success"],
        "run2_tl_requests": stats_2.total - stats.total,
        "run2_log_bytes": run2_bytes,
        "run2_bytes_fraction": run2_bytes as f64 / stats.action_log_bytes.max(1) as f64,
    });
    if let (Some(row), Value::Object(extra)) = (row.as_object_mut(), extra) {
        row.extend(extra);
    }
    row
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if let (Ok(config), Ok(now)) = (std::env::var(CHILD_CONFIG), std::env::var(CHILD_NOW)) {
        child(&config, &now);
        return;
    }
    let runs = knob("BENCH_RUNS", 3).max(1);
    let (orgs, events, rps) = (
        knob("BENCH_ORGS", 200) as usize,
        knob("BENCH_EVENTS", 1_000_000),
        knob("BENCH_RPS", 200),
    );
    println!("full_run: {orgs} organizations, {events} events, limit {rps} req/s, {runs} runs");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Value> = Vec::new();
    for i in 0..runs {
        let row = runtime.block_on(measure(orgs, events, rps));
        println!("  run {}: {row}", i + 1);
        rows.push(row);
    }
    let col = |k: &str| median(rows.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect());
    let limit = col("limit_rps");
    println!(
        "median: wall {:.1} s, peak memory of the monitor (VmHWM) {:.0} MiB, {:.0} events, {:.0} tickets",
        col("wall_s"),
        col("vm_hwm_mib"),
        col("events"),
        col("tickets"),
    );
    println!(
        "  action-log retrieval: {:.0} requests in {:.1} s = {:.1} req/s against a limit of {:.0} ({:.0}% of the limit)",
        col("audit_requests"),
        col("audit_span_s"),
        col("audit_rps"),
        limit,
        100.0 * col("audit_rps") / limit.max(1.0),
    );
    println!(
        "  all ThreatLocker requests: {:.0} in {:.1} s = {:.1} req/s (the span includes the PSA phase)",
        col("tl_requests"),
        col("tl_span_s"),
        col("tl_rps"),
    );
    println!(
        "  first run: {:.0} requests, {:.1} MB of action log; second run: {:.1} s, {:.0} requests, {:.1} MB of action log = {:.1}% of the first, peak memory {:.0} MiB",
        col("tl_requests"),
        col("log_bytes") / 1e6,
        col("run2_wall_s"),
        col("run2_tl_requests"),
        col("run2_log_bytes") / 1e6,
        100.0 * col("run2_bytes_fraction"),
        col("run2_vm_hwm_mib"),
    );
}
