//! `threatlocker-monitor` as a service: signals (SIGTERM during a tick and between ticks, a
//! second signal), the metrics endpoint scraped during a run, per-run reports, and `doctor`
//! and `watch`/`run` agreeing on which configurations are valid.
//!
//! The simulators run inside the test process; the binary is a real child process.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use examples::sim::Fault;
use examples::state::{RunStatus, StateStore};

mod support;

use support::{signal, text, Sims};

async fn wait(child: Child) -> (Output, Duration) {
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    (out, started.elapsed())
}

async fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_once(s: &Sims, cfg: &std::path::Path) -> Output {
    let mut c = s.command(&["run", "--config"]);
    c.arg(cfg);
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_tick_finishes_the_step_records_the_run_as_stopped_and_exits_0() {
    let s = Sims::start("svc-term-tick").await;
    // The action log answers 429 twice with Retry-After: 2, so the first step of the first
    // run takes about four seconds.
    s.portal.inject(Fault {
        route: "ActionLogGetByParametersV2".into(),
        page: None,
        status: 429,
        times: 2,
        retry_after: Some(2),
    });
    let cfg = s.write("config.toml", &s.config(""));
    let mut c = s.command(&["watch", "--no-approval-poll", "--config"]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    until(
        "the first run to read the action log",
        Duration::from_secs(30),
        || {
            s.portal
                .stats()
                .per_route
                .iter()
                .any(|(r, n)| r.contains("ActionLogGetByParametersV2") && *n > 0)
        },
    )
    .await;
    signal(&child, "TERM");
    let (out, elapsed) = wait(child).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    assert!(stderr.contains("SIGTERM"), "the signal is logged: {stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");

    // The run is recorded as stopped, with its finish time; nothing was ticketed (the run
    // stopped after the step in progress).
    let runs = s.state().recent_runs(10).unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Stopped, "{runs:?}");
    assert!(runs[0].finished_at.is_some());
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or("")
            .contains("stopped before"),
        "{runs:?}"
    );
    assert_eq!(s.unique_tickets(), 0);

    // After a restart the next run does the work, once.
    let out = run_once(&s, &cfg).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let tickets = s.unique_tickets();
    assert!(tickets > 0);
    let out = run_once(&s, &cfg).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        s.unique_tickets(),
        tickets,
        "no duplicate ticket after restart"
    );
    let runs = s.state().recent_runs(10).unwrap();
    assert!(
        runs.iter().all(|r| r.status != RunStatus::Running),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_between_ticks_exits_0_at_once_and_a_restart_opens_no_ticket_twice() {
    let s = Sims::start("svc-term-idle").await;
    let cfg = s.write("config.toml", &s.config(""));
    let mut c = s.command(&["watch", "--interval", "1h", "--config"]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    until("the first run to finish", Duration::from_secs(60), || {
        StateStore::open_read_only(&s.dir.join("threatlocker-monitor.db"))
            .ok()
            .and_then(|st| st.recent_runs(1).ok())
            .is_some_and(|r| r.first().is_some_and(|r| r.status == RunStatus::Succeeded))
    })
    .await;
    let tickets = s.unique_tickets();
    assert!(tickets > 0);
    // The watcher sleeps (for up to a minute at a time) until the next tick or poll.
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "TERM");
    let (out, elapsed) = wait(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        elapsed < Duration::from_secs(3),
        "the wait between ticks ends at once: {elapsed:?}"
    );
    let runs = s.state().recent_runs(10).unwrap();
    assert!(
        runs.iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );

    // Restarted, the service finds the tickets again by their keys.
    let out = run_once(&s, &cfg).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(s.unique_tickets(), tickets);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_exits_at_once() {
    let s = Sims::start("svc-second").await;
    s.portal.inject(Fault {
        route: "ActionLogGetByParametersV2".into(),
        page: None,
        status: 429,
        times: 3,
        retry_after: Some(5),
    });
    let cfg = s.write("config.toml", &s.config(""));
    let mut c = s.command(&["watch", "--no-approval-poll", "--config"]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    until(
        "the first run to read the action log",
        Duration::from_secs(30),
        || {
            s.portal
                .stats()
                .per_route
                .iter()
                .any(|(r, n)| r.contains("ActionLogGetByParametersV2") && *n > 0)
        },
    )
    .await;
    signal(&child, "INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "TERM");
    let (out, elapsed) = wait(child).await;
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert_eq!(out.status.code(), Some(143), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_stopped_by_sigterm_exits_0_and_is_recorded_as_stopped() {
    let s = Sims::start("svc-run-term").await;
    s.portal.inject(Fault {
        route: "ActionLogGetByParametersV2".into(),
        page: None,
        status: 429,
        times: 2,
        retry_after: Some(2),
    });
    let cfg = s.write("config.toml", &s.config(""));
    let mut c = s.command(&["run", "--config"]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    until(
        "the run to read the action log",
        Duration::from_secs(30),
        || {
            s.portal
                .stats()
                .per_route
                .iter()
                .any(|(r, n)| r.contains("ActionLogGetByParametersV2") && *n > 0)
        },
    )
    .await;
    signal(&child, "TERM");
    let (out, _) = wait(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap()
            .contains("stopped before"),
        "{report}"
    );
    let runs = s.state().recent_runs(10).unwrap();
    assert_eq!(runs[0].status, RunStatus::Stopped, "{runs:?}");
}

/// The value of the sample `name{labels}` in a Prometheus text exposition.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let have: BTreeSet<(String, String)> = body
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        labels
            .iter()
            .all(|(k, v)| have.contains(&((*k).to_owned(), (*v).to_owned())))
            .then(|| value.parse().ok())?
    })
}

#[test]
fn samples_are_parsed_by_name_and_labels() {
    let text =
        "# TYPE a counter\na{kind=\"x\",outcome=\"ok\"} 3\na{kind=\"y\",outcome=\"ok\"} 4\nb 1.5\n";
    assert_eq!(sample(text, "a", &[("kind", "y")]), Some(4.0));
    assert_eq!(sample(text, "b", &[]), Some(1.5));
    assert_eq!(sample(text, "a", &[("kind", "z")]), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_is_scraped_during_a_watch() {
    let s = Sims::start("svc-metrics").await;
    // Two 429s: the client's retries show in the metrics.
    s.portal.inject(Fault::rate_limit_storm(2));
    let cfg = s.write(
        "config.toml",
        &s.config("[watch]\nreport_dir = \"runs\"\nreport_retention_days = 7\n"),
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = s.command(&[
        "watch",
        "--log-format",
        "json",
        "--metrics-addr",
        &addr,
        "--config",
    ]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        assert!(
            Instant::now() < deadline,
            "no successful run in the metrics"
        );
        if let Ok(r) = http.get(format!("http://{addr}/metrics")).send().await {
            let text = r.text().await.unwrap();
            if sample(
                &text,
                "threatlocker_monitor_runs_total",
                &[("kind", "scheduled"), ("outcome", "succeeded")],
            ) == Some(1.0)
            {
                break text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tickets = s.unique_tickets() as f64;
    assert!(tickets > 0.0);
    let get = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("{name} {labels:?}:\n{metrics}"))
    };
    assert_eq!(
        get(
            "threatlocker_monitor_tickets_total",
            &[("action", "created")]
        ),
        tickets
    );
    assert!(get("threatlocker_monitor_events_read_total", &[]) > 0.0);
    assert!(
        get(
            "threatlocker_monitor_approvals_total",
            &[("decision", "auto_approved")]
        ) > 0.0
    );
    assert!(
        get(
            "threatlocker_monitor_api_retries_total",
            &[("reason", "rate_limited")]
        ) >= 2.0
    );
    // Every attempt is counted: the two refused ones, and successful ones no more than the
    // simulator answered.
    assert!(
        get(
            "threatlocker_monitor_api_requests_total",
            &[("result", "error")]
        ) >= 2.0
    );
    let answered = get(
        "threatlocker_monitor_api_requests_total",
        &[("result", "ok")],
    );
    assert!(
        answered >= 1.0 && answered <= s.portal.stats().total as f64,
        "{answered} ok requests, {} answered by the simulator",
        s.portal.stats().total
    );
    let last = get(
        "threatlocker_monitor_last_success_timestamp_seconds",
        &[("kind", "scheduled")],
    );
    assert!((last - chrono::Utc::now().timestamp() as f64).abs() < 120.0);
    assert_eq!(
        get("threatlocker_monitor_consecutive_failed_runs", &[]),
        0.0
    );

    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // The run's report is in the report directory.
    let files: Vec<PathBuf> = std::fs::read_dir(s.dir.join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("run-") && name.ends_with("-scheduled.json"),
        "{name}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    assert_eq!(report["success"], true);
    assert_eq!(report["run_kind"], "scheduled");
    assert_eq!(
        report["blocked_summary"]["tickets_created"].as_f64(),
        Some(tickets)
    );

    signal(&child, "TERM");
    let (out, _) = wait(child).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // JSON logs: every line an object; the summary line carries the run's figures.
    let summary = stderr
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["message"] == "run succeeded")
        .expect("a summary line");
    assert_eq!(summary["kind"], "scheduled");
    assert_eq!(summary["tickets_created"].as_f64(), Some(tickets));
    assert!(summary["events"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_turns_unhealthy_after_the_configured_failed_runs() {
    let s = Sims::start("svc-health").await;
    // Every read fails: each run fails.
    s.portal.inject(Fault {
        route: String::new(),
        page: None,
        status: 400,
        times: 10_000,
        retry_after: None,
    });
    let cfg = s.write("config.toml", &s.config("[watch]\nunhealthy_after = 1\n"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut c = s.command(&["watch", "--metrics-addr", &addr, "--config"]);
    c.arg(&cfg);
    let child = c.spawn().unwrap();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "/healthz never turned unhealthy");
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status() == 503 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&child, "TERM");
    let (out, _) = wait(child).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // The failure's cause is in the log, with the API's LoggerId.
    assert!(stderr.contains("HTTP 400"), "{stderr}");
    assert!(stderr.contains("0HSIM00000001"), "{stderr}");
}
