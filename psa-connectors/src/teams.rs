//! Microsoft Teams through a Workflows ("When a Teams webhook request is received") or legacy
//! incoming-webhook URL, posting an Adaptive Card in the `attachments` envelope.
//!
//! * Payload: `{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","contentUrl":null,"content":{…AdaptiveCard 1.4…}}]}`.
//!   Only `Action.OpenUrl` is used (webhooks do not support `Action.Submit`), and only for
//!   `http`/`https` links.
//! * Text: escaped with [`escape::markdown`] (TextBlock and FactSet values render markdown);
//!   the title and every fact on one line ([`escape::markdown_line`]).
//! * Size: the documented limit is 28 KB but about 21 KB works in practice, so the payload is
//!   kept under [`Config::max_payload_bytes`] (default 20 000) by shortening the text, then the
//!   fact values, then dropping facts.
//! * Responses: a Workflows trigger answers 202 and fails later inside the flow, so a 2xx is
//!   the best evidence available; a legacy connector may report throttling inside a 200 body,
//!   which becomes [`Error::RateLimited`].
//!
//! The webhook URL embeds a signature: it is held as a secret and never printed or put in an
//! error.

use std::fmt;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::escape;
use crate::http::{self, Http};
use crate::retry::{RetryPolicy, Safety};
use crate::secret::{de_secret, REDACTED};
use crate::{Error, Notification, Notifier, Result, Severity};

const BACKEND: &str = "teams";
/// Teams' documented message size limit (28 KB); a larger payload is rejected, and a Workflows
/// trigger reports that only inside the flow, never to the sender.
pub const MAX_PAYLOAD_BYTES: usize = 28 * 1024;

fn default_max() -> usize {
    20_000
}

/// Teams webhook configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The full Workflows (or legacy connector) URL, signature included.
    #[serde(deserialize_with = "de_secret")]
    pub webhook_url: SecretString,
    /// Largest JSON payload to send, in bytes (default 20 000; 1 024 to [`MAX_PAYLOAD_BYTES`]).
    #[serde(default = "default_max")]
    pub max_payload_bytes: usize,
    /// Request timeout in seconds (default 30).
    #[serde(default = "http::default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retry policy (only throttled or never-connected posts are repeated).
    #[serde(default)]
    pub retry: RetryPolicy,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("webhook_url", &REDACTED)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Config {
    /// A configuration with defaults.
    pub fn new(webhook_url: SecretString) -> Self {
        Config {
            webhook_url,
            max_payload_bytes: default_max(),
            timeout_secs: http::default_timeout_secs(),
            retry: RetryPolicy::default(),
        }
    }
}

/// A Teams [`Notifier`].
#[derive(Clone)]
pub struct TeamsWebhook {
    http: Http,
    url: url::Url,
    max_payload_bytes: usize,
}

impl fmt::Debug for TeamsWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TeamsWebhook")
            .field("webhook_url", &REDACTED)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .finish()
    }
}

impl TeamsWebhook {
    /// Builds the notifier.
    pub fn new(config: Config) -> Result<Self> {
        let url = http::webhook_url("teams.webhook_url", &config.webhook_url)?;
        if !(1024..=MAX_PAYLOAD_BYTES).contains(&config.max_payload_bytes) {
            return Err(Error::config(
                "teams.max_payload_bytes",
                format!("must be 1024-{MAX_PAYLOAD_BYTES} (Teams rejects messages over 28 KB)"),
            ));
        }
        Ok(TeamsWebhook {
            http: Http::new(BACKEND, config.timeout_secs, &config.retry)?,
            url,
            max_payload_bytes: config.max_payload_bytes,
        })
    }
}

struct Limits {
    text: usize,
    fact_value: usize,
    facts: usize,
}

fn card(n: &Notification, l: &Limits) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": escape::markdown_line(&escape::ellipsize(&n.subject, 200)),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "color": match n.severity {
            Severity::High | Severity::Critical => "Attention",
            Severity::Medium => "Warning",
            Severity::Info | Severity::Low => "Default",
        },
    })];
    if !n.text.is_empty() && l.text > 0 {
        body.push(json!({
            "type": "TextBlock",
            "text": escape::markdown(&escape::ellipsize(&n.text, l.text)),
            "wrap": true,
        }));
    }
    let facts: Vec<Value> = n
        .facts
        .iter()
        .take(l.facts)
        .map(|(k, v)| {
            json!({
                "title": escape::markdown_line(&escape::ellipsize(k, 100)),
                "value": escape::markdown_line(&escape::ellipsize(v, l.fact_value)),
            })
        })
        .collect();
    if !facts.is_empty() {
        body.push(json!({"type": "FactSet", "facts": facts}));
    }
    let mut content = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    });
    if let Some(link) = http::safe_link(n.link.as_deref(), 2000) {
        content["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": content,
        }]
    })
}

/// The payload posted for `n`, kept under `max_bytes` of JSON (pure).
pub fn payload(n: &Notification, max_bytes: usize) -> Value {
    let mut l = Limits {
        text: 8000,
        fact_value: 1000,
        facts: 30,
    };
    loop {
        let value = card(n, &l);
        let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
        if size <= max_bytes {
            return value;
        }
        if l.text > 500 {
            l.text /= 2;
        } else if l.fact_value > 100 {
            l.fact_value /= 2;
        } else if l.facts > 0 {
            l.facts -= 1;
        } else if l.text > 0 {
            l.text = if l.text > 50 { l.text / 2 } else { 0 };
        } else {
            return value; // subject alone (≤ 200 characters) always fits the 1 KiB minimum
        }
    }
}

#[async_trait]
impl Notifier for TeamsWebhook {
    async fn send(&self, notification: &Notification) -> Result<()> {
        let body = payload(notification, self.max_payload_bytes);
        let reply = self
            .http
            .call(
                Safety::NonIdempotent,
                Method::POST,
                &self.url,
                &HeaderMap::new(),
                Some(&body),
            )
            .await?;
        let text = String::from_utf8_lossy(&reply.body);
        if text.contains("HTTP error 429") {
            return Err(Error::RateLimited {
                backend: BACKEND,
                retry_after: None,
            });
        }
        Ok(())
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
