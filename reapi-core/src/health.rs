//! Whether a process should be sent traffic: [`Readiness`], which the
//! process sets as it starts (not ready until it can serve) and drains (not
//! ready again first thing on SIGTERM), and which the health endpoints
//! report: HTTP `/readyz` and the gRPC health service.

use std::sync::Arc;

use tokio::sync::watch;

/// Ready, or not ready and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadyState {
    Ready,
    NotReady(String),
}

/// A process's readiness; clones share it.
#[derive(Clone, Debug)]
pub struct Readiness {
    state: Arc<watch::Sender<ReadyState>>,
}

impl Readiness {
    /// Not ready: `reason` says what the process waits for.
    pub fn new(reason: impl Into<String>) -> Self {
        Readiness {
            state: Arc::new(watch::Sender::new(ReadyState::NotReady(reason.into()))),
        }
    }

    pub fn set_ready(&self) {
        self.set(ReadyState::Ready);
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(ReadyState::NotReady(reason.into()));
    }

    fn set(&self, state: ReadyState) {
        self.state.send_if_modified(|current| {
            if *current == state {
                return false;
            }
            tracing::info!(?state, "readiness changed");
            *current = state;
            true
        });
    }

    pub fn state(&self) -> ReadyState {
        self.state.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.state() == ReadyState::Ready
    }

    /// Follows every change.
    pub fn subscribe(&self) -> watch::Receiver<ReadyState> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_not_ready_and_follows_changes() {
        let readiness = Readiness::new("starting");
        assert_eq!(readiness.state(), ReadyState::NotReady("starting".into()));
        let mut changes = readiness.subscribe();
        readiness.set_ready();
        assert!(readiness.is_ready());
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        readiness.set_ready();
        assert!(!changes.has_changed().unwrap(), "no change, no wakeup");
        readiness.clone().set_not_ready("draining");
        assert_eq!(readiness.state(), ReadyState::NotReady("draining".into()));
    }
}
