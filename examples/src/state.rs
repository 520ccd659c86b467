//! The embedded SQLite state store that makes side effects exactly-once across reruns and
//! crashes.
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
//! The database runs in WAL mode with `synchronous = NORMAL`: a committed intent survives a
//! killed process (the WAL is in the operating system's cache before the call returns). A power
//! cut may lose the last few commits; that is safe too, because nothing relies on the store
//! alone: a new or unfinished intent is always reconciled against the remote system (the PSA is
//! searched by external reference before a ticket is created; a permit reads the request's
//! status first). Several processes may share the file (a busy timeout serialises writers).
//! The schema is versioned with `PRAGMA user_version` and migrated forward on open.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Migrations, index `i` taking the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r"
    CREATE TABLE runs (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        window_start  TEXT NOT NULL,
        window_end    TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        status        TEXT NOT NULL,
        dry_run       INTEGER NOT NULL,
        summary       TEXT,
        error         TEXT
    );
    CREATE TABLE intents (
        key         TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        payload     TEXT NOT NULL,
        state       TEXT NOT NULL,
        result      TEXT,
        error       TEXT,
        attempts    INTEGER NOT NULL DEFAULT 1,
        run_id      INTEGER,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX intents_by_state ON intents(state, kind);
    CREATE TABLE windows (
        window_start  TEXT NOT NULL,
        window_end    TEXT NOT NULL,
        run_id        INTEGER NOT NULL,
        completed_at  TEXT NOT NULL,
        PRIMARY KEY (window_start, window_end)
    );
    CREATE TABLE checkpoints (
        name        TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    ",
];

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

/// The SQLite state store. Cheap to share behind an `Arc`; every call takes a short lock.
pub struct StateStore {
    conn: Mutex<Connection>,
    path: String,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn now() -> String {
    ts(Utc::now())
}

impl StateStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, migrating its schema.
    /// The parent directory is created if missing.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| StateError::Sqlite {
                    path: name.clone(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
            }
        }
        let conn = Connection::open(path).map_err(|source| StateError::Sqlite {
            path: name.clone(),
            source,
        })?;
        Self::init(conn, name, true)
    }

    /// Opens an existing database without writing to it (dry runs): the file is opened
    /// read-only and not migrated. A missing file, or one with another schema version, gives
    /// an empty in-memory store instead, so a dry run still works before the first real run.
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if !path.exists() {
            return Self::open_in_memory();
        }
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StateError::Sqlite {
            path: name.clone(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|source| StateError::Sqlite {
                path: name.clone(),
                source,
            })?;
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|source| StateError::Sqlite {
                path: name.clone(),
                source,
            })?;
        if version != SCHEMA_VERSION {
            return Self::open_in_memory();
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path: name,
        })
    }

    /// An in-memory store (tests, dry runs that must leave no file).
    pub fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| StateError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, ":memory:".into(), false)
    }

    fn init(conn: Connection, path: String, wal: bool) -> Result<Self> {
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        if wal {
            conn.pragma_update(None, "journal_mode", "WAL")
                .map_err(sql)?;
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        let store = Self {
            conn: Mutex::new(conn),
            path,
        };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are
        // atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn migrate(&self) -> Result<()> {
        let mut conn = self.lock();
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: self.path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(|e| self.err(e))?;
            tx.execute_batch(step).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// The file this store writes (`:memory:` for an in-memory store).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema version in the file.
    pub fn schema_version(&self) -> Result<u32> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    // ---------------------------------------------------------------------------------------
    // Runs and windows

    /// Records the start of a run over `[window_start, window_end)`.
    pub fn begin_run(
        &self,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<i64> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO runs (window_start, window_end, started_at, status, dry_run) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![ts(window_start), ts(window_end), now(), dry_run],
        )
        .map_err(|e| self.err(e))?;
        Ok(conn.last_insert_rowid())
    }

    /// Records how a run ended, with a short summary and the error, if any.
    pub fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        self.lock()
            .execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, summary = ?4, error = ?5 WHERE id = ?1",
                params![run_id, now(), status.as_str(), summary, error],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The most recent runs, newest first.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, window_start, window_end, started_at, finished_at, status, dry_run, summary, error
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, bool>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, ws, we, sa, fa, st, dry_run, summary, error) = row.map_err(|e| self.err(e))?;
            out.push(RunRecord {
                id,
                window_start: self.parse_ts("runs.window_start", &ws)?,
                window_end: self.parse_ts("runs.window_end", &we)?,
                started_at: self.parse_ts("runs.started_at", &sa)?,
                finished_at: fa
                    .map(|f| self.parse_ts("runs.finished_at", &f))
                    .transpose()?,
                status: st.parse().map_err(|m| self.corrupt("runs.status", m))?,
                dry_run,
                summary,
                error,
            });
        }
        Ok(out)
    }

    /// Records that every side effect of the window `[start, end)` is done. Call only after
    /// every intent the run began is complete.
    pub fn mark_window_done(
        &self,
        run_id: i64,
        window_start: DateTime<Utc>,
        window_end: DateTime<Utc>,
    ) -> Result<()> {
        self.lock()
            .execute(
                "INSERT OR REPLACE INTO windows (window_start, window_end, run_id, completed_at) VALUES (?1, ?2, ?3, ?4)",
                params![ts(window_start), ts(window_end), run_id, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The latest processed window `(start, end)`, by end time.
    pub fn last_window_done(&self) -> Result<Option<(DateTime<Utc>, DateTime<Utc>)>> {
        let row: Option<(String, String)> = self
            .lock()
            .query_row(
                "SELECT window_start, window_end FROM windows ORDER BY window_end DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        row.map(|(s, e)| {
            Ok((
                self.parse_ts("windows.window_start", &s)?,
                self.parse_ts("windows.window_end", &e)?,
            ))
        })
        .transpose()
    }

    /// How many windows have been processed.
    pub fn windows_done(&self) -> Result<u64> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM windows", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    // ---------------------------------------------------------------------------------------
    // Intents

    /// Records the intent to perform a side effect, unless it is already known.
    ///
    /// A new key is stored as intended with `payload` and [`IntentStatus::New`] is returned.
    /// A done key returns [`IntentStatus::AlreadyDone`] with its result. An intended or failed
    /// key returns [`IntentStatus::Unfinished`] with the stored payload (its attempt counter is
    /// incremented and its run id updated); the caller reconciles, then completes it.
    pub fn begin_intent(
        &self,
        kind: IntentKind,
        key: &str,
        payload: &serde_json::Value,
        run_id: Option<i64>,
    ) -> Result<IntentStatus> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let existing: Option<(String, String, Option<String>, Option<String>)> = tx
            .query_row(
                "SELECT state, payload, result, error FROM intents WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let status = match existing {
            None => {
                tx.execute(
                    "INSERT INTO intents (key, kind, payload, state, run_id, created_at, updated_at) VALUES (?1, ?2, ?3, 'intended', ?4, ?5, ?5)",
                    params![key, kind.as_str(), payload.to_string(), run_id, now()],
                )
                .map_err(|e| self.err(e))?;
                IntentStatus::New
            }
            Some((state, stored, result, error)) => {
                let state: IntentState = state
                    .parse()
                    .map_err(|m| self.corrupt("intents.state", m))?;
                match state {
                    IntentState::Done => IntentStatus::AlreadyDone(result),
                    IntentState::Intended | IntentState::Failed => {
                        tx.execute(
                            "UPDATE intents SET attempts = attempts + 1, run_id = COALESCE(?2, run_id), updated_at = ?3 WHERE key = ?1",
                            params![key, run_id, now()],
                        )
                        .map_err(|e| self.err(e))?;
                        let payload = serde_json::from_str(&stored)
                            .map_err(|e| self.corrupt("intents.payload", e.to_string()))?;
                        IntentStatus::Unfinished {
                            payload,
                            last_error: if state == IntentState::Failed {
                                error
                            } else {
                                None
                            },
                        }
                    }
                }
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(status)
    }

    /// Records that the side effect is done, with its result (ticket id, ...).
    pub fn complete_intent(&self, key: &str, result: Option<&str>) -> Result<()> {
        let n = self
            .lock()
            .execute(
                "UPDATE intents SET state = 'done', result = ?2, error = NULL, updated_at = ?3 WHERE key = ?1",
                params![key, result, now()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 {
            return Err(StateError::UnknownIntent(key.to_owned()));
        }
        Ok(())
    }

    /// Records that the last attempt failed. The next `begin_intent` returns
    /// [`IntentStatus::Unfinished`] with this error, so the side effect is reconciled and retried.
    pub fn fail_intent(&self, key: &str, error: &str) -> Result<()> {
        let n = self
            .lock()
            .execute(
                "UPDATE intents SET state = 'failed', error = ?2, updated_at = ?3 WHERE key = ?1 AND state != 'done'",
                params![key, error, now()],
            )
            .map_err(|e| self.err(e))?;
        if n == 0 && self.intent(key)?.is_none() {
            return Err(StateError::UnknownIntent(key.to_owned()));
        }
        Ok(())
    }

    /// One intent by key.
    pub fn intent(&self, key: &str) -> Result<Option<IntentRecord>> {
        let mut v = self.query_intents("WHERE key = ?1", params![key])?;
        Ok(v.pop())
    }

    /// Intents, optionally filtered by kind and state, oldest first.
    pub fn intents(
        &self,
        kind: Option<IntentKind>,
        state: Option<IntentState>,
    ) -> Result<Vec<IntentRecord>> {
        self.query_intents(
            "WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY created_at, key",
            params![kind.map(IntentKind::as_str), state.map(IntentState::as_str)],
        )
    }

    /// Intents not done (intended or failed), oldest first.
    pub fn unfinished_intents(&self) -> Result<Vec<IntentRecord>> {
        self.query_intents("WHERE state != 'done' ORDER BY created_at, key", params![])
    }

    /// Intents not done that run `run_id` touched (a window is processed only when this is
    /// empty).
    pub fn unfinished_intents_for_run(&self, run_id: i64) -> Result<Vec<IntentRecord>> {
        self.query_intents(
            "WHERE state != 'done' AND run_id = ?1 ORDER BY created_at, key",
            params![run_id],
        )
    }

    fn query_intents(
        &self,
        clause: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<IntentRecord>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT key, kind, payload, state, result, error, attempts, run_id, created_at, updated_at FROM intents {clause}"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params, |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                    r.get::<_, String>(8)?,
                    r.get::<_, String>(9)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (key, kind, payload, state, result, error, attempts, run_id, ca, ua) =
                row.map_err(|e| self.err(e))?;
            out.push(IntentRecord {
                key,
                kind: kind.parse().map_err(|m| self.corrupt("intents.kind", m))?,
                payload: serde_json::from_str(&payload)
                    .map_err(|e| self.corrupt("intents.payload", e.to_string()))?,
                state: state
                    .parse()
                    .map_err(|m| self.corrupt("intents.state", m))?,
                result,
                error,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                run_id,
                created_at: self.parse_ts("intents.created_at", &ca)?,
                updated_at: self.parse_ts("intents.updated_at", &ua)?,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------------------------------
    // Checkpoints

    /// The value of checkpoint `name`, if set.
    pub fn checkpoint_get(&self, name: &str) -> Result<Option<String>> {
        self.lock()
            .query_row(
                "SELECT value FROM checkpoints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Sets checkpoint `name` to `value` (durably, before returning).
    pub fn checkpoint_set(&self, name: &str, value: &str) -> Result<()> {
        self.lock()
            .execute(
                "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                params![name, value, now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn parse_ts(&self, what: &'static str, s: &str) -> Result<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| self.corrupt(what, e.to_string()))
    }

    fn corrupt(&self, what: &'static str, message: impl Into<String>) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what,
            message: message.into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_store() -> (StateStore, PathBuf) {
        let path = scratch_path("state-test");
        (StateStore::open(&path).unwrap(), path)
    }

    fn cleanup(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
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
        let mode: String = s
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        cleanup(&path);
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
        cleanup(&path);
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
        cleanup(&path);
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
        cleanup(&path);
    }
}
