//! The HTTP client: configuration, authentication, sending a [`PreparedRequest`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Error, Result, TransportKind};
use crate::ids::OrganizationId;
use crate::models::PageMeta;
use crate::request::{Method, PreparedRequest};
use crate::retry::{RetryDecision, RetryPolicy};

/// Default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default client-side request rate (requests per second, shared by clones).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 = 10.0;
/// Default number of requests in flight at once (shared by clones).
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Default page size for streamed list calls.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Default cap on pages fetched by one stream.
pub const DEFAULT_MAX_PAGES: u32 = 1000;
/// Default number of row ids a stream remembers for de-duplication.
pub const DEFAULT_DEDUPE_WINDOW: usize = 100_000;
/// Default cap on one response body (64 MiB): a page of 1000 action-log rows is about 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// How much of an error body is kept.
const MAX_ERROR_BODY: usize = 2048;
/// How much of an error body is read (the rest is discarded, not an error).
const MAX_ERROR_BODY_READ: u64 = 64 * 1024;
/// How much of a body that is not JSON is quoted in the error.
const NOT_JSON_SNIPPET: usize = 120;

/// Builds a [`Client`]. Start with [`Client::builder`].
pub struct ClientBuilder {
    api_key: SecretString,
    base_url: Option<String>,
    instance: Option<String>,
    organization: Option<OrganizationId>,
    timeout: Duration,
    retry: RetryPolicy,
    max_requests_per_second: Option<f64>,
    max_concurrency: usize,
    user_agent: String,
    page_size: u32,
    max_pages: u32,
    dedupe_window: usize,
    max_response_bytes: u64,
    sleeper: Arc<dyn Sleeper>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("instance", &self.instance)
            .field("organization", &self.organization)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("max_requests_per_second", &self.max_requests_per_second)
            .field("max_concurrency", &self.max_concurrency)
            .field("user_agent", &self.user_agent)
            .field("page_size", &self.page_size)
            .field("max_pages", &self.max_pages)
            .field("dedupe_window", &self.dedupe_window)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    setters! {
        /// Uses the instance letter shown in the portal (`g` → `https://portalapi.g.threatlocker.com`).
        instance(instance: impl Into<String>) = Some(instance.into());

        /// Uses an explicit base URL (for the beta portal, a proxy, or a local simulator).
        /// `http://` is accepted only for loopback hosts.
        base_url(url: impl Into<String>) = Some(url.into());

        /// Acts on this organization by default (`managedOrganizationId`).
        organization(org: impl Into<OrganizationId>) = Some(org.into());

        /// Per-request timeout, from sending the request to the end of the body (default 60 s).
        /// Connecting has its own timeout: the smaller of this and 15 s. A call that times out
        /// fails with an error saying "timed out after N s" and naming the endpoint.
        timeout(timeout: Duration) = timeout;

        /// Retry policy for reads.
        retry(policy: RetryPolicy) = policy;

        /// Client-side request rate, shared by every clone (default 10/s). `0` or less disables it.
        max_requests_per_second(rps: f64) = (rps > 0.0 && rps.is_finite()).then_some(rps);

        /// Requests in flight at once, shared by every clone (default 8).
        max_concurrency(n: usize) = n.max(1);

        /// The `User-Agent` header.
        user_agent(ua: impl Into<String>) = ua.into();

        /// Page size used by `.stream()` calls (default 500).
        page_size(n: u32) = n.max(1);

        /// Cap on pages one stream fetches (default 1000).
        max_pages(n: u32) = n.max(1);

        /// How many row ids a stream remembers, at least, to drop rows repeated across pages
        /// (default 100 000, i.e. 100 pages of 1000; at most twice that is held). Rows shift
        /// between page fetches only by the number of rows added meanwhile, so a bounded window
        /// catches repeats while keeping a long stream's memory flat. `0` turns de-duplication
        /// off.
        dedupe_window(rows: usize) = rows;

        /// Cap on one response body, in bytes (default [`DEFAULT_MAX_RESPONSE_BYTES`], 64 MiB).
        /// Checked while the body streams in (and against `Content-Length` before), so a huge
        /// or endless answer fails with [`Error::ResponseTooLarge`] instead of filling memory.
        max_response_bytes(bytes: u64) = bytes.max(1);

        /// Replaces how the client waits between retries (tests inject an instant sleeper).
        sleeper(sleeper: Arc<dyn Sleeper>) = sleeper;
    }

    /// Validates the configuration and builds the client.
    pub fn build(self) -> Result<Client> {
        let key = self.api_key.expose_secret().trim();
        // Strip an accidental `Bearer` scheme (any casing): the API wants the raw key.
        let key = match key.get(..6) {
            Some(p)
                if p.eq_ignore_ascii_case("bearer")
                    && key[6..].chars().next().is_none_or(char::is_whitespace) =>
            {
                key[6..].trim()
            }
            _ => key,
        };
        if key.is_empty() {
            return Err(Error::Config("the API key is empty".into()));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::Config(
                "the API key contains whitespace or control characters".into(),
            ));
        }
        let api_key = SecretString::from(key.to_owned());
        let base_url = resolve_base_url(self.base_url.as_deref(), self.instance.as_deref())?;

        let connect_timeout = self.timeout.min(MAX_CONNECT_TIMEOUT);
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(connect_timeout)
            // Never follow a redirect: it would carry the key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent.clone())
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key,
                retry: self.retry,
                limits: crate::limits::Limits::new(
                    self.max_requests_per_second,
                    self.max_concurrency,
                ),
                page_size: self.page_size,
                max_pages: self.max_pages,
                dedupe_window: self.dedupe_window,
                max_response_bytes: self.max_response_bytes,
                timeout: self.timeout,
                connect_timeout,
                sleeper: self.sleeper,
            }),
            organization: self.organization,
        })
    }
}

fn resolve_base_url(base_url: Option<&str>, instance: Option<&str>) -> Result<Url> {
    let raw = match (base_url, instance) {
        (Some(u), _) => u.trim().to_owned(),
        (None, Some(i)) => {
            let i = i.trim().to_ascii_lowercase();
            if i.is_empty() || !i.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(Error::Config(format!(
                    "instance {i:?} is not an instance name (a letter such as \"g\")"
                )));
            }
            format!("https://portalapi.{i}.threatlocker.com")
        }
        (None, None) => {
            return Err(Error::Config(
                "set an instance (the letter in the portal's Help menu) or a base URL".into(),
            ))
        }
    };
    let mut url = Url::parse(&raw)
        .map_err(|e| Error::Config(format!("base URL {raw:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if !loopback {
                return Err(Error::Config(format!(
                    "base URL {raw:?} uses plain http; only https is allowed except on loopback"
                )));
            }
        }
        other => {
            return Err(Error::Config(format!(
                "base URL {raw:?} has scheme {other:?}; use https"
            )))
        }
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "base URL {raw:?} must not have a query or fragment"
        )));
    }
    // Endpoint paths carry `/portalapi/...`; accept a base that already ends in it.
    let trimmed = url.path().trim_end_matches('/').to_owned();
    let trimmed = trimmed
        .strip_suffix("/portalapi")
        .or_else(|| trimmed.strip_suffix("/portalApi"))
        .unwrap_or(&trimmed)
        .to_owned();
    url.set_path(&trimmed);
    Ok(url)
}

/// A ThreatLocker Portal API client. Cheap to clone: clones share the connection pool, the
/// rate limit and the concurrency limit.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
    pub(crate) organization: Option<OrganizationId>,
}

pub(crate) struct Inner {
    pub(crate) http: reqwest::Client,
    pub(crate) base_url: Url,
    api_key: SecretString,
    pub(crate) retry: RetryPolicy,
    pub(crate) limits: crate::limits::Limits,
    pub(crate) page_size: u32,
    pub(crate) max_pages: u32,
    pub(crate) dedupe_window: usize,
    max_response_bytes: u64,
    timeout: Duration,
    connect_timeout: Duration,
    pub(crate) sleeper: Arc<dyn Sleeper>,
}

/// Longest time spent connecting, whatever the request timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Waits between retry attempts. The default uses `tokio::time::sleep`; tests inject one that
/// records the delays and returns at once.
pub trait Sleeper: Send + Sync + 'static {
    /// Waits for `delay`.
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

/// The default [`Sleeper`]: `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .field("organization", &self.organization)
            .field("api_key", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// A successful response before decoding.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawResponse {
    /// HTTP status (2xx).
    pub status: u16,
    /// The `pagination` header (or the separate `totalItems`/`totalPages` headers), parsed.
    pub page_meta: Option<PageMeta>,
    /// The body.
    pub body: Vec<u8>,
}

impl Client {
    /// Starts building a client with the API key (held as a secret; an accidental `Bearer `
    /// prefix is stripped).
    pub fn builder(api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            api_key: SecretString::from(api_key.into()),
            base_url: None,
            instance: None,
            organization: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            max_requests_per_second: Some(DEFAULT_MAX_REQUESTS_PER_SECOND),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            user_agent: format!("threatlocker-api-rs/{}", env!("CARGO_PKG_VERSION")),
            page_size: DEFAULT_PAGE_SIZE,
            max_pages: DEFAULT_MAX_PAGES,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// A clone that acts on `org` (sends `managedOrganizationId: org`).
    pub fn with_organization(&self, org: impl Into<OrganizationId>) -> Client {
        Client {
            inner: Arc::clone(&self.inner),
            organization: Some(org.into()),
        }
    }

    /// The organization this client acts on, if one was set.
    pub fn organization(&self) -> Option<&OrganizationId> {
        self.organization.as_ref()
    }

    /// The base URL requests go to.
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// Sends a prepared request once, without retrying (and without waiting for the limits).
    /// Kept for the write side, which sometimes needs exactly one attempt.
    #[allow(dead_code)]
    pub(crate) async fn send_once(&self, req: &PreparedRequest) -> Result<RawResponse> {
        self.attempt(req).await.0
    }

    /// One attempt: the result and the server's `Retry-After`, when it sent one.
    async fn attempt(&self, req: &PreparedRequest) -> (Result<RawResponse>, Option<Duration>) {
        let endpoint = req.endpoint();
        match self.attempt_inner(req, &endpoint).await {
            Ok(r) => (Ok(r), None),
            Err((e, retry_after)) => (Err(e), retry_after),
        }
    }

    async fn attempt_inner(
        &self,
        req: &PreparedRequest,
        endpoint: &str,
    ) -> std::result::Result<RawResponse, (Error, Option<Duration>)> {
        let url = self.url_for(req).map_err(|e| (e, None))?;
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(self.inner.api_key.expose_secret()).map_err(|_| {
            (
                Error::Config("the API key is not a valid header value".into()),
                None,
            )
        })?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(org) = req.organization.as_ref().or(self.organization.as_ref()) {
            let v = HeaderValue::from_str(org.as_str()).map_err(|_| {
                let msg = format!("organization id {org:?} is not a header value");
                (Error::InvalidRequest(msg), None)
            })?;
            headers.insert(HeaderName::from_static("managedorganizationid"), v);
        }
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                (
                    Error::InvalidRequest(format!("bad header name {k:?}")),
                    None,
                )
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                (
                    Error::InvalidRequest(format!("bad value for header {k}")),
                    None,
                )
            })?;
            headers.insert(name, value);
        }
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = self.inner.http.request(method, url).headers(headers);
        if let Some(body) = &req.body {
            let bytes = serde_json::to_vec(body).map_err(|e| {
                let msg = format!("body is not serializable: {e}");
                (Error::InvalidRequest(msg), None)
            })?;
            builder = builder.header(CONTENT_TYPE, "application/json").body(bytes);
        } else if req.method != Method::Get {
            // Some POST endpoints take no body; send an explicit empty JSON length.
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(Vec::new());
        }

        let mut response = builder
            .send()
            .await
            .map_err(|e| (self.transport_error(endpoint, e), None))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let page_meta = page_meta_from_headers(response.headers());
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let ok = (200..300).contains(&status);

        // Read the body chunk by chunk against the cap, so an oversized answer is refused
        // before it is all in memory. An error body is only ever quoted, so past a small
        // limit the rest is dropped rather than treated as a failure.
        let limit = if ok {
            self.inner.max_response_bytes
        } else {
            MAX_ERROR_BODY_READ.min(self.inner.max_response_bytes)
        };
        let too_large = || {
            (
                Error::ResponseTooLarge {
                    endpoint: endpoint.to_owned(),
                    limit: self.inner.max_response_bytes,
                },
                None,
            )
        };
        let announced = response.content_length();
        if ok && announced.is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body =
            Vec::with_capacity(usize::try_from(announced.unwrap_or(0).min(limit)).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| (self.transport_error(endpoint, e), retry_after))?
        {
            let room = usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(body.len());
            if chunk.len() > room {
                if ok {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk[..room]);
                break;
            }
            body.extend_from_slice(&chunk);
        }

        if ok {
            if req.safety == crate::request::Safety::Read
                && !looks_like_json(&body, content_type.as_deref())
            {
                return Err((
                    Error::NotJson {
                        endpoint: endpoint.to_owned(),
                        status,
                        content_type,
                        snippet: self.snippet(&body),
                    },
                    retry_after,
                ));
            }
            return Ok(RawResponse {
                status,
                page_meta,
                body,
            });
        }
        Err((
            self.status_error(endpoint, status, retry_after, &body),
            retry_after,
        ))
    }

    fn url_for(&self, req: &PreparedRequest) -> Result<Url> {
        let mut url = self.inner.base_url.clone();
        let path = format!(
            "{}/{}",
            url.path().trim_end_matches('/'),
            req.path.trim_start_matches('/')
        );
        url.set_path(&path);
        if !req.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        Ok(url)
    }

    /// Turns an error status into an [`Error`], scrubbing the key from the kept body.
    pub(crate) fn status_error(
        &self,
        endpoint: &str,
        status: u16,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> Error {
        let text = self.scrub(&String::from_utf8_lossy(body));
        if status == 440 || (status == 403 && text.to_ascii_uppercase().contains("TOKEN_REVOKED")) {
            return Error::WrongInstanceOrRevokedKey { status };
        }
        if status == 429 {
            return Error::RateLimited { retry_after };
        }
        let (message, logger_id) = parse_error_body(&text);
        let hint = hint_for(endpoint, status, message.as_deref());
        Error::Api {
            status,
            endpoint: endpoint.to_owned(),
            message,
            logger_id,
            body: truncate(&text, MAX_ERROR_BODY),
            hint,
        }
    }

    /// The start of a body, quoted with control characters escaped, the key scrubbed.
    fn snippet(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(NOT_JSON_SNIPPET);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = if end < text.len() { "…" } else { "" };
        format!("{:?}{cut}", self.scrub(text[..end].trim_start()))
    }

    /// Maps a reqwest failure, saying which timeout expired when one did.
    fn transport_error(&self, endpoint: &str, e: reqwest::Error) -> Error {
        let connect = e.is_connect();
        let kind = if connect {
            // Nothing was sent, even when connecting timed out.
            TransportKind::Connect
        } else if e.is_timeout() {
            TransportKind::Timeout
        } else {
            TransportKind::Other
        };
        let timed_out_after = e.is_timeout().then_some(if connect {
            self.inner.connect_timeout
        } else {
            self.inner.timeout
        });
        // reqwest errors carry the URL, never headers, so the key cannot leak through them.
        Error::Transport {
            kind,
            endpoint: endpoint.to_owned(),
            timed_out_after,
            source: Box::new(e.without_url()),
        }
    }

    /// Removes the API key from text that is about to be stored or logged.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let key = self.inner.api_key.expose_secret();
        if key.len() >= 4 && text.contains(key) {
            text.replace(key, "[redacted]")
        } else {
            text.to_owned()
        }
    }
}

/// Whether a successful body can be JSON: empty (the API's "no rows", whatever its content
/// type), or starting like a JSON value and not labelled HTML. Cheap: only the first byte is
/// looked at.
pub(crate) fn looks_like_json(body: &[u8], content_type: Option<&str>) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => true,
        Some(_) if content_type.is_some_and(|t| t.to_ascii_lowercase().contains("html")) => false,
        Some(b) => b"{[\"-0123456789tfn".contains(b),
    }
}

/// Parses `Retry-After`: delta seconds or an HTTP date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

fn page_meta_from_headers(h: &HeaderMap) -> Option<PageMeta> {
    if let Some(meta) = h
        .get("pagination")
        .and_then(|v| v.to_str().ok())
        .and_then(PageMeta::from_header)
    {
        return Some(meta);
    }
    let num = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
    };
    let (total_items, total_pages) = (num("totalItems"), num("totalPages"));
    if total_items.is_none() && total_pages.is_none() {
        return None;
    }
    Some(PageMeta {
        total_items,
        total_pages,
        first_item: num("firstItem"),
        last_item: num("lastItem"),
        ..PageMeta::default()
    })
}

fn parse_error_body(text: &str) -> (Option<String>, Option<String>) {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        let t = text.trim();
        return (
            (!t.is_empty() && t.len() <= 300).then(|| t.to_owned()),
            None,
        );
    };
    let get = |names: &[&str]| {
        names.iter().find_map(|n| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .and_then(|(_, v)| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                })
        })
    };
    let mut message = get(&["message", "title"]);
    if let Some(serde_json::Value::Object(errors)) = map.get("errors") {
        let details: Vec<String> = errors
            .iter()
            .map(|(field, msgs)| format!("{field}: {msgs}"))
            .collect();
        if !details.is_empty() {
            message = Some(format!(
                "{}{}",
                message.map(|m| format!("{m}; ")).unwrap_or_default(),
                details.join("; ")
            ));
        }
    }
    (message, get(&["loggerId"]))
}

/// The likely cause of an error, where the reference documents a misleading one.
fn hint_for(endpoint: &str, status: u16, message: Option<&str>) -> Option<&'static str> {
    let m = message.unwrap_or("").to_ascii_lowercase();
    match status {
        500 if endpoint.ends_with("ActionLogGetByParametersV2") => Some(
            "a parent (MSP) key may need child_organizations(true) or a managed organization",
        ),
        500 if endpoint.ends_with("ActionLogGetByIdV2") => {
            Some("the row may live in another source table, or the id is not an eActionLogId")
        }
        500 if endpoint.ends_with("ApprovalRequestGetByParameters") => {
            Some("the statusId may be invalid")
        }
        401 if m.contains("missing the") && m.contains("permission") => Some(
            "a built-in application must be permitted for the entire organization; also check the body shape and the API user's role",
        ),
        401 => Some("the key is invalid or expired, or the API user lacks the role for this call"),
        403 => Some("the API user's role or organization access does not allow this call"),
        417 if m.contains("date range") => Some("send both startDate and endDate"),
        417 if m.contains("missing parameters") => {
            Some("file history needs fullPath plus a hostname or computer id")
        }
        417 if m.contains("known os type") => {
            Some("for computer scope leave every policyLevel flag false")
        }
        417 if m.contains("name for a new application") => {
            Some("set newApplicationName when using a new application")
        }
        400 if m.contains("already actioned") => Some("someone already actioned this request"),
        300..=399 => Some(
            "the API redirected; redirects are never followed (the key would go along), check the instance or base URL",
        ),
        400 if m.contains("unable to retrieve application policy") => {
            Some("send the policy's owning organization as managedOrganizationId")
        }
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Client {
    /// Sends a prepared request, waiting for the client's rate and concurrency limits before
    /// every attempt, and retrying per [`RetryPolicy::decide`]: reads on transient failures,
    /// writes ([`crate::Safety::Write`]) only on a connect error that never sent them.
    ///
    /// When the retry budget runs out on a retryable failure the error is
    /// [`Error::RetriesExhausted`] (the last failure is its source); any other failure is
    /// returned as is.
    pub async fn execute(&self, req: &PreparedRequest) -> Result<RawResponse> {
        self.execute_with(req, &[]).await
    }

    /// [`Client::execute`], except that an API error with one of `final_statuses` is returned
    /// at once instead of retried (for calls where that status is a meaningful answer, such
    /// as the 500 `ActionLogGetByIdV2` gives for a row in another source table).
    pub(crate) async fn execute_with(
        &self,
        req: &PreparedRequest,
        final_statuses: &[u16],
    ) -> Result<RawResponse> {
        use tracing::Instrument;
        // One span per call: what it was (endpoint), how it went (attempt, status) and how long
        // it waited for the client's limits and between retries (wait_ms). Credentials are
        // never recorded: the endpoint is the method and path, without query or headers.
        let span = tracing::info_span!(
            "threatlocker_request",
            endpoint = %req.endpoint(),
            attempt = tracing::field::Empty,
            status = tracing::field::Empty,
            wait_ms = tracing::field::Empty,
        );
        self.execute_in_span(req, final_statuses)
            .instrument(span)
            .await
    }

    async fn execute_in_span(
        &self,
        req: &PreparedRequest,
        final_statuses: &[u16],
    ) -> Result<RawResponse> {
        let span = tracing::Span::current();
        let policy = &self.inner.retry;
        let mut attempt = 0u32;
        let mut waited = Duration::ZERO;
        loop {
            attempt += 1;
            span.record("attempt", attempt);
            let (result, retry_after) = {
                let queued = std::time::Instant::now();
                let _permit = self.inner.limits.acquire().await;
                waited += queued.elapsed();
                span.record("wait_ms", millis(waited));
                let started = std::time::Instant::now();
                let (result, retry_after) = self.attempt(req).await;
                tracing::debug!(
                    elapsed_ms = millis(started.elapsed()),
                    ok = result.is_ok(),
                    "attempt finished"
                );
                (result, retry_after)
            };
            let error = match result {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let decision = match &error {
                Error::Api { status, .. } if final_statuses.contains(status) => {
                    RetryDecision::GiveUp
                }
                _ => policy.decide(attempt, req.safety, &error, retry_after, fastrand::f64()),
            };
            match decision {
                RetryDecision::RetryAfter(delay) => {
                    tracing::info!(
                        attempt,
                        delay_ms = millis(delay),
                        error = %error,
                        "retrying"
                    );
                    self.inner.sleeper.sleep(delay).await;
                    waited += delay;
                    span.record("wait_ms", millis(waited));
                }
                RetryDecision::GiveUp => {
                    if attempt > 1
                        && RetryPolicy::is_retryable(req.safety, &error)
                        && !matches!(&error, Error::Api { status, .. } if final_statuses.contains(status))
                    {
                        return Err(Error::RetriesExhausted {
                            attempts: attempt,
                            last: Box::new(error),
                        });
                    }
                    return Err(error);
                }
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Client {
    /// Escape hatch for endpoints not modelled yet: `GET path?query`, retried like any read,
    /// returning the body as JSON (`null` for an empty body).
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Result<serde_json::Value> {
        let mut req = PreparedRequest::get(path);
        for (k, v) in query {
            req = req.with_query(*k, v);
        }
        self.json_of(&req).await
    }

    /// Escape hatch: a retry-safe POST search (`...GetByParameters` and similar) with a JSON
    /// body, retried like any read.
    pub async fn search_json(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.json_of(&PreparedRequest::search(path, body)).await
    }

    /// Escape hatch: a POST treated as a **write** (never retried blindly; only a connect error
    /// that never sent it is retried). Use [`Client::search_json`] for searches.
    pub async fn post_json(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value> {
        self.json_of(&PreparedRequest::write(
            crate::request::Method::Post,
            path,
            Some(body),
        ))
        .await
    }

    async fn json_of(&self, req: &PreparedRequest) -> Result<serde_json::Value> {
        let raw = self.execute(req).await?;
        Ok(crate::decode::decode_optional(&req.endpoint(), &raw.body)?
            .unwrap_or(serde_json::Value::Null))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_rules() {
        assert_eq!(
            resolve_base_url(None, Some("G")).unwrap().as_str(),
            "https://portalapi.g.threatlocker.com/"
        );
        assert!(resolve_base_url(Some("http://portalapi.g.threatlocker.com"), None).is_err());
        assert!(resolve_base_url(Some("http://127.0.0.1:8080"), None).is_ok());
        assert!(resolve_base_url(Some("http://localhost:8080"), None).is_ok());
        assert!(resolve_base_url(Some("http://[::1]:8080"), None).is_ok());
        assert!(resolve_base_url(Some("ftp://x"), None).is_err());
        assert!(resolve_base_url(None, None).is_err());
        assert_eq!(
            resolve_base_url(Some("https://x.example/portalapi/"), None)
                .unwrap()
                .path(),
            "/"
        );
    }

    #[test]
    fn retry_after_seconds_or_http_date() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        let d = parse_retry_after(&soon.to_rfc2822()).unwrap();
        assert!(
            d <= Duration::from_secs(30) && d >= Duration::from_secs(25),
            "{d:?}"
        );
        let past = parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(past, Duration::ZERO);
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn error_bodies_in_either_casing() {
        let (m, l) = parse_error_body(
            r#"{"LoggerId":"0HMV","StatusCode":417,"Message":"Invalid Date Range"}"#,
        );
        assert_eq!(m.as_deref(), Some("Invalid Date Range"));
        assert_eq!(l.as_deref(), Some("0HMV"));
        let (m, _) = parse_error_body(r#"{"message":"lower"}"#);
        assert_eq!(m.as_deref(), Some("lower"));
    }

    #[test]
    fn what_looks_like_json() {
        let json = Some("application/json; charset=utf-8");
        let html = Some("text/html");
        // (body, content type, looks like JSON)
        let cases: &[(&[u8], Option<&str>, bool)] = &[
            (b"[]", json, true),
            (b" {\"a\":1}", None, true),
            (b"null", Some("text/plain"), true),
            (b"7", json, true),
            (b"-1", json, true),
            (b"\"x\"", json, true),
            (b"\xEF\xBB\xBF[]", json, true),
            (b"", html, true),
            (b"  \n", html, true),
            (b"<html></html>", json, false),
            (b"<!DOCTYPE html>", None, false),
            (b"[]", html, false),
            (b"Service Unavailable", Some("text/plain"), false),
        ];
        for (body, ct, want) in cases {
            assert_eq!(
                looks_like_json(body, *ct),
                *want,
                "{:?} {ct:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn builder_strips_bearer_and_hides_key() {
        let c = Client::builder("Bearer abcdef0123456789")
            .base_url("http://127.0.0.1:1")
            .build()
            .unwrap();
        assert_eq!(c.inner.api_key.expose_secret(), "abcdef0123456789");
        assert!(!format!("{c:?}").contains("abcdef0123456789"));
        assert_eq!(c.scrub("key=abcdef0123456789"), "key=[redacted]");
    }
}
