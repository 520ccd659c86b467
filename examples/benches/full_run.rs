//! A full monitoring run over 200 organizations and 1 000 000 events in the window against the
//! local simulators: wall time, peak memory (VmHWM), ThreatLocker requests and action-log bytes,
//! and the request rate achieved against the configured rate limit; then a second run 30 minutes
//! later on the same state file, which reads only what is new (the overlap and the half hour
//! since, plus the window's first half hour): its requests, bytes and wall time.
//!
//! ```sh
//! cargo bench -p examples --bench full_run
//! # knobs: BENCH_ORGS (200), BENCH_EVENTS (1000000), BENCH_RPS (200), BENCH_RUNS (3)
//! # one run alone, with the workflow's log (rows, distinct keys):
//! # BENCH_FULL_RUN_CHILD=1 RUST_LOG=examples=info target/release/deps/full_run-<hash>
//! ```
//!
//! Each measurement is a fresh child process (so VmHWM is that first run's peak, taken before
//! the second run), with fresh simulators and a fresh state file; the parent prints every run
//! and the medians. VmHWM is the whole process: the simulators run in it too.

use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use examples::config::Config;
use examples::monitor::workflow::{RunOptions, Workflow};
use examples::sim::{ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::scratch_path;

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

fn child() {
    // RUST_LOG shows the workflow's own log (e.g. the window's distinct keys) on stderr.
    if std::env::var_os("RUST_LOG").is_some() {
        examples::process::init_logging("warn", false);
    }
    let orgs = knob("BENCH_ORGS", 200) as usize;
    let events = knob("BENCH_EVENTS", 1_000_000);
    let rps = knob("BENCH_RPS", 200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let now = chrono::Utc::now();
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
        let env: HashMap<String, String> = [
            ("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned()),
            ("CW_PRIVATE_KEY".to_owned(), creds.private_key.clone()),
            ("CW_CLIENT_ID".to_owned(), creds.client_id.clone()),
        ]
        .into();
        let config = Config::from_toml_str(&text, &std::env::temp_dir()).expect("config");
        let workflow = Workflow::from_config(&config, &env).expect("workflow");
        let started = Instant::now();
        let out = workflow.run(RunOptions::new().now(now)).await.expect("run");
        let wall = started.elapsed().as_secs_f64();
        let hwm_1 = vm_hwm_kib();
        let stats_1 = portal.stats();
        // The second run, half an hour later, on the same state.
        let started = Instant::now();
        let out_2 = workflow
            .run(RunOptions::new().now(now + chrono::Duration::minutes(30)))
            .await
            .expect("second run");
        let wall_2 = started.elapsed().as_secs_f64();
        let stats_2 = portal.stats();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", state.display()));
        }
        let stats = stats_1;
        let r = &out.report;
        // The action-log retrieval is the phase where the client is busiest: its rate shows
        // whether the run is bound by the configured limit.
        let audit = "ActionLog/ActionLogGetByParametersV2";
        let audit_requests = stats.per_route.get(audit).copied().unwrap_or(0);
        let audit_span = stats
            .per_route_span_seconds
            .get(audit)
            .copied()
            .unwrap_or(0.0);
        // One line of JSON for the parent.
        println!(
            "{}",
            serde_json::json!({
                "wall_s": wall,
                "vm_hwm_mib": hwm_1 as f64 / 1024.0,
                "tl_requests": stats.total,
                "log_bytes": stats.action_log_bytes,
                "run2_wall_s": wall_2,
                "run2_tl_requests": stats_2.total - stats.total,
                "run2_log_bytes": stats_2.action_log_bytes - stats.action_log_bytes,
                "run2_bytes_fraction": (stats_2.action_log_bytes - stats.action_log_bytes) as f64 / stats.action_log_bytes.max(1) as f64,
                "run2_events": out_2.report.monitoring_summary.total_events,
                "run2_success": out_2.report.success,
                "tl_span_s": stats.span_seconds,
                "tl_rps": stats.total as f64 / stats.span_seconds.max(1e-9),
                "limit_rps": rps,
                "audit_requests": audit_requests,
                "audit_span_s": audit_span,
                "audit_rps": audit_requests as f64 / audit_span.max(1e-9),
                "psa_creates": psa.create_calls(),
                "psa_searches": psa.search_calls(),
                "events": r.monitoring_summary.total_events,
                "approvals": r.monitoring_summary.approval_requests,
                "auto_approved": r.auto_approvals_processed,
                "alerts": r.monitoring_summary.security_alerts,
                "tickets": r.blocked_summary.tickets_created,
                "success": r.success,
                "steps": out.timings.iter().map(|t| (t.step, (t.seconds * 100.0).round() / 100.0)).collect::<Vec<_>>(),
            })
        );
    });
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::var_os("BENCH_FULL_RUN_CHILD").is_some() {
        child();
        return;
    }
    let runs = knob("BENCH_RUNS", 3).max(1);
    let exe = std::env::current_exe().expect("current exe");
    let mut rows: Vec<serde_json::Value> = Vec::new();
    println!(
        "full_run: {} organizations, {} events, limit {} req/s, {runs} runs",
        knob("BENCH_ORGS", 200),
        knob("BENCH_EVENTS", 1_000_000),
        knob("BENCH_RPS", 200)
    );
    for i in 0..runs {
        let out = Command::new(&exe)
            .env("BENCH_FULL_RUN_CHILD", "1")
            .env("RUST_LOG", "error")
            .output()
            .expect("child run");
        let line = String::from_utf8_lossy(&out.stdout);
        let row: serde_json::Value = match line
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
        {
            Some(v) => v,
            None => {
                eprintln!(
                    "run {i} failed: {}{}",
                    line,
                    String::from_utf8_lossy(&out.stderr)
                );
                std::process::exit(1);
            }
        };
        println!("  run {}: {row}", i + 1);
        rows.push(row);
    }
    let col = |k: &str| median(rows.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect());
    let limit = col("limit_rps");
    println!(
        "median: wall {:.1} s, peak memory (VmHWM) {:.0} MiB, {:.0} events, {:.0} tickets",
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
        "  first run: {:.0} requests, {:.1} MB of action log; second run: {:.1} s, {:.0} requests, {:.1} MB of action log = {:.1}% of the first",
        col("tl_requests"),
        col("log_bytes") / 1e6,
        col("run2_wall_s"),
        col("run2_tl_requests"),
        col("run2_log_bytes") / 1e6,
        100.0 * col("run2_bytes_fraction"),
    );
}
