//! Nothing duplicated, stalled or silently lost: rows the API should not have sent, a run
//! deadline against a black-holed API, writes whose answer was lost, closed pipes and failed
//! writes of the output, a damaged state file, and configuration errors.
//!
//! The simulators and fault-injecting servers run inside the test process; the binaries are
//! real child processes.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use examples::config::Config;
use examples::monitor::workflow::{RunOptions, Workflow};
use examples::siem::{Forwarder, SentStore, SiemConfig};
use examples::sim::{ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::remove_sqlite_files;
use examples::state::{scratch_path, StateStore};
use psa_connectors::recording::RecordingSiemSink;
use psa_connectors::syslog::Transport;
use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;

use support::{output, text, MONITOR};

const SIEM: &str = env!("CARGO_BIN_EXE_siem-forward");
const INVESTIGATE: &str = env!("CARGO_BIN_EXE_tl-investigate");

/// A scratch directory, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(prefix: &str) -> Self {
        let p = scratch_path(prefix).with_extension("d");
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A monitor configuration for `portal` with `psa` (a whole `[psa]` section) and `extra`
/// appended to `[workflow]`; state beside the file.
fn monitor_config(portal: &str, psa: &str, extra: &str) -> String {
    format!(
        r#"[threatlocker]
base_url = "{portal}"
max_requests_per_second = 1000

[workflow]
{extra}

[org_variables]
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing", "Utilities"]

[companies]
"*" = "250"

{psa}
"#
    )
}

fn connectwise(psa: &ConnectWiseSim) -> String {
    format!(
        "[psa]\nkind = \"connectwise\"\nbase_url = \"{}\"\ncompany_id = \"msp\"\npublic_key = \"sim-public\"\nprivate_key_env = \"CW_PRIVATE_KEY\"\nclient_id_env = \"CW_CLIENT_ID\"\n",
        psa.uri()
    )
}

fn command(bin: &str, psa: Option<&ConnectWiseSim>) -> Command {
    let mut c = Command::new(bin);
    c.env("THREATLOCKER_API_KEY", DEMO_API_KEY)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    if let Some(psa) = psa {
        let creds = psa.credentials();
        c.env("CW_PRIVATE_KEY", &creds.private_key)
            .env("CW_CLIENT_ID", &creds.client_id);
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Rows the API should not have sent.

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap()
}

fn good_row(i: i64) -> Value {
    json!({
        "actionLogId": 7_000_000 + i,
        "eActionLogId": format!("e-{i}"),
        "hostname": "WS-01",
        "username": "CONTOSO\\jsmith",
        "dateTime": (t0() - chrono::Duration::minutes(30) + chrono::Duration::seconds(i)).to_rfc3339(),
        "fullPath": "c:\\apps\\tool.exe",
        "actionType": "execute",
        "actionId": 2,
        "isMonitorMode": false,
    })
}

/// Five rows no reader may use: two dated `0001-01-01` (a .NET default), one without
/// `dateTime`, one without any id, one dated three days ahead.
fn untrusted_rows(org: Option<&str>) -> Vec<Value> {
    let mut rows = vec![
        json!({"actionLogId": 900, "dateTime": "0001-01-01T00:00:00", "hostname": "WS-01", "actionId": 2}),
        json!({"actionLogId": 901, "dateTime": "0001-01-01T00:00:00", "hostname": "WS-01", "actionId": 2}),
        json!({"actionLogId": 902, "hostname": "WS-01", "actionId": 2}),
        json!({"dateTime": (t0() - chrono::Duration::minutes(5)).to_rfc3339(), "hostname": "WS-02", "actionId": 2}),
        json!({"actionLogId": 903, "dateTime": (t0() + chrono::Duration::days(3)).to_rfc3339(), "hostname": "WS-01", "actionId": 2}),
    ];
    if let Some(org) = org {
        for r in &mut rows {
            r["organizationId"] = json!(org);
        }
    }
    rows
}

fn assert_five_rejected(rejected: &Value) {
    assert_eq!(rejected["total"], 5, "{rejected}");
    let by = &rejected["by_reason"];
    assert_eq!(by["date_before_2000"], 2, "{rejected}");
    assert_eq!(by["missing_date_time"], 1, "{rejected}");
    assert_eq!(by["missing_id"], 1, "{rejected}");
    assert_eq!(by["date_in_future"], 1, "{rejected}");
    let examples: Vec<&str> = rejected["examples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        examples.contains(&"900: dateTime before 2000-01-01"),
        "{examples:?}"
    );
}

#[tokio::test]
async fn siem_forward_counts_rows_it_cannot_trust_and_never_sends_them() {
    let server = MockServer::start().await;
    let mut rows: Vec<Value> = (0..20).map(good_row).collect();
    rows.extend(untrusted_rows(None));
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&rows))
        .mount(&server)
        .await;
    let client = threatlocker_api::Client::builder("test-key-0123456789")
        .base_url(server.uri())
        .build()
        .unwrap();
    let db = scratch_path("robust-siem");
    let sink = Arc::new(RecordingSiemSink::new());
    let fwd = Forwarder::new(
        SiemConfig::new(Transport::Udp, "127.0.0.1:9"),
        sink.clone(),
        SentStore::open(&db).unwrap(),
    )
    .with_client(client, true)
    .with_clock(t0);
    let summary = fwd.run_once().await.unwrap();

    assert_eq!(sink.records().len(), 20, "only the 20 good rows are sent");
    assert_eq!(summary.total(), 20);
    assert_five_rejected(&serde_json::to_value(&summary).unwrap()["rows_rejected"]);
    // Rejected rows are accounted for, so they do not hold the checkpoint back.
    assert_eq!(fwd.store().checkpoint("action_log").unwrap(), Some(t0()));
    // A second pass over the same window sends nothing again and still names the bad rows.
    let summary = fwd.run_once().await.unwrap();
    assert_eq!(summary.total(), 0);
    assert_eq!(summary.rows_rejected.total, 5);
    assert_eq!(sink.records().len(), 20);
    remove_sqlite_files(&db);
}

#[tokio::test]
async fn a_failed_page_leaves_the_siem_checkpoint_where_it_was() {
    let server = MockServer::start().await;
    // A full first page (so the stream asks for more), then a second page that keeps failing.
    let page1: Vec<Value> = (0..1000).map(good_row).collect();
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .and(body_partial_json(json!({"pageNumber": 2})))
        .respond_with(ResponseTemplate::new(503))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&page1))
        .mount(&server)
        .await;
    let client = threatlocker_api::Client::builder("test-key-0123456789")
        .base_url(server.uri())
        .retry(threatlocker_api::RetryPolicy::with_max_attempts(1))
        .build()
        .unwrap();
    let db = scratch_path("robust-siem-page");
    let sink = Arc::new(RecordingSiemSink::new());
    let fwd = Forwarder::new(
        SiemConfig::new(Transport::Udp, "127.0.0.1:9"),
        sink.clone(),
        SentStore::open(&db).unwrap(),
    )
    .with_client(client, true)
    .with_clock(t0);
    let err = fwd.run_once().await.expect_err("the pass fails");
    assert!(err.to_string().contains("action log"), "{err}");
    assert!(
        sink.records().is_empty(),
        "nothing from a partial read is sent"
    );
    assert_eq!(fwd.store().checkpoint("action_log").unwrap(), None);
    remove_sqlite_files(&db);
}

#[tokio::test]
async fn a_run_reports_rejected_rows_instead_of_dropping_them() {
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let org = portal.dataset().orgs[0].id.clone();
    // The first organization's action log holds only rows no reader may use.
    let shifted: Vec<Value> = untrusted_rows(Some(&org))
        .into_iter()
        .map(|mut r| {
            // Dated relative to the real clock so the "future" row is in the future.
            if let Some(t) = r["dateTime"].as_str() {
                if !t.starts_with("0001") {
                    let at = chrono::DateTime::parse_from_rfc3339(t).unwrap();
                    let moved = now + (at.with_timezone(&Utc) - t0());
                    r["dateTime"] = json!(moved.to_rfc3339());
                }
            }
            r
        })
        .collect();
    Mock::given(method("POST"))
        .and(path_regex("(?i)ActionLogGetByParametersV2"))
        .and(header("managedOrganizationId", org.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(&shifted))
        .mount(portal.server())
        .await;
    let dir = Dir::new("robust-rejected");
    let text = monitor_config(&portal.uri(), "[psa]\nkind = \"none\"\n", "");
    let mut config = Config::from_toml_str(&text, &dir.0).unwrap();
    config.set_state_path(dir.0.join("s.db"));
    let env: std::collections::HashMap<String, String> =
        [("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())].into();
    let wf = Workflow::from_config(&config, &env).unwrap();
    let out = wf.run(RunOptions::new().now(now)).await.unwrap();
    let report = out.report_json();
    assert_eq!(report["success"], true, "{:?}", report["errors"]);
    assert_five_rejected(&report["rows_rejected"]);
    assert!(
        report.get("error_kind").is_none(),
        "no error cut the run short"
    );
}

// ---------------------------------------------------------------------------------------------
// The whole-run deadline against a black-holed API.

/// A TCP server that accepts every connection and never answers (the sockets are held open).
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let started = Instant::now();
        // Long enough for the test; the thread ends on its own afterwards.
        while started.elapsed() < Duration::from_secs(60) {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (format!("http://{addr}"), handle)
}

#[tokio::test]
async fn a_black_holed_api_ends_the_run_at_its_deadline_with_a_report() {
    let (uri, _server) = black_hole();
    let dir = Dir::new("robust-deadline");
    let cfg = dir.write(
        "config.toml",
        &monitor_config(&uri, "[psa]\nkind = \"none\"\n", ""),
    );
    let started = Instant::now();
    let out = output({
        let mut c = command(MONITOR, None);
        c.args(["run", "--deadline", "2s", "--config"]).arg(&cfg);
        c
    })
    .await;
    let elapsed = started.elapsed();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "the run ends near its 2s deadline, took {elapsed:?}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("the report JSON");
    assert_eq!(report["success"], false);
    assert_eq!(report["error_kind"], "deadline");
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("deadline") && errors.contains("retrieve events"),
        "{errors}"
    );
    assert!(stderr.contains("deadline"), "the log says why: {stderr}");
    // The window is left for the next run.
    let state = StateStore::open(&dir.0.join("threatlocker-monitor.db")).unwrap();
    assert_eq!(state.windows_done().unwrap(), 0);
    assert_eq!(state.last_window_done().unwrap(), None);
}

#[tokio::test]
async fn the_deadline_is_also_a_configuration_key() {
    let (uri, _server) = black_hole();
    let dir = Dir::new("robust-deadline-key");
    let mut config = Config::from_toml_str(
        &monitor_config(&uri, "[psa]\nkind = \"none\"\n", "deadline = \"1s\""),
        &dir.0,
    )
    .unwrap();
    config.set_state_path(dir.0.join("s.db"));
    let env: std::collections::HashMap<String, String> =
        [("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())].into();
    let wf = Workflow::from_config(&config, &env).unwrap();
    let started = Instant::now();
    let out = wf.run(RunOptions::new()).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!out.report.success);
    assert_eq!(out.error_kind, Some("deadline"));
    assert_eq!(out.report_json()["error_kind"], "deadline");
}

// ---------------------------------------------------------------------------------------------
// A write whose answer was lost.

#[tokio::test]
async fn a_permit_whose_answer_was_lost_is_finished_in_the_same_run() {
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    // The first permit POST is answered 500 (the simulator never sees it); later ones pass.
    Mock::given(method("POST"))
        .and(path_regex("(?i)ApprovalRequestPermitApplication"))
        .respond_with(ResponseTemplate::new(500).set_body_string("{\"message\":\"boom\"}"))
        .up_to_n_times(1)
        .expect(1)
        .mount(portal.server())
        .await;
    let dir = Dir::new("robust-permit");
    let mut config = Config::from_toml_str(
        &monitor_config(&portal.uri(), "[psa]\nkind = \"none\"\n", ""),
        &dir.0,
    )
    .unwrap();
    config.set_state_path(dir.0.join("s.db"));
    let env: std::collections::HashMap<String, String> =
        [("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())].into();
    let wf = Workflow::from_config(&config, &env).unwrap();
    let out = wf.run(RunOptions::new().now(now)).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let permits = portal.permits();
    assert!(!permits.is_empty(), "the story has auto-approvals");
    assert_eq!(
        out.report.auto_approvals_processed,
        permits.len() as u64,
        "every auto-approval went through, the one whose answer was lost included"
    );
    let mut ids: Vec<&str> = permits
        .iter()
        .map(|p| p.approval_request_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), permits.len(), "no request permitted twice");
    // Nothing is left for the next run.
    assert!(wf.state().unfinished_intents().unwrap().is_empty());
    assert_eq!(wf.state().windows_done().unwrap(), 1);
}

/// Commits the first permit it sees in the simulator (the request becomes Approved) and then
/// answers 500, as a server that failed after writing does.
struct CommitThen500 {
    portal: Arc<PortalSim>,
    seen: std::sync::Mutex<Option<String>>,
}

impl wiremock::Respond for CommitThen500 {
    fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let id = body["approvalRequest"]["approvalRequestId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.portal.action_elsewhere(&id, 4, "api-user");
        *self.seen.lock().unwrap() = Some(id);
        ResponseTemplate::new(500).set_body_string("{\"message\":\"boom\"}")
    }
}

#[tokio::test]
async fn a_permit_committed_but_answered_500_is_recorded_as_done_in_the_same_run() {
    let now = Utc::now();
    let portal = Arc::new(
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await,
    );
    let responder = Arc::new(CommitThen500 {
        portal: portal.clone(),
        seen: std::sync::Mutex::new(None),
    });
    struct Shared(Arc<CommitThen500>);
    impl wiremock::Respond for Shared {
        fn respond(&self, req: &wiremock::Request) -> ResponseTemplate {
            self.0.respond(req)
        }
    }
    Mock::given(method("POST"))
        .and(path_regex("(?i)ApprovalRequestPermitApplication"))
        .respond_with(Shared(responder.clone()))
        .up_to_n_times(1)
        .mount(portal.server())
        .await;
    let dir = Dir::new("robust-permit-committed");
    let mut config = Config::from_toml_str(
        &monitor_config(&portal.uri(), "[psa]\nkind = \"none\"\n", ""),
        &dir.0,
    )
    .unwrap();
    config.set_state_path(dir.0.join("s.db"));
    let env: std::collections::HashMap<String, String> =
        [("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())].into();
    let wf = Workflow::from_config(&config, &env).unwrap();
    let out = wf.run(RunOptions::new().now(now)).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let lost = responder
        .seen
        .lock()
        .unwrap()
        .clone()
        .expect("a permit was sent");
    let intent = wf
        .state()
        .intent(&format!("permit:{lost}"))
        .unwrap()
        .expect("the permit's intent");
    assert_eq!(intent.state, examples::state::IntentState::Done);
    let entry = out
        .report
        .approval_requests
        .iter()
        .find(|a| a.request_id.as_deref() == Some(lost.as_str()))
        .expect("the request is in the report");
    assert!(entry.auto_approved, "{}", entry.reason);
    assert_eq!(
        out.report.auto_approvals_processed,
        portal.permits().len() as u64 + 1,
        "the committed permit counts once, next to the ones the simulator recorded"
    );
    assert!(wf.state().unfinished_intents().unwrap().is_empty());
    assert_eq!(wf.state().windows_done().unwrap(), 1);
}

/// A PSA whose creates are committed and then answered 500 (the connector gave up on them).
struct CreateCommitsThen500 {
    inner: psa_connectors::recording::RecordingTicketSink,
}

#[async_trait::async_trait]
impl psa_connectors::TicketSink for CreateCommitsThen500 {
    async fn find_open(
        &self,
        external_ref: &str,
    ) -> psa_connectors::Result<Option<psa_connectors::TicketRef>> {
        self.inner.find_open(external_ref).await
    }

    async fn create(
        &self,
        ticket: &psa_connectors::Ticket,
    ) -> psa_connectors::Result<psa_connectors::TicketRef> {
        self.inner.create(ticket).await?;
        Err(psa_connectors::Error::Api {
            backend: "test",
            status: 500,
            message: "internal error after the write".into(),
        })
    }

    async fn add_note(
        &self,
        ticket: &psa_connectors::TicketRef,
        note: &psa_connectors::Note,
    ) -> psa_connectors::Result<()> {
        self.inner.add_note(ticket, note).await
    }
}

#[tokio::test]
async fn a_ticket_committed_but_answered_500_is_found_and_recorded_in_the_same_run() {
    let now = Utc::now();
    let portal =
        PortalSim::start(Dataset::generate(SimConfig::story_only(now)), DEMO_API_KEY).await;
    let dir = Dir::new("robust-ticket");
    let mut config = Config::from_toml_str(
        &monitor_config(&portal.uri(), "[psa]\nkind = \"none\"\n", ""),
        &dir.0,
    )
    .unwrap();
    config.set_state_path(dir.0.join("s.db"));
    let env: std::collections::HashMap<String, String> =
        [("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned())].into();
    let sink = Arc::new(CreateCommitsThen500 {
        inner: psa_connectors::recording::RecordingTicketSink::new(),
    });
    let wf = Workflow::from_config(&config, &env)
        .unwrap()
        .with_ticket_sink(sink.clone());
    let out = wf.run(RunOptions::new().now(now)).await.unwrap();
    assert!(out.report.success, "{:?}", out.report.errors);
    let created = sink.inner.tickets().len();
    assert!(created > 0, "the story opens tickets");
    assert_eq!(out.report.blocked_summary.tickets_created, created as u64);
    assert!(out.tickets.iter().all(|t| !t.ticket_id.is_empty()));
    assert!(wf.state().unfinished_intents().unwrap().is_empty());
    // The next run opens nothing again.
    let again = wf.run(RunOptions::new().now(now)).await.unwrap();
    assert!(again.report.success, "{:?}", again.report.errors);
    assert_eq!(sink.inner.tickets().len(), created, "no ticket twice");
    assert_eq!(sink.inner.create_calls(), created as u32);
}

// ---------------------------------------------------------------------------------------------
// Output: closed pipes, a full disk, a damaged state file.

struct Sims {
    portal: PortalSim,
    psa: ConnectWiseSim,
    dir: Dir,
}

async fn sims(prefix: &str) -> Sims {
    Sims {
        portal: PortalSim::start(
            Dataset::generate(SimConfig::story_only(Utc::now())),
            DEMO_API_KEY,
        )
        .await,
        psa: ConnectWiseSim::start(CwCredentials::default()).await,
        dir: Dir::new(prefix),
    }
}

impl Sims {
    fn config(&self, extra_sections: &str) -> PathBuf {
        let text = format!(
            "{}\n{extra_sections}",
            monitor_config(&self.portal.uri(), &connectwise(&self.psa), "")
        );
        self.dir.write("config.toml", &text)
    }
}

/// Runs `c` with its stdout a pipe whose reading end is closed before the command writes.
async fn with_closed_stdout(mut c: Command) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("the binary starts");
        drop(child.stdout.take());
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (child.wait().unwrap().code(), err)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_closed_stdout_pipe_ends_every_binary_quietly_with_exit_0() {
    let s = sims("robust-pipe").await;
    // A syslog receiver that takes every datagram.
    let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let cfg = s.config(&format!(
        "[siem]\ntransport = \"udp\"\naddress = \"{}\"\ninitial_lookback = \"24h\"\n",
        receiver.local_addr().unwrap()
    ));
    let cases: Vec<(&str, Command)> = vec![
        ("run", {
            let mut c = command(MONITOR, Some(&s.psa));
            c.args(["run", "--config"]).arg(&cfg);
            c
        }),
        ("report", {
            let mut c = command(MONITOR, Some(&s.psa));
            c.args(["report", "--format", "json", "--config"]).arg(&cfg);
            c
        }),
        ("siem-forward", {
            let mut c = command(SIEM, None);
            c.args(["--once", "--config"]).arg(&cfg);
            c
        }),
        ("tl-investigate", {
            let mut c = command(INVESTIGATE, None);
            c.args(["denials", "--json", "--config"]).arg(&cfg);
            c
        }),
    ];
    for (name, c) in cases {
        let (code, stderr) = with_closed_stdout(c).await;
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(code, Some(0), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn a_report_that_cannot_be_written_is_exit_1_with_the_reason() {
    let s = sims("robust-full").await;
    let cfg = s.config("");
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full exists");
    let out = output({
        let mut c = command(MONITOR, Some(&s.psa));
        c.args(["run", "--config"]).arg(&cfg).stdout(full);
        c
    })
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot write to stdout") && stderr.contains("space"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_damaged_state_file_still_gives_the_report_json() {
    let s = sims("robust-damaged").await;
    let cfg = s.config("");
    s.dir.write(
        "threatlocker-monitor.db",
        &"this is not a database; ".repeat(400),
    );
    let out = output({
        let mut c = command(MONITOR, Some(&s.psa));
        c.args(["run", "--config"]).arg(&cfg);
        c
    })
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(report["success"], false);
    let errors = report["errors"].to_string();
    assert!(
        errors.contains("state") || errors.contains("database"),
        "{errors}"
    );
    assert_eq!(report["monitoring_summary"]["total_events"], 0);
}

// ---------------------------------------------------------------------------------------------
// Configuration errors: each names the key and the file, exits 2 and leaves no state file.

/// (what, configuration, environment, key named, text in the message)
type ConfigCase = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    &'static str,
    &'static str,
);

#[test]
fn configuration_errors_name_key_and_file_and_leave_no_state_file() {
    let api = "http://127.0.0.1:9";
    let cw = |url: &str| {
        format!("[psa]\nkind = \"connectwise\"\nbase_url = \"{url}\"\ncompany_id = \"msp\"\npublic_key = \"pk\"\nprivate_key_env = \"CW_PRIVATE_KEY\"\nclient_id_env = \"CW_CLIENT_ID\"\n")
    };
    let good_cw = cw("https://api-na.myconnectwise.net");
    let cases: Vec<ConfigCase> =
        vec![
        (
            "no [psa] while tickets are on",
            monitor_config(api, "", ""),
            vec![],
            "`psa`",
            "kind = \"none\"",
        ),
        (
            "an empty API key variable",
            monitor_config(api, "[psa]\nkind = \"none\"\n", ""),
            vec![("THREATLOCKER_API_KEY", "")],
            "threatlocker.api_key_env",
            "is empty",
        ),
        (
            "an empty PSA secret (checked before the state file is created)",
            monitor_config(api, &good_cw, ""),
            vec![("CW_PRIVATE_KEY", " "), ("CW_CLIENT_ID", "x")],
            "psa.private_key_env",
            "is empty",
        ),
        (
            "an unset PSA secret",
            monitor_config(api, &good_cw, ""),
            vec![("CW_CLIENT_ID", "x")],
            "psa.private_key_env",
            "is not set",
        ),
        (
            "a duplicate key",
            monitor_config(api, "[psa]\nkind = \"none\"\n", "dry_run = true\ndry_run = false"),
            vec![],
            "workflow.dry_run",
            "duplicate key",
        ),
        (
            "a doubled ConnectWise path",
            monitor_config(
                api,
                &cw("https://api-na.myconnectwise.net/v4_6_release/apis/3.0/v4_6_release/apis/3.0"),
                "",
            ),
            vec![("CW_PRIVATE_KEY", "x"), ("CW_CLIENT_ID", "x")],
            "psa.base_url",
            "repeats",
        ),
        (
            "a bad deadline",
            monitor_config(api, "[psa]\nkind = \"none\"\n", "deadline = \"soon\""),
            vec![],
            "workflow.deadline",
            "not a duration",
        ),
    ];
    for (what, body, env, key, needle) in cases {
        let dir = Dir::new("robust-config");
        let file = dir.write("config.toml", &body);
        let mut c = Command::new(MONITOR);
        c.args(["run", "--config"])
            .arg(&file)
            .env_remove("CW_PRIVATE_KEY")
            .env_remove("CW_CLIENT_ID")
            .env("THREATLOCKER_API_KEY", "k")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(needle),
            "{what}: wants {key} and {needle:?}: {stderr}"
        );
        assert!(
            stderr.contains(&file.display().to_string()),
            "{what}: names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert_eq!(
            dir.files(),
            vec!["config.toml"],
            "{what}: no state file left"
        );
    }
}
