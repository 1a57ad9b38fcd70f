//! `reapi-server` configuration: defaults, then the TOML file given with
//! `--config`, then flags; the later wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use reapi_cas::config::StorageConfig;
use reapi_cas::store::{GcsConfig, S3Config};
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
    /// Write blobs and action results through to this S3 bucket
    /// (credentials from the standard AWS chain, or `[storage.s3]`).
    #[arg(long = "s3-bucket", value_name = "BUCKET")]
    pub s3_bucket: Option<String>,
    /// S3 endpoint URL for servers other than AWS.
    #[arg(long = "s3-endpoint", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    #[arg(long = "s3-region", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Key prefix in the S3 bucket.
    #[arg(long = "s3-prefix", value_name = "PREFIX")]
    pub s3_prefix: Option<String>,
    /// Path-style S3 URLs (most servers other than AWS need them).
    #[arg(long = "s3-path-style")]
    pub s3_path_style: bool,
    /// Write blobs and action results through to this GCS bucket.
    #[arg(long = "gcs-bucket", value_name = "BUCKET")]
    pub gcs_bucket: Option<String>,
    /// GCS endpoint URL (for emulators).
    #[arg(long = "gcs-endpoint", value_name = "URL")]
    pub gcs_endpoint: Option<String>,
    /// Object-name prefix in the GCS bucket.
    #[arg(long = "gcs-prefix", value_name = "PREFIX")]
    pub gcs_prefix: Option<String>,
    /// Send no credentials to GCS (for emulators).
    #[arg(long = "gcs-no-auth")]
    pub gcs_no_auth: bool,
}

impl Flags {
    /// The S3 section with these flags applied over the file's.
    fn s3(&self, file: Option<S3Config>) -> Option<S3Config> {
        let touched = self.s3_bucket.is_some()
            || self.s3_endpoint.is_some()
            || self.s3_region.is_some()
            || self.s3_prefix.is_some()
            || self.s3_path_style;
        if !touched {
            return file;
        }
        let mut s3 = file.unwrap_or_default();
        if let Some(bucket) = &self.s3_bucket {
            s3.bucket = bucket.clone();
        }
        if let Some(endpoint) = &self.s3_endpoint {
            s3.endpoint = Some(endpoint.clone());
        }
        if let Some(region) = &self.s3_region {
            s3.region = region.clone();
        }
        if let Some(prefix) = &self.s3_prefix {
            s3.prefix = prefix.clone();
        }
        s3.path_style |= self.s3_path_style;
        Some(s3)
    }

    /// The GCS section with these flags applied over the file's.
    fn gcs(&self, file: Option<GcsConfig>) -> Option<GcsConfig> {
        let touched = self.gcs_bucket.is_some()
            || self.gcs_endpoint.is_some()
            || self.gcs_prefix.is_some()
            || self.gcs_no_auth;
        if !touched {
            return file;
        }
        let mut gcs = file.unwrap_or_default();
        if let Some(bucket) = &self.gcs_bucket {
            gcs.bucket = bucket.clone();
        }
        if let Some(endpoint) = &self.gcs_endpoint {
            gcs.endpoint = Some(endpoint.clone());
        }
        if let Some(prefix) = &self.gcs_prefix {
            gcs.prefix = prefix.clone();
        }
        gcs.no_auth |= self.gcs_no_auth;
        Some(gcs)
    }
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
    storage: Option<StorageSection>,
}

/// `[storage.s3]` / `[storage.gcs]`: an external store to write through to.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    s3: Option<S3Config>,
    gcs: Option<GcsConfig>,
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
        let section = file.storage.unwrap_or_default();
        let s3 = flags.s3(section.s3);
        let gcs = flags.gcs(section.gcs);
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
                s3,
                gcs,
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
    fn external_store_from_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "[storage.s3]\nbucket = \"cache\"\nregion = \"eu-west-1\"\nsecret_access_key = \"hunter2\"\n",
        )
        .unwrap();
        let flags = Flags::parse_from([
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

        let flags = Flags::parse_from(["reapi-server", "--gcs-bucket", "b", "--gcs-no-auth"]);
        let gcs = ServerConfig::load(flags).unwrap().storage.gcs.unwrap();
        assert_eq!(gcs.bucket, "b");
        assert!(gcs.no_auth);
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
