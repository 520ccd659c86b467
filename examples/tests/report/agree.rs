//! Against the simulator: the daily report and a workflow run over the same window give the
//! same numbers, and the `report` command works end to end.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::Arc;

use chrono::{Duration, Utc};
use examples::config::Config;
use examples::monitor::report::{compute, daily_report, gather, Activity, ComputeOptions, Scope};
use examples::monitor::workflow::{RunOptions, Workflow};
use examples::sim::{Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::{scratch_path, StateStore};

const BIN: &str = env!("CARGO_BIN_EXE_threatlocker-monitor");

fn config_text(portal: &str, state: &std::path::Path) -> String {
    format!(
        r#"[threatlocker]
base_url = "{portal}"
max_requests_per_second = 500

[org_variables]
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing"]
threatlocker_notification_recipients = ["soc@msp.example"]

[psa]
kind = "none"

[state]
path = "{}"
"#,
        state.display()
    )
}

fn env() -> HashMap<String, String> {
    HashMap::from([("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())])
}

#[tokio::test]
async fn the_daily_report_and_a_run_over_the_same_window_agree() {
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let dir = scratch_path("report-agree").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        Config::from_toml_str(&config_text(&portal.uri(), &dir.join("s.db")), &dir).unwrap();
    let run = Workflow::from_config_read_only(&config, &env())
        .unwrap()
        .run(RunOptions::new().now(now).dry_run(true))
        .await
        .unwrap();
    let daily = daily_report(
        &config.threatlocker_client(&env()).unwrap(),
        &config.engine().unwrap(),
        &StateStore::open_in_memory().unwrap(),
        &Scope::from_config(&config),
        now,
        Duration::hours(i64::from(config.workflow().time_range_hours)),
        &ComputeOptions::default(),
    )
    .await
    .unwrap();
    assert!(daily.errors.is_empty(), "{:?}", daily.errors);
    let (m, d) = (&run.report.monitoring_summary, &daily.monitoring_summary);
    assert!(m.total_events > 0 && m.blocked_applications > 0 && m.security_alerts > 0);
    assert_eq!(d.total_events, m.total_events);
    assert_eq!(d.approval_requests, m.approval_requests);
    assert_eq!(d.blocked_applications, m.blocked_applications);
    assert_eq!(d.security_alerts, m.security_alerts);
    assert_eq!(
        daily.blocked_summary.unique_applications_blocked,
        run.report.blocked_summary.unique_applications_blocked
    );
    assert_eq!(
        daily.blocked_summary.repeat_blocks,
        run.report.blocked_summary.repeat_blocks
    );
    let run_keys: Vec<&str> = run
        .report
        .security_events
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    let daily_keys: Vec<&str> = daily.detections.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        daily_keys, run_keys,
        "the same detections, in the same order"
    );
    let blocks: u64 = daily.blocks_per_hour.iter().map(|b| b.blocks).sum();
    assert_eq!(blocks, m.blocked_applications);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daily report streams the rows into the engine's state and its tally; on a messier
/// tenant (the MSP's own computers, a noisy user, signed installers blocked widely) it gives the
/// report computed from every row held in memory, to the byte.
#[tokio::test(flavor = "multi_thread")]
async fn the_streamed_daily_report_equals_the_one_computed_from_every_row() {
    let now = Utc::now();
    let portal = PortalSim::start(
        Dataset::generate(SimConfig::msp_tenant(6, 8, 6_000, now)),
        DEMO_API_KEY,
    )
    .await;
    let dir = scratch_path("report-stream").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let config =
        Config::from_toml_str(&config_text(&portal.uri(), &dir.join("s.db")), &dir).unwrap();
    let client = config.threatlocker_client(&env()).unwrap();
    let engine = config.engine().unwrap();
    let scope = Scope::from_config(&config);
    let since = Duration::hours(48);
    let options = ComputeOptions::default();
    let streamed = daily_report(
        &client,
        &engine,
        &StateStore::open_in_memory().unwrap(),
        &scope,
        now,
        since,
        &options,
    )
    .await
    .unwrap();
    let (input, errors) = gather(&client, &scope, now, now - since, now).await;
    let held = compute(
        &input,
        &engine.evaluate(&input),
        &Activity::default(),
        &options,
        errors,
    );
    assert!(streamed.errors.is_empty(), "{:?}", streamed.errors);
    assert!(streamed.monitoring_summary.total_events > 1_000);
    assert!(!streamed.detections.is_empty() && !streamed.top_applications.is_empty());
    let (streamed, held) = (
        serde_json::to_value(&streamed).unwrap(),
        serde_json::to_value(&held).unwrap(),
    );
    for (key, value) in held.as_object().unwrap() {
        assert_eq!(&streamed[key], value, "{key}");
    }
    assert_eq!(streamed, held);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_command_writes_each_format_and_names_bad_input() {
    let portal = PortalSim::start(
        Dataset::generate(SimConfig::story_only(Utc::now())),
        DEMO_API_KEY,
    )
    .await;
    let dir = scratch_path("report-cli").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, config_text(&portal.uri(), &dir.join("s.db"))).unwrap();
    // `threatlocker-monitor <command> --config <cfg> <args>`, with the simulator's key.
    let command = |command: &'static str, args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg(command)
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("THREATLOCKER_API_KEY", DEMO_API_KEY)
            .env_remove("THREATLOCKER_REPORT_TIMEZONE")
            .stdin(Stdio::null());
        async move {
            tokio::task::spawn_blocking(move || c.output().unwrap())
                .await
                .unwrap()
        }
    };
    let run = |args: &[&str]| command("report", args);
    let watch = |args: &[&str]| command("watch", args);

    let out = run(&["--format", "json"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(json["monitoring_summary"]["total_events"].as_u64().unwrap() > 0);
    assert_eq!(json["period"]["timezone"], "UTC");

    let html = dir.join("out/report.html");
    let out = run(&[
        "--output",
        &html.display().to_string(),
        "--timezone",
        "America/New_York",
        "--since",
        "12h",
    ])
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(text.starts_with("<!DOCTYPE html>") && text.contains("<svg"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("report written to"));

    let out = run(&["--format", "markdown"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("## ThreatLocker daily security report"));

    let out = run(&["--timezone", "Mars/Olympus"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--timezone"));
    let out = run(&["--since", "5m"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--send"]).await;
    assert_eq!(out.status.code(), Some(2), "--send without [notify.email]");
    assert!(String::from_utf8_lossy(&out.stderr).contains("notify.email"));

    // watch's trigger flags are checked before anything runs.
    for (args, named) in [
        (&["--daily-report-at", "25:00"][..], "--daily-report-at"),
        (
            &["--daily-report-at", "07:00", "--timezone", "Mars/Olympus"][..],
            "--timezone",
        ),
        (&["--approval-poll", "1s"][..], "--approval-poll"),
        (
            &["--daily-report-at", "07:00", "--send-daily-report"][..],
            "notify.email",
        ),
    ] {
        let out = watch(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }

    // [report] in the file: its timezone and top apply; the flags override them.
    std::fs::write(
        &cfg,
        format!(
            "{}\n[report]\ntimezone = \"Europe/Berlin\"\ntop = 1\n",
            config_text(&portal.uri(), &dir.join("s.db"))
        ),
    )
    .unwrap();
    let json = |out: std::process::Output| -> serde_json::Value {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let report = json(run(&["--format", "json"]).await);
    assert_eq!(report["period"]["timezone"], "Europe/Berlin");
    assert_eq!(report["top_applications"].as_array().unwrap().len(), 1);
    let report = json(run(&["--format", "json", "--timezone", "Asia/Tokyo", "--top", "2"]).await);
    assert_eq!(report["period"]["timezone"], "Asia/Tokyo");
    assert_eq!(report["top_applications"].as_array().unwrap().len(), 2);
    // Bad values in [report] and [watch] name their key.
    for (section, key) in [
        ("[report]\ntimezone = \"Mars/Olympus\"\n", "report.timezone"),
        ("[watch]\napproval_poll = \"1s\"\n", "watch.approval_poll"),
        ("[watch]\nintervall = \"1h\"\n", "watch.intervall"),
    ] {
        std::fs::write(
            &cfg,
            format!(
                "{}\n{section}",
                config_text(&portal.uri(), &dir.join("s.db"))
            ),
        )
        .unwrap();
        let out = watch(&[]).await;
        assert_eq!(out.status.code(), Some(2), "{section}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{section}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_demo_report_shows_what_the_runs_did() {
    use examples::sim::{ConnectWiseSim, CwCredentials};
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let creds = CwCredentials::default();
    let psa = ConnectWiseSim::start(creds.clone()).await;
    let dir = scratch_path("report-demo").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let text = config_text(&portal.uri(), &dir.join("s.db")).replace(
        "[psa]\nkind = \"none\"\n",
        &format!(
            "[companies]\n\"*\" = \"250\"\n\n[psa]\nkind = \"connectwise\"\nbase_url = \"{}\"\ncompany_id = \"msp\"\npublic_key = \"sim-public\"\nprivate_key_env = \"CW_PRIVATE_KEY\"\nclient_id_env = \"CW_CLIENT_ID\"\n",
            psa.uri()
        ),
    );
    let config = Config::from_toml_str(&text, &dir).unwrap();
    let mut env = env();
    env.insert("CW_PRIVATE_KEY".into(), creds.private_key.clone());
    env.insert("CW_CLIENT_ID".into(), creds.client_id.clone());
    let workflow = Workflow::from_config(&config, &env).unwrap();
    let run = workflow.run(RunOptions::new().now(now)).await.unwrap();
    assert!(run.report.success, "{:?}", run.report.errors);
    let created = run.report.blocked_summary.tickets_created;
    assert!(created > 0 && run.report.auto_approvals_processed > 0);

    let path = examples::monitor::report::write_demo_report(&workflow, &config, now, &dir)
        .await
        .unwrap();
    assert!(path.starts_with(&dir));
    let html = std::fs::read_to_string(&path).unwrap();
    let doc = scraper::Html::parse_document(&html);
    let field = |name: &str| {
        let sel = scraper::Selector::parse(&format!("[data-field={name}]")).unwrap();
        doc.select(&sel).next().unwrap().text().collect::<String>()
    };
    assert_eq!(field("tickets_opened"), created.to_string());
    assert_eq!(
        field("auto_approved"),
        run.report.auto_approvals_processed.to_string()
    );
    assert_eq!(psa.tickets().len() as u64, created);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_watch_daily_job_writes_the_days_file_in_its_zone_and_sends_it() {
    use examples::monitor::triggers::DailyJob;
    use psa_connectors::recording::RecordingNotifier;
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let dir = scratch_path("report-daily").with_extension("d");
    let config =
        Config::from_toml_str(&config_text(&portal.uri(), &dir.join("s.db")), &dir).unwrap();
    let notifier = Arc::new(RecordingNotifier::new());
    let tz: chrono_tz::Tz = "Pacific/Auckland".parse().unwrap();
    let job = DailyJob::new(
        config.threatlocker_client(&env()).unwrap(),
        Arc::new(config.engine().unwrap()),
        Arc::new(StateStore::open_in_memory().unwrap()),
        Scope::from_config(&config),
        tz,
        dir.join("reports"),
    )
    .send_with(notifier.clone(), vec!["soc@msp.example".into()]);
    let path = job.run(now).await.unwrap();
    let day = now.with_timezone(&tz).format("%Y-%m-%d").to_string();
    assert_eq!(
        path,
        dir.join("reports")
            .join(format!("threatlocker-daily-report-{day}.html"))
    );
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.contains("Auckland") && (html.contains("NZDT") || html.contains("NZST")));
    let sent = notifier.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].recipients, vec!["soc@msp.example"]);
    assert_eq!(sent[0].html.as_deref(), Some(html.as_str()));
    let _ = std::fs::remove_dir_all(&dir);
}
