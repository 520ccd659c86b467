//! The forwarder end to end: wiremock action log → `Forwarder` → `SyslogSink` → a syslog
//! listener in the test, across restarts and receiver outages.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use examples::siem::{Backoff, Forwarder, SentStore, SiemConfig, SourceKind};
use psa_connectors::syslog::{Format, SyslogSink, Transport};
use psa_connectors::{SiemRecord, SiemSink};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::data::{config_file, Search, API_KEY_ENV};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 14, 12, 0, 0).unwrap()
}

/// `n` rows, one a second from 11:30 (inside the first pass's 1-hour lookback).
fn feed(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "actionLogId": 5_000_000 + i as i64,
                "eActionLogId": format!("e-{i}"),
                "hostname": format!("WS-{:02}", i % 7),
                "username": "CONTOSO\\jsmith",
                "dateTime": (t0() - chrono::Duration::minutes(30) + chrono::Duration::seconds(i as i64)).to_rfc3339(),
                "fullPath": format!("c:\\apps\\app{}.exe", i % 11),
                "actionType": "execute",
                "actionId": if i % 3 == 0 { 2 } else { 1 },
                "isMonitorMode": false,
            })
        })
        .collect()
}

async fn portal(rows: Vec<Value>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/portalapi/ActionLog/ActionLogGetByParametersV2"))
        .respond_with(Search(rows))
        .mount(&server)
        .await;
    server
}

fn client(server: &MockServer) -> threatlocker_api::Client {
    threatlocker_api::Client::builder("test-key-0123456789")
        .base_url(server.uri())
        .build()
        .expect("client")
}

/// What a TCP listener received: `externalId` of every octet-counted frame, in order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<String>>>);

impl Received {
    fn ids(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) {
        for _ in 0..500 {
            if self.0.lock().unwrap().len() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "only {} of {n} records arrived",
            self.0.lock().unwrap().len()
        );
    }
}

fn external_id(msg: &str) -> String {
    msg.split(" externalId=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap_or("?")
        .to_owned()
}

/// Accepts connections on `listener` and records every frame's id until aborted.
fn listen(listener: TcpListener, received: Received) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Connections live in the set, so aborting the listener closes them too.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let received = received.clone();
            connections.spawn(async move {
                let mut pending: Vec<u8> = Vec::new();
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(sp) = pending.iter().position(|&b| b == b' ') {
                        let len: usize = std::str::from_utf8(&pending[..sp])
                            .unwrap()
                            .parse()
                            .expect("octet count");
                        assert!(
                            !pending.starts_with(b"0"),
                            "MSG-LEN starts with a non-zero digit"
                        );
                        if pending.len() < sp + 1 + len {
                            break;
                        }
                        let msg =
                            String::from_utf8(pending[sp + 1..sp + 1 + len].to_vec()).unwrap();
                        assert!(
                            msg.starts_with('<') && msg.contains(">1 "),
                            "RFC 5424 header: {msg}"
                        );
                        assert!(
                            msg.contains("CEF:0|ThreatLocker|Application Control|"),
                            "{msg}"
                        );
                        received.0.lock().unwrap().push(external_id(&msg));
                        pending.drain(..sp + 1 + len);
                    }
                }
            });
        }
    })
}

/// Passes batches to the real sink until `allow` batches have gone, then stops: it either
/// hangs forever (so the forwarder can be dropped mid-stream) or waits for `resume`.
struct Gate {
    inner: Arc<SyslogSink>,
    allow: u32,
    sent: AtomicU32,
    reached: Notify,
    resume: Option<Arc<Notify>>,
}

#[async_trait]
impl SiemSink for Gate {
    async fn send_batch(&self, records: &[SiemRecord]) -> psa_connectors::Result<()> {
        if self.sent.load(Ordering::SeqCst) == self.allow {
            self.reached.notify_one();
            match &self.resume {
                None => std::future::pending::<()>().await,
                Some(resume) => resume.notified().await,
            }
            self.sent.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.send_batch(records).await?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn siem_config(addr: &str, transport: Transport) -> SiemConfig {
    let mut c = SiemConfig::new(transport, addr);
    c.batch_size = 100;
    c
}

fn counts(ids: &[String]) -> HashMap<&str, usize> {
    let mut m = HashMap::new();
    for id in ids {
        *m.entry(id.as_str()).or_default() += 1;
    }
    m
}

#[tokio::test]
async fn forwarder_restarted_mid_stream_sends_every_record_exactly_once() {
    let server = portal(feed(1000)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Received::default();
    let _l = listen(listener, received.clone());
    let db = examples::state::scratch_path("siem-restart");
    let mut config = siem_config(&addr, Transport::Tcp);
    config.overlap = Duration::from_secs(20 * 60);

    // First forwarder: three batches accepted, then it is dropped in the middle of the fourth.
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let gate = Arc::new(Gate {
        inner: sink,
        allow: 3,
        sent: AtomicU32::new(0),
        reached: Notify::new(),
        resume: None,
    });
    let fwd = Forwarder::new(config.clone(), gate.clone(), SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_clock(t0);
    tokio::select! {
        r = fwd.run_once() => panic!("the gate should hold the fourth batch: {r:?}"),
        _ = gate.reached.notified() => {}
    }
    drop(fwd);
    received.wait_for(300).await;
    let store = SentStore::open(&db).unwrap();
    assert_eq!(store.remembered("action_log").unwrap(), 300);
    let cp = store
        .checkpoint("action_log")
        .unwrap()
        .expect("checkpoint after accepted batches");
    assert_eq!(
        cp,
        t0() - chrono::Duration::minutes(30) + chrono::Duration::seconds(299)
    );

    // Restarted: sends the other 700 and nothing twice.
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let fwd = Forwarder::new(config.clone(), sink, store)
        .with_client(client(&server), true)
        .with_clock(t0);
    let summary = fwd.run_once().await.unwrap();
    assert_eq!(summary.total(), 700);
    assert_eq!(summary.batches, 7);
    assert_eq!(
        summary.already_sent, 300,
        "the overlap re-read the first 300; dropped by id"
    );
    received.wait_for(1000).await;
    let ids = received.ids();
    let c = counts(&ids);
    assert_eq!(c.len(), 1000, "every record arrived");
    assert!(
        c.values().all(|&n| n == 1),
        "none twice: {:?}",
        c.iter().filter(|(_, &n)| n > 1).collect::<Vec<_>>()
    );
    assert_eq!(fwd.store().checkpoint("action_log").unwrap(), Some(t0()));

    // A later pass whose window overlaps the last one sends nothing again.
    let fwd = fwd.with_clock(|| t0() + chrono::Duration::minutes(5));
    let summary = fwd.run_once().await.unwrap();
    assert_eq!(summary.total(), 0);
    assert_eq!(
        summary.already_sent, 400,
        "rows 11:40:00-11:46:39 are in the 20-minute overlap before 12:00"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(received.ids().len(), 1000);
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn a_receiver_that_goes_away_is_retried_with_backoff_and_nothing_is_lost() {
    let server = portal(feed(500)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let first = listen(listener, received.clone());
    let db = examples::state::scratch_path("siem-outage");
    let config = siem_config(&addr.to_string(), Transport::Tcp);
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let resume = Arc::new(Notify::new());
    let gate = Arc::new(Gate {
        inner: sink,
        allow: 2,
        sent: AtomicU32::new(0),
        reached: Notify::new(),
        resume: Some(resume.clone()),
    });
    let fwd = Forwarder::new(config, gate.clone(), SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_clock(t0)
        .with_backoff(Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(100),
        })
        .with_max_attempts(None);
    let run = tokio::spawn(async move { fwd.run_once().await.map(|s| (s, fwd)) });
    gate.reached.notified().await;
    received.wait_for(200).await;
    // The receiver goes away between batches.
    first.abort();
    let _ = first.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    resume.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...and comes back on the same port.
    let listener = TcpListener::bind(addr).await.unwrap();
    let _second = listen(listener, received.clone());
    let (summary, fwd) = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(summary.retries >= 1, "{summary:?}");
    assert_eq!(summary.total(), 500);
    received.wait_for(500).await;
    let ids = received.ids();
    let c = counts(&ids);
    assert_eq!(c.len(), 500, "nothing lost");
    assert!(c.values().all(|&n| n == 1), "nothing twice");
    assert_eq!(fwd.store().checkpoint("action_log").unwrap(), Some(t0()));
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn udp_json_smoke_with_the_workflows_decisions() {
    let server = portal(feed(5)).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let db = examples::state::scratch_path("siem-udp");
    let state = examples::state::StateStore::open(&db).unwrap();
    state
        .begin_intent(
            examples::state::IntentKind::Ticket,
            "ticket:abc",
            &json!({"summary": "AnyDesk blocked"}),
            None,
        )
        .unwrap();
    state.complete_intent("ticket:abc", Some("4711")).unwrap();
    let mut config = siem_config(&socket.local_addr().unwrap().to_string(), Transport::Udp);
    config.format = Format::Json;
    config.sources = vec![SourceKind::ActionLog, SourceKind::Decisions];
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    // The intent was completed "now"; the clock must cover it.
    let fwd = Forwarder::new(config, sink, SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_state(state);
    // Rows are from 2026-05-14; the real clock is later, so look back far enough.
    let summary = fwd.run_once().await;
    let summary = summary.unwrap();
    assert_eq!(summary.sent.get("decisions"), Some(&1));
    let mut msgs = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf)).await
    {
        msgs.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let decision = msgs
        .iter()
        .find(|m| m.contains("ticket:abc"))
        .expect("decision forwarded");
    let json_part = &decision[decision.find('{').unwrap()..];
    let v: Value = serde_json::from_str(json_part.trim_start_matches('\u{feff}')).unwrap();
    assert_eq!(v["signature"], "tl:workflow:ticket", "{v}");
    assert_eq!(v["raw"]["summary"], "AnyDesk blocked");
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn udp_json_action_log_and_system_audit_each_once() {
    let server = portal(feed(5)).await;
    // A system-audit entry without an id (the API can send null): keyed by a hash of its JSON.
    Mock::given(method("POST"))
        .and(path("/portalapi/SystemAudit/SystemAuditGetByParameters"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(json!([{
            "systemAuditId": null,
            "emailAddress": "tech@msp.example",
            "action": "Modify",
            "effectiveAction": "Permitted",
            "ipAddress": "203.0.113.7",
            "details": {"page": "Application Control Policies", "function": "PolicyInsert", "details": "Created policy Permit AnyDesk"},
            "dateTime": "2026-05-14T11:45:00Z"
        }])))
        .mount(&server)
        .await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let db = examples::state::scratch_path("siem-udp2");
    let mut config = siem_config(&socket.local_addr().unwrap().to_string(), Transport::Udp);
    config.format = Format::Json;
    config.sources = vec![SourceKind::ActionLog, SourceKind::SystemAudit];
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let fwd = Forwarder::new(config, sink, SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_clock(t0);
    let summary = fwd.run_once().await.unwrap();
    assert_eq!(summary.sent.get("action_log"), Some(&5));
    assert_eq!(summary.sent.get("system_audit"), Some(&1));
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    for _ in 0..6 {
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let v: Value =
            serde_json::from_str(msg[msg.find('{').unwrap()..].trim_start_matches('\u{feff}'))
                .unwrap();
        got.push(v);
    }
    let blocked = got
        .iter()
        .find(|v| v["raw"]["actionLogId"] == 5_000_000)
        .expect("row 0");
    assert_eq!(blocked["signature"], "tl:execute:deny");
    assert!(blocked["severity"].as_u64().unwrap() >= 5, "{blocked}");
    let portal_audit = got
        .iter()
        .find(|v| v["signature"] == "tl:portal:modify:permitted")
        .expect("system audit");
    assert_eq!(portal_audit["raw"]["emailAddress"], "tech@msp.example");
    // The next pass overlaps: nothing is sent again, the id-less entry included.
    let fwd = fwd.with_clock(|| t0() + chrono::Duration::minutes(1));
    let again = fwd.run_once().await.unwrap();
    assert_eq!(again.total(), 0, "{again:?}");
    assert_eq!(
        again.already_sent, 1,
        "the system-audit entry is in the overlap"
    );
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn the_loop_passes_on_its_interval_and_stops_cleanly() {
    let server = portal(feed(50)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Received::default();
    let _l = listen(listener, received.clone());
    let db = examples::state::scratch_path("siem-loop");
    let config = siem_config(&addr, Transport::Tcp);
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let fwd = Forwarder::new(config, sink, SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_clock(t0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        fwd.run(Duration::from_millis(50), async {
            let _ = stopped.await;
        })
        .await
    });
    received.wait_for(50).await;
    // Several intervals pass; nothing is sent twice.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let searches = server.received_requests().await.unwrap().len();
    assert!(searches >= 3, "one search per pass: {searches}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(received.ids().len(), 50);
    let _ = std::fs::remove_file(&db);
}

#[tokio::test]
async fn siem_forward_bad_config_exits_2_naming_the_key() {
    let (dir, _) = config_file("http://127.0.0.1:9", "");
    let run = move |extra: &str| {
        let file = dir.join(format!("siem-{}.toml", fastrand::u32(..)));
        std::fs::write(&file, format!("[threatlocker]\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"{API_KEY_ENV}\"\n{extra}")).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_siem-forward"))
            .arg("--config")
            .arg(&file)
            .arg("--once")
            .env(API_KEY_ENV, "k-0123456789")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = tokio::task::spawn_blocking(move || {
        let a = run("[siem]\ntransport = \"tcp\"\naddress = \"127.0.0.1:514\"\nbatch_size = 0\n");
        let b = run("");
        let c =
            run("[siem]\ntransport = \"tcp\"\naddress = \"127.0.0.1:514\"\ncolour = \"blue\"\n");
        (vec![a.0, b.0, c.0], vec![a.1, b.1, c.1])
    })
    .await
    .unwrap();
    assert_eq!(code, vec![Some(2), Some(2), Some(2)], "{err:?}");
    assert!(err[0].contains("siem.batch_size"), "{}", err[0]);
    assert!(err[1].contains("`siem`"), "{}", err[1]);
    assert!(err[2].contains("siem.colour"), "{}", err[2]);
}

#[tokio::test]
async fn udp_records_too_long_for_a_datagram_are_shortened_and_counted_in_the_report() {
    // Every other row carries a 2.8 KB non-ASCII path; the rest fit.
    let mut rows = feed(6);
    for (i, row) in rows.iter_mut().enumerate().filter(|(i, _)| i % 2 == 0) {
        row["fullPath"] = json!(format!(
            "c:\\users\\jürgen\\{}\\app{i}.exe",
            "Ünïcödé-文件夹=ä]\\".repeat(170)
        ));
    }
    let server = portal(rows).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let db = examples::state::scratch_path("siem-udp-truncated");
    let config = siem_config(&socket.local_addr().unwrap().to_string(), Transport::Udp);
    assert_eq!(config.max_datagram, 2048);
    let sink = Arc::new(SyslogSink::new(config.sink_config()).unwrap());
    let fwd = Forwarder::new(config, sink, SentStore::open(&db).unwrap())
        .with_client(client(&server), true)
        .with_clock(t0);
    let summary = fwd.run_once().await.unwrap();
    assert_eq!(summary.sent.get("action_log"), Some(&6));
    assert_eq!(summary.truncated, 3, "{summary:?}");
    let report = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        report["truncated"], 3,
        "siem-forward --once prints it: {report}"
    );
    let mut buf = vec![0u8; 65536];
    let mut marked = 0;
    for _ in 0..6 {
        let n = tokio::time::timeout(Duration::from_secs(2), socket.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n <= 2048, "{n} bytes");
        let msg = String::from_utf8(buf[..n].to_vec()).expect("never a split character");
        assert!(msg.contains(" externalId=500000"), "identity kept: {msg}");
        assert!(msg.contains(" cs3=e-"), "{msg}");
        assert_eq!(
            msg.matches("|rt=").count() + msg.matches(" rt=").count(),
            1,
            "{msg}"
        );
        if msg.contains(" truncated=filePath") {
            marked += 1;
        }
    }
    assert_eq!(marked, 3);
    let _ = std::fs::remove_file(&db);
}
