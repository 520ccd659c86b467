//! ConnectWise PSA (formerly ConnectWise Manage), REST API 3.0.
//!
//! * Auth: `Authorization: Basic base64("{company}+{publicKey}:{privateKey}")` plus the
//!   integration's `clientId` header; both are marked sensitive.
//! * Base URL: `https://{site}/{codebase}apis/3.0/`. The codebase defaults to `v4_6_release/`
//!   (which works on cloud `api-*` hosts too); [`ConnectWise::discover`] reads it from
//!   `GET /login/companyinfo/{company}` instead.
//! * Dedupe: the ticket's external reference goes in `externalXRef` (max 100 characters, never
//!   truncated) and is found again with
//!   `GET service/tickets?conditions=externalXRef="…" and closedFlag=false`, the value escaped by
//!   [`escape::connectwise_string`] and then percent-encoded, so a hostile key cannot change the
//!   query.
//! * Notes: `POST service/tickets/{id}/notes` with a placement flag always set
//!   (`internalAnalysisFlag` for internal notes, `detailDescriptionFlag` otherwise).
//! * Limits: `summary` ≤ 100 characters (truncated on a character boundary); 429 honours
//!   `Retry-After` for reads; creates are never blindly retried.

use std::fmt;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::escape;
use crate::http::{self, Http};
use crate::retry::{RetryPolicy, Safety};
use crate::secret::{de_secret, REDACTED};
use crate::{Error, Note, PriorityMap, Reference, Result, Ticket, TicketRef, TicketSink};

const BACKEND: &str = "connectwise";
/// `summary` limit.
pub const SUMMARY_MAX: usize = 100;
/// `externalXRef` limit.
pub const EXTERNAL_XREF_MAX: usize = 100;
const DEFAULT_CODEBASE: &str = "v4_6_release/";

fn default_api_version() -> String {
    "2019.1".to_owned()
}

/// ConnectWise PSA configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// API host or URL, for example `api-na.myconnectwise.net` (cloud hosts need the `api-`
    /// prefix). `https` is required except for loopback hosts.
    pub site: String,
    /// Codebase such as `v4_6_release` or `v2024_1`; default `v4_6_release`.
    #[serde(default)]
    pub codebase: Option<String>,
    /// The company id typed at the login screen.
    pub company_id: String,
    /// API member public key.
    pub public_key: String,
    /// API member private key.
    #[serde(deserialize_with = "de_secret")]
    pub private_key: SecretString,
    /// The integration's `clientId` (from developer.connectwise.com).
    #[serde(deserialize_with = "de_secret")]
    pub client_id: SecretString,
    /// Model version pinned in the `Accept` header (default `2019.1`).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Board when the ticket names none.
    #[serde(default)]
    pub default_board: Option<Reference>,
    /// Company when the ticket names none (a name is sent as `{"identifier": …}`).
    #[serde(default)]
    pub default_company: Option<Reference>,
    /// Status for new tickets (must belong to the board); default: the board's default.
    #[serde(default)]
    pub default_status: Option<Reference>,
    /// Type when the ticket names none.
    #[serde(default)]
    pub default_type: Option<Reference>,
    /// Priority per neutral priority; omitted means the board's default.
    #[serde(default)]
    pub priorities: Option<PriorityMap<Reference>>,
    /// Whether ConnectWise should run notification workflows (emails) for our tickets and
    /// notes; default false.
    #[serde(default)]
    pub process_notifications: bool,
    /// Request timeout in seconds (default 30).
    #[serde(default = "http::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retry policy for reads and throttled requests.
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("site", &self.site)
            .field("codebase", &self.codebase)
            .field("company_id", &self.company_id)
            .field("public_key", &self.public_key)
            .field("private_key", &REDACTED)
            .field("client_id", &REDACTED)
            .field("api_version", &self.api_version)
            .field("default_board", &self.default_board)
            .field("default_company", &self.default_company)
            .field("default_status", &self.default_status)
            .field("default_type", &self.default_type)
            .field("priorities", &self.priorities)
            .field("process_notifications", &self.process_notifications)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Config {
    /// A configuration with the required values and defaults elsewhere.
    pub fn new(
        site: impl Into<String>,
        company_id: impl Into<String>,
        public_key: impl Into<String>,
        private_key: SecretString,
        client_id: SecretString,
    ) -> Self {
        Config {
            site: site.into(),
            codebase: None,
            company_id: company_id.into(),
            public_key: public_key.into(),
            private_key,
            client_id,
            api_version: default_api_version(),
            default_board: None,
            default_company: None,
            default_status: None,
            default_type: None,
            priorities: None,
            process_notifications: false,
            timeout_secs: http::default_timeout_secs(),
            retry: RetryPolicy::default(),
        }
    }
}

/// The dedupe condition for an external reference:
/// `externalXRef="<escaped>" and closedFlag=false`.
pub fn dedupe_conditions(external_ref: &str) -> String {
    format!(
        "externalXRef={} and closedFlag=false",
        escape::connectwise_string(external_ref)
    )
}

#[derive(Deserialize)]
struct CompanyInfo {
    #[serde(rename = "Codebase")]
    codebase: String,
}

#[derive(Deserialize)]
struct TicketId {
    id: i64,
}

/// A ConnectWise PSA ticket sink. Cheap to clone.
#[derive(Clone)]
pub struct ConnectWise {
    http: Http,
    base: url::Url,
    headers: HeaderMap,
    config: Config,
}

impl fmt::Debug for ConnectWise {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWise")
            .field("base", &self.base.as_str())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConnectWise {
    /// Builds the sink; the codebase is the configured one or `v4_6_release/`.
    pub fn new(config: Config) -> Result<Self> {
        let codebase = config
            .codebase
            .clone()
            .unwrap_or_else(|| DEFAULT_CODEBASE.to_owned());
        Self::with_codebase(config, &codebase)
    }

    /// Builds the sink after reading the codebase from `GET https://{site}/login/companyinfo/{company}`
    /// (no credentials needed).
    pub async fn discover(config: Config) -> Result<Self> {
        let site = http::base_url("connectwise.site", &config.site)?;
        let url = http::join(
            &site,
            &format!(
                "login/companyinfo/{}",
                escape::percent_encode_query_value(&config.company_id)
            ),
        )?;
        let info: CompanyInfo = Http::new(BACKEND, config.timeout_secs, &config.retry)?
            .call(
                Safety::Idempotent,
                Method::GET,
                &url,
                &HeaderMap::new(),
                None,
            )
            .await?
            .json()?;
        Self::with_codebase(config, &info.codebase)
    }

    fn with_codebase(config: Config, codebase: &str) -> Result<Self> {
        let site = http::base_url("connectwise.site", &config.site)?;
        let codebase = codebase.trim().trim_matches('/');
        if codebase.is_empty()
            || !codebase
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(Error::config(
                "connectwise.codebase",
                "must look like `v4_6_release` or `v2024_1`",
            ));
        }
        let base = http::join(&site, &format!("{codebase}/apis/3.0/"))?;
        http::require_non_empty("connectwise.company_id", &config.company_id)?;
        http::require_non_empty("connectwise.public_key", &config.public_key)?;
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}+{}:{}",
            config.company_id,
            config.public_key,
            config.private_key.expose_secret()
        ));
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            http::header_value("connectwise.private_key", &format!("Basic {token}"), true)?,
        );
        headers.insert(
            "clientId",
            http::header_value(
                "connectwise.client_id",
                config.client_id.expose_secret().trim(),
                true,
            )?,
        );
        let accept = format!(
            "application/vnd.connectwise.com+json; version={}",
            config.api_version
        );
        headers.insert(
            ACCEPT,
            http::header_value("connectwise.api_version", &accept, false)?,
        );
        Ok(ConnectWise {
            http: Http::new(BACKEND, config.timeout_secs, &config.retry)?,
            base,
            headers,
            config,
        })
    }

    /// The API base URL (`…/{codebase}/apis/3.0/`).
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// The JSON body `create` posts for `ticket` (pure; exposed for inspection and tests).
    pub fn ticket_body(&self, ticket: &Ticket) -> Result<Value> {
        http::check_external_ref(&ticket.external_ref, EXTERNAL_XREF_MAX)?;
        let mut body = Map::new();
        body.insert(
            "summary".into(),
            json!(escape::truncate_chars(
                &escape::single_line(&ticket.summary),
                SUMMARY_MAX
            )),
        );
        body.insert("initialDescription".into(), json!(ticket.description));
        if let Some(internal) = &ticket.internal_note {
            body.insert("initialInternalAnalysis".into(), json!(internal));
        }
        body.insert("externalXRef".into(), json!(ticket.external_ref));
        body.insert(
            "processNotifications".into(),
            json!(self.config.process_notifications),
        );
        let pick = |given: &Option<String>, default: &Option<Reference>| {
            given
                .as_deref()
                .map(Reference::parse)
                .or_else(|| default.clone())
        };
        if let Some(board) = pick(&ticket.board, &self.config.default_board) {
            body.insert("board".into(), reference(&board, "name"));
        }
        if let Some(company) = pick(&ticket.company, &self.config.default_company) {
            body.insert("company".into(), reference(&company, "identifier"));
        }
        if let Some(kind) = pick(&ticket.ticket_type, &self.config.default_type) {
            body.insert("type".into(), reference(&kind, "name"));
        }
        if let Some(status) = &self.config.default_status {
            body.insert("status".into(), reference(status, "name"));
        }
        if let Some(map) = &self.config.priorities {
            body.insert(
                "priority".into(),
                reference(map.get(ticket.priority), "name"),
            );
        }
        Ok(Value::Object(body))
    }

    /// The JSON body `add_note` posts for `note` (pure).
    pub fn note_body(&self, note: &Note) -> Value {
        json!({
            "text": note.text,
            "detailDescriptionFlag": !note.internal,
            "internalAnalysisFlag": note.internal,
            "resolutionFlag": false,
            "internalFlag": note.internal,
            "externalFlag": !note.internal,
            "processNotifications": self.config.process_notifications,
        })
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        http::join(&self.base, path)
    }

    async fn post_ticket(&self, body: &Value) -> Result<TicketRef> {
        let url = self.url("service/tickets")?;
        let created: TicketId = self
            .http
            .call(
                Safety::NonIdempotent,
                Method::POST,
                &url,
                &self.headers,
                Some(body),
            )
            .await?
            .json()?;
        Ok(TicketRef::new(created.id.to_string()))
    }
}

fn reference(r: &Reference, name_key: &str) -> Value {
    match r {
        Reference::Id(id) => json!({ "id": id }),
        Reference::Name(name) => {
            let mut m = Map::new();
            m.insert(name_key.to_owned(), json!(name));
            Value::Object(m)
        }
    }
}

#[async_trait]
impl TicketSink for ConnectWise {
    async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>> {
        http::check_external_ref(external_ref, EXTERNAL_XREF_MAX)?;
        let mut url = self.url("service/tickets")?;
        url.set_query(Some(&format!(
            "conditions={}&fields=id%2Csummary%2CclosedFlag&orderBy=id%20asc&pageSize=1",
            escape::percent_encode_query_value(&dedupe_conditions(external_ref))
        )));
        let found: Vec<TicketId> = self
            .http
            .call(Safety::Idempotent, Method::GET, &url, &self.headers, None)
            .await?
            .json()?;
        Ok(found
            .into_iter()
            .next()
            .map(|t| TicketRef::new(t.id.to_string())))
    }

    async fn create(&self, ticket: &Ticket) -> Result<TicketRef> {
        let body = self.ticket_body(ticket)?;
        http::create_reconciled(self, &self.config.retry, &ticket.external_ref, || {
            self.post_ticket(&body)
        })
        .await
    }

    async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()> {
        let id = http::numeric_id(ticket)?;
        let url = self.url(&format!("service/tickets/{id}/notes"))?;
        let body = self.note_body(note);
        self.http
            .call(
                Safety::NonIdempotent,
                Method::POST,
                &url,
                &self.headers,
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// `GET system/info`: proves the host, codebase and credentials.
    async fn check(&self) -> Result<()> {
        let url = self.url("system/info")?;
        self.http
            .call(Safety::Idempotent, Method::GET, &url, &self.headers, None)
            .await?;
        Ok(())
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
