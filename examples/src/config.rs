//! The TOML configuration shared by `threatlocker-monitor`, `tl-investigate` and `siem-forward`.
//!
//! Every key has a fixed name; unknown keys and wrong types are errors that name the key (with
//! its line). Secrets never live in the file: each one is named by a `*_env` key and read from
//! the environment when a client is built, through the [`Env`] trait so tests can supply their
//! own environment.
//!
//! ```toml
//! [threatlocker]
//! instance = "g"                       # or base_url = "https://..."
//! api_key_env = "THREATLOCKER_API_KEY" # default
//!
//! [workflow]
//! time_range_hours = 24
//!
//! [org_variables]
//! threatlocker_ticket_board = "ThreatLocker"
//! threatlocker_auto_approve_categories = ["Web Browsers"]
//! threatlocker_block_alert_threshold = 3
//! threatlocker_notification_recipients = ["soc@msp.example"]
//!
//! [companies]
//! "*" = "250"
//!
//! [psa]
//! kind = "none"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use threatlocker_api::OrganizationId;

/// The default name of the environment variable holding the ThreatLocker API key.
pub const DEFAULT_API_KEY_ENV: &str = "THREATLOCKER_API_KEY";
/// The default state file name, placed beside the configuration file.
pub const DEFAULT_STATE_FILE: &str = "threatlocker-monitor.db";
/// The company-mapping key that catches every organization not listed.
pub const CATCH_ALL: &str = "*";

/// Where configuration values and secrets come from besides the file: environment variables.
///
/// The process environment is [`ProcessEnv`]; tests pass a `HashMap<String, String>`.
pub trait Env {
    /// The value of variable `name`, if it is set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A configuration problem. Every variant names the key concerned; none ever contains a secret
/// value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type.
    #[error("{}{}{message}{}", file.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default(), line.map(|l| format!(" (line {l})")).unwrap_or_default())]
    Parse {
        /// The file, when loaded from one.
        file: Option<PathBuf>,
        /// The dotted key path (`threatlocker.max_requests_per_second`), when known.
        key: Option<String>,
        /// The 1-based line of the offending value, when known.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("key `{key}`: {message}")]
    Invalid {
        /// The dotted key path.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A secret's environment variable is not set.
    #[error(
        "key `{key}` names the environment variable {var}, which is not set (export {var}=...)"
    )]
    MissingEnv {
        /// The `*_env` key naming the variable.
        key: String,
        /// The variable name.
        var: String,
    },
    /// A secret's environment variable is set but empty (or only blanks).
    #[error(
        "key `{key}` names the environment variable {var}, which is empty (export {var}=... with the value)"
    )]
    EmptyEnv {
        /// The `*_env` key naming the variable.
        key: String,
        /// The variable name.
        var: String,
    },
    /// An error about a key of a configuration file, with the file named.
    #[error("{}: {error}", file.display())]
    InFile {
        /// The configuration file.
        file: PathBuf,
        /// The error (naming the key).
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The dotted key path the error concerns, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Read { .. } => None,
            Self::Parse { key, .. } => key.as_deref(),
            Self::Invalid { key, .. }
            | Self::MissingEnv { key, .. }
            | Self::EmptyEnv { key, .. } => Some(key),
            Self::InFile { error, .. } => error.key(),
        }
    }

    /// The error without the file it was found in (the variant that says what is wrong).
    pub fn inner(&self) -> &ConfigError {
        match self {
            Self::InFile { error, .. } => error.inner(),
            other => other,
        }
    }

    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// Names `path` as the file the error is in (once).
    pub(crate) fn with_file(mut self, path: &Path) -> Self {
        match &mut self {
            Self::Parse { file, .. } => {
                file.get_or_insert_with(|| path.to_path_buf());
                self
            }
            Self::Read { .. } | Self::InFile { .. } => self,
            _ => Self::InFile {
                file: path.to_path_buf(),
                error: Box::new(self),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw file shape (serde), converted into the validated `Config`.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    threatlocker: RawThreatLocker,
    #[serde(default)]
    workflow: WorkflowConfig,
    #[serde(default)]
    org_variables: toml::Table,
    #[serde(default)]
    org_overrides: Option<toml::Table>,
    #[serde(default)]
    rules: Option<toml::Table>,
    #[serde(default)]
    companies: BTreeMap<String, String>,
    #[serde(default)]
    psa: Option<toml::Table>,
    #[serde(default)]
    notify: NotifyConfig,
    #[serde(default)]
    state: RawState,
    #[serde(default)]
    siem: Option<toml::Table>,
    #[serde(default)]
    report: Option<toml::Table>,
    #[serde(default)]
    investigate: Option<toml::Table>,
    #[serde(default)]
    watch: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThreatLocker {
    instance: Option<String>,
    base_url: Option<String>,
    #[serde(default = "default_api_key_env")]
    api_key_env: String,
    organization_id: Option<String>,
    #[serde(default = "yes")]
    include_child_organizations: bool,
    max_requests_per_second: Option<f64>,
    max_concurrency: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    path: Option<PathBuf>,
    url: Option<String>,
    password_env: Option<String>,
    lease_ttl: Option<String>,
    lease_wait: Option<String>,
    lock_timeout: Option<String>,
}

fn default_api_key_env() -> String {
    DEFAULT_API_KEY_ENV.to_owned()
}

fn yes() -> bool {
    true
}

fn default_hours() -> u32 {
    24
}

// ---------------------------------------------------------------------------------------------
// The validated configuration.

/// A loaded, validated configuration. Build with [`Config::load`] or [`Config::from_toml_str`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from (named in errors), if any.
    file: Option<PathBuf>,
    base_dir: PathBuf,
    threatlocker: ThreatLockerConfig,
    workflow: WorkflowConfig,
    org_variables: toml::Table,
    org_overrides: Option<toml::Table>,
    rules: Option<toml::Table>,
    companies: CompanyMap,
    psa: PsaConfig,
    /// Whether the file has a `[psa]` section (absent is not the same as `kind = "none"`).
    psa_written: bool,
    notify: NotifyConfig,
    state_path: PathBuf,
    state: StateConfig,
    extensions: BTreeMap<&'static str, toml::Table>,
}

/// `[state]`: where the exactly-once state lives and how runners share it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StateConfig {
    /// SQLite (the default, `path`) or PostgreSQL (`url`).
    pub backend: StateBackendConfig,
    /// `lease_ttl`: how long a lease lives without renewal (default 30s); a killed runner's
    /// leases are free after it.
    pub lease_ttl: std::time::Duration,
    /// `lease_wait`: how long a runner waits for an organization another runner holds before
    /// skipping it (default 0s: skip at once). PostgreSQL only.
    pub lease_wait: std::time::Duration,
    /// `lock_timeout` (the `--lock-timeout` flag overrides it): how long a run waits for the
    /// state another run holds (SQLite: the whole file) before giving up with exit 75
    /// (default 5m).
    pub lock_timeout: std::time::Duration,
}

/// Which database holds the state.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StateBackendConfig {
    /// The embedded SQLite file at [`Config::state_path`].
    Sqlite,
    /// A PostgreSQL database shared by several runners.
    Postgres {
        /// `url`: `postgres://user@host:5432/db` (a password in it is kept secret).
        url: SecretUrl,
        /// `password_env`: the environment variable holding the password.
        password_env: Option<String>,
    },
}

/// A URL that may embed a password: `Debug` shows it without the password.
#[derive(Clone)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The full URL, password included (only for connecting).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its password.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) => {
                if u.password().is_some() {
                    let _ = u.set_password(Some("redacted"));
                }
                u.to_string()
            }
            Err(_) => "[unparsable URL]".into(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

fn state_duration(
    key: &str,
    value: Option<&str>,
    default: std::time::Duration,
    min: std::time::Duration,
    max: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    let Some(v) = value else { return Ok(default) };
    crate::time::parse_bounded_duration(v, min, max).map_err(|m| ConfigError::invalid(key, m))
}

fn state_config(raw: &RawState) -> Result<StateConfig, ConfigError> {
    use std::time::Duration as D;
    let backend = match &raw.url {
        None => {
            if raw.password_env.is_some() {
                return Err(ConfigError::invalid(
                    "state.password_env",
                    "is only used with state.url (PostgreSQL)",
                ));
            }
            StateBackendConfig::Sqlite
        }
        Some(url) => {
            if raw.path.is_some() {
                return Err(ConfigError::invalid(
                    "state.url",
                    "set either state.path (SQLite) or state.url (PostgreSQL), not both",
                ));
            }
            // The URL may hold a password: errors describe it without repeating it.
            let parsed = url::Url::parse(url).map_err(|e| {
                ConfigError::invalid(
                    "state.url",
                    format!("is not a URL ({e}); expected postgres://user@host:5432/db"),
                )
            })?;
            if !matches!(parsed.scheme(), "postgres" | "postgresql") {
                return Err(ConfigError::invalid(
                    "state.url",
                    format!(
                        "scheme {:?} is not supported; expected postgres://user@host:5432/db",
                        parsed.scheme()
                    ),
                ));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(ConfigError::invalid(
                    "state.url",
                    "names no host; expected postgres://user@host:5432/db",
                ));
            }
            if let Some(var) = &raw.password_env {
                check_env_name("state.password_env", var)?;
            }
            StateBackendConfig::Postgres {
                url: SecretUrl(url.clone()),
                password_env: raw.password_env.clone(),
            }
        }
    };
    Ok(StateConfig {
        backend,
        lease_ttl: state_duration(
            "state.lease_ttl",
            raw.lease_ttl.as_deref(),
            crate::state::DEFAULT_LEASE_TTL,
            D::from_secs(2),
            D::from_secs(600),
        )?,
        lease_wait: state_duration(
            "state.lease_wait",
            raw.lease_wait.as_deref(),
            D::ZERO,
            D::ZERO,
            D::from_secs(3600),
        )?,
        lock_timeout: state_duration(
            "state.lock_timeout",
            raw.lock_timeout.as_deref(),
            crate::state::DEFAULT_LOCK_TIMEOUT,
            D::ZERO,
            D::from_secs(24 * 3600),
        )?,
    })
}

/// Where the ThreatLocker Portal API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An instance letter (`g` → `https://portalapi.g.threatlocker.com`).
    Instance(String),
    /// An explicit base URL (the beta portal, a proxy, a local simulator; `http` on loopback).
    BaseUrl(String),
}

/// `[threatlocker]`: the Portal API connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ThreatLockerConfig {
    /// `instance` or `base_url`.
    pub endpoint: Endpoint,
    /// `api_key_env`: the environment variable holding the API key.
    pub api_key_env: String,
    /// `organization_id`: the organization to act as (`managedOrganizationId`); default the API
    /// user's own.
    pub organization_id: Option<OrganizationId>,
    /// `include_child_organizations` (default true): read every child organization.
    pub include_child_organizations: bool,
    /// `max_requests_per_second`: the client-side rate limit (default the client's, 10/s).
    pub max_requests_per_second: Option<f64>,
    /// `max_concurrency`: requests in flight at once (default the client's, 8).
    pub max_concurrency: Option<usize>,
}

/// `[workflow]`: the original workflow's inputs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WorkflowConfig {
    /// `company_id`: only organizations mapped to this PSA company (see `[companies]`).
    #[serde(default)]
    pub company_id: Option<String>,
    /// `event_types`: restrict the run to these event types. ThreatLocker action types
    /// (`execute`, `install`, `network`, ...) narrow the action-log search; detection types
    /// (`suspicious_execution`, `lolbin_execution`, ...) narrow the security events reported and
    /// ticketed. Empty = everything.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// `time_range_hours` (default 24): the window, ending at the run's start.
    #[serde(default = "default_hours")]
    pub time_range_hours: u32,
    /// `process_approvals` (default true): fetch pending requests and auto-approve.
    #[serde(default = "yes")]
    pub process_approvals: bool,
    /// `monitor_blocks` (default true): analyse blocks and detect patterns.
    #[serde(default = "yes")]
    pub monitor_blocks: bool,
    /// `create_tickets` (default true): open or update PSA tickets.
    #[serde(default = "yes")]
    pub create_tickets: bool,
    /// `dry_run` (default false): perform no write anywhere; show what would be done.
    #[serde(default)]
    pub dry_run: bool,
    /// `deadline` (default 15m): the whole run's time budget. Past it the run stops at a safe
    /// point, reports what it did (`success: false`, an error of kind `deadline`) and leaves
    /// the rest (the window stays not done) to the next run.
    #[serde(default = "default_deadline", deserialize_with = "de_deadline")]
    pub deadline: std::time::Duration,
    /// `overlap` (default `2h`): each run reads the action log from the previous run's
    /// high-water mark minus this much (rows computers upload late), and takes the older part of
    /// the window from per-hour aggregates kept in the state store. `0s` trusts the kept hours
    /// up to the high-water mark; `run --full` re-reads the whole window.
    #[serde(default = "default_overlap")]
    pub overlap: String,
}

fn default_overlap() -> String {
    "2h".to_owned()
}

/// The default whole-run deadline: 15 minutes.
pub const DEFAULT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn default_deadline() -> std::time::Duration {
    DEFAULT_DEADLINE
}

/// Parses a run deadline such as `15m`, `90s` or `1h` (at least one second).
pub fn parse_deadline(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration: {e} (use e.g. 15m, 90s, 1h)"))?;
    if d < std::time::Duration::from_secs(1) {
        return Err(format!(
            "{s:?} is too short: the deadline must be at least 1s"
        ));
    }
    Ok(d)
}

fn de_deadline<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_deadline(&s).map_err(serde::de::Error::custom)
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            company_id: None,
            event_types: Vec::new(),
            time_range_hours: default_hours(),
            process_approvals: true,
            monitor_blocks: true,
            create_tickets: true,
            dry_run: false,
            deadline: DEFAULT_DEADLINE,
            overlap: default_overlap(),
        }
    }
}

/// ThreatLocker action types accepted in `workflow.event_types` (narrow the action-log search).
pub const ACTION_TYPES: &[&str] = &[
    "execute",
    "install",
    "network",
    "registry",
    "read",
    "write",
    "move",
    "delete",
    "baseline",
    "powershell",
    "elevate",
    "configuration",
    "dns",
];

impl WorkflowConfig {
    /// The entries of `event_types` that are ThreatLocker action types.
    pub fn action_types(&self) -> Vec<String> {
        self.event_types
            .iter()
            .filter(|t| ACTION_TYPES.contains(&t.as_str()))
            .cloned()
            .collect()
    }

    /// `overlap` as a duration (validated when the configuration is read; 2 hours if not).
    pub fn overlap(&self) -> chrono::Duration {
        humantime::parse_duration(self.overlap.trim())
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .unwrap_or_else(|| chrono::Duration::hours(2))
    }

    /// The entries of `event_types` that are detection types (everything else).
    pub fn detection_types(&self) -> Vec<String> {
        self.event_types
            .iter()
            .filter(|t| !ACTION_TYPES.contains(&t.as_str()))
            .cloned()
            .collect()
    }
}

/// `[companies]`: ThreatLocker organization id → PSA company id, with `"*"` as the catch-all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompanyMap {
    by_org: BTreeMap<String, String>,
    catch_all: Option<String>,
}

impl CompanyMap {
    /// Builds a map from `(organization id, company id)` pairs; the key `"*"` is the catch-all.
    pub fn new(entries: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut map = Self::default();
        for (org, company) in entries {
            if org == CATCH_ALL {
                map.catch_all = Some(company);
            } else {
                map.by_org.insert(org.to_ascii_lowercase(), company);
            }
        }
        map
    }

    /// The PSA company for an organization: its own entry, else the catch-all.
    pub fn company_for(&self, org: &str) -> Option<&str> {
        self.by_org
            .get(&org.to_ascii_lowercase())
            .or(self.catch_all.as_ref())
            .map(String::as_str)
    }

    /// The catch-all company, if configured.
    pub fn catch_all(&self) -> Option<&str> {
        self.catch_all.as_deref()
    }

    /// The explicit entries (organization id, lower-cased → company id).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_org.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.by_org.is_empty() && self.catch_all.is_none()
    }
}

/// `[psa]`: the ticketing backend, selected by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PsaConfig {
    /// `kind = "none"` (or no `[psa]` section): no tickets are sent anywhere.
    #[default]
    None,
    /// `kind = "connectwise"`.
    ConnectWise(ConnectWiseConfig),
    /// `kind = "autotask"`.
    Autotask(AutotaskConfig),
    /// `kind = "halo"`.
    Halo(HaloConfig),
}

impl PsaConfig {
    /// The `kind` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ConnectWise(_) => "connectwise",
            Self::Autotask(_) => "autotask",
            Self::Halo(_) => "halo",
        }
    }
}

/// `[psa]` with `kind = "connectwise"` (ConnectWise PSA REST API).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnectWiseConfig {
    /// `base_url`: `https://api-na.myconnectwise.net` (cloud) or your server; the codebase
    /// path is added unless `codebase` is empty.
    pub base_url: String,
    /// `codebase` (default `v4_6_release/`).
    #[serde(default)]
    pub codebase: Option<String>,
    /// `company_id`: the company name typed at the ConnectWise login screen.
    pub company_id: String,
    /// `public_key`: the API member's public key.
    pub public_key: String,
    /// `private_key_env`: the environment variable holding the API member's private key.
    pub private_key_env: String,
    /// `client_id_env`: the environment variable holding the integration's `clientId`.
    pub client_id_env: String,
    /// `status`: the status name for new tickets (must belong to the board), optional.
    #[serde(default)]
    pub status: Option<String>,
}

/// `[psa]` with `kind = "autotask"` (Autotask REST API).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AutotaskConfig {
    /// `base_url`: the zone URL (`https://webservices5.autotask.net`); discovered when absent.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `username`: the API user's user name.
    pub username: String,
    /// `secret_env`: the environment variable holding the API user's secret.
    pub secret_env: String,
    /// `integration_code_env`: the environment variable holding the API tracking identifier.
    pub integration_code_env: String,
    /// `queue_id`: the queue for new tickets, optional.
    #[serde(default)]
    pub queue_id: Option<i64>,
}

/// `[psa]` with `kind = "halo"` (HaloPSA API).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HaloConfig {
    /// `base_url`: the resource server, `https://<tenant>.halopsa.com`.
    pub base_url: String,
    /// `auth_url`: the authorisation server (default `<base_url>/auth`).
    #[serde(default)]
    pub auth_url: Option<String>,
    /// `tenant`: the tenant name (hosted Halo).
    #[serde(default)]
    pub tenant: Option<String>,
    /// `client_id`: the application's client id.
    pub client_id: String,
    /// `client_secret_env`: the environment variable holding the client secret.
    pub client_secret_env: String,
}

/// `[notify]`: where notifications go; each channel optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct NotifyConfig {
    /// `[notify.email]`: SMTP.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// `[notify.teams]`: a Microsoft Teams Workflows webhook.
    #[serde(default)]
    pub teams: Option<WebhookConfig>,
    /// `[notify.slack]`: a Slack incoming webhook.
    #[serde(default)]
    pub slack: Option<WebhookConfig>,
}

impl NotifyConfig {
    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.teams.is_none() && self.slack.is_none()
    }
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on the submission port (587), the default.
    #[default]
    Starttls,
    /// TLS from the first byte (465).
    Implicit,
    /// No TLS (only for a relay on loopback).
    None,
}

/// `[notify.email]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EmailConfig {
    /// `smtp_host`.
    pub smtp_host: String,
    /// `smtp_port` (default by `tls`: 587 STARTTLS, 465 implicit, 25 none).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// `tls`: `"starttls"` (default), `"implicit"` or `"none"`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// `username` for SMTP authentication, optional.
    #[serde(default)]
    pub username: Option<String>,
    /// `password_env`: the environment variable holding the SMTP password (with `username`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// `from`: the sender address.
    pub from: String,
    /// `to`: recipients; default `org_variables.threatlocker_notification_recipients`.
    #[serde(default)]
    pub to: Vec<String>,
    /// `ca_file`: PEM CA certificate(s) to trust for the relay instead of the web PKI roots (a
    /// relay behind a private CA); relative to the configuration file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `hello_name`: the name sent in EHLO and used as the `Message-ID` domain (default: this
    /// machine's fully qualified name when it has one).
    #[serde(default)]
    pub hello_name: Option<String>,
}

/// `[notify.teams]` or `[notify.slack]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// `webhook_url_env`: the environment variable holding the webhook URL (it embeds a
    /// signature, so it is a secret).
    pub webhook_url_env: String,
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it (the state file) are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let mut config = Self::from_toml_str(&text, &base_dir).map_err(|e| e.with_file(path))?;
        config.file = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates configuration text; `base_dir` anchors relative paths.
    pub fn from_toml_str(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = deserialize_toml(text)?;
        Self::from_raw(raw, base_dir)
    }

    fn from_raw(raw: RawConfig, base_dir: &Path) -> Result<Config, ConfigError> {
        let t = raw.threatlocker;
        let endpoint = match (t.instance, t.base_url) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    "threatlocker.instance",
                    "set either `instance` or `base_url`, not both",
                ))
            }
            (Some(i), None) => {
                let i = i.trim().to_ascii_lowercase();
                if i.is_empty() || !i.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(ConfigError::invalid(
                        "threatlocker.instance",
                        format!("{i:?} is not an instance name: use the letter shown next to \"ThreatLocker Access\" in the portal's Help menu, such as \"g\""),
                    ));
                }
                Endpoint::Instance(i)
            }
            (None, Some(u)) => {
                let parsed = url::Url::parse(u.trim()).map_err(|e| {
                    ConfigError::invalid("threatlocker.base_url", format!("not a URL: {e}"))
                })?;
                if !matches!(parsed.scheme(), "https" | "http") {
                    return Err(ConfigError::invalid(
                        "threatlocker.base_url",
                        "use an https:// URL (http:// only on loopback)",
                    ));
                }
                Endpoint::BaseUrl(u.trim().to_owned())
            }
            (None, None) => return Err(ConfigError::invalid(
                "threatlocker.instance",
                "set `instance` (the letter in the portal's Help menu, e.g. \"g\") or `base_url`",
            )),
        };
        check_env_name("threatlocker.api_key_env", &t.api_key_env)?;
        if let Some(rps) = t.max_requests_per_second {
            if !(rps.is_finite() && rps > 0.0) {
                return Err(ConfigError::invalid(
                    "threatlocker.max_requests_per_second",
                    format!("must be a positive number, got {rps}"),
                ));
            }
        }
        if t.max_concurrency == Some(0) {
            return Err(ConfigError::invalid(
                "threatlocker.max_concurrency",
                "must be at least 1",
            ));
        }
        let organization_id = match t.organization_id {
            Some(o) if o.trim().is_empty() => {
                return Err(ConfigError::invalid(
                    "threatlocker.organization_id",
                    "must not be empty (remove the key to use the API user's organization)",
                ))
            }
            Some(o) => Some(OrganizationId::new(o.trim())),
            None => None,
        };
        let threatlocker = ThreatLockerConfig {
            endpoint,
            api_key_env: t.api_key_env,
            organization_id,
            include_child_organizations: t.include_child_organizations,
            max_requests_per_second: t.max_requests_per_second,
            max_concurrency: t.max_concurrency,
        };

        let workflow = raw.workflow;
        if workflow.time_range_hours == 0 || workflow.time_range_hours > 24 * 90 {
            return Err(ConfigError::invalid(
                "workflow.time_range_hours",
                format!(
                    "must be between 1 and 2160 (90 days), got {}",
                    workflow.time_range_hours
                ),
            ));
        }
        match humantime::parse_duration(workflow.overlap.trim()) {
            Ok(d) if d.as_secs() <= u64::from(workflow.time_range_hours) * 3600 => {}
            Ok(_) => {
                return Err(ConfigError::invalid(
                    "workflow.overlap",
                    format!(
                        "{:?} is longer than the window (time_range_hours = {})",
                        workflow.overlap, workflow.time_range_hours
                    ),
                ))
            }
            Err(e) => {
                return Err(ConfigError::invalid(
                    "workflow.overlap",
                    format!(
                        "{:?} is not a duration ({e}; use e.g. 2h, 90m, 0s)",
                        workflow.overlap
                    ),
                ))
            }
        }
        for (i, t) in workflow.event_types.iter().enumerate() {
            if t.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("workflow.event_types[{i}]"),
                    "must not be empty",
                ));
            }
        }

        for (org, company) in &raw.companies {
            if company.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("companies.\"{org}\""),
                    "the PSA company id must not be empty",
                ));
            }
        }
        let companies = CompanyMap::new(raw.companies);

        let psa_written = raw.psa.is_some();
        let psa = match raw.psa {
            None => PsaConfig::None,
            Some(table) => parse_psa(table)?,
        };
        let mut notify = raw.notify;
        if let Some(ca) = notify.email.as_mut().and_then(|e| e.ca_file.as_mut()) {
            if ca.is_relative() {
                *ca = base_dir.join(&*ca);
            }
        }
        if let Some(email) = &notify.email {
            if let Some(v) = &email.password_env {
                check_env_name("notify.email.password_env", v)?;
                if email.username.is_none() {
                    return Err(ConfigError::invalid(
                        "notify.email.username",
                        "`password_env` is set, so set `username` too",
                    ));
                }
            }
        }
        for (name, hook) in [("teams", &notify.teams), ("slack", &notify.slack)] {
            if let Some(h) = hook {
                check_env_name(
                    &format!("notify.{name}.webhook_url_env"),
                    &h.webhook_url_env,
                )?;
            }
        }

        let state = state_config(&raw.state)?;
        let state_path = match raw.state.path {
            Some(p) if p.as_os_str().is_empty() => {
                return Err(ConfigError::invalid("state.path", "must not be empty"))
            }
            Some(p) if p.is_absolute() => p,
            Some(p) => base_dir.join(p),
            None => base_dir.join(DEFAULT_STATE_FILE),
        };

        let extensions = [
            ("siem", raw.siem),
            ("report", raw.report),
            ("investigate", raw.investigate),
            ("watch", raw.watch),
        ]
        .into_iter()
        .filter_map(|(name, table)| table.map(|t| (name, t)))
        .collect();

        Ok(Config {
            file: None,
            extensions,
            base_dir: base_dir.to_path_buf(),
            threatlocker,
            workflow,
            org_variables: raw.org_variables,
            org_overrides: raw.org_overrides,
            rules: raw.rules,
            companies,
            psa,
            psa_written,
            notify,
            state_path,
            state,
        })
    }

    /// The file this configuration was loaded from (`None` when built from text).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Names this configuration's file in `e` (when it was loaded from one).
    pub fn name_file(&self, e: ConfigError) -> ConfigError {
        match &self.file {
            Some(f) => e.with_file(f),
            None => e,
        }
    }

    /// What `run` (and `watch`) need beyond a well-formed file: with `create_tickets` on, a
    /// `[psa]` section (`kind = "none"` says tickets are reported, not opened). Errors name
    /// the key and the file.
    pub fn check_run(&self) -> Result<(), ConfigError> {
        if self.workflow.create_tickets && !self.psa_written {
            return Err(self.name_file(ConfigError::invalid(
                "psa",
                "missing while `workflow.create_tickets` is true: add a [psa] section (kind = \"connectwise\", \"autotask\" or \"halo\"), or [psa] kind = \"none\" to report tickets without opening them, or set workflow.create_tickets = false",
            )));
        }
        Ok(())
    }

    /// `[threatlocker]`.
    pub fn threatlocker(&self) -> &ThreatLockerConfig {
        &self.threatlocker
    }

    /// `[workflow]`.
    pub fn workflow(&self) -> &WorkflowConfig {
        &self.workflow
    }

    /// `[workflow]`, mutable (the CLI's `--dry-run` sets `dry_run`).
    pub fn workflow_mut(&mut self) -> &mut WorkflowConfig {
        &mut self.workflow
    }

    /// `[org_variables]` as written (the policy engine's organization variables).
    pub fn org_variables(&self) -> &toml::Table {
        &self.org_variables
    }

    /// `[rules]` as written, if present (the policy engine's extended rules).
    pub fn rules(&self) -> Option<&toml::Table> {
        self.rules.as_ref()
    }

    /// `[companies]`.
    pub fn companies(&self) -> &CompanyMap {
        &self.companies
    }

    /// `[psa]`.
    pub fn psa(&self) -> &PsaConfig {
        &self.psa
    }

    /// `[notify]`.
    pub fn notify(&self) -> &NotifyConfig {
        &self.notify
    }

    /// The directory relative paths are anchored at (the configuration file's directory).
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// The state database: `[state] path`, else `threatlocker-monitor.db` beside the file.
    pub fn state_path(&self) -> PathBuf {
        self.state_path.clone()
    }

    /// `[state]`: the backend and the lease settings.
    pub fn state(&self) -> &StateConfig {
        &self.state
    }

    /// `[state]`, mutable (the CLI's `--lock-timeout` sets `lock_timeout`).
    pub fn state_mut(&mut self) -> &mut StateConfig {
        &mut self.state
    }

    /// Overrides the state database path (tests, `demo`).
    pub fn set_state_path(&mut self, path: impl Into<PathBuf>) {
        self.state_path = path.into();
    }

    /// Reads the ThreatLocker API key from the variable named by `threatlocker.api_key_env`.
    pub fn api_key(&self, env: &dyn Env) -> Result<SecretString, ConfigError> {
        secret(
            env,
            "threatlocker.api_key_env",
            &self.threatlocker.api_key_env,
        )
        .map_err(|e| self.name_file(e))
    }

    /// Builds the ThreatLocker client from `[threatlocker]`, reading the key from `env`.
    pub fn threatlocker_client(
        &self,
        env: &dyn Env,
    ) -> Result<threatlocker_api::Client, ConfigError> {
        use secrecy::ExposeSecret;
        let key = self.api_key(env)?;
        let t = &self.threatlocker;
        let mut builder = threatlocker_api::Client::builder(key.expose_secret().to_owned())
            .user_agent(concat!("threatlocker-monitor/", env!("CARGO_PKG_VERSION")));
        let endpoint_key = match &t.endpoint {
            Endpoint::Instance(i) => {
                builder = builder.instance(i.clone());
                "threatlocker.instance"
            }
            Endpoint::BaseUrl(u) => {
                builder = builder.base_url(u.clone());
                "threatlocker.base_url"
            }
        };
        if let Some(org) = &t.organization_id {
            builder = builder.organization(org.clone());
        }
        if let Some(rps) = t.max_requests_per_second {
            builder = builder.max_requests_per_second(rps);
        }
        if let Some(n) = t.max_concurrency {
            builder = builder.max_concurrency(n);
        }
        builder.build().map_err(|e| {
            self.name_file(match e {
                threatlocker_api::Error::Config(m) if m.contains("key") => ConfigError::invalid(
                    "threatlocker.api_key_env",
                    format!("the key in ${}: {m}", t.api_key_env),
                ),
                other => ConfigError::invalid(endpoint_key, other.to_string()),
            })
        })
    }

    /// A section owned by another command (`siem`, `report`, `investigate` or `watch`),
    /// deserialized into that command's type, with errors naming the key (`siem.port`).
    /// `Ok(None)` when the file has no such section. These sections are checked by the command
    /// that reads them (use `#[serde(deny_unknown_fields)]` on `T`), not by `run`.
    pub fn section<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        match self.extensions.get(name) {
            None => Ok(None),
            Some(table) => from_table(table.clone(), name).map(Some),
        }
    }

    /// Names of the sections other commands own: `siem`, `report`, `investigate`, `watch`.
    pub const EXTENSION_SECTIONS: [&'static str; 4] = ["siem", "report", "investigate", "watch"];

    /// `[org_overrides]` as written, if present (per-organization overrides).
    pub fn org_overrides(&self) -> Option<&toml::Table> {
        self.org_overrides.as_ref()
    }

    /// The policy engine built from `[org_variables]`, `[org_overrides]` and `[rules]`.
    ///
    /// With `[notify.teams]` or `[notify.slack]` configured, organizations without
    /// `threatlocker_notification_recipients` are notified too (chat channels need no
    /// addresses), unless `rules.notify_without_recipients` says otherwise.
    pub fn engine(&self) -> Result<policy_engine::Engine, ConfigError> {
        let mut engine_config: policy_engine::EngineConfig = self.engine_section()?;
        let notify = self.notify();
        if engine_config.rules.notify_without_recipients.is_none()
            && (notify.teams.is_some() || notify.slack.is_some())
        {
            engine_config.rules.notify_without_recipients = Some(true);
        }
        policy_engine::Engine::new(engine_config).map_err(|e| ConfigError::Invalid {
            key: e.key.clone(),
            message: e.to_string(),
        })
    }

    /// The policy engine's configuration: `[org_variables]`, `[org_overrides]` and `[rules]`
    /// deserialized together into `T` (the engine's `EngineConfig`), with errors naming the key
    /// (`org_variables.threatlocker_block_alert_threshold`, `rules.lolbins`).
    pub fn engine_section<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let mut table = toml::Table::new();
        table.insert(
            "org_variables".to_owned(),
            toml::Value::Table(self.org_variables.clone()),
        );
        if let Some(o) = &self.org_overrides {
            table.insert("org_overrides".to_owned(), toml::Value::Table(o.clone()));
        }
        if let Some(rules) = &self.rules {
            table.insert("rules".to_owned(), toml::Value::Table(rules.clone()));
        }
        from_table(table, "")
    }
}

/// Reads a secret from the environment; the error names the `*_env` key and the variable.
pub fn secret(env: &dyn Env, key: &str, var: &str) -> Result<SecretString, ConfigError> {
    match env.var(var) {
        Some(v) if !v.trim().is_empty() => Ok(SecretString::from(v.trim().to_owned())),
        Some(_) => Err(ConfigError::EmptyEnv {
            key: key.to_owned(),
            var: var.to_owned(),
        }),
        None => Err(ConfigError::MissingEnv {
            key: key.to_owned(),
            var: var.to_owned(),
        }),
    }
}

fn check_env_name(key: &str, var: &str) -> Result<(), ConfigError> {
    let ok = !var.is_empty()
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !var.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("{var:?} is not an environment variable name (letters, digits and _); put the secret in the environment and name the variable here"),
        ))
    }
}

fn parse_psa(mut table: toml::Table) -> Result<PsaConfig, ConfigError> {
    let kind = match table.remove("kind") {
        None => {
            return Err(ConfigError::invalid(
                "psa.kind",
                "missing: set kind = \"connectwise\", \"autotask\", \"halo\" or \"none\"",
            ))
        }
        Some(toml::Value::String(s)) => s,
        Some(other) => {
            return Err(ConfigError::invalid(
                "psa.kind",
                format!("expected a string, found {}", other.type_str()),
            ))
        }
    };
    let cfg = match kind.as_str() {
        "none" => {
            if let Some(k) = table.keys().next() {
                return Err(ConfigError::invalid(
                    format!("psa.{k}"),
                    "unknown key: kind = \"none\" takes no other keys",
                ));
            }
            PsaConfig::None
        }
        "connectwise" => {
            let c: ConnectWiseConfig = from_table(table, "psa")?;
            check_env_name("psa.private_key_env", &c.private_key_env)?;
            check_env_name("psa.client_id_env", &c.client_id_env)?;
            check_url("psa.base_url", &c.base_url)?;
            check_connectwise_base_url(&c.base_url)?;
            PsaConfig::ConnectWise(c)
        }
        "autotask" => {
            let c: AutotaskConfig = from_table(table, "psa")?;
            check_env_name("psa.secret_env", &c.secret_env)?;
            check_env_name("psa.integration_code_env", &c.integration_code_env)?;
            if let Some(u) = &c.base_url {
                check_url("psa.base_url", u)?;
            }
            PsaConfig::Autotask(c)
        }
        "halo" => {
            let c: HaloConfig = from_table(table, "psa")?;
            check_env_name("psa.client_secret_env", &c.client_secret_env)?;
            check_url("psa.base_url", &c.base_url)?;
            if let Some(u) = &c.auth_url {
                check_url("psa.auth_url", u)?;
            }
            PsaConfig::Halo(c)
        }
        other => {
            return Err(ConfigError::invalid(
                "psa.kind",
                format!(
                "unknown kind {other:?}: use \"connectwise\", \"autotask\", \"halo\" or \"none\""
            ),
            ))
        }
    };
    Ok(cfg)
}

/// The ConnectWise connector adds `{codebase}/apis/3.0/` itself: a `base_url` that already
/// holds the API path would call `…/apis/3.0/v4_6_release/apis/3.0/…` and get 404 on every
/// call.
fn check_connectwise_base_url(u: &str) -> Result<(), ConfigError> {
    let Ok(url) = url::Url::parse(u.trim()) else {
        return Ok(());
    };
    let has_api_path = url
        .path_segments()
        .is_some_and(|mut s| s.any(|seg| seg.eq_ignore_ascii_case("apis")));
    if has_api_path {
        let site = format!(
            "{}://{}",
            url.scheme(),
            url.host_str().unwrap_or("your-server")
        );
        return Err(ConfigError::invalid(
            "psa.base_url",
            format!(
                "the path {:?} is added by the connector (codebase + apis/3.0): set base_url to the site only, such as {site:?}",
                url.path()
            ),
        ));
    }
    Ok(())
}

/// A path that repeats itself (`/api/v1/api/v1`), a copy-paste of the path onto a URL that
/// already had it.
fn doubled_path(url: &url::Url) -> Option<String> {
    let segs: Vec<&str> = url.path_segments()?.filter(|s| !s.is_empty()).collect();
    for len in 1..=segs.len() / 2 {
        for start in 0..=segs.len() - 2 * len {
            let (a, b) = (
                &segs[start..start + len],
                &segs[start + len..start + 2 * len],
            );
            if a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y)) {
                return Some(a.join("/"));
            }
        }
    }
    None
}

fn check_url(key: &str, u: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(u.trim())
        .map_err(|e| ConfigError::invalid(key, format!("not a URL: {e}")))?;
    if let Some(part) = doubled_path(&url) {
        return Err(ConfigError::invalid(
            key,
            format!(
                "the path {:?} repeats {part:?}: give that part once",
                url.path()
            ),
        ));
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            "use an https:// URL (http:// only on loopback)",
        )),
    }
}

/// Deserializes TOML text with errors naming the key path and line.
fn deserialize_toml<T: DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(text, None, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        toml_error(
            text,
            refine_key((path != ".").then_some(path), inner.message()),
            &inner,
        )
    })
}

/// Serde reports a missing field at its parent's path; name the field itself.
fn refine_key(path: Option<String>, message: &str) -> Option<String> {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next());
    match (path, missing) {
        (Some(p), Some(field)) => Some(format!("{p}.{field}")),
        (None, Some(field)) => Some(field.to_owned()),
        (p, None) => p,
    }
}

fn toml_error(text: &str, key: Option<String>, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    // The parser names a duplicate key only by its position: read the key from the text.
    let key = key.or_else(|| {
        e.message()
            .starts_with("duplicate key")
            .then(|| e.span().and_then(|s| key_at(text, s.end)))
            .flatten()
    });
    ConfigError::Parse {
        file: None,
        key,
        line,
        message: e.message().trim().to_owned(),
    }
}

/// The dotted key written at byte `end` of `text` (the end of a key's span): the key part of
/// its line, under the nearest table header above it, or the header itself.
fn key_at(text: &str, end: usize) -> Option<String> {
    let end = end.min(text.len());
    if !text.is_char_boundary(end) {
        return None;
    }
    let line_start = text[..end].rfind('\n').map_or(0, |i| i + 1);
    let clean = |k: &str| -> String {
        k.split('.')
            .map(|p| p.trim().trim_matches(|c| c == '"' || c == '\''))
            .collect::<Vec<_>>()
            .join(".")
    };
    let here = text[line_start..end].trim_start();
    if here.starts_with('[') {
        return Some(clean(here.trim_start_matches('[')));
    }
    let key = clean(here.split('=').next().unwrap_or(here));
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| clean(h.trim_start_matches('[').split(']').next().unwrap_or("")));
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key,
    })
}

/// Deserializes a sub-table with errors naming `prefix.key`.
fn from_table<T: DeserializeOwned>(table: toml::Table, prefix: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let full = match (prefix.is_empty(), path == ".") {
            (_, true) => prefix.to_owned(),
            (true, false) => path,
            (false, false) => format!("{prefix}.{path}"),
        };
        let inner = e.into_inner();
        let full = refine_key(Some(full.clone()), inner.message()).unwrap_or(full);
        ConfigError::Parse {
            file: None,
            key: Some(full),
            line: None,
            message: inner.message().trim().to_owned(),
        }
    })
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Instance(i) => write!(f, "https://portalapi.{i}.threatlocker.com"),
            Self::BaseUrl(u) => f.write_str(u),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[threatlocker]\ninstance = \"g\"\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/etc/tlm"))
    }

    fn err_key(text: &str) -> (Option<String>, String) {
        let e = parse(text).expect_err("config should be rejected");
        (e.key().map(str::to_owned), e.to_string())
    }

    #[test]
    fn defaults_follow_the_original_workflow() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.threatlocker().api_key_env, "THREATLOCKER_API_KEY");
        assert!(c.threatlocker().include_child_organizations);
        let w = c.workflow();
        assert_eq!(w.time_range_hours, 24);
        assert!(w.process_approvals && w.monitor_blocks && w.create_tickets && !w.dry_run);
        assert_eq!(w.overlap(), chrono::Duration::hours(2));
        assert_eq!(c.psa(), &PsaConfig::None);
        assert!(c.notify().is_empty());
        assert_eq!(
            c.state_path(),
            Path::new("/etc/tlm").join("threatlocker-monitor.db")
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("[threatlocker]\ninstance = \"g\"\nmax_request_per_second = 5\n", "threatlocker.max_request_per_second"),
            ("[threatlocker]\ninstance = \"g\"\nmax_requests_per_second = \"fast\"\n", "threatlocker.max_requests_per_second"),
            ("[threatlocker]\ninstance = \"g\"\n[workflow]\ntime_range_hours = \"24\"\n", "workflow.time_range_hours"),
            ("[threatlocker]\ninstance = \"g\"\n[workflow]\ndryrun = true\n", "workflow.dryrun"),
            ("[threatlocker]\ninstance = \"g\"\n[state]\nfile = \"x\"\n", "state.file"),
            ("[threatlocker]\ninstance = \"g\"\n[bogus]\nx = 1\n", "bogus"),
            ("[threatlocker]\ninstance = \"g\"\n[notify.teams]\nwebhook_url = \"https://x\"\n", "notify.teams.webhook_url"),
            ("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"connectwise\"\nbase_url = \"https://api-na.myconnectwise.net\"\ncompany_id = \"msp\"\npublic_key = \"pk\"\nprivate_key_env = \"CW_PRIV\"\nclient_id_env = \"CW_CLIENT\"\nboard = \"x\"\n", "psa.board"),
            ("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"connectwise\"\nbase_url = \"https://api-na.myconnectwise.net\"\n", "psa.company_id"),
            ("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"jira\"\n", "psa.kind"),
            ("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"none\"\nbase_url = \"https://x\"\n", "psa.base_url"),
            ("[threatlocker]\ninstance = \"g\"\n[workflow]\ntime_range_hours = 0\n", "workflow.time_range_hours"),
            ("[threatlocker]\ninstance = \"g\"\n[workflow]\noverlap = \"two hours\"\n", "workflow.overlap"),
            ("[threatlocker]\ninstance = \"g\"\n[workflow]\ntime_range_hours = 1\noverlap = \"3h\"\n", "workflow.overlap"),
            ("[threatlocker]\ninstance = \"g\"\nbase_url = \"https://x\"\n", "threatlocker.instance"),
            ("[threatlocker]\n", "threatlocker.instance"),
            ("[threatlocker]\ninstance = \"g\"\napi_key_env = \"my key\"\n", "threatlocker.api_key_env"),
            ("[threatlocker]\ninstance = \"g\"\n[companies]\n\"*\" = 250\n", "companies.*"),
        ];
        for (text, key) in cases {
            let (got, msg) = err_key(text);
            assert_eq!(got.as_deref(), Some(*key), "for {text:?}: {msg}");
            assert!(msg.contains(key), "message {msg:?} should name {key}");
        }
    }

    #[test]
    fn parse_errors_carry_the_line() {
        let e = parse("[threatlocker]\ninstance = \"g\"\n\n[workflow]\nmonitor_blocks = 3\n")
            .unwrap_err();
        let ConfigError::Parse { line, key, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(key.as_deref(), Some("workflow.monitor_blocks"));
        assert_eq!(*line, Some(5));
        assert!(e.to_string().contains("(line 5)"), "{e}");
    }

    #[test]
    fn missing_secret_names_the_env_key_and_variable() {
        let c = parse(MINIMAL).unwrap();
        let env: HashMap<String, String> = HashMap::new();
        let e = c.threatlocker_client(&env).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.key(), Some("threatlocker.api_key_env"));
        assert!(msg.contains("THREATLOCKER_API_KEY"), "{msg}");
    }

    #[test]
    fn builds_a_client_and_keeps_the_key_out_of_every_output() {
        let text = "[threatlocker]\nbase_url = \"http://127.0.0.1:9\"\napi_key_env = \"TL_KEY\"\norganization_id = \"3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d\"\nmax_requests_per_second = 25.0\n";
        let c = parse(text).unwrap();
        let secret_value = "0123456789abcdef0123456789abcdef";
        let env: HashMap<String, String> = [("TL_KEY".to_owned(), secret_value.to_owned())].into();
        let client = c.threatlocker_client(&env).unwrap();
        assert_eq!(client.base_url().as_str(), "http://127.0.0.1:9/");
        assert!(!format!("{client:?}").contains(secret_value));
        assert!(!format!("{c:?}").contains(secret_value));
        let key = c.api_key(&env).unwrap();
        assert!(!format!("{key:?}").contains(secret_value));
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        let c =
            parse("[threatlocker]\nbase_url = \"http://portalapi.g.threatlocker.com\"\n").unwrap();
        let env: HashMap<String, String> =
            [("THREATLOCKER_API_KEY".to_owned(), "k123".to_owned())].into();
        let e = c.threatlocker_client(&env).unwrap_err();
        assert_eq!(e.key(), Some("threatlocker.base_url"), "{e}");
        let (key, _) = err_key("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"halo\"\nbase_url = \"http://halo.example\"\nclient_id = \"c\"\nclient_secret_env = \"HALO\"\n");
        assert_eq!(key.as_deref(), Some("psa.base_url"));
    }

    #[test]
    fn companies_map_with_catch_all() {
        let c = parse("[threatlocker]\ninstance = \"g\"\n[companies]\n\"3B0F5F7E-1111-4A2B-9C3D-5E6F7A8B9C0D\" = \"250\"\n\"*\" = \"1\"\n").unwrap();
        let m = c.companies();
        assert_eq!(
            m.company_for("3b0f5f7e-1111-4a2b-9c3d-5e6f7a8b9c0d"),
            Some("250")
        );
        assert_eq!(m.company_for("other"), Some("1"));
        assert_eq!(CompanyMap::default().company_for("x"), None);
    }

    #[test]
    fn psa_kinds_parse() {
        let c = parse("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"connectwise\"\nbase_url = \"https://api-na.myconnectwise.net\"\ncompany_id = \"msp\"\npublic_key = \"pk\"\nprivate_key_env = \"CW_PRIV\"\nclient_id_env = \"CW_CLIENT\"\n").unwrap();
        assert_eq!(c.psa().kind(), "connectwise");
        let c = parse("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"autotask\"\nusername = \"api@msp.example\"\nsecret_env = \"AT_SECRET\"\nintegration_code_env = \"AT_CODE\"\n").unwrap();
        assert_eq!(c.psa().kind(), "autotask");
        let c = parse("[threatlocker]\ninstance = \"g\"\n[psa]\nkind = \"none\"\n").unwrap();
        assert_eq!(c.psa().kind(), "none");
    }

    #[test]
    fn notify_email_takes_a_private_ca_and_a_hello_name() {
        let c = Config::from_toml_str(
            "[threatlocker]\ninstance = \"g\"\n[notify.email]\nsmtp_host = \"relay.msp.example\"\nfrom = \"a@msp.example\"\nca_file = \"relay-ca.pem\"\nhello_name = \"tl.msp.example\"\n",
            Path::new("/etc/tl"),
        )
        .unwrap();
        let email = c.notify().email.as_ref().unwrap();
        assert_eq!(
            email.ca_file.as_deref(),
            Some(Path::new("/etc/tl/relay-ca.pem"))
        );
        assert_eq!(email.hello_name.as_deref(), Some("tl.msp.example"));
    }

    #[test]
    fn sections_of_other_commands_are_typed_by_them() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        struct Siem {
            host: String,
            port: u16,
        }
        let c =
            parse("[threatlocker]\ninstance = \"g\"\n[siem]\nhost = \"10.0.0.5\"\nport = 6514\n")
                .unwrap();
        assert_eq!(
            c.section::<Siem>("siem").unwrap(),
            Some(Siem {
                host: "10.0.0.5".into(),
                port: 6514
            })
        );
        assert_eq!(c.section::<Siem>("report").unwrap(), None);
        let c = parse("[threatlocker]\ninstance = \"g\"\n[siem]\nhost = \"h\"\nport = \"x\"\n")
            .unwrap();
        let e = c.section::<Siem>("siem").unwrap_err();
        assert_eq!(e.key(), Some("siem.port"), "{e}");
    }

    #[test]
    fn event_types_split_into_action_and_detection_types() {
        let c = parse("[threatlocker]\ninstance = \"g\"\n[workflow]\nevent_types = [\"execute\", \"lolbin_execution\"]\n").unwrap();
        assert_eq!(c.workflow().action_types(), vec!["execute"]);
        assert_eq!(c.workflow().detection_types(), vec!["lolbin_execution"]);
    }

    #[test]
    fn engine_section_errors_name_org_variable_and_rule_keys() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Engine {
            org_variables: Vars,
            #[serde(default)]
            rules: Option<Rules>,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Vars {
            threatlocker_block_alert_threshold: u32,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Rules {
            lolbins: Vec<String>,
        }
        let c = parse("[threatlocker]\ninstance = \"g\"\n[org_variables]\nthreatlocker_block_alert_threshold = \"three\"\n").unwrap();
        let e = c.engine_section::<Engine>().unwrap_err();
        assert_eq!(
            e.key(),
            Some("org_variables.threatlocker_block_alert_threshold"),
            "{e}"
        );
        let c = parse("[threatlocker]\ninstance = \"g\"\n[org_variables]\nthreatlocker_block_alert_threshold = 3\n[rules]\nlolbins = 1\n").unwrap();
        let e = c.engine_section::<Engine>().unwrap_err();
        assert_eq!(e.key(), Some("rules.lolbins"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_named() {
        let cases = [
            ("[threatlocker]\ninstance = \"g\"\ninstance = \"h\"\n", "threatlocker.instance", 3),
            ("[threatlocker] # the API\ninstance = \"g\"\n\n[workflow]\ndry_run = true\ndry_run = false\n", "workflow.dry_run", 6),
            ("[threatlocker]\ninstance = \"g\"\n[threatlocker]\nbase_url = \"https://x\"\n", "threatlocker", 3),
            ("[threatlocker]\ninstance = \"g\"\n[rules]\na.b = 1\na.b = 2\n", "rules.a.b", 5),
        ];
        for (text, key, line) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.key(), Some(key), "{e}");
            assert!(e.to_string().contains(&format!("key `{key}`")), "{e}");
            assert!(e.to_string().contains(&format!("line {line}")), "{e}");
        }
    }

    #[test]
    fn an_empty_secret_is_called_empty_not_unset() {
        let c = parse(MINIMAL).unwrap();
        let env: HashMap<String, String> =
            [("THREATLOCKER_API_KEY".to_owned(), "  ".to_owned())].into();
        let e = c.api_key(&env).unwrap_err().to_string();
        assert!(
            e.contains("is empty") && e.contains("threatlocker.api_key_env"),
            "{e}"
        );
        let e = c.api_key(&HashMap::new()).unwrap_err().to_string();
        assert!(e.contains("is not set"), "{e}");
    }

    #[test]
    fn tickets_without_a_psa_section_are_an_error_for_run() {
        let cases = [
            (MINIMAL.to_owned(), false),
            (format!("{MINIMAL}[psa]\nkind = \"none\"\n"), true),
            (
                format!("{MINIMAL}[workflow]\ncreate_tickets = false\n"),
                true,
            ),
        ];
        for (text, ok) in cases {
            let c = parse(&text).unwrap();
            match c.check_run() {
                Ok(()) => assert!(ok, "{text}"),
                Err(e) => {
                    assert!(!ok, "{text}: {e}");
                    assert_eq!(e.key(), Some("psa"));
                    assert!(e.to_string().contains("kind = \"none\""), "{e}");
                }
            }
        }
    }

    #[test]
    fn errors_found_after_loading_name_the_file() {
        let dir = std::env::temp_dir().join(format!("tlm-config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("monitor.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = Config::load(&path).unwrap();
        let e = c.check_run().unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: key `psa`", path.display())),
            "{e}"
        );
        let e = c.api_key(&HashMap::new()).unwrap_err().to_string();
        assert!(e.contains(&path.display().to_string()), "{e}");
        // Errors found while loading name it too, once.
        std::fs::write(
            &path,
            "[threatlocker]\ninstance = \"g\"\nmax_concurrency = 0\n",
        )
        .unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(e.key(), Some("threatlocker.max_concurrency"));
        assert_eq!(
            e.to_string().matches(&path.display().to_string()).count(),
            1,
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn psa_base_urls_with_a_doubled_path_are_rejected() {
        let cw = |url: &str| {
            format!("{MINIMAL}[psa]\nkind = \"connectwise\"\nbase_url = \"{url}\"\ncompany_id = \"msp\"\npublic_key = \"pk\"\nprivate_key_env = \"A\"\nclient_id_env = \"B\"\n")
        };
        let halo = |url: &str| {
            format!("{MINIMAL}[psa]\nkind = \"halo\"\nbase_url = \"{url}\"\nclient_id = \"c\"\nclient_secret_env = \"S\"\n")
        };
        let cases = [
            (cw("https://api-na.myconnectwise.net"), None),
            (
                cw("https://api-na.myconnectwise.net/v4_6_release/apis/3.0/v4_6_release/apis/3.0"),
                Some("repeats"),
            ),
            (
                cw("https://api-na.myconnectwise.net/v4_6_release/apis/3.0"),
                Some("added by the connector"),
            ),
            (halo("https://msp.halopsa.com"), None),
            (halo("https://msp.halopsa.com/api/api"), Some("repeats")),
        ];
        for (text, want) in cases {
            match (parse(&text), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    assert_eq!(e.key(), Some("psa.base_url"), "{e}");
                    assert!(e.to_string().contains(w), "{e}");
                }
                (r, w) => panic!("{text}: {:?} but wanted {w:?}", r.map(|_| ())),
            }
        }
    }

    #[test]
    fn the_run_deadline_parses_and_is_bounded() {
        assert_eq!(
            parse(MINIMAL).unwrap().workflow().deadline,
            DEFAULT_DEADLINE
        );
        let c = parse(&format!("{MINIMAL}[workflow]\ndeadline = \"90s\"\n")).unwrap();
        assert_eq!(c.workflow().deadline, std::time::Duration::from_secs(90));
        for bad in ["soon", "0s", "100ms"] {
            let (key, msg) = err_key(&format!("{MINIMAL}[workflow]\ndeadline = \"{bad}\"\n"));
            assert_eq!(key.as_deref(), Some("workflow.deadline"), "{msg}");
        }
    }
}
