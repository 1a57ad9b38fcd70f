//! `reapi-server` configuration: defaults, then the TOML file given with
//! `--config`, then flags; the later wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_core::config::parse_byte_size;
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8980";

#[derive(Parser, Debug, Default)]
#[command(
    name = "reapi-server",
    version,
    about = "Remote Execution API v2 server: CAS, action cache and ByteStream"
)]
pub struct Flags {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for blobs and action results.
    #[arg(long = "data-dir", visible_alias = "data_dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Disk budget of the CAS, e.g. 10G, 512MiB or bytes.
    #[arg(long = "disk_size", visible_alias = "disk-size", value_name = "SIZE", value_parser = parse_size_flag)]
    pub disk_size: Option<u64>,
    /// TOML configuration file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Local executors (default: one per CPU; 0 serves only the cache).
    #[arg(long, value_name = "N")]
    pub executors: Option<usize>,
    /// A property the local executors offer, `key=value`; repeatable.
    /// Replaces the detected value of the same key (OSFamily, ISA, cpus,
    /// memory).
    #[arg(long = "platform", value_name = "KEY=VALUE")]
    pub platform: Vec<String>,
}

fn parse_size_flag(text: &str) -> Result<u64, String> {
    parse_byte_size(text).map_err(|e| e.to_string())
}

/// The file format: every key optional.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    disk_size: Option<SizeValue>,
    instances: Option<Vec<String>>,
    executors: Option<usize>,
    platform: Option<Vec<String>>,
}

/// A size in the file: bytes as an integer or a string with a unit.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum SizeValue {
    Bytes(u64),
    Text(String),
}

#[derive(Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    /// `None`: one executor per CPU.
    pub executors: Option<usize>,
    pub platform: Vec<String>,
}

impl ServerConfig {
    pub fn load(flags: Flags) -> Result<Self, String> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("reading config {}: {e}", path.display()))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| format!("config {}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let file_disk_size = match file.disk_size {
            None => None,
            Some(SizeValue::Bytes(n)) => Some(n),
            Some(SizeValue::Text(t)) => {
                Some(parse_size_flag(&t).map_err(|e| format!("disk_size: {e}"))?)
            }
        };
        let defaults = StorageConfig::default();
        let listen = match flags.listen.or(file.listen) {
            Some(addr) => addr,
            None => DEFAULT_LISTEN
                .parse()
                .map_err(|e| format!("default listen address: {e}"))?,
        };
        Ok(ServerConfig {
            listen,
            storage: StorageConfig {
                data_dir: flags
                    .data_dir
                    .or(file.data_dir)
                    .unwrap_or(defaults.data_dir),
                disk_size: flags
                    .disk_size
                    .or(file_disk_size)
                    .unwrap_or(defaults.disk_size),
                instances: file.instances,
            },
            executors: flags.executors.or(file.executors),
            platform: if flags.platform.is_empty() {
                file.platform.unwrap_or_default()
            } else {
                flags.platform
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_flags() {
        let config = ServerConfig::load(Flags::default()).unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.storage.data_dir, PathBuf::from("reapi-data"));
        assert_eq!(config.storage.disk_size, 10 << 30);
        assert!(config.storage.instances.is_none());
        assert_eq!(config.executors, None);
        assert!(config.platform.is_empty());
    }

    #[test]
    fn executor_flags() {
        let flags = Flags::parse_from([
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
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/cas\"\ndisk_size = \"2G\"\ninstances = [\"\", \"ci\"]\n",
        )
        .unwrap();
        let flags = Flags::parse_from([
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
    fn bad_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "disk_sise = 5\n").unwrap();
        let flags = Flags::parse_from(["reapi-server", "--config", path.to_str().unwrap()]);
        let err = ServerConfig::load(flags).unwrap_err();
        assert!(err.contains("disk_sise"), "{err}");
        assert!(Flags::try_parse_from(["reapi-server", "--disk_size", "lots"]).is_err());
    }
}
