//! The `threatlocker-monitor` binary: exit codes, the report on stdout, configuration errors
//! naming the key, the example configuration, `demo`, `doctor` and `watch`.
//!
//! The simulators run inside the test process; the binary is a real child process.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use examples::sim::Fault;
use examples::state::scratch_path;

mod support;

use support::{output, signal, text, Sims, MONITOR as BIN};

fn bad_config(body: &str) -> (u8, String) {
    let dir = scratch_path("cli-bad").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(&path, body).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env("THREATLOCKER_API_KEY", "k")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1) as u8, text(&out.stderr))
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    let out = Command::new(BIN).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--config"));
    let out = Command::new(BIN)
        .args(["watch", "--config", "x.toml", "--interval", "soon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["--help"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for word in ["demo", "run", "watch", "doctor", "Exit codes"] {
        assert!(help.contains(word), "help lacks {word}");
    }
    let out = Command::new(BIN).args(["run", "--help"]).output().unwrap();
    assert!(text(&out.stdout).contains("--dry-run"));
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let cases = [
        ("[threatlocker]\ninstance = \"g\"\n[workflow]\ndryrun = true\n", "workflow.dryrun"),
        ("[threatlocker]\ninstance = \"g\"\n[workflow]\ntime_range_hours = \"24\"\n", "workflow.time_range_hours"),
        ("[threatlocker]\ninstance = \"g\"\nmax_requests_per_second = -1.0\n", "threatlocker.max_requests_per_second"),
        ("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"connectwise\"\nbase_url = \"https://x.example\"\n", "psa.company_id"),
        ("[threatlocker]\ninstance = \"g\"\n[org_variables]\nthreatlocker_block_alert_threshold = \"three\"\n", "org_variables.threatlocker_block_alert_threshold"),
        ("[threatlocker]\ninstance = \"g\"\n[rules]\nno_such_rule = 1\n", "rules.no_such_rule"),
        ("[threatlocker]\n", "threatlocker.instance"),
    ];
    for (body, key) in cases {
        let (code, stderr) = bad_config(body);
        assert_eq!(code, 2, "{body}: {stderr}");
        assert!(stderr.contains(key), "stderr should name {key}: {stderr}");
    }
    let out = Command::new(BIN)
        .args(["run", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/config.toml"));
}

#[test]
fn a_missing_secret_exits_2_naming_the_variable() {
    let dir = scratch_path("cli-env").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        "[threatlocker]\ninstance = \"g\"\napi_key_env = \"MY_TL_KEY\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("MY_TL_KEY")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("threatlocker.api_key_env") && err.contains("MY_TL_KEY"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_prints_the_report_on_stdout_and_logs_on_stderr() {
    let s = Sims::start("cli-test").await;
    let cfg = s.write("config.toml", &s.config(""));
    let out = output({
        let mut c = s.command(&["run", "--config"]);
        c.arg(&cfg);
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("stdout is the report JSON");
    assert_eq!(report["success"], true);
    // The story's rows, the MSP's own organization included.
    assert_eq!(report["monitoring_summary"]["total_events"], 22);
    assert!(
        text(&out.stderr).contains("run finished"),
        "logs go to stderr"
    );
    assert!(
        s.dir.join("threatlocker-monitor.db").exists(),
        "state beside the config"
    );

    // --output writes the file instead; the rerun opens no ticket.
    let file = s.dir.join("report.json");
    let out = output({
        let mut c = s.command(&["run", "--config"]);
        c.arg(&cfg).arg("--output").arg(&file);
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(report["blocked_summary"]["tickets_created"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_exits_1_and_still_prints_the_report() {
    let s = Sims::start("cli-test").await;
    let mut f = Fault::rate_limit_storm(1000);
    f.status = 500;
    f.route = "service/tickets".into();
    s.psa.inject(f);
    let cfg = s.write("config.toml", &s.config(""));
    let out = output({
        let mut c = s.command(&["run", "--config"]);
        c.arg(&cfg);
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["success"], false);
    assert!(!report["errors"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_example_configuration_is_accepted_by_a_dry_run() {
    let s = Sims::start("cli-test").await;
    let example =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml"))
            .unwrap();
    // Point it at the simulators; every other key stays as documented.
    let text_cfg = example
        .replace(
            "instance = \"g\"",
            &format!("base_url = \"{}\"", s.portal.uri()),
        )
        .replace(
            "base_url = \"https://api-na.myconnectwise.net\"",
            &format!("base_url = \"{}\"", s.psa.uri()),
        )
        .replace("company_id = \"mspcompany\"", "company_id = \"msp\"")
        .replace(
            "public_key = \"AbCdEf123456\"",
            "public_key = \"sim-public\"",
        );
    let cfg = s.write("example.toml", &text_cfg);
    let out = output({
        let mut c = s.command(&["run", "--dry-run", "--config"]);
        c.arg(&cfg)
            .env("SMTP_PASSWORD", "x")
            .env("TEAMS_WEBHOOK_URL", "https://example.invalid/teams")
            .env("SLACK_WEBHOOK_URL", "https://example.invalid/slack");
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["success"], true);
    assert!(report["planned_writes"].is_array());
    assert_eq!(s.portal.write_calls(), 0);
    assert!(s.psa.tickets().is_empty());
    assert!(
        !s.dir.join("threatlocker-monitor.db").exists(),
        "a dry run writes no state"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_prints_a_checklist_with_fixes() {
    let s = Sims::start("cli-test").await;
    // The stricter reading of the organization header: a request is only found in its own
    // organization's scope, so the approve check must scope its permit plan.
    s.portal.require_owning_organization(true);
    let cfg = s.write("config.toml", &s.config(""));
    let out = output({
        let mut c = s.command(&["doctor", "--config"]);
        c.arg(&cfg);
        c
    })
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    for check in [
        "instance and key",
        "View Organization",
        "Computers",
        "Approvals",
        "Unified Audit",
        "Policies",
        "System Audit",
        "Approve",
        "PSA",
    ] {
        assert!(
            stdout.contains(&format!("[ ok ] {check}")),
            "{check} not ok:\n{stdout}"
        );
    }
    assert_eq!(s.portal.write_calls(), 0, "doctor writes nothing");

    // A wrong key: the check fails with the fix, exit 1.
    let out = output({
        let mut c = s.command(&["doctor", "--config"]);
        c.arg(&cfg).env("THREATLOCKER_API_KEY", "feedface");
        c
    })
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("[FAIL] instance and key") && stdout.contains("fix:"),
        "{stdout}"
    );
    assert!(!stdout.contains("feedface"), "the key is never printed");
}

#[test]
fn demo_runs_twice_and_the_second_run_opens_no_ticket() {
    // Run from a scratch directory: by default the day's report is written to the current one.
    let dir = scratch_path("cli-demo").with_extension("d");
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(BIN)
        .arg("demo")
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Run 2"));
    assert!(stdout.contains("0 tickets opened"), "{stdout}");
    assert!(stdout.contains("\"success\": true"));
    assert!(stdout.contains("externalXRef"));

    // The day's report: written where the summary says, as HTML, with the runs' numbers.
    let line = stdout
        .lines()
        .find(|l| l.starts_with("The day's report (HTML"))
        .unwrap_or_else(|| panic!("the summary names the report file: {stdout}"));
    let path = PathBuf::from(line.split_once("): ").unwrap().1.trim());
    assert!(path.is_absolute(), "{}", path.display());
    assert_eq!(path.parent(), Some(dir.canonicalize().unwrap().as_path()));
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"), "{}", &html[..80]);
    let field = |name: &str| -> u64 {
        let at = format!("data-field=\"{name}\">");
        let rest = &html[html.find(&at).unwrap_or_else(|| panic!("{name}")) + at.len()..];
        rest[..rest.find('<').unwrap()].parse().unwrap()
    };
    let summary = |prefix: &str| -> u64 {
        let rest = &stdout[stdout.find(prefix).unwrap() + prefix.len()..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
        rest[..end].parse().unwrap()
    };
    // Every ticket the demo's runs opened, the approvals run 1 permitted, and the requests it
    // left for review (the only ones still pending when the report is read).
    assert_eq!(
        field("tickets_opened"),
        summary("Tickets in the simulated ConnectWise PSA (")
    );
    assert_eq!(field("tickets_opened"), summary("  tickets opened     "));
    assert_eq!(field("auto_approved"), summary("pending: "));
    assert_eq!(field("approval_requests"), summary("auto-approved, "));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_runs_on_schedule_and_stops_cleanly_on_ctrl_c() {
    let s = Sims::start("cli-test").await;
    let cfg = s.write("config.toml", &s.config(""));
    let mut c = s.command(&["watch", "--interval", "10s", "--config"]);
    c.arg(&cfg).stderr(Stdio::piped()).stdout(Stdio::piped());
    let child = c.spawn().unwrap();
    // Wait for the first run to finish (its tickets appear in the PSA).
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.psa.tickets().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!s.psa.tickets().is_empty(), "the first scheduled run ran");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "INT");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "Ctrl-C stops the watch promptly"
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // One ticket per incident of the story.
    let tickets = s.psa.tickets().len();
    assert_eq!(tickets, 7);
}
