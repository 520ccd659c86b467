//! Shared test helpers.

#![allow(dead_code)]

use psa_connectors::RetryPolicy;

/// A retry policy with millisecond delays, so tests stay fast.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        base_delay_ms: 1,
        max_delay_ms: 5,
        max_retry_after_secs: 5,
    }
}

/// Text an attacker could place in a file name, user name or command line.
pub const HOSTILE: &str = "evil\" or 1=1 ]|\\\r\n<script>alert('x')</script> *_[link](http://x) <!channel> =%&+'[[]{{DATE(x)}} ü😀";
