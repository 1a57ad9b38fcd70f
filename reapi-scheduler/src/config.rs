//! Scheduler settings and their defaults.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Timeout of an action that does not set one.
    pub default_timeout: Duration,
    /// Upper bound on any action's timeout.
    pub max_timeout: Duration,
    /// Runs of one action before an executor loss becomes its error.
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
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            default_timeout: Duration::from_secs(15 * 60),
            max_timeout: Duration::from_secs(3 * 60 * 60),
            max_attempts: 3,
            completed_retention: Duration::from_secs(10 * 60),
            max_completed: 100_000,
            priority_range: (-1000, 1000),
            allow_absolute_symlinks: true,
        }
    }
}
