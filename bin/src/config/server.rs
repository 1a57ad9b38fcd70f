//! `reapi-server`: everything in one process: storage, a scheduler and a
//! worker with local executors.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_executor::SandboxChoice;

use super::asset::AssetFlags;
use super::file::FileConfig;
use super::front::{FrontConfig, FrontFlags};
use super::ops::OpsFlags;
use super::scheduling::SchedulingFlags;
use super::storage::StorageFlags;
use super::{resolve_sandbox, DEFAULT_LISTEN};
use reapi_scheduler::SchedulerConfig;

#[derive(Parser, Debug, Default)]
#[command(
    name = "reapi-server",
    version,
    about = "Remote Execution API v2 server: CAS, action cache, ByteStream and local execution, in one process"
)]
pub struct ServerFlags {
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
    /// Local executors (default: one per CPU; 0 serves only the cache).
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// A property the local executors offer, `key=value`; repeatable.
    /// Replaces the detected value of the same key (OSFamily, ISA, cpus,
    /// memory).
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
    #[command(flatten)]
    pub scheduling: SchedulingFlags,
}

#[derive(Debug)]
pub struct ServerConfig {
    /// The operators' HTTP port; `None`: off.
    pub metrics_listen: Option<SocketAddr>,
    pub listen: SocketAddr,
    /// TLS and grants on the port.
    pub front: FrontConfig,
    /// FetchBlob's downloads; `None`: it never fetches.
    pub asset_fetch: Option<reapi_cas::asset::FetchPolicy>,
    pub storage: StorageConfig,
    /// `None`: one executor per CPU.
    pub executors: Option<usize>,
    pub platform: Vec<String>,
    /// `--isolation` and `--default_rootfs`.
    pub sandbox: SandboxChoice,
    pub scheduler: SchedulerConfig,
}

impl ServerConfig {
    pub fn load(flags: ServerFlags) -> Result<Self, String> {
        let mut file = FileConfig::load(flags.config.as_deref())?;
        let storage = flags.storage.resolve(&mut file)?;
        let scheduler = flags.scheduling.resolve(&file)?;
        Ok(ServerConfig {
            metrics_listen: flags.ops.resolve(&file),
            scheduler,
            listen: resolve_listen(flags.listen, file.listen)?,
            front: flags.front.resolve(&file)?,
            asset_fetch: flags.asset.resolve(&file, &storage.data_dir)?,
            storage,
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
        })
    }
}

pub(crate) fn resolve_listen(
    flag: Option<SocketAddr>,
    file: Option<SocketAddr>,
) -> Result<SocketAddr, String> {
    match flag.or(file) {
        Some(addr) => Ok(addr),
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|e| format!("default listen address: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_core::platform::RootFs;
    use reapi_executor::sandbox::isolation::Isolation;

    #[test]
    fn defaults_without_flags() {
        let config = ServerConfig::load(ServerFlags::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.storage.data_dir, PathBuf::from("reapi-data"));
        assert_eq!(config.storage.disk_size, 10 << 30);
        assert!(config.storage.instances.is_none());
        assert_eq!(config.executors, None);
        assert!(config.platform.is_empty());
    }

    #[test]
    fn executor_flags() {
        let flags = ServerFlags::parse_from([
            "reapi-server",
            "--executors",
            "3",
            "--platform",
            "OSFamily=linux",
            "--platform",
            "pool=big",
        ]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(config.executors, Some(3));
        assert_eq!(config.platform, ["OSFamily=linux", "pool=big"]);
    }

    #[test]
    fn isolation_from_flag_or_file_and_unknown_levels_refused() {
        let config = ServerConfig::load(ServerFlags::default()).unwrap();
        assert_eq!(config.sandbox.isolation, None);
        let flags = ServerFlags::parse_from(["reapi-server", "--isolation", "process"]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(config.sandbox.isolation, Some(Isolation::Process));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "isolation = \"none\"\n").unwrap();
        let flags = ServerFlags::parse_from(["reapi-server", "--config", path.to_str().unwrap()]);
        assert_eq!(
            ServerConfig::load(flags).unwrap().sandbox.isolation,
            Some(Isolation::None)
        );

        let flags = ServerFlags::parse_from(["reapi-server", "--isolation", "chroot"]);
        let err = ServerConfig::load(flags).unwrap_err();
        assert!(
            err.contains("--isolation") && err.contains("none, process, linux"),
            "{err}"
        );
    }

    #[test]
    fn default_rootfs_from_flag_or_file_and_unknown_values_refused() {
        let config = ServerConfig::load(ServerFlags::default()).unwrap();
        assert_eq!(config.sandbox.default_rootfs, RootFs::Host);
        let flags = ServerFlags::parse_from(["reapi-server", "--default_rootfs", "input-root"]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(config.sandbox.default_rootfs, RootFs::InputRoot);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "default_rootfs = \"input-root\"\n").unwrap();
        let flags = ServerFlags::parse_from(["reapi-server", "--config", path.to_str().unwrap()]);
        assert_eq!(
            ServerConfig::load(flags).unwrap().sandbox.default_rootfs,
            RootFs::InputRoot
        );

        let flags = ServerFlags::parse_from(["reapi-server", "--default_rootfs", "/"]);
        let err = ServerConfig::load(flags).unwrap_err();
        assert!(
            err.contains("--default_rootfs") && err.contains("input-root"),
            "{err}"
        );
    }

    #[test]
    fn metrics_listen_is_off_by_default_and_set_by_flag_or_file() {
        let config = ServerConfig::load(ServerFlags::default()).unwrap();
        assert_eq!(config.metrics_listen, None);
        let flags = ServerFlags::parse_from(["reapi-server", "--metrics_listen", "127.0.0.1:0"]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(config.metrics_listen, Some("127.0.0.1:0".parse().unwrap()));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "metrics_listen = \"127.0.0.1:9090\"\n").unwrap();
        let flags = ServerFlags::parse_from(["reapi-server", "--config", path.to_str().unwrap()]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        let flags = ServerFlags::parse_from([
            "reapi-server",
            "--config",
            path.to_str().unwrap(),
            "--metrics_listen",
            "127.0.0.1:9191",
        ]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9191".parse().unwrap())
        );
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/cas\"\ndisk_size = \"2G\"\ninstances = [\"\", \"ci\"]\n",
        )
        .unwrap();
        let flags = ServerFlags::parse_from([
            "reapi-server",
            "--config",
            path.to_str().unwrap(),
            "--disk_size",
            "512M",
        ]);
        let config = ServerConfig::load(flags).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.storage.data_dir, PathBuf::from("/srv/cas"));
        assert_eq!(config.storage.disk_size, 512 << 20);
        assert_eq!(
            config.storage.instances,
            Some(vec![String::new(), "ci".into()])
        );
    }

    #[test]
    fn external_store_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "[storage.s3]\nbucket = \"cache\"\nregion = \"eu-west-1\"\nsecret_access_key = \"hunter2\"\n",
        )
        .unwrap();
        let flags = ServerFlags::parse_from([
            "reapi-server",
            "--config",
            path.to_str().unwrap(),
            "--s3-endpoint",
            "http://127.0.0.1:8333",
            "--s3-path-style",
        ]);
        let config = ServerConfig::load(flags).unwrap();
        let s3 = config.storage.s3.unwrap();
        assert_eq!(s3.bucket, "cache");
        assert_eq!(s3.region, "eu-west-1");
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(s3.path_style);
        assert!(
            !format!("{s3:?}").contains("hunter2"),
            "secret in Debug output"
        );
        assert!(config.storage.gcs.is_none());

        let flags = ServerFlags::parse_from(["reapi-server", "--gcs-bucket", "b", "--gcs-no-auth"]);
        let gcs = ServerConfig::load(flags).unwrap().storage.gcs.unwrap();
        assert_eq!(gcs.bucket, "b");
        assert!(gcs.no_auth);
    }

    #[test]
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "disk_sise = 5\n").unwrap();
        let flags = ServerFlags::parse_from(["reapi-server", "--config", path.to_str().unwrap()]);
        let err = ServerConfig::load(flags).unwrap_err();
        assert!(err.contains("disk_sise"), "{err}");
        assert!(ServerFlags::try_parse_from(["reapi-server", "--disk_size", "lots"]).is_err());
    }
}
