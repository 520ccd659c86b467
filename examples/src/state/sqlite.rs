//! The embedded SQLite backend (the default): one file, WAL mode, every write in an
//! `IMMEDIATE` transaction so two processes on one file serialise instead of failing.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    now, ts, Backend, IntentFilter, LeaseRow, Orphan, RawBegin, RawIntent, RawRun, Result,
    RunningRun, StateError, SCHEMA_VERSION,
};

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
    // 1 -> 2: run owners, leases, and the forwarder's sent ids (files written by `siem-forward`
    // before this version already have that table).
    r"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    CREATE TABLE leases (
        name         TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        acquired_at  TEXT NOT NULL,
        expires_at   TEXT NOT NULL
    );
    CREATE INDEX leases_by_owner ON leases(owner);
    CREATE TABLE IF NOT EXISTS siem_sent (
        source    TEXT NOT NULL,
        event_ms  INTEGER NOT NULL,
        id        TEXT NOT NULL,
        sent_ms   INTEGER NOT NULL,
        PRIMARY KEY (source, event_ms, id)
    ) WITHOUT ROWID;
    ",
];

/// A run is alive while it is `running` and its `run:<id>` lease has not expired.
const RUN_ALIVE: &str =
    "EXISTS (SELECT 1 FROM leases l WHERE l.name = 'run:' || r.id AND l.expires_at > ?9)";

const ROWS_PER_INSERT: usize = 100;

pub(crate) struct Sqlite {
    conn: Mutex<Connection>,
    path: String,
}

fn busy_retry<T>(mut f: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    // Switching to WAL needs a moment of exclusive access, and SQLite does not always call the
    // busy handler for it: two processes opening a new file at once retry here.
    let mut tries = 0;
    loop {
        match f() {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 200 =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let sql = |source| StateError::Sqlite {
            path: name.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.exists() {
                std::fs::create_dir_all(parent).map_err(|e| StateError::Sqlite {
                    path: name.clone(),
                    source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
                })?;
            }
        }
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        busy_retry(|| conn.pragma_update(None, "journal_mode", "WAL")).map_err(sql)?;
        Self::init(conn, name)
    }

    pub(crate) fn open_in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(|source| StateError::Sqlite {
            path: ":memory:".into(),
            source,
        })?;
        Self::init(conn, ":memory:".into())
    }

    /// Read-only, not migrated; `None` when the file is missing or of another schema version.
    pub(crate) fn open_read_only(path: &Path) -> Result<Option<Self>> {
        let name = path.display().to_string();
        if !path.exists() {
            return Ok(None);
        }
        let sql = |source| StateError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version != SCHEMA_VERSION {
            return Ok(None);
        }
        Ok(Some(Self {
            conn: Mutex::new(conn),
            path: name,
        }))
    }

    fn init(conn: Connection, path: String) -> Result<Self> {
        let sql = |source| StateError::Sqlite {
            path: path.clone(),
            source,
        };
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
        // The version is read inside the write transaction: a second process starting at the
        // same moment waits for the first and then finds the schema current (a version read
        // before the lock is what made both try `CREATE TABLE runs`).
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let version: u32 = tx
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
            tx.execute_batch(step).map_err(|e| self.err(e))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(e))?;
        let out = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }
}

fn raw_intent(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawIntent> {
    Ok(RawIntent {
        key: r.get(0)?,
        kind: r.get(1)?,
        payload: r.get(2)?,
        state: r.get(3)?,
        result: r.get(4)?,
        error: r.get(5)?,
        attempts: r.get(6)?,
        run_id: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

const INTENT_COLUMNS: &str =
    "i.key, i.kind, i.payload, i.state, i.result, i.error, i.attempts, i.run_id, i.created_at, i.updated_at";

impl Backend for Sqlite {
    fn label(&self) -> &str {
        &self.path
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn store_wide_runner_lock(&self) -> bool {
        true
    }

    fn schema_version(&self) -> Result<u32> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn begin_run(
        &self,
        owner: &str,
        ws: &str,
        we: &str,
        dry_run: bool,
        ttl: Duration,
    ) -> Result<i64> {
        let until = ts(chrono::Utc::now()
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)));
        self.write(|tx| {
            let t = now();
            tx.execute(
                "INSERT INTO runs (window_start, window_end, started_at, status, dry_run, owner) VALUES (?1, ?2, ?3, 'running', ?4, ?5)",
                params![ws, we, t, dry_run, owner],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT OR REPLACE INTO leases (name, owner, acquired_at, expires_at) VALUES ('run:' || ?1, ?2, ?3, ?4)",
                params![id, owner, t, until],
            )?;
            Ok(id)
        })
    }

    fn finish_run(
        &self,
        run_id: i64,
        status: &str,
        summary: Option<&str>,
        error: Option<&str>,
    ) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE runs SET finished_at = ?2, status = ?3, summary = COALESCE(?4, summary), error = COALESCE(?5, error) WHERE id = ?1",
                params![run_id, now(), status, summary, error],
            )
            .map(drop)
        })
    }

    fn running_runs(&self) -> Result<Vec<RunningRun>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT r.id, r.owner, {} FROM runs r WHERE r.status = 'running'",
            RUN_ALIVE.replace("?9", "?1")
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![now()], |r| {
                Ok(RunningRun {
                    id: r.get(0)?,
                    owner: r.get(1)?,
                    alive: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn recent_runs(&self, limit: usize) -> Result<Vec<RawRun>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(
                "SELECT id, window_start, window_end, started_at, finished_at, status, dry_run, summary, error, owner
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(RawRun {
                    id: r.get(0)?,
                    window_start: r.get(1)?,
                    window_end: r.get(2)?,
                    started_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    status: r.get(5)?,
                    dry_run: r.get(6)?,
                    summary: r.get(7)?,
                    error: r.get(8)?,
                    owner: r.get(9)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn mark_window_done(&self, run_id: i64, ws: &str, we: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO windows (window_start, window_end, run_id, completed_at) VALUES (?1, ?2, ?3, ?4)",
                params![ws, we, run_id, now()],
            )
            .map(drop)
        })
    }

    fn last_window_done(&self) -> Result<Option<(String, String)>> {
        self.lock()
            .query_row(
                "SELECT window_start, window_end FROM windows ORDER BY window_end DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn windows_done(&self) -> Result<u64> {
        self.lock()
            .query_row("SELECT COUNT(*) FROM windows", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn begin_intent(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_id: Option<i64>,
    ) -> Result<RawBegin> {
        self.write(|tx| {
            let t = now();
            type Row = (String, String, Option<String>, Option<String>, Option<i64>);
            let existing: Option<Row> =
                tx.query_row(
                    "SELECT state, payload, result, error, run_id FROM intents WHERE key = ?1",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((state, stored, result, error, owner_run)) = existing else {
                tx.execute(
                    "INSERT INTO intents (key, kind, payload, state, run_id, created_at, updated_at) VALUES (?1, ?2, ?3, 'intended', ?4, ?5, ?5)",
                    params![key, kind, payload, run_id, t],
                )?;
                return Ok(RawBegin::New);
            };
            if state == "done" {
                return Ok(RawBegin::Done(result));
            }
            if let Some(other) = owner_run.filter(|o| Some(*o) != run_id) {
                let sql = format!(
                    "SELECT r.owner FROM runs r WHERE r.id = ?1 AND r.status = 'running' AND {}",
                    RUN_ALIVE.replace("?9", "?2")
                );
                let alive: Option<Option<String>> = tx
                    .query_row(&sql, params![other, t], |r| r.get(0))
                    .optional()?;
                if let Some(owner) = alive {
                    return Ok(RawBegin::Held { owner });
                }
            }
            tx.execute(
                "UPDATE intents SET attempts = attempts + 1, run_id = COALESCE(?2, run_id), updated_at = ?3 WHERE key = ?1",
                params![key, run_id, t],
            )?;
            Ok(RawBegin::Unfinished {
                state,
                payload: stored,
                error,
            })
        })
    }

    fn complete_intent(&self, key: &str, result: Option<&str>) -> Result<usize> {
        self.write(|tx| {
            tx.execute(
                "UPDATE intents SET state = 'done', result = ?2, error = NULL, updated_at = ?3 WHERE key = ?1",
                params![key, result, now()],
            )
        })
    }

    fn fail_intent(&self, key: &str, error: &str) -> Result<usize> {
        self.write(|tx| {
            tx.execute(
                "UPDATE intents SET state = 'failed', error = ?2, updated_at = ?3 WHERE key = ?1 AND state != 'done'",
                params![key, error, now()],
            )
        })
    }

    fn query_intents(&self, filter: IntentFilter<'_>) -> Result<Vec<RawIntent>> {
        let conn = self.lock();
        let (clause, args): (&str, Vec<rusqlite::types::Value>) = match filter {
            IntentFilter::Key(k) => ("WHERE i.key = ?1", vec![k.to_owned().into()]),
            IntentFilter::KindState(kind, state) => (
                "WHERE (?1 IS NULL OR i.kind = ?1) AND (?2 IS NULL OR i.state = ?2) ORDER BY i.created_at, i.key",
                vec![
                    kind.map(str::to_owned).into(),
                    state.map(str::to_owned).into(),
                ],
            ),
            IntentFilter::Unfinished => ("WHERE i.state != 'done' ORDER BY i.created_at, i.key", vec![]),
            IntentFilter::UnfinishedForRun(id) => (
                "WHERE i.state != 'done' AND i.run_id = ?1 ORDER BY i.created_at, i.key",
                vec![id.into()],
            ),
        };
        let mut stmt = conn
            .prepare(&format!("SELECT {INTENT_COLUMNS} FROM intents i {clause}"))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(args), raw_intent)
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn orphan_candidates(&self, kind: &str, run_id: Option<i64>) -> Result<Vec<Orphan>> {
        let conn = self.lock();
        let sql = format!(
            "SELECT {INTENT_COLUMNS}, r.owner, CASE WHEN r.status = 'running' AND {} THEN 1 ELSE 0 END
             FROM intents i LEFT JOIN runs r ON r.id = i.run_id
             WHERE i.state != 'done' AND i.kind = ?1 AND (i.run_id IS NULL OR ?2 IS NULL OR i.run_id != ?2)
             ORDER BY i.created_at, i.key",
            RUN_ALIVE.replace("?9", "?3")
        );
        let mut stmt = conn.prepare(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![kind, run_id, now()], |r| {
                Ok(Orphan {
                    intent: raw_intent(r)?,
                    owner: r.get(10)?,
                    alive: r.get::<_, Option<bool>>(11)?.unwrap_or(false),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn claim_intent(&self, key: &str, from: Option<i64>, to: i64) -> Result<bool> {
        self.write(|tx| {
            tx.execute(
                "UPDATE intents SET run_id = ?3, updated_at = ?4 WHERE key = ?1 AND state != 'done' AND run_id IS ?2",
                params![key, from, to, now()],
            )
            .map(|n| n == 1)
        })
    }

    fn checkpoint_get(&self, name: &str) -> Result<Option<String>> {
        self.lock()
            .query_row(
                "SELECT value FROM checkpoints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    fn checkpoint_set(&self, name: &str, value: &str, only_forward: bool) -> Result<()> {
        let sql = if only_forward {
            "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
             WHERE excluded.value > checkpoints.value"
        } else {
            "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
        };
        self.write(|tx| tx.execute(sql, params![name, value, now()]).map(drop))
    }

    fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<String>> {
        self.write(|tx| {
            let t = now();
            let until = ts(chrono::Utc::now()
                + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)));
            let n = tx.execute(
                "INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(name) DO UPDATE SET owner = excluded.owner, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
                 WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at",
                params![name, owner, t, until],
            )?;
            if n == 1 {
                return Ok(None);
            }
            tx.query_row(
                "SELECT owner FROM leases WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
        })
    }

    fn renew_leases(&self, owner: &str, ttl: Duration) -> Result<u64> {
        let until = ts(chrono::Utc::now()
            + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(30)));
        self.write(|tx| {
            tx.execute(
                "UPDATE leases SET expires_at = ?2 WHERE owner = ?1",
                params![owner, until],
            )
            .map(|n| n as u64)
        })
    }

    fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .map(drop)
        })
    }

    fn release_owner(&self, owner: &str) -> Result<()> {
        self.write(|tx| {
            tx.execute("DELETE FROM leases WHERE owner = ?1", params![owner])
                .map(drop)
        })
    }

    fn interrupt_runs(&self, ids: &[i64]) -> Result<()> {
        self.write(|tx| {
            for id in ids {
                tx.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, ?2),
                     error = COALESCE(error, 'interrupted: the process running it stopped before it finished')
                     WHERE id = ?1 AND status = 'running'",
                    params![id, now()],
                )?;
                tx.execute("DELETE FROM leases WHERE name = 'run:' || ?1", params![id])?;
            }
            Ok(())
        })
    }

    fn leases(&self) -> Result<Vec<LeaseRow>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT name, owner, expires_at FROM leases ORDER BY name")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LeaseRow {
                    name: r.get(0)?,
                    owner: r.get(1)?,
                    expires_at: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))
    }

    fn siem_sent_since(&self, source: &str, since_ms: i64) -> Result<HashSet<String>> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM siem_sent WHERE source = ?1 AND (event_ms = -1 OR event_ms >= ?2)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![source, since_ms], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<HashSet<_>, _>>()
            .map_err(|e| self.err(e))
    }

    fn siem_commit_batch(
        &self,
        source: &str,
        checkpoint_name: &str,
        ids: &[(String, i64)],
        checkpoint: Option<&str>,
        sent_ms: i64,
        now_text: &str,
    ) -> Result<()> {
        self.write(|tx| {
            let values = |n: usize| {
                let mut sql = String::from(
                    "INSERT OR IGNORE INTO siem_sent (source, event_ms, id, sent_ms) VALUES ",
                );
                for i in 0..n {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(?1,?{},?{},?2)", 3 + 2 * i, 4 + 2 * i));
                }
                sql
            };
            for chunk in ids.chunks(ROWS_PER_INSERT) {
                let mut stmt = tx.prepare_cached(&values(chunk.len()))?;
                stmt.raw_bind_parameter(1, source)?;
                stmt.raw_bind_parameter(2, sent_ms)?;
                for (i, (id, at)) in chunk.iter().enumerate() {
                    stmt.raw_bind_parameter(3 + 2 * i, at)?;
                    stmt.raw_bind_parameter(4 + 2 * i, id)?;
                }
                stmt.raw_execute()?;
            }
            if let Some(cp) = checkpoint {
                tx.execute(
                    "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                     WHERE excluded.value > checkpoints.value",
                    params![checkpoint_name, cp, now_text],
                )?;
            }
            Ok(())
        })
    }

    fn siem_prune(&self, source: &str, before_ms: i64) -> Result<usize> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM siem_sent WHERE source = ?1 AND ((event_ms >= 0 AND event_ms < ?2) OR (event_ms = -1 AND sent_ms < ?2))",
                params![source, before_ms],
            )
        })
    }

    fn siem_remembered(&self, source: &str) -> Result<u64> {
        self.lock()
            .query_row(
                "SELECT COUNT(*) FROM siem_sent WHERE source = ?1",
                params![source],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.err(e))
    }
}
