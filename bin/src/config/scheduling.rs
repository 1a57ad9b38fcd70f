//! The scheduling flags of the binaries that run a scheduler
//! (`reapi-server`, `reapi-scheduler`): when a worker is dead and when a
//! client is gone.

use std::time::Duration;

use clap::Args;
use reapi_scheduler::SchedulerConfig;

use super::file::FileConfig;
use super::parse_duration_flag;

#[derive(Args, Debug, Default, Clone)]
pub struct SchedulingFlags {
    /// A worker silent for this long is dead and its actions run
    /// elsewhere (e.g. 10s).
    #[arg(long = "heartbeat_timeout", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub heartbeat_timeout: Option<Duration>,
    /// An operation no client has watched for this long is cancelled
    /// (e.g. 30s).
    #[arg(long = "orphan_timeout", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub orphan_timeout: Option<Duration>,
}

impl SchedulingFlags {
    pub fn resolve(&self, file: &FileConfig) -> Result<SchedulerConfig, String> {
        let mut config = SchedulerConfig::default();
        if let Some(timeout) = self.heartbeat_timeout.or(FileConfig::duration(
            &file.heartbeat_timeout,
            "heartbeat_timeout",
        )?) {
            config.heartbeat_timeout = timeout;
            config.heartbeat_interval = config.heartbeat_interval.min(timeout / 3);
        }
        if let Some(timeout) = self.orphan_timeout.or(FileConfig::duration(
            &file.orphan_timeout,
            "orphan_timeout",
        )?) {
            config.orphan_timeout = timeout;
        }
        Ok(config)
    }
}
