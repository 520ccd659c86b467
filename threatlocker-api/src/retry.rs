//! Retry policy: which failures to retry and how long to wait.
//!
//! [`RetryPolicy::decide`] is a pure function (no clock, no randomness of its own: the caller
//! passes the jitter) so every rule is tested by a table. The client applies it in
//! `Client::execute`.
//!
//! Rules (reference §4.3):
//! - reads (GETs and `...GetByParameters` searches) are retried on connect errors, timeouts and
//!   broken connections, HTTP 429, 502, 503, 504 and 500;
//! - writes are retried **only** on a connect error, the one failure that proves the request
//!   never reached the server; anything else leaves the outcome unknown and the caller must read
//!   state back instead of repeating the write;
//! - a successful status with a body that is not JSON (an HTML error page from a proxy) is
//!   retried like a transient failure on reads;
//! - validation errors (4xx, 417), decode errors, an oversized body and a wrong instance /
//!   revoked key are never retried;
//! - the wait is exponential backoff with full jitter (`random(0, min(cap, base * 2^n))`), or the
//!   server's `Retry-After` when it sent one, capped at [`RetryPolicy::max_delay`] either way.

use std::time::Duration;

use crate::error::{Error, TransportKind};
use crate::request::Safety;

/// How the client retries. Writes are never retried blindly whatever this says.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Base delay of the exponential backoff.
    pub base_delay: Duration,
    /// Cap on any single delay, including a server's `Retry-After`.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryDecision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    /// Stop and report the failure.
    GiveUp,
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// A policy with `max_attempts` attempts and the default delays.
    pub fn with_max_attempts(max_attempts: u32) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            ..Self::default()
        }
    }

    /// Sets the base and maximum delays.
    pub fn with_delays(mut self, base: Duration, max: Duration) -> Self {
        self.base_delay = base;
        self.max_delay = max;
        self
    }

    /// Whether a failure of a request with this `safety` may be retried at all (ignoring the
    /// attempt budget).
    pub fn is_retryable(safety: Safety, error: &Error) -> bool {
        match (safety, error) {
            // A connect error never sent a byte of the request: safe even for a write.
            (
                _,
                Error::Transport {
                    kind: TransportKind::Connect,
                    ..
                },
            ) => true,
            (Safety::Write, _) => false,
            // A read: what the error itself says (one list, shared with callers of the client).
            (_, e) => e.is_retryable(),
        }
    }

    /// Decides what to do after attempt number `attempt` (1-based: `1` after the first try)
    /// failed with `error`.
    ///
    /// `retry_after` is the server's `Retry-After` (already parsed, seconds or HTTP date);
    /// `jitter` is a random number in `[0, 1)` (values outside are clamped) used for full
    /// jitter.
    pub fn decide(
        &self,
        attempt: u32,
        safety: Safety,
        error: &Error,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> RetryDecision {
        if attempt >= self.max_attempts || !Self::is_retryable(safety, error) {
            return RetryDecision::GiveUp;
        }
        let retry_after = retry_after.or(match error {
            Error::RateLimited { retry_after } => *retry_after,
            _ => None,
        });
        if let Some(wait) = retry_after {
            return RetryDecision::RetryAfter(wait.min(self.max_delay));
        }
        RetryDecision::RetryAfter(self.backoff(attempt, jitter))
    }

    /// Full-jitter exponential backoff for the retry after attempt `attempt`:
    /// `jitter * min(max_delay, base_delay * 2^(attempt - 1))`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base_delay
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ceiling.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        Error::Api {
            status,
            endpoint: "POST x".into(),
            message: None,
            logger_id: None,
            body: String::new(),
            hint: None,
        }
    }

    fn transport(kind: TransportKind) -> Error {
        Error::Transport {
            kind,
            endpoint: "GET x".into(),
            timed_out_after: None,
            source: "boom".into(),
        }
    }

    fn not_json() -> Error {
        Error::NotJson {
            endpoint: "POST x".into(),
            status: 200,
            content_type: Some("text/html".into()),
            snippet: "\"<html>\"".into(),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// name, attempt, safety, error, Retry-After header, jitter, expected decision
    type Case = (
        &'static str,
        u32,
        Safety,
        Error,
        Option<Duration>,
        f64,
        RetryDecision,
    );

    #[test]
    fn decision_table() {
        let p = RetryPolicy::default().with_delays(ms(100), ms(1_000));
        let limited = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        let limited_long = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        use RetryDecision::{GiveUp, RetryAfter};
        use Safety::{Read, Write};
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("connect error, read: backoff", 1, Read, transport(TransportKind::Connect), None, 0.5, RetryAfter(ms(50))),
            ("connect error, write: never sent, retried", 1, Write, transport(TransportKind::Connect), None, 0.5, RetryAfter(ms(50))),
            ("timeout, read: retried", 2, Read, transport(TransportKind::Timeout), None, 0.5, RetryAfter(ms(100))),
            ("timeout, write: outcome unknown, not retried", 1, Write, transport(TransportKind::Timeout), None, 0.5, GiveUp),
            ("reset, write: not retried", 1, Write, transport(TransportKind::Other), None, 0.5, GiveUp),
            ("429 honours Retry-After in the error", 1, Read, limited, None, 0.5, RetryAfter(Duration::from_secs(1))),
            ("429 Retry-After capped", 1, Read, limited_long, None, 0.0, RetryAfter(ms(1_000))),
            ("503 with Retry-After header", 1, Read, api(503), Some(ms(250)), 0.9, RetryAfter(ms(250))),
            ("502 read", 3, Read, api(502), None, 1.0, RetryAfter(ms(400))),
            ("504 read", 1, Read, api(504), None, 0.0, RetryAfter(ms(0))),
            ("500 read retried", 1, Read, api(500), None, 0.5, RetryAfter(ms(50))),
            ("500 write not retried", 1, Write, api(500), None, 0.5, GiveUp),
            ("503 write not retried", 1, Write, api(503), None, 0.5, GiveUp),
            ("429 write not retried", 1, Write, Error::RateLimited { retry_after: None }, None, 0.5, GiveUp),
            ("417 validation never retried", 1, Read, api(417), None, 0.5, GiveUp),
            ("400 never retried", 1, Read, api(400), None, 0.5, GiveUp),
            ("404 never retried", 1, Read, api(404), None, 0.5, GiveUp),
            ("wrong instance never retried", 1, Read, Error::WrongInstanceOrRevokedKey { status: 440 }, None, 0.5, GiveUp),
            ("decode never retried", 1, Read, Error::Decode { endpoint: "x".into(), path: ".".into(), message: "m".into() }, None, 0.5, GiveUp),
            ("budget exhausted", 4, Read, api(503), None, 0.5, GiveUp),
            ("HTML page with 200, read: retried", 1, Read, not_json(), None, 0.5, RetryAfter(ms(50))),
            ("HTML page with 200, write: outcome unknown, not retried", 1, Write, not_json(), None, 0.5, GiveUp),
            ("oversized body never retried", 1, Read, Error::ResponseTooLarge { endpoint: "x".into(), limit: 1 }, None, 0.5, GiveUp),
            ("third attempt: ceiling 400 ms", 3, Read, transport(TransportKind::Timeout), None, 0.99, RetryAfter(ms(396))),
        ];
        for (name, attempt, safety, error, retry_after, jitter, want) in cases {
            assert_eq!(
                p.decide(attempt, safety, &error, retry_after, jitter),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy::default().with_delays(ms(100), ms(1_000));
        let full: Vec<Duration> = (1..=6).map(|a| p.backoff(a, 1.0)).collect();
        assert_eq!(
            full,
            [ms(100), ms(200), ms(400), ms(800), ms(1_000), ms(1_000)]
        );
        assert_eq!(p.backoff(40, 1.0), ms(1_000));
        assert_eq!(p.backoff(2, f64::NAN), Duration::ZERO);
        assert_eq!(p.backoff(2, -3.0), Duration::ZERO);
    }

    #[test]
    fn no_retry_policy_always_gives_up() {
        let p = RetryPolicy::none();
        assert_eq!(
            p.decide(1, Safety::Read, &api(503), None, 0.5),
            RetryDecision::GiveUp
        );
    }
}
