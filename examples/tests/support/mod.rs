//! What the tests of the `threatlocker-monitor` binary share: the simulators in the test
//! process, a scratch directory removed on drop, a configuration pointing at both, and the
//! binary's command with the simulators' secrets in its environment.

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use examples::sim::{ConnectWiseSim, CwCredentials, Dataset, PortalSim, SimConfig, DEMO_API_KEY};
use examples::state::{scratch_path, StateStore};

/// The monitor binary.
pub const MONITOR: &str = env!("CARGO_BIN_EXE_threatlocker-monitor");

/// The simulated Portal API (the demo story) and ConnectWise PSA, and a scratch directory.
pub struct Sims {
    pub portal: PortalSim,
    pub psa: ConnectWiseSim,
    pub dir: PathBuf,
}

impl Drop for Sims {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Sims {
    /// Starts both simulators, the Portal API with the demo story; `name` prefixes the scratch
    /// directory.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, SimConfig::story_only(chrono::Utc::now())).await
    }

    /// Starts both simulators, the Portal API with the tenant `sim` generates.
    pub async fn start_with(name: &str, sim: SimConfig) -> Self {
        let dir = scratch_path(name).with_extension("d");
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            portal: PortalSim::start(Dataset::generate(sim), DEMO_API_KEY).await,
            psa: ConnectWiseSim::start(CwCredentials::default()).await,
            dir,
        }
    }

    /// A configuration for the Portal API at `base_url` and the simulated PSA, then `extra`.
    pub fn config_for(&self, base_url: &str, extra: &str) -> String {
        format!(
            r#"[threatlocker]
base_url = "{base_url}"
max_requests_per_second = 500

[org_variables]
threatlocker_auto_approve_categories = ["Web Browsers", "Video Conferencing"]

[companies]
"*" = "250"

[psa]
kind = "connectwise"
base_url = "{}"
company_id = "msp"
public_key = "sim-public"
private_key_env = "CW_PRIVATE_KEY"
client_id_env = "CW_CLIENT_ID"

{extra}
"#,
            self.psa.uri()
        )
    }

    /// [`Sims::config_for`] the simulated Portal API.
    pub fn config(&self, extra: &str) -> String {
        self.config_for(&self.portal.uri(), extra)
    }

    /// The secrets the configuration names, as the binary's environment.
    pub fn env(&self) -> HashMap<String, String> {
        let creds = self.psa.credentials();
        HashMap::from([
            ("THREATLOCKER_API_KEY".to_owned(), DEMO_API_KEY.to_owned()),
            ("CW_PRIVATE_KEY".to_owned(), creds.private_key.clone()),
            ("CW_CLIENT_ID".to_owned(), creds.client_id.clone()),
        ])
    }

    /// Writes `text` to `name` in the scratch directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// The monitor with `args`, the secrets and `RUST_LOG=info`; stdin closed, output piped.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(MONITOR);
        c.args(args)
            .envs(self.env())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// [`Sims::command`] for the subcommand `sub` with `--config config`, then `extra`.
    pub fn command_for(&self, sub: &str, config: &Path, extra: &[&str]) -> Command {
        let mut c = self.command(&[sub, "--config"]);
        c.arg(config).args(extra);
        c
    }

    /// The state file the default configuration uses, read-only.
    pub fn state(&self) -> StateStore {
        StateStore::open_read_only(&self.dir.join("threatlocker-monitor.db")).unwrap()
    }

    /// Tickets in the PSA, checked to be one per dedupe key.
    pub fn unique_tickets(&self) -> usize {
        let tickets = self.psa.tickets();
        let keys: BTreeSet<_> = tickets.iter().map(|t| t.external_xref.clone()).collect();
        assert_eq!(
            keys.len(),
            tickets.len(),
            "one ticket per incident: {keys:?}"
        );
        tickets.len()
    }
}

/// Output bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends the signal `name` (`INT`, `TERM`, ...) to `child` with `kill`, which must succeed.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Runs `c` to completion off the async runtime's threads.
pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("the binary runs"))
        .await
        .unwrap()
}
