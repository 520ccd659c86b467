//! The state store's two backends and several runners sharing them: concurrent first starts,
//! the SQLite runner lock (exit 75), PostgreSQL organization leases and their expiry, intents
//! of a live run left alone, two `threatlocker-monitor run` processes started together, a
//! runner killed with SIGKILL mid-run and another finishing its work, the shared SIEM
//! checkpoint, `doctor`'s database checks, and the password kept out of every message.
//!
//! PostgreSQL tests use a fresh database each (see `examples::state::testing`); without a
//! server they are skipped (printed), under `CI=true` they fail.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use chrono::Utc;
use examples::config::{Config, Env};
use examples::siem::store::SentStore;
use examples::sim::SimConfig;
use examples::state::remove_sqlite_files;
use examples::state::testing::TestDatabase;
use examples::state::{scratch_path, IntentKind, IntentStatus, RunStatus, StateStore};
use serde_json::json;

mod support;

use support::{text, Sims};

/// Incidents with a ticket in the simulator's story tenant (one run opens each once).
const STORY_TICKETS: usize = 7;
/// Requests the story tenant's configuration auto-approves.
const STORY_PERMITS: usize = 3;

/// Prints a measurement past the test harness's capture (it shows with `--nocapture` or not).
fn measured(line: &str) {
    let _ = writeln!(std::io::stderr(), "measured: {line}");
}

/// Where a test's state lives.
enum Store {
    Sqlite(PathBuf),
    Postgres(TestDatabase),
}

impl Store {
    fn sqlite() -> Self {
        Self::Sqlite(scratch_path("state-test"))
    }

    fn postgres() -> Option<Self> {
        TestDatabase::create().map(Self::Postgres)
    }

    fn both() -> Vec<Self> {
        let mut v = vec![Self::sqlite()];
        v.extend(Self::postgres());
        v
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgresql",
        }
    }

    /// `[state]` keys for a configuration file.
    fn keys(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("path = \"{}\"", p.display()),
            Self::Postgres(db) => format!("url = \"{}\"", db.url()),
        }
    }

    fn open(&self) -> StateStore {
        match self {
            Self::Sqlite(p) => StateStore::open(p).unwrap(),
            Self::Postgres(db) => {
                StateStore::open_postgres(db.url(), None, Duration::from_secs(30)).unwrap()
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Self::Sqlite(p) = self {
            remove_sqlite_files(p);
        }
    }
}

struct NoEnv;
impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// The store on its own.

#[test]
fn concurrent_first_starts_create_the_schema_once() {
    for store in Store::both() {
        for trial in 0..3 {
            let store = match (&store, trial) {
                (Store::Sqlite(_), _) => Store::sqlite(),
                (Store::Postgres(_), _) => match Store::postgres() {
                    Some(s) => s,
                    None => return,
                },
            };
            let store = Arc::new(store);
            let barrier = Arc::new(Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        barrier.wait();
                        match &*store {
                            Store::Sqlite(p) => StateStore::open(p).map(|s| s.schema_version()),
                            Store::Postgres(db) => {
                                StateStore::open_postgres(db.url(), None, Duration::from_secs(30))
                                    .map(|s| s.schema_version())
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                let version = h.join().unwrap();
                let version = version.unwrap_or_else(|e| {
                    panic!("{}: a concurrent first start failed: {e}", store.name())
                });
                assert_eq!(version.unwrap(), examples::state::SCHEMA_VERSION);
            }
        }
    }
}

#[test]
fn a_second_runner_on_a_sqlite_file_waits_then_is_busy() {
    let store = Store::sqlite();
    let (a, b) = (store.open(), store.open());
    let now = Utc::now();
    let run = a.begin_run(now, now, false).unwrap();
    b.set_lock_timeout(Duration::from_millis(400));
    let started = Instant::now();
    let err = b.begin_run(now, now, false).unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(err.to_string().contains("another run holds"), "{err}");
    a.finish_run(run, RunStatus::Succeeded, None, None).unwrap();
    let run_b = b.begin_run(now, now, false).unwrap();
    b.finish_run(run_b, RunStatus::Succeeded, None, None)
        .unwrap();
}

#[test]
fn a_run_left_running_by_a_dropped_store_is_marked_interrupted() {
    for store in Store::both() {
        let now = Utc::now();
        let a = store.open();
        let dead = a.begin_run(now, now, false).unwrap();
        a.begin_intent(IntentKind::Ticket, "t", &json!({"x": 1}), Some(dead))
            .unwrap();
        drop(a); // the owner is gone (as a killed process)
        let b = store.open();
        let run = b.begin_run(now, now, false).unwrap();
        let runs = b.recent_runs(5).unwrap();
        let old = runs.iter().find(|r| r.id == dead).unwrap();
        assert_eq!(old.status, RunStatus::Interrupted, "{}", store.name());
        // Its intent is now reconciled (claimed for the new run).
        let claimed = b
            .claim_orphaned_intents(IntentKind::Ticket, Some(run))
            .unwrap();
        assert_eq!(claimed.len(), 1, "{}", store.name());
        assert_eq!(claimed[0].run_id, Some(run));
    }
}

#[test]
fn an_intent_of_a_live_run_is_left_to_it() {
    let Some(store) = Store::postgres() else {
        return;
    };
    let now = Utc::now();
    let (a, b) = (store.open(), store.open());
    let run_a = a.begin_run(now, now, false).unwrap();
    let run_b = b.begin_run(now, now, false).unwrap();
    assert_eq!(
        a.begin_intent(IntentKind::Ticket, "ticket:k", &json!(1), Some(run_a))
            .unwrap(),
        IntentStatus::New
    );
    // B may not reconcile it while A is alive: it waits, then gives up.
    b.set_lock_timeout(Duration::from_millis(300));
    let err = b
        .begin_intent(IntentKind::Ticket, "ticket:k", &json!(1), Some(run_b))
        .unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(b
        .claim_orphaned_intents(IntentKind::Ticket, Some(run_b))
        .unwrap()
        .is_empty());
    // Once A is done with it, B sees the result.
    a.complete_intent("ticket:k", Some("42")).unwrap();
    assert_eq!(
        b.begin_intent(IntentKind::Ticket, "ticket:k", &json!(1), Some(run_b))
            .unwrap(),
        IntentStatus::AlreadyDone(Some("42".into()))
    );
    // A second intent, and A dies: B reconciles it at once.
    a.begin_intent(IntentKind::Ticket, "ticket:j", &json!(2), Some(run_a))
        .unwrap();
    drop(a);
    assert!(matches!(
        b.begin_intent(IntentKind::Ticket, "ticket:j", &json!(2), Some(run_b))
            .unwrap(),
        IntentStatus::Unfinished { .. }
    ));
}

/// Runs `sql` against the test database (on a thread: the client cannot run in a runtime).
fn sql(db: &TestDatabase, sql: String) {
    let url = db.url().to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.batch_execute(&sql).unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn organization_leases_are_exclusive_and_expire() {
    let Some(store) = Store::postgres() else {
        return;
    };
    let Store::Postgres(db) = &store else {
        unreachable!()
    };
    let now = Utc::now();
    let (a, b) = (store.open(), store.open());
    let run_a = a.begin_run(now, now, false).unwrap();
    let run_b = b.begin_run(now, now, false).unwrap();
    let la = a.lease_organizations(run_a, ["o1", "o2"]).unwrap();
    assert_eq!(la.leased.len(), 2);
    let lb = b.lease_organizations(run_b, ["o2", "o3"]).unwrap();
    assert_eq!(lb.leased.iter().collect::<Vec<_>>(), ["o3"]);
    assert_eq!(lb.skipped.len(), 1);
    assert_eq!(lb.skipped[0].0, "o2");
    assert_eq!(lb.skipped[0].1, a.owner());
    // A finishes: its leases are free.
    a.finish_run(run_a, RunStatus::Succeeded, None, None)
        .unwrap();
    assert!(b
        .lease_organizations(run_b, ["o2"])
        .unwrap()
        .leased
        .contains("o2"));

    // A runner on another host that stopped renewing: its lease is free once it expires.
    let ttl = Duration::from_secs(3);
    sql(
        db,
        format!(
            "INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES
             ('org:o9', 'another-host/1/1/0', '{t}', to_char((clock_timestamp() + interval '{s} seconds') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'))",
            t = now.to_rfc3339(),
            s = ttl.as_secs()
        ),
    );
    assert_eq!(
        b.lease_organizations(run_b, ["o9"]).unwrap().skipped.len(),
        1
    );
    b.set_lease_wait(Duration::from_secs(20));
    let started = Instant::now();
    let got = b.lease_organizations(run_b, ["o9"]).unwrap();
    let took = started.elapsed();
    assert!(got.leased.contains("o9"));
    assert!(took <= ttl + Duration::from_secs(2), "{took:?}");
    measured(&format!(
        "a lease left by a runner on another host was taken over {:.2}s after the wait began (lease ttl {}s)",
        took.as_secs_f64(),
        ttl.as_secs()
    ));
}

#[test]
fn the_siem_checkpoint_is_shared_by_a_standby_forwarder() {
    for store in Store::both() {
        let first = SentStore::new(Arc::new(store.open()));
        let standby = SentStore::new(Arc::new(store.open()));
        let t = |m| chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 5, 14, 12, m, 0).unwrap();
        first
            .commit_batch(
                "action_log",
                [("1", Some(t(1))), ("2", Some(t(2)))],
                Some(t(2)),
                t(30),
            )
            .unwrap();
        assert_eq!(
            standby.checkpoint("action_log").unwrap(),
            Some(t(2)),
            "{}",
            store.name()
        );
        assert_eq!(standby.sent_since("action_log", t(2)).unwrap().len(), 1);
        // Never backwards, whoever writes.
        standby
            .commit_batch("action_log", [("1", Some(t(1)))], Some(t(1)), t(31))
            .unwrap();
        assert_eq!(first.checkpoint("action_log").unwrap(), Some(t(2)));
        assert_eq!(first.remembered("action_log").unwrap(), 2);
    }
}

fn minimal_config(state_keys: &str) -> Config {
    let text =
        format!("[threatlocker]\nbase_url = \"http://127.0.0.1:9\"\n\n[state]\n{state_keys}\n");
    Config::from_toml_str(&text, &std::env::temp_dir()).unwrap()
}

#[test]
fn doctor_checks_the_database() {
    let Some(store) = Store::postgres() else {
        return;
    };
    drop(store.open()); // migrated
    let checks = examples::state::doctor_checks(&minimal_config(&store.keys()), &NoEnv);
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["state database", "state schema", "state leases"]);
    assert!(checks.iter().all(|c| c.outcome.is_ok()), "{checks:?}");
    assert!(checks[1].outcome.as_ref().unwrap().contains("version 2"));

    let down = examples::state::doctor_checks(
        &minimal_config("url = \"postgres://postgres@127.0.0.1:1/nowhere\""),
        &NoEnv,
    );
    assert_eq!(down.len(), 1);
    let (problem, fix) = down[0].outcome.clone().unwrap_err();
    assert!(problem.contains("127.0.0.1:1"), "{problem}");
    assert!(fix.contains("[state] url"), "{fix}");
}

#[test]
fn the_database_password_appears_in_no_message() {
    let secret = "pw-Zq81-never-shown";
    let config = minimal_config(&format!(
        "url = \"postgres://monitor:{secret}@127.0.0.1:1/state\""
    ));
    assert!(!format!("{config:?}").contains(secret));
    let err = StateStore::open_config(&config, &NoEnv).unwrap_err();
    assert!(!err.to_string().contains(secret), "{err}");
    assert!(!format!("{err:?}").contains(secret));
    struct PwEnv;
    impl Env for PwEnv {
        fn var(&self, name: &str) -> Option<String> {
            (name == "STATE_PW").then(|| "env-pw-Zq81".to_owned())
        }
    }
    let config = minimal_config(
        "url = \"postgres://monitor@127.0.0.1:1/state\"\npassword_env = \"STATE_PW\"",
    );
    let err = StateStore::open_config(&config, &PwEnv).unwrap_err();
    assert!(!format!("{err} {err:?} {config:?}").contains("env-pw-Zq81"));
    // A bad URL is named by its key, not echoed.
    let text = format!(
        "[threatlocker]\nbase_url = \"http://127.0.0.1:9\"\n[state]\nurl = \"mysql://u:{secret}@h/db\"\n"
    );
    let err = Config::from_toml_str(&text, &std::env::temp_dir()).unwrap_err();
    assert!(err.to_string().contains("state.url"), "{err}");
    assert!(!err.to_string().contains(secret), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Runner processes against the simulators.

/// The runner processes' configuration and commands.
impl Sims {
    /// A configuration file for `store`, with `extra_state` in its `[state]` section.
    fn state_config(&self, store: &Store, extra_state: &str) -> PathBuf {
        let text = self.config(&format!("[state]\n{}\n{extra_state}\n", store.keys()));
        self.write(&format!("config-{}.toml", fastrand::u32(..)), &text)
    }

    /// `run` with `config` and `extra` arguments.
    fn runner(&self, config: &Path, extra: &[&str]) -> Command {
        self.command_for("run", config, extra)
    }

    /// Tickets opened more than once for one incident, and requests permitted more than once.
    fn duplicates(&self) -> (usize, usize) {
        let mut refs: BTreeMap<String, usize> = BTreeMap::new();
        for t in self.psa.tickets() {
            *refs.entry(t.external_xref.unwrap_or_default()).or_default() += 1;
        }
        let mut permits: BTreeMap<String, usize> = BTreeMap::new();
        for p in self.portal.permits() {
            *permits.entry(p.approval_request_id).or_default() += 1;
        }
        (
            refs.values().map(|n| n - 1).sum(),
            permits.values().map(|n| n - 1).sum(),
        )
    }
}

async fn wait(child: std::process::Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

const TRIALS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_started_together_open_no_duplicate() {
    for backend in ["sqlite", "postgresql"] {
        let (mut dup_tickets, mut dup_permits, mut trials, mut contended) = (0, 0, 0, 0);
        for _ in 0..TRIALS {
            let store = match backend {
                "sqlite" => Store::sqlite(),
                _ => match Store::postgres() {
                    Some(s) => s,
                    None => break,
                },
            };
            let t = Sims::start("state-proc").await;
            // A PSA answering in 100 ms keeps the two runs overlapping while they act.
            t.psa.set_latency(Duration::from_millis(100));
            let cfg = t.state_config(&store, "");
            let (a, b) = (
                t.runner(&cfg, &[]).spawn().unwrap(),
                t.runner(&cfg, &[]).spawn().unwrap(),
            );
            let (a, b) = (wait(a).await, wait(b).await);
            let mut skipped = false;
            for out in [&a, &b] {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "{backend}: {}",
                    text(&out.stderr)
                );
                let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(report["success"], true, "{backend}: {report}");
                skipped |= report.get("leased_elsewhere").is_some();
            }
            contended += usize::from(skipped);
            let (dt, dp) = t.duplicates();
            dup_tickets += dt;
            dup_permits += dp;
            trials += 1;
            assert_eq!(
                t.psa.tickets().len() - dt,
                STORY_TICKETS,
                "{backend}: every incident has its ticket"
            );
            assert_eq!(
                t.portal.permits().len() - dp,
                STORY_PERMITS,
                "{backend}: every auto-approved request permitted"
            );
        }
        if trials > 0 {
            measured(&format!(
                "{backend}: {trials} trials of two runners started together ({contended} with organizations left to the other runner): {dup_tickets} duplicate tickets, {dup_permits} duplicate permits"
            ));
        }
        assert_eq!((dup_tickets, dup_permits), (0, 0), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_run_is_taken_over_by_the_next() {
    for backend in ["sqlite", "postgresql"] {
        let store = match backend {
            "sqlite" => Store::sqlite(),
            _ => match Store::postgres() {
                Some(s) => s,
                None => return,
            },
        };
        let t = Sims::start("state-proc").await;
        // A slow PSA: the first runner is still opening tickets when it is killed.
        t.psa.set_latency(Duration::from_millis(250));
        let cfg = t.state_config(&store, "");
        let mut a = t.runner(&cfg, &[]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while t.psa.tickets().is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let opened_before = t.psa.tickets().len();
        assert!(
            (1..6).contains(&opened_before),
            "{backend}: killed mid-run ({opened_before})"
        );
        a.kill().unwrap(); // SIGKILL
        let killed_at = Instant::now();
        let _ = wait(a).await;
        t.psa.set_latency(Duration::ZERO);
        let b = wait(t.runner(&cfg, &[]).spawn().unwrap()).await;
        let took = killed_at.elapsed();
        assert_eq!(b.status.code(), Some(0), "{backend}: {}", text(&b.stderr));
        let report: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
        assert_eq!(report["success"], true, "{backend}: {report}");
        assert_eq!(t.duplicates(), (0, 0), "{backend}");
        assert_eq!(t.psa.tickets().len(), STORY_TICKETS, "{backend}");
        let state = store.open();
        let runs = state.recent_runs(5).unwrap();
        assert!(
            runs.iter().any(|r| r.status == RunStatus::Interrupted),
            "{backend}: the killed run is marked interrupted: {runs:?}"
        );
        assert!(state.unfinished_intents().unwrap().is_empty(), "{backend}");
        measured(&format!(
            "{backend}: runner SIGKILLed after {opened_before} of 6 tickets; the next runner finished its work {:.2}s after the kill",
            took.as_secs_f64()
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_standby_takes_over_from_a_runner_killed_mid_run() {
    let Some(store) = Store::postgres() else {
        return;
    };
    let t = Sims::start("state-proc").await;
    t.psa.set_latency(Duration::from_millis(1000));
    let active = t.state_config(&store, "");
    let standby = t.state_config(&store, "lease_wait = \"60s\"");
    let mut a = t.runner(&active, &[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while t.psa.tickets().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The standby starts while the active runner holds the organizations, and waits for them.
    let b = t.runner(&standby, &[]).spawn().unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let opened_before = t.psa.tickets().len();
    assert!(
        opened_before < STORY_TICKETS,
        "killed mid-run ({opened_before})"
    );
    a.kill().unwrap(); // SIGKILL
    let killed_at = Instant::now();
    let _ = wait(a).await;
    let b = wait(b).await;
    let took = killed_at.elapsed();
    let err = text(&b.stderr);
    assert!(err.contains("taking over"), "{err}");
    assert_eq!(t.duplicates(), (0, 0), "{err}");
    assert_eq!(t.psa.tickets().len(), STORY_TICKETS, "{err}");
    assert_eq!(b.status.code(), Some(0), "{err}");
    assert!(store.open().unfinished_intents().unwrap().is_empty());
    measured(&format!(
        "postgresql: a waiting standby finished the work of a runner SIGKILLed after {opened_before} of 6 tickets {:.2}s after the kill (PSA answering in 1 s)",
        took.as_secs_f64()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_on_a_new_postgres_database_writes_nothing() {
    let Some(store) = Store::postgres() else {
        return;
    };
    let Store::Postgres(db) = &store else {
        unreachable!()
    };
    let t = Sims::start("state-proc").await;
    let cfg = t.state_config(&store, "");
    let out = wait(t.runner(&cfg, &["--dry-run"]).spawn().unwrap()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!report["planned_writes"].as_array().unwrap().is_empty());
    let url = db.url().to_owned();
    let tables: i64 = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        c.query_one(
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .unwrap()
        .get(0)
    })
    .join()
    .unwrap();
    assert_eq!(tables, 0, "a dry run creates nothing");
    assert!(t.psa.tickets().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_skips_a_tick_it_cannot_lock_and_says_so() {
    let store = Store::sqlite();
    let t = Sims::start("state-proc").await;
    let cfg = t.state_config(&store, "lock_timeout = \"0s\"");
    let holder = store.open();
    let now = Utc::now();
    let run = holder.begin_run(now, now, false).unwrap();
    let mut c = t.command_for("watch", &cfg, &["--interval", "10s"]);
    let child = c.spawn().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = wait(child).await;
    let err = text(&out.stderr);
    assert!(err.contains("another run holds"), "{err}");
    assert!(t.psa.tickets().is_empty(), "the tick was skipped");
    assert_eq!(out.status.code(), Some(0), "{err}");
    holder
        .finish_run(run, RunStatus::Succeeded, None, None)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_on_a_held_sqlite_file_exits_75_after_the_lock_timeout() {
    let store = Store::sqlite();
    let t = Sims::start("state-proc").await;
    let cfg = t.state_config(&store, "");
    let holder = store.open();
    let now = Utc::now();
    let run = holder.begin_run(now, now, false).unwrap();
    let started = Instant::now();
    let out = wait(t.runner(&cfg, &["--lock-timeout", "1s"]).spawn().unwrap()).await;
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        text(&out.stderr).contains("another run holds"),
        "{}",
        text(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["success"], false);
    assert!(t.psa.tickets().is_empty(), "nothing was done");
    holder
        .finish_run(run, RunStatus::Succeeded, None, None)
        .unwrap();
    let out = wait(t.runner(&cfg, &["--lock-timeout", "1s"]).spawn().unwrap()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The cost of one run on each backend, on the same simulated tenants (medians of 3). Run it
/// with `cargo test -p examples --test state -- --ignored --nocapture run_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn run_cost_on_each_backend() {
    type Tenants = [(&'static str, fn() -> SimConfig); 2];
    let tenants: Tenants = [
        ("the story tenant", || SimConfig::story_only(Utc::now())),
        ("50 organizations, 20,000 events", || {
            SimConfig::scale(50, 20_000, Utc::now())
        }),
    ];
    for (tenant, sim) in tenants {
        for backend in ["sqlite", "postgresql"] {
            let mut secs = Vec::new();
            let mut effects = 0;
            for _ in 0..3 {
                let store = match backend {
                    "sqlite" => Store::sqlite(),
                    _ => match Store::postgres() {
                        Some(s) => s,
                        None => return,
                    },
                };
                let t = Sims::start_with("state-proc", sim()).await;
                let cfg = t.state_config(&store, "");
                let started = Instant::now();
                let out = wait(t.runner(&cfg, &[]).spawn().unwrap()).await;
                secs.push(started.elapsed().as_secs_f64());
                assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
                effects = store.open().intents(None, None).unwrap().len();
            }
            secs.sort_by(f64::total_cmp);
            measured(&format!(
                "{backend}, {tenant} ({effects} side effects): one run as a process, median of 3: {:.3}s ({secs:.3?})",
                secs[1]
            ));
        }
    }
}
