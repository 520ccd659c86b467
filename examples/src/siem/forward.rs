//! The forwarder: poll each source over `[checkpoint - overlap, now]`, drop ids already sent,
//! map to records, send in batches, and record each batch (ids + checkpoint, one transaction)
//! only after the receiver accepted it.
//!
//! Delivery guarantees:
//! - Nothing is recorded as sent before `send_batch` returned `Ok`, and the record is written
//!   synchronously right after it (no `.await` in between), so stopping the forwarder (Ctrl-C,
//!   dropping the future, a failed receiver) never skips a record and never resends one that was
//!   recorded. A process killed in the instant between the two can resend one batch; each
//!   record carries its ids (`externalId`, `cs3`) so a SIEM can drop such a repeat.
//! - Overlapping windows are de-duplicated by id through the `siem_sent` table, which forgets
//!   ids once they are older than `overlap + retain_ids` before the checkpoint.
//! - A failed send is retried with exponential backoff (1 s doubling to 60 s, full jitter);
//!   with `--once` up to `max_attempts` times, in the loop until stopped.
//! - Syslog over TCP has no application-level acknowledgement: bytes the kernel accepted just
//!   before a receiver crashed can be lost without the sender knowing. Prefer TLS to a
//!   collector that persists on receipt.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{Stream, TryStreamExt};
use policy_engine::Engine;
use psa_connectors::syslog::Format;
use psa_connectors::{SiemRecord, SiemSink};
use serde::Serialize;
use threatlocker_api::{ActionLogRow, Client, RowRejections, SystemAuditEntry};

use super::config::{SeverityMode, SiemConfig, SourceKind};
use super::map;
use super::store::SentStore;
use crate::state::{IntentState, StateError, StateStore};

/// A forwarding failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiemError {
    /// The state file failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Reading a source from the Portal API failed.
    #[error("reading the {source_name}: {error}")]
    Api {
        /// The source.
        source_name: &'static str,
        /// The client error.
        #[source]
        error: threatlocker_api::Error,
    },
    /// The receiver did not accept a batch after every attempt.
    #[error("the SIEM receiver did not accept a batch after {attempts} attempt(s): {error}")]
    Sink {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        error: psa_connectors::Error,
    },
    /// A source needs something that is not configured.
    #[error("{0}")]
    Setup(String),
}

/// What one pass forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PassSummary {
    /// Records sent, per source.
    pub sent: BTreeMap<&'static str, u64>,
    /// Rows skipped because they were sent before (overlap).
    pub already_sent: u64,
    /// Batches accepted by the receiver.
    pub batches: u64,
    /// Send attempts that failed and were retried.
    pub retries: u64,
    /// Action-log rows not forwarded because they failed validation (no id, no `dateTime`,
    /// a date before 2000 or more than a day ahead): counted per reason, with examples.
    pub rows_rejected: RowRejections,
    /// Records shortened to fit the receiver's size limit (`max_datagram` over UDP); each
    /// names what was cut in its `truncated` field.
    pub truncated: u64,
}

impl PassSummary {
    /// Records sent across sources.
    pub fn total(&self) -> u64 {
        self.sent.values().sum()
    }
}

/// Backoff between send attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// First delay.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay before retry `attempt` (1-based): full jitter over `initial * 2^(attempt-1)`,
    /// capped at `max`. `unit` in `[0, 1)` is the random draw (pure, so it is testable).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let cap = exp.min(self.max);
        cap.mul_f64(unit.clamp(0.0, 1.0))
            .max(self.initial.min(cap) / 2)
    }
}

type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The SIEM forwarder. Build with [`Forwarder::new`], then [`Forwarder::run_once`] or
/// [`Forwarder::run`].
pub struct Forwarder {
    config: SiemConfig,
    client: Option<Client>,
    child_organizations: bool,
    sink: Arc<dyn SiemSink>,
    store: SentStore,
    state: Option<StateStore>,
    engine: Option<Engine>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    clock: Clock,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("config", &self.config)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder sending to `sink`, remembering what it sent in `store`.
    ///
    /// `client` is needed for the `action_log` and `system_audit` sources, `state` (the
    /// workflow's store) for `decisions`; `engine` for `severity = "engine"` (without it the
    /// outcome alone sets the severity).
    pub fn new(config: SiemConfig, sink: Arc<dyn SiemSink>, store: SentStore) -> Self {
        let max_attempts = Some(config.max_attempts);
        Self {
            config,
            client: None,
            child_organizations: true,
            sink,
            store,
            state: None,
            engine: None,
            backoff: Backoff::default(),
            max_attempts,
            clock: Arc::new(Utc::now),
        }
    }

    /// The ThreatLocker client (and whether to read child organizations).
    pub fn with_client(mut self, client: Client, child_organizations: bool) -> Self {
        self.client = Some(client);
        self.child_organizations = child_organizations;
        self
    }

    /// The workflow's state store (the `decisions` source).
    pub fn with_state(mut self, state: StateStore) -> Self {
        self.state = Some(state);
        self
    }

    /// The engine whose detections raise severities.
    pub fn with_engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Overrides the backoff (tests use milliseconds).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Send attempts per batch; `None` retries until the future is dropped (the loop).
    pub fn with_max_attempts(mut self, attempts: Option<u32>) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Overrides the clock.
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store of sent ids and checkpoints.
    pub fn store(&self) -> &SentStore {
        &self.store
    }

    /// One pass over every configured source, up to now.
    pub async fn run_once(&self) -> Result<PassSummary, SiemError> {
        let mut summary = PassSummary::default();
        for source in self.config.sources.clone() {
            let now = (self.clock)();
            let mut cursor = match self.store.checkpoint(source.as_str())? {
                Some(cp) => cp,
                None => {
                    now - chrono::Duration::from_std(self.config.initial_lookback)
                        .unwrap_or_default()
                }
            };
            let overlap = chrono::Duration::from_std(self.config.overlap).unwrap_or_default();
            let max_window = chrono::Duration::from_std(self.config.max_window)
                .unwrap_or(chrono::Duration::hours(1));
            // Catch up in windows of at most max_window so memory stays bounded.
            loop {
                let from = cursor - overlap;
                let to = (cursor + max_window).min(now);
                match source {
                    SourceKind::ActionLog => {
                        let rows = self.fetch_action_log(from, to).await?;
                        self.forward_action_log_rows(from, to, rows, &mut summary)
                            .await?;
                    }
                    SourceKind::SystemAudit => {
                        let entries = self.fetch_system_audit(from, to).await?;
                        self.forward_system_audit(from, to, entries, &mut summary)
                            .await?;
                    }
                    SourceKind::Decisions => {
                        self.forward_decisions(from, to, &mut summary).await?;
                    }
                }
                cursor = to;
                if to >= now {
                    break;
                }
            }
            let keep =
                overlap + chrono::Duration::from_std(self.config.retain_ids).unwrap_or_default();
            self.store.prune(source.as_str(), cursor - keep)?;
        }
        Ok(summary)
    }

    /// Passes every `interval` until `shutdown` completes. A failed pass is logged and retried
    /// at the next tick. Stopping mid-pass loses nothing (see the module docs).
    pub async fn run(
        &self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), SiemError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                result = self.run_once() => match result {
                    Ok(s) => tracing::info!(sent = s.total(), already_sent = s.already_sent, batches = s.batches, truncated = s.truncated, "pass done"),
                    Err(SiemError::State(e)) => return Err(SiemError::State(e)),
                    Err(e) => tracing::warn!("pass failed, retrying at the next interval: {e}"),
                }
            }
        }
    }

    async fn fetch_action_log(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<ActionLogRow>, SiemError> {
        let stream = self
            .client
            .as_ref()
            .ok_or_else(|| no_client(SourceKind::ActionLog))?
            .audit()
            .search(from, to)
            .child_organizations(self.child_organizations)
            .page_size(1000)
            .stream();
        collect("action log", stream).await
    }

    async fn fetch_system_audit(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SystemAuditEntry>, SiemError> {
        let stream = self
            .client
            .as_ref()
            .ok_or_else(|| no_client(SourceKind::SystemAudit))?
            .system_audit()
            .search(from, to)
            .child_organizations(self.child_organizations)
            .stream();
        collect("system audit", stream).await
    }

    /// Forwards one window of action-log rows (the pipeline `run_once` uses after fetching;
    /// public for benchmarks and for callers with rows from elsewhere): rows failing
    /// [`threatlocker_api::validate_action_log_row`] counted in `summary.rows_rejected` and
    /// logged, never sent; severities from the engine, rows already sent dropped, batches sent
    /// and recorded, the checkpoint moved to `to` at the end.
    ///
    /// A rejected row counts as processed: it is named in the log and the summary, and reading
    /// it again would give the same verdict, so it does not hold the checkpoint back. Rows the
    /// read did not deliver (a failed page) never reach here: the read's error ends the pass
    /// with the checkpoint where it was.
    pub async fn forward_action_log_rows(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        mut rows: Vec<ActionLogRow>,
        summary: &mut PassSummary,
    ) -> Result<(), SiemError> {
        let mut rejected = RowRejections::new();
        rejected.filter(&mut rows, (self.clock)());
        if !rejected.is_empty() {
            tracing::warn!(
                rejected = rejected.total,
                "action-log rows not forwarded: {rejected}"
            );
            summary.rows_rejected.merge(rejected);
        }
        let findings = match (&self.engine, self.config.severity) {
            (Some(engine), SeverityMode::Engine) if !rows.is_empty() => {
                map::engine_findings(engine, &mut rows, from, to)
            }
            _ => HashMap::new(),
        };
        let raw = self.config.format == Format::Json;
        let items: Vec<(String, Option<DateTime<Utc>>)> = rows
            .iter()
            .map(|r| (map::row_key(r), r.date_time))
            .collect();
        self.forward(
            SourceKind::ActionLog,
            from,
            to,
            &items,
            summary,
            |i, rec| {
                let r = &rows[i];
                let finding = if findings.is_empty() {
                    None
                } else {
                    findings.get(&engine_id(r))
                };
                map::fill_action_log_record(rec, r, finding, raw);
            },
        )
        .await
    }

    async fn forward_system_audit(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        entries: Vec<SystemAuditEntry>,
        summary: &mut PassSummary,
    ) -> Result<(), SiemError> {
        let raw = self.config.format == Format::Json;
        let items: Vec<(String, Option<DateTime<Utc>>)> = entries
            .iter()
            .map(|e| (map::system_audit_key(e), e.date_time))
            .collect();
        self.forward(
            SourceKind::SystemAudit,
            from,
            to,
            &items,
            summary,
            |i, rec| {
                *rec = map::system_audit_record(&entries[i], raw);
            },
        )
        .await
    }

    async fn forward_decisions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        summary: &mut PassSummary,
    ) -> Result<(), SiemError> {
        let state = self.state.as_ref().ok_or_else(|| {
            SiemError::Setup("the decisions source needs the workflow's state file".into())
        })?;
        let intents: Vec<_> = state
            .intents(None, Some(IntentState::Done))?
            .into_iter()
            .filter(|i| i.updated_at >= from && i.updated_at <= to)
            .collect();
        let raw = self.config.format == Format::Json;
        let items: Vec<(String, Option<DateTime<Utc>>)> = intents
            .iter()
            .map(|i| (i.key.clone(), Some(i.updated_at)))
            .collect();
        self.forward(
            SourceKind::Decisions,
            from,
            to,
            &items,
            summary,
            |i, rec| {
                *rec = map::decision_record(&intents[i], raw);
            },
        )
        .await
    }

    /// The common pipeline: `items[i]` = (id, event time) of source row `i`; `fill(i, rec)`
    /// maps it into a record whose buffers are reused from batch to batch.
    async fn forward(
        &self,
        source: SourceKind,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        items: &[(String, Option<DateTime<Utc>>)],
        summary: &mut PassSummary,
        fill: impl Fn(usize, &mut SiemRecord),
    ) -> Result<(), SiemError> {
        let name = source.as_str();
        let overlap = chrono::Duration::from_std(self.config.overlap).unwrap_or_default();
        // Rows dated before the window (an API that did not filter, a zone-less time read
        // differently) are checked against the ids remembered for their own time.
        let since = items
            .iter()
            .filter_map(|(_, at)| *at)
            .min()
            .map_or(from, |m| m.min(from));
        let sent = self.store.sent_since(name, since)?;
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        let mut todo: Vec<usize> = (0..items.len())
            .filter(|&i| {
                let id = items[i].0.as_str();
                let fresh = !sent.contains(id) && seen.insert(id);
                if !fresh {
                    summary.already_sent += 1;
                }
                fresh
            })
            .collect();
        drop(sent);
        // Oldest first (undated rows first, so the checkpoint can follow the dated ones).
        todo.sort_by(|&a, &b| (items[a].1, &items[a].0).cmp(&(items[b].1, &items[b].0)));
        let mut batch: Vec<SiemRecord> = Vec::with_capacity(self.config.batch_size);
        for chunk in todo.chunks(self.config.batch_size) {
            batch.truncate(chunk.len());
            while batch.len() < chunk.len() {
                batch.push(SiemRecord::new(to, 0, String::new(), String::new()));
            }
            for (rec, &i) in batch.iter_mut().zip(chunk) {
                fill(i, rec);
            }
            self.send_with_retry(&batch, summary).await?;
            // No await between the accepted send and this commit.
            let checkpoint = chunk.last().and_then(|&i| items[i].1).map(|t| t.min(to));
            // Only ids a later window can read again need remembering: those dated at or after
            // (checkpoint - overlap), where the next read starts, and undated ones.
            let reread_from = checkpoint.map(|c| c - overlap);
            self.store.commit_batch(
                name,
                chunk
                    .iter()
                    .map(|&i| (items[i].0.as_str(), items[i].1))
                    .filter(|(_, at)| match (at, reread_from) {
                        (Some(at), Some(from)) => *at >= from,
                        _ => true,
                    }),
                checkpoint,
                (self.clock)(),
            )?;
            summary.batches += 1;
            *summary.sent.entry(name).or_default() += chunk.len() as u64;
        }
        self.store
            .commit_batch(name, std::iter::empty(), Some(to), (self.clock)())?;
        Ok(())
    }

    async fn send_with_retry(
        &self,
        batch: &[SiemRecord],
        summary: &mut PassSummary,
    ) -> Result<(), SiemError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let shortened_before = self.sink.shortened();
            match self.sink.send_batch(batch).await {
                Ok(()) => {
                    summary.truncated += self.sink.shortened().saturating_sub(shortened_before);
                    return Ok(());
                }
                Err(error) => {
                    if self.max_attempts.is_some_and(|m| attempt >= m) {
                        return Err(SiemError::Sink {
                            attempts: attempt,
                            error,
                        });
                    }
                    summary.retries += 1;
                    let delay = self.backoff.delay(attempt, fastrand::f64());
                    tracing::warn!(
                        attempt,
                        "the SIEM receiver failed ({error}); retrying in {:.1}s",
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

fn engine_id(r: &ActionLogRow) -> String {
    match (&r.action_log_id, &r.e_action_log_id) {
        (Some(id), _) => id.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => String::new(),
    }
}

/// Reads a whole paged stream; the first failure names `source_name`.
async fn collect<T>(
    source_name: &'static str,
    stream: impl Stream<Item = threatlocker_api::Result<T>>,
) -> Result<Vec<T>, SiemError> {
    stream
        .map_err(|error| SiemError::Api { source_name, error })
        .try_collect()
        .await
}

/// The error when a ThreatLocker source has no client to read with.
fn no_client(source: SourceKind) -> SiemError {
    SiemError::Setup(format!(
        "the {} source needs a ThreatLocker client",
        source.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let b = Backoff::default();
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(b.delay(30, 0.5), Duration::from_secs(30));
        // Never zero: at least half the first delay.
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(500));
    }
}
