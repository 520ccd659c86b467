//! The forwarder's durable memory, in the workflow's state store (SQLite or PostgreSQL): one
//! checkpoint per source in the store's `checkpoints` table (`siem.<source>` → the time up to
//! which everything was sent) and a bounded table of recently sent ids (`siem_sent`) that
//! de-duplicates overlapping windows. A batch's ids and the moved checkpoint are written in ONE
//! transaction, right after the receiver accepted the batch, so they can never disagree. With
//! PostgreSQL a standby forwarder on another host reads the same checkpoint and resumes where
//! the first stopped (at most the last batch is sent again).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::state::{StateError, StateStore};

const UNDATED: i64 = -1;

/// The checkpoint name of a source in the `checkpoints` table.
pub fn checkpoint_name(source: &str) -> String {
    format!("siem.{source}")
}

/// Sent ids and checkpoints of the forwarder, in the state store.
pub struct SentStore {
    state: Arc<StateStore>,
}

impl std::fmt::Debug for SentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentStore")
            .field("state", &self.state)
            .finish()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

impl SentStore {
    /// Opens the SQLite state file at `path` (creating and migrating it).
    pub fn open(path: &Path) -> Result<Self, StateError> {
        Ok(Self::new(Arc::new(StateStore::open(path)?)))
    }

    /// The forwarder's memory in an open state store (either backend).
    pub fn new(state: Arc<StateStore>) -> Self {
        Self { state }
    }

    /// The state store it writes to.
    pub fn state(&self) -> &Arc<StateStore> {
        &self.state
    }

    /// The checkpoint of `source`: everything dated before it has been sent.
    pub fn checkpoint(&self, source: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let value = self.state.checkpoint_get(&checkpoint_name(source))?;
        value
            .map(|v| {
                DateTime::parse_from_rfc3339(&v)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| StateError::Corrupt {
                        path: self.state.path().to_owned(),
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
        self.state.backend().siem_sent_since(source, ms(since))
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
        let ids: Vec<(String, i64)> = ids
            .into_iter()
            .map(|(id, at)| (id.to_owned(), at.map_or(UNDATED, ms)))
            .collect();
        let cp = checkpoint.map(|c| c.to_rfc3339_opts(SecondsFormat::Micros, true));
        self.state.backend().siem_commit_batch(
            source,
            &checkpoint_name(source),
            &ids,
            cp.as_deref(),
            ms(now),
            &now.to_rfc3339_opts(SecondsFormat::Micros, true),
        )
    }

    /// Forgets ids of `source` whose event time is before `before` (they can no longer come
    /// back in a window), and undated ids sent before `before`. Returns how many were removed.
    pub fn prune(&self, source: &str, before: DateTime<Utc>) -> Result<usize, StateError> {
        self.state.backend().siem_prune(source, ms(before))
    }

    /// How many ids of `source` are remembered.
    pub fn remembered(&self, source: &str) -> Result<u64, StateError> {
        self.state.backend().siem_remembered(source)
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
