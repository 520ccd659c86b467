//! Slack incoming webhooks with Block Kit blocks and a fallback `text`.
//!
//! * Payload: `text` (the notification fallback) plus `blocks`: a `header`, a `section` with
//!   the text, a `section` with up to 10 `fields` (the facts), and an `actions` button for an
//!   `http`/`https` link.
//! * Escaping: Slack's own rule (`&`, `<`, `>` as entities) via [`escape::slack`], which stops
//!   `<!channel>` mentions and `<url|label>` links in untrusted text.
//! * Limits: header 150 characters, section text 3 000, 10 fields of 2 000, well under the
//!   50-block and 40 000-character ceilings. Text is measured after escaping (an `&` is sent
//!   as the five characters `&amp;`), since the limits apply to what Slack receives.
//! * Responses: 200 with body `ok`; errors arrive as a plain-text code (`invalid_payload`,
//!   `channel_not_found`, …) kept in [`crate::Error::Api`]; 429 honours `Retry-After`.
//!
//! The webhook URL embeds a token: it is held as a secret and never printed or put in an
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
use crate::{Notification, Notifier, Result};

const BACKEND: &str = "slack";

/// Slack webhook configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The full `https://hooks.slack.com/services/…` URL.
    #[serde(deserialize_with = "de_secret")]
    pub webhook_url: SecretString,
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
            timeout_secs: http::default_timeout_secs(),
            retry: RetryPolicy::default(),
        }
    }
}

/// A Slack [`Notifier`].
#[derive(Clone)]
pub struct SlackWebhook {
    http: Http,
    url: url::Url,
}

impl fmt::Debug for SlackWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackWebhook")
            .field("webhook_url", &REDACTED)
            .finish()
    }
}

impl SlackWebhook {
    /// Builds the notifier.
    pub fn new(config: Config) -> Result<Self> {
        let url = http::webhook_url("slack.webhook_url", &config.webhook_url)?;
        Ok(SlackWebhook {
            http: Http::new(BACKEND, config.timeout_secs, &config.retry)?,
            url,
        })
    }
}

/// The payload posted for `n` (pure).
pub fn payload(n: &Notification) -> Value {
    let subject = escape::single_line(&n.subject);
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": escape::ellipsize(&subject, 150), "emoji": false},
    })];
    if !n.text.is_empty() {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": escape::slack_ellipsized(&n.text, 2900)},
        }));
    }
    let fields: Vec<Value> = n
        .facts
        .iter()
        .take(10)
        .map(|(k, v)| {
            let label = escape::slack_line_ellipsized(k, 100).into_owned();
            let value = escape::slack_line_ellipsized(v, 1500).into_owned();
            json!({"type": "mrkdwn", "text": format!("*{label}*\n{value}")})
        })
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": format!("Severity: {}", n.severity.as_str())}],
    }));
    if let Some(link) = http::safe_link(n.link.as_deref(), 3000) {
        blocks.push(json!({
            "type": "actions",
            "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": link}],
        }));
    }
    let fallback = format!("{}: {}", subject, n.text);
    json!({
        "text": escape::slack_ellipsized(&fallback, 3000),
        "blocks": blocks,
    })
}

#[async_trait]
impl Notifier for SlackWebhook {
    async fn send(&self, notification: &Notification) -> Result<()> {
        let body = payload(notification);
        self.http
            .call(
                Safety::NonIdempotent,
                Method::POST,
                &self.url,
                &HeaderMap::new(),
                Some(&body),
            )
            .await?;
        Ok(())
    }

    fn name(&self) -> &str {
        BACKEND
    }
}
