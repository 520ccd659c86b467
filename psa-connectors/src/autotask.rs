//! Autotask PSA (Datto / Kaseya) REST API v1.0.
//!
//! * Zone: `GET https://webservices.autotask.net/atservicesrest/v1.0/zoneInformation?user=…`
//!   (no auth) returns the tenant's zone `url`; the API base is that URL plus `v1.0/`. It is
//!   cached, and re-resolved once when a call answers 401 (tenants can move zones). Set
//!   [`Config::zone_url`] to skip discovery.
//! * Auth: the `ApiIntegrationCode`, `UserName` and `Secret` headers (plus optional
//!   `ImpersonationResourceId`), all but the user name marked sensitive.
//! * Dedupe: the external reference goes in `externalID` (max 50 characters, never truncated)
//!   and is found with `POST Tickets/query` and a JSON filter
//!   (`externalID eq …` and `status noteq <complete>`), so the value is JSON-serialized and
//!   cannot change the query.
//! * Create: `POST Tickets` with `companyID`, `title` (≤ 255), `description` (≤ 8 000),
//!   `status`, `priority`, `queueID` and the optional picklists; answers `{"itemId": n}`.
//! * Notes: `POST Tickets/{id}/Notes` (plain text, ≤ 32 000).
//! * Budget: Autotask allows 10 000 requests per hour per database, shared by every
//!   integration of the tenant. This client keeps its own rolling-hour ceiling
//!   ([`Config::max_requests_per_hour`], default 3 000) and fails fast with
//!   [`Error::BudgetExhausted`] rather than eat the tenant's budget; [`Autotask::threshold`]
//!   reports `ThresholdInformation`, and `check()` fails when the tenant is at its limit.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::RwLock;

use crate::escape;
use crate::http::{self, Http};
use crate::retry::{RetryPolicy, Safety};
use crate::secret::{de_secret, REDACTED};
use crate::{Error, Note, PriorityMap, Result, Ticket, TicketRef, TicketSink};

const BACKEND: &str = "autotask";
/// `externalID` limit.
pub const EXTERNAL_ID_MAX: usize = 50;
/// `title` limit.
pub const TITLE_MAX: usize = 255;
/// `description` limit.
pub const DESCRIPTION_MAX: usize = 8000;
/// Note `description` limit.
pub const NOTE_MAX: usize = 32_000;
const HOUR: Duration = Duration::from_secs(3600);

fn default_discovery() -> String {
    "https://webservices.autotask.net/atservicesrest/".to_owned()
}
fn default_new_status() -> i64 {
    1
}
fn default_complete_status() -> i64 {
    5
}
fn default_priorities() -> PriorityMap<i64> {
    // Stock Autotask priorities: 1 High, 2 Medium, 3 Low, 4 Critical.
    PriorityMap {
        low: 3,
        medium: 2,
        high: 1,
        critical: 4,
    }
}
fn default_one() -> i64 {
    1
}
fn default_note_title() -> String {
    "Automation update".to_owned()
}
fn default_budget() -> u32 {
    3000
}

/// Autotask configuration. Picklist values (statuses, priorities, queues, note types) differ
/// per tenant; read them from `…/entityInformation/fields` and set them here.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The API-only user's user name.
    pub username: String,
    /// That user's secret.
    #[serde(deserialize_with = "de_secret")]
    pub secret: SecretString,
    /// The integration's tracking identifier (`ApiIntegrationCode`).
    #[serde(deserialize_with = "de_secret")]
    pub integration_code: SecretString,
    /// Optional `ImpersonationResourceId`.
    #[serde(default)]
    pub impersonation_resource_id: Option<i64>,
    /// Zone base such as `https://webservices3.autotask.net/atservicesrest/`; discovered when
    /// absent.
    #[serde(default)]
    pub zone_url: Option<String>,
    /// Where zone discovery is asked (default the global `webservices.autotask.net`).
    #[serde(default = "default_discovery")]
    pub discovery_url: String,
    /// `companyID` when the ticket names none.
    #[serde(default)]
    pub default_company_id: Option<i64>,
    /// `queueID` when the ticket names no board.
    #[serde(default)]
    pub default_queue_id: Option<i64>,
    /// Status for new tickets (default 1, New).
    #[serde(default = "default_new_status")]
    pub new_status: i64,
    /// The Complete status; tickets in it are not "open" (default 5).
    #[serde(default = "default_complete_status")]
    pub complete_status: i64,
    /// Priority picklist values (default stock: low 3, medium 2, high 1, critical 4).
    #[serde(default = "default_priorities")]
    pub priorities: PriorityMap<i64>,
    /// `ticketType` for new tickets.
    #[serde(default)]
    pub ticket_type: Option<i64>,
    /// `issueType` for new tickets.
    #[serde(default)]
    pub issue_type: Option<i64>,
    /// `subIssueType` for new tickets.
    #[serde(default)]
    pub sub_issue_type: Option<i64>,
    /// `source` for new tickets.
    #[serde(default)]
    pub source: Option<i64>,
    /// `noteType` for notes (default 1).
    #[serde(default = "default_one")]
    pub note_type: i64,
    /// `publish` for internal notes (default 1; set your tenant's internal-only value).
    #[serde(default = "default_one")]
    pub note_publish_internal: i64,
    /// `publish` for customer-visible notes (default 1).
    #[serde(default = "default_one")]
    pub note_publish_external: i64,
    /// Note title (some ticket categories require one).
    #[serde(default = "default_note_title")]
    pub note_title: String,
    /// Our own rolling-hour request ceiling (default 3 000 of the tenant's shared 10 000).
    #[serde(default = "default_budget")]
    pub max_requests_per_hour: u32,
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
            .field("username", &self.username)
            .field("secret", &REDACTED)
            .field("integration_code", &REDACTED)
            .field("impersonation_resource_id", &self.impersonation_resource_id)
            .field("zone_url", &self.zone_url)
            .field("discovery_url", &self.discovery_url)
            .field("default_company_id", &self.default_company_id)
            .field("default_queue_id", &self.default_queue_id)
            .field("new_status", &self.new_status)
            .field("complete_status", &self.complete_status)
            .field("priorities", &self.priorities)
            .field("max_requests_per_hour", &self.max_requests_per_hour)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with the credentials and defaults elsewhere.
    pub fn new(
        username: impl Into<String>,
        secret: SecretString,
        integration_code: SecretString,
    ) -> Self {
        Config {
            username: username.into(),
            secret,
            integration_code,
            impersonation_resource_id: None,
            zone_url: None,
            discovery_url: default_discovery(),
            default_company_id: None,
            default_queue_id: None,
            new_status: default_new_status(),
            complete_status: default_complete_status(),
            priorities: default_priorities(),
            ticket_type: None,
            issue_type: None,
            sub_issue_type: None,
            source: None,
            note_type: 1,
            note_publish_internal: 1,
            note_publish_external: 1,
            note_title: default_note_title(),
            max_requests_per_hour: default_budget(),
            timeout_secs: http::default_timeout_secs(),
            retry: RetryPolicy::default(),
        }
    }
}

/// `ThresholdInformation`: the tenant's shared request budget.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ThresholdInfo {
    /// Requests allowed per timeframe (10 000 by default).
    pub external_request_threshold: Option<u64>,
    /// Timeframe in minutes (60).
    pub request_threshold_timeframe: Option<u64>,
    /// Requests used in the current timeframe, by every integration of the tenant.
    pub current_timeframe_request_count: Option<u64>,
}

impl ThresholdInfo {
    /// Share of the budget used, 0.0-1.0+, when both numbers are known.
    pub fn usage(&self) -> Option<f64> {
        match (
            self.current_timeframe_request_count,
            self.external_request_threshold,
        ) {
            (Some(used), Some(limit)) if limit > 0 => Some(used as f64 / limit as f64),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct ZoneInfo {
    url: String,
}

#[derive(Deserialize)]
struct QueryItem {
    id: i64,
    #[serde(rename = "ticketNumber", default)]
    ticket_number: Option<String>,
}

#[derive(Deserialize)]
struct QueryPage {
    items: Vec<QueryItem>,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "itemId")]
    item_id: i64,
}

/// An Autotask ticket sink.
pub struct Autotask {
    http: Http,
    headers: HeaderMap,
    configured_zone: Option<url::Url>,
    discovery: url::Url,
    zone: RwLock<Option<url::Url>>,
    budget: Mutex<VecDeque<Instant>>,
    config: Config,
}

impl fmt::Debug for Autotask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autotask")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Autotask {
    /// Builds the sink (zone discovery happens on first use).
    pub fn new(config: Config) -> Result<Self> {
        http::require_non_empty("autotask.username", &config.username)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            "ApiIntegrationCode",
            http::header_value(
                "autotask.integration_code",
                config.integration_code.expose_secret().trim(),
                true,
            )?,
        );
        headers.insert(
            "UserName",
            http::header_value("autotask.username", config.username.trim(), false)?,
        );
        headers.insert(
            "Secret",
            http::header_value(
                "autotask.secret",
                config.secret.expose_secret().trim(),
                true,
            )?,
        );
        if let Some(id) = config.impersonation_resource_id {
            headers.insert("ImpersonationResourceId", HeaderValue::from(id));
        }
        let configured_zone = match &config.zone_url {
            Some(z) => Some(zone_base("autotask.zone_url", z)?),
            None => None,
        };
        let discovery = http::base_url("autotask.discovery_url", &config.discovery_url)?;
        if config.max_requests_per_hour == 0 {
            return Err(Error::config(
                "autotask.max_requests_per_hour",
                "must be at least 1",
            ));
        }
        Ok(Autotask {
            http: Http::new(BACKEND, config.timeout_secs, &config.retry)?,
            headers,
            zone: RwLock::new(configured_zone.clone()),
            configured_zone,
            discovery,
            budget: Mutex::new(VecDeque::new()),
            config,
        })
    }

    /// The API base (`…/atservicesrest/v1.0/`), discovering the zone if needed.
    pub async fn base_url(&self) -> Result<url::Url> {
        if let Some(z) = self.zone.read().await.clone() {
            return Ok(z);
        }
        let mut zone = self.zone.write().await;
        if let Some(z) = zone.clone() {
            return Ok(z);
        }
        let mut url = http::join(&self.discovery, "v1.0/zoneInformation")?;
        url.query_pairs_mut()
            .append_pair("user", self.config.username.trim());
        let info: ZoneInfo = self
            .http
            .call(
                Safety::Idempotent,
                Method::GET,
                &url,
                &HeaderMap::new(),
                None,
            )
            .await?
            .json()?;
        let base = zone_base("zoneInformation.url", &info.url).map_err(|_| Error::Decode {
            backend: BACKEND,
            path: "url".to_owned(),
            message: "zone URL is not an https URL".to_owned(),
        })?;
        tracing::debug!(zone = %base, "autotask zone resolved");
        *zone = Some(base.clone());
        Ok(base)
    }

    fn spend(&self) -> Result<()> {
        let mut window = self.budget.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= HOUR)
        {
            window.pop_front();
        }
        if window.len() >= self.config.max_requests_per_hour as usize {
            let retry_after = window
                .front()
                .map(|t| HOUR.saturating_sub(now.duration_since(*t)));
            return Err(Error::BudgetExhausted {
                backend: BACKEND,
                message: format!("{} requests in the last hour", window.len()),
                retry_after,
            });
        }
        window.push_back(now);
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        safety: Safety,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T> {
        let method = &method;
        let attempt = || async move {
            self.spend()?;
            let url = http::join(&self.base_url().await?, path)?;
            self.http
                .call(safety, method.clone(), &url, &self.headers, body)
                .await?
                .json()
        };
        let rediscover = async {
            if self.configured_zone.is_some() {
                return false;
            }
            // The tenant may have moved zones: resolve again once.
            tracing::info!("autotask answered 401; re-resolving the zone");
            *self.zone.write().await = None;
            true
        };
        http::once_more_after_401(attempt().await, rediscover, attempt()).await
    }

    /// Reads `ThresholdInformation` (the tenant's shared hourly budget).
    pub async fn threshold(&self) -> Result<ThresholdInfo> {
        self.call(
            Safety::Idempotent,
            Method::GET,
            "ThresholdInformation",
            None,
        )
        .await
    }

    /// The search `find_open` posts (pure).
    pub fn query_body(&self, external_ref: &str) -> Value {
        json!({
            "filter": [
                {"op": "eq", "field": "externalID", "value": external_ref},
                {"op": "noteq", "field": "status", "value": self.config.complete_status}
            ],
            "IncludeFields": ["id", "ticketNumber", "status", "title"],
            "MaxRecords": 2
        })
    }

    /// The body `create` posts (pure).
    pub fn ticket_body(&self, ticket: &Ticket) -> Result<Value> {
        http::check_external_ref(&ticket.external_ref, EXTERNAL_ID_MAX)?;
        let company = numeric(
            "ticket.company",
            ticket.company.as_deref(),
            self.config.default_company_id,
        )?
        .ok_or(Error::InvalidInput {
            field: "ticket.company",
            message: "Autotask needs a company id and no default_company_id is configured"
                .to_owned(),
        })?;
        let queue = numeric(
            "ticket.board",
            ticket.board.as_deref(),
            self.config.default_queue_id,
        )?;
        let ticket_type = numeric(
            "ticket.ticket_type",
            ticket.ticket_type.as_deref(),
            self.config.ticket_type,
        )?;
        let mut body = json!({
            "companyID": company,
            "title": escape::truncate_chars(&escape::single_line(&ticket.summary), TITLE_MAX),
            "description": escape::ellipsize(&ticket.description, DESCRIPTION_MAX),
            "status": self.config.new_status,
            "priority": self.config.priorities.get(ticket.priority),
            "externalID": ticket.external_ref,
        });
        let optional = [
            ("queueID", queue),
            ("ticketType", ticket_type),
            ("issueType", self.config.issue_type),
            ("subIssueType", self.config.sub_issue_type),
            ("source", self.config.source),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                body[key] = json!(v);
            }
        }
        Ok(body)
    }

    /// The body `add_note` posts (pure).
    pub fn note_body(&self, ticket_id: i64, note: &Note) -> Value {
        json!({
            "ticketID": ticket_id,
            "title": escape::truncate_chars(&escape::single_line(&self.config.note_title), 250),
            "description": escape::ellipsize(&note.text, NOTE_MAX),
            "noteType": self.config.note_type,
            "publish": if note.internal { self.config.note_publish_internal } else { self.config.note_publish_external },
        })
    }

    async fn post_ticket(&self, body: &Value) -> Result<TicketRef> {
        let created: Created = self
            .call(Safety::NonIdempotent, Method::POST, "Tickets", Some(body))
            .await?;
        Ok(TicketRef::new(created.item_id.to_string()))
    }
}

fn zone_base(key: &str, raw: &str) -> Result<url::Url> {
    let base = http::base_url(key, raw)?;
    if base.path().ends_with("/v1.0/") {
        Ok(base)
    } else {
        http::join(&base, "v1.0/")
    }
}

fn numeric(field: &'static str, given: Option<&str>, default: Option<i64>) -> Result<Option<i64>> {
    http::numeric_or_default("Autotask", field, given, default)
}

#[async_trait]
impl TicketSink for Autotask {
    async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>> {
        http::check_external_ref(external_ref, EXTERNAL_ID_MAX)?;
        let body = self.query_body(external_ref);
        let page: QueryPage = self
            .call(
                Safety::Idempotent,
                Method::POST,
                "Tickets/query",
                Some(&body),
            )
            .await?;
        Ok(page.items.into_iter().next().map(|item| {
            let r = TicketRef::new(item.id.to_string());
            match item.ticket_number {
                Some(n) => r.with_number(n),
                None => r,
            }
        }))
    }

    async fn create(&self, ticket: &Ticket) -> Result<TicketRef> {
        let body = self.ticket_body(ticket)?;
        http::create_then_note(self, &self.config.retry, ticket, || self.post_ticket(&body)).await
    }

    async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()> {
        let id = http::numeric_id(ticket)?;
        let body = self.note_body(id, note);
        let _: Value = self
            .call(
                Safety::NonIdempotent,
                Method::POST,
                &format!("Tickets/{id}/Notes"),
                Some(&body),
            )
            .await?;
        Ok(())
    }

    /// Resolves the zone, proves the credentials with `ThresholdInformation`, and fails when
    /// the tenant's shared budget is used up (warning from 80%).
    async fn check(&self) -> Result<()> {
        let info = self.threshold().await?;
        if let Some(usage) = info.usage() {
            if usage >= 1.0 {
                return Err(Error::BudgetExhausted {
                    backend: BACKEND,
                    message: format!(
                        "tenant used {} of {} requests this hour",
                        info.current_timeframe_request_count.unwrap_or(0),
                        info.external_request_threshold.unwrap_or(0)
                    ),
                    retry_after: None,
                });
            }
            if usage >= 0.8 {
                tracing::warn!(usage, "autotask: tenant-wide API budget above 80%");
            }
        }
        Ok(())
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
