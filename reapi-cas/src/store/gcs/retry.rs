//! When to retry a GCS request and how long to wait: exponential backoff
//! with jitter, bounded both in attempts and in total time, so that a dead
//! endpoint turns into UNAVAILABLE within seconds.

use std::time::{Duration, Instant};

use http::StatusCode;

/// Attempts per request, the first included.
const MAX_ATTEMPTS: u32 = 5;
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// No new attempt starts once this much time has passed since the first.
const RETRY_BUDGET: Duration = Duration::from_secs(8);

/// Statuses worth another try: throttling, request timeout and server errors.
pub(super) fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// The retry state of one request.
pub(super) struct Backoff {
    started: Instant,
    attempts: u32,
    delay: Duration,
}

impl Backoff {
    pub(super) fn new() -> Self {
        Backoff {
            started: Instant::now(),
            attempts: 1,
            delay: FIRST_DELAY,
        }
    }

    /// The pause before the next attempt, or `None` when the attempts or the
    /// time budget are spent.
    pub(super) fn next_delay(&mut self) -> Option<Duration> {
        if self.attempts >= MAX_ATTEMPTS {
            return None;
        }
        // Full jitter on the upper half: between delay/2 and delay.
        let half = self.delay / 2;
        let delay = half + half.mul_f64(fastrand::f64());
        if self.started.elapsed() + delay >= RETRY_BUDGET {
            return None;
        }
        self.attempts += 1;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        Some(delay)
    }

    /// Attempts made so far.
    pub(super) fn attempts(&self) -> u32 {
        self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_growing() {
        let mut backoff = Backoff::new();
        let mut delays = Vec::new();
        while let Some(delay) = backoff.next_delay() {
            delays.push(delay);
        }
        assert_eq!(delays.len() as u32, MAX_ATTEMPTS - 1);
        assert_eq!(backoff.attempts(), MAX_ATTEMPTS);
        assert!(delays.iter().all(|d| *d <= MAX_DELAY));
        assert!(delays.iter().sum::<Duration>() < RETRY_BUDGET);
        assert!(delays[0] <= FIRST_DELAY && delays[3] >= FIRST_DELAY * 4);
    }

    #[test]
    fn transient_statuses() {
        for code in [429, 408, 500, 502, 503, 504] {
            assert!(is_transient(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 412, 416, 499] {
            assert!(!is_transient(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
