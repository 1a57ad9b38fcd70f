//! `reapi-scheduler`: the cluster's front door. Serves every REAPI service,
//! queues actions and leases them to the workers that link to it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_cas::store::cluster::DEFAULT_REPLICA_COUNT;
use reapi_core::cluster::discovery::MemberList;
use reapi_scheduler::SchedulerConfig;

use super::asset::AssetFlags;
use super::file::FileConfig;
use super::front::{FrontConfig, FrontFlags};
use super::ops::OpsFlags;
use super::scheduling::SchedulingFlags;
use super::server::resolve_listen;
use super::storage::StorageFlags;

#[derive(Parser, Debug, Default)]
#[command(
    name = "reapi-scheduler",
    version,
    about = "REAPI cluster scheduler: serves clients, queues actions, leases them to workers"
)]
pub struct SchedulerFlags {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub ops: OpsFlags,
    #[command(flatten)]
    pub front: FrontFlags,
    #[command(flatten)]
    pub asset: AssetFlags,
    #[command(flatten)]
    pub storage: StorageFlags,
    /// Every scheduler of the cluster, this one included: `host:port`
    /// entries (comma-separated or repeated), or one DNS name whose
    /// addresses are all the schedulers. Unset: a cluster of one.
    #[arg(long, value_name = "HOST:PORT")]
    pub schedulers: Vec<String>,
    /// The address peers reach this scheduler at (default: the listen
    /// address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    #[command(flatten)]
    pub scheduling: SchedulingFlags,
    /// Copies of every blob in the cluster CAS (default 3).
    #[arg(long = "replica_count", value_name = "N")]
    pub replica_count: Option<usize>,
    /// Schedulers holding each action cache entry (default 3).
    #[arg(long = "metadata_replica_count", value_name = "N")]
    pub metadata_replica_count: Option<usize>,
    /// Keep the CAS on this scheduler's disk, workers fetching through it,
    /// instead of on the workers' disks (a cluster of one scheduler).
    #[arg(long = "local_cas")]
    pub local_cas: bool,
}

#[derive(Debug)]
pub struct SchedulerProcessConfig {
    /// The operators' HTTP port; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    pub listen: SocketAddr,
    /// TLS and grants on the port; TLS to peers and workers.
    pub front: FrontConfig,
    /// FetchBlob's downloads; `None`: it never fetches.
    pub asset_fetch: Option<reapi_cas::asset::FetchPolicy>,
    pub storage: StorageConfig,
    pub schedulers: Option<MemberList>,
    pub advertise: Option<String>,
    pub scheduler: SchedulerConfig,
    pub replica_count: usize,
    pub metadata_replica_count: usize,
    pub local_cas: bool,
}

impl SchedulerProcessConfig {
    pub fn load(flags: SchedulerFlags) -> Result<Self, String> {
        let mut file = FileConfig::load(flags.config.as_deref())?;
        let storage = flags.storage.resolve(&mut file)?;
        let schedulers = file.schedulers(&flags.schedulers)?;
        let scheduler = flags.scheduling.resolve(&file)?;
        Ok(SchedulerProcessConfig {
            metrics_listen: flags.ops.resolve(&file),
            listen: resolve_listen(flags.listen, file.listen)?,
            front: flags.front.resolve(&file)?,
            asset_fetch: flags.asset.resolve(&file, &storage.data_dir)?,
            storage,
            schedulers,
            advertise: flags.advertise.or(file.advertise),
            scheduler,
            replica_count: check_replica_count(flags.replica_count.or(file.replica_count))?,
            metadata_replica_count: check_replica_count(
                flags.metadata_replica_count.or(file.metadata_replica_count),
            )?,
            local_cas: flags.local_cas || file.local_cas.unwrap_or(false),
        })
    }
}

/// `--replica_count`, default [`DEFAULT_REPLICA_COUNT`], at least 1.
pub(crate) fn check_replica_count(value: Option<usize>) -> Result<usize, String> {
    match value {
        None => Ok(DEFAULT_REPLICA_COUNT),
        Some(0) => Err("--replica_count must be at least 1".into()),
        Some(n) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_cluster_of_one_by_default() {
        let config = SchedulerProcessConfig::load(SchedulerFlags::default()).unwrap();
        assert!(config.schedulers.is_none());
        assert_eq!(config.replica_count, 3);
        assert!(!config.local_cas);
        assert_eq!(config.scheduler.heartbeat_timeout, Duration::from_secs(10));
    }

    #[test]
    fn peers_and_timeouts_from_flags() {
        let flags = SchedulerFlags::parse_from([
            "reapi-scheduler",
            "--schedulers",
            "10.0.0.1:8980,10.0.0.2:8980",
            "--heartbeat_timeout",
            "3s",
        ]);
        let config = SchedulerProcessConfig::load(flags).unwrap();
        assert_eq!(config.schedulers.unwrap().entries().len(), 2);
        assert_eq!(config.scheduler.heartbeat_timeout, Duration::from_secs(3));
        assert_eq!(config.scheduler.heartbeat_interval, Duration::from_secs(1));
        let zero = SchedulerFlags::parse_from(["reapi-scheduler", "--replica_count", "0"]);
        assert!(SchedulerProcessConfig::load(zero)
            .unwrap_err()
            .contains("--replica_count"));
        let bad = SchedulerFlags::parse_from(["reapi-scheduler", "--schedulers", "nohost"]);
        assert!(SchedulerProcessConfig::load(bad)
            .unwrap_err()
            .contains("--schedulers"));
    }
}
