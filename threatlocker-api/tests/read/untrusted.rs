//! Untrusted answers: broken strings, bodies that are not JSON, oversized and endless bodies,
//! stalled servers, error text and chains, and what the tracing spans record.

use std::error::Error as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use serde_json::json;
use threatlocker_api::{Client, Error, RetryPolicy, TransportKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::common::*;

const SEARCH: &str = "/portalapi/ActionLog/ActionLogGetByParametersV2";
const COUNT: &str = "/portalapi/ApprovalRequest/ApprovalRequestGetCount";

fn day() -> (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) {
    (utc("2026-05-14T00:00:00Z"), utc("2026-05-14T23:59:59Z"))
}

/// One action-log row whose file name holds an escaped lone surrogate (as .NET writes a
/// damaged UTF-16 name), one with raw control bytes and invalid UTF-8, one clean: all three
/// rows come through, the broken parts as U+FFFD.
#[tokio::test]
async fn broken_strings_decode_lossily_and_every_row_is_kept() {
    let (server, client, _) = setup().await;
    let body: Vec<u8> = [
        &br#"[{"actionLogId":1,"fullPath":"c:\\temp\\inv\ud800oice.exe","hostname":"WS-1"},"#[..],
        b"{\"actionLogId\":2,\"username\":\"CONTOSO\\\\j\x07smith\xff\",\"hostname\":\"WS-2\"},",
        br#"{"actionLogId":3,"fullPath":"c:\\ok.exe","hostname":"WS-\u00e9"}]"#,
    ]
    .concat();
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let (a, b) = day();
    let rows: Vec<_> = client
        .audit()
        .search(a, b)
        .stream()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0].full_path.as_deref(),
        Some("c:\\temp\\inv\u{FFFD}oice.exe")
    );
    assert_eq!(
        rows[1].username.as_deref(),
        Some("CONTOSO\\j\u{FFFD}smith\u{FFFD}")
    );
    assert_eq!(rows[2].hostname.as_deref(), Some("WS-\u{e9}"));
}

/// An HTML error page with status 200: retried like a transient failure, then an error that
/// says "not JSON" with the content type, the endpoint and the start of the page.
#[tokio::test]
async fn an_html_page_with_status_200_is_retried_then_named_not_json() {
    let (server, client, sleeper) = setup().await;
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>key {KEY}</body></html>"
    );
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(200).set_body_raw(page, "text/html; charset=utf-8"))
        .expect(4)
        .mount(&server)
        .await;
    let err = client.approvals().count(false).await.unwrap_err();
    assert_eq!(sleeper.delays().len(), 3);
    let Error::RetriesExhausted { last, .. } = &err else {
        panic!("unexpected {err:?}");
    };
    assert!(
        matches!(**last, Error::NotJson { status: 200, .. }),
        "{last:?}"
    );
    let text = err.to_string();
    for want in [
        "not JSON",
        "text/html",
        "GET /portalapi/ApprovalRequest/ApprovalRequestGetCount",
        "<!DOCTYPE html>\\n<html>",
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
    assert!(!text.contains(KEY), "{text}");
}

/// The recovery case: one HTML page, then the real answer.
#[tokio::test]
async fn one_html_page_then_json_succeeds() {
    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(200).set_body_raw("<html>busy</html>", "text/html"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(json(json!(4)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(false).await.unwrap(), 4);
}

/// A body announced larger than the cap is refused before it is read.
#[tokio::test]
async fn an_announced_body_over_the_cap_is_refused() {
    let server = wiremock::MockServer::start().await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = builder(&server, sleeper)
        .max_response_bytes(1024)
        .build()
        .unwrap();
    let big = format!("[{}]", vec!["1"; 4000].join(","));
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let (a, b) = day();
    let err = client.audit().search(a, b).send().await.unwrap_err();
    match &err {
        Error::ResponseTooLarge { endpoint, limit } => {
            assert_eq!(endpoint, &format!("POST {SEARCH}"));
            assert_eq!(*limit, 1024);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(SEARCH) && text.contains("1024-byte"),
        "{text}"
    );
}

/// Starts a one-connection-at-a-time raw HTTP server; `serve` handles each accepted
/// connection after the request head was read.
async fn raw_server<F, Fut>(serve: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let serve = Arc::clone(&serve);
            tokio::spawn(async move {
                read_head(&mut conn).await;
                serve(conn).await;
            });
        }
    });
    format!("http://{addr}")
}

/// Reads up to the end of the request head (and any small body sent with it).
async fn read_head(conn: &mut TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn raw_client(base: &str) -> threatlocker_api::ClientBuilder {
    Client::builder(KEY)
        .base_url(base)
        .max_requests_per_second(0.0)
        .retry(RetryPolicy::none())
}

/// An endless body with no length: the cap is checked as the body streams in, so the call
/// fails soon after the cap instead of reading (and holding) everything.
#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap_while_streaming() {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    let base = raw_server(move |mut conn| {
        let counter = Arc::clone(&counter);
        async move {
            let head =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n[";
            if conn.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = "1,".repeat(32 * 1024);
            while conn.write_all(chunk.as_bytes()).await.is_ok() {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
    })
    .await;
    let client = raw_client(&base)
        .max_response_bytes(1024 * 1024)
        .build()
        .unwrap();
    let started = Instant::now();
    let (a, b) = day();
    let err = client.audit().search(a, b).send().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::ResponseTooLarge {
                limit: 1_048_576,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Socket buffers hold some more, but nowhere near what an unbounded read would take.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let total = sent.load(Ordering::Relaxed);
    assert!(total < 32 * 1024 * 1024, "server wrote {total} bytes");
}

/// A server that accepts and never answers: the error says "timed out after N s" and names
/// the method and path.
#[tokio::test]
async fn a_stalled_server_times_out_with_the_endpoint_named() {
    let base = raw_server(|conn| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(conn);
    })
    .await;
    let client = raw_client(&base)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let (a, b) = day();
    let err = client.audit().search(a, b).send().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(
        err,
        Error::Transport {
            kind: TransportKind::Timeout,
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.contains(&format!("POST {SEARCH} timed out after 0.3 s")),
        "{text}"
    );
}

/// Headers arrive, then the body stalls: the same timeout error. With retries on, the final
/// error still says it timed out and which call it was.
#[tokio::test]
async fn a_body_that_stalls_times_out_and_retries_say_so() {
    let base = raw_server(|mut conn| async move {
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[1,";
        let _ = conn.write_all(head.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let sleeper = Arc::new(RecordingSleeper::default());
    let client = raw_client(&base)
        .timeout(Duration::from_millis(300))
        .retry(RetryPolicy::with_max_attempts(2))
        .sleeper(sleeper)
        .build()
        .unwrap();
    let err = client.approvals().count(false).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("gave up after 2 attempts")
            && text.contains(&format!("GET {COUNT} timed out after 0.3 s")),
        "{text}"
    );
}

/// Connection refused: the error names the call, and its chain reaches the OS error.
#[tokio::test]
async fn connection_refused_keeps_the_root_cause_in_the_chain() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = raw_client(&format!("http://{addr}")).build().unwrap();
    let err = client.approvals().count(false).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains(COUNT), "{err}");
    let mut chain = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(e) = cur {
        chain.push(e.to_string());
        cur = e.source();
    }
    assert!(
        chain
            .iter()
            .any(|t| t.to_ascii_lowercase().contains("refused")),
        "{chain:?}"
    );
}

/// An API error shows the status, the message and the LoggerId support asks for.
#[tokio::test]
async fn api_errors_show_status_message_and_logger_id() {
    let (server, client, _) = setup().await;
    Mock::given(method("POST"))
        .and(path(SEARCH))
        .respond_with(ResponseTemplate::new(417).set_body_json(
            json!({"LoggerId": "0HMV2K9Q1A2B3", "StatusCode": 417, "Message": "Invalid Date Range"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let (a, b) = day();
    let err = client.audit().search(a, b).send().await.unwrap_err();
    let text = err.to_string();
    for want in [
        "HTTP 417",
        "Invalid Date Range",
        "LoggerId 0HMV2K9Q1A2B3",
        SEARCH,
    ] {
        assert!(text.contains(want), "{want:?} missing from {text}");
    }
}

/// Collects everything a `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every call runs in a `threatlocker_request` span with its endpoint, attempt, status and
/// wait; nothing recorded at any level holds the key.
#[tokio::test]
async fn request_spans_record_endpoint_attempt_status_and_wait_but_never_the_key() {
    use tracing_subscriber::fmt::format::FmtSpan;
    use tracing_subscriber::util::SubscriberInitExt;

    let captured = Captured::default();
    let writer = captured.clone();
    let _guard = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .set_default();

    let (server, client, _) = setup().await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "2"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COUNT))
        .respond_with(json(json!(1)))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(client.approvals().count(false).await.unwrap(), 1);

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for want in [
        "threatlocker_request",
        &format!("endpoint=GET {COUNT}"),
        "attempt=2",
        "status=200",
        "wait_ms=2000",
        "retrying",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(!text.contains(KEY), "the key was recorded:\n{text}");
    assert!(!text.contains(&KEY[..16]), "part of the key was recorded");
}
