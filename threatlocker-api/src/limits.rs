//! Client-side request rate and concurrency limits, shared by every clone of a client.
//!
//! The rate limit spaces request *starts* at least `1 / rate` apart (a simple, fair pacing:
//! no bursts); the concurrency limit bounds requests in flight. Both apply per attempt, so
//! retries are paced too.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The shared limiter state.
pub(crate) struct Limits {
    interval: Option<Duration>,
    next_slot: Mutex<Option<Instant>>,
    in_flight: Arc<Semaphore>,
}

/// Pure pacing rule: given the next free slot and the time now, when may this request start,
/// and when is the next slot after it.
pub(crate) fn take_slot(
    next: Option<Instant>,
    now: Instant,
    interval: Duration,
) -> (Instant, Instant) {
    let slot = match next {
        Some(t) if t > now => t,
        _ => now,
    };
    (slot, slot + interval)
}

impl Limits {
    pub(crate) fn new(max_requests_per_second: Option<f64>, max_concurrency: usize) -> Self {
        Self {
            interval: max_requests_per_second.map(|rps| Duration::from_secs_f64(1.0 / rps)),
            next_slot: Mutex::new(None),
            in_flight: Arc::new(Semaphore::new(max_concurrency.max(1))),
        }
    }

    /// Waits for a concurrency slot and for the rate limit, in that order, and returns the
    /// permit that holds the slot until dropped (`None` only if the semaphore were closed,
    /// which this type never does).
    pub(crate) async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        let permit = Arc::clone(&self.in_flight).acquire_owned().await.ok();
        if let Some(interval) = self.interval {
            let wait_until = {
                let mut next = self.next_slot.lock().await;
                let (slot, after) = take_slot(*next, Instant::now(), interval);
                *next = Some(after);
                slot
            };
            tokio::time::sleep_until(wait_until).await;
        }
        permit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_table() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (next free slot, now) -> (start at, next slot)
        let cases = [
            ("first request starts now", None, t0, t0, t0 + ms(100)),
            (
                "slot in the future: wait for it",
                Some(t0 + ms(100)),
                t0,
                t0 + ms(100),
                t0 + ms(200),
            ),
            (
                "slot in the past: start now",
                Some(t0),
                t0 + ms(500),
                t0 + ms(500),
                t0 + ms(600),
            ),
        ];
        for (name, next, now, start, after) in cases {
            assert_eq!(take_slot(next, now, ms(100)), (start, after), "{name}");
        }
    }

    #[tokio::test]
    async fn concurrency_permits_are_shared() {
        let limits = Limits::new(None, 2);
        let a = limits.acquire().await;
        let b = limits.acquire().await;
        assert!(a.is_some() && b.is_some());
        assert_eq!(limits.in_flight.available_permits(), 0);
        drop(a);
        assert_eq!(limits.in_flight.available_permits(), 1);
    }
}
