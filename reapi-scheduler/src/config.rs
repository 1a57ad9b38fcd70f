//! Scheduler settings and their defaults. Who owns each timeout is
//! written down in docs/adr/0004 and docs/adr/0006.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Timeout of an action that does not set one.
    pub default_timeout: Duration,
    /// Upper bound on any action's timeout.
    pub max_timeout: Duration,
    /// Times an action may lose its worker (the worker died, or could not
    /// reach the CAS) before that becomes the action's error.
    pub max_attempts: u32,
    /// How long a finished operation stays visible to WaitExecution and
    /// GetOperation.
    pub completed_retention: Duration,
    /// How many finished operations are kept at most.
    pub max_completed: usize,
    /// Accepted `ExecutionPolicy.priority` range; values outside are clamped.
    pub priority_range: (i32, i32),
    /// Whether input symlinks may have absolute targets.
    pub allow_absolute_symlinks: bool,
    /// How often workers send their state report (told to them on connect).
    pub heartbeat_interval: Duration,
    /// A worker that sends nothing for this long is dead: its leases go
    /// back to the queue.
    pub heartbeat_timeout: Duration,
    /// A queued or running operation that no client has watched (no open
    /// Execute or WaitExecution stream, no GetOperation) for this long is
    /// cancelled: its client is gone, and a running action is killed.
    pub orphan_timeout: Duration,
    /// Added to an action's timeout to make its lease's deadline: time to
    /// lay out inputs and upload outputs. A worker stops a run past it.
    pub lease_slack: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            default_timeout: Duration::from_secs(15 * 60),
            max_timeout: Duration::from_secs(3 * 60 * 60),
            max_attempts: 5,
            completed_retention: Duration::from_secs(10 * 60),
            max_completed: 100_000,
            priority_range: (-1000, 1000),
            allow_absolute_symlinks: true,
            heartbeat_interval: Duration::from_secs(2),
            heartbeat_timeout: Duration::from_secs(10),
            orphan_timeout: Duration::from_secs(30),
            lease_slack: Duration::from_secs(10 * 60),
        }
    }
}
