//! Storage of the processes of a cluster whose CAS lives on the workers'
//! disks ([`ClusterStore`]):
//!
//! - a scheduler keeps no blobs: its CAS is the cluster store, and its
//!   action cache stays on its own disk, checked against the cluster;
//! - a worker keeps its disk store in front of the cluster store: inputs
//!   are read from its disk first, outputs are written to their holders
//!   and kept on its disk. When it has replica space its disk is also its
//!   share of the cluster CAS, served to the others.
//!
//! With a bucket configured, every write also goes to the bucket and a
//! blob no member holds any more is read back from it (and stored in the
//! cluster again).

use std::sync::Arc;
use std::time::Duration;

use reapi_core::cluster::placement::PlacementReceiver;
use reapi_core::{ActionCache, BlobStore, InstancePolicy, Result};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::action_cache::{
    BucketBackupActionCache, CompletenessCheckingActionCache, DiskActionCache,
    ReplicatedActionCache,
};
use crate::config::{StorageConfig, WorkerStorage};
use crate::service::StorageServices;
use crate::store::{
    ClusterStore, DiskStore, DiskStoreConfig, LocalMember, WriteMode, WriteThroughStore,
};

/// How a scheduler replicates its action cache over the schedulers.
pub struct MetadataReplication {
    /// The live schedulers, named by address.
    pub placement: PlacementReceiver,
    pub replica_count: usize,
    /// This scheduler's address, as the others know it.
    pub self_id: String,
    /// The addresses of schedulers that restarted without leaving
    /// `placement`, as they are seen: they get their share again.
    pub restarts: Option<UnboundedReceiver<String>>,
}

/// Wait after a change of schedulers before action cache entries move.
const REBALANCE_SETTLE: Duration = Duration::from_secs(2);

/// A scheduler's storage in a cluster with a cluster CAS.
pub struct ClusterStorage {
    pub cluster: ClusterStore,
    /// The cluster store, written through to the bucket when there is one.
    pub store: Arc<dyn BlobStore>,
    pub action_cache: Arc<dyn ActionCache>,
    /// With a replicated action cache: this scheduler's share, which
    /// answers its peers.
    pub own_share: Option<Arc<dyn ActionCache>>,
    /// The replicated action cache and the entries of this scheduler's
    /// share, to hand them off before it stops.
    pub replicated: Option<(Arc<ReplicatedActionCache>, Arc<DiskActionCache>)>,
    pub instances: InstancePolicy,
}

impl ClusterStorage {
    pub fn services(&self) -> StorageServices {
        StorageServices {
            store: self.store.clone(),
            action_cache: self.action_cache.clone(),
            instances: self.instances.clone(),
            execution: None,
        }
    }
}

impl StorageConfig {
    /// The disk store under `data_dir`, with a budget of `max_bytes`;
    /// `protect` keeps recently used blobs for `default_replica_timeout`
    /// (a share of the cluster CAS), else it is a plain cache.
    pub async fn open_disk(&self, max_bytes: u64, protect: bool) -> Result<Arc<DiskStore>> {
        Ok(Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: self.data_dir.join("cas"),
                max_bytes,
                retention: if protect {
                    self.default_replica_timeout
                } else {
                    std::time::Duration::ZERO
                },
            })
            .await?,
        ))
    }

    /// A scheduler's storage: the cluster store over the members
    /// `placement` publishes, and the action cache under `data_dir`.
    pub async fn open_cluster_scheduler(
        &self,
        placement: PlacementReceiver,
        replica_count: usize,
        metadata: Option<MetadataReplication>,
    ) -> Result<ClusterStorage> {
        let cluster = ClusterStore::new(placement, replica_count, None);
        let mut store: Arc<dyn BlobStore> = Arc::new(cluster.clone());
        let disk_results = Arc::new(DiskActionCache::open(self.data_dir.join("ac"))?);
        let mut results: Arc<dyn ActionCache> = disk_results.clone();
        if let Some(remote) = self.remote().await? {
            tracing::info!(remote = %remote.description, "cluster CAS writes also go to the bucket");
            store = Arc::new(WriteThroughStore::new(store, remote.store, WriteMode::Both));
            results = Arc::new(BucketBackupActionCache::new(results, remote.bucket));
        }
        let mut own_share = None;
        let mut replicated_cache = None;
        if let Some(metadata) = metadata {
            let replicated = ReplicatedActionCache::new(
                metadata.placement,
                metadata.replica_count,
                metadata.self_id,
                results.clone(),
            );
            replicated.spawn_rebalancer(disk_results.clone(), REBALANCE_SETTLE, metadata.restarts);
            replicated_cache = Some((replicated.clone(), disk_results));
            own_share = Some(results);
            results = replicated;
        }
        let action_cache: Arc<dyn ActionCache> =
            Arc::new(CompletenessCheckingActionCache::new(results, store.clone()));
        Ok(ClusterStorage {
            cluster,
            store,
            action_cache,
            own_share,
            replicated: replicated_cache,
            instances: self.instance_policy(),
        })
    }

    /// A worker's storage: its disk store (`disk`, opened by the caller
    /// with the budget it chose) in front of the cluster store. A worker
    /// that holds replicas names itself with `member_id`, so its own share
    /// is reached on its disk rather than over the network.
    pub async fn open_cluster_worker(
        &self,
        disk: Arc<DiskStore>,
        placement: PlacementReceiver,
        replica_count: usize,
        member_id: Option<&str>,
    ) -> Result<WorkerStorage> {
        let local = member_id.map(|id| LocalMember {
            id: id.to_string(),
            store: disk.clone(),
        });
        let cluster = ClusterStore::new(placement, replica_count, local);
        let mut upstream: Arc<dyn BlobStore> = Arc::new(cluster.clone());
        let mut description = format!("the cluster CAS ({replica_count} copies)");
        if let Some(remote) = self.remote().await? {
            upstream = Arc::new(WriteThroughStore::new(
                upstream,
                remote.store,
                WriteMode::Both,
            ));
            description = format!("{description}, and {}", remote.description);
        }
        let store: Arc<dyn BlobStore> = Arc::new(WriteThroughStore::new(
            disk.clone(),
            upstream,
            WriteMode::Both,
        ));
        Ok(WorkerStorage {
            disk,
            store,
            upstream: description,
            cluster: Some(cluster),
        })
    }
}
