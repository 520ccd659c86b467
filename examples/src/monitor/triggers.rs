//! Event-driven runs for `watch`: besides the interval, react to new approval requests and new
//! High/Critical detections at once, and produce the daily report at a local time.
//!
//! # Shape
//!
//! The decisions are pure functions with table tests — [`should_trigger`] (did new approval
//! requests appear?), [`new_detections`] (which High/Critical incidents are new?),
//! [`next_daily_run`] (when is 07:00 in the configured zone next, across DST changes?) — and a
//! thin loop, [`Watcher`], that asks a [`Probe`] (the cheap polls), a [`Runner`] (the
//! workflow's own run function with steps switched off) and a [`Clock`] (injectable time and
//! sleep, so tests run without waiting).
//!
//! # Nothing done twice
//!
//! A triggered run is the workflow's ordinary run ([`WorkflowRunner`] builds one [`Workflow`]
//! per kind, all sharing one state store), so every side effect goes through the same intents
//! as the scheduled runs: a request permitted by a triggered run is `AlreadyDone` for the next
//! scheduled run, a ticket opened for a detection is found again by its dedupe key.
//!
//! - An **approval run** skips ticket creation but still reads the window's events: the
//!   engine's approval risk rules (a detection on the same hash, fleet spread) need them, and a
//!   request is never auto-approved blind.
//! - A **detection run** skips approvals and reads a short window (one hour, the workflow's
//!   minimum) so High/Critical incidents are ticketed without waiting for the next full run.
//!
//! Notifications follow the workflow's rules in every run: a triggered run sends what its
//! decisions plan (an immediate alert for a new High/Critical detection, a summary naming the
//! requests left for review), keyed by content, so the same notification is never sent twice;
//! the next scheduled run's summary covers the whole window and is a different message.
//!
//! # Polls
//!
//! - `ApprovalRequestGetCount` every `approval_poll` (default one minute), and, when it is not
//!   zero, the pending request ids: any id not seen before triggers an approval run, whatever
//!   the count did (one request actioned and a new one leave the count unchanged). Only when
//!   the ids cannot be read does a rise of the count decide.
//! - Optionally the action log over the last `detection_window` (default 15 minutes) every
//!   `detection_poll`, evaluated by the engine: a High/Critical incident key not seen before
//!   triggers a detection run.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use futures_util::TryStreamExt;
use policy_engine::{Decisions, Engine, Input, RiskLevel};
use threatlocker_api::{ApprovalStatus, Client};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::monitor::report::ReportSettings;
use crate::monitor::workflow::{RunOptions, RunOutput, Workflow, WorkflowError};
use crate::time::parse_time_of_day;

/// Default time between approval-count polls.
pub const DEFAULT_APPROVAL_POLL: StdDuration = StdDuration::from_secs(60);
/// Default action-log window the detection poll evaluates.
pub const DEFAULT_DETECTION_WINDOW: StdDuration = StdDuration::from_secs(15 * 60);
/// The longest `watch` interval (`--interval`, `[watch] interval`): a week.
pub const MAX_INTERVAL: StdDuration = StdDuration::from_secs(7 * 24 * 3600);
/// The longest poll interval (`--approval-poll`, `--detection-poll` and their keys): a day.
pub const MAX_POLL: StdDuration = StdDuration::from_secs(24 * 3600);
/// The shortest interval or poll: ten seconds.
pub const MIN_INTERVAL: StdDuration = StdDuration::from_secs(10);

use crate::time::parse_bounded_duration;

/// Whether new approval requests appeared.
///
/// - With the pending ids at hand (`pending_ids` is `Some`), they decide: any id not in
///   `seen_ids` triggers, whatever the count did.
/// - Otherwise the count decides: a rise over the previous poll triggers. The first poll
///   (`prev_count` is `None`) only sets the baseline, since `watch` starts with a full run.
pub fn should_trigger(
    prev_count: Option<i64>,
    count: i64,
    seen_ids: &BTreeSet<String>,
    pending_ids: Option<&[String]>,
) -> bool {
    match pending_ids {
        Some(ids) => ids.iter().any(|id| !seen_ids.contains(id)),
        None => prev_count.is_some_and(|p| count > p),
    }
}

/// The keys of detections at or above `min_risk` that are not in `seen`, in the engine's order
/// (most severe first).
pub fn new_detections(
    decisions: &Decisions,
    seen: &BTreeSet<String>,
    min_risk: RiskLevel,
) -> Vec<String> {
    decisions
        .detections
        .iter()
        .filter(|d| d.risk_level >= min_risk && !seen.contains(&d.key))
        .map(|d| d.key.clone())
        .collect()
}

/// The first instant after `now_utc` at which the clock in `tz` shows `at`.
///
/// DST: on a spring-forward day when `at` does not exist (02:30 in a zone that jumps from 02:00
/// to 03:00), the run happens at the end of the gap (03:00); on a fall-back day when `at`
/// happens twice, it runs at the first. So the report runs exactly once every local day.
pub fn next_daily_run(now_utc: DateTime<Utc>, at: NaiveTime, tz: Tz) -> DateTime<Utc> {
    let today = now_utc.with_timezone(&tz).date_naive();
    for offset in 0..=2 {
        let Some(day) = today.checked_add_days(chrono::Days::new(offset)) else {
            break;
        };
        let local = day.and_time(at);
        let candidate = match tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t),
            LocalResult::Ambiguous(first, _) => Some(first),
            // In a gap: the first minute that exists after it.
            LocalResult::None => (1..=24 * 60).find_map(|m| {
                tz.from_local_datetime(&(local + Duration::minutes(m)))
                    .earliest()
            }),
        };
        if let Some(t) = candidate.map(|t| t.with_timezone(&Utc)) {
            if t > now_utc {
                return t;
            }
        }
    }
    // Unreachable for real zones; a day later keeps the loop going rather than spinning.
    now_utc + Duration::days(1)
}

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunKind {
    /// The scheduled full run.
    Scheduled,
    /// New approval requests: the approval steps.
    Approvals,
    /// New High/Critical detections: the ticket steps on a short window.
    Detections,
    /// The daily report.
    DailyReport,
}

/// What a run saw, so the watcher knows what is no longer new.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunSummary {
    /// Pending approval request ids the run decided on.
    pub pending_request_ids: Vec<String>,
    /// Incident keys of the detections the run handled.
    pub detection_keys: Vec<String>,
}

impl RunSummary {
    /// From a workflow run's report.
    pub fn from_output(out: &RunOutput) -> Self {
        Self {
            pending_request_ids: out
                .report
                .approval_requests
                .iter()
                .filter_map(|a| a.request_id.clone())
                .collect(),
            detection_keys: out
                .report
                .security_events
                .iter()
                .map(|e| e.key.clone())
                .collect(),
        }
    }
}

/// The cheap polls.
#[async_trait]
pub trait Probe: Send + Sync {
    /// The number of pending approval requests.
    async fn approval_count(&self) -> Result<i64, String>;
    /// The ids of the pending approval requests.
    async fn pending_ids(&self) -> Result<Vec<String>, String>;
    /// The evaluated action log of `[now - window, now)`.
    async fn recent_decisions(
        &self,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Decisions, String>;
}

/// Performs runs. The futures need not be `Send`: the watch loop runs on the caller's task
/// (the workflow's run future is not `Send` as of this writing).
#[async_trait(?Send)]
pub trait Runner {
    /// Runs `kind` at `now`.
    async fn run(&self, kind: RunKind, now: DateTime<Utc>) -> Result<RunSummary, String>;
}

/// Time, injectable.
#[async_trait]
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
    /// Sleeps until `t` or for at most `max`, whichever is first.
    async fn sleep_until(&self, t: DateTime<Utc>, max: StdDuration);
}

/// The system clock and tokio's sleep.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, t: DateTime<Utc>, max: StdDuration) {
        let wait = (t - Utc::now()).to_std().unwrap_or_default().min(max);
        tokio::time::sleep(wait).await;
    }
}

/// When things happen in `watch`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TriggerSettings {
    /// Time between full runs.
    pub interval: StdDuration,
    /// Time between approval-count polls; `None` turns the approval trigger off.
    pub approval_poll: Option<StdDuration>,
    /// Time between action-log polls for new High/Critical detections; `None` (the default)
    /// turns the detection trigger off.
    pub detection_poll: Option<StdDuration>,
    /// The action-log window a detection poll evaluates.
    pub detection_window: StdDuration,
    /// The lowest risk a detection poll reacts to.
    pub detection_min_risk: RiskLevel,
    /// The daily report's local time and zone.
    pub daily_report_at: Option<(NaiveTime, Tz)>,
}

impl TriggerSettings {
    /// Full runs every `interval`, approval polls every minute, no detection poll, no daily
    /// report.
    pub fn new(interval: StdDuration) -> Self {
        Self {
            interval,
            approval_poll: Some(DEFAULT_APPROVAL_POLL),
            detection_poll: None,
            detection_window: DEFAULT_DETECTION_WINDOW,
            detection_min_risk: RiskLevel::High,
            daily_report_at: None,
        }
    }
}

fn chrono_dur(d: StdDuration) -> Duration {
    // Inputs are bounded (a week at most); the cap only keeps date arithmetic from
    // overflowing if a caller passes something larger.
    Duration::from_std(d.min(MAX_INTERVAL)).unwrap_or(Duration::days(7))
}

/// The watch loop: full runs on the interval, triggered runs when the polls see something new,
/// the daily report at its local time. One run at a time; a failed run or poll is logged and
/// the loop goes on.
pub struct Watcher<P, R, C> {
    settings: TriggerSettings,
    probe: P,
    runner: R,
    clock: C,
    next_full: Option<DateTime<Utc>>,
    next_approval_poll: Option<DateTime<Utc>>,
    next_detection_poll: Option<DateTime<Utc>>,
    next_daily: Option<DateTime<Utc>>,
    last_count: Option<i64>,
    seen_ids: BTreeSet<String>,
    seen_detections: BTreeSet<String>,
    stop: Option<CancellationToken>,
    /// Every run started, in order (for logs and tests).
    pub history: Vec<(RunKind, DateTime<Utc>, bool)>,
}

impl<P: Probe, R: Runner, C: Clock> Watcher<P, R, C> {
    /// A watcher whose first full run is due at once.
    pub fn new(settings: TriggerSettings, probe: P, runner: R, clock: C) -> Self {
        let now = clock.now();
        let next_daily = settings
            .daily_report_at
            .map(|(at, tz)| next_daily_run(now, at, tz));
        Self {
            next_full: Some(now),
            next_approval_poll: settings.approval_poll.map(|_| now),
            next_detection_poll: settings.detection_poll.map(|_| now),
            next_daily,
            settings,
            probe,
            runner,
            clock,
            last_count: None,
            seen_ids: BTreeSet::new(),
            seen_detections: BTreeSet::new(),
            stop: None,
            history: Vec::new(),
        }
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// When the loop next has something to do.
    pub fn next_wake(&self) -> DateTime<Utc> {
        [
            self.next_full,
            self.next_approval_poll,
            self.next_detection_poll,
            self.next_daily,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| self.clock.now() + Duration::minutes(1))
    }

    async fn run(&mut self, kind: RunKind) -> bool {
        let now = self.clock.now();
        let result = self.runner.run(kind, now).await;
        let ok = result.is_ok();
        self.history.push((kind, now, ok));
        match result {
            Ok(summary) => {
                self.seen_ids.extend(summary.pending_request_ids);
                self.seen_detections.extend(summary.detection_keys);
            }
            Err(e) => warn!(?kind, error = %e, "run failed; the next tick retries"),
        }
        ok
    }

    /// Does everything due at the clock's now: the full run, then the approval poll, the
    /// detection poll and the daily report.
    pub async fn tick(&mut self) {
        let now = self.clock.now();
        if self.next_full.is_some_and(|t| t <= now) {
            self.run(RunKind::Scheduled).await;
            self.next_full = Some(now + chrono_dur(self.settings.interval));
        }
        // Stopped during the run: start nothing else.
        if self.stopping() {
            return;
        }
        if let (Some(t), Some(every)) = (self.next_approval_poll, self.settings.approval_poll) {
            if t <= now && !self.stopping() {
                self.poll_approvals().await;
                self.next_approval_poll = Some(self.clock.now() + chrono_dur(every));
            }
        }
        if let (Some(t), Some(every)) = (self.next_detection_poll, self.settings.detection_poll) {
            if t <= now && !self.stopping() {
                self.poll_detections().await;
                self.next_detection_poll = Some(self.clock.now() + chrono_dur(every));
            }
        }
        if let (Some(t), Some((at, tz))) = (self.next_daily, self.settings.daily_report_at) {
            if t <= now && !self.stopping() {
                self.run(RunKind::DailyReport).await;
                self.next_daily = Some(next_daily_run(t.max(self.clock.now()), at, tz));
            }
        }
    }

    fn stopping(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(CancellationToken::is_cancelled)
    }

    async fn poll_approvals(&mut self) {
        let count = match self.probe.approval_count().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "approval-count poll failed");
                return;
            }
        };
        // The ids, not the count, tell a new request: one actioned and one new leave the count
        // unchanged. Nothing pending needs no read.
        let ids = if count > 0 {
            match self.probe.pending_ids().await {
                Ok(ids) => Some(ids),
                Err(e) => {
                    warn!(error = %e, "reading pending approval ids failed");
                    None
                }
            }
        } else {
            Some(Vec::new())
        };
        let trigger = should_trigger(self.last_count, count, &self.seen_ids, ids.as_deref());
        self.last_count = Some(count);
        if let Some(ids) = &ids {
            // Forget requests no longer pending (the set stays the size of the pending list;
            // one listed again later is looked at again, and its intent stops a second
            // permit), and do not trigger twice for the same ones, even if the run fails: the
            // next full run covers them.
            self.seen_ids.retain(|id| ids.contains(id));
            self.seen_ids.extend(ids.iter().cloned());
        }
        if trigger {
            info!(
                count,
                "new approval requests: running the approval steps now"
            );
            self.run(RunKind::Approvals).await;
        }
    }

    async fn poll_detections(&mut self) {
        let now = self.clock.now();
        let window = chrono_dur(self.settings.detection_window);
        match self.probe.recent_decisions(now, window).await {
            Ok(decisions) => {
                let new = new_detections(
                    &decisions,
                    &self.seen_detections,
                    self.settings.detection_min_risk,
                );
                if !new.is_empty() {
                    info!(
                        detections = new.len(),
                        "new High/Critical detections: ticketing them now"
                    );
                    // Seen even if the run fails: the next full run covers them anyway.
                    self.seen_detections.extend(new);
                    self.run(RunKind::Detections).await;
                }
            }
            Err(e) => warn!(error = %e, "action-log poll failed"),
        }
    }

    /// Loops until `stop` is cancelled, or after `max_ticks` ticks when given (tests). A
    /// cancellation ends a wait between ticks at once; a tick in progress is not cut short
    /// (the runner passes the stop on to the run, which finishes its step). The clock is
    /// asked to sleep at most `check_every` at a time, so a clock change is noticed.
    pub async fn run_until(
        &mut self,
        stop: &CancellationToken,
        check_every: StdDuration,
        max_ticks: Option<usize>,
    ) {
        self.stop = Some(stop.clone());
        let mut ticks = 0usize;
        while !stop.is_cancelled() {
            if max_ticks.is_some_and(|m| ticks >= m) {
                break;
            }
            if self.next_wake() <= self.clock.now() {
                self.tick().await;
                ticks += 1;
            } else {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.clock.sleep_until(self.next_wake(), check_every) => {}
                }
            }
        }
    }
}

/// The real [`Probe`]: the ThreatLocker client and the engine.
pub struct ClientProbe {
    client: Client,
    engine: Arc<Engine>,
    include_children: bool,
    denies_only: bool,
}

impl ClientProbe {
    /// A probe reading through `client` (children included as configured).
    pub fn new(client: Client, engine: Arc<Engine>, include_children: bool) -> Self {
        Self {
            client,
            engine,
            include_children,
            denies_only: false,
        }
    }

    /// Asks the API for deny rows only (`actionId` 99: enforced and monitor-only denies; see
    /// [`WatchSettings::detection_denies_only`] for the trade-off).
    pub fn denies_only(mut self, yes: bool) -> Self {
        self.denies_only = yes;
        self
    }
}

#[async_trait]
impl Probe for ClientProbe {
    async fn approval_count(&self) -> Result<i64, String> {
        self.client
            .approvals()
            .count(self.include_children)
            .await
            .map_err(|e| crate::errors::chain(&e))
    }

    async fn pending_ids(&self) -> Result<Vec<String>, String> {
        let rows: Vec<_> = self
            .client
            .approvals()
            .search(ApprovalStatus::Pending)
            .child_organizations(self.include_children)
            .stream()
            .try_collect()
            .await
            .map_err(|e| crate::errors::chain(&e))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.approval_request_id.map(|i| i.to_string()))
            .collect())
    }

    async fn recent_decisions(
        &self,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Result<Decisions, String> {
        let start = now - window;
        let mut search = self
            .client
            .audit()
            .search(start, now)
            .child_organizations(self.include_children);
        if self.denies_only {
            search = search.outcome(threatlocker_api::ActionOutcome::AnyDeny);
        }
        // Rows stream through the engine's accumulator: none are held.
        let meta = Input::new(now, start, now);
        let mut acc = self.engine.accumulator(&meta);
        let mut rows = std::pin::pin!(search.stream());
        while let Some(row) = rows
            .try_next()
            .await
            .map_err(|e| crate::errors::chain(&e))?
        {
            acc.push(&row);
        }
        Ok(acc.finish())
    }
}

/// A callback producing (and writing or sending) the daily report.
pub type DailyReportFn = Arc<
    dyn Fn(DateTime<Utc>) -> futures_util::future::BoxFuture<'static, Result<(), String>>
        + Send
        + Sync,
>;

/// The real [`Runner`]: the workflow's own run function, one [`Workflow`] per kind with steps
/// switched off, all sharing one state store (build them with [`WorkflowRunner::from_config`]).
///
/// Every run it performs is logged with one summary line of its figures, counted in the
/// metrics ([`crate::monitor::metrics`]), and, with [`WorkflowRunner::with_report_dir`], its JSON report
/// is written to a file.
pub struct WorkflowRunner {
    full: Workflow,
    approvals: Workflow,
    detections: Workflow,
    daily: Option<DailyReportFn>,
    stop: Option<Arc<AtomicBool>>,
    reports: Option<RunReports>,
    health: Option<Arc<crate::monitor::metrics::Health>>,
}

impl WorkflowRunner {
    /// From three workflows that share a state store: `full` as configured, `approvals` with
    /// `create_tickets = false`, `detections` with `process_approvals = false` and a short
    /// window.
    pub fn new(full: Workflow, approvals: Workflow, detections: Workflow) -> Self {
        Self {
            full,
            approvals,
            detections,
            daily: None,
            stop: None,
            reports: None,
            health: None,
        }
    }

    /// Builds the three workflows from a configuration, sharing one state store, the client,
    /// the PSA and the notifiers (each notification counted in the metrics).
    pub fn from_config(
        config: &crate::config::Config,
        env: &dyn crate::config::Env,
    ) -> Result<Self, WorkflowError> {
        // Opens the state store (read-only for a dry run) and reads the settings, exactly as
        // `run` does; its connectors are replaced below by counted ones.
        let base = Workflow::from_config(config, env)?;
        let state = Arc::clone(base.state());
        let client = base.client().clone();
        let with = |f: &dyn Fn(&mut crate::monitor::workflow::Settings)| -> Result<Workflow, WorkflowError> {
            let mut settings = base.settings().clone();
            f(&mut settings);
            let mut wf = Workflow::new(
                client.clone(),
                config.engine()?,
                Arc::clone(&state),
                settings,
            );
            if let Some(sink) = crate::connect::ticket_sink(config, env)? {
                wf = wf.with_ticket_sink(sink);
            }
            for n in crate::connect::notifiers(config, env)? {
                wf = wf.with_notifier(Arc::new(CountedNotifier(n)));
            }
            Ok(wf)
        };
        let full = with(&|_| {})?;
        let approvals = with(&|s| {
            s.workflow.create_tickets = false;
        })?;
        let detections = with(&|s| {
            s.workflow.process_approvals = false;
            s.workflow.time_range_hours = 1;
        })?;
        Ok(Self::new(full, approvals, detections))
    }

    /// Sets the daily report callback.
    pub fn with_daily_report(mut self, f: DailyReportFn) -> Self {
        self.daily = Some(f);
        self
    }

    /// Sets the stop flag passed to every run (a signal finishes the step in progress).
    pub fn with_stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Writes each run's JSON report into a directory (see [`RunReports`]).
    pub fn with_report_dir(mut self, reports: RunReports) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Records each run's outcome in `health` (for `/healthz`).
    pub fn with_health(mut self, health: Arc<crate::monitor::metrics::Health>) -> Self {
        self.health = Some(health);
        self
    }

    /// The workflow of full runs.
    pub fn full(&self) -> &Workflow {
        &self.full
    }

    fn finish(
        &self,
        kind: RunKind,
        outcome: crate::monitor::metrics::Outcome,
        started: std::time::Instant,
        out: Option<&RunOutput>,
    ) {
        crate::monitor::metrics::record_run(kind.label(), outcome, started.elapsed(), out);
        if let Some(h) = &self.health {
            h.record(outcome);
        }
        // When `siem-forward` shares the state file, how far behind its action-log feed is.
        let name = crate::siem::store::checkpoint_name("action_log");
        if let Ok(Some(value)) = self.full.state().checkpoint_get(&name) {
            if let Ok(cp) = DateTime::parse_from_rfc3339(&value) {
                let lag = (Utc::now() - cp.with_timezone(&Utc)).num_milliseconds();
                crate::monitor::metrics::record_siem_lag(lag.max(0) as f64 / 1000.0);
            }
        }
    }
}

/// A notifier that counts what it sends in `threatlocker_monitor_notifications_total`.
struct CountedNotifier(Arc<dyn psa_connectors::Notifier>);

#[async_trait]
impl psa_connectors::Notifier for CountedNotifier {
    async fn send(
        &self,
        notification: &psa_connectors::Notification,
    ) -> psa_connectors::Result<()> {
        let result = self.0.send(notification).await;
        crate::monitor::metrics::record_notification(self.0.name(), result.is_ok());
        result
    }

    async fn check(&self) -> psa_connectors::Result<()> {
        self.0.check().await
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

impl RunKind {
    /// The name used in logs, metrics and report file names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Approvals => "approvals",
            Self::Detections => "detections",
            Self::DailyReport => "daily_report",
        }
    }
}

#[async_trait(?Send)]
impl Runner for WorkflowRunner {
    async fn run(&self, kind: RunKind, now: DateTime<Utc>) -> Result<RunSummary, String> {
        use crate::monitor::metrics::Outcome;
        let started = std::time::Instant::now();
        let wf = match kind {
            RunKind::Scheduled => &self.full,
            RunKind::Approvals => &self.approvals,
            RunKind::Detections => &self.detections,
            RunKind::DailyReport => {
                let result = match &self.daily {
                    Some(f) => f(now).await.map(|()| RunSummary::default()),
                    None => Ok(RunSummary::default()),
                };
                let outcome = if result.is_ok() {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed
                };
                self.finish(kind, outcome, started, None);
                return result;
            }
        };
        let mut opts = RunOptions::new().now(now);
        if let Some(stop) = &self.stop {
            opts = opts.stop_flag(Arc::clone(stop));
        }
        let out = match wf.run(opts).await {
            Ok(out) => out,
            Err(WorkflowError::Interrupted { next_step }) => {
                info!(
                    kind = kind.label(),
                    next_step, "run stopped; the step in progress was finished"
                );
                self.finish(kind, Outcome::Stopped, started, None);
                return Ok(RunSummary::default());
            }
            Err(e) => {
                self.finish(kind, Outcome::Failed, started, None);
                return Err(crate::errors::chain(&e));
            }
        };
        let report_file = self.reports.as_ref().and_then(|r| {
            r.write(kind, now, &out)
                .map_err(|e| warn!(error = %e, "cannot write the run report"))
                .ok()
        });
        let s = &out.report.monitoring_summary;
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let report = report_file.as_ref().map(|p| p.display().to_string());
        if out.report.success {
            self.finish(kind, Outcome::Succeeded, started, Some(&out));
            info!(
                kind = kind.label(),
                run_id = out.run_id,
                seconds,
                events = s.total_events,
                approval_requests = s.approval_requests,
                auto_approved = out.report.auto_approvals_processed,
                manual_review = out.report.manual_review_required,
                blocks = s.blocked_applications,
                alerts = s.security_alerts,
                tickets_created = out.report.blocked_summary.tickets_created,
                policy_changes = s.policy_changes,
                report,
                "run succeeded"
            );
        } else {
            self.finish(kind, Outcome::Failed, started, Some(&out));
            warn!(
                kind = kind.label(),
                run_id = out.run_id,
                seconds,
                events = s.total_events,
                auto_approved = out.report.auto_approvals_processed,
                tickets_created = out.report.blocked_summary.tickets_created,
                errors = out.report.errors.len(),
                first_error = out.report.errors.first().map(String::as_str),
                report,
                "run finished with errors"
            );
        }
        Ok(RunSummary::from_output(&out))
    }
}

/// Each run's JSON report as a file in a directory (`[watch] report_dir`), kept for a number
/// of days (`[watch] report_retention_days`): `run-<UTC time>-<kind>.json`, the printed report
/// plus the run's kind, id, window and step timings.
#[derive(Debug, Clone)]
pub struct RunReports {
    dir: std::path::PathBuf,
    retention: StdDuration,
}

/// Default number of days run reports are kept.
pub const DEFAULT_REPORT_RETENTION_DAYS: u32 = 14;
/// The longest retention: ten years of daily files is already more than anyone reads.
pub const MAX_REPORT_RETENTION_DAYS: u32 = 3650;

impl RunReports {
    /// Reports in `dir` (created when missing), deleted after `retention_days`.
    pub fn new(dir: impl Into<std::path::PathBuf>, retention_days: u32) -> Self {
        Self {
            dir: dir.into(),
            retention: StdDuration::from_secs(u64::from(retention_days.max(1)) * 24 * 3600),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Writes the report of a `kind` run at `now`, then deletes reports past the retention.
    pub fn write(
        &self,
        kind: RunKind,
        now: DateTime<Utc>,
        out: &RunOutput,
    ) -> Result<std::path::PathBuf, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            format!(
                "cannot create {}: {}",
                self.dir.display(),
                crate::errors::chain(&e)
            )
        })?;
        let mut doc = out.report_json();
        if let Some(o) = doc.as_object_mut() {
            o.insert("run_kind".into(), kind.label().into());
            o.insert("run_id".into(), serde_json::json!(out.run_id));
            o.insert("window_start".into(), serde_json::json!(out.window_start));
            o.insert("window_end".into(), serde_json::json!(out.window_end));
            o.insert("timings".into(), serde_json::json!(out.timings));
        }
        let path = self.dir.join(format!(
            "run-{}-{}.json",
            now.format("%Y%m%dT%H%M%S%.3fZ"),
            kind.label()
        ));
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        // Written beside and renamed, so a reader never sees half a file.
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, format!("{text}\n"))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                format!(
                    "cannot write {}: {}",
                    path.display(),
                    crate::errors::chain(&e)
                )
            })?;
        self.prune();
        Ok(path)
    }

    /// Deletes `run-*.json` files older than the retention; returns how many.
    pub fn prune(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with("run-") && name.ends_with(".json")) {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.retention);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

/// The daily report as `watch` produces it: the last 24 hours, written as HTML into a
/// directory (`threatlocker-daily-report-YYYY-MM-DD.html`, the date in the zone), and
/// optionally e-mailed.
#[derive(Clone)]
pub struct DailyJob {
    client: Client,
    engine: Arc<Engine>,
    state: Arc<crate::state::StateStore>,
    scope: crate::monitor::report::Scope,
    tz: Tz,
    top: usize,
    dir: std::path::PathBuf,
    notifier: Option<Arc<dyn psa_connectors::Notifier>>,
    recipients: Vec<String>,
}

impl std::fmt::Debug for DailyJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DailyJob")
            .field("tz", &self.tz)
            .field("dir", &self.dir)
            .field(
                "notifier",
                &self.notifier.as_ref().map(|n| n.name().to_owned()),
            )
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

impl DailyJob {
    /// A job writing into `dir`, times in `tz`.
    pub fn new(
        client: Client,
        engine: Arc<Engine>,
        state: Arc<crate::state::StateStore>,
        scope: crate::monitor::report::Scope,
        tz: Tz,
        dir: std::path::PathBuf,
    ) -> Self {
        Self {
            client,
            engine,
            state,
            scope,
            tz,
            top: crate::monitor::report::DEFAULT_TOP_N,
            dir,
            notifier: None,
            recipients: Vec::new(),
        }
    }

    /// Sets the number of entries in the top lists (default
    /// [`DEFAULT_TOP_N`](crate::monitor::report::DEFAULT_TOP_N)).
    pub fn top(mut self, n: usize) -> Self {
        self.top = n.max(1);
        self
    }

    /// Also sends the report through `notifier` to `recipients`.
    pub fn send_with(
        mut self,
        notifier: Arc<dyn psa_connectors::Notifier>,
        recipients: Vec<String>,
    ) -> Self {
        self.notifier = Some(notifier);
        self.recipients = recipients;
        self
    }

    /// Produces, writes (and sends) the report for the 24 hours ending at `now`; returns the
    /// file written.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<std::path::PathBuf, String> {
        let options = crate::monitor::report::ComputeOptions {
            timezone: self.tz.name().to_owned(),
            top_n: self.top,
        };
        let report = crate::monitor::report::daily_report(
            &self.client,
            &self.engine,
            &self.state,
            &self.scope,
            now,
            Duration::hours(24),
            &options,
        )
        .await
        .map_err(|e| crate::errors::chain(&e))?;
        let html = crate::monitor::report::render::to_html(&report)
            .map_err(|e| crate::errors::chain(&e))?;
        let path = self.dir.join(format!(
            "threatlocker-daily-report-{}.html",
            now.with_timezone(&self.tz).format("%Y-%m-%d")
        ));
        crate::monitor::report::write_file(&path, &html).map_err(|e| crate::errors::chain(&e))?;
        info!(path = %path.display(), "daily report written");
        if let Some(n) = &self.notifier {
            crate::monitor::report::send_report(n.as_ref(), &report, &self.recipients)
                .await
                .map_err(|e| crate::errors::chain(&e))?;
            info!("daily report sent");
        }
        Ok(path)
    }

    /// The job as the [`WorkflowRunner`]'s daily-report callback.
    pub fn into_fn(self) -> DailyReportFn {
        let job = Arc::new(self);
        Arc::new(move |now| {
            let job = Arc::clone(&job);
            Box::pin(async move { job.run(now).await.map(|_| ()) })
        })
    }
}

// ---------------------------------------------------------------------------------------------
// `watch` with triggers: the options and the driver the binary calls.

/// `watch`'s trigger options (flattened into the `watch` subcommand). Each flag overrides the
/// matching key of `[watch]` or `[report]` (see [`WatchSettings`], [`ReportSettings`]).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WatchTriggerArgs {
    /// How often to poll the pending approval count; new requests run the approval steps at
    /// once (e.g. 1m, 30s; default: [watch] approval_poll, else 1m).
    #[arg(long, value_name = "DURATION", value_parser = parse_poll)]
    pub approval_poll: Option<StdDuration>,
    /// Do not poll the approval count (approvals wait for the next scheduled run).
    #[arg(long, conflicts_with = "approval_poll")]
    pub no_approval_poll: bool,
    /// Also poll the action log this often (e.g. 5m) for new High/Critical detections and
    /// ticket them at once (default: [watch] detection_poll, else off).
    #[arg(long, value_name = "DURATION", value_parser = parse_poll)]
    pub detection_poll: Option<StdDuration>,
    /// Produce the daily report at this local time (HH:MM in --timezone; default:
    /// `[report]` daily_report_at, else no daily report).
    #[arg(long, value_name = "HH:MM", value_parser = parse_at)]
    pub daily_report_at: Option<NaiveTime>,
    /// The IANA time zone of --daily-report-at and of the report's times (default:
    /// `[report]` timezone, else UTC).
    #[arg(long, value_name = "ZONE", env = "THREATLOCKER_REPORT_TIMEZONE")]
    pub timezone: Option<String>,
    /// Where daily reports are written (default: `[report]` directory, else `reports/` beside
    /// the configuration file).
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<std::path::PathBuf>,
    /// Also e-mail the daily report to threatlocker_notification_recipients through
    /// [notify.email] (not in a dry run; default: [watch] send_daily_report).
    #[arg(long)]
    pub send_daily_report: bool,
}

/// The `[watch]` section of the configuration file:
///
/// ```toml
/// [watch]
/// interval = "30m"            # time between full runs (10s to 7 days)
/// approval_poll = "1m"        # poll the pending approvals this often (10s to 1 day), or "off"
/// detection_poll = "5m"       # poll the action log for High/Critical detections (default off)
/// detection_denies_only = false  # the poll asks the API for denies only (actionId 99)
/// send_daily_report = false   # also e-mail the daily report ([report] daily_report_at)
/// report_dir = "runs"         # write each run's JSON report here (default: not written)
/// report_retention_days = 14  # delete run reports older than this (1 to 3650)
/// unhealthy_after = 3         # /healthz answers 503 after this many failed runs in a row
/// ```
///
/// The `watch` flags (`--interval`, `--approval-poll`, `--no-approval-poll`,
/// `--detection-poll`, `--send-daily-report`) override it.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct WatchSettings {
    /// `interval`.
    pub interval: Option<StdDuration>,
    /// `approval_poll`: `Some(None)` for `"off"`.
    pub approval_poll: Option<Option<StdDuration>>,
    /// `detection_poll`.
    pub detection_poll: Option<StdDuration>,
    /// `detection_denies_only` (default false): the detection poll asks the API for deny rows
    /// only (`actionId` 99, enforced and monitor-only alike), a fraction of the action log.
    /// The trade-off: detections on rows that ran (encoded PowerShell or a LOLBin that was
    /// permitted, at Critical) then wait for the next scheduled run instead of triggering one.
    pub detection_denies_only: bool,
    /// `send_daily_report`.
    pub send_daily_report: bool,
    /// `report_dir` (relative paths anchored at the configuration file's directory).
    pub report_dir: Option<std::path::PathBuf>,
    /// `report_retention_days`.
    pub report_retention_days: Option<u32>,
    /// `unhealthy_after`.
    pub unhealthy_after: Option<u32>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    interval: Option<String>,
    approval_poll: Option<String>,
    detection_poll: Option<String>,
    #[serde(default)]
    detection_denies_only: bool,
    #[serde(default)]
    send_daily_report: bool,
    report_dir: Option<std::path::PathBuf>,
    report_retention_days: Option<i64>,
    unhealthy_after: Option<i64>,
}

/// Default number of failed runs in a row after which `/healthz` reports unhealthy.
pub const DEFAULT_UNHEALTHY_AFTER: u32 = 3;

impl WatchSettings {
    /// Reads the `[watch]` section of `config` (all unset when there is none); unknown keys and
    /// bad values are errors naming `watch.<key>`.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, crate::config::ConfigError> {
        let Some(raw) = config.section::<RawWatch>("watch")? else {
            return Ok(Self::default());
        };
        let invalid = |key: &str, message: String| crate::config::ConfigError::Invalid {
            key: format!("watch.{key}"),
            message,
        };
        let duration = |key: &str, s: &str, max: StdDuration| {
            parse_bounded_duration(s, MIN_INTERVAL, max).map_err(|m| invalid(key, m))
        };
        let number = |key: &str, n: i64, max: u32| {
            u32::try_from(n)
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    invalid(key, format!("expected a number from 1 to {max}, found {n}"))
                })
        };
        Ok(Self {
            interval: raw
                .interval
                .map(|s| duration("interval", &s, MAX_INTERVAL))
                .transpose()?,
            approval_poll: raw
                .approval_poll
                .map(|s| match s.trim() {
                    "off" => Ok(None),
                    s => duration("approval_poll", s, MAX_POLL).map(Some),
                })
                .transpose()?,
            detection_poll: raw
                .detection_poll
                .map(|s| duration("detection_poll", &s, MAX_POLL))
                .transpose()?,
            detection_denies_only: raw.detection_denies_only,
            send_daily_report: raw.send_daily_report,
            report_dir: raw.report_dir.map(|d| config.base_dir().join(d)),
            report_retention_days: raw
                .report_retention_days
                .map(|n| number("report_retention_days", n, MAX_REPORT_RETENTION_DAYS))
                .transpose()?,
            unhealthy_after: raw
                .unhealthy_after
                .map(|n| number("unhealthy_after", n, 1000))
                .transpose()?,
        })
    }
}

/// Default time between full runs.
pub const DEFAULT_INTERVAL: StdDuration = StdDuration::from_secs(30 * 60);

/// Parses `--interval`: 10s to 7 days.
pub fn parse_interval(s: &str) -> Result<StdDuration, String> {
    parse_bounded_duration(s, MIN_INTERVAL, MAX_INTERVAL)
}

fn parse_poll(s: &str) -> Result<StdDuration, String> {
    parse_bounded_duration(s, MIN_INTERVAL, MAX_POLL)
}

fn parse_at(s: &str) -> Result<NaiveTime, String> {
    parse_time_of_day("--daily-report-at", s)
}

/// Everything `watch` will do, validated: the one place the `[watch]` and `[report]` sections
/// and the `watch` flags are checked, used by `watch` itself and by `doctor` (so the two
/// cannot disagree).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchPlan {
    /// When things happen.
    pub triggers: TriggerSettings,
    /// The zone of the daily report.
    pub tz: Tz,
    /// Whether the daily report is e-mailed.
    pub send_daily_report: bool,
    /// Where the daily report is written.
    pub daily_dir: std::path::PathBuf,
    /// Entries in the daily report's top lists.
    pub top: usize,
    /// Where each run's JSON report goes, if anywhere.
    pub run_reports: Option<RunReports>,
    /// Failed runs in a row before `/healthz` reports unhealthy.
    pub unhealthy_after: u32,
    /// Whether the detection poll asks the API for deny rows only.
    pub detection_denies_only: bool,
}

impl WatchPlan {
    /// Validates the configuration's `[watch]` and `[report]` sections with the flags that
    /// override them; every problem found is returned (each naming its key or flag), not only
    /// the first.
    pub fn from_config(
        config: &crate::config::Config,
        interval: Option<StdDuration>,
        args: &WatchTriggerArgs,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let watch = WatchSettings::from_config(config)
            .map_err(|e| problems.push(crate::errors::chain(&e)))
            .unwrap_or_default();
        let report = ReportSettings::from_config(config)
            .map_err(|e| problems.push(crate::errors::chain(&e)))
            .unwrap_or_default();
        let tz = match &args.timezone {
            None => report.timezone.unwrap_or(Tz::UTC),
            Some(name) => crate::monitor::report::parse_timezone("--timezone", name)
                .map_err(|e| problems.push(crate::errors::chain(&e)))
                .unwrap_or(Tz::UTC),
        };
        let interval = interval.or(watch.interval).unwrap_or(DEFAULT_INTERVAL);
        let daily_report_at = args.daily_report_at.or(report.daily_report_at);
        let send_daily_report = args.send_daily_report || watch.send_daily_report;
        if send_daily_report {
            if daily_report_at.is_none() {
                problems.push("--send-daily-report (or [watch] send_daily_report) needs --daily-report-at or [report] daily_report_at".into());
            }
            if config.notify().email.is_none() {
                problems
                    .push("--send-daily-report (or [watch] send_daily_report) needs [notify.email] in the configuration".into());
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut triggers = TriggerSettings::new(interval);
        triggers.approval_poll = if args.no_approval_poll {
            None
        } else {
            args.approval_poll.or(match watch.approval_poll {
                Some(configured) => configured,
                None => Some(DEFAULT_APPROVAL_POLL),
            })
        };
        triggers.detection_poll = args.detection_poll.or(watch.detection_poll);
        triggers.daily_report_at = daily_report_at.map(|at| (at, tz));
        Ok(Self {
            triggers,
            tz,
            send_daily_report,
            daily_dir: args
                .report_dir
                .clone()
                .or(report.directory)
                .unwrap_or_else(|| config.base_dir().join("reports")),
            top: report.top.unwrap_or(crate::monitor::report::DEFAULT_TOP_N),
            run_reports: watch.report_dir.map(|d| {
                RunReports::new(
                    d,
                    watch
                        .report_retention_days
                        .unwrap_or(DEFAULT_REPORT_RETENTION_DAYS),
                )
            }),
            unhealthy_after: watch.unhealthy_after.unwrap_or(DEFAULT_UNHEALTHY_AFTER),
            detection_denies_only: watch.detection_denies_only,
        })
    }
}

/// Runs `watch` with its triggers until `shutdown` is requested: full runs every `interval`
/// (default: `[watch] interval`, else 30 minutes), approval and detection polls, the daily
/// report. Flags override `[watch]` and `[report]`. With `metrics_addr`, serves `/metrics` and
/// `/healthz` there. Returns the exit code (0 when stopped, 2 for a configuration problem).
pub async fn watch(
    config: &crate::config::Config,
    env: &dyn crate::config::Env,
    interval: Option<StdDuration>,
    args: &WatchTriggerArgs,
    shutdown: &crate::shutdown::Shutdown,
    metrics_addr: Option<std::net::SocketAddr>,
) -> u8 {
    use crate::process::{EXIT_OK, EXIT_USAGE};
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        EXIT_USAGE
    };
    let plan = match WatchPlan::from_config(config, interval, args) {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {p}");
            }
            return EXIT_USAGE;
        }
    };
    let runner = match WorkflowRunner::from_config(config, env) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", crate::errors::ErrorChain(&e));
            return e.exit_code();
        }
    };
    let engine = match config.engine() {
        Ok(e) => Arc::new(e),
        Err(e) => return fail(&crate::errors::ErrorChain(&e)),
    };
    let health = Arc::new(crate::monitor::metrics::Health::new(plan.unhealthy_after));
    if let Some(addr) = metrics_addr {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                return fail(&format!(
                    "--metrics-addr {addr}: cannot listen: {}",
                    crate::errors::ErrorChain(&e)
                ))
            }
        };
        match crate::monitor::metrics::install() {
            Ok(handle) => {
                info!(addr = %listener.local_addr().map_or(addr, |a| a), "serving /metrics and /healthz");
                tokio::spawn(crate::monitor::metrics::serve(
                    listener,
                    handle,
                    Arc::clone(&health),
                    shutdown.token().clone(),
                ));
            }
            Err(e) => return fail(&e),
        }
    }
    let client = runner.full.client().clone();
    let include_children = config.threatlocker().include_child_organizations;
    let probe = ClientProbe::new(client.clone(), Arc::clone(&engine), include_children)
        .denies_only(plan.detection_denies_only);

    let dry_run = config.workflow().dry_run;
    let mut runner = runner
        .with_stop_flag(shutdown.flag())
        .with_health(Arc::clone(&health));
    if let Some(reports) = &plan.run_reports {
        runner = runner.with_report_dir(reports.clone());
    }
    if plan.triggers.daily_report_at.is_some() {
        let notifier = if plan.send_daily_report && !dry_run {
            match crate::connect::notifiers(config, env) {
                Ok(n) => match n.into_iter().find(|n| n.name() == "email") {
                    Some(n) => Some(n),
                    None => {
                        return fail(
                            &"--send-daily-report needs [notify.email] in the configuration",
                        )
                    }
                },
                Err(e) => return fail(&crate::errors::ErrorChain(&e)),
            }
        } else {
            None
        };
        let mut job = DailyJob::new(
            client.clone(),
            Arc::clone(&engine),
            Arc::clone(runner.full.state()),
            crate::monitor::report::Scope::from_config(config),
            plan.tz,
            plan.daily_dir.clone(),
        )
        .top(plan.top);
        if let Some(n) = notifier {
            job = job.send_with(n, crate::monitor::report_cli::recipients(config));
        }
        runner = runner.with_daily_report(job.into_fn());
    }
    let settings = plan.triggers.clone();
    info!(
        interval = %humantime::format_duration(settings.interval),
        approval_poll = ?settings.approval_poll.map(humantime::format_duration).map(|d| d.to_string()),
        detection_poll = ?settings.detection_poll.map(humantime::format_duration).map(|d| d.to_string()),
        daily_report_at = ?settings.daily_report_at.map(|(at, _)| at),
        timezone = plan.tz.name(),
        run_reports = ?plan.run_reports.as_ref().map(|r| r.dir().display().to_string()),
        "watching"
    );
    let mut watcher = Watcher::new(settings, probe, runner, SystemClock);
    watcher
        .run_until(shutdown.token(), StdDuration::from_secs(60), None)
        .await;
    info!(runs = watcher.history.len(), "stopped cleanly");
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn watch_section(body: &str) -> Result<WatchSettings, crate::config::ConfigError> {
        let text = format!("[threatlocker]\ninstance = \"g\"\n[watch]\n{body}");
        WatchSettings::from_config(
            &Config::from_toml_str(&text, std::path::Path::new("/")).unwrap(),
        )
    }

    #[test]
    fn watch_section_reads_durations_and_off() {
        let none = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            WatchSettings::from_config(&none).unwrap(),
            WatchSettings::default()
        );
        let s = watch_section(
            "interval = \"1h\"\napproval_poll = \"off\"\ndetection_poll = \"5m\"\nsend_daily_report = true\n",
        )
        .unwrap();
        assert_eq!(s.interval, Some(StdDuration::from_secs(3600)));
        assert_eq!(s.approval_poll, Some(None));
        assert_eq!(s.detection_poll, Some(StdDuration::from_secs(300)));
        assert!(s.send_daily_report);
        assert_eq!(
            watch_section("approval_poll = \"30s\"\n")
                .unwrap()
                .approval_poll,
            Some(Some(StdDuration::from_secs(30)))
        );
        for (body, key) in [
            ("interval = \"5s\"\n", "watch.interval"),
            ("interval = \"400000y\"\n", "watch.interval"),
            ("approval_poll = \"2d\"\n", "watch.approval_poll"),
            ("report_retention_days = 0\n", "watch.report_retention_days"),
            ("unhealthy_after = -1\n", "watch.unhealthy_after"),
            ("approval_poll = \"soon\"\n", "watch.approval_poll"),
            ("detection_poll = 5\n", "watch.detection_poll"),
            ("send_daily_report = \"yes\"\n", "watch.send_daily_report"),
            ("colour = \"red\"\n", "watch.colour"),
        ] {
            let e = watch_section(body).unwrap_err();
            assert_eq!(e.key(), Some(key), "{body}: {e}");
        }
    }
}
