//! Throughput of the SIEM forwarder pipeline: 1 000 000 action-log rows (in windows of 50 000,
//! as a catch-up after an outage would read them) through severity from the engine's
//! detections, mapping to `SiemRecord`s, de-duplication against the sent-id table, batches to a
//! local TCP listener through `SyslogSink` (CEF, octet counting) and the per-batch SQLite commit
//! (ids + checkpoint, `synchronous = FULL`). Reports records/s per run, the median, and the peak
//! resident memory (VmHWM).
//!
//! `cargo bench -p examples --bench siem_forward [-- --records N --runs N --batch N --severity engine|outcome]`

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use examples::siem::{Forwarder, PassSummary, SentStore, SeverityMode, SiemConfig};
use policy_engine::{Engine, EngineConfig};
use psa_connectors::syslog::{SyslogSink, Transport};
use threatlocker_api::ActionLogRow;

const WINDOW: usize = 50_000;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn rows(start: usize, n: usize) -> Vec<ActionLogRow> {
    let base = Utc.with_ymd_and_hms(2026, 5, 14, 0, 0, 0).unwrap();
    (start..start + n)
        .map(|i| {
            let app = i % 500;
            let (action_id, monitor) = match i % 20 {
                0..=13 => (1, false),
                14..=18 => (2, false),
                _ => (2, true),
            };
            let v = serde_json::json!({
                "actionLogId": 80_000_000_000i64 + i as i64,
                "eActionLogId": format!("6f1c2d3e-4b5a-4c7d-9e8f-{:012x}", i),
                "organizationId": "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d",
                "organizationName": "Contoso Dental",
                "computerId": format!("9a8b7c6d-2222-4e5f-8a9b-{:012x}", i % 200),
                "hostname": format!("WS-{:03}", i % 200),
                "username": format!("CONTOSO\\user{}", i % 300),
                "dateTime": (base + chrono::Duration::milliseconds(i as i64 * 10)).to_rfc3339(),
                "fullPath": format!("c:\\program files\\vendor{app}\\app{app}.exe"),
                "processPath": "c:\\windows\\explorer.exe",
                "sha256Hash": format!("{:064x}", app as u128 * 0x9e37_79b9_7f4a_7c15),
                "actionType": "execute",
                "actionId": action_id,
                "isMonitorMode": monitor,
                "action": if action_id == 1 { "Permit" } else { "Deny" },
                "policyName": if action_id == 1 { "Allow vendor apps" } else { "Default - Deny" },
            });
            serde_json::from_value(v).expect("synthetic row")
        })
        .collect()
}

/// Reads octet-counted frames until the peer closes; returns how many.
fn count_frames(mut s: std::net::TcpStream) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    let mut pending: Vec<u8> = Vec::new();
    let mut frames = 0u64;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => return frames,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut pos = 0;
        while let Some(sp) = pending[pos..].iter().position(|&b| b == b' ') {
            let len: usize = std::str::from_utf8(&pending[pos..pos + sp])
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("octet count");
            if pending.len() < pos + sp + 1 + len {
                break;
            }
            pos += sp + 1 + len;
            frames += 1;
        }
        pending.drain(..pos);
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn main() {
    let records: usize = arg("--records", "1000000").parse().expect("--records N");
    let runs: usize = arg("--runs", "3").parse().expect("--runs N");
    let batch: usize = arg("--batch", "1000").parse().expect("--batch N");
    let severity = match arg("--severity", "engine").as_str() {
        "outcome" => SeverityMode::Outcome,
        _ => SeverityMode::Engine,
    };
    if std::env::args().any(|a| a == "--breakdown") {
        breakdown(records.min(200_000), batch);
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rates = Vec::new();
    for run in 1..=runs {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let receiver = std::thread::spawn(move || {
            let (s, _) = listener.accept().expect("accept");
            count_frames(s)
        });
        let path = examples::state::scratch_path("siem-bench");
        let mut config = SiemConfig::new(Transport::Tcp, addr.to_string());
        config.batch_size = batch;
        config.severity = severity;
        let sink = SyslogSink::new(config.sink_config()).expect("sink");
        let store = SentStore::open(&path).expect("store");
        let fwd = Forwarder::new(config, Arc::new(sink), store)
            .with_engine(Engine::new(EngineConfig::default()).expect("engine"));
        let mut summary = PassSummary::default();
        let mut busy = Duration::ZERO;
        let mut done = 0;
        while done < records {
            let n = WINDOW.min(records - done);
            let window = rows(done, n);
            let from = window[0].date_time.expect("time");
            let to = window[n - 1].date_time.expect("time");
            let t = Instant::now();
            rt.block_on(fwd.forward_action_log_rows(from, to, window, &mut summary))
                .expect("forward");
            busy += t.elapsed();
            done += n;
        }
        drop(fwd);
        let received = receiver.join().expect("receiver");
        assert_eq!(
            received, records as u64,
            "every record reached the listener once"
        );
        assert_eq!(summary.total(), records as u64);
        let rate = records as f64 / busy.as_secs_f64();
        println!(
            "run {run}: {records} records in {:.2}s = {:.0} records/s ({} batches of {batch})",
            busy.as_secs_f64(),
            rate,
            summary.batches
        );
        rates.push(rate);
        let _ = std::fs::remove_file(&path);
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
        }
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median: {:.0} records/s over {runs} run(s); peak memory (VmHWM): {} MiB",
        rates[rates.len() / 2],
        vm_hwm_kib().map(|k| k / 1024).unwrap_or(0)
    );
}

/// Times the pipeline's parts separately (mapping, id bookkeeping, encoding).
fn breakdown(n: usize, batch: usize) {
    let rows = rows(0, n);
    let t = Instant::now();
    let keys: Vec<(String, Option<chrono::DateTime<Utc>>)> = rows
        .iter()
        .map(|r| (examples::siem::map::row_key(r), r.date_time))
        .collect();
    println!(
        "ids:      {:>8.0} rows/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let mut rec = psa_connectors::SiemRecord::new(Utc::now(), 0, "", "");
    for r in &rows {
        examples::siem::map::fill_action_log_record(&mut rec, r, None, false);
    }
    println!(
        "mapping:  {:>8.0} rows/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let records: Vec<_> = rows
        .iter()
        .map(|r| examples::siem::map::action_log_record(r, None, false))
        .collect();
    let engine = Engine::new(EngineConfig::default()).expect("engine");
    let mut rs = rows.clone();
    let t = Instant::now();
    let from = rows[0].date_time.expect("t");
    let to = rows[n - 1].date_time.expect("t");
    let f = examples::siem::map::engine_findings(&engine, &mut rs, from, to);
    println!(
        "engine:   {:>8.0} rows/s ({} rows flagged)",
        n as f64 / t.elapsed().as_secs_f64(),
        f.len()
    );
    let sink = SyslogSink::new(psa_connectors::syslog::Config::new(
        "127.0.0.1:9",
        Transport::Tcp,
    ))
    .expect("sink");
    let (mut scratch, mut buf) = (String::new(), Vec::new());
    let t = Instant::now();
    for r in &records {
        sink.encoder().frame_into(r, &mut scratch, &mut buf);
        buf.clear();
    }
    println!(
        "encoding: {:>8.0} rows/s",
        n as f64 / t.elapsed().as_secs_f64()
    );
    let path = examples::state::scratch_path("siem-bench-store");
    let store = SentStore::open(&path).expect("store");
    let t = Instant::now();
    for chunk in keys.chunks(batch) {
        store
            .commit_batch(
                "action_log",
                chunk.iter().map(|(k, t)| (k.as_str(), *t)),
                chunk.last().and_then(|c| c.1),
                Utc::now(),
            )
            .expect("commit");
    }
    println!(
        "store:    {:>8.0} rows/s ({} commits)",
        n as f64 / t.elapsed().as_secs_f64(),
        n.div_ceil(batch)
    );
    let t = Instant::now();
    let sent = store.sent_since("action_log", from).expect("sent");
    println!(
        "sent set: {:>8.0} rows/s ({} ids)",
        n as f64 / t.elapsed().as_secs_f64(),
        sent.len()
    );
    let _ = std::fs::remove_file(&path);
}
