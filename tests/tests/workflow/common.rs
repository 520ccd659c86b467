//! Shared set-up: both simulators, a configuration pointing at them, a scratch state file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use examples::config::Config;
use examples::monitor::workflow::{RunOptions, RunOutput, Settings, Workflow};
use examples::sim::{ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::remove_sqlite_files;
use examples::state::testing::TestDatabase;
use examples::state::{scratch_path, StateStore};
use threatlocker_api::{Client, RetryPolicy, Sleeper};

/// A fixed "now" so every number is reproducible.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-05-14T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// A sleeper that does not wait (retries back off instantly in tests).
pub struct NoSleep;

impl Sleeper for NoSleep {
    fn sleep(
        &self,
        _delay: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        Box::pin(async {})
    }
}

/// Which state backend a harness uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A scratch SQLite file.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// Whether the test PostgreSQL server is reachable (a scratch database can be created). Under
/// CI an unreachable server panics; otherwise the skip is printed once.
pub fn postgres_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| TestDatabase::create().is_some())
}

/// Generates `<name>::sqlite` and `<name>::postgres` tests from `async fn <name>(Backend)`;
/// the PostgreSQL one returns at once (printed) when no server is reachable outside CI.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use super::super::common::{postgres_available, Backend};
            #[tokio::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                if postgres_available() {
                    super::$name(Backend::Postgres).await
                }
            }
        }
    )*};
}

/// Both simulators and a scratch state file (removed on drop) or database (dropped).
pub struct Harness {
    pub portal: PortalSim,
    pub psa: ConnectWiseSim,
    pub state_path: PathBuf,
    pub pg: Option<TestDatabase>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        remove_sqlite_files(&self.state_path);
    }
}

impl Harness {
    pub async fn start(sim: SimConfig) -> Self {
        Self {
            portal: PortalSim::start(Dataset::generate(sim), DEMO_API_KEY).await,
            psa: ConnectWiseSim::start(CwCredentials::default()).await,
            state_path: scratch_path("workflow-test"),
            pg: None,
        }
    }

    /// The story data set with state in `backend`.
    pub async fn story_on(backend: Backend) -> Self {
        let mut h = Self::story().await;
        if backend == Backend::Postgres {
            h.pg = Some(TestDatabase::create().expect("PostgreSQL is reachable"));
        }
        h
    }

    /// The `[state]` section's keys for this harness's backend.
    fn state_keys(&self) -> String {
        match &self.pg {
            Some(db) => format!("url = \"{}\"", db.url()),
            None => format!("path = \"{}\"", self.state_path.display()),
        }
    }

    /// The harness's state store, opened as `run` opens it.
    pub fn open_state(&self) -> StateStore {
        StateStore::open_config(&self.config(""), &self.env()).expect("the state store opens")
    }

    /// Loses the whole state (the file deleted, the database emptied).
    pub fn lose_state(&self) {
        match &self.pg {
            Some(db) => db.wipe(),
            None => remove_sqlite_files(&self.state_path),
        }
    }

    /// The story data set (22 events, 6 pending requests, 4 client organizations and the
    /// MSP's own).
    pub async fn story() -> Self {
        Self::start(SimConfig::story_only(now())).await
    }

    /// A configuration for these simulators; `extra` is appended to `[workflow]`.
    pub fn config_text(&self, workflow_extra: &str) -> String {
        format!(
            r#"
[threatlocker]
base_url = "{portal}"
max_requests_per_second = 1000
max_concurrency = 4

[workflow]
time_range_hours = 24
{workflow_extra}

[org_variables]
threatlocker_ticket_board = "ThreatLocker"
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing", "Utilities"]
threatlocker_block_alert_threshold = 3
threatlocker_notification_recipients = ["soc@msp.example"]

[companies]
"*" = "250"

[psa]
kind = "connectwise"
base_url = "{psa}"
company_id = "msp"
public_key = "sim-public"
private_key_env = "CW_PRIVATE_KEY"
client_id_env = "CW_CLIENT_ID"

[state]
{state}
"#,
            portal = self.portal.uri(),
            psa = self.psa.uri(),
            state = self.state_keys(),
        )
    }

    pub fn env(&self) -> HashMap<String, String> {
        let c = self.psa.credentials();
        [
            ("THREATLOCKER_API_KEY", DEMO_API_KEY.to_owned()),
            ("CW_PRIVATE_KEY", c.private_key.clone()),
            ("CW_CLIENT_ID", c.client_id.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn config(&self, workflow_extra: &str) -> Config {
        Config::from_toml_str(&self.config_text(workflow_extra), &std::env::temp_dir())
            .expect("test configuration is valid")
    }

    /// The workflow exactly as `run` builds it from the configuration.
    pub fn workflow(&self, workflow_extra: &str) -> Workflow {
        Workflow::from_config(&self.config(workflow_extra), &self.env()).expect("workflow builds")
    }

    /// One run at [`now`] of the workflow with `workflow_extra` in `[workflow]`; it must not
    /// stop with an error (a run with step errors still returns its report).
    pub async fn run(&self, workflow_extra: &str) -> RunOutput {
        self.workflow(workflow_extra)
            .run(RunOptions::new().now(now()))
            .await
            .expect("the run returns a report")
    }

    /// The workflow with a client that pages `page_size` rows at a time, retries `attempts`
    /// times without sleeping: for resilience tests.
    pub fn workflow_with_client(&self, page_size: u32, attempts: u32) -> Workflow {
        let config = self.config("");
        let client = Client::builder(DEMO_API_KEY)
            .base_url(self.portal.uri())
            .max_requests_per_second(1000.0)
            .max_concurrency(4)
            .page_size(page_size)
            .retry(RetryPolicy::with_max_attempts(attempts))
            .sleeper(Arc::new(NoSleep))
            .build()
            .unwrap();
        let engine = config.engine().unwrap();
        let state = Arc::new(self.open_state());
        let settings = Settings::new(config.workflow().clone())
            .companies(config.companies().clone())
            .concurrency(4);
        let sink = examples::connect::ticket_sink(&config, &self.env())
            .unwrap()
            .unwrap();
        Workflow::new(client, engine, state, settings).with_ticket_sink(sink)
    }

    /// External references of the tickets in the PSA, sorted.
    pub fn ticket_refs(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .psa
            .tickets()
            .into_iter()
            .filter_map(|t| t.external_xref)
            .collect();
        v.sort();
        v
    }
}

/// Asserts that no external reference appears twice in the PSA.
pub fn assert_unique(refs: &[String]) {
    let mut seen = std::collections::BTreeSet::new();
    for r in refs {
        assert!(seen.insert(r), "ticket {r} exists twice in the PSA");
    }
}

impl Harness {
    /// The workflow from a full configuration text (see [`Harness::config_text`]).
    pub fn workflow_from_text(&self, text: &str) -> Workflow {
        let config =
            Config::from_toml_str(text, &std::env::temp_dir()).expect("valid configuration");
        Workflow::from_config(&config, &self.env()).expect("workflow builds")
    }
}
