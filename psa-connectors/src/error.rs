//! The crate's single error type.

use std::time::Duration;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to a PSA, a chat tool, a mail server or a SIEM.
///
/// `Display` is short and never repeats its cause (reach it through
/// [`std::error::Error::source`]). No variant ever carries a secret: credentials, webhook URLs
/// (which embed a signature) and tokens are stripped before an error is built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or invalid.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The configuration key, for example `connectwise.site`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A value handed to a sink cannot be sent (for example an external reference longer than
    /// the target field).
    #[error("invalid input `{field}`: {message}")]
    InvalidInput {
        /// The offending field, for example `ticket.external_ref`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The request did not complete (DNS, connect, TLS handshake, timeout, connection reset).
    #[error("{backend}: transport error")]
    Transport {
        /// Which backend.
        backend: &'static str,
        /// True when the connection was never established, so the request was certainly not
        /// processed and is safe to repeat even when it is a write.
        connect: bool,
        /// The underlying error (URLs removed).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an unexpected HTTP status.
    #[error("{backend}: HTTP {status}: {message}")]
    Api {
        /// Which backend.
        backend: &'static str,
        /// The HTTP status code.
        status: u16,
        /// A short, single-line message taken from the response body.
        message: String,
    },
    /// The server throttled us (HTTP 429, or a throttling message inside a 200 body).
    #[error("{backend}: rate limited")]
    RateLimited {
        /// Which backend.
        backend: &'static str,
        /// How long the server asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// The credentials were rejected (HTTP 401) or lack a permission (HTTP 403).
    #[error("{backend}: authentication or permission failure (HTTP {status}): {message}")]
    Auth {
        /// Which backend.
        backend: &'static str,
        /// 401 or 403.
        status: u16,
        /// A short message from the server, if any.
        message: String,
    },
    /// A response body did not have the expected shape.
    #[error("{backend}: cannot decode response at `{path}`: {message}")]
    Decode {
        /// Which backend.
        backend: &'static str,
        /// JSON path of the offending value (`.` for the root).
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The SMTP conversation failed.
    #[error("smtp: {message}")]
    Smtp {
        /// True for a permanent (5xx) rejection, false for transient failures.
        permanent: bool,
        /// A short description (never contains credentials).
        message: String,
    },
    /// A socket or file operation failed.
    #[error("i/o error on {target}")]
    Io {
        /// What was being read or written (an address or a path).
        target: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// TLS configuration or handshake failure.
    #[error("tls: {message}")]
    Tls {
        /// What went wrong.
        message: String,
    },
    /// A local budget (for example Autotask's shared hourly request budget) would be exceeded.
    #[error("{backend}: local request budget exhausted ({message})")]
    BudgetExhausted {
        /// Which backend.
        backend: &'static str,
        /// Which budget, with the numbers.
        message: String,
        /// When the budget frees up again.
        retry_after: Option<Duration>,
    },
}

impl Error {
    /// Whether repeating the same call later may succeed (network trouble, throttling, 5xx).
    ///
    /// This says nothing about whether repeating is *safe*: a write whose outcome is unknown
    /// must be reconciled first (see [`crate::TicketSink::open_or_update`]).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::RateLimited { .. } | Error::Io { .. } => true,
            Error::BudgetExhausted { .. } => true,
            Error::Api { status, .. } => matches!(status, 408 | 500 | 502 | 503 | 504),
            Error::Smtp { permanent, .. } => !permanent,
            Error::Config { .. }
            | Error::InvalidInput { .. }
            | Error::Auth { .. }
            | Error::Decode { .. }
            | Error::Tls { .. } => false,
        }
    }

    /// The HTTP status behind this error, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Auth { status, .. } => Some(*status),
            Error::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// How long the server (or a local budget) asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::BudgetExhausted { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    pub(crate) fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    #[allow(dead_code)] // unused when the syslog feature is off
    pub(crate) fn io(target: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            target: target.into(),
            source,
        }
    }
}
