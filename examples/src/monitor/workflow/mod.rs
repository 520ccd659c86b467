//! The monitoring workflow: the nine steps of the original low-code workflow, built from the
//! client, the engine and the connectors, with every side effect exactly-once.
//!
//! 1. **Retrieve events** across every child organization (one action-log stream per
//!    organization, `concurrency` at a time, paced by the client's shared rate limit), plus the
//!    computers (for their modes) and the organizations (for their names).
//! 2. **Process approvals**: the pending requests, each with its matching application and that
//!    application's research categories.
//! 3. **Analyse blocks**, 4. **detect patterns**: the pure engine ([`policy_engine::Engine`]).
//! 5. **Auto-approve**: permit what the engine approved (the client's documented permit flow).
//! 6. **Create or update tickets**: one PSA ticket per incident, found again by its dedupe key.
//! 7. **Apply policy changes**: deploy policies to each organization that got a permit.
//! 8. **Build the report** (the engine's [`MonitoringReport`], the original workflow's shape).
//! 9. **Notify**.
//!
//! Each step is switched by its input (`process_approvals`, `monitor_blocks`, `create_tickets`);
//! `dry_run` performs no write anywhere — not on ThreatLocker, the PSA, a notifier, nor the state
//! file — and lists the writes it would send ([`PlannedWrite`]).
//!
//! # Exactly once
//!
//! Every side effect is recorded in the [`StateStore`] as an intent *before* it is performed and
//! as done after. On a rerun a done intent is not repeated; an unfinished one is reconciled
//! first: a ticket by searching the PSA for its external reference, a permit by re-reading the
//! request's status. A run's window is marked processed only when all of its side effects are
//! done. Notes and notifications have no remote record to search, so an interrupted one is sent
//! again (at least once, never silently lost).

pub(crate) mod fetch;
mod window;

pub use fetch::Scope;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use policy_engine::{
    build_report, ApprovalOutcome, ApprovalScope, Decisions, Engine, Input, MonitoringReport,
    Outcomes, PlannedPolicyChange, PlannedTicket, TicketOutcome, WindowState,
};
use psa_connectors::{Notifier, TicketRef, TicketSink};
use serde::Serialize;
use serde_json::json;
use threatlocker_api::{
    ApplicationChoice, ApprovalStatus, Client, OrganizationId, PermitOptions, PermitScope,
    PreparedRequest, RowRejections,
};
use tracing::{debug, info, warn};

use crate::config::{CompanyMap, Config, ConfigError, Env, WorkflowConfig};
use crate::mapping;
use crate::state::{
    IntentKind, IntentRecord, IntentState, IntentStatus, RunStatus, StateError, StateStore,
};

/// Default number of organizations (or approval lookups) read at once.
pub const DEFAULT_CONCURRENCY: usize = 6;

/// How the workflow runs, besides its collaborators.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The original workflow's inputs.
    pub workflow: WorkflowConfig,
    /// Read every child organization (`include_child_organizations`).
    pub include_child_organizations: bool,
    /// ThreatLocker organization → PSA company.
    pub companies: CompanyMap,
    /// Organizations (or approval lookups) read at once.
    pub concurrency: usize,
}

impl Settings {
    /// Settings from the original workflow's inputs, reading child organizations.
    pub fn new(workflow: WorkflowConfig) -> Self {
        Self {
            workflow,
            include_child_organizations: true,
            companies: CompanyMap::default(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Sets the company mapping.
    pub fn companies(mut self, companies: CompanyMap) -> Self {
        self.companies = companies;
        self
    }

    /// Sets the read concurrency.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets whether child organizations are read.
    pub fn include_child_organizations(mut self, yes: bool) -> Self {
        self.include_child_organizations = yes;
        self
    }

    /// The settings of a configuration file (`[workflow]`, `[threatlocker]`, `[companies]`).
    pub fn from_config(config: &Config) -> Self {
        let scope = Scope::from_config(config);
        Self {
            workflow: config.workflow().clone(),
            include_child_organizations: scope.include_child_organizations,
            companies: scope.companies,
            concurrency: scope.concurrency,
        }
    }

    /// Which organizations a run reads (the same rules as [`Scope::from_config`]).
    pub fn scope(&self) -> Scope {
        Scope {
            include_child_organizations: self.include_child_organizations,
            company_id: self.workflow.company_id.clone(),
            companies: self.companies.clone(),
            concurrency: self.concurrency.max(1),
        }
    }
}

/// A test hook called right after a side effect's remote call returned and before its result
/// is written to the state store. Returning `true` stops the run on the spot, as if the
/// process had been killed between the remote system's answer and the state write.
pub type AfterEffectHook = Arc<dyn Fn(IntentKind, &str) -> bool + Send + Sync>;

/// Per-run options.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct RunOptions {
    /// The run's "now" (default the clock); the window ends here.
    pub now: Option<DateTime<Utc>>,
    /// Overrides `workflow.dry_run`.
    pub dry_run: Option<bool>,
    /// When set to `true` (Ctrl-C), the run finishes the step in progress and stops.
    pub stop: Option<Arc<AtomicBool>>,
    /// Overrides `workflow.deadline`: the whole run's time budget.
    pub deadline: Option<std::time::Duration>,
    /// Re-read the whole window from the API instead of taking its older hours from the
    /// aggregates kept by earlier runs (`run --full`).
    pub full: bool,
}

impl fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunOptions")
            .field("now", &self.now)
            .field("dry_run", &self.dry_run)
            .field("deadline", &self.deadline)
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

impl RunOptions {
    /// Default options (now, dry run from the configuration).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the run's "now".
    pub fn now(mut self, now: DateTime<Utc>) -> Self {
        self.now = Some(now);
        self
    }

    /// Forces a dry run (or a real one).
    pub fn dry_run(mut self, yes: bool) -> Self {
        self.dry_run = Some(yes);
        self
    }

    /// Re-reads the whole window (see [`RunOptions::full`]).
    pub fn full(mut self, yes: bool) -> Self {
        self.full = yes;
        self
    }

    /// Sets the stop flag.
    pub fn stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Sets the whole run's deadline (overrides `workflow.deadline`).
    pub fn deadline(mut self, after: std::time::Duration) -> Self {
        self.deadline = Some(after);
        self
    }
}

/// A write a dry run would have sent.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PlannedWrite {
    /// `threatlocker`, `psa` or `notify:<channel>`.
    pub target: String,
    /// What kind of side effect.
    pub kind: IntentKind,
    /// Its idempotency key.
    pub key: String,
    /// A one-line description.
    pub description: String,
    /// The exact HTTP requests, for ThreatLocker writes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<PreparedRequest>,
}

/// A ticket the run created or found.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TicketLine {
    /// Dedupe key (the PSA's external reference).
    pub dedupe_key: String,
    /// PSA ticket id.
    pub ticket_id: String,
    /// Opened by this run.
    pub created: bool,
    /// A note was added by this run.
    pub noted: bool,
    /// Summary.
    pub summary: String,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunOutput {
    /// The monitoring report (`success` false when anything failed; the errors inside).
    pub report: MonitoringReport,
    /// The run's id in the state store (none for a dry run).
    pub run_id: Option<i64>,
    /// Writes a dry run would have sent (empty for a real run).
    pub planned_writes: Vec<PlannedWrite>,
    /// Tickets created or updated.
    pub tickets: Vec<TicketLine>,
    /// Organizations whose side effects another runner holds (PostgreSQL leases): left to it.
    pub leased_elsewhere: Vec<String>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end.
    pub window_end: DateTime<Utc>,
    /// How long each step took, in order.
    pub timings: Vec<StepTiming>,
    /// Action-log rows rejected by validation (counted, named in the log, not evaluated).
    pub rows_rejected: RowRejections,
    /// The kind of error that cut the run short, when one did (`deadline`).
    pub error_kind: Option<&'static str>,
    /// Action-log rows received from the API by this run (before de-duplication and
    /// validation): what an incremental run actually read, as opposed to the window's
    /// `total_events`, which includes the hours earlier runs kept.
    pub rows_received: u64,
}

/// How long one step of a run took.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct StepTiming {
    /// The step.
    pub step: &'static str,
    /// Seconds.
    pub seconds: f64,
}

impl RunOutput {
    /// The report as printed: the report's fields in the original workflow's order, plus
    /// `planned_writes` for a dry run.
    pub fn document(&self) -> ReportDocument<'_> {
        ReportDocument {
            report: &self.report,
            rows_rejected: &self.rows_rejected,
            error_kind: self.error_kind,
            planned_writes: self.dry_run.then_some(self.planned_writes.as_slice()),
            leased_elsewhere: &self.leased_elsewhere,
        }
    }

    /// [`RunOutput::document`] as pretty JSON text.
    pub fn report_text(&self) -> String {
        serde_json::to_string_pretty(&self.document()).unwrap_or_else(|e| {
            format!("{{\"success\": false, \"errors\": [\"cannot serialize the report: {e}\"]}}")
        })
    }

    /// [`RunOutput::document`] as a JSON value.
    pub fn report_json(&self) -> serde_json::Value {
        serde_json::to_value(self.document()).unwrap_or_else(|_| json!({}))
    }
}

/// The printed report: [`MonitoringReport`] with, for a dry run, the writes it would send.
#[derive(Debug, Serialize)]
pub struct ReportDocument<'a> {
    /// The report.
    #[serde(flatten)]
    pub report: &'a MonitoringReport,
    /// Action-log rows rejected by validation: `total`, `by_reason`, a few `examples`.
    pub rows_rejected: &'a RowRejections,
    /// The kind of error that cut the run short (`deadline`), when one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<&'static str>,
    /// The planned writes (dry run only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_writes: Option<&'a [PlannedWrite]>,
    /// Organizations skipped because another runner holds their lease (omitted when none).
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub leased_elsewhere: &'a [String],
}

/// Why a run could not start or was cut short. Failures of single steps or side effects do
/// not end up here: they are in the report's `errors` with `success: false`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A connector could not be built.
    #[error("{what}: {message}")]
    Connector {
        /// Which connector (`psa`, `notify.email`, ...).
        what: String,
        /// Why.
        message: String,
    },
    /// The state store failed; nothing more can be done safely.
    #[error(transparent)]
    State(#[from] StateError),
    /// The stop flag was raised; the step in progress was finished.
    #[error("stopped before `{next_step}`; the step in progress was finished")]
    Interrupted {
        /// The step that was not started.
        next_step: &'static str,
    },
    /// The whole-run deadline passed. [`Workflow::run`] does not return this: it reports it
    /// (`success: false`, `error_kind: "deadline"`) with what the run did.
    #[error("deadline: the run passed its {} deadline (at `{step}`); the rest is left to the next run", humantime::format_duration(*after))]
    Deadline {
        /// The deadline.
        after: std::time::Duration,
        /// The step in progress.
        step: &'static str,
    },
    /// A test hook stopped the run between a side effect and its state write.
    #[error("run killed after the {kind} side effect {key} (test hook)")]
    Killed {
        /// Kind of the side effect.
        kind: IntentKind,
        /// Its key.
        key: String,
    },
}

impl WorkflowError {
    /// The process exit code for this error ([`crate::process`]): 2 for a configuration or
    /// connector the user must correct, 75 when another run holds the state (try again
    /// later), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        use crate::process::{EXIT_FAILED, EXIT_TEMPFAIL, EXIT_USAGE};
        match self {
            Self::Config(_) | Self::Connector { .. } => EXIT_USAGE,
            Self::State(e) if e.is_busy() => EXIT_TEMPFAIL,
            _ => EXIT_FAILED,
        }
    }
}

impl From<crate::connect::ConnectError> for WorkflowError {
    fn from(e: crate::connect::ConnectError) -> Self {
        match e {
            crate::connect::ConnectError::Config(e) => Self::Config(e),
            crate::connect::ConnectError::Connector { what, message } => {
                Self::Connector { what, message }
            }
        }
    }
}

/// The workflow: the client, the engine, the state store and the connectors.
pub struct Workflow {
    client: Client,
    engine: Arc<Engine>,
    state: Arc<StateStore>,
    settings: Settings,
    sink: Option<Arc<dyn TicketSink>>,
    notifiers: Vec<Arc<dyn Notifier>>,
    after_effect: Option<AfterEffectHook>,
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workflow")
            .field("client", &self.client)
            .field("state", &self.state)
            .field("settings", &self.settings)
            .field("sink", &self.sink.as_ref().map(|s| s.name().to_owned()))
            .field(
                "notifiers",
                &self
                    .notifiers
                    .iter()
                    .map(|n| n.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Workflow {
    /// A workflow with no ticket sink and no notifier.
    pub fn new(client: Client, engine: Engine, state: Arc<StateStore>, settings: Settings) -> Self {
        Self {
            client,
            engine: Arc::new(engine),
            state,
            settings,
            sink: None,
            notifiers: Vec::new(),
            after_effect: None,
        }
    }

    /// Everything from a configuration file: the client (key from `env`), the engine, the state
    /// store at [`Config::state_path`], the PSA and the notifiers. With `workflow.dry_run` the
    /// state file is only read (see [`Workflow::from_config_read_only`]).
    pub fn from_config(config: &Config, env: &dyn Env) -> Result<Self, WorkflowError> {
        if config.workflow().dry_run {
            return Self::from_config_read_only(config, env);
        }
        Self::build(config, env, false).map_err(|e| name_file(config, e))
    }

    /// Like [`Workflow::from_config`], for a dry run: the state file is only read (or an empty
    /// in-memory store is used when there is none), so nothing at all is written.
    pub fn from_config_read_only(config: &Config, env: &dyn Env) -> Result<Self, WorkflowError> {
        Self::build(config, env, true).map_err(|e| name_file(config, e))
    }

    fn build(config: &Config, env: &dyn Env, read_only: bool) -> Result<Self, WorkflowError> {
        let client = config.threatlocker_client(env)?;
        let engine = config.engine()?;
        config.check_run()?;
        // Every configuration check first: a configuration error leaves no new state file.
        let sink = crate::connect::ticket_sink(config, env)?;
        let notifiers = crate::connect::notifiers(config, env)?;
        let mut settings = Settings::from_config(config);
        let state = if read_only {
            settings.workflow.dry_run = true;
            StateStore::open_config_read_only(config, env)?
        } else {
            StateStore::open_config(config, env)?
        };
        let mut wf = Self::new(client, engine, Arc::new(state), settings);
        wf.sink = sink;
        wf.notifiers = notifiers;
        Ok(wf)
    }

    /// Sets the PSA.
    pub fn with_ticket_sink(mut self, sink: Arc<dyn TicketSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Adds a notifier.
    pub fn with_notifier(mut self, notifier: Arc<dyn Notifier>) -> Self {
        self.notifiers.push(notifier);
        self
    }

    /// Installs a test hook (see [`AfterEffectHook`]).
    pub fn with_after_effect_hook(mut self, hook: AfterEffectHook) -> Self {
        self.after_effect = Some(hook);
        self
    }

    /// The state store.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The ThreatLocker client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Runs the nine steps once.
    pub async fn run(&self, opts: RunOptions) -> Result<RunOutput, WorkflowError> {
        let now = opts.now.unwrap_or_else(Utc::now);
        let dry_run = opts.dry_run.unwrap_or(self.settings.workflow.dry_run);
        let hours = i64::from(self.settings.workflow.time_range_hours);
        let (start, end) = (now - Duration::hours(hours), now);
        let run_id = if dry_run {
            None
        } else {
            Some(self.state.begin_run(start, end, false)?)
        };
        let deadline_after = opts.deadline.unwrap_or(self.settings.workflow.deadline);
        let deadline = tokio::time::Instant::now() + deadline_after;
        info!(%start, %end, dry_run, deadline = %humantime::format_duration(deadline_after), "run started");
        let mut run = Run {
            wf: self,
            deadline,
            deadline_after,
            step: "retrieve events",
            decisions: None,
            rejected: RowRejections::new(),
            rows_received: 0,
            step_started: std::time::Instant::now(),
            timings: Vec::new(),
            dry_run,
            run_id,
            stop: opts.stop.clone(),
            full: opts.full,
            outcomes: Outcomes::new(dry_run),
            planned: Vec::new(),
            tickets: Vec::new(),
            leased_elsewhere: Vec::new(),
        };
        // A black-holed API can hang a read for long: the deadline also cuts an await short.
        // Dropping the steps there is safe: state writes are synchronous, so a side effect in
        // flight is left as an unfinished intent that the next run reconciles.
        let result = tokio::time::timeout_at(deadline, run.steps(now, start, end))
            .await
            .unwrap_or_else(|_| {
                Err(WorkflowError::Deadline {
                    after: deadline_after,
                    step: run.step,
                })
            });
        let mut error_kind = None;
        let (report, errors) = match result {
            Ok(report) => {
                let errors = report.errors.clone();
                (report, errors)
            }
            Err(e @ WorkflowError::Deadline { .. }) => {
                warn!("{e}");
                error_kind = Some("deadline");
                run.outcomes.errors.push(e.to_string());
                let decisions = run
                    .decisions
                    .take()
                    .unwrap_or_else(|| self.engine.evaluate(&Input::new(now, start, end)));
                let report = build_report(&decisions, &run.outcomes);
                let errors = report.errors.clone();
                (report, errors)
            }
            Err(e) => {
                if let (Some(id), false) = (run_id, matches!(e, WorkflowError::Killed { .. })) {
                    let status = if matches!(e, WorkflowError::Interrupted { .. }) {
                        RunStatus::Stopped
                    } else {
                        RunStatus::Failed
                    };
                    let _ =
                        self.state
                            .finish_run(id, status, None, Some(&crate::errors::chain(&e)));
                } else if let Some(id) = run_id {
                    // The test kill: the run's owner is gone, as after a real crash.
                    self.state.abandon_run(id);
                }
                return Err(e);
            }
        };
        if let Some(id) = run_id {
            let summary = serde_json::to_string(&report.monitoring_summary).ok();
            if errors.is_empty() && self.state.unfinished_intents_for_run(id)?.is_empty() {
                self.state.mark_window_done(id, start, end)?;
                self.state
                    .finish_run(id, RunStatus::Succeeded, summary.as_deref(), None)?;
            } else {
                self.state.finish_run(
                    id,
                    RunStatus::Failed,
                    summary.as_deref(),
                    Some(&errors.join("; ")),
                )?;
            }
        }
        info!(success = report.success, "run finished");
        Ok(RunOutput {
            report,
            run_id,
            planned_writes: run.planned,
            tickets: run.tickets,
            leased_elsewhere: run.leased_elsewhere,
            dry_run,
            window_start: start,
            window_end: end,
            timings: run.timings,
            rows_rejected: run.rejected,
            error_kind,
            rows_received: run.rows_received,
        })
    }
}

/// Names the configuration file in a configuration error.
fn name_file(config: &Config, e: WorkflowError) -> WorkflowError {
    match e {
        WorkflowError::Config(c) => WorkflowError::Config(config.name_file(c)),
        WorkflowError::Connector { what, message } => match config.file() {
            Some(f) => WorkflowError::Connector {
                what: format!("{}: {what}", f.display()),
                message,
            },
            None => WorkflowError::Connector { what, message },
        },
        other => other,
    }
}

struct Run<'a> {
    wf: &'a Workflow,
    /// When the run must stop (see [`WorkflowError::Deadline`]).
    deadline: tokio::time::Instant,
    deadline_after: std::time::Duration,
    /// The step in progress (named when the deadline passes).
    step: &'static str,
    /// The engine's decisions once made: a run cut short reports from them.
    decisions: Option<Decisions>,
    rejected: RowRejections,
    rows_received: u64,
    step_started: std::time::Instant,
    timings: Vec<StepTiming>,
    dry_run: bool,
    run_id: Option<i64>,
    stop: Option<Arc<AtomicBool>>,
    full: bool,
    outcomes: Outcomes,
    planned: Vec<PlannedWrite>,
    tickets: Vec<TicketLine>,
    leased_elsewhere: Vec<String>,
}

impl Run<'_> {
    /// Records that `step` finished, then stops if asked to before `next_step`.
    fn next(&mut self, step: &'static str, next_step: &'static str) -> Result<(), WorkflowError> {
        self.mark(step);
        if self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            return Err(WorkflowError::Interrupted { next_step });
        }
        self.step = next_step;
        // A safe point: past the deadline, stop before starting the next step.
        if tokio::time::Instant::now() >= self.deadline {
            return Err(WorkflowError::Deadline {
                after: self.deadline_after,
                step: next_step,
            });
        }
        Ok(())
    }

    fn mark(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        let seconds = (now - self.step_started).as_secs_f64();
        self.step_started = now;
        debug!(step, seconds, "step finished");
        self.timings.push(StepTiming { step, seconds });
    }

    fn killed(&self, kind: IntentKind, key: &str) -> Result<(), WorkflowError> {
        self.ctx().killed(kind, key)
    }

    fn error(&mut self, message: String) {
        warn!("{message}");
        self.outcomes.errors.push(message);
    }

    async fn steps(
        &mut self,
        now: DateTime<Utc>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<MonitoringReport, WorkflowError> {
        let wf = self.wf;
        let s = &wf.settings;
        let client = &wf.client;

        // 1. Retrieve events: streamed into the engine's per-key state, reading only what the
        // aggregates kept by earlier runs do not hold (see `window`).
        let scope = s.scope();
        let listed = fetch::list_scope(client, &scope).await;
        for e in listed.errors.clone() {
            self.error(e);
        }
        let mut rows = WindowState::default();
        let mut computers = Vec::new();
        let mut organizations = listed.organizations.clone();
        if s.workflow.monitor_blocks {
            let types = s.workflow.action_types();
            let fingerprint = window::fingerprint(&wf.engine, &scope, &types, &listed.targets);
            let plan = window::Plan::new(
                &wf.state,
                fingerprint,
                start,
                end,
                s.workflow.overlap(),
                self.full,
            );
            let reads = plan.reads.clone();
            let mut router = window::Router::new(&wf.engine, plan);
            // The window ends at the run's start: that is the `now` rows are judged against.
            let read =
                fetch::read_events(client, &scope, &listed, &reads, &types, end, &mut |row| {
                    router.push(row)
                })
                .await;
            let read_ok = read.errors.is_empty() && listed.errors.is_empty();
            for e in read.errors {
                self.error(e);
            }
            self.rejected = read.rejected;
            let received = router.rows();
            self.rows_received = received;
            let keep = (!self.dry_run).then_some(wf.state.as_ref());
            rows = router.finish(keep, read_ok)?;
            let (found, errors) = fetch::computers_in_scope(client, &scope).await;
            computers = found;
            for e in errors {
                self.error(e);
            }
            fetch::add_home_organization(&mut organizations, read.unlisted, &computers);
            info!(
                received,
                events = rows.events(),
                keys = rows.keys(),
                computers = computers.len(),
                "events retrieved"
            );
        }
        self.next("retrieve events", "process approvals")?;

        // 2. Process approvals.
        let mut approvals = Vec::new();
        if s.workflow.process_approvals {
            let (found, errors) = fetch::pending_approvals(client, &scope).await;
            approvals = found;
            for e in errors {
                self.error(e);
            }
        }
        info!(pending = approvals.len(), "approval requests retrieved");
        self.next("process approvals", "analyse blocks")?;

        // 3-4. Analyse blocks and detect patterns (pure).
        let builtin_apps: BTreeSet<String> = approvals
            .iter()
            .filter(|a| {
                a.application
                    .as_ref()
                    .is_some_and(|app| app.is_master_owned())
            })
            .filter_map(|a| {
                a.request
                    .approval_request_id
                    .as_ref()
                    .map(|id| id.to_string())
            })
            .collect();
        let input = Input::new(now, start, end)
            .with_approvals(approvals)
            .with_computers(computers)
            .with_organizations(organizations);
        let mut acc = wf.engine.accumulator(&input);
        acc.merge_state(rows);
        let mut decisions = acc.finish();
        drop(input);
        filter_detections(&mut decisions, &s.workflow.detection_types());
        if !s.workflow.create_tickets {
            decisions.tickets.clear();
        }
        self.decisions = Some(decisions.clone());
        self.next("analyse blocks and detect patterns", "auto-approve")?;

        // Leases: side effects only for organizations this runner holds (with PostgreSQL,
        // another runner may hold some; with SQLite the runner lock covers them all).
        if let (Some(run_id), false) = (self.run_id, self.dry_run) {
            self.leased_elsewhere = wf.state.lease_decisions(run_id, &mut decisions)?;
        }

        // 5. Auto-approve.
        let mut permitted: BTreeMap<OrganizationId, Vec<String>> = BTreeMap::new();
        if s.workflow.process_approvals {
            for change in decisions.policy_changes.clone() {
                self.permit(&change, &builtin_apps, &mut permitted).await?;
            }
        }
        if !self.dry_run {
            self.leftover_permits(&mut permitted).await?;
        }
        self.next("auto-approve", "create tickets")?;

        // 6. Create or update tickets.
        if s.workflow.create_tickets {
            if let Some(sink) = wf.sink.clone() {
                // A few tickets at a time (PSAs throttle; each ticket is independent). Results
                // come back in plan order.
                let ctx = self.ctx();
                // The first hard failure (the state store, a test kill) stops the others where
                // they are, as a crash would.
                // The futures are made up front (they do nothing until polled) rather than by a
                // closure inside the stream: a closure over borrowed tickets held across the
                // await makes the run's future not `Send` (a higher-ranked lifetime the
                // compiler cannot prove), and `watch` spawns runs on other tasks.
                let tickets: Vec<_> = decisions
                    .tickets
                    .iter()
                    .map(|planned| ctx.ticket(sink.as_ref(), planned, planned.last_seen))
                    .collect();
                let done: Vec<TicketDone> = stream::iter(tickets)
                    .buffered(TICKET_CONCURRENCY)
                    .try_collect()
                    .await?;
                for (planned, done) in decisions.tickets.iter().zip(done) {
                    self.apply_ticket(planned, done);
                }
            } else if !decisions.tickets.is_empty() {
                info!(
                    tickets = decisions.tickets.len(),
                    "no PSA configured ([psa] kind = \"none\"): tickets are reported, not opened"
                );
            }
        }
        if !self.dry_run {
            if let Some(sink) = wf.sink.clone() {
                self.leftover_tickets(sink.as_ref()).await?;
            }
        }
        self.next("create or update tickets", "apply policy changes")?;

        // 7. Apply policy changes.
        for (org, ids) in permitted {
            if self.dry_run {
                self.plan_deploy(&org, &ids);
            } else {
                self.deploy(&org, &ids).await?;
            }
        }
        if !self.dry_run {
            self.leftover_deploys().await?;
        }
        self.next("apply policy changes", "notify")?;

        // 9. Notify (before the report so its failures are in it).
        for n in decisions.notifications.clone() {
            for notifier in wf.notifiers.clone() {
                self.notify(notifier.as_ref(), &n).await?;
            }
        }
        if !self.dry_run {
            self.leftover_notifications().await?;
        }

        self.mark("notify");

        // 8. Build the report.
        let report = build_report(&decisions, &self.outcomes);
        self.mark("build the report");
        Ok(report)
    }

    async fn permit(
        &mut self,
        change: &PlannedPolicyChange,
        builtin: &BTreeSet<String>,
        permitted: &mut BTreeMap<OrganizationId, Vec<String>>,
    ) -> Result<(), WorkflowError> {
        // Every call of the permit (the request read, take ownership, the DTO, the matching
        // list, the permit, the read-back) acts on the request's own organization: a parent
        // key without `managedOrganizationId` acts on its home organization (reference §1.3).
        let client = scoped_client(&self.wf.client, change.organization_id.as_ref());
        let client = &client;
        let id = change.request_id.clone();
        let key = format!("permit:{id}");
        let scope = match (change.scope, &change.computer_group_id) {
            (ApprovalScope::Organization, _) => PermitScope::EntireOrganization,
            (ApprovalScope::Group, Some(g)) => PermitScope::ComputerGroup(g.clone()),
            _ => PermitScope::Computer,
        };
        let mut opts = PermitOptions::new().scope(scope.clone());
        // A built-in application can only be permitted for a whole organization; for a
        // narrower scope the file goes into a new application of the tenant's own.
        if builtin.contains(id.as_str()) && scope != PermitScope::EntireOrganization {
            opts = opts.application(ApplicationChoice::New(format!(
                "{} (auto-approved)",
                change.application
            )));
        }
        if self.dry_run {
            match client.approvals().plan_permit(&id, &opts).await {
                Ok(plan) => {
                    // Counted as applied (planned) and deployed below, as a real run would.
                    self.permitted(change, permitted);
                    self.planned.push(PlannedWrite {
                        target: "threatlocker".into(),
                        kind: IntentKind::Permit,
                        key,
                        description: format!(
                            "permit {} ({}) for {}",
                            change.application,
                            id,
                            change.scope.as_str()
                        ),
                        requests: plan.requests,
                    });
                }
                Err(e) => {
                    warn!(request = %id, error = %crate::errors::ErrorChain(&e), "planning the permit failed");
                    self.outcomes.approvals.insert(
                        id.clone(),
                        ApprovalOutcome::failed(crate::errors::chain(&e)),
                    );
                }
            }
            return Ok(());
        }
        let payload = json!({
            "request_id": id,
            "organization_id": change.organization_id,
            "application": change.application,
            "scope": change.scope.as_str(),
            "rule": change.rule,
        });
        let status = self
            .wf
            .state
            .begin_intent(IntentKind::Permit, &key, &payload, self.run_id)?;
        match status {
            IntentStatus::AlreadyDone(result) => {
                self.outcomes.approvals.insert(
                    id.clone(),
                    ApprovalOutcome::failed(format!(
                        "already handled by an earlier run ({}); ThreatLocker still lists it as pending",
                        result.unwrap_or_default()
                    )),
                );
                return Ok(());
            }
            IntentStatus::Unfinished { .. } => {
                // Reconcile: did the interrupted attempt take effect?
                match client.approvals().get(&id).await {
                    Ok(r) if r.status_id == Some(ApprovalStatus::Approved) => {
                        self.wf
                            .state
                            .complete_intent(&key, Some("approved (reconciled)"))?;
                        self.permitted(change, permitted);
                        return Ok(());
                    }
                    Ok(r) if r.status_id != Some(ApprovalStatus::Pending) => {
                        let s = r
                            .status_id
                            .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                        self.wf
                            .state
                            .complete_intent(&key, Some(&format!("actioned elsewhere: {s}")))?;
                        self.outcomes.approvals.insert(
                            id.clone(),
                            ApprovalOutcome::failed(format!("already actioned: {s}")),
                        );
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // The report lists the approval outcome's error.
                        warn!(request = %id, error = %crate::errors::ErrorChain(&e), "re-reading the approval request failed");
                        self.wf.state.fail_intent(&key, &crate::errors::chain(&e))?;
                        self.outcomes.approvals.insert(
                            id.clone(),
                            ApprovalOutcome::failed(format!(
                                "re-reading its status: {e}",
                                e = crate::errors::ErrorChain(&e)
                            )),
                        );
                        return Ok(());
                    }
                }
            }
            IntentStatus::New => {}
        }
        match permit_settling_unknown(client, &id, &opts, self.deadline).await {
            Ok(verified) => {
                self.killed(IntentKind::Permit, &key)?;
                let result = if verified {
                    "approved"
                } else {
                    "sent; read-back not yet approved"
                };
                self.wf.state.complete_intent(&key, Some(result))?;
                self.permitted(change, permitted);
            }
            Err(threatlocker_api::Error::AlreadyActioned { status, .. }) => {
                self.killed(IntentKind::Permit, &key)?;
                self.wf
                    .state
                    .complete_intent(&key, Some(&format!("actioned elsewhere: {status}")))?;
                self.outcomes.approvals.insert(
                    id.clone(),
                    ApprovalOutcome::failed(format!("already actioned: {status}")),
                );
            }
            Err(e) => {
                // The report lists the approval outcome's error.
                warn!(request = %id, error = %crate::errors::ErrorChain(&e), "permit failed");
                self.wf.state.fail_intent(&key, &crate::errors::chain(&e))?;
                self.outcomes.approvals.insert(
                    id.clone(),
                    ApprovalOutcome::failed(crate::errors::chain(&e)),
                );
            }
        }
        Ok(())
    }

    fn permitted(
        &mut self,
        change: &PlannedPolicyChange,
        permitted: &mut BTreeMap<OrganizationId, Vec<String>>,
    ) {
        self.outcomes
            .approvals
            .insert(change.request_id.clone(), ApprovalOutcome::permitted());
        if let Some(org) = &change.organization_id {
            permitted
                .entry(org.clone())
                .or_default()
                .push(change.request_id.to_string());
        } else {
            self.outcomes
                .policy_changes_applied
                .insert(change.request_id.clone());
        }
    }

    /// The dry-run view of [`Run::deploy`].
    fn plan_deploy(&mut self, org: &OrganizationId, ids: &[String]) {
        for id in ids {
            self.outcomes
                .policy_changes_applied
                .insert(threatlocker_api::ApprovalRequestId::from(id.as_str()));
        }
        match threatlocker_api::prepare_policy_deploy(org) {
            Ok(req) => self.planned.push(PlannedWrite {
                target: "threatlocker".into(),
                kind: IntentKind::PolicyDeploy,
                key: format!("deploy:{org}"),
                description: format!(
                    "deploy policies to organization {org} ({} permit{})",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                ),
                requests: vec![req],
            }),
            Err(e) => self.error(format!(
                "planning the deploy to {org}: {e}",
                e = crate::errors::ErrorChain(&e)
            )),
        }
    }

    async fn deploy(&mut self, org: &OrganizationId, ids: &[String]) -> Result<(), WorkflowError> {
        let mut sorted = ids.to_vec();
        sorted.sort();
        let key = format!(
            "deploy:{org}:{}",
            mapping::digest(sorted.iter().map(String::as_str))
        );
        let applied = |run: &mut Self| {
            for id in &sorted {
                run.outcomes
                    .policy_changes_applied
                    .insert(threatlocker_api::ApprovalRequestId::from(id.as_str()));
            }
        };
        let payload = json!({"organization_id": org, "requests": sorted});
        match self
            .wf
            .state
            .begin_intent(IntentKind::PolicyDeploy, &key, &payload, self.run_id)?
        {
            IntentStatus::AlreadyDone(_) => {
                applied(self);
                return Ok(());
            }
            // Deploying is idempotent (it pushes the current policies), so an unfinished
            // deploy is simply sent again.
            IntentStatus::New | IntentStatus::Unfinished { .. } => {}
        }
        match self.wf.client.policies().deploy(org).await {
            Ok(()) => {
                self.killed(IntentKind::PolicyDeploy, &key)?;
                self.wf.state.complete_intent(&key, Some("deployed"))?;
                applied(self);
            }
            Err(e) => {
                self.wf.state.fail_intent(&key, &crate::errors::chain(&e))?;
                self.error(format!(
                    "deploying policies to organization {org}: {e}",
                    e = crate::errors::ErrorChain(&e)
                ));
            }
        }
        Ok(())
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            wf: self.wf,
            dry_run: self.dry_run,
            run_id: self.run_id,
        }
    }

    fn apply_ticket(&mut self, planned: &PlannedTicket, done: TicketDone) {
        if let Some(w) = done.planned {
            self.planned.push(w);
        }
        if let Some((id, created, noted)) = done.ticket {
            self.record_ticket(planned, &id, created, noted);
        }
        for e in done.errors {
            self.error(e);
        }
    }

    fn record_ticket(&mut self, planned: &PlannedTicket, id: &str, created: bool, noted: bool) {
        self.outcomes.tickets.insert(
            planned.dedupe_key.clone(),
            TicketOutcome::new(id.to_owned(), created),
        );
        self.tickets.push(TicketLine {
            dedupe_key: planned.dedupe_key.clone(),
            ticket_id: id.to_owned(),
            created,
            noted,
            summary: planned.summary.clone(),
        });
    }

    async fn notify(
        &mut self,
        notifier: &dyn Notifier,
        planned: &policy_engine::PlannedNotification,
    ) -> Result<(), WorkflowError> {
        let mut parts: Vec<&str> = vec![planned.subject.as_str()];
        parts.extend(planned.detection_keys.iter().map(String::as_str));
        let ids: Vec<String> = planned
            .approval_request_ids
            .iter()
            .map(ToString::to_string)
            .collect();
        parts.extend(ids.iter().map(String::as_str));
        parts.extend(planned.recipients.iter().map(String::as_str));
        let key = format!("notify:{}:{}", notifier.name(), mapping::digest(parts));
        if self.dry_run {
            self.planned.push(PlannedWrite {
                target: format!("notify:{}", notifier.name()),
                kind: IntentKind::Notification,
                key,
                description: format!("send \"{}\"", planned.subject),
                requests: Vec::new(),
            });
            return Ok(());
        }
        let notification = mapping::notification(planned);
        let payload = json!({"channel": notifier.name(), "notification": notification});
        match self
            .wf
            .state
            .begin_intent(IntentKind::Notification, &key, &payload, self.run_id)?
        {
            IntentStatus::AlreadyDone(_) => Ok(()),
            IntentStatus::New | IntentStatus::Unfinished { .. } => {
                match notifier.send(&notification).await {
                    Ok(()) => {
                        self.killed(IntentKind::Notification, &key)?;
                        self.wf.state.complete_intent(&key, Some("sent"))?;
                    }
                    Err(e) => {
                        self.wf.state.fail_intent(&key, &crate::errors::chain(&e))?;
                        self.error(format!(
                            "notifying through {}: {e}",
                            notifier.name(),
                            e = crate::errors::ErrorChain(&e)
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Attempts at a permit whose outcome stays unknown (the first included).
const UNKNOWN_OUTCOME_ATTEMPTS: u32 = 3;

/// Permits `id`; when the outcome is unknown (the server may have committed, then answered
/// 5xx or dropped the connection), re-reads the request within the run instead of failing:
/// Approved is success, another final status is [`threatlocker_api::Error::AlreadyActioned`],
/// still Pending means the write did not take and the permit is sent again — the same
/// reconciliation a later run would make, whose own first step re-reads the status. Returns
/// whether the request reads back Approved.
async fn permit_settling_unknown(
    client: &Client,
    id: &threatlocker_api::ApprovalRequestId,
    opts: &PermitOptions,
    deadline: tokio::time::Instant,
) -> threatlocker_api::Result<bool> {
    let mut attempt = 1;
    loop {
        let err = match client.approvals().permit(id, opts).await {
            Ok(outcome) => return Ok(outcome.verified),
            Err(e) if e.is_outcome_unknown() => e,
            Err(e) => return Err(e),
        };
        let wait = std::time::Duration::from_millis(250 << attempt.min(4));
        if attempt >= UNKNOWN_OUTCOME_ATTEMPTS || tokio::time::Instant::now() + wait >= deadline {
            return Err(err);
        }
        warn!(request = %id, error = %err, "the permit's outcome is unknown; re-reading the request");
        tokio::time::sleep(wait).await;
        attempt += 1;
        match client.approvals().get(id).await {
            Ok(r) if r.status_id == Some(ApprovalStatus::Approved) => {
                info!(request = %id, "re-read after an unknown outcome: approved");
                return Ok(true);
            }
            Ok(r) if r.status_id != Some(ApprovalStatus::Pending) => {
                return Err(threatlocker_api::Error::AlreadyActioned {
                    request_id: id.to_string(),
                    status: r.status_id.map_or_else(
                        || "unknown (read after the permit's answer was lost)".to_owned(),
                        |s| format!("{s} (read after the permit's answer was lost)"),
                    ),
                });
            }
            // Still pending, or unreadable: the permit flow re-reads the status before writing.
            Ok(_) | Err(_) => {}
        }
    }
}

/// The open ticket with `reference`, searched once more after a create whose outcome is
/// unknown (after a short pause for the PSA's search to catch up).
async fn find_after_unknown(sink: &dyn TicketSink, reference: &str) -> Option<TicketRef> {
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sink.find_open(reference).await.ok().flatten()
}

/// PSA calls in flight at once while opening tickets.
const TICKET_CONCURRENCY: usize = 4;

/// What handling one planned ticket produced.
#[derive(Default)]
struct TicketDone {
    /// `(ticket id, created this run, noted this run)`.
    ticket: Option<(String, bool, bool)>,
    planned: Option<PlannedWrite>,
    errors: Vec<String>,
}

/// The read-only part of a run, shared by side effects performed concurrently.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    wf: &'a Workflow,
    dry_run: bool,
    run_id: Option<i64>,
}

impl Ctx<'_> {
    fn killed(&self, kind: IntentKind, key: &str) -> Result<(), WorkflowError> {
        match &self.wf.after_effect {
            Some(hook) if hook(kind, key) => Err(WorkflowError::Killed {
                kind,
                key: key.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Opens the ticket for one incident, or adds a note to its open one, exactly once.
    ///
    /// An incident's tickets form a chain of intents: `ticket:<dedupe key>` for the first, then
    /// `ticket:<dedupe key>:after:<id of the closed one>` for each ticket opened after a
    /// technician closed the previous one. The newest done link is the incident's ticket: while
    /// the PSA still holds it open, a newer sighting adds a note; once it is closed, the next
    /// detection opens a new ticket (the next link).
    async fn ticket(
        self,
        sink: &dyn TicketSink,
        planned: &PlannedTicket,
        last_seen: Option<DateTime<Utc>>,
    ) -> Result<TicketDone, WorkflowError> {
        let state = &self.wf.state;
        let mut done = TicketDone::default();
        let base = format!("ticket:{}", planned.dedupe_key);
        // Walk the chain to its first link that is not done.
        let mut key = base.clone();
        let mut previous: Option<IntentRecord> = None;
        while let Some(rec) = state.intent(&key)? {
            if rec.state != IntentState::Done {
                break;
            }
            key = format!("{base}:after:{}", rec.result.clone().unwrap_or_default());
            previous = Some(rec);
        }
        let ticket = mapping::ticket(planned, &self.wf.settings.companies);
        let last_seen_s = last_seen.map(|t| t.to_rfc3339()).unwrap_or_default();
        if self.dry_run {
            match &previous {
                Some(rec) => {
                    done.ticket = Some((rec.result.clone().unwrap_or_default(), false, false));
                }
                None => {
                    done.planned = Some(PlannedWrite {
                        target: format!("psa:{}", sink.name()),
                        kind: IntentKind::Ticket,
                        key,
                        description: format!(
                            "open a ticket (unless one with external reference {} is open): {}",
                            planned.dedupe_key, planned.summary
                        ),
                        requests: Vec::new(),
                    })
                }
            }
            return Ok(done);
        }
        let unfinished = state
            .intent(&key)?
            .is_some_and(|r| r.state != IntentState::Done);
        // The incident has a ticket and nothing is half-done: is that ticket still open?
        if let (Some(rec), false) = (&previous, unfinished) {
            let open = match sink.find_open(&planned.dedupe_key).await {
                Ok(open) => open,
                Err(e) => {
                    done.errors
                        .push(format!("searching the PSA for {}: {e}", planned.dedupe_key));
                    return Ok(done);
                }
            };
            if let Some(open) = open {
                let recorded_last_seen = rec
                    .payload
                    .get("last_seen")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                let noted = if !last_seen_s.is_empty() && last_seen_s.as_str() > recorded_last_seen
                {
                    self.note(sink, planned, &open.id, &last_seen_s, &mut done.errors)
                        .await?
                } else {
                    false
                };
                done.ticket = Some((open.id, false, noted));
                return Ok(done);
            }
            debug!(
                incident = %planned.dedupe_key,
                closed = rec.result.as_deref().unwrap_or(""),
                "the incident's ticket was closed: opening a new one"
            );
        }
        // The whole ticket is recorded, so a rerun can finish it even once the incident has
        // left the window.
        let payload = json!({"ticket": ticket, "last_seen": last_seen_s});
        let status = state.begin_intent(IntentKind::Ticket, &key, &payload, self.run_id)?;
        if let IntentStatus::AlreadyDone(id) = &status {
            // Another runner finished this link in the meantime.
            done.ticket = Some((id.clone().unwrap_or_default(), false, false));
            return Ok(done);
        }
        // Search first: reconciles an interrupted create, and finds a ticket the PSA holds
        // even when the state file was lost.
        match sink.find_open(&planned.dedupe_key).await {
            Ok(Some(existing)) => {
                let created = matches!(status, IntentStatus::Unfinished { .. });
                state.complete_intent(&key, Some(&existing.id))?;
                done.ticket = Some((existing.id, created, false));
                return Ok(done);
            }
            Ok(None) => {}
            Err(e) => {
                state.fail_intent(&key, &crate::errors::chain(&e))?;
                done.errors.push(format!(
                    "searching the PSA for {}: {e}",
                    planned.dedupe_key,
                    e = crate::errors::ErrorChain(&e)
                ));
                return Ok(done);
            }
        }
        match sink.create(&ticket).await {
            Ok(created) => {
                self.killed(IntentKind::Ticket, &key)?;
                state.complete_intent(&key, Some(&created.id))?;
                done.ticket = Some((created.id, true, false));
            }
            Err(e) => {
                // The create may have gone through (a 5xx or a reset after sending): search
                // once more by its reference before calling it failed.
                let found = if e.is_retryable() {
                    find_after_unknown(sink, &planned.dedupe_key).await
                } else {
                    None
                };
                if let Some(found) = found {
                    info!(reference = %planned.dedupe_key, ticket = %found.id, error = %crate::errors::ErrorChain(&e), "the create answered with an error, but the ticket exists");
                    state.complete_intent(&key, Some(&found.id))?;
                    done.ticket = Some((found.id, true, false));
                } else {
                    state.fail_intent(&key, &crate::errors::chain(&e))?;
                    done.errors.push(format!(
                        "opening a ticket for {}: {}",
                        planned.dedupe_key,
                        crate::errors::ErrorChain(&e)
                    ));
                }
            }
        }
        Ok(done)
    }

    /// Adds one note per newer sighting of an incident that already has its ticket.
    async fn note(
        self,
        sink: &dyn TicketSink,
        planned: &PlannedTicket,
        ticket_id: &str,
        last_seen: &str,
        errors: &mut Vec<String>,
    ) -> Result<bool, WorkflowError> {
        let state = &self.wf.state;
        let key = format!("note:{}:{last_seen}", planned.dedupe_key);
        let note = mapping::update_note(planned);
        let payload = json!({"ticket_id": ticket_id, "note": note});
        match state.begin_intent(IntentKind::Note, &key, &payload, self.run_id)? {
            IntentStatus::AlreadyDone(_) => Ok(false),
            IntentStatus::New | IntentStatus::Unfinished { .. } => {
                match sink.add_note(&TicketRef::new(ticket_id), &note).await {
                    Ok(()) => {
                        self.killed(IntentKind::Note, &key)?;
                        state.complete_intent(&key, None)?;
                        Ok(true)
                    }
                    Err(e) => {
                        state.fail_intent(&key, &crate::errors::chain(&e))?;
                        errors.push(format!(
                            "adding a note to ticket {ticket_id}: {e}",
                            e = crate::errors::ErrorChain(&e)
                        ));
                        Ok(false)
                    }
                }
            }
        }
    }
}

impl Run<'_> {
    /// Intents of `kind` left unfinished by an earlier (killed or failed) run and not touched
    /// by this one.
    fn leftovers(
        &self,
        kind: IntentKind,
    ) -> Result<Vec<crate::state::IntentRecord>, WorkflowError> {
        // Claimed for this run, and only when the run that began them is gone: a live
        // runner's unfinished intents are its own.
        Ok(self.wf.state.claim_orphaned_intents(kind, self.run_id)?)
    }

    /// Permits an earlier run began but this run did not plan (the request is no longer
    /// pending, typically because the permit did go through before a crash): re-read the
    /// request's status and record what happened; an approved one still gets its policies
    /// deployed.
    async fn leftover_permits(
        &mut self,
        permitted: &mut BTreeMap<OrganizationId, Vec<String>>,
    ) -> Result<(), WorkflowError> {
        for intent in self.leftovers(IntentKind::Permit)? {
            let Some(id) = intent.payload.get("request_id").and_then(|v| v.as_str()) else {
                continue;
            };
            let id = threatlocker_api::ApprovalRequestId::from(id);
            let org = intent
                .payload
                .get("organization_id")
                .and_then(|v| v.as_str())
                .filter(|o| !o.trim().is_empty())
                .map(OrganizationId::from);
            let client = scoped_client(&self.wf.client, org.as_ref());
            match client.approvals().get(&id).await {
                Ok(r) if r.status_id == Some(ApprovalStatus::Approved) => {
                    self.wf
                        .state
                        .complete_intent(&intent.key, Some("approved (reconciled)"))?;
                    info!(request = %id, "an interrupted permit had gone through");
                    if let Some(org) = r.organization_id.clone().or_else(|| {
                        intent
                            .payload
                            .get("organization_id")
                            .and_then(|v| v.as_str())
                            .map(OrganizationId::from)
                    }) {
                        permitted.entry(org).or_default().push(id.to_string());
                    }
                }
                Ok(r) if r.status_id == Some(ApprovalStatus::Pending) => {
                    // Still pending but no longer auto-approved by the rules: not permitted.
                    self.wf.state.complete_intent(
                        &intent.key,
                        Some("not performed: no longer auto-approved"),
                    )?;
                }
                Ok(r) => {
                    let s = r
                        .status_id
                        .map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                    self.wf
                        .state
                        .complete_intent(&intent.key, Some(&format!("actioned elsewhere: {s}")))?;
                }
                Err(e) => self.error(format!(
                    "re-reading approval request {id} left unfinished by an earlier run: {e}",
                    e = crate::errors::ErrorChain(&e),
                )),
            }
        }
        Ok(())
    }

    /// Tickets an earlier run began for incidents this run did not see again: found by their
    /// external reference, else created from the recorded ticket.
    async fn leftover_tickets(&mut self, sink: &dyn TicketSink) -> Result<(), WorkflowError> {
        for intent in self.leftovers(IntentKind::Ticket)? {
            let Some(ticket) = intent
                .payload
                .get("ticket")
                .and_then(|t| serde_json::from_value::<psa_connectors::Ticket>(t.clone()).ok())
            else {
                continue;
            };
            let found = match sink.find_open(&ticket.external_ref).await {
                Ok(f) => f,
                Err(e) => {
                    self.error(format!(
                        "searching the PSA for {}: {e}",
                        ticket.external_ref,
                        e = crate::errors::ErrorChain(&e),
                    ));
                    continue;
                }
            };
            let id = match found {
                Some(existing) => existing.id,
                None => match sink.create(&ticket).await {
                    Ok(created) => {
                        self.killed(IntentKind::Ticket, &intent.key)?;
                        created.id
                    }
                    Err(e) => {
                        self.wf
                            .state
                            .fail_intent(&intent.key, &crate::errors::chain(&e))?;
                        self.error(format!(
                            "opening a ticket for {}: {e}",
                            ticket.external_ref,
                            e = crate::errors::ErrorChain(&e)
                        ));
                        continue;
                    }
                },
            };
            self.wf.state.complete_intent(&intent.key, Some(&id))?;
        }
        for intent in self.leftovers(IntentKind::Note)? {
            let (Some(ticket_id), Some(note)) = (
                intent.payload.get("ticket_id").and_then(|v| v.as_str()),
                intent
                    .payload
                    .get("note")
                    .and_then(|n| serde_json::from_value::<psa_connectors::Note>(n.clone()).ok()),
            ) else {
                continue;
            };
            match sink.add_note(&TicketRef::new(ticket_id), &note).await {
                Ok(()) => {
                    self.killed(IntentKind::Note, &intent.key)?;
                    self.wf.state.complete_intent(&intent.key, None)?;
                }
                Err(e) => {
                    self.wf
                        .state
                        .fail_intent(&intent.key, &crate::errors::chain(&e))?;
                    self.error(format!(
                        "adding a note to ticket {ticket_id}: {e}",
                        e = crate::errors::ErrorChain(&e)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Deploys an earlier run began and did not confirm (deploying is idempotent).
    async fn leftover_deploys(&mut self) -> Result<(), WorkflowError> {
        for intent in self.leftovers(IntentKind::PolicyDeploy)? {
            let Some(org) = intent
                .payload
                .get("organization_id")
                .and_then(|v| v.as_str())
            else {
                continue;
            };
            let org = OrganizationId::from(org);
            match self.wf.client.policies().deploy(&org).await {
                Ok(()) => {
                    self.killed(IntentKind::PolicyDeploy, &intent.key)?;
                    self.wf
                        .state
                        .complete_intent(&intent.key, Some("deployed"))?;
                }
                Err(e) => {
                    self.wf
                        .state
                        .fail_intent(&intent.key, &crate::errors::chain(&e))?;
                    self.error(format!(
                        "deploying policies to organization {org}: {e}",
                        e = crate::errors::ErrorChain(&e)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Notifications an earlier run began and did not confirm: sent again (a notifier has no
    /// record to search, so an interrupted notification is delivered at least once).
    async fn leftover_notifications(&mut self) -> Result<(), WorkflowError> {
        for intent in self.leftovers(IntentKind::Notification)? {
            let channel = intent.payload.get("channel").and_then(|v| v.as_str());
            let Some(notifier) = self
                .wf
                .notifiers
                .iter()
                .find(|n| Some(n.name()) == channel)
                .cloned()
            else {
                continue;
            };
            let Some(notification) = intent.payload.get("notification").and_then(|n| {
                serde_json::from_value::<psa_connectors::Notification>(n.clone()).ok()
            }) else {
                continue;
            };
            match notifier.send(&notification).await {
                Ok(()) => {
                    self.killed(IntentKind::Notification, &intent.key)?;
                    self.wf.state.complete_intent(&intent.key, Some("sent"))?;
                }
                Err(e) => {
                    self.wf
                        .state
                        .fail_intent(&intent.key, &crate::errors::chain(&e))?;
                    self.error(format!(
                        "notifying through {}: {e}",
                        notifier.name(),
                        e = crate::errors::ErrorChain(&e)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Keeps only detections of the given types (all when empty), and the tickets and
/// notifications that refer to them.
fn filter_detections(decisions: &mut Decisions, types: &[String]) {
    if types.is_empty() {
        return;
    }
    decisions
        .detections
        .retain(|d| types.iter().any(|t| t.eq_ignore_ascii_case(d.event_type)));
    let index: BTreeSet<String> = decisions.detections.iter().map(|d| d.key.clone()).collect();
    // A ticket holds an incident: it stays while any of its detections does.
    decisions.tickets.retain_mut(|t| {
        t.detection_keys.retain(|k| index.contains(k));
        !t.detection_keys.is_empty()
    });
    decisions.notifications.retain_mut(|n| {
        n.detection_keys.retain(|k| index.contains(k));
        !n.detection_keys.is_empty() || !n.approval_request_ids.is_empty()
    });
}

/// The client acting on `org` (its `managedOrganizationId`), or the client as configured.
fn scoped_client(client: &Client, org: Option<&OrganizationId>) -> Client {
    match org {
        Some(org) => client.with_organization(org.clone()),
        None => client.clone(),
    }
}

#[cfg(test)]
mod exit_code_tests {
    use super::*;

    #[test]
    fn errors_map_to_the_documented_exit_codes() {
        let busy = StateError::Busy {
            path: "s.db".into(),
            what: "runner".into(),
            holder: "host/1".into(),
            waited: std::time::Duration::ZERO,
        };
        let cases = [
            (
                WorkflowError::Config(ConfigError::Invalid {
                    key: "psa".into(),
                    message: "missing".into(),
                }),
                2,
            ),
            (
                WorkflowError::Connector {
                    what: "psa".into(),
                    message: "bad".into(),
                },
                2,
            ),
            (WorkflowError::State(busy), 75),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
        }
    }
}

#[cfg(test)]
mod send_tests {
    use super::*;

    fn assert_send<T: Send>(_: T) {}

    /// A run can be spawned on another task (`tokio::spawn`): its future is `Send`. Checked
    /// at compile time; never called.
    #[allow(dead_code)]
    fn run_future_is_send(wf: &Workflow) {
        assert_send(wf.run(RunOptions::new()));
    }
}
