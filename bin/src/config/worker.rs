//! `reapi-worker`: runs actions for the schedulers it links to, with its
//! disk store in front of the cluster's CAS.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_core::cluster::discovery::MemberList;

use super::file::FileConfig;
use super::parse_duration_flag;
use super::storage::StorageFlags;

/// How long a draining worker lets running actions finish by default.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(10 * 60);

#[derive(Parser, Debug, Default)]
#[command(
    name = "reapi-worker",
    version,
    about = "REAPI cluster worker: runs the actions its schedulers lease to it"
)]
pub struct WorkerFlags {
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub storage: StorageFlags,
    /// The cluster's schedulers: `host:port` entries (comma-separated or
    /// repeated), or one DNS name whose addresses are all of them.
    #[arg(long, value_name = "HOST:PORT")]
    pub schedulers: Vec<String>,
    /// Where the cluster's CAS is reached when no bucket is configured
    /// (default: the first entry of --schedulers).
    #[arg(long, value_name = "HOST:PORT")]
    pub cas: Option<String>,
    /// Executors (default: one per CPU; 0 runs nothing).
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// A property the executors offer, `key=value`; repeatable.
    #[arg(long = "platform", value_name = "KEY=VALUE")]
    pub platform: Vec<String>,
    /// On SIGTERM, how long running actions may take to finish.
    #[arg(long = "drain_grace", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub drain_grace: Option<Duration>,
}

#[derive(Debug)]
pub struct WorkerProcessConfig {
    pub storage: StorageConfig,
    pub schedulers: MemberList,
    /// The CAS to go through when there is no bucket.
    pub cas: String,
    pub executors: Option<usize>,
    pub platform: Vec<String>,
    pub drain_grace: Duration,
}

impl WorkerProcessConfig {
    pub fn load(flags: WorkerFlags) -> Result<Self, String> {
        let mut file = FileConfig::load(flags.config.as_deref())?;
        let storage = flags.storage.resolve(&mut file)?;
        let schedulers = file
            .schedulers(&flags.schedulers)?
            .ok_or("--schedulers is required: where the cluster's schedulers are")?;
        let cas = flags
            .cas
            .or(file.cas.clone())
            .unwrap_or_else(|| schedulers.entries()[0].clone());
        Ok(WorkerProcessConfig {
            storage,
            schedulers,
            cas,
            executors: flags.executors.or(file.executors),
            platform: if flags.platform.is_empty() {
                file.platform.unwrap_or_default()
            } else {
                flags.platform
            },
            drain_grace: flags
                .drain_grace
                .or(FileConfig::duration(&file.drain_grace, "drain_grace")?)
                .unwrap_or(DEFAULT_DRAIN_GRACE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedulers_are_required() {
        let err = WorkerProcessConfig::load(WorkerFlags::default()).unwrap_err();
        assert!(err.contains("--schedulers"), "{err}");
    }

    #[test]
    fn the_cas_defaults_to_the_first_scheduler() {
        let flags = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "sched-a:8980",
            "--schedulers",
            "sched-b:8980",
            "--drain_grace",
            "30s",
        ]);
        let config = WorkerProcessConfig::load(flags).unwrap();
        assert_eq!(config.cas, "sched-a:8980");
        assert_eq!(config.drain_grace, Duration::from_secs(30));
        let flags = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "lb:8980",
            "--cas",
            "cas:1234",
        ]);
        assert_eq!(WorkerProcessConfig::load(flags).unwrap().cas, "cas:1234");
    }
}
