//! Shared HTTP plumbing for the web-API backends: one request path with classification of
//! responses into [`Error`] variants, bounded retry for reads, and JSON decoding that names the
//! failing path.

// Each backend feature uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

use crate::escape;
use crate::retry::{parse_retry_after, RetryDecision, RetryPolicy, Safety};
use crate::{Error, Result};

/// The `timeout_secs` default shared by every HTTP backend's `Config`.
pub(crate) fn default_timeout_secs() -> u64 {
    30
}

/// A successful response.
pub(crate) struct Reply {
    backend: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    /// Decodes the body as JSON, naming the failing path.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        decode(self.backend, &self.body)
    }
}

#[derive(Clone)]
pub(crate) struct Http {
    pub client: reqwest::Client,
    pub backend: &'static str,
    pub retry: RetryPolicy,
}

impl Http {
    /// Builds the client from a backend's `timeout_secs` and `retry` settings.
    pub fn new(backend: &'static str, timeout_secs: u64, retry: &RetryPolicy) -> Result<Self> {
        let timeout = Duration::from_secs(timeout_secs);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("psa-connectors/", env!("CARGO_PKG_VERSION")))
            // Credentials travel in custom headers (`Secret`, `ApiIntegrationCode`, `clientId`)
            // that reqwest would not strip on a cross-host redirect: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Tls {
                message: format!("cannot build HTTP client: {}", e.without_url()),
            })?;
        Ok(Http {
            client,
            backend,
            retry: retry.clone(),
        })
    }

    /// A request carrying `headers` and, when given, `body` as JSON.
    pub fn request(
        &self,
        method: Method,
        url: &url::Url,
        headers: &HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> RequestBuilder {
        let request = self
            .client
            .request(method, url.clone())
            .headers(headers.clone());
        match body {
            Some(body) => json_body(request, body),
            None => request,
        }
    }

    /// Sends [`Http::request`]`(method, url, headers, body)` with retry.
    pub async fn call(
        &self,
        safety: Safety,
        method: Method,
        url: &url::Url,
        headers: &HeaderMap,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        self.send(safety, &|| self.request(method.clone(), url, headers, body))
            .await
    }

    /// Sends the request built by `build`, retrying per the policy.
    pub async fn send(
        &self,
        safety: Safety,
        build: &(dyn Fn() -> RequestBuilder + Send + Sync),
    ) -> Result<Reply> {
        let mut attempt = 0;
        loop {
            let err = match self.send_once(build()).await {
                Ok(reply) => return Ok(reply),
                Err(err) => err,
            };
            match self.retry.decide(attempt, &err, safety, fastrand::f64()) {
                RetryDecision::RetryAfter(wait) => {
                    tracing::debug!(backend = self.backend, attempt, ?wait, error = %err, "retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                RetryDecision::GiveUp => return Err(err),
            }
        }
    }

    async fn send_once(&self, request: RequestBuilder) -> Result<Reply> {
        let response = request
            .send()
            .await
            .map_err(|e| transport(self.backend, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(self.backend, e))?
            .to_vec();
        if status.is_success() {
            return Ok(Reply {
                backend: self.backend,
                body,
            });
        }
        Err(classify(self.backend, status, &headers, &body))
    }
}

/// Maps a reqwest error to [`Error::Transport`], removing the URL (webhook URLs are secrets).
pub(crate) fn transport(backend: &'static str, e: reqwest::Error) -> Error {
    let connect = e.is_connect();
    Error::Transport {
        backend,
        connect,
        source: Box::new(e.without_url()),
    }
}

/// Maps a non-success response to an error.
pub(crate) fn classify(
    backend: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Error {
    let message = error_message(body);
    match status.as_u16() {
        429 => Error::RateLimited {
            backend,
            retry_after: headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, chrono::Utc::now())),
        },
        s @ (401 | 403) => Error::Auth {
            backend,
            status: s,
            message,
        },
        s => Error::Api {
            backend,
            status: s,
            message,
        },
    }
}

/// A short single-line message from an error body: `message`, `error_description`, `error`
/// or the first of `errors` when the body is JSON, else the text itself.
pub(crate) fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let pick = |v: &serde_json::Value| -> Option<String> {
                match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Object(o) => {
                        o.get("message").and_then(|m| m.as_str()).map(str::to_owned)
                    }
                    _ => None,
                }
            };
            ["message", "error_description", "error", "Message"]
                .iter()
                .find_map(|k| v.get(k).and_then(|m| m.as_str()).map(str::to_owned))
                .or_else(|| {
                    v.get("errors")
                        .and_then(|e| e.as_array())
                        .and_then(|a| a.first())
                        .and_then(pick)
                })
        });
    let msg = from_json.unwrap_or_else(|| text.into_owned());
    escape::ellipsize(&escape::single_line(msg.trim()), 300).into_owned()
}

/// Decodes JSON, naming the failing path.
pub(crate) fn decode<T: DeserializeOwned>(backend: &'static str, body: &[u8]) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| Error::Decode {
        backend,
        path: e.path().to_string(),
        message: escape::ellipsize(&e.inner().to_string(), 200).into_owned(),
    })
}

/// Parses a base URL: `https` required unless the host is loopback; a trailing `/` is added so
/// relative joins append.
pub(crate) fn base_url(key: &str, raw: &str) -> Result<url::Url> {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let mut url =
        url::Url::parse(&with_scheme).map_err(|e| Error::config(key, format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::config(
                key,
                "plain http is allowed only for loopback hosts; use https",
            ))
        }
        other => return Err(Error::config(key, format!("unsupported scheme `{other}`"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(key, "must not contain a query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

pub(crate) fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Joins a relative path onto a base URL ending in `/`.
pub(crate) fn join(base: &url::Url, path: &str) -> Result<url::Url> {
    base.join(path)
        .map_err(|e| Error::config("base_url", format!("cannot join `{path}`: {e}")))
}

/// True when a write failed in a way that leaves its outcome unknown (the request may have been
/// processed): a transport failure after connecting, or a 5xx / 408.
pub(crate) fn outcome_unknown(e: &Error) -> bool {
    match e {
        Error::Transport { connect, .. } => !connect,
        Error::Api { status, .. } => matches!(status, 408 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

/// Creates a ticket without ever duplicating it: when a create's outcome is unknown, the PSA is
/// searched for the external reference before the create is repeated (bounded by the policy).
pub(crate) async fn create_reconciled<S: crate::TicketSink + ?Sized, Fut>(
    sink: &S,
    retry: &RetryPolicy,
    external_ref: &str,
    post: impl Fn() -> Fut,
) -> Result<crate::TicketRef>
where
    Fut: std::future::Future<Output = Result<crate::TicketRef>>,
{
    let mut attempt = 0;
    loop {
        let err = match post().await {
            Ok(t) => return Ok(t),
            Err(e) => e,
        };
        if !outcome_unknown(&err) {
            return Err(err);
        }
        // Searching first makes the repeat safe, so the idempotent schedule applies.
        match retry.decide(attempt, &err, Safety::Idempotent, fastrand::f64()) {
            RetryDecision::GiveUp => return Err(err),
            RetryDecision::RetryAfter(wait) => {
                tracing::warn!(backend = sink.name(), error = %err, "create outcome unknown; searching before retrying");
                tokio::time::sleep(wait).await;
                if let Some(found) = sink.find_open(external_ref).await? {
                    return Ok(found);
                }
                attempt += 1;
            }
        }
    }
}

/// The answer to a request, given one more try when the `first` answered 401 and `recover`
/// (which drops a stale token or zone) says another try may help. Both futures are lazy: they
/// run only when needed.
pub(crate) async fn once_more_after_401<T>(
    first: Result<T>,
    recover: impl std::future::Future<Output = bool>,
    again: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    if matches!(first, Err(Error::Auth { status: 401, .. })) && recover.await {
        return again.await;
    }
    first
}

/// Creates a ticket through [`create_reconciled`], then adds the ticket's internal note (for
/// PSAs whose create call cannot carry one). A failed note is logged, not returned: the ticket
/// exists either way, and an error would make the caller create it again.
pub(crate) async fn create_then_note<S: crate::TicketSink + ?Sized, Fut>(
    sink: &S,
    retry: &RetryPolicy,
    ticket: &crate::Ticket,
    post: impl Fn() -> Fut,
) -> Result<crate::TicketRef>
where
    Fut: std::future::Future<Output = Result<crate::TicketRef>>,
{
    let created = create_reconciled(sink, retry, &ticket.external_ref, post).await?;
    if let Some(internal) = &ticket.internal_note {
        let note = crate::Note::internal(internal.clone());
        if let Err(e) = sink.add_note(&created, &note).await {
            tracing::warn!(backend = sink.name(), error = %e, ticket = %created.id, "internal note on new ticket failed");
        }
    }
    Ok(created)
}

/// A numeric PSA id from a ticket field (`given`), else the configured `default`; a name where
/// `product` needs an id is an error naming `field`.
pub(crate) fn numeric_or_default(
    product: &str,
    field: &'static str,
    given: Option<&str>,
    default: Option<i64>,
) -> Result<Option<i64>> {
    match given.map(crate::Reference::parse) {
        Some(crate::Reference::Id(id)) => Ok(Some(id)),
        Some(crate::Reference::Name(_)) => Err(Error::InvalidInput {
            field,
            message: format!("{product} needs a numeric id here"),
        }),
        None => Ok(default),
    }
}

/// A header value from configuration, marked sensitive when it carries a credential; invalid
/// characters are a configuration error naming `key` (never repeating the value).
pub(crate) fn header_value(key: &str, value: &str, sensitive: bool) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::config(key, "contains invalid characters"))?;
    v.set_sensitive(sensitive);
    Ok(v)
}

/// Rejects a blank required setting, naming `key`.
pub(crate) fn require_non_empty(key: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::config(key, "must not be empty"));
    }
    Ok(())
}

/// Validates an external reference against a PSA field limit (never truncated: a truncated key
/// could collide with another).
pub(crate) fn check_external_ref(external_ref: &str, max_chars: usize) -> Result<()> {
    if external_ref.trim().is_empty() {
        return Err(Error::InvalidInput {
            field: "ticket.external_ref",
            message: "must not be empty".to_owned(),
        });
    }
    if external_ref.chars().count() > max_chars {
        return Err(Error::InvalidInput {
            field: "ticket.external_ref",
            message: format!("longer than the target field's {max_chars} characters"),
        });
    }
    if external_ref.chars().any(char::is_control) {
        return Err(Error::InvalidInput {
            field: "ticket.external_ref",
            message: "must not contain control characters".to_owned(),
        });
    }
    Ok(())
}

/// Parses a PSA ticket id (numeric), so it can be placed in a URL path safely.
pub(crate) fn numeric_id(ticket: &crate::TicketRef) -> Result<i64> {
    ticket
        .id
        .trim()
        .parse::<i64>()
        .map_err(|_| Error::InvalidInput {
            field: "ticket.id",
            message: "must be a numeric ticket id".to_owned(),
        })
}

/// Serializes a JSON request body (reqwest's `json` feature is not enabled to keep the
/// dependency lean).
pub(crate) fn json_body(request: RequestBuilder, body: &impl serde::Serialize) -> RequestBuilder {
    match serde_json::to_vec(body) {
        Ok(bytes) => request
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes),
        // Serializing our own `Value`s cannot fail; keep the request well-formed anyway.
        Err(_) => request.body("null"),
    }
}

/// Parses a webhook URL held as a secret. The error never repeats the URL (it embeds a
/// signature or token).
#[cfg(any(feature = "teams", feature = "slack"))]
pub(crate) fn webhook_url(key: &str, secret: &secrecy::SecretString) -> Result<url::Url> {
    use secrecy::ExposeSecret;
    let url = url::Url::parse(secret.expose_secret().trim())
        .map_err(|_| Error::config(key, "not a valid URL"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(Error::config(key, "must be an https URL")),
    }
}

/// A link safe to put behind a button: `http`/`https` only, at most `max` characters.
#[cfg(any(feature = "teams", feature = "slack"))]
pub(crate) fn safe_link(link: Option<&str>, max: usize) -> Option<&str> {
    let link = link?.trim();
    let parsed = url::Url::parse(link).ok()?;
    (matches!(parsed.scheme(), "http" | "https") && link.chars().count() <= max).then_some(link)
}
