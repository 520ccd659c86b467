//! The crate's one error type.

use std::time::Duration;

/// A boxed error source (kept opaque so the enum has the same shape with or without the
/// `client` feature).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong talking to the Portal API.
///
/// No variant ever contains the API key: bodies are scrubbed of it and truncated before they are
/// stored here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client was configured wrongly (bad base URL, empty key, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),

    /// A request was refused before it was sent because it cannot succeed (for example file
    /// history without a hostname or computer id).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// The request did not get an HTTP answer (connect failure, timeout, reset).
    #[error("{}", transport_text(*kind, endpoint, *timed_out_after))]
    Transport {
        /// What kind of failure. A connect timeout is [`TransportKind::Connect`] (nothing was
        /// sent) with `timed_out_after` set.
        kind: TransportKind,
        /// `METHOD path` of the call.
        endpoint: String,
        /// The timeout that expired, when the failure was a timeout.
        timed_out_after: Option<Duration>,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The API answered with an error status.
    #[error("{endpoint} returned HTTP {status}{}{}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), hint.map(|h| format!(" ({h})")).unwrap_or_default(), logger_id.as_deref().filter(|l| !message.as_deref().is_some_and(|m| m.contains(*l))).map(|l| format!(" [LoggerId {l}]")).unwrap_or_default())]
    Api {
        /// HTTP status code.
        status: u16,
        /// `METHOD path` of the call.
        endpoint: String,
        /// The server's `Message` (either casing), when the body carried one.
        message: Option<String>,
        /// The server's `LoggerId`, for ThreatLocker support.
        logger_id: Option<String>,
        /// The raw body, truncated and scrubbed of the key.
        body: String,
        /// The likely cause, where the reference documents one.
        hint: Option<&'static str>,
    },

    /// HTTP 440 or 403 `TOKEN_REVOKED`: the key belongs to another instance, or was revoked
    /// (the API does not tell the two apart).
    #[error("the API key was refused with HTTP {status}: wrong instance, or the key was revoked or expired")]
    WrongInstanceOrRevokedKey {
        /// 440 or 403.
        status: u16,
    },

    /// HTTP 429 after the retry budget, or when retries are off.
    #[error("rate limited by the API{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// A response body did not have the expected shape.
    #[error("could not decode the response of {endpoint} at JSON path `{path}`: {message}")]
    Decode {
        /// `METHOD path` of the call.
        endpoint: String,
        /// JSON path of the offending value (`[3].dateTime`), `.` for the document.
        path: String,
        /// What was wrong.
        message: String,
    },

    /// A successful status whose body is not JSON (typically an HTML error page from a proxy
    /// or load balancer, sent with status 200). Retried like a transient failure on reads.
    #[error("{endpoint} answered HTTP {status} with a body that is not JSON (content type {}): {snippet}", content_type.as_deref().unwrap_or("not given"))]
    NotJson {
        /// `METHOD path` of the call.
        endpoint: String,
        /// HTTP status code.
        status: u16,
        /// The `Content-Type` header, when sent.
        content_type: Option<String>,
        /// The first bytes of the body, quoted, with control characters escaped and the key
        /// scrubbed.
        snippet: String,
    },

    /// The response body was larger than the client's cap
    /// ([`crate::ClientBuilder::max_response_bytes`]); reading stopped at the cap.
    #[error("{endpoint} answered with a body larger than the {limit}-byte response size cap")]
    ResponseTooLarge {
        /// `METHOD path` of the call.
        endpoint: String,
        /// The cap, in bytes.
        limit: u64,
    },

    /// A page contradicted the pagination header: it was empty, `null` or short while the
    /// header promised more rows or pages. The page was fetched again and stayed so; the stream
    /// stopped here rather than end as if complete (rows would be skipped silently).
    #[error("{endpoint} page {page} held {rows} rows but the pagination header promised {expected} (after {attempts} attempts); stopping rather than skipping rows")]
    PageMismatch {
        /// `METHOD path` of the call.
        endpoint: String,
        /// The 1-based page number.
        page: u32,
        /// Rows the page held.
        rows: usize,
        /// What the header promised, in words (`100 rows (totalItems 2000)`).
        expected: String,
        /// Times the page was fetched.
        attempts: u32,
    },

    /// Every attempt of a retryable call failed; the last error is the source. Its text is
    /// part of this one's too: it is what a reader needs (which call, timed out or which
    /// status), and most callers print only the top error.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },

    /// An approval request was already actioned (by someone else, or by an earlier attempt of
    /// ours), so it was not actioned again.
    #[error("approval request {request_id} was already actioned (status {status})")]
    AlreadyActioned {
        /// The request.
        request_id: String,
        /// Its status now.
        status: String,
    },

    /// A write was sent but its outcome could not be confirmed (the answer was lost and the
    /// read-back did not settle it). The write was **not** retried.
    #[error("outcome of {operation} is unknown; it was not retried")]
    OutcomeUnknown {
        /// What was attempted.
        operation: String,
        /// Why it is unknown.
        #[source]
        source: Box<Error>,
    },
}

/// Kinds of transport failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Could not connect.
    Connect,
    /// The request timed out.
    Timeout,
    /// The connection failed mid-request or the body could not be read.
    Other,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Other => "connection",
        })
    }
}

fn transport_text(kind: TransportKind, endpoint: &str, after: Option<Duration>) -> String {
    match (kind, after) {
        (TransportKind::Connect, Some(d)) => {
            format!("{endpoint}: connecting timed out after {}", seconds(d))
        }
        (_, Some(d)) => format!(
            "{endpoint} timed out after {} waiting for the response",
            seconds(d)
        ),
        (kind, None) => format!("transport error ({kind}) calling {endpoint}"),
    }
}

/// `60 s`, `0.5 s`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Error {
    /// The HTTP status, when the API answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::WrongInstanceOrRevokedKey { status } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            Self::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    /// Whether repeating the same *read* could succeed: transport failures, 429, 502/503/504
    /// and 500. Validation errors (4xx, 417) and decode errors are not retryable.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. }
            | Self::RateLimited { .. }
            | Self::NotJson { .. }
            | Self::PageMismatch { .. } => true,
            Self::Api { status, .. } => matches!(status, 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// Whether the failure was a timeout (connecting or waiting for the answer).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::Transport {
                kind,
                timed_out_after,
                ..
            } => *kind == TransportKind::Timeout || timed_out_after.is_some(),
            Self::RetriesExhausted { last, .. } | Self::OutcomeUnknown { source: last, .. } => {
                last.is_timeout()
            }
            _ => false,
        }
    }

    /// Whether the API said the object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the failure means a request may or may not have reached the server (a write in
    /// this state must be verified by reading back, never blindly repeated).
    pub fn is_outcome_unknown(&self) -> bool {
        match self {
            Self::Transport { kind, .. } => *kind != TransportKind::Connect,
            Self::Api { status, .. } => *status >= 500,
            // A 2xx answer that could not be read: the server may well have acted.
            Self::NotJson { .. } | Self::ResponseTooLarge { .. } => true,
            Self::OutcomeUnknown { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_outcome_unknown(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(kind: TransportKind, after: Option<Duration>) -> Error {
        Error::Transport {
            kind,
            endpoint: "POST /portalapi/ActionLog/ActionLogGetByParametersV2".into(),
            timed_out_after: after,
            source: "inner".into(),
        }
    }

    #[test]
    fn transport_text_says_which_timeout_expired() {
        let cases = [
            (
                transport(TransportKind::Connect, Some(Duration::from_secs(15))),
                "POST /portalapi/ActionLog/ActionLogGetByParametersV2: connecting timed out after 15 s",
                true,
            ),
            (
                transport(TransportKind::Timeout, Some(Duration::from_millis(2500))),
                "POST /portalapi/ActionLog/ActionLogGetByParametersV2 timed out after 2.5 s waiting for the response",
                true,
            ),
            (
                transport(TransportKind::Connect, None),
                "transport error (connect) calling POST /portalapi/ActionLog/ActionLogGetByParametersV2",
                false,
            ),
        ];
        for (err, text, timeout) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.is_timeout(), timeout, "{text}");
        }
        let wrapped = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(transport(
                TransportKind::Timeout,
                Some(Duration::from_secs(60)),
            )),
        };
        assert!(wrapped.is_timeout());
        assert!(wrapped
            .to_string()
            .starts_with("gave up after 3 attempts: POST /portalapi/"));
        assert_eq!(
            std::error::Error::source(&wrapped).map(ToString::to_string),
            Some(
                "POST /portalapi/ActionLog/ActionLogGetByParametersV2 timed out after 60 s waiting for the response"
                    .to_owned()
            )
        );
    }

    #[test]
    fn api_text_carries_the_logger_id_only_when_sent() {
        let api = |logger_id: Option<&str>| Error::Api {
            status: 500,
            endpoint: "GET /x".into(),
            message: Some("A problem occurred".into()),
            logger_id: logger_id.map(str::to_owned),
            body: String::new(),
            hint: None,
        };
        assert_eq!(
            api(Some("0HMV")).to_string(),
            "GET /x returned HTTP 500: A problem occurred [LoggerId 0HMV]"
        );
        assert_eq!(
            api(None).to_string(),
            "GET /x returned HTTP 500: A problem occurred"
        );
    }
}
