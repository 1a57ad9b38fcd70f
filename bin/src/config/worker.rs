//! `reapi-worker`: runs actions for the schedulers it links to, with its
//! disk store in front of the cluster's CAS.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_core::cluster::discovery::MemberList;
use reapi_executor::SandboxChoice;

use super::file::FileConfig;
use super::front::{FrontConfig, FrontFlags};
use super::ops::OpsFlags;
use super::scheduler::check_replica_count;
use super::storage::StorageFlags;
use super::{parse_duration_flag, parse_size_flag, resolve_sandbox};

/// Where a worker serves its share of the cluster CAS unless told.
pub const DEFAULT_WORKER_LISTEN: &str = "127.0.0.1:0";

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
    pub ops: OpsFlags,
    #[command(flatten)]
    pub front: FrontFlags,
    #[command(flatten)]
    pub storage: StorageFlags,
    /// The cluster's schedulers: `host:port` entries (comma-separated or
    /// repeated), or one DNS name whose addresses are all of them.
    #[arg(long, value_name = "HOST:PORT")]
    pub schedulers: Vec<String>,
    /// Reach the CAS through this server (a scheduler run with
    /// --local_cas) instead of holding the cluster CAS on the workers.
    #[arg(long, value_name = "HOST:PORT")]
    pub cas: Option<String>,
    /// Where to serve this worker's share of the cluster CAS (port 0
    /// picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The address others reach this worker at (default: the listen
    /// address).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Disk given to the cluster CAS (default: --disk_size); 0 makes an
    /// execution-only worker that holds no replicas and keeps only a
    /// cache of --disk_size.
    #[arg(long = "replica_space", value_name = "SIZE", value_parser = parse_size_flag)]
    pub replica_space: Option<u64>,
    /// Copies of every blob in the cluster CAS (default 3).
    #[arg(long = "replica_count", value_name = "N")]
    pub replica_count: Option<usize>,
    /// Executors (default: one per CPU; 0 runs nothing).
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// A property the executors offer, `key=value`; repeatable.
    #[arg(long = "platform", value_name = "KEY=VALUE")]
    pub platform: Vec<String>,
    /// How actions are isolated: none, process or linux (default: the
    /// strongest this host allows; asking for one it cannot give fails).
    #[arg(long, value_name = "LEVEL")]
    pub isolation: Option<String>,
    /// What actions that do not ask (platform property `rootfs`) see as
    /// `/`: host (default) or input-root, which needs isolation linux.
    #[arg(long = "default_rootfs", value_name = "ROOTFS")]
    pub default_rootfs: Option<String>,
    /// On SIGTERM, how long running actions may take to finish.
    #[arg(long = "drain_grace", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub drain_grace: Option<Duration>,
    /// How often this worker's repair runs without a membership change, to
    /// finish copies that failed or were cut off (default 5m).
    #[arg(long = "repair_period", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub repair_period: Option<Duration>,
}

/// Where a worker's CAS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerCas {
    /// The cluster CAS on the workers' disks; this worker gives it
    /// `replica_space` bytes (0: none) and serves them on `listen`.
    Cluster {
        listen: SocketAddr,
        advertise: Option<String>,
        replica_space: u64,
        replica_count: usize,
    },
    /// The CAS of the server at this address.
    Through(String),
}

#[derive(Debug)]
pub struct WorkerProcessConfig {
    /// The operators' HTTP port; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS and grants on the CAS port; TLS to schedulers and workers.
    pub front: FrontConfig,
    pub storage: StorageConfig,
    pub schedulers: MemberList,
    pub cas: WorkerCas,
    pub executors: Option<usize>,
    pub platform: Vec<String>,
    /// `--isolation` and `--default_rootfs`.
    pub sandbox: SandboxChoice,
    pub drain_grace: Duration,
    /// `None`: the repairer's default.
    pub repair_period: Option<Duration>,
}

impl WorkerProcessConfig {
    pub fn load(flags: WorkerFlags) -> Result<Self, String> {
        let mut file = FileConfig::load(flags.config.as_deref())?;
        let storage = flags.storage.resolve(&mut file)?;
        let schedulers = file
            .schedulers(&flags.schedulers)?
            .ok_or("--schedulers is required: where the cluster's schedulers are")?;
        let cas = match flags.cas.or(file.cas.clone()) {
            Some(address) => WorkerCas::Through(address),
            None => WorkerCas::Cluster {
                listen: match flags.listen.or(file.listen) {
                    Some(addr) => addr,
                    None => DEFAULT_WORKER_LISTEN
                        .parse()
                        .map_err(|e| format!("default listen address: {e}"))?,
                },
                advertise: flags.advertise.or(file.advertise.clone()),
                replica_space: flags
                    .replica_space
                    .or(file.replica_space()?)
                    .unwrap_or(storage.disk_size),
                replica_count: check_replica_count(flags.replica_count.or(file.replica_count))?,
            },
        };
        Ok(WorkerProcessConfig {
            metrics_listen: flags.ops.resolve(&file),
            front: flags.front.resolve(&file)?,
            storage,
            schedulers,
            cas,
            executors: flags.executors.or(file.executors),
            sandbox: resolve_sandbox(
                (flags.isolation, file.isolation.clone()),
                (flags.default_rootfs, file.default_rootfs.clone()),
            )?,
            platform: if flags.platform.is_empty() {
                file.platform.unwrap_or_default()
            } else {
                flags.platform
            },
            drain_grace: flags
                .drain_grace
                .or(FileConfig::duration(&file.drain_grace, "drain_grace")?)
                .unwrap_or(DEFAULT_DRAIN_GRACE),
            repair_period: flags
                .repair_period
                .or(FileConfig::duration(&file.repair_period, "repair_period")?)
                .filter(|period| !period.is_zero()),
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
    fn the_cas_is_the_cluster_cas_unless_a_server_is_named() {
        let flags = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "sched-a:8980",
            "--schedulers",
            "sched-b:8980",
            "--drain_grace",
            "30s",
            "--disk_size",
            "2G",
        ]);
        let with_period = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "sched-a:8980",
            "--repair_period",
            "10s",
        ]);
        assert_eq!(
            WorkerProcessConfig::load(with_period)
                .unwrap()
                .repair_period,
            Some(Duration::from_secs(10))
        );
        let config = WorkerProcessConfig::load(flags).unwrap();
        assert_eq!(
            config.cas,
            WorkerCas::Cluster {
                listen: DEFAULT_WORKER_LISTEN.parse().unwrap(),
                advertise: None,
                replica_space: 2 << 30,
                replica_count: 3,
            }
        );
        assert_eq!(config.drain_grace, Duration::from_secs(30));
        assert_eq!(config.repair_period, None);
        let flags = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "lb:8980",
            "--replica_space",
            "0",
            "--replica_count",
            "2",
        ]);
        let config = WorkerProcessConfig::load(flags).unwrap();
        assert!(matches!(
            config.cas,
            WorkerCas::Cluster {
                replica_space: 0,
                replica_count: 2,
                ..
            }
        ));
        let flags = WorkerFlags::parse_from([
            "reapi-worker",
            "--schedulers",
            "lb:8980",
            "--cas",
            "cas:1234",
        ]);
        assert_eq!(
            WorkerProcessConfig::load(flags).unwrap().cas,
            WorkerCas::Through("cas:1234".into())
        );
    }
}
