//! Client-side request rate and concurrency limits, shared by every clone of a client.

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

impl Limits {
    pub(crate) fn new(max_requests_per_second: Option<f64>, max_concurrency: usize) -> Self {
        Self {
            interval: max_requests_per_second.map(|rps| Duration::from_secs_f64(1.0 / rps)),
            next_slot: Mutex::new(None),
            in_flight: Arc::new(Semaphore::new(max_concurrency.max(1))),
        }
    }

    /// Waits for a concurrency slot and for the rate limit, in that order, and returns the
    /// permit that holds the slot until dropped.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
        let permit = Arc::clone(&self.in_flight)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if let Some(interval) = self.interval {
            let wait_until = {
                let mut next = self.next_slot.lock().await;
                let now = Instant::now();
                let slot = match *next {
                    Some(t) if t > now => t,
                    _ => now,
                };
                *next = Some(slot + interval);
                slot
            };
            tokio::time::sleep_until(wait_until).await;
        }
        permit
    }
}
