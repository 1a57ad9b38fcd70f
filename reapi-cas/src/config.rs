//! Storage configuration and its composition into a store tree: the one
//! place that decides which `BlobStore` and `ActionCache` layers a server
//! runs.

use std::path::PathBuf;
use std::sync::Arc;

use reapi_core::{ActionCache, BlobStore, InstancePolicy, Result};
use serde::Deserialize;

use crate::action_cache::{CompletenessCheckingActionCache, DiskActionCache};
use crate::service::StorageServices;
use crate::store::{DiskStore, DiskStoreConfig};

pub const DEFAULT_DISK_SIZE: u64 = 10 << 30;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Where blobs and action results live.
    pub data_dir: PathBuf,
    /// Byte budget of the disk store; least recently used blobs go first.
    pub disk_size: u64,
    /// Instance names served; `None` serves any name, each separately.
    pub instances: Option<Vec<String>>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("reapi-data"),
            disk_size: DEFAULT_DISK_SIZE,
            instances: None,
        }
    }
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

    /// Opens the disk store and action cache under `data_dir`.
    pub async fn open(&self) -> Result<Storage> {
        let disk = Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: self.data_dir.join("cas"),
                max_bytes: self.disk_size,
            })
            .await?,
        );
        let store: Arc<dyn BlobStore> = disk.clone();
        let results = Arc::new(DiskActionCache::open(self.data_dir.join("ac"))?);
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
