//! A connection dropped after the permit POST was sent (no answer at all): the status is
//! re-read and the permit is never sent twice. wiremock always answers, so this uses a tiny raw
//! HTTP server that hangs up on the permit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use threatlocker_api::{Client, Error, PermitOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::common::*;

/// Answers the permit flow's reads; hangs up on the permit POST. `status_after` is the
/// request's status once the permit was received.
async fn start(status_after: i32) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let permits = Arc::new(AtomicUsize::new(0));
    let reads = Arc::new(AtomicUsize::new(0));
    let (p, r) = (Arc::clone(&permits), Arc::clone(&reads));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (p, r) = (Arc::clone(&p), Arc::clone(&r));
            tokio::spawn(async move { serve(stream, &p, &r, status_after).await });
        }
    });
    (format!("http://{addr}"), permits, reads)
}

async fn serve(
    mut stream: TcpStream,
    permits: &AtomicUsize,
    reads: &AtomicUsize,
    status_after: i32,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or_default().to_owned();
    let body: Option<Value> = if line.contains(PERMIT) {
        permits.fetch_add(1, Ordering::SeqCst);
        None // hang up without answering
    } else if line.contains(GET_BY_ID) {
        reads.fetch_add(1, Ordering::SeqCst);
        let status = if permits.load(Ordering::SeqCst) > 0 {
            status_after
        } else {
            1
        };
        Some(approval_with_status(status))
    } else if line.contains(GET_DTO) {
        Some(fixture("permit_dto.json"))
    } else if line.contains(MATCHING) {
        Some(fixture("matching_tenant_and_master.json"))
    } else {
        Some(Value::Null) // take ownership
    };
    if let Some(body) = body {
        let text = body.to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

fn client_for(base: &str) -> Client {
    Client::builder(KEY)
        .base_url(base)
        .max_requests_per_second(0.0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn dropped_connection_after_permit_then_approved_is_recovered() {
    let (base, permits, reads) = start(4).await;
    let outcome = client_for(&base)
        .approvals()
        .permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap();
    assert!(outcome.verified && outcome.recovered_after_unknown);
    assert_eq!(permits.load(Ordering::SeqCst), 1, "exactly one permit POST");
    assert_eq!(reads.load(Ordering::SeqCst), 2, "pre-check and re-read");
}

#[tokio::test]
async fn dropped_connection_after_permit_still_pending_is_outcome_unknown() {
    let (base, permits, _) = start(1).await;
    let err = client_for(&base)
        .approvals()
        .permit(&request_id(), &PermitOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(permits.load(Ordering::SeqCst), 1, "exactly one permit POST");
}
