//! The forwarder's durable memory, in the workflow's state file: one checkpoint per source in
//! the state store's `checkpoints` table (`siem.<source>` → the time up to which everything was
//! sent) and a bounded table of recently sent ids (`siem_sent`) that de-duplicates overlapping
//! windows. A batch's ids and the moved checkpoint are written in ONE transaction, right after
//! the receiver accepted the batch, so they can never disagree.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::state::{StateError, StateStore};

// Keyed by event time first, so the range reads (ids since a time) and the pruning are index
// scans without a second index to maintain. `event_ms` is -1 for undated records. A record's
// time never changes, so (source, id) stays unique in practice.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS siem_sent (
    source    TEXT NOT NULL,
    event_ms  INTEGER NOT NULL,
    id        TEXT NOT NULL,
    sent_ms   INTEGER NOT NULL,
    PRIMARY KEY (source, event_ms, id)
) WITHOUT ROWID;
";

const UNDATED: i64 = -1;
const ROWS_PER_INSERT: usize = 100;

/// The checkpoint name of a source in the `checkpoints` table.
pub fn checkpoint_name(source: &str) -> String {
    format!("siem.{source}")
}

/// Sent ids and checkpoints of the forwarder (a second connection to the state file).
pub struct SentStore {
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for SentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentStore")
            .field("path", &self.path)
            .finish()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl SentStore {
    /// Opens the state file at `path` (creating and migrating it through [`StateStore`] first,
    /// so the `checkpoints` table exists) and adds the `siem_sent` table if missing.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        drop(StateStore::open(path)?);
        let name = path.display().to_string();
        let sql = |source| StateError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        // NORMAL in WAL mode: a commit survives the process being killed (what exactly-once
        // across restarts needs); only a power loss can roll back the last commits, which
        // resends those batches (a repeat, never a loss). FULL would cost an fsync per batch.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The checkpoint of `source`: everything dated before it has been sent.
    pub fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let value: Option<String> = self
            .lock()
            .query_row(
                "SELECT value FROM checkpoints WHERE name = ?1",
                params![checkpoint_name(source)],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        value
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| StateError::Corrupt {
                        path: self.path.clone(),
                        what: "checkpoints.value",
                        message: format!("{v:?}: {e}"),
                    })
            })
            .transpose()
    }

    /// Ids of `source` already sent whose event time is at or after `since` (or unknown).
    pub fn sent_since(
        &self,
        source: &str,
        since: DateTime<Utc>,
    ) -> Result<HashSet<String>, StateError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id FROM siem_sent WHERE source = ?1 AND (event_ms = -1 OR event_ms >= ?2)",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![source, ms(since)], |r| r.get::<_, String>(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<HashSet<_>, _>>()
            .map_err(|e| self.err(e))
    }

    /// Records a batch the receiver accepted and, if given, moves the checkpoint (never
    /// backwards), in one transaction.
    pub fn commit_batch<'a>(
        &self,
        source: &str,
        ids: impl IntoIterator<Item = (&'a str, Option<DateTime<Utc>>)>,
        checkpoint: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let sent = ms(now);
            let ids: Vec<(&str, i64)> = ids
                .into_iter()
                .map(|(id, at)| (id, at.map_or(UNDATED, ms)))
                .collect();
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
                let mut stmt = tx
                    .prepare_cached(&values(chunk.len()))
                    .map_err(|e| self.err(e))?;
                stmt.raw_bind_parameter(1, source)
                    .map_err(|e| self.err(e))?;
                stmt.raw_bind_parameter(2, sent).map_err(|e| self.err(e))?;
                for (i, (id, at)) in chunk.iter().enumerate() {
                    stmt.raw_bind_parameter(3 + 2 * i, at)
                        .map_err(|e| self.err(e))?;
                    stmt.raw_bind_parameter(4 + 2 * i, id)
                        .map_err(|e| self.err(e))?;
                }
                stmt.raw_execute().map_err(|e| self.err(e))?;
            }
        }
        if let Some(cp) = checkpoint {
            let value = cp.to_rfc3339_opts(SecondsFormat::Micros, true);
            tx.execute(
                "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                 WHERE excluded.value > checkpoints.value",
                params![
                    checkpoint_name(source),
                    value,
                    now.to_rfc3339_opts(SecondsFormat::Micros, true)
                ],
            )
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Forgets ids of `source` whose event time is before `before` (they can no longer come
    /// back in a window), and undated ids sent before `before`. Returns how many were removed.
    pub fn prune(&self, source: &str, before: DateTime<Utc>) -> Result<usize, StateError> {
        self.lock()
            .execute(
                "DELETE FROM siem_sent WHERE source = ?1 AND ((event_ms >= 0 AND event_ms < ?2) OR (event_ms = -1 AND sent_ms < ?2))",
                params![source, ms(before)],
            )
            .map_err(|e| self.err(e))
    }

    /// How many ids of `source` are remembered.
    pub fn remembered(&self, source: &str) -> Result<u64, StateError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn batches_checkpoints_and_pruning() {
        let path = crate::state::scratch_path("siem-store");
        let store = SentStore::open(&path).unwrap();
        let t = |m| Utc.with_ymd_and_hms(2026, 5, 14, 12, m, 0).unwrap();
        assert_eq!(store.checkpoint("action_log").unwrap(), None);
        store
            .commit_batch(
                "action_log",
                [("1", Some(t(1))), ("2", Some(t(2))), ("x", None)],
                Some(t(2)),
                t(30),
            )
            .unwrap();
        assert_eq!(store.checkpoint("action_log").unwrap(), Some(t(2)));
        // Never backwards.
        store
            .commit_batch("action_log", [], Some(t(1)), t(30))
            .unwrap();
        assert_eq!(store.checkpoint("action_log").unwrap(), Some(t(2)));
        let sent = store.sent_since("action_log", t(2)).unwrap();
        assert_eq!(sent, HashSet::from(["2".to_owned(), "x".to_owned()]));
        assert!(store.sent_since("system_audit", t(0)).unwrap().is_empty());
        assert_eq!(store.prune("action_log", t(2)).unwrap(), 1);
        assert_eq!(store.remembered("action_log").unwrap(), 2);
        // The workflow's own store sees the checkpoint in its table.
        drop(store);
        let state = StateStore::open(&path).unwrap();
        assert!(state.checkpoint_get("siem.action_log").unwrap().is_some());
        let _ = std::fs::remove_file(&path);
    }
}
