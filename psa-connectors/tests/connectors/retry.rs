//! The pure retry decision, table-driven.

use std::time::Duration;

use psa_connectors::retry::parse_retry_after;
use psa_connectors::{Error, RetryDecision, RetryPolicy, Safety};

fn api(status: u16) -> Error {
    Error::Api {
        backend: "t",
        status,
        message: String::new(),
    }
}

fn transport(connect: bool) -> Error {
    Error::Transport {
        backend: "t",
        connect,
        source: "boom".into(),
    }
}

#[test]
fn decisions() {
    let p = RetryPolicy {
        max_retries: 3,
        base_delay_ms: 100,
        max_delay_ms: 1000,
        max_retry_after_secs: 60,
    };
    let limited = |secs: Option<u64>| Error::RateLimited {
        backend: "t",
        retry_after: secs.map(Duration::from_secs),
    };
    use RetryDecision::*;
    use Safety::*;
    let cases: Vec<(&str, u32, Error, Safety, RetryDecision)> = vec![
        (
            "429 honours Retry-After on a read",
            0,
            limited(Some(30)),
            Idempotent,
            RetryAfter(Duration::from_secs(30)),
        ),
        (
            "429 honours Retry-After on a write (not processed)",
            0,
            limited(Some(2)),
            NonIdempotent,
            RetryAfter(Duration::from_secs(2)),
        ),
        (
            "429 too long gives up",
            0,
            limited(Some(61)),
            Idempotent,
            GiveUp,
        ),
        (
            "429 without header backs off",
            1,
            limited(None),
            Idempotent,
            RetryAfter(Duration::from_millis(200)),
        ),
        (
            "503 read backs off",
            0,
            api(503),
            Idempotent,
            RetryAfter(Duration::from_millis(100)),
        ),
        (
            "503 write is unknown: give up",
            0,
            api(503),
            NonIdempotent,
            GiveUp,
        ),
        (
            "500 read retried",
            2,
            api(500),
            Idempotent,
            RetryAfter(Duration::from_millis(400)),
        ),
        (
            "backoff capped",
            2,
            api(502),
            Idempotent,
            RetryAfter(Duration::from_millis(400)),
        ),
        ("400 never", 0, api(400), Idempotent, GiveUp),
        ("404 never", 0, api(404), Idempotent, GiveUp),
        (
            "auth never",
            0,
            Error::Auth {
                backend: "t",
                status: 401,
                message: String::new(),
            },
            Idempotent,
            GiveUp,
        ),
        (
            "connect failure safe even for writes",
            0,
            transport(true),
            NonIdempotent,
            RetryAfter(Duration::from_millis(100)),
        ),
        (
            "timeout after sending a write: unknown",
            0,
            transport(false),
            NonIdempotent,
            GiveUp,
        ),
        (
            "timeout on a read retried",
            0,
            transport(false),
            Idempotent,
            RetryAfter(Duration::from_millis(100)),
        ),
        ("attempts exhausted", 3, api(503), Idempotent, GiveUp),
    ];
    for (name, attempt, err, safety, expected) in cases {
        assert_eq!(p.decide(attempt, &err, safety, 1.0), expected, "{name}");
    }
    let capped = RetryPolicy {
        max_retries: 10,
        base_delay_ms: 100,
        max_delay_ms: 1000,
        max_retry_after_secs: 60,
    };
    assert_eq!(
        capped.decide(8, &api(503), Safety::Idempotent, 1.0),
        RetryDecision::RetryAfter(Duration::from_millis(1000))
    );
    assert_eq!(
        capped.decide(8, &api(503), Safety::Idempotent, 0.5),
        RetryDecision::RetryAfter(Duration::from_millis(500))
    );
    assert_eq!(
        RetryPolicy::none().decide(0, &api(503), Safety::Idempotent, 1.0),
        RetryDecision::GiveUp
    );
}

#[test]
fn retry_after_parsing() {
    let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
        .unwrap()
        .to_utc();
    assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
    assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
        Some(Duration::ZERO)
    );
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn retryable_classification() {
    assert!(api(503).is_retryable());
    assert!(!api(400).is_retryable());
    assert!(transport(false).is_retryable());
    assert!(!Error::Decode {
        backend: "t",
        path: ".".into(),
        message: String::new()
    }
    .is_retryable());
    assert_eq!(api(404).status(), Some(404));
}
