//! End-to-end streaming benchmark: action-log rows shaped like reference §3.1.1 (every field
//! present, about 1 KB each) served by a tiny local HTTP/1.1 server in pages of 1000, streamed
//! through the real client (reqwest, retry/limit layer, decoding, de-duplication).
//!
//! Run: `cargo bench -p threatlocker-api --bench stream_bench`
//! (each size runs in its own child process so peak memory — VmHWM — is per size), or
//! `cargo bench -p threatlocker-api --bench stream_bench -- --rows 100000` for one size.
//!
//! The server is in the same process as the client; its own memory (one pre-rendered page and
//! one response buffer) is the same for every size.

#![recursion_limit = "512"]

use std::time::Instant;

use futures_util::StreamExt;
use serde_json::{json, Value};
use threatlocker_api::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PAGE_SIZE: usize = 1000;
/// Row ids are `ID_BASE + n`: always 12 digits, so they can be patched in place.
const ID_BASE: u64 = 100_000_000_000;
const ID_MARK: &str = "999999999999";

fn row_template() -> Value {
    // The example row of reference §3.1.1 with every field filled in (no nulls), plus the
    // identity/time/policy fields the workflow reads and one nested object the client keeps
    // as an unknown field: about 1 KB of JSON.
    json!({
        "actionLogId": ID_MARK.parse::<u64>().unwrap(),
        "eActionLogId": format!("6f1c2d3e-4b5a-4c7d-9e8f-{ID_MARK}"),
        "organizationId": "3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d",
        "organizationName": "Contoso Dental",
        "computerId": "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b",
        "hostname": "WS-FRONTDESK-02",
        "username": "CONTOSO\\jsmith",
        "dateTime": "2026-05-14T13:02:11.483Z",
        "dateTimeImported": "2026-05-14T13:02:15.1234567",
        "fullPath": "c:\\users\\jsmith\\downloads\\anydesk.exe",
        "processPath": "c:\\windows\\explorer.exe",
        "createdByProcess": "c:\\program files\\google\\chrome\\application\\chrome.exe",
        "hash": "5d41402abc4b2a76b9719d911017c592",
        "sha256Hash": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "cert": "CN=philandro Software GmbH",
        "actionType": "execute",
        "actionTypeId": 5,
        "actionId": 2,
        "action": "Deny",
        "isMonitorMode": false,
        "policyId": "0d9e8f7a-3333-4b1c-8d2e-6f7a8b9c0d1e",
        "policyName": "Default - Deny",
        "applicationId": "7c6b5a49-5555-4d3c-8b2a-1f0e9d8c7b6a",
        "applicationName": "AnyDesk",
        "optionToRequest": true,
        "osType": 1,
        "groupByCount": 0,
        "size": 5242880,
        "threatLockerItem": {"d": "2026-05-14T13:02:11", "at": 5, "aid": 2}
    })
}

/// One page body with `ID_MARK` placeholders, and the byte offsets of each placeholder.
struct Template {
    body: Vec<u8>,
    marks: Vec<usize>,
    row_len: usize,
}

fn template() -> Template {
    let row = serde_json::to_string(&row_template()).unwrap();
    let rows: Vec<&str> = std::iter::repeat_n(row.as_str(), PAGE_SIZE).collect();
    let body = format!("[{}]", rows.join(",")).into_bytes();
    let marks = body
        .windows(ID_MARK.len())
        .enumerate()
        .filter(|(_, w)| *w == ID_MARK.as_bytes())
        .map(|(i, _)| i)
        .collect::<Vec<_>>();
    assert_eq!(marks.len(), 2 * PAGE_SIZE);
    Template {
        body,
        marks,
        row_len: row.len(),
    }
}

/// The body of page `page` (1-based) of a `total`-row result.
fn render(t: &Template, page: usize, total: usize, out: &mut Vec<u8>) {
    let first = (page - 1) * PAGE_SIZE;
    let n = total.saturating_sub(first).min(PAGE_SIZE);
    out.clear();
    if n == 0 {
        out.extend_from_slice(b"[]");
        return;
    }
    // Rows are equal length, so a short page is a prefix of the template plus `]`.
    let len = if n == PAGE_SIZE {
        t.body.len()
    } else {
        1 + n * (t.row_len + 1)
    };
    out.extend_from_slice(&t.body[..len]);
    if n < PAGE_SIZE {
        let last = out.len() - 1;
        out[last] = b']';
    }
    for (i, &at) in t.marks.iter().enumerate().take(2 * n) {
        let id = ID_BASE + (first + i / 2) as u64;
        out[at..at + ID_MARK.len()].copy_from_slice(id.to_string().as_bytes());
    }
}

async fn serve(mut sock: TcpStream, t: std::sync::Arc<Template>, total: usize) {
    let mut buf = Vec::with_capacity(8192);
    let mut body = Vec::with_capacity(t.body.len());
    loop {
        // Read one request: headers, then Content-Length bytes of body.
        let (head_end, content_length) = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..pos]).to_ascii_lowercase();
                let cl = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (pos + 4, cl);
            }
            let mut chunk = [0u8; 8192];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        while buf.len() < head_end + content_length {
            let mut chunk = [0u8; 8192];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let req_body: Value =
            serde_json::from_slice(&buf[head_end..head_end + content_length]).unwrap_or_default();
        buf.drain(..head_end + content_length);
        let page = req_body["pageNumber"].as_u64().unwrap_or(1) as usize;
        render(&t, page, total, &mut body);
        let total_pages = total.div_ceil(PAGE_SIZE);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             pagination: {{\"currentPage\":{page},\"itemsPerPage\":{PAGE_SIZE},\"totalItems\":{total},\"totalPages\":{total_pages}}}\r\n\r\n",
            body.len()
        );
        if sock.write_all(head.as_bytes()).await.is_err() || sock.write_all(&body).await.is_err() {
            return;
        }
    }
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (clock ticks,
/// assumed 100 per second as on every Linux configuration this runs on).
fn cpu_secs() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn run(total: usize) {
    let t = std::sync::Arc::new(template());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tt = t.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            sock.set_nodelay(true).ok();
            tokio::spawn(serve(sock, tt.clone(), total));
        }
    });
    let client =
        Client::builder("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
            .base_url(format!("http://{addr}"))
            .max_requests_per_second(0.0)
            .max_pages(100_000)
            // BENCH_DEDUPE_WINDOW overrides the de-duplication window (0 = off), to measure it.
            .dedupe_window(
                std::env::var("BENCH_DEDUPE_WINDOW")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(threatlocker_api::DEFAULT_DEDUPE_WINDOW),
            )
            .build()
            .unwrap();
    let start_hwm = peak_rss_kib();
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let end = chrono::Utc::now();
    let mut stream = std::pin::pin!(client
        .audit()
        .search(end - chrono::Duration::hours(24), end)
        .page_size(PAGE_SIZE as u32)
        .stream());
    let mut rows = 0usize;
    let mut checksum = 0usize;
    while let Some(row) = stream.next().await {
        let row = row.expect("stream error");
        checksum += row.hostname.as_deref().map_or(0, str::len) + row.extra.len();
        rows += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    assert_eq!(rows, total, "every row streamed once");
    println!(
        "rows={rows} row_bytes={} secs={secs:.3} rows_per_sec={:.0} cpu_secs={cpu:.2} rows_per_cpu_sec={:.0} peak_rss_mib={:.1} (before streaming {:.1}) checksum={checksum}",
        t.row_len,
        rows as f64 / secs,
        rows as f64 / cpu.max(0.01),
        peak_rss_kib() as f64 / 1024.0,
        start_hwm as f64 / 1024.0,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--rows") {
        let total: usize = args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .expect("--rows N");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(run(total));
        return;
    }
    if args.iter().any(|a| a == "--decode-only") {
        // Decoding alone, no HTTP: how much of the end-to-end time is serde.
        let t = template();
        let mut body = Vec::new();
        render(&t, 1, PAGE_SIZE, &mut body);
        let t0 = Instant::now();
        let mut n = 0;
        for _ in 0..100 {
            let rows: Vec<threatlocker_api::ActionLogRow> = serde_json::from_slice(&body).unwrap();
            n += rows.len();
        }
        let secs = t0.elapsed().as_secs_f64();
        println!("decode only: {:.0} rows/s", n as f64 / secs);
        let t0 = Instant::now();
        let mut m = 0;
        for _ in 0..100 {
            let rows: Value = serde_json::from_slice(&body).unwrap();
            m += rows.as_array().map_or(0, Vec::len);
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "decode into serde_json::Value: {:.0} rows/s",
            m as f64 / secs
        );
        return;
    }
    // Each size in its own process, so VmHWM is that size's peak.
    let exe = std::env::current_exe().unwrap();
    for total in [100_000usize, 1_000_000] {
        let out = std::process::Command::new(&exe)
            .args(["--rows", &total.to_string()])
            .output()
            .unwrap();
        print!("{}", String::from_utf8_lossy(&out.stdout));
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "child for {total} rows failed");
    }
}
