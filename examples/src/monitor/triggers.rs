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
//! - `ApprovalRequestGetCount` every `approval_poll` (default one minute): a rise triggers an
//!   approval run. When the count stays the same but is not zero, every
//!   [`ID_CHECK_EVERY`]th poll also reads the pending ids, since one request actioned and one
//!   new one leave the count unchanged.
//! - Optionally the action log over the last `detection_window` (default 15 minutes) every
//!   `detection_poll`, evaluated by the engine: a High/Critical incident key not seen before
//!   triggers a detection run.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use chrono::{DateTime, Duration, LocalResult, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use futures_util::TryStreamExt;
use policy_engine::{Decisions, Engine, Input, RiskLevel};
use threatlocker_api::{ApprovalStatus, Client};
use tracing::{info, warn};

use crate::monitor::report::ReportSettings;
use crate::monitor::workflow::{RunOptions, RunOutput, Workflow, WorkflowError};
use crate::time::parse_time_of_day;

/// Default time between approval-count polls.
pub const DEFAULT_APPROVAL_POLL: StdDuration = StdDuration::from_secs(60);
/// Default action-log window the detection poll evaluates.
pub const DEFAULT_DETECTION_WINDOW: StdDuration = StdDuration::from_secs(15 * 60);
/// When the approval count is unchanged and not zero, read the pending ids every this many
/// polls.
pub const ID_CHECK_EVERY: u32 = 5;

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
    Duration::from_std(d).unwrap_or(Duration::days(365))
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
    polls_unchanged: u32,
    seen_ids: BTreeSet<String>,
    seen_detections: BTreeSet<String>,
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
            polls_unchanged: 0,
            seen_ids: BTreeSet::new(),
            seen_detections: BTreeSet::new(),
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
        if let (Some(t), Some(every)) = (self.next_approval_poll, self.settings.approval_poll) {
            if t <= now {
                self.poll_approvals().await;
                self.next_approval_poll = Some(self.clock.now() + chrono_dur(every));
            }
        }
        if let (Some(t), Some(every)) = (self.next_detection_poll, self.settings.detection_poll) {
            if t <= now {
                self.poll_detections().await;
                self.next_detection_poll = Some(self.clock.now() + chrono_dur(every));
            }
        }
        if let (Some(t), Some((at, tz))) = (self.next_daily, self.settings.daily_report_at) {
            if t <= now {
                self.run(RunKind::DailyReport).await;
                self.next_daily = Some(next_daily_run(t.max(self.clock.now()), at, tz));
            }
        }
    }

    async fn poll_approvals(&mut self) {
        let count = match self.probe.approval_count().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "approval-count poll failed");
                return;
            }
        };
        let unchanged = self.last_count == Some(count);
        self.polls_unchanged = if unchanged {
            self.polls_unchanged + 1
        } else {
            0
        };
        let ids = if unchanged && count > 0 && self.polls_unchanged.is_multiple_of(ID_CHECK_EVERY) {
            match self.probe.pending_ids().await {
                Ok(ids) => Some(ids),
                Err(e) => {
                    warn!(error = %e, "reading pending approval ids failed");
                    None
                }
            }
        } else {
            None
        };
        let trigger = should_trigger(self.last_count, count, &self.seen_ids, ids.as_deref());
        self.last_count = Some(count);
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

    /// Loops until `stop` is set (checked at least every `check_every`), or after `max_ticks`
    /// ticks when given (tests).
    pub async fn run_until(
        &mut self,
        stop: &AtomicBool,
        check_every: StdDuration,
        max_ticks: Option<usize>,
    ) {
        let mut ticks = 0usize;
        while !stop.load(Ordering::SeqCst) {
            if max_ticks.is_some_and(|m| ticks >= m) {
                break;
            }
            if self.next_wake() <= self.clock.now() {
                self.tick().await;
                ticks += 1;
            } else {
                self.clock.sleep_until(self.next_wake(), check_every).await;
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
            .map_err(|e| e.to_string())
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
            .map_err(|e| e.to_string())?;
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
        while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
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
pub struct WorkflowRunner {
    full: Workflow,
    approvals: Workflow,
    detections: Workflow,
    daily: Option<DailyReportFn>,
    stop: Option<Arc<AtomicBool>>,
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
        }
    }

    /// Builds the three workflows from a configuration, sharing one state store, the client,
    /// the PSA and the notifiers.
    pub fn from_config(
        config: &crate::config::Config,
        env: &dyn crate::config::Env,
    ) -> Result<Self, WorkflowError> {
        let full = Workflow::from_config(config, env)?;
        let state = Arc::clone(full.state());
        let client = full.client().clone();
        let with = |f: &dyn Fn(&mut crate::monitor::workflow::Settings)| -> Result<Workflow, WorkflowError> {
            let mut settings = full.settings().clone();
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
                wf = wf.with_notifier(n);
            }
            Ok(wf)
        };
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

    /// Sets the stop flag passed to every run (Ctrl-C finishes the step in progress).
    pub fn with_stop_flag(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
        self
    }
}

#[async_trait(?Send)]
impl Runner for WorkflowRunner {
    async fn run(&self, kind: RunKind, now: DateTime<Utc>) -> Result<RunSummary, String> {
        let wf = match kind {
            RunKind::Scheduled => &self.full,
            RunKind::Approvals => &self.approvals,
            RunKind::Detections => &self.detections,
            RunKind::DailyReport => {
                return match &self.daily {
                    Some(f) => f(now).await.map(|()| RunSummary::default()),
                    None => Ok(RunSummary::default()),
                }
            }
        };
        let mut opts = RunOptions::new().now(now);
        if let Some(stop) = &self.stop {
            opts = opts.stop_flag(Arc::clone(stop));
        }
        let out = match wf.run(opts).await {
            Ok(out) => out,
            Err(WorkflowError::Interrupted { next_step }) => {
                info!(?kind, next_step, "stopped cleanly");
                return Ok(RunSummary::default());
            }
            Err(e) => return Err(e.to_string()),
        };
        let s = &out.report.monitoring_summary;
        if out.report.success {
            info!(
                ?kind,
                events = s.total_events,
                approvals = s.approval_requests,
                blocks = s.blocked_applications,
                alerts = s.security_alerts,
                policy_changes = s.policy_changes,
                tickets_created = out.report.blocked_summary.tickets_created,
                "run succeeded"
            );
        } else {
            warn!(?kind, errors = ?out.report.errors, "run finished with errors");
        }
        Ok(RunSummary::from_output(&out))
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
        .map_err(|e| e.to_string())?;
        let html = crate::monitor::report::render::to_html(&report).map_err(|e| e.to_string())?;
        let path = self.dir.join(format!(
            "threatlocker-daily-report-{}.html",
            now.with_timezone(&self.tz).format("%Y-%m-%d")
        ));
        crate::monitor::report::write_file(&path, &html).map_err(|e| e.to_string())?;
        info!(path = %path.display(), "daily report written");
        if let Some(n) = &self.notifier {
            crate::monitor::report::send_report(n.as_ref(), &report, &self.recipients)
                .await
                .map_err(|e| e.to_string())?;
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
#[derive(Debug, Clone, clap::Args)]
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
    /// [report] daily_report_at, else no daily report).
    #[arg(long, value_name = "HH:MM", value_parser = parse_at)]
    pub daily_report_at: Option<NaiveTime>,
    /// The IANA time zone of --daily-report-at and of the report's times (default:
    /// [report] timezone, else UTC).
    #[arg(long, value_name = "ZONE", env = "THREATLOCKER_REPORT_TIMEZONE")]
    pub timezone: Option<String>,
    /// Where daily reports are written (default: [report] directory, else `reports/` beside
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
/// interval = "30m"            # time between full runs (at least 10s)
/// approval_poll = "1m"        # poll the pending approval count this often, or "off"
/// detection_poll = "5m"       # poll the action log for High/Critical detections (default off)
/// detection_denies_only = false  # the poll asks the API for denies only (actionId 99)
/// send_daily_report = false   # also e-mail the daily report ([report] daily_report_at)
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
}

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
        let duration = |key: &str, s: &str, min_secs: u64| {
            let d = humantime::parse_duration(s.trim()).map_err(|e| {
                invalid(
                    key,
                    format!("{s:?} is not a duration ({e}); use e.g. 1m, 30m"),
                )
            })?;
            if d < StdDuration::from_secs(min_secs) {
                return Err(invalid(key, format!("must be at least {min_secs}s")));
            }
            Ok(d)
        };
        Ok(Self {
            interval: raw
                .interval
                .map(|s| duration("interval", &s, 10))
                .transpose()?,
            approval_poll: raw
                .approval_poll
                .map(|s| match s.trim() {
                    "off" => Ok(None),
                    s => duration("approval_poll", s, 10).map(Some),
                })
                .transpose()?,
            detection_poll: raw
                .detection_poll
                .map(|s| duration("detection_poll", &s, 10))
                .transpose()?,
            detection_denies_only: raw.detection_denies_only,
            send_daily_report: raw.send_daily_report,
        })
    }
}

/// Default time between full runs.
pub const DEFAULT_INTERVAL: StdDuration = StdDuration::from_secs(30 * 60);

fn parse_poll(s: &str) -> Result<StdDuration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 1m, 30s)"))?;
    if d < StdDuration::from_secs(10) {
        return Err("a poll interval must be at least 10s".into());
    }
    Ok(d)
}

fn parse_at(s: &str) -> Result<NaiveTime, String> {
    parse_time_of_day("--daily-report-at", s)
}

/// Runs `watch` with its triggers until `stop` is set: full runs every `interval` (default:
/// `[watch] interval`, else 30 minutes), approval and detection polls, the daily report.
/// Flags override `[watch]` and `[report]`. Returns the exit code (2 for a configuration
/// problem).
pub async fn watch(
    config: &crate::config::Config,
    env: &dyn crate::config::Env,
    interval: Option<StdDuration>,
    args: &WatchTriggerArgs,
    stop: Arc<AtomicBool>,
) -> u8 {
    use crate::process::{EXIT_OK, EXIT_USAGE};
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        EXIT_USAGE
    };
    let watch_settings = match WatchSettings::from_config(config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let report_settings = match ReportSettings::from_config(config) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let interval = interval
        .or(watch_settings.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    let tz = match &args.timezone {
        None => report_settings.timezone.unwrap_or(Tz::UTC),
        Some(name) => match crate::monitor::report::parse_timezone("--timezone", name) {
            Ok(tz) => tz,
            Err(e) => return fail(&e),
        },
    };
    let daily_report_at = args.daily_report_at.or(report_settings.daily_report_at);
    let send_daily_report = args.send_daily_report || watch_settings.send_daily_report;
    if send_daily_report && daily_report_at.is_none() {
        return fail(
            &"--send-daily-report (or [watch] send_daily_report) needs --daily-report-at or [report] daily_report_at",
        );
    }
    let runner = match WorkflowRunner::from_config(config, env) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let engine = match config.engine() {
        Ok(e) => Arc::new(e),
        Err(e) => return fail(&e),
    };
    let client = runner.full.client().clone();
    let include_children = config.threatlocker().include_child_organizations;
    let probe = ClientProbe::new(client.clone(), Arc::clone(&engine), include_children)
        .denies_only(watch_settings.detection_denies_only);

    let dry_run = config.workflow().dry_run;
    let mut runner = runner.with_stop_flag(Arc::clone(&stop));
    if daily_report_at.is_some() {
        let notifier = if send_daily_report && !dry_run {
            match crate::connect::notifiers(config, env) {
                Ok(n) => match n.into_iter().find(|n| n.name() == "email") {
                    Some(n) => Some(n),
                    None => {
                        return fail(
                            &"--send-daily-report needs [notify.email] in the configuration",
                        )
                    }
                },
                Err(e) => return fail(&e),
            }
        } else {
            None
        };
        let dir = args
            .report_dir
            .clone()
            .or(report_settings.directory.clone())
            .unwrap_or_else(|| config.base_dir().join("reports"));
        let mut job = DailyJob::new(
            client.clone(),
            Arc::clone(&engine),
            Arc::clone(runner.full.state()),
            crate::monitor::report::Scope::from_config(config),
            tz,
            dir,
        )
        .top(
            report_settings
                .top
                .unwrap_or(crate::monitor::report::DEFAULT_TOP_N),
        );
        if let Some(n) = notifier {
            job = job.send_with(n, crate::monitor::report_cli::recipients(config));
        }
        let daily = job.into_fn();
        runner = runner.with_daily_report(daily);
    }
    let mut settings = TriggerSettings::new(interval);
    settings.approval_poll = if args.no_approval_poll {
        None
    } else {
        args.approval_poll.or(match watch_settings.approval_poll {
            Some(configured) => configured,
            None => Some(DEFAULT_APPROVAL_POLL),
        })
    };
    settings.detection_poll = args.detection_poll.or(watch_settings.detection_poll);
    settings.daily_report_at = daily_report_at.map(|at| (at, tz));
    info!(
        interval = %humantime::format_duration(interval),
        approval_poll = ?settings.approval_poll.map(humantime::format_duration).map(|d| d.to_string()),
        detection_poll = ?settings.detection_poll.map(humantime::format_duration).map(|d| d.to_string()),
        daily_report_at = ?daily_report_at,
        timezone = tz.name(),
        "watching"
    );
    let mut watcher = Watcher::new(settings, probe, runner, SystemClock);
    watcher
        .run_until(&stop, StdDuration::from_millis(250), None)
        .await;
    info!("stopped cleanly");
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
