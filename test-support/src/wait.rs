//! Waiting in tests without hanging them: a bound on any one wait
//! ([`PATIENCE`]), [`within`] for a future and [`eventually`] for a
//! condition.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// No single stream or wait in the tests should take longer than this; a
/// hang fails the test instead of blocking the suite.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often [`eventually`] checks.
const POLL: Duration = Duration::from_millis(10);

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Polls `check` every 10 ms until it returns true; false if it still
/// does not once `limit` has passed.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}
