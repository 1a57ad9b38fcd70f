//! The storage flags every binary takes: where its data lives, its disk
//! budget, and the bucket it writes through to.

use std::path::PathBuf;

use clap::Args;
use reapi_cas::config::StorageConfig;
use reapi_cas::store::{GcsConfig, S3Config};

use super::file::FileConfig;
use super::{parse_duration_flag, parse_size_flag};

#[derive(Args, Debug, Default, Clone)]
pub struct StorageFlags {
    /// Directory for blobs, action results and work files.
    #[arg(long = "data-dir", visible_alias = "data_dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Disk budget of the CAS, e.g. 10G, 512MiB or bytes.
    #[arg(long = "disk_size", visible_alias = "disk-size", value_name = "SIZE", value_parser = parse_size_flag)]
    pub disk_size: Option<u64>,
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
    /// Blobs used (written, asked about, named by a cache hit) within this
    /// time are never evicted; a disk full of them refuses writes (e.g.
    /// 3h, the default; 0 turns protection off).
    #[arg(long = "default_replica_timeout", value_name = "DURATION", value_parser = parse_duration_flag)]
    pub default_replica_timeout: Option<std::time::Duration>,
    /// Send no credentials to GCS (for emulators).
    #[arg(long = "gcs-no-auth")]
    pub gcs_no_auth: bool,
}

impl StorageFlags {
    /// The storage configuration: these flags over the file over the
    /// defaults.
    pub fn resolve(&self, file: &mut FileConfig) -> Result<StorageConfig, String> {
        let defaults = StorageConfig::default();
        let section = file.storage.take().unwrap_or_default();
        Ok(StorageConfig {
            data_dir: self
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or(defaults.data_dir),
            disk_size: self
                .disk_size
                .or(file.disk_size()?)
                .unwrap_or(defaults.disk_size),
            instances: file.instances.clone(),
            s3: self.s3(section.s3),
            gcs: self.gcs(section.gcs),
            default_replica_timeout: match self.default_replica_timeout {
                Some(timeout) => timeout,
                None => {
                    FileConfig::duration(&file.default_replica_timeout, "default_replica_timeout")?
                        .unwrap_or(defaults.default_replica_timeout)
                }
            },
        })
    }

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
