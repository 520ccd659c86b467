//! The state store that makes side effects exactly-once across reruns, crashes and runners.
//!
//! Protocol for every side effect (ticket, note, permit, reject, policy deploy, notification):
//!
//! 1. [`StateStore::begin_intent`] with a stable idempotency key *before* performing it. The
//!    answer says whether it is new, already done (with its result, e.g. the ticket id), or
//!    unfinished from an earlier attempt — which the caller must reconcile against the remote
//!    system (search the PSA for the external reference, re-read the approval's status) before
//!    doing anything again.
//! 2. Perform it.
//! 3. [`StateStore::complete_intent`] with the result (or [`StateStore::fail_intent`]).
//!
//! A run's window is recorded as processed only after all of its side effects are complete.
//! The store also keeps a generic checkpoint table (`name → value`) for feeds such as
//! `siem-forward`.
//!
//! # Backends
//!
//! Two backends share one schema (the same tables, columns and versions) and this protocol:
//! an embedded SQLite file (the default; [`sqlite`](self) in WAL mode, `synchronous = FULL`)
//! and PostgreSQL (`[state] url`), which several runners on several hosts can share. Migrations
//! are versioned and run on open; two processes opening a new store at once are serialised
//! (SQLite: the version is read inside an `IMMEDIATE` transaction; PostgreSQL: an advisory lock
//! for the migration's transaction).
//!
//! # Owners and leases
//!
//! Each open store is an *owner* (`host/pid/start/nonce`). A run holds a lease `run:<id>` for
//! as long as it works, renewed by a background thread every third of the lease time
//! (`lease_ttl`, default 30 s) and released when it finishes. An intent belongs to the run that
//! last touched it: it is reconciled as interrupted only when that run is no longer alive (not
//! `running`, its lease expired, or — on the same host — its process gone); while the run is
//! alive, another runner that needs the same key waits for it. With SQLite a run also holds the
//! store-wide lease `runner`, so a second `run` on the same file waits (up to the lock timeout,
//! then [`StateError::Busy`]). With PostgreSQL runners share the store and lease organizations
//! ([`StateStore::lease_organizations`]): each organization's side effects are performed by one
//! runner at a time. A killed runner's leases expire after `lease_ttl` (at once when its host
//! sees the process gone) and the next runner reconciles its unfinished intents.
//!
//! The store's API is synchronous: every call is a short query (the PostgreSQL backend runs its
//! connection on a thread of its own, see `postgres.rs`).

mod postgres;
mod sqlite;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::config::{Config, Env, StateBackendConfig};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 2;

/// Default time a lease lives without renewal (a killed runner's leases are free after it).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Default time a run waits for the state another run holds (`--lock-timeout`).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(300);

/// A state-store failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// SQLite failed (I/O, corruption, lock timeout).
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file (`:memory:` for an in-memory store).
        path: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// PostgreSQL failed (a query, the connection).
    // The PostgreSQL client's own text is only the kind ("db error", "error connecting to
    // server"): the message carries its causes.
    #[error("state database {path}: {}", crate::errors::chain(source))]
    Postgres {
        /// The database, as `postgres://user@host:port/db` (never with a password).
        path: String,
        /// The PostgreSQL error.
        #[source]
        source: ::postgres::Error,
    },
    /// The database cannot be reached.
    #[error("state database {path}: {message}")]
    Unavailable {
        /// The database (never with a password).
        path: String,
        /// Why.
        message: String,
    },
    /// The file was written by a newer version of this program.
    #[error("state database {path} has schema version {found}, newer than this program's {supported}; upgrade threatlocker-monitor")]
    TooNew {
        /// The database file.
        path: String,
        /// Version in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// `complete_intent`/`fail_intent` for a key that was never begun.
    #[error("no intent with key {0:?}")]
    UnknownIntent(String),
    /// A stored value could not be read back.
    #[error("state database {path}: corrupt value in {what}: {message}")]
    Corrupt {
        /// The database file.
        path: String,
        /// Table and column.
        what: &'static str,
        /// Details.
        message: String,
    },
    /// Another live run holds what this one needs, still after waiting.
    #[error("state database {path}: another run holds {what} ({holder}); waited {waited:?}")]
    Busy {
        /// The database.
        path: String,
        /// The lease or intent.
        what: String,
        /// Its holder (`host/pid/...`).
        holder: String,
        /// How long this run waited.
        waited: Duration,
    },
    /// A lease this runner held was taken over (it could not be renewed in time): the run
    /// stops before acting on what may now be another runner's.
    #[error(
        "state database {path}: lost the lease on {what}; stopping before any further side effect"
    )]
    LeaseLost {
        /// The database.
        path: String,
        /// The lease.
        what: String,
    },
}

impl StateError {
    /// Whether another run holds the state (the caller may retry later: exit 75).
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }
}

/// Result alias for the state store.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Kind of side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IntentKind {
    /// A PSA ticket created.
    Ticket,
    /// A note added to a PSA ticket.
    Note,
    /// An approval request permitted.
    Permit,
    /// An approval request rejected.
    Reject,
    /// Policies deployed to an organization.
    PolicyDeploy,
    /// A notification sent.
    Notification,
}

impl IntentKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ticket => "ticket",
            Self::Note => "note",
            Self::Permit => "permit",
            Self::Reject => "reject",
            Self::PolicyDeploy => "policy_deploy",
            Self::Notification => "notification",
        }
    }
}

impl fmt::Display for IntentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IntentKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ticket" => Self::Ticket,
            "note" => Self::Note,
            "permit" => Self::Permit,
            "reject" => Self::Reject,
            "policy_deploy" => Self::PolicyDeploy,
            "notification" => Self::Notification,
            other => return Err(format!("unknown intent kind {other:?}")),
        })
    }
}

/// Where an intent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IntentState {
    /// Recorded, not known to be performed.
    Intended,
    /// Performed and confirmed.
    Done,
    /// The last attempt failed.
    Failed,
}

impl IntentState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Intended => "intended",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for IntentState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "intended" => Self::Intended,
            "done" => Self::Done,
            "failed" => Self::Failed,
            other => return Err(format!("unknown intent state {other:?}")),
        })
    }
}

/// What [`StateStore::begin_intent`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum IntentStatus {
    /// Never seen: recorded as intended; perform it, then complete it.
    New,
    /// Already performed; the stored result (a ticket id, ...). Do not repeat it.
    AlreadyDone(Option<String>),
    /// An earlier attempt was recorded but not confirmed (the process died, or the call failed).
    /// Reconcile with the remote system before repeating. The stored payload of that attempt
    /// and the error of the last failure, if it failed.
    Unfinished {
        /// Payload recorded by the earlier attempt.
        payload: serde_json::Value,
        /// The last attempt's error, when it was recorded as failed.
        last_error: Option<String>,
    },
}

/// One stored intent.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct IntentRecord {
    /// Idempotency key.
    pub key: String,
    /// Kind.
    pub kind: IntentKind,
    /// Payload recorded when it was begun.
    pub payload: serde_json::Value,
    /// State.
    pub state: IntentState,
    /// Result, once done.
    pub result: Option<String>,
    /// Last error, if any attempt failed.
    pub error: Option<String>,
    /// Attempts begun.
    pub attempts: u32,
    /// The run that last touched it.
    pub run_id: Option<i64>,
    /// First recorded.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunStatus {
    /// In progress (or the process died during it).
    Running,
    /// Finished with every step and side effect done.
    Succeeded,
    /// Finished with errors.
    Failed,
    /// Its process stopped (killed, crashed) before it finished; found at a later start.
    Interrupted,
    /// Stopped by a signal between two steps; what it did is recorded, the rest is left for the
    /// next run.
    Stopped,
}

impl RunStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Stopped => "stopped",
        }
    }
}

impl FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "interrupted" => Self::Interrupted,
            "stopped" => Self::Stopped,
            other => return Err(format!("unknown run status {other:?}")),
        })
    }
}

/// One stored run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct RunRecord {
    /// Run id.
    pub id: i64,
    /// Window start.
    pub window_start: DateTime<Utc>,
    /// Window end.
    pub window_end: DateTime<Utc>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Status.
    pub status: RunStatus,
    /// Whether it was a dry run.
    pub dry_run: bool,
    /// A short JSON summary stored at the end.
    pub summary: Option<String>,
    /// The error, when it failed.
    pub error: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// What the backends share.

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn now() -> String {
    ts(Utc::now())
}

pub(crate) struct RawIntent {
    key: String,
    kind: String,
    payload: String,
    state: String,
    result: Option<String>,
    error: Option<String>,
    attempts: i64,
    run_id: Option<i64>,
    created_at: String,
    updated_at: String,
}

pub(crate) struct RawRun {
    id: i64,
    window_start: String,
    window_end: String,
    started_at: String,
    finished_at: Option<String>,
    status: String,
    dry_run: bool,
    summary: Option<String>,
    error: Option<String>,
    #[allow(dead_code)]
    owner: Option<String>,
}

pub(crate) enum RawBegin {
    New,
    Done(Option<String>),
    Unfinished {
        state: String,
        payload: String,
        error: Option<String>,
    },
    /// Intended by another run that is alive (per the database); its owner.
    Held {
        owner: Option<String>,
    },
}

pub(crate) struct Orphan {
    intent: RawIntent,
    owner: Option<String>,
    alive: bool,
}

pub(crate) struct RunningRun {
    id: i64,
    owner: Option<String>,
    alive: bool,
}

pub(crate) struct LeaseRow {
    name: String,
    owner: String,
    expires_at: String,
}

pub(crate) enum IntentFilter<'a> {
    Key(&'a str),
    KindState(Option<&'static str>, Option<&'static str>),
    Unfinished,
    UnfinishedForRun(i64),
}

/// The queries each backend implements, in its own SQL.
pub(crate) trait Backend: Send + Sync {
    fn label(&self) -> &str;
    fn kind(&self) -> &'static str;
    /// Whether a run takes the store-wide `runner` lease (one runner per store).
    fn store_wide_runner_lock(&self) -> bool;
    fn schema_version(&self) -> Result<u32>;
    /// Inserts the run and its lease `run:<id>` in one transaction.
    fn begin_run(
        &self,
        owner: &str,
        ws: &str,
        we: &str,
        dry_run: bool,
        ttl: Duration,
    ) -> Result<i64>;
    fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<()>;
    fn running_runs(&self) -> Result<Vec<RunningRun>>;
    /// Marks runs interrupted and deletes their run leases (a stalled owner that comes back
    /// finds its lease gone and stops).
    fn interrupt_runs(&self, ids: &[i64]) -> Result<()>;
    fn recent_runs(&self, limit: usize) -> Result<Vec<RawRun>>;
    fn mark_window_done(&self, run_id: i64, ws: &str, we: &str) -> Result<()>;
    fn last_window_done(&self) -> Result<Option<(String, String)>>;
    fn windows_done(&self) -> Result<u64>;
    fn begin_intent(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_id: Option<i64>,
    ) -> Result<RawBegin>;
    fn complete_intent(&self, key: &str, result: Option<&str>) -> Result<usize>;
    fn fail_intent(&self, key: &str, error: &str) -> Result<usize>;
    fn query_intents(&self, filter: IntentFilter<'_>) -> Result<Vec<RawIntent>>;
    fn orphan_candidates(&self, kind: &str, run_id: Option<i64>) -> Result<Vec<Orphan>>;
    fn claim_intent(&self, key: &str, from: Option<i64>, to: i64) -> Result<bool>;
    fn checkpoint_get(&self, name: &str) -> Result<Option<String>>;
    fn checkpoint_set(&self, name: &str, value: &str, only_forward: bool) -> Result<()>;
    /// Takes (or re-takes) the lease; `Some(holder)` when another owner holds it unexpired.
    fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<String>>;
    fn renew_leases(&self, owner: &str, ttl: Duration) -> Result<u64>;
    fn release_lease(&self, name: &str, owner: &str) -> Result<()>;
    fn release_owner(&self, owner: &str) -> Result<()>;
    fn leases(&self) -> Result<Vec<LeaseRow>>;
    fn siem_sent_since(&self, source: &str, since_ms: i64) -> Result<HashSet<String>>;
    fn siem_commit_batch(
        &self,
        source: &str,
        checkpoint_name: &str,
        ids: &[(String, i64)],
        checkpoint: Option<&str>,
        sent_ms: i64,
        now_text: &str,
    ) -> Result<()>;
    fn siem_prune(&self, source: &str, before_ms: i64) -> Result<usize>;
    fn siem_remembered(&self, source: &str) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------------
// Owners: who holds a lease, and whether it is still there.

/// Owners of stores open in this process (so a lease of a dropped store counts as gone).
static LIVE_OWNERS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
        .replace('/', "_")
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22): with the
/// pid, it tells a live process from a new one that reused the pid.
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let mut fields = after.split_whitespace();
    // A zombie (killed, not yet reaped) is gone too.
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18).map(str::to_owned)
}

fn new_owner() -> String {
    let pid = std::process::id();
    format!(
        "{}/{pid}/{}/{:016x}",
        hostname(),
        process_start(pid).unwrap_or_else(|| "0".into()),
        fastrand::u64(..)
    )
}

/// Whether `owner` is known to be gone: on this host, its process has exited (or, in this
/// process, its store was dropped). Owners on other hosts are gone only when their leases
/// expire.
fn owner_gone_locally(owner: &str) -> bool {
    let mut parts = owner.splitn(4, '/');
    let (Some(host), Some(pid), Some(start)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if host != hostname() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if pid == std::process::id() {
        return !LIVE_OWNERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(owner);
    }
    process_start(pid).is_none_or(|s| s != start)
}

// ---------------------------------------------------------------------------------------------
// The store.

struct Inner {
    backend: Box<dyn Backend>,
    owner: String,
    ttl: Duration,
    lock_timeout: Mutex<Duration>,
    lease_wait: Mutex<Duration>,
    /// Leases held: name → the run that took it (none for store-wide ones).
    held: Mutex<BTreeMap<String, Option<i64>>>,
    /// Runs begun by this store and not finished.
    active: Mutex<BTreeSet<i64>>,
    lost: Mutex<Option<String>>,
    writable: bool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.writable {
            let held = !self
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if held {
                let _ = self.backend.release_owner(&self.owner);
            }
        }
        LIVE_OWNERS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.owner);
    }
}

/// The state store (SQLite or PostgreSQL). Cheap to share behind an `Arc`; every call is a
/// short query.
pub struct StateStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("backend", &self.inner.backend.kind())
            .field("path", &self.inner.backend.label())
            .finish_non_exhaustive()
    }
}

/// Organizations a runner leased for its side effects, and those another runner holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OrgLeases {
    /// Leased by this run (its side effects may go ahead).
    pub leased: BTreeSet<String>,
    /// Held by another live runner: `(organization, holder)`.
    pub skipped: Vec<(String, String)>,
}

/// The lease name of an organization (`-` for side effects that name none).
fn org_lease(org: &str) -> String {
    format!("org:{org}")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn heartbeat(inner: Weak<Inner>, every: Duration) {
    let tick = Duration::from_millis(200).min(every);
    let mut last = Instant::now();
    loop {
        std::thread::sleep(tick);
        let Some(inner) = inner.upgrade() else { return };
        if last.elapsed() < every {
            continue;
        }
        last = Instant::now();
        let held = lock(&inner.held);
        if held.is_empty() {
            continue;
        }
        match inner.backend.renew_leases(&inner.owner, inner.ttl) {
            Ok(n) if n >= held.len() as u64 => {}
            Ok(n) => {
                let names: Vec<&String> = held.keys().collect();
                warn!(renewed = n, held = held.len(), leases = ?names, "a lease was taken over by another runner");
                *lock(&inner.lost) = Some(
                    names
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                );
            }
            // A failed renewal is retried at the next tick; the lease outlives a few misses.
            Err(e) => warn!(error = %e, "renewing the state leases failed"),
        }
    }
}

impl StateStore {
    fn from_backend(backend: Box<dyn Backend>, ttl: Duration, writable: bool) -> Self {
        let owner = new_owner();
        lock(&LIVE_OWNERS).insert(owner.clone());
        let inner = Arc::new(Inner {
            backend,
            owner,
            ttl,
            lock_timeout: Mutex::new(DEFAULT_LOCK_TIMEOUT),
            lease_wait: Mutex::new(Duration::ZERO),
            held: Mutex::new(BTreeMap::new()),
            active: Mutex::new(BTreeSet::new()),
            lost: Mutex::new(None),
            writable,
        });
        if writable {
            let weak = Arc::downgrade(&inner);
            let every = ttl / 3;
            let _ = std::thread::Builder::new()
                .name("state-leases".into())
                .spawn(move || heartbeat(weak, every));
        }
        Self { inner }
    }

    /// Opens (creating if needed) the SQLite database at `path`, in WAL mode, migrating its
    /// schema. The parent directory is created if missing.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_ttl(path, DEFAULT_LEASE_TTL)
    }

    fn open_with_ttl(path: &Path, ttl: Duration) -> Result<Self> {
        Ok(Self::from_backend(
            Box::new(sqlite::Sqlite::open(path)?),
            ttl,
            true,
        ))
    }

    /// Opens an existing SQLite database without writing to it (dry runs): the file is opened
    /// read-only and not migrated. A missing file, or one with another schema version, gives
    /// an empty in-memory store instead, so a dry run still works before the first real run.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        match sqlite::Sqlite::open_read_only(path)? {
            Some(s) => Ok(Self::from_backend(Box::new(s), DEFAULT_LEASE_TTL, false)),
            None => Self::open_in_memory(),
        }
    }

    /// An in-memory SQLite store (tests, dry runs that must leave no file).
    pub fn open_in_memory() -> Result<Self> {
        Ok(Self::from_backend(
            Box::new(sqlite::Sqlite::open_in_memory()?),
            DEFAULT_LEASE_TTL,
            true,
        ))
    }

    /// Opens a PostgreSQL store at `url` (`postgres://user@host:port/db`), migrating its
    /// schema. `password` replaces the URL's, if any. Leases live `lease_ttl`.
    pub fn open_postgres(
        url: &str,
        password: Option<SecretString>,
        lease_ttl: Duration,
    ) -> Result<Self> {
        let target = postgres::PgTarget::parse(url, password).map_err(|message| {
            StateError::Unavailable {
                path: "[state] url".into(),
                message,
            }
        })?;
        Ok(Self::from_backend(
            Box::new(postgres::Postgres::open(target, true)?),
            lease_ttl,
            true,
        ))
    }

    /// The store a configuration names (`[state]`): SQLite at `path`, or PostgreSQL at `url`
    /// (password from `password_env`, else the URL, else `PGPASSWORD`).
    pub fn open_config(config: &Config, env: &dyn Env) -> Result<Self> {
        Self::open_config_with(config, env, false)
    }

    /// Like [`StateStore::open_config`] for readers that must write nothing (dry runs,
    /// reports): SQLite as [`StateStore::open_read_only`]; PostgreSQL in read-only
    /// transactions, not migrated.
    pub fn open_config_read_only(config: &Config, env: &dyn Env) -> Result<Self> {
        let store = Self::open_config_with(config, env, true)?;
        // As with a missing SQLite file: a database no run has set up yet (or of another
        // version) reads as empty, so a dry run works before the first real run.
        if store.backend_kind() == "postgresql"
            && store.schema_version().ok() != Some(SCHEMA_VERSION)
        {
            return Self::open_in_memory();
        }
        Ok(store)
    }

    fn open_config_with(config: &Config, env: &dyn Env, read_only: bool) -> Result<Self> {
        let state = config.state();
        let store = match &state.backend {
            StateBackendConfig::Sqlite => {
                if read_only {
                    Self::open_read_only(&config.state_path())?
                } else {
                    Self::open_with_ttl(&config.state_path(), state.lease_ttl)?
                }
            }
            StateBackendConfig::Postgres { url, password_env } => {
                let explicit = match password_env {
                    Some(name) => Some(SecretString::from(
                        env.var(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                            StateError::Unavailable {
                                path: "[state] url".into(),
                                message: format!(
                                "state.password_env: the environment variable {name} is not set"
                            ),
                            }
                        })?,
                    )),
                    None => None,
                };
                let mut target =
                    postgres::PgTarget::parse(url.expose(), explicit).map_err(|message| {
                        StateError::Unavailable {
                            path: "[state] url".into(),
                            message,
                        }
                    })?;
                if !target.has_password() {
                    if let Some(p) = env.var("PGPASSWORD").filter(|v| !v.is_empty()) {
                        target =
                            postgres::PgTarget::parse(url.expose(), Some(SecretString::from(p)))
                                .map_err(|message| StateError::Unavailable {
                                    path: "[state] url".into(),
                                    message,
                                })?;
                    }
                }
                if read_only {
                    Self::from_backend(
                        Box::new(postgres::Postgres::open(target.read_only(), false)?),
                        state.lease_ttl,
                        false,
                    )
                } else {
                    Self::from_backend(
                        Box::new(postgres::Postgres::open(target, true)?),
                        state.lease_ttl,
                        true,
                    )
                }
            }
        };
        store.set_lease_wait(state.lease_wait);
        store.set_lock_timeout(state.lock_timeout);
        Ok(store)
    }

    /// The file this store writes (`:memory:` for an in-memory store), or the PostgreSQL
    /// database as `postgres://user@host:port/db`.
    pub fn path(&self) -> &str {
        self.inner.backend.label()
    }

    /// `sqlite` or `postgresql`.
    pub fn backend_kind(&self) -> &'static str {
        self.inner.backend.kind()
    }

    /// This store's owner id (`host/pid/start/nonce`), as written in leases and runs.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// How long a run waits for the state another live run holds (the SQLite runner lock, an
    /// intent another run is performing) before [`StateError::Busy`].
    pub fn set_lock_timeout(&self, timeout: Duration) {
        *lock(&self.inner.lock_timeout) = timeout;
    }

    /// How long [`StateStore::lease_organizations`] waits for an organization another runner
    /// holds (zero: skip it at once).
    pub fn set_lease_wait(&self, wait: Duration) {
        *lock(&self.inner.lease_wait) = wait;
    }

    /// The schema version in the database.
    pub fn schema_version(&self) -> Result<u32> {
        self.inner.backend.schema_version()
    }

    fn err_busy(&self, what: String, holder: String, waited: Duration) -> StateError {
        StateError::Busy {
            path: self.path().to_owned(),
            what,
            holder,
            waited,
        }
    }

    fn check_lost(&self) -> Result<()> {
        match lock(&self.inner.lost).clone() {
            Some(what) => Err(StateError::LeaseLost {
                path: self.path().to_owned(),
                what,
            }),
            None => Ok(()),
        }
    }

    /// Takes lease `name`, waiting up to `wait` for another owner's; `Err(holder)` if it is
    /// still held then. A holder known to be gone (its process exited) is evicted at once.
    fn acquire(&self, name: &str, wait: Duration, run: Option<i64>) -> Result<Result<(), String>> {
        let started = Instant::now();
        let mut logged = false;
        loop {
            match self
                .inner
                .backend
                .try_lease(name, &self.inner.owner, self.inner.ttl)?
            {
                None => {
                    lock(&self.inner.held).insert(name.to_owned(), run);
                    return Ok(Ok(()));
                }
                Some(holder) if owner_gone_locally(&holder) => {
                    info!(lease = name, holder = %holder, "the lease's holder is gone; taking over");
                    self.inner.backend.release_owner(&holder)?;
                }
                Some(holder) => {
                    let waited = started.elapsed();
                    if waited >= wait {
                        return Ok(Err(holder));
                    }
                    if !logged {
                        info!(lease = name, holder = %holder, wait = ?wait, "another run holds the lease; waiting");
                        logged = true;
                    }
                    std::thread::sleep((wait - waited).min(Duration::from_millis(250)));
                }
            }
        }
    }

    fn release(&self, name: &str) {
        if lock(&self.inner.held).remove(name).is_some() {
            if let Err(e) = self.inner.backend.release_lease(name, &self.inner.owner) {
                warn!(lease = name, error = %e, "releasing a lease failed; it expires on its own");
            }
        }
    }

    /// Marks `running` runs whose owner is gone as interrupted (and frees their leases).
    fn reap_dead_runs(&self) -> Result<()> {
        let mine = lock(&self.inner.active).clone();
        let mut dead = Vec::new();
        for run in self.inner.backend.running_runs()? {
            if mine.contains(&run.id) {
                continue;
            }
            let gone = run.owner.as_deref().is_some_and(owner_gone_locally);
            if !run.alive || gone || run.owner.is_none() {
                if let (true, Some(owner)) = (run.alive, &run.owner) {
                    self.inner.backend.release_owner(owner)?;
                }
                dead.push(run.id);
            }
        }
        if !dead.is_empty() {
            warn!(runs = ?dead, "runs left running by a stopped process are marked interrupted");
            self.inner.backend.interrupt_runs(&dead)?;
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Runs and windows

    /// Records the start of a run over `[window_start, window_end)`.
    ///
    /// With SQLite it first takes the store-wide runner lease, waiting up to the lock timeout
    /// for another run ([`StateError::Busy`] after). Runs left `running` by a process that is
    /// gone are marked interrupted. The run holds the lease `run:<id>` until
    /// [`StateStore::finish_run`].
    pub fn begin_run(
        &self,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<i64> {
        self.check_lost()?;
        // A run of this store that never finished (an error cut it short) is over by now:
        // runs of one store are sequential.
        let stale: Vec<i64> = std::mem::take(&mut *lock(&self.inner.active))
            .into_iter()
            .collect();
        for id in &stale {
            self.release(&format!("run:{id}"));
        }
        if !stale.is_empty() {
            self.inner.backend.interrupt_runs(&stale)?;
        }
        if self.inner.backend.store_wide_runner_lock() {
            let wait = *lock(&self.inner.lock_timeout);
            if let Err(holder) = self.acquire("runner", wait, None)? {
                return Err(self.err_busy("the runner lock".into(), holder, wait));
            }
        }
        self.reap_dead_runs()?;
        let id = self.inner.backend.begin_run(
            &self.inner.owner,
            &ts(window_start),
            &ts(window_end),
            dry_run,
            self.inner.ttl,
        )?;
        lock(&self.inner.active).insert(id);
        lock(&self.inner.held).insert(format!("run:{id}"), Some(id));
        Ok(id)
    }

    /// Records how a run ended, with a short summary and the error, if any, and releases the
    /// run's leases.
    pub fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        let out = self
            .inner
            .backend
            .finish_run(run_id, status.as_str(), summary, error);
        self.abandon_run(run_id);
        out
    }

    /// Lets go of a run without recording an end, as if its process had died: its leases are
    /// released and its row stays `running` until the next start marks it interrupted (the
    /// workflow's crash-simulating test hook).
    pub fn abandon_run(&self, run_id: i64) {
        let names: Vec<String> = lock(&self.inner.held)
            .iter()
            .filter(|(_, r)| **r == Some(run_id))
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            self.release(&n);
        }
        let none_left = {
            let mut active = lock(&self.inner.active);
            active.remove(&run_id);
            active.is_empty()
        };
        if none_left {
            self.release("runner");
        }
    }

    /// The most recent runs, newest first.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        self.inner
            .backend
            .recent_runs(limit)?
            .into_iter()
            .map(|r| {
                Ok(RunRecord {
                    id: r.id,
                    window_start: self.parse_ts("runs.window_start", &r.window_start)?,
                    window_end: self.parse_ts("runs.window_end", &r.window_end)?,
                    started_at: self.parse_ts("runs.started_at", &r.started_at)?,
                    finished_at: r
                        .finished_at
                        .map(|f| self.parse_ts("runs.finished_at", &f))
                        .transpose()?,
                    status: r
                        .status
                        .parse()
                        .map_err(|m| self.corrupt("runs.status", m))?,
                    dry_run: r.dry_run,
                    summary: r.summary,
                    error: r.error,
                })
            })
            .collect()
    }

    /// Records that every side effect of the window `[start, end)` is done. Call only after
    /// every intent the run began is complete.
    pub fn mark_window_done(
        &self,
        run_id: i64,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
    ) -> Result<()> {
        self.inner
            .backend
            .mark_window_done(run_id, &ts(window_start), &ts(window_end))
    }

    /// The latest processed window `(start, end)`, by end time.
    pub fn last_window_done(&self) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        self.inner
            .backend
            .last_window_done()?
            .map(|(s, e)| {
                Ok((
                    self.parse_ts("windows.window_start", &s)?,
                    self.parse_ts("windows.window_end", &e)?,
                ))
            })
            .transpose()
    }

    /// How many windows have been processed.
    pub fn windows_done(&self) -> Result<u64> {
        self.inner.backend.windows_done()
    }

    // ---------------------------------------------------------------------------------------
    // Leases of organizations

    /// Leases the organizations a run is about to act on (`-` stands for side effects that
    /// name no organization). With SQLite the runner lock already covers the whole store, so
    /// every organization is leased. With PostgreSQL each one another live runner holds is
    /// waited for up to the lease wait ([`StateStore::set_lease_wait`]), then skipped. The
    /// leases are released by [`StateStore::finish_run`] for `run_id`.
    pub fn lease_organizations<'a>(
        &self,
        run_id: i64,
        organizations: impl IntoIterator<Item = &'a str>,
    ) -> Result<OrgLeases> {
        self.check_lost()?;
        let mut out = OrgLeases::default();
        let wait = *lock(&self.inner.lease_wait);
        for org in organizations.into_iter().collect::<BTreeSet<_>>() {
            if self.inner.backend.store_wide_runner_lock() {
                out.leased.insert(org.to_owned());
                continue;
            }
            match self.acquire(&org_lease(org), wait, Some(run_id))? {
                Ok(()) => {
                    out.leased.insert(org.to_owned());
                }
                Err(holder) => {
                    info!(organization = org, holder = %holder, "another runner holds this organization; its side effects are left to it");
                    out.skipped.push((org.to_owned(), holder));
                }
            }
        }
        Ok(out)
    }

    /// Leases the organizations `decisions` would act on ([`StateStore::lease_organizations`])
    /// and drops the policy changes, tickets and notifications of those another runner holds.
    /// Returns the organizations left to the other runner.
    pub fn lease_decisions(
        &self,
        run_id: i64,
        decisions: &mut policy_engine::Decisions,
    ) -> Result<Vec<String>> {
        use threatlocker_api::OrganizationId;
        let name = |o: Option<&OrganizationId>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
        let orgs: BTreeSet<String> = decisions
            .policy_changes
            .iter()
            .map(|c| name(c.organization_id.as_ref()))
            .chain(
                decisions
                    .tickets
                    .iter()
                    .map(|t| name(t.organization_id.as_ref())),
            )
            .chain(
                decisions
                    .notifications
                    .iter()
                    .map(|n| name(n.organization_id.as_ref())),
            )
            .collect();
        let leases = self.lease_organizations(run_id, orgs.iter().map(String::as_str))?;
        if leases.skipped.is_empty() {
            return Ok(Vec::new());
        }
        let held = |o: Option<&OrganizationId>| leases.leased.contains(&name(o));
        decisions
            .policy_changes
            .retain(|c| held(c.organization_id.as_ref()));
        decisions
            .tickets
            .retain(|t| held(t.organization_id.as_ref()));
        decisions
            .notifications
            .retain(|n| held(n.organization_id.as_ref()));
        Ok(leases.skipped.into_iter().map(|(o, _)| o).collect())
    }

    // ---------------------------------------------------------------------------------------
    // Intents

    /// Records the intent to perform a side effect, unless it is already known.
    ///
    /// A new key is stored as intended with `payload` and [`IntentStatus::New`] is returned.
    /// A done key returns [`IntentStatus::AlreadyDone`] with its result. An intended or failed
    /// key returns [`IntentStatus::Unfinished`] with the stored payload (its attempt counter is
    /// incremented and its run id updated); the caller reconciles, then completes it. A key
    /// intended by another run that is still alive is waited for (up to the lock timeout,
    /// then [`StateError::Busy`]): it is never reconciled while its run may be performing it.
    pub fn begin_intent(
        &self,
        kind: IntentKind,
        key: &str,
        payload: &serde_json::Value,
        run_id: Option<i64>,
    ) -> Result<IntentStatus> {
        self.check_lost()?;
        let started = Instant::now();
        let payload_text = payload.to_string();
        loop {
            match self
                .inner
                .backend
                .begin_intent(kind.as_str(), key, &payload_text, run_id)?
            {
                RawBegin::New => return Ok(IntentStatus::New),
                RawBegin::Done(result) => return Ok(IntentStatus::AlreadyDone(result)),
                RawBegin::Unfinished {
                    state,
                    payload,
                    error,
                } => {
                    let payload = serde_json::from_str(&payload)
                        .map_err(|e| self.corrupt("intents.payload", e.to_string()))?;
                    return Ok(IntentStatus::Unfinished {
                        payload,
                        last_error: if state == "failed" { error } else { None },
                    });
                }
                RawBegin::Held { owner } => {
                    let holder = owner.unwrap_or_default();
                    if holder != self.inner.owner && owner_gone_locally(&holder) {
                        self.inner.backend.release_owner(&holder)?;
                        continue;
                    }
                    let wait = *lock(&self.inner.lock_timeout);
                    if started.elapsed() >= wait {
                        return Err(self.err_busy(format!("intent {key}"), holder, wait));
                    }
                    debug!(key, holder = %holder, "another live run is performing this side effect; waiting");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Records that the side effect is done, with its result (ticket id, ...).
    pub fn complete_intent(&self, key: &str, result: Option<&str>) -> Result<()> {
        if self.inner.backend.complete_intent(key, result)? == 0 {
            return Err(StateError::UnknownIntent(key.to_owned()));
        }
        Ok(())
    }

    /// Records that the last attempt failed. The next `begin_intent` returns
    /// [`IntentStatus::Unfinished`] with this error, so the side effect is reconciled and retried.
    pub fn fail_intent(&self, key: &str, error: &str) -> Result<()> {
        if self.inner.backend.fail_intent(key, error)? == 0 && self.intent(key)?.is_none() {
            return Err(StateError::UnknownIntent(key.to_owned()));
        }
        Ok(())
    }

    /// One intent by key.
    pub fn intent(&self, key: &str) -> Result<Option<IntentRecord>> {
        let mut v = self.records(IntentFilter::Key(key))?;
        Ok(v.pop())
    }

    /// Intents, optionally filtered by kind and state, oldest first.
    pub fn intents(
        &self,
        kind: Option<IntentKind>,
        state: Option<IntentState>,
    ) -> Result<Vec<IntentRecord>> {
        self.records(IntentFilter::KindState(
            kind.map(IntentKind::as_str),
            state.map(IntentState::as_str),
        ))
    }

    /// Intents not done (intended or failed), oldest first.
    pub fn unfinished_intents(&self) -> Result<Vec<IntentRecord>> {
        self.records(IntentFilter::Unfinished)
    }

    /// Intents not done that run `run_id` touched (a window is processed only when this is
    /// empty).
    pub fn unfinished_intents_for_run(&self, run_id: i64) -> Result<Vec<IntentRecord>> {
        self.records(IntentFilter::UnfinishedForRun(run_id))
    }

    /// Unfinished intents of `kind` left by runs that are no longer alive (killed, failed,
    /// finished), claimed for `run_id` so that no other runner reconciles them at the same
    /// time. Intents of a live run are left to it. Without a run id, every unfinished intent
    /// of `kind` touched by no run, or by a run that is gone, is returned unclaimed.
    pub fn claim_orphaned_intents(
        &self,
        kind: IntentKind,
        run_id: Option<i64>,
    ) -> Result<Vec<IntentRecord>> {
        self.check_lost()?;
        let mut out = Vec::new();
        for orphan in self
            .inner
            .backend
            .orphan_candidates(kind.as_str(), run_id)?
        {
            if orphan.alive {
                match orphan.owner.as_deref() {
                    Some(o) if o != self.inner.owner && owner_gone_locally(o) => {
                        self.inner.backend.release_owner(o)?;
                    }
                    _ => {
                        debug!(key = %orphan.intent.key, "left to the live run that began it");
                        continue;
                    }
                }
            }
            let mut rec = self.record(orphan.intent)?;
            if let Some(id) = run_id {
                if !self.inner.backend.claim_intent(&rec.key, rec.run_id, id)? {
                    continue;
                }
                rec.run_id = Some(id);
            }
            out.push(rec);
        }
        Ok(out)
    }

    fn records(&self, filter: IntentFilter<'_>) -> Result<Vec<IntentRecord>> {
        self.inner
            .backend
            .query_intents(filter)?
            .into_iter()
            .map(|r| self.record(r))
            .collect()
    }

    fn record(&self, r: RawIntent) -> Result<IntentRecord> {
        Ok(IntentRecord {
            key: r.key,
            kind: r
                .kind
                .parse()
                .map_err(|m| self.corrupt("intents.kind", m))?,
            payload: serde_json::from_str(&r.payload)
                .map_err(|e| self.corrupt("intents.payload", e.to_string()))?,
            state: r
                .state
                .parse()
                .map_err(|m| self.corrupt("intents.state", m))?,
            result: r.result,
            error: r.error,
            attempts: u32::try_from(r.attempts).unwrap_or(u32::MAX),
            run_id: r.run_id,
            created_at: self.parse_ts("intents.created_at", &r.created_at)?,
            updated_at: self.parse_ts("intents.updated_at", &r.updated_at)?,
        })
    }

    // ---------------------------------------------------------------------------------------
    // Checkpoints

    /// The value of checkpoint `name`, if set.
    pub fn checkpoint_get(&self, name: &str) -> Result<Option<String>> {
        self.inner.backend.checkpoint_get(name)
    }

    /// Sets checkpoint `name` to `value` (durably, before returning).
    pub fn checkpoint_set(&self, name: &str, value: &str) -> Result<()> {
        self.inner.backend.checkpoint_set(name, value, false)
    }

    pub(crate) fn backend(&self) -> &dyn Backend {
        self.inner.backend.as_ref()
    }

    fn parse_ts(&self, what: &'static str, s: &str) -> Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| self.corrupt(what, e.to_string()))
    }

    fn corrupt(&self, what: &'static str, message: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path().to_owned(),
            what,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Doctor

/// One line of the database check (`threatlocker-monitor doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateCheck {
    /// What was checked.
    pub name: String,
    /// `Ok(detail)`, or `Err((problem, fix))`.
    pub outcome: std::result::Result<String, (String, String)>,
}

fn check_ok(name: &str, detail: impl Into<String>) -> StateCheck {
    StateCheck {
        name: name.into(),
        outcome: Ok(detail.into()),
    }
}

fn check_failed(name: &str, problem: impl Into<String>, fix: impl Into<String>) -> StateCheck {
    StateCheck {
        name: name.into(),
        outcome: Err((problem.into(), fix.into())),
    }
}

/// Checks the configured state database without changing it: reachable, its schema version,
/// and its lease table (who holds what, and until when). A SQLite file that does not exist
/// yet is fine (the first run creates it).
pub fn doctor_checks(config: &Config, env: &dyn Env) -> Vec<StateCheck> {
    let mut out = Vec::new();
    let is_pg = matches!(config.state().backend, StateBackendConfig::Postgres { .. });
    if !is_pg && !config.state_path().exists() {
        out.push(check_ok(
            "state database",
            format!(
                "{} does not exist yet; the first run creates it",
                config.state_path().display()
            ),
        ));
        return out;
    }
    let store = match StateStore::open_config_with(config, env, true) {
        Ok(s) => s,
        Err(e) => {
            out.push(check_failed(
                "state database",
                e.to_string(),
                if is_pg {
                    "check [state] url, the password (state.password_env or PGPASSWORD) and that the server is running"
                } else {
                    "check [state] path and the file's permissions"
                },
            ));
            return out;
        }
    };
    out.push(check_ok(
        "state database",
        format!("{} ({}) reachable", store.path(), store.backend_kind()),
    ));
    match store.schema_version() {
        Ok(v) if v == SCHEMA_VERSION => {
            out.push(check_ok("state schema", format!("version {v} (current)")))
        }
        Ok(v) if v < SCHEMA_VERSION => out.push(check_ok(
            "state schema",
            format!("version {v}; the next run migrates it to {SCHEMA_VERSION}"),
        )),
        Ok(v) => out.push(check_failed(
            "state schema",
            format!("version {v} is newer than this program's {SCHEMA_VERSION}"),
            "upgrade threatlocker-monitor on this host",
        )),
        Err(e) => out.push(check_failed(
            "state schema",
            e.to_string(),
            "the database may not be initialised: run once with write access",
        )),
    }
    if store.schema_version().is_ok_and(|v| v >= 2) {
        match store.backend().leases() {
            Ok(leases) => {
                let t = now();
                let live: Vec<String> = leases
                    .iter()
                    .filter(|l| l.expires_at > t)
                    .map(|l| format!("{} by {}", l.name, l.owner))
                    .collect();
                out.push(check_ok(
                    "state leases",
                    if live.is_empty() {
                        "lease table readable; no lease held".to_owned()
                    } else {
                        format!("lease table readable; held: {}", live.join(", "))
                    },
                ));
            }
            Err(e) => out.push(check_failed(
                "state leases",
                e.to_string(),
                "run once with write access so the lease table is created",
            )),
        }
    }
    out
}

/// Scratch PostgreSQL databases for tests: each test gets a fresh, uniquely named database,
/// dropped again when the handle is dropped.
///
/// The server is `TLM_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
/// When it cannot be reached, [`testing::TestDatabase::create`] panics under CI (`CI=true`) and
/// otherwise returns `None` after printing, once per process, that the PostgreSQL tests were
/// skipped and how to start a server.
pub mod testing {
    use std::io::Write;
    use std::sync::Once;

    /// The default server for tests.
    pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

    /// A scratch database on the test server.
    #[derive(Debug)]
    pub struct TestDatabase {
        server: String,
        name: String,
        url: String,
    }

    fn server_url() -> String {
        std::env::var("TLM_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
    }

    // The synchronous client panics inside a tokio runtime: admin statements run on a thread.
    fn admin(server: String, sql: String) -> Result<(), String> {
        std::thread::spawn(move || {
            let mut c = ::postgres::Client::connect(&server, ::postgres::NoTls)
                .map_err(|e| crate::errors::chain(&e))?;
            c.batch_execute(&sql).map_err(|e| crate::errors::chain(&e))
        })
        .join()
        .unwrap_or_else(|_| Err("the admin thread panicked".into()))
    }

    impl TestDatabase {
        /// Creates a fresh database, or `None` (printed) when no server is reachable outside
        /// CI.
        pub fn create() -> Option<Self> {
            let server = server_url();
            let name = format!("tlm_test_{}_{:x}", std::process::id(), fastrand::u64(..));
            match admin(server.clone(), format!("CREATE DATABASE {name}")) {
                Ok(()) => {
                    let url = match server.rsplit_once('/') {
                        Some((base, _)) => format!("{base}/{name}"),
                        None => server.clone(),
                    };
                    Some(Self { server, name, url })
                }
                Err(e) => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("PostgreSQL at {server} is required under CI: {e}");
                    }
                    static SKIPPED: Once = Once::new();
                    SKIPPED.call_once(|| {
                        let _ = writeln!(
                            std::io::stderr(),
                            "PostgreSQL tests skipped: no server at {server} ({e}); start one with `pg_ctlcluster 15 main start`"
                        );
                    });
                    None
                }
            }
        }

        /// The database's URL.
        pub fn url(&self) -> &str {
            &self.url
        }

        /// The database's name.
        pub fn name(&self) -> &str {
            &self.name
        }

        /// Empties the database (every table gone), as if the state were lost.
        pub fn wipe(&self) {
            admin(
                self.url.clone(),
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;".into(),
            )
            .expect("wiping the test database");
        }
    }

    impl Drop for TestDatabase {
        fn drop(&mut self) {
            let _ = admin(
                self.server.clone(),
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            );
        }
    }
}

/// A unique path for a scratch state file under the system temp directory (used by `demo` and
/// tests). The file is not created.
pub fn scratch_path(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("{prefix}-{}-{nanos}-{n}.db", std::process::id()))
}

/// Removes the SQLite database at `path` and its `-wal` and `-shm` files, ignoring failures
/// such as a missing file (the clean-up of a [`scratch_path`] state file).
pub fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;
    use serde_json::json;

    fn temp_store() -> (StateStore, PathBuf) {
        let path = scratch_path("state-test");
        (StateStore::open(&path).unwrap(), path)
    }

    #[test]
    fn owners_are_gone_when_their_process_or_store_is() {
        let s = StateStore::open_in_memory().unwrap();
        assert!(!owner_gone_locally(s.owner()), "this store is alive");
        let owner = s.owner().to_owned();
        drop(s);
        assert!(owner_gone_locally(&owner), "its store was dropped");
        let host = hostname();
        // A pid no process has (beyond pid_max), and a live pid with another start time.
        assert!(owner_gone_locally(&format!("{host}/4194304999/1/0")));
        assert!(owner_gone_locally(&format!("{host}/1/not-its-start/0")));
        // Another host's owner is gone only when its lease expires.
        assert!(!owner_gone_locally("another-host/1/1/0"));
        assert!(!owner_gone_locally("garbage"));
    }

    #[test]
    fn intent_lifecycle_new_done_already_done() {
        let s = StateStore::open_in_memory().unwrap();
        let p = json!({"summary": "x"});
        assert_eq!(
            s.begin_intent(IntentKind::Ticket, "tl:block:1", &p, None)
                .unwrap(),
            IntentStatus::New
        );
        s.complete_intent("tl:block:1", Some("SEC-1")).unwrap();
        assert_eq!(
            s.begin_intent(IntentKind::Ticket, "tl:block:1", &json!({}), None)
                .unwrap(),
            IntentStatus::AlreadyDone(Some("SEC-1".into()))
        );
        let rec = s.intent("tl:block:1").unwrap().unwrap();
        assert_eq!(rec.state, IntentState::Done);
        assert_eq!(rec.kind, IntentKind::Ticket);
        assert_eq!(rec.payload, p);
        assert_eq!(rec.attempts, 1);
    }

    #[test]
    fn unfinished_and_failed_intents_come_back_with_their_payload() {
        let s = StateStore::open_in_memory().unwrap();
        let p = json!({"request": "abc"});
        s.begin_intent(IntentKind::Permit, "permit:abc", &p, Some(1))
            .unwrap();
        // The process "dies" here: nothing completed.
        assert_eq!(
            s.begin_intent(
                IntentKind::Permit,
                "permit:abc",
                &json!({"other": 1}),
                Some(2)
            )
            .unwrap(),
            IntentStatus::Unfinished {
                payload: p.clone(),
                last_error: None
            }
        );
        s.fail_intent("permit:abc", "HTTP 503").unwrap();
        assert_eq!(
            s.begin_intent(IntentKind::Permit, "permit:abc", &json!({}), Some(3))
                .unwrap(),
            IntentStatus::Unfinished {
                payload: p,
                last_error: Some("HTTP 503".into())
            }
        );
        let rec = s.intent("permit:abc").unwrap().unwrap();
        assert_eq!(rec.attempts, 3);
        assert_eq!(rec.run_id, Some(3));
        assert_eq!(s.unfinished_intents().unwrap().len(), 1);
        s.complete_intent("permit:abc", None).unwrap();
        assert!(s.unfinished_intents().unwrap().is_empty());
        // A late failure report cannot undo a completion.
        s.fail_intent("permit:abc", "late").unwrap();
        assert_eq!(
            s.intent("permit:abc").unwrap().unwrap().state,
            IntentState::Done
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let s = StateStore::open_in_memory().unwrap();
        assert!(matches!(
            s.complete_intent("nope", None),
            Err(StateError::UnknownIntent(_))
        ));
        assert!(matches!(
            s.fail_intent("nope", "x"),
            Err(StateError::UnknownIntent(_))
        ));
    }

    #[test]
    fn filters_by_kind_and_state() {
        let s = StateStore::open_in_memory().unwrap();
        s.begin_intent(IntentKind::Ticket, "t1", &json!(1), None)
            .unwrap();
        s.begin_intent(IntentKind::Ticket, "t2", &json!(2), None)
            .unwrap();
        s.begin_intent(IntentKind::Note, "n1", &json!(3), None)
            .unwrap();
        s.complete_intent("t1", Some("1")).unwrap();
        assert_eq!(s.intents(Some(IntentKind::Ticket), None).unwrap().len(), 2);
        assert_eq!(
            s.intents(Some(IntentKind::Ticket), Some(IntentState::Done))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.intents(None, Some(IntentState::Intended)).unwrap().len(),
            2
        );
    }

    #[test]
    fn survives_reopen_and_records_runs_windows_checkpoints() {
        let (s, path) = temp_store();
        let start = DateTime::parse_from_rfc3339("2026-05-13T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let end = DateTime::parse_from_rfc3339("2026-05-14T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let run = s.begin_run(start, end, false).unwrap();
        s.begin_intent(IntentKind::Ticket, "k", &json!({"a": 1}), Some(run))
            .unwrap();
        s.checkpoint_set("siem.action_log", "2026-05-14T12:00:00Z")
            .unwrap();
        s.checkpoint_set("siem.action_log", "2026-05-14T12:05:00Z")
            .unwrap();
        drop(s);

        let s = StateStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(matches!(
            s.begin_intent(IntentKind::Ticket, "k", &json!({}), None)
                .unwrap(),
            IntentStatus::Unfinished { .. }
        ));
        assert_eq!(
            s.checkpoint_get("siem.action_log").unwrap().as_deref(),
            Some("2026-05-14T12:05:00Z")
        );
        assert_eq!(s.checkpoint_get("missing").unwrap(), None);
        assert_eq!(s.last_window_done().unwrap(), None);
        s.mark_window_done(run, start, end).unwrap();
        s.finish_run(run, RunStatus::Succeeded, Some("{}"), None)
            .unwrap();
        assert_eq!(s.last_window_done().unwrap(), Some((start, end)));
        assert_eq!(s.windows_done().unwrap(), 1);
        let runs = s.recent_runs(5).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, RunStatus::Succeeded);
        assert_eq!(runs[0].window_end, end);
        let c = Connection::open(&path).unwrap();
        let mode: String = c
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        drop(s);
        remove_sqlite_files(&path);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let path = scratch_path("state-too-new");
        {
            let c = Connection::open(&path).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = StateStore::open(&path).unwrap_err();
        assert!(matches!(e, StateError::TooNew { found: 99, .. }), "{e}");
        remove_sqlite_files(&path);
    }

    #[test]
    fn read_only_open_sees_state_and_refuses_writes() {
        let (s, path) = temp_store();
        s.begin_intent(IntentKind::Ticket, "t", &json!(1), None)
            .unwrap();
        s.complete_intent("t", Some("42")).unwrap();
        let ro = StateStore::open_read_only(&path).unwrap();
        assert_eq!(
            ro.intent("t").unwrap().unwrap().result.as_deref(),
            Some("42")
        );
        assert!(ro
            .begin_intent(IntentKind::Ticket, "u", &json!(1), None)
            .is_err());
        drop((s, ro));
        remove_sqlite_files(&path);
        let missing = scratch_path("never-created");
        let ro = StateStore::open_read_only(&missing).unwrap();
        assert!(ro.intent("t").unwrap().is_none());
        assert!(!missing.exists());
    }

    #[test]
    fn two_handles_on_one_file_see_each_others_writes() {
        let (a, path) = temp_store();
        let b = StateStore::open(&path).unwrap();
        a.begin_intent(IntentKind::Notification, "n", &json!(null), None)
            .unwrap();
        a.complete_intent("n", Some("sent")).unwrap();
        assert_eq!(
            b.begin_intent(IntentKind::Notification, "n", &json!(null), None)
                .unwrap(),
            IntentStatus::AlreadyDone(Some("sent".into()))
        );
        drop((a, b));
        remove_sqlite_files(&path);
    }
}
