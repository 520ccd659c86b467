//! Metrics for `watch`: recorded through the `metrics` facade by name, exported in the
//! Prometheus text format by `--metrics-addr` (with `/healthz`).
//!
//! The code that does the work only records (`metrics::counter!(..)`); without an installed
//! recorder that costs nothing. The binary installs the Prometheus recorder once
//! ([`install`]) and serves it with [`serve`], a small HTTP/1.1 responder on a loopback or
//! private address — no web framework for two read-only pages.
//!
//! What is recorded, and where each figure comes from:
//!
//! | metric | source |
//! |---|---|
//! | `threatlocker_monitor_runs_total{kind,outcome}` | every run `watch` starts (`succeeded`, `failed`, `stopped`) |
//! | `threatlocker_monitor_last_success_timestamp_seconds{kind}` | the end of the last successful run |
//! | `threatlocker_monitor_consecutive_failed_runs` | failed runs since the last success (what `/healthz` judges) |
//! | `threatlocker_monitor_run_duration_seconds{kind}` | the last run's duration |
//! | `threatlocker_monitor_events_in_window{kind}` | the last run's `total_events` (the window's rows, de-duplicated, kept hours included) |
//! | `threatlocker_monitor_events_read_total` | action-log rows received from the API, summed over runs (an incremental run reads only what is new) |
//! | `threatlocker_monitor_approvals_total{decision="auto_approved"}` | requests permitted by the runs |
//! | `threatlocker_monitor_manual_review_pending{kind}` | requests the last run left for a technician |
//! | `threatlocker_monitor_tickets_total{action}` | tickets `created` / `noted` per run |
//! | `threatlocker_monitor_security_alerts_in_window{kind}` | detections in the last run's window |
//! | `threatlocker_monitor_run_errors_total` | entries of the runs' `errors` |
//! | `threatlocker_monitor_notifications_total{channel,result}` | every notification sent (`ok` / `error`) |
//! | `threatlocker_monitor_api_requests_total{result}` | the ThreatLocker client's HTTP attempts (`ok` / `error`), retries included |
//! | `threatlocker_monitor_api_retries_total{reason}` | the ThreatLocker client's retries (`rate_limited` / `other`) |
//! | `threatlocker_monitor_api_retry_wait_milliseconds_total{reason}` | the time those retries waited |
//! | `threatlocker_monitor_siem_lag_seconds` | age of the SIEM forwarder's checkpoint in the state store, when one exists |
//!
//! The ThreatLocker client's requests, retries and rate-limit waits are read from the events it
//! logs for each attempt and each retry ([`ClientEvents`]), so the client needs no metrics
//! dependency of its own.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::monitor::workflow::RunOutput;

/// How a run ended, as counted in `threatlocker_monitor_runs_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every step and side effect done.
    Succeeded,
    /// Finished with errors, or could not run.
    Failed,
    /// Stopped by a signal between steps.
    Stopped,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// Failed runs in a row, for `/healthz`: unhealthy once `threshold` runs in a row failed.
#[derive(Debug)]
pub struct Health {
    consecutive_failures: AtomicU32,
    threshold: u32,
}

impl Health {
    /// Unhealthy after `threshold` (at least 1) failed runs in a row.
    pub fn new(threshold: u32) -> Self {
        Self {
            consecutive_failures: AtomicU32::new(0),
            threshold: threshold.max(1),
        }
    }

    /// Records a run's outcome (a stopped run changes nothing).
    pub fn record(&self, outcome: Outcome) {
        match outcome {
            Outcome::Succeeded => self.consecutive_failures.store(0, Ordering::SeqCst),
            Outcome::Failed => {
                self.consecutive_failures.fetch_add(1, Ordering::SeqCst);
            }
            Outcome::Stopped => {}
        }
        gauge!("threatlocker_monitor_consecutive_failed_runs")
            .set(f64::from(self.consecutive_failures()));
    }

    /// Failed runs since the last success.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::SeqCst)
    }

    /// Whether fewer than the threshold of runs failed in a row.
    pub fn healthy(&self) -> bool {
        self.consecutive_failures() < self.threshold
    }
}

/// Records a finished run of `kind`: its outcome, and its figures when it produced a report.
pub fn record_run(
    kind: &'static str,
    outcome: Outcome,
    elapsed: Duration,
    out: Option<&RunOutput>,
) {
    counter!("threatlocker_monitor_runs_total", "kind" => kind, "outcome" => outcome.as_str())
        .increment(1);
    gauge!("threatlocker_monitor_run_duration_seconds", "kind" => kind).set(elapsed.as_secs_f64());
    if outcome == Outcome::Succeeded {
        gauge!("threatlocker_monitor_last_success_timestamp_seconds", "kind" => kind)
            .set(chrono::Utc::now().timestamp() as f64);
    }
    let Some(out) = out else { return };
    let r = &out.report;
    gauge!("threatlocker_monitor_events_in_window", "kind" => kind)
        .set(r.monitoring_summary.total_events as f64);
    counter!("threatlocker_monitor_events_read_total").increment(out.rows_received);
    counter!("threatlocker_monitor_approvals_total", "decision" => "auto_approved")
        .increment(r.auto_approvals_processed);
    gauge!("threatlocker_monitor_manual_review_pending", "kind" => kind)
        .set(r.manual_review_required as f64);
    let created = out.tickets.iter().filter(|t| t.created).count() as u64;
    let noted = out.tickets.iter().filter(|t| t.noted).count() as u64;
    counter!("threatlocker_monitor_tickets_total", "action" => "created").increment(created);
    counter!("threatlocker_monitor_tickets_total", "action" => "noted").increment(noted);
    gauge!("threatlocker_monitor_security_alerts_in_window", "kind" => kind)
        .set(r.monitoring_summary.security_alerts as f64);
    counter!("threatlocker_monitor_run_errors_total").increment(r.errors.len() as u64);
}

/// Records one notification sent through `channel`.
pub fn record_notification(channel: &str, ok: bool) {
    counter!(
        "threatlocker_monitor_notifications_total",
        "channel" => channel.to_owned(),
        "result" => if ok { "ok" } else { "error" }
    )
    .increment(1);
}

/// Records the SIEM forwarder's lag (seconds behind now).
pub fn record_siem_lag(seconds: f64) {
    gauge!("threatlocker_monitor_siem_lag_seconds").set(seconds);
}

/// Records one HTTP attempt of the ThreatLocker client and whether it got a usable answer.
pub fn record_api_request(ok: bool) {
    counter!(
        "threatlocker_monitor_api_requests_total",
        "result" => if ok { "ok" } else { "error" }
    )
    .increment(1);
}

/// Records one retry of the ThreatLocker client that waited `delay`.
pub fn record_api_retry(rate_limited: bool, delay: Duration) {
    let reason = if rate_limited {
        "rate_limited"
    } else {
        "other"
    };
    counter!("threatlocker_monitor_api_retries_total", "reason" => reason).increment(1);
    counter!("threatlocker_monitor_api_retry_wait_milliseconds_total", "reason" => reason)
        .increment(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
}

/// Installs the Prometheus recorder as the global `metrics` recorder and returns the handle
/// that renders it.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder)
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    Ok(handle)
}

/// Serves `GET /metrics` (Prometheus text) and `GET /healthz` (200 `ok`, or 503 after the
/// health threshold of failed runs in a row) on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    health: Arc<Health>,
    stop: CancellationToken,
) {
    loop {
        let (mut socket, _) = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %crate::errors::ErrorChain(&e), "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        let health = Arc::clone(&health);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Only the request line matters; read until the end of the headers (or 4 KiB).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = socket.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let (status, content_type, body) = respond(&request, &handle, &health);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = socket.write_all(response.as_bytes()).await {
                debug!(error = %e, "metrics listener: write failed");
            }
            let _ = socket.shutdown().await;
        });
    }
}

fn respond(
    request: &str,
    handle: &PrometheusHandle,
    health: &Health,
) -> (&'static str, &'static str, String) {
    let mut parts = request.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            handle.run_upkeep();
            (
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                handle.render(),
            )
        }
        ("GET", "/healthz") => {
            let failures = health.consecutive_failures();
            if health.healthy() {
                (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    format!("ok ({failures} failed runs in a row)\n"),
                )
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("unhealthy: {failures} failed runs in a row\n"),
                )
            }
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found\n".into(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".into(),
        ),
    }
}

/// A `tracing` layer that turns the ThreatLocker client's events into metrics: each `attempt
/// finished` into `threatlocker_monitor_api_requests_total`, each `retrying` into
/// `threatlocker_monitor_api_retries_total` and the wait it cost.
///
/// The client logs attempts at debug and retries at info level; as a layer with its own filter
/// this sees them whatever the log filter shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientEvents;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ClientEvents {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if !event.metadata().target().starts_with("threatlocker_api") {
            return;
        }
        let mut v = ClientEventVisitor::default();
        event.record(&mut v);
        if v.message.as_deref() == Some("attempt finished") {
            record_api_request(v.ok.unwrap_or(false));
        } else if v.message.as_deref() == Some("retrying") {
            let rate_limited = v
                .error
                .as_deref()
                .is_some_and(|e| e.contains("429") || e.contains("rate limited"));
            record_api_retry(rate_limited, Duration::from_millis(v.delay_ms.unwrap_or(0)));
        }
    }
}

#[derive(Default)]
struct ClientEventVisitor {
    message: Option<String>,
    error: Option<String>,
    delay_ms: Option<u64>,
    ok: Option<bool>,
}

impl tracing::field::Visit for ClientEventVisitor {
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        if field.name() == "ok" {
            self.ok = Some(value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "error" => self.error = Some(format!("{value:?}")),
            _ => {}
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => self.message = Some(value.to_owned()),
            "error" => self.error = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "delay_ms" {
            self.delay_ms = Some(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_turns_after_the_threshold_and_back_on_success() {
        let h = Health::new(3);
        for _ in 0..2 {
            h.record(Outcome::Failed);
        }
        assert!(h.healthy());
        h.record(Outcome::Stopped);
        assert!(h.healthy());
        h.record(Outcome::Failed);
        assert!(!h.healthy());
        h.record(Outcome::Succeeded);
        assert!(h.healthy() && h.consecutive_failures() == 0);
    }
}
