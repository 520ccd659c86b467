//! HaloPSA REST API.
//!
//! * Token: OAuth2 client credentials — a form `POST {auth_url}/token?tenant=…` with
//!   `grant_type=client_credentials`, `client_id`, `client_secret` and `scope`. The token is
//!   cached, refreshed a minute before `expires_in` runs out, and refreshed once more when the
//!   API answers 401.
//! * Create: `POST {api_url}/Tickets` with a JSON **array** holding one ticket.
//! * Dedupe: Halo has no external-reference field, so the reference is appended to the summary
//!   as a token `[ref:<external_ref>]` and found with
//!   `GET Tickets?search=<external_ref>&open_only=true`; a result counts only when its summary
//!   ends with that exact token and it is not closed.
//! * Notes: private actions, `POST {api_url}/Actions` with
//!   `[{"ticket_id", "note", "outcome_id", "hiddenfromuser", "sendemail": false}]`. The outcome
//!   is configurable (default 7, the stock "Private Note"), because an agent without rights to
//!   an outcome gets "You do not have access to this Action".

use std::fmt;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::escape;
use crate::http::{self, Http};
use crate::retry::{RetryPolicy, Safety};
use crate::secret::{de_secret, REDACTED};
use crate::{Error, Note, PriorityMap, Result, Ticket, TicketRef, TicketSink};

const BACKEND: &str = "halo";
/// Longest human summary kept before the reference token is appended.
pub const SUMMARY_MAX: usize = 200;
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

fn default_scope() -> String {
    "all".to_owned()
}
fn default_outcome() -> i64 {
    7
}

/// HaloPSA configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Resource server, for example `https://contoso.halopsa.com/api`.
    pub api_url: String,
    /// Authorisation server, for example `https://contoso.halopsa.com/auth`.
    pub auth_url: String,
    /// Tenant name (hosted instances); omitted for self-hosted ones.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Application client id ("Client ID and Secret (Services)").
    pub client_id: String,
    /// Application client secret.
    #[serde(deserialize_with = "de_secret")]
    pub client_secret: SecretString,
    /// Token scope (default `all`).
    #[serde(default = "default_scope")]
    pub scope: String,
    /// Halo `client_id` (customer) when the ticket names none.
    #[serde(default)]
    pub default_customer_id: Option<i64>,
    /// `tickettype_id` when the ticket names none.
    #[serde(default)]
    pub default_ticket_type_id: Option<i64>,
    /// `priority_id` per priority (priorities belong to the ticket type's SLA).
    #[serde(default)]
    pub priorities: Option<PriorityMap<i64>>,
    /// `outcome_id` of note actions (default 7).
    #[serde(default = "default_outcome")]
    pub note_outcome_id: i64,
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
            .field("api_url", &self.api_url)
            .field("auth_url", &self.auth_url)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .field("scope", &self.scope)
            .field("default_customer_id", &self.default_customer_id)
            .field("default_ticket_type_id", &self.default_ticket_type_id)
            .field("priorities", &self.priorities)
            .field("note_outcome_id", &self.note_outcome_id)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// A configuration with the required values and defaults elsewhere.
    pub fn new(
        api_url: impl Into<String>,
        auth_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Config {
            api_url: api_url.into(),
            auth_url: auth_url.into(),
            tenant: None,
            client_id: client_id.into(),
            client_secret,
            scope: default_scope(),
            default_customer_id: None,
            default_ticket_type_id: None,
            priorities: None,
            note_outcome_id: default_outcome(),
            timeout_secs: http::default_timeout_secs(),
            retry: RetryPolicy::default(),
        }
    }
}

/// The summary token carrying an external reference.
pub fn reference_token(external_ref: &str) -> String {
    format!("[ref:{external_ref}]")
}

struct CachedToken {
    value: SecretString,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default)]
    tickets: Vec<SearchTicket>,
}

#[derive(Deserialize)]
struct SearchTicket {
    id: i64,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    hasbeenclosed: Option<bool>,
}

/// A HaloPSA ticket sink.
pub struct Halo {
    http: Http,
    api: url::Url,
    token_url: url::Url,
    token: Mutex<Option<CachedToken>>,
    config: Config,
}

impl fmt::Debug for Halo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Halo")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Halo {
    /// Builds the sink (the token is fetched on first use).
    pub fn new(config: Config) -> Result<Self> {
        let api = http::base_url("halo.api_url", &config.api_url)?;
        let auth = http::base_url("halo.auth_url", &config.auth_url)?;
        let mut token_url = http::join(&auth, "token")?;
        if let Some(tenant) = config.tenant.as_deref().filter(|t| !t.trim().is_empty()) {
            token_url
                .query_pairs_mut()
                .append_pair("tenant", tenant.trim());
        }
        http::require_non_empty("halo.client_id", &config.client_id)?;
        Ok(Halo {
            http: Http::new(BACKEND, config.timeout_secs, &config.retry)?,
            api,
            token_url,
            token: Mutex::new(None),
            config,
        })
    }

    async fn token(&self) -> Result<SecretString> {
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_ref() {
            if Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", self.config.client_id.trim())
            .append_pair("client_secret", self.config.client_secret.expose_secret())
            .append_pair("scope", &self.config.scope)
            .finish();
        let form = SecretString::from(form);
        let response: TokenResponse = self
            .http
            .send(Safety::Idempotent, &|| {
                self.http
                    .client
                    .post(self.token_url.clone())
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form.expose_secret().to_owned())
            })
            .await?
            .json()?;
        let lifetime = Duration::from_secs(response.expires_in.unwrap_or(3600));
        let value = SecretString::from(response.access_token);
        *slot = Some(CachedToken {
            value: value.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        });
        Ok(value)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        safety: Safety,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<T> {
        let (method, url) = (&method, &url);
        let attempt = |token: SecretString| async move {
            self.http
                .send(safety, &|| {
                    self.http
                        .request(method.clone(), url, &HeaderMap::new(), body)
                        .bearer_auth(token.expose_secret())
                })
                .await?
                .json()
        };
        // A token request that fails is final; an API call that answers 401 gets a fresh token.
        let first = attempt(self.token().await?).await;
        let refresh = async {
            tracing::debug!("halo answered 401; refreshing the token once");
            *self.token.lock().await = None;
            true
        };
        http::once_more_after_401(first, refresh, async { attempt(self.token().await?).await })
            .await
    }

    /// The array body `create` posts (pure).
    pub fn ticket_body(&self, ticket: &Ticket) -> Result<Value> {
        http::check_external_ref(&ticket.external_ref, 100)?;
        let summary = format!(
            "{} {}",
            escape::ellipsize(&escape::single_line(&ticket.summary), SUMMARY_MAX),
            reference_token(&ticket.external_ref)
        );
        let mut t = json!({
            "summary": summary,
            "details": ticket.description,
        });
        let id_or_default =
            |field, given, default| http::numeric_or_default("HaloPSA", field, given, default);
        if let Some(c) = id_or_default(
            "ticket.company",
            ticket.company.as_deref(),
            self.config.default_customer_id,
        )? {
            t["client_id"] = json!(c);
        }
        if let Some(k) = id_or_default(
            "ticket.ticket_type",
            ticket.ticket_type.as_deref(),
            self.config.default_ticket_type_id,
        )? {
            t["tickettype_id"] = json!(k);
        }
        if let Some(map) = &self.config.priorities {
            t["priority_id"] = json!(map.get(ticket.priority));
        }
        Ok(json!([t]))
    }

    /// The array body `add_note` posts (pure).
    pub fn note_body(&self, ticket_id: i64, note: &Note) -> Value {
        json!([{
            "ticket_id": ticket_id,
            "note": note.text,
            "outcome_id": self.config.note_outcome_id,
            "hiddenfromuser": note.internal,
            "sendemail": false,
        }])
    }

    async fn post_ticket(&self, body: &Value) -> Result<TicketRef> {
        let url = http::join(&self.api, "Tickets")?;
        let created: Value = self
            .call(Safety::NonIdempotent, Method::POST, url, Some(body))
            .await?;
        let record = match &created {
            Value::Array(items) => items.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        record
            .get("id")
            .and_then(Value::as_i64)
            .map(|id| TicketRef::new(id.to_string()))
            .ok_or(Error::Decode {
                backend: BACKEND,
                path: "id".to_owned(),
                message: "created ticket has no numeric id".to_owned(),
            })
    }
}

#[async_trait]
impl TicketSink for Halo {
    async fn find_open(&self, external_ref: &str) -> Result<Option<TicketRef>> {
        http::check_external_ref(external_ref, 100)?;
        let mut url = http::join(&self.api, "Tickets")?;
        url.query_pairs_mut()
            .append_pair("search", external_ref)
            .append_pair("open_only", "true")
            .append_pair("pageinate", "true")
            .append_pair("page_size", "50")
            .append_pair("page_no", "1");
        let page: SearchPage = self
            .call(Safety::Idempotent, Method::GET, url, None)
            .await?;
        let token = reference_token(external_ref);
        Ok(page
            .tickets
            .into_iter()
            .find(|t| {
                t.hasbeenclosed != Some(true)
                    && t.summary
                        .as_deref()
                        .is_some_and(|s| s.trim_end().ends_with(&token))
            })
            .map(|t| TicketRef::new(t.id.to_string())))
    }

    async fn create(&self, ticket: &Ticket) -> Result<TicketRef> {
        let body = self.ticket_body(ticket)?;
        http::create_then_note(self, &self.config.retry, ticket, || self.post_ticket(&body)).await
    }

    async fn add_note(&self, ticket: &TicketRef, note: &Note) -> Result<()> {
        let id = http::numeric_id(ticket)?;
        let url = http::join(&self.api, "Actions")?;
        let _: Value = self
            .call(
                Safety::NonIdempotent,
                Method::POST,
                url,
                Some(&self.note_body(id, note)),
            )
            .await?;
        Ok(())
    }

    /// Fetches a token and lists one ticket.
    async fn check(&self) -> Result<()> {
        let mut url = http::join(&self.api, "Tickets")?;
        url.query_pairs_mut()
            .append_pair("pageinate", "true")
            .append_pair("page_size", "1")
            .append_pair("page_no", "1");
        let _: Value = self
            .call(Safety::Idempotent, Method::GET, url, None)
            .await?;
        Ok(())
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
