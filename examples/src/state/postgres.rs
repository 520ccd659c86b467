//! The PostgreSQL backend: the same tables and protocol as SQLite, shared by several runners.
//!
//! The synchronous `postgres` client runs its own small runtime and panics when called from
//! inside a tokio runtime, and the store's API is synchronous (it is called from the
//! workflow's async code, between awaits). So one dedicated thread owns the connection and
//! runs the store's queries, sent to it as closures over a channel; the caller blocks on the
//! answer, as it would on SQLite's file lock. The connection is re-opened on the next query
//! after it drops.
//!
//! Times are stored as RFC 3339 text, as in SQLite, so both backends share one schema; lease
//! expiry uses the database server's clock, so runners on hosts with skewed clocks agree.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use postgres::{Client, NoTls};
use secrecy::{ExposeSecret, SecretString};

use super::{
    now, Backend, IntentFilter, LeaseRow, Orphan, RawBegin, RawIntent, RawRun, Result, RunningRun,
    StateError, SCHEMA_VERSION,
};

/// Key of the advisory lock held (for one transaction) while migrating.
const MIGRATION_LOCK: i64 = 0x544c_4d4f_4e5f_4d47; // "TLMON_MG"

/// The server's clock as stored text (RFC 3339, microseconds, `Z`).
const PG_NOW: &str =
    r#"to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;

/// Migrations, index `i` taking the schema from version `i` to `i + 1` (the same tables and
/// versions as SQLite's).
const MIGRATIONS: &[&str] = &[
    // 0 -> 1
    r"
    CREATE TABLE runs (
        id            BIGSERIAL PRIMARY KEY,
        window_start  TEXT NOT NULL,
        window_end    TEXT NOT NULL,
        started_at    TEXT NOT NULL,
        finished_at   TEXT,
        status        TEXT NOT NULL,
        dry_run       BOOLEAN NOT NULL,
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
        attempts    BIGINT NOT NULL DEFAULT 1,
        run_id      BIGINT,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    CREATE INDEX intents_by_state ON intents(state, kind);
    CREATE TABLE windows (
        window_start  TEXT NOT NULL,
        window_end    TEXT NOT NULL,
        run_id        BIGINT NOT NULL,
        completed_at  TEXT NOT NULL,
        PRIMARY KEY (window_start, window_end)
    );
    CREATE TABLE checkpoints (
        name        TEXT PRIMARY KEY,
        value       TEXT NOT NULL,
        updated_at  TEXT NOT NULL
    );
    ",
    // 1 -> 2
    r"
    ALTER TABLE runs ADD COLUMN owner TEXT;
    CREATE TABLE leases (
        name         TEXT PRIMARY KEY,
        owner        TEXT NOT NULL,
        acquired_at  TEXT NOT NULL,
        expires_at   TEXT NOT NULL
    );
    CREATE INDEX leases_by_owner ON leases(owner);
    CREATE TABLE siem_sent (
        source    TEXT NOT NULL,
        event_ms  BIGINT NOT NULL,
        id        TEXT NOT NULL,
        sent_ms   BIGINT NOT NULL,
        PRIMARY KEY (source, event_ms, id)
    );
    ",
];

/// Where to connect: a parsed URL with the password kept apart (never printed).
#[derive(Clone)]
pub(crate) struct PgTarget {
    /// `user@host:port/db`, for messages.
    pub(crate) label: String,
    config: postgres::Config,
    password: Option<SecretString>,
    read_only: bool,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("label", &self.label)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    /// Parses `postgres://user[:password]@host[:port]/db[?options]`. `password`, when given,
    /// replaces the URL's. Errors never repeat the URL (it may hold a password).
    pub(crate) fn parse(url: &str, password: Option<SecretString>) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!(
                "scheme {:?} is not postgres:// or postgresql://",
                parsed.scheme()
            ));
        }
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| format!("cannot be read as a PostgreSQL URL ({e})"))?;
        if config.get_hosts().is_empty() {
            return Err("names no host".into());
        }
        let user = config.get_user().unwrap_or("postgres").to_owned();
        if config.get_user().is_none() {
            config.user(&user);
        }
        let host = parsed.host_str().unwrap_or("?").to_owned();
        let port = parsed.port().unwrap_or(5432);
        let db = config.get_dbname().unwrap_or(&user).to_owned();
        config
            .application_name("threatlocker-monitor")
            .connect_timeout(Duration::from_secs(10))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15));
        Ok(Self {
            label: format!("postgres://{user}@{host}:{port}/{db}"),
            config,
            password,
            read_only: false,
        })
    }

    /// The same target with every transaction read-only (dry runs, reports).
    pub(crate) fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    /// Whether the URL carries a password.
    pub(crate) fn has_password(&self) -> bool {
        self.password.is_some() || self.config.get_password().is_some()
    }

    fn connect(&self) -> std::result::Result<Client, postgres::Error> {
        let mut config = self.config.clone();
        if let Some(p) = &self.password {
            config.password(p.expose_secret());
        }
        if self.read_only {
            config.options("-c default_transaction_read_only=on");
        }
        config.connect(NoTls)
    }
}

type Job = Box<dyn FnOnce(std::result::Result<&mut Client, &str>) + Send>;

/// The PostgreSQL backend: a handle on the connection's thread.
pub(crate) struct Postgres {
    jobs: mpsc::Sender<Job>,
    label: String,
}

fn worker(
    target: PgTarget,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::SyncSender<Result<(), String>>,
) {
    let mut conn = match target.connect() {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            Some(c)
        }
        Err(e) => {
            let _ = ready.send(Err(crate::errors::chain(&e)));
            return;
        }
    };
    while let Ok(job) = jobs.recv() {
        if conn.as_ref().is_none_or(Client::is_closed) {
            conn = target.connect().map_err(|e| tracing::warn!(database = %target.label, error = %e, "reconnecting to the state database failed")).ok();
        }
        match conn.as_mut() {
            Some(c) => job(Ok(c)),
            None => job(Err("the connection to the state database is down")),
        }
    }
}

impl Postgres {
    pub(crate) fn open(target: PgTarget, migrate: bool) -> Result<Self> {
        let label = target.label.clone();
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("state-postgres".into())
            .spawn(move || worker(target, rx, ready_tx))
            .map_err(|e| StateError::Unavailable {
                path: label.clone(),
                message: format!("cannot start the database thread: {e}"),
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                return Err(StateError::Unavailable {
                    path: label,
                    message,
                })
            }
            Err(_) => {
                return Err(StateError::Unavailable {
                    path: label,
                    message: "the database thread stopped".into(),
                })
            }
        }
        let pg = Self { jobs: tx, label };
        if migrate {
            pg.migrate()?;
        }
        Ok(pg)
    }

    /// Runs `f` on the connection's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &dyn Fn(postgres::Error) -> StateError) -> Result<T>
            + Send
            + 'static,
    ) -> Result<T> {
        let label = self.label.clone();
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let err = |source| StateError::Postgres {
                path: label.clone(),
                source,
            };
            let out = match conn {
                Ok(c) => f(c, &err),
                Err(m) => Err(StateError::Unavailable {
                    path: label.clone(),
                    message: m.to_owned(),
                }),
            };
            let _ = tx.send(out);
        });
        let gone = || StateError::Unavailable {
            path: self.label.clone(),
            message: "the database thread stopped".into(),
        };
        self.jobs.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())?
    }

    fn migrate(&self) -> Result<()> {
        let label = self.label.clone();
        self.call(move |c, e| {
            let mut tx = c.transaction().map_err(e)?;
            // Two hosts starting at once: the second waits here, then finds the schema current.
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .map_err(e)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
            )
            .map_err(e)?;
            let found: Option<i32> = tx
                .query_opt("SELECT version FROM schema_version", &[])
                .map_err(e)?
                .map(|r| r.get(0));
            let version = match found {
                Some(v) => u32::try_from(v).unwrap_or(0),
                None => {
                    tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                        .map_err(e)?;
                    0
                }
            };
            if version > SCHEMA_VERSION {
                return Err(StateError::TooNew {
                    path: label,
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.batch_execute(step).map_err(e)?;
                tx.execute(
                    "UPDATE schema_version SET version = $1",
                    &[&((i + 1) as i32)],
                )
                .map_err(e)?;
            }
            tx.commit().map_err(e)
        })
    }
}

fn raw_intent(r: &postgres::Row) -> RawIntent {
    RawIntent {
        key: r.get(0),
        kind: r.get(1),
        payload: r.get(2),
        state: r.get(3),
        result: r.get(4),
        error: r.get(5),
        attempts: r.get(6),
        run_id: r.get(7),
        created_at: r.get(8),
        updated_at: r.get(9),
    }
}

const INTENT_COLUMNS: &str =
    "i.key, i.kind, i.payload, i.state, i.result, i.error, i.attempts, i.run_id, i.created_at, i.updated_at";

fn run_alive(now_param: &str) -> String {
    format!(
        "EXISTS (SELECT 1 FROM leases l WHERE l.name = 'run:' || r.id AND l.expires_at > {now_param})"
    )
}

impl Backend for Postgres {
    fn label(&self) -> &str {
        &self.label
    }

    fn kind(&self) -> &'static str {
        "postgresql"
    }

    fn store_wide_runner_lock(&self) -> bool {
        false
    }

    fn schema_version(&self) -> Result<u32> {
        self.call(|c, e| {
            let v: Option<i32> = c
                .query_opt("SELECT version FROM schema_version", &[])
                .map_err(e)?
                .map(|r| r.get(0));
            Ok(v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0))
        })
    }

    fn begin_run(
        &self,
        owner: &str,
        ws: &str,
        we: &str,
        dry_run: bool,
        ttl: Duration,
    ) -> Result<i64> {
        let (owner, ws, we, t) = (owner.to_owned(), ws.to_owned(), we.to_owned(), now());
        let secs = ttl.as_secs_f64();
        self.call(move |c, e| {
            // The run and its lease together: a run is never seen without its lease.
            let mut tx = c.transaction().map_err(e)?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO runs (window_start, window_end, started_at, status, dry_run, owner) VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id",
                    &[&ws, &we, &t, &dry_run, &owner],
                )
                .map(|r| r.get(0))
                .map_err(e)?;
            tx.execute(
                &format!(
                    r#"INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES ('run:' || $1::BIGINT, $2, {PG_NOW}, to_char((clock_timestamp() + make_interval(secs => $3)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at"#
                ),
                &[&id, &owner, &secs],
            )
            .map_err(e)?;
            tx.commit().map_err(e)?;
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
        let (status, summary, error, t) = (
            status.to_owned(),
            summary.map(str::to_owned),
            error.map(str::to_owned),
            now(),
        );
        self.call(move |c, e| {
            c.execute(
                "UPDATE runs SET finished_at = $2, status = $3, summary = COALESCE($4, summary), error = COALESCE($5, error) WHERE id = $1",
                &[&run_id, &t, &status, &summary, &error],
            )
            .map(drop)
            .map_err(e)
        })
    }

    fn running_runs(&self) -> Result<Vec<RunningRun>> {
        self.call(|c, e| {
            let sql = format!(
                "SELECT r.id, r.owner, {} FROM runs r WHERE r.status = 'running'",
                run_alive(PG_NOW)
            );
            Ok(c.query(&sql, &[])
                .map_err(e)?
                .iter()
                .map(|r| RunningRun {
                    id: r.get(0),
                    owner: r.get(1),
                    alive: r.get(2),
                })
                .collect())
        })
    }

    fn recent_runs(&self, limit: usize) -> Result<Vec<RawRun>> {
        let limit = limit as i64;
        self.call(move |c, e| {
            Ok(c.query(
                "SELECT id, window_start, window_end, started_at, finished_at, status, dry_run, summary, error, owner
                 FROM runs ORDER BY id DESC LIMIT $1",
                &[&limit],
            )
            .map_err(e)?
            .iter()
            .map(|r| RawRun {
                id: r.get(0),
                window_start: r.get(1),
                window_end: r.get(2),
                started_at: r.get(3),
                finished_at: r.get(4),
                status: r.get(5),
                dry_run: r.get(6),
                summary: r.get(7),
                error: r.get(8),
                owner: r.get(9),
            })
            .collect())
        })
    }

    fn mark_window_done(&self, run_id: i64, ws: &str, we: &str) -> Result<()> {
        let (ws, we, t) = (ws.to_owned(), we.to_owned(), now());
        self.call(move |c, e| {
            c.execute(
                "INSERT INTO windows (window_start, window_end, run_id, completed_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (window_start, window_end) DO UPDATE SET run_id = excluded.run_id, completed_at = excluded.completed_at",
                &[&ws, &we, &run_id, &t],
            )
            .map(drop)
            .map_err(e)
        })
    }

    fn last_window_done(&self) -> Result<Option<(String, String)>> {
        self.call(|c, e| {
            Ok(c.query_opt(
                "SELECT window_start, window_end FROM windows ORDER BY window_end DESC LIMIT 1",
                &[],
            )
            .map_err(e)?
            .map(|r| (r.get(0), r.get(1))))
        })
    }

    fn windows_done(&self) -> Result<u64> {
        self.call(|c, e| {
            c.query_one("SELECT COUNT(*) FROM windows", &[])
                .map(|r| r.get::<_, i64>(0) as u64)
                .map_err(e)
        })
    }

    fn begin_intent(
        &self,
        kind: &str,
        key: &str,
        payload: &str,
        run_id: Option<i64>,
    ) -> Result<RawBegin> {
        let (kind, key, payload, t) = (kind.to_owned(), key.to_owned(), payload.to_owned(), now());
        self.call(move |c, e| {
            let mut tx = c.transaction().map_err(e)?;
            // Insert-if-absent first: of two runners racing on a new key exactly one inserts;
            // the other then reads (and row-locks) the winner's row.
            let inserted = tx
                .execute(
                    "INSERT INTO intents (key, kind, payload, state, run_id, created_at, updated_at) VALUES ($1, $2, $3, 'intended', $4, $5, $5)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &kind, &payload, &run_id, &t],
                )
                .map_err(e)?;
            if inserted == 1 {
                tx.commit().map_err(e)?;
                return Ok(RawBegin::New);
            }
            let row = tx
                .query_one(
                    "SELECT state, payload, result, error, run_id FROM intents WHERE key = $1 FOR UPDATE",
                    &[&key],
                )
                .map_err(e)?;
            let (state, stored, result, error, owner_run): (
                String,
                String,
                Option<String>,
                Option<String>,
                Option<i64>,
            ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            if state == "done" {
                tx.commit().map_err(e)?;
                return Ok(RawBegin::Done(result));
            }
            if let Some(other) = owner_run.filter(|o| Some(*o) != run_id) {
                let sql = format!(
                    "SELECT r.owner FROM runs r WHERE r.id = $1 AND r.status = 'running' AND {}",
                    run_alive(PG_NOW)
                );
                if let Some(r) = tx.query_opt(&sql, &[&other]).map_err(e)? {
                    tx.commit().map_err(e)?;
                    return Ok(RawBegin::Held { owner: r.get(0) });
                }
            }
            tx.execute(
                "UPDATE intents SET attempts = attempts + 1, run_id = COALESCE($2, run_id), updated_at = $3 WHERE key = $1",
                &[&key, &run_id, &t],
            )
            .map_err(e)?;
            tx.commit().map_err(e)?;
            Ok(RawBegin::Unfinished {
                state,
                payload: stored,
                error,
            })
        })
    }

    fn complete_intent(&self, key: &str, result: Option<&str>) -> Result<usize> {
        let (key, result, t) = (key.to_owned(), result.map(str::to_owned), now());
        self.call(move |c, e| {
            c.execute(
                "UPDATE intents SET state = 'done', result = $2, error = NULL, updated_at = $3 WHERE key = $1",
                &[&key, &result, &t],
            )
            .map(|n| n as usize)
            .map_err(e)
        })
    }

    fn fail_intent(&self, key: &str, error: &str) -> Result<usize> {
        let (key, error, t) = (key.to_owned(), error.to_owned(), now());
        self.call(move |c, e| {
            c.execute(
                "UPDATE intents SET state = 'failed', error = $2, updated_at = $3 WHERE key = $1 AND state != 'done'",
                &[&key, &error, &t],
            )
            .map(|n| n as usize)
            .map_err(e)
        })
    }

    fn query_intents(&self, filter: IntentFilter<'_>) -> Result<Vec<RawIntent>> {
        enum F {
            Key(String),
            KindState(Option<String>, Option<String>),
            Unfinished,
            ForRun(i64),
        }
        let f = match filter {
            IntentFilter::Key(k) => F::Key(k.to_owned()),
            IntentFilter::KindState(k, s) => {
                F::KindState(k.map(str::to_owned), s.map(str::to_owned))
            }
            IntentFilter::Unfinished => F::Unfinished,
            IntentFilter::UnfinishedForRun(id) => F::ForRun(id),
        };
        self.call(move |c, e| {
            let base = format!("SELECT {INTENT_COLUMNS} FROM intents i");
            let rows = match &f {
                F::Key(k) => c.query(&format!("{base} WHERE i.key = $1"), &[k]),
                F::KindState(k, s) => c.query(
                    &format!("{base} WHERE ($1::TEXT IS NULL OR i.kind = $1) AND ($2::TEXT IS NULL OR i.state = $2) ORDER BY i.created_at, i.key"),
                    &[k, s],
                ),
                F::Unfinished => c.query(
                    &format!("{base} WHERE i.state != 'done' ORDER BY i.created_at, i.key"),
                    &[],
                ),
                F::ForRun(id) => c.query(
                    &format!("{base} WHERE i.state != 'done' AND i.run_id = $1 ORDER BY i.created_at, i.key"),
                    &[id],
                ),
            }
            .map_err(e)?;
            Ok(rows.iter().map(raw_intent).collect())
        })
    }

    fn orphan_candidates(&self, kind: &str, run_id: Option<i64>) -> Result<Vec<Orphan>> {
        let kind = kind.to_owned();
        self.call(move |c, e| {
            let sql = format!(
                "SELECT {INTENT_COLUMNS}, r.owner, COALESCE(r.status = 'running' AND {}, FALSE)
                 FROM intents i LEFT JOIN runs r ON r.id = i.run_id
                 WHERE i.state != 'done' AND i.kind = $1 AND (i.run_id IS NULL OR $2::BIGINT IS NULL OR i.run_id != $2)
                 ORDER BY i.created_at, i.key",
                run_alive(PG_NOW)
            );
            Ok(c.query(&sql, &[&kind, &run_id])
                .map_err(e)?
                .iter()
                .map(|r| Orphan {
                    intent: raw_intent(r),
                    owner: r.get(10),
                    alive: r.get(11),
                })
                .collect())
        })
    }

    fn claim_intent(&self, key: &str, from: Option<i64>, to: i64) -> Result<bool> {
        let (key, t) = (key.to_owned(), now());
        self.call(move |c, e| {
            c.execute(
                "UPDATE intents SET run_id = $3, updated_at = $4 WHERE key = $1 AND state != 'done' AND run_id IS NOT DISTINCT FROM $2",
                &[&key, &from, &to, &t],
            )
            .map(|n| n == 1)
            .map_err(e)
        })
    }

    fn checkpoint_get(&self, name: &str) -> Result<Option<String>> {
        let name = name.to_owned();
        self.call(move |c, e| {
            Ok(
                c.query_opt("SELECT value FROM checkpoints WHERE name = $1", &[&name])
                    .map_err(e)?
                    .map(|r| r.get(0)),
            )
        })
    }

    fn checkpoint_set(&self, name: &str, value: &str, only_forward: bool) -> Result<()> {
        let (name, value, t) = (name.to_owned(), value.to_owned(), now());
        self.call(move |c, e| {
            let sql = if only_forward {
                "INSERT INTO checkpoints (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                 WHERE excluded.value > checkpoints.value"
            } else {
                "INSERT INTO checkpoints (name, value, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
            };
            c.execute(sql, &[&name, &value, &t]).map(drop).map_err(e)
        })
    }

    fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<Option<String>> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        let secs = ttl.as_secs_f64();
        self.call(move |c, e| {
            let until = r#"to_char((clock_timestamp() + make_interval(secs => $3)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"#;
            let sql = format!(
                "INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES ($1, $2, {PG_NOW}, {until})
                 ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, acquired_at = excluded.acquired_at, expires_at = excluded.expires_at
                 WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.acquired_at"
            );
            let n = c.execute(&sql, &[&name, &owner, &secs]).map_err(e)?;
            if n == 1 {
                return Ok(None);
            }
            Ok(c.query_opt("SELECT owner FROM leases WHERE name = $1", &[&name])
                .map_err(e)?
                .map(|r| r.get(0)))
        })
    }

    fn renew_leases(&self, owner: &str, ttl: Duration) -> Result<u64> {
        let owner = owner.to_owned();
        let secs = ttl.as_secs_f64();
        self.call(move |c, e| {
            c.execute(
                r#"UPDATE leases SET expires_at = to_char((clock_timestamp() + make_interval(secs => $2)) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') WHERE owner = $1"#,
                &[&owner, &secs],
            )
            .map_err(e)
        })
    }

    fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.call(move |c, e| {
            c.execute(
                "DELETE FROM leases WHERE name = $1 AND owner = $2",
                &[&name, &owner],
            )
            .map(drop)
            .map_err(e)
        })
    }

    fn release_owner(&self, owner: &str) -> Result<()> {
        let owner = owner.to_owned();
        self.call(move |c, e| {
            c.execute("DELETE FROM leases WHERE owner = $1", &[&owner])
                .map(drop)
                .map_err(e)
        })
    }

    fn interrupt_runs(&self, ids: &[i64]) -> Result<()> {
        let (ids, t) = (ids.to_vec(), now());
        self.call(move |c, e| {
            for id in ids {
                c.execute(
                    "UPDATE runs SET status = 'interrupted', finished_at = COALESCE(finished_at, $2),
                     error = COALESCE(error, 'interrupted: the process running it stopped before it finished')
                     WHERE id = $1 AND status = 'running'",
                    &[&id, &t],
                )
                .map_err(e)?;
                c.execute("DELETE FROM leases WHERE name = 'run:' || $1::BIGINT", &[&id])
                    .map_err(e)?;
            }
            Ok(())
        })
    }

    fn leases(&self) -> Result<Vec<LeaseRow>> {
        self.call(|c, e| {
            Ok(c.query(
                "SELECT name, owner, expires_at FROM leases ORDER BY name",
                &[],
            )
            .map_err(e)?
            .iter()
            .map(|r| LeaseRow {
                name: r.get(0),
                owner: r.get(1),
                expires_at: r.get(2),
            })
            .collect())
        })
    }

    fn siem_sent_since(&self, source: &str, since_ms: i64) -> Result<HashSet<String>> {
        let source = source.to_owned();
        self.call(move |c, e| {
            Ok(c.query(
                "SELECT id FROM siem_sent WHERE source = $1 AND (event_ms = -1 OR event_ms >= $2)",
                &[&source, &since_ms],
            )
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
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
        let (source, cp_name, ids, cp, now_text) = (
            source.to_owned(),
            checkpoint_name.to_owned(),
            ids.to_vec(),
            checkpoint.map(str::to_owned),
            now_text.to_owned(),
        );
        self.call(move |c, e| {
            let mut tx = c.transaction().map_err(e)?;
            let (id_list, at_list): (Vec<String>, Vec<i64>) = ids.into_iter().unzip();
            tx.execute(
                "INSERT INTO siem_sent (source, event_ms, id, sent_ms)
                 SELECT $1, t.at, t.id, $2 FROM unnest($3::TEXT[], $4::BIGINT[]) AS t(id, at)
                 ON CONFLICT DO NOTHING",
                &[&source, &sent_ms, &id_list, &at_list],
            )
            .map_err(e)?;
            if let Some(cp) = cp {
                tx.execute(
                    "INSERT INTO checkpoints (name, value, updated_at) VALUES ($1, $2, $3)
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                     WHERE excluded.value > checkpoints.value",
                    &[&cp_name, &cp, &now_text],
                )
                .map_err(e)?;
            }
            tx.commit().map_err(e)
        })
    }

    fn siem_prune(&self, source: &str, before_ms: i64) -> Result<usize> {
        let source = source.to_owned();
        self.call(move |c, e| {
            c.execute(
                "DELETE FROM siem_sent WHERE source = $1 AND ((event_ms >= 0 AND event_ms < $2) OR (event_ms = -1 AND sent_ms < $2))",
                &[&source, &before_ms],
            )
            .map(|n| n as usize)
            .map_err(e)
        })
    }

    fn siem_remembered(&self, source: &str) -> Result<u64> {
        let source = source.to_owned();
        self.call(move |c, e| {
            c.query_one(
                "SELECT COUNT(*) FROM siem_sent WHERE source = $1",
                &[&source],
            )
            .map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .map_err(e)
        })
    }
}
