//! The retry decision, as a pure function.
//!
//! Reads are retried on throttling, transport errors and 5xx with exponential backoff and full
//! jitter, honouring `Retry-After`. Writes are retried only when the server certainly did not
//! process them (429, a connection that was never established); any other failure of a write
//! leaves its outcome unknown, and the caller must reconcile (search) before repeating.

use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// Whether a request may be repeated blindly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// A read (GET, or a query sent by POST): repeating it changes nothing.
    Idempotent,
    /// A write: repeating it may duplicate a record.
    NonIdempotent,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Sleep this long, then try again.
    RetryAfter(Duration),
    /// Give up and return the error.
    GiveUp,
}

/// Bounded retry with exponential backoff and full jitter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// First backoff step, in milliseconds.
    pub base_delay_ms: u64,
    /// Backoff cap, in milliseconds.
    pub max_delay_ms: u64,
    /// The longest `Retry-After` we are willing to sleep, in seconds; a longer one makes us
    /// give up with [`Error::RateLimited`] so the caller can reschedule.
    pub max_retry_after_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            max_retry_after_secs: 60,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// Decides what to do after attempt number `attempt` (0-based) failed with `error`.
    ///
    /// `jitter` is a number in `[0, 1)` (pass `fastrand::f64()`); the backoff is
    /// `jitter × min(cap, base × 2^attempt)`. Pure: same inputs, same answer.
    pub fn decide(
        &self,
        attempt: u32,
        error: &Error,
        safety: Safety,
        jitter: f64,
    ) -> RetryDecision {
        if attempt >= self.max_retries {
            return RetryDecision::GiveUp;
        }
        let backoff = || {
            let exp = self
                .base_delay_ms
                .saturating_mul(1u64.checked_shl(attempt.min(32)).unwrap_or(u64::MAX));
            let capped = exp.min(self.max_delay_ms) as f64;
            RetryDecision::RetryAfter(Duration::from_millis(
                (capped * jitter.clamp(0.0, 1.0)) as u64,
            ))
        };
        match error {
            Error::RateLimited { retry_after, .. } => match retry_after {
                Some(wait) if wait.as_secs() > self.max_retry_after_secs => RetryDecision::GiveUp,
                Some(wait) => RetryDecision::RetryAfter(*wait),
                None => backoff(),
            },
            Error::Transport { connect: true, .. } => backoff(),
            Error::Transport { connect: false, .. } if safety == Safety::Idempotent => backoff(),
            Error::Api { status, .. }
                if safety == Safety::Idempotent
                    && matches!(status, 408 | 500 | 502 | 503 | 504) =>
            {
                backoff()
            }
            // 503 on a write: most servers answer it before doing anything, but not all; it
            // stays unknown and goes back to the caller.
            _ => RetryDecision::GiveUp,
        }
    }
}

/// Parses a `Retry-After` header: delta-seconds, or an HTTP date relative to `now`.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}
