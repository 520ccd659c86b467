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
    #[error("transport error ({kind}) calling {endpoint}")]
    Transport {
        /// What kind of failure.
        kind: TransportKind,
        /// `METHOD path` of the call.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The API answered with an error status.
    #[error("{endpoint} returned HTTP {status}{}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), hint.map(|h| format!(" ({h})")).unwrap_or_default())]
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

    /// Every attempt of a retryable call failed; the last error is the source.
    #[error("gave up after {attempts} attempts")]
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
            Self::Transport { .. } | Self::RateLimited { .. } => true,
            Self::Api { status, .. } => matches!(status, 500 | 502 | 503 | 504),
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
            Self::OutcomeUnknown { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_outcome_unknown(),
            _ => false,
        }
    }
}
