//! Storage configuration and its composition into a store tree: the one
//! place that decides which `BlobStore` and `ActionCache` layers a server
//! runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reapi_core::{ActionCache, BlobStore, InstancePolicy, Result};
use serde::{Deserialize, Deserializer};

use crate::action_cache::{
    BucketBackupActionCache, CompletenessCheckingActionCache, DiskActionCache,
};
use crate::service::StorageServices;
use crate::store::{
    DiskStore, DiskStoreConfig, GcsConfig, ObjectBucket, S3Config, WriteMode, WriteThroughStore,
};
use reapi_core::Error;

pub const DEFAULT_DISK_SIZE: u64 = 10 << 30;

/// How long a referenced blob is kept: Bazel's Build without the Bytes
/// assumes 3 h (its `--experimental_remote_cache_ttl`).
pub const DEFAULT_REPLICA_TIMEOUT: Duration = Duration::from_secs(3 * 60 * 60);

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where blobs and action results live.
    pub data_dir: PathBuf,
    /// Byte budget of the disk store; least recently used blobs go first.
    pub disk_size: u64,
    /// Instance names served; `None` serves any name, each separately.
    pub instances: Option<Vec<String>>,
    /// Write every blob and action result through to an S3 bucket too.
    pub s3: Option<S3Config>,
    /// Write every blob and action result through to a GCS bucket too.
    pub gcs: Option<GcsConfig>,
    /// How long the disk store keeps a blob after a write, FindMissingBlobs
    /// or action cache hit referenced it, whatever its budget: a disk full
    /// of such blobs refuses new ones with RESOURCE_EXHAUSTED. Zero keeps
    /// nothing (plain LRU). In a file: `"3h"`, `"90m"`, `"500ms"` or whole
    /// seconds.
    #[serde(
        default = "default_replica_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub default_replica_timeout: Duration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("reapi-data"),
            disk_size: DEFAULT_DISK_SIZE,
            instances: None,
            s3: None,
            gcs: None,
            default_replica_timeout: DEFAULT_REPLICA_TIMEOUT,
        }
    }
}

fn default_replica_timeout() -> Duration {
    DEFAULT_REPLICA_TIMEOUT
}

/// A duration as whole seconds or as text with a unit (`3h`, `500ms`; see
/// [`reapi_core::config::parse_duration`]).
fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Seconds(u64),
        Text(String),
    }
    match Value::deserialize(deserializer)? {
        Value::Seconds(secs) => Ok(Duration::from_secs(secs)),
        Value::Text(text) => {
            reapi_core::config::parse_duration(&text).map_err(serde::de::Error::custom)
        }
    }
}

/// An external store, both as blobs and as a bucket for result backups.
pub(crate) struct Remote {
    pub(crate) store: Arc<dyn BlobStore>,
    pub(crate) bucket: Arc<dyn ObjectBucket>,
    pub(crate) description: String,
}

/// The built storage: the stores themselves, for whoever runs beside them
/// (the executor hardlinks from the disk store), and the services.
pub struct Storage {
    pub disk: Arc<DiskStore>,
    pub store: Arc<dyn BlobStore>,
    pub action_cache: Arc<dyn ActionCache>,
    pub instances: InstancePolicy,
}

impl StorageConfig {
    pub fn instance_policy(&self) -> InstancePolicy {
        match &self.instances {
            None => InstancePolicy::Any,
            Some(names) => InstancePolicy::only(names.iter().cloned()),
        }
    }

    /// Connects to the external store, if one is configured, and checks
    /// that the bucket answers: a wrong secret or a missing bucket is an
    /// error at start, not at the first build.
    pub(crate) async fn remote(&self) -> Result<Option<Remote>> {
        match (&self.s3, &self.gcs) {
            (Some(_), Some(_)) => Err(Error::invalid_argument(
                "configure either [storage.s3] or [storage.gcs], not both",
            )),
            (Some(s3), None) => Self::s3(s3).await.map(Some),
            (None, Some(gcs)) => Self::gcs(gcs).await.map(Some),
            (None, None) => Ok(None),
        }
    }

    #[cfg(feature = "s3")]
    async fn s3(s3: &S3Config) -> Result<Remote> {
        let store = Arc::new(crate::store::S3Store::new(s3.clone()).await?);
        store.check().await?;
        Ok(Remote {
            store: store.clone(),
            bucket: store,
            description: format!("s3 bucket {}", s3.bucket),
        })
    }

    #[cfg(not(feature = "s3"))]
    async fn s3(s3: &S3Config) -> Result<Remote> {
        Err(Error::failed_precondition(format!(
            "[storage.s3] (bucket {}) needs a build with the s3 feature",
            s3.bucket
        )))
    }

    #[cfg(feature = "gcs")]
    async fn gcs(gcs: &GcsConfig) -> Result<Remote> {
        let store = Arc::new(crate::store::GcsStore::new(gcs.clone()).await?);
        store.check().await?;
        Ok(Remote {
            store: store.clone(),
            bucket: store,
            description: format!("gcs bucket {}", gcs.bucket),
        })
    }

    #[cfg(not(feature = "gcs"))]
    async fn gcs(gcs: &GcsConfig) -> Result<Remote> {
        Err(Error::failed_precondition(format!(
            "[storage.gcs] (bucket {}) needs a build with the gcs feature",
            gcs.bucket
        )))
    }

    /// Opens the disk store and action cache under `data_dir`, written
    /// through to the external store when one is configured.
    pub async fn open(&self) -> Result<Storage> {
        let disk = Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: self.data_dir.join("cas"),
                max_bytes: self.disk_size,
                retention: self.default_replica_timeout,
            })
            .await?,
        );
        let mut store: Arc<dyn BlobStore> = disk.clone();
        let mut results: Arc<dyn ActionCache> =
            Arc::new(DiskActionCache::open(self.data_dir.join("ac"))?);
        if let Some(remote) = self.remote().await? {
            tracing::info!(remote = %remote.description, "writing blobs and action results through");
            store = Arc::new(WriteThroughStore::new(store, remote.store, WriteMode::Both));
            results = Arc::new(BucketBackupActionCache::new(results, remote.bucket));
        }
        let action_cache: Arc<dyn ActionCache> =
            Arc::new(CompletenessCheckingActionCache::new(results, store.clone()));
        Ok(Storage {
            disk,
            store,
            action_cache,
            instances: self.instance_policy(),
        })
    }
}

/// A worker's storage: its disk store, in front of the cluster's CAS.
pub struct WorkerStorage {
    pub disk: Arc<DiskStore>,
    /// The disk store written through to the cluster's CAS: a write
    /// succeeds once the cluster holds the blob; a read the disk store
    /// cannot answer is fetched and kept.
    pub store: Arc<dyn BlobStore>,
    pub upstream: String,
    /// The cluster CAS, when the worker is part of one.
    pub cluster: Option<crate::store::ClusterStore>,
}

impl StorageConfig {
    /// Opens a worker's disk store under `data_dir`, in front of the
    /// cluster's CAS: the bucket when one is configured (shared by every
    /// process of the cluster), else `cas`, the CAS of a scheduler.
    pub async fn open_worker(&self, cas: Option<Arc<dyn BlobStore>>) -> Result<WorkerStorage> {
        let disk = Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: self.data_dir.join("cas"),
                max_bytes: self.disk_size,
                // A cache in front of the CAS, not a copy of it: nothing to protect.
                retention: Duration::ZERO,
            })
            .await?,
        );
        let (upstream, description) =
            match (self.remote().await?, cas) {
                (Some(remote), _) => (remote.store, remote.description),
                (None, Some(cas)) => (cas, "the scheduler's CAS".to_string()),
                (None, None) => return Err(Error::invalid_argument(
                    "a worker needs the cluster's CAS: a bucket or a scheduler to reach it through",
                )),
            };
        let store: Arc<dyn BlobStore> = Arc::new(WriteThroughStore::new(
            disk.clone(),
            upstream,
            WriteMode::Both,
        ));
        Ok(WorkerStorage {
            disk,
            store,
            upstream: description,
            cluster: None,
        })
    }
}

impl Storage {
    pub fn services(&self) -> StorageServices {
        StorageServices {
            store: self.store.clone(),
            action_cache: self.action_cache.clone(),
            instances: self.instances.clone(),
            execution: None,
        }
    }
}
