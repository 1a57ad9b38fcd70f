//! The TOML configuration file: every key optional, unknown keys refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reapi_cas::store::{GcsConfig, S3Config};
use reapi_core::cluster::discovery::MemberList;
use serde::Deserialize;

use super::{parse_duration_flag, parse_size_flag};

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub disk_size: Option<SizeValue>,
    pub instances: Option<Vec<String>>,
    pub executors: Option<usize>,
    pub platform: Option<Vec<String>>,
    /// `none`, `process` or `linux`.
    pub isolation: Option<String>,
    /// `host` or `input-root`.
    pub default_rootfs: Option<String>,
    pub storage: Option<StorageSection>,
    /// Schedulers of the cluster (`host:port`, or one DNS name).
    pub schedulers: Option<Vec<String>>,
    /// Address this scheduler is reached at by its peers.
    pub advertise: Option<String>,
    /// Where a worker reaches the cluster's CAS when no bucket is set.
    pub cas: Option<String>,
    pub heartbeat_timeout: Option<String>,
    pub orphan_timeout: Option<String>,
    pub drain_grace: Option<String>,
    /// How often a worker's repair runs without a membership change.
    pub repair_period: Option<String>,
    /// How long used blobs are protected from eviction, e.g. "3h".
    pub default_replica_timeout: Option<String>,
    /// Copies of every blob in the cluster CAS.
    pub replica_count: Option<usize>,
    /// Schedulers holding each action cache entry.
    pub metadata_replica_count: Option<usize>,
    /// A worker's disk given to the cluster CAS (0: execution only).
    pub replica_space: Option<SizeValue>,
    /// A scheduler keeps the CAS on its own disk instead of the workers'.
    pub local_cas: Option<bool>,
    /// The operators' HTTP port (metrics, health), e.g. "127.0.0.1:9090".
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on the client port.
    pub tls: Option<super::tls::TlsSection>,
    /// The grants file (`--auth_grants`).
    pub auth_grants: Option<std::path::PathBuf>,
    /// TLS to the cluster's other processes.
    pub cluster_tls: Option<super::cluster_tls::ClusterTlsSection>,
    /// The Remote Asset services' fetching.
    pub asset: Option<super::asset::AssetSection>,
}

/// `[storage.s3]` / `[storage.gcs]`: an external store to write through to.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    pub s3: Option<S3Config>,
    pub gcs: Option<GcsConfig>,
}

/// A size in the file: bytes as an integer or a string with a unit.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum SizeValue {
    Bytes(u64),
    Text(String),
}

impl FileConfig {
    /// The file at `path`, or the empty configuration without one.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading config {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))
    }

    pub fn disk_size(&self) -> Result<Option<u64>, String> {
        Self::size(&self.disk_size, "disk_size")
    }

    pub fn replica_space(&self) -> Result<Option<u64>, String> {
        Self::size(&self.replica_space, "replica_space")
    }

    pub fn size(value: &Option<SizeValue>, key: &str) -> Result<Option<u64>, String> {
        match value {
            None => Ok(None),
            Some(SizeValue::Bytes(n)) => Ok(Some(*n)),
            Some(SizeValue::Text(t)) => parse_size_flag(t)
                .map(Some)
                .map_err(|e| format!("{key}: {e}")),
        }
    }

    /// The schedulers from `--schedulers` if given, else from the file;
    /// `None` when neither names any.
    pub fn schedulers(&self, flags: &[String]) -> Result<Option<MemberList>, String> {
        let entries = if flags.is_empty() {
            self.schedulers.clone().unwrap_or_default()
        } else {
            flags.to_vec()
        };
        if entries.is_empty() {
            return Ok(None);
        }
        MemberList::parse(&entries)
            .map(Some)
            .map_err(|e| format!("--schedulers: {e}"))
    }

    pub fn duration(value: &Option<String>, key: &str) -> Result<Option<Duration>, String> {
        value
            .as_deref()
            .map(|text| parse_duration_flag(text).map_err(|e| format!("{key}: {e}")))
            .transpose()
    }
}
