//! `ClusterStore`: the cluster's CAS, held on the disks of the workers with
//! replica space and reached over gRPC (each worker serves the REAPI CAS
//! and ByteStream services over its own disk store). Schedulers and
//! workers use it alike.
//!
//! - Placement: a blob's holders are the top `replica_count` members of
//!   the current [`Placement`] for its key (rendezvous hashing); the
//!   ranking beyond them is where readers look next.
//! - Writes stream to every holder at once and succeed once
//!   `replica_count` copies are committed (every member's, when there are
//!   fewer); a holder that fails is replaced by the next in the ranking
//!   (`write.rs`).
//! - Reads go to the holders in rank order, then to everyone else; a blob
//!   found off its place is copied back in the background (`read.rs`).
//! - FindMissingBlobs asks every member once, in parallel, about the
//!   digests it holds (`find_missing.rs`).
//!
//! A process that is itself a member (a worker with replica space) reaches
//! its own share through `local` rather than over the network.

mod find_missing;
mod peers;
mod read;
pub mod repair;
mod repair_metrics;
mod write;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use reapi_core::blob_store::{collect_stream, BlobStore, BlobWriter, ChunkStream};
use reapi_core::cluster::placement::{Holder, Placement, PlacementReceiver};
use reapi_core::{Digest, Error, Result};
use tokio::sync::Semaphore;

pub use self::peers::{GrpcMembers, MemberStores};

/// Default number of copies of every blob.
pub const DEFAULT_REPLICA_COUNT: usize = 3;
/// Read repairs running at once; more are skipped (the repair after a
/// membership change catches them).
const READ_REPAIRS: usize = 4;

/// This process's own share of the cluster CAS.
#[derive(Clone)]
pub struct LocalMember {
    /// Its worker id, as placement knows it.
    pub id: String,
    pub store: Arc<dyn BlobStore>,
}

/// The cluster's CAS; see the module documentation. Cloning shares it.
#[derive(Clone)]
pub struct ClusterStore {
    inner: Arc<Inner>,
}

struct Inner {
    placement: PlacementReceiver,
    replica_count: usize,
    local: Option<LocalMember>,
    members: Arc<dyn MemberStores>,
    read_repairs: Arc<Semaphore>,
}

impl ClusterStore {
    /// A store over the members `placement` publishes, reached over
    /// gRPC, keeping `replica_count` copies of every blob.
    pub fn new(
        placement: PlacementReceiver,
        replica_count: usize,
        local: Option<LocalMember>,
    ) -> ClusterStore {
        Self::with_members(
            placement,
            replica_count,
            local,
            Arc::new(GrpcMembers::default()),
        )
    }

    /// [`ClusterStore::new`] reaching members through `members`.
    pub fn with_members(
        placement: PlacementReceiver,
        replica_count: usize,
        local: Option<LocalMember>,
        members: Arc<dyn MemberStores>,
    ) -> ClusterStore {
        ClusterStore {
            inner: Arc::new(Inner {
                placement,
                replica_count: replica_count.max(1),
                local,
                members,
                read_repairs: Arc::new(Semaphore::new(READ_REPAIRS)),
            }),
        }
    }

    /// The members right now.
    pub fn placement(&self) -> Arc<Placement> {
        self.inner.placement()
    }

    pub fn replica_count(&self) -> usize {
        self.inner.replica_count
    }

    /// The store through which `holder`'s share is reached.
    pub fn store_of(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>> {
        self.inner.store_of(holder)
    }
}

impl Inner {
    fn placement(&self) -> Arc<Placement> {
        self.placement.borrow().clone()
    }

    fn store_of(&self, holder: &Holder) -> Result<Arc<dyn BlobStore>> {
        if let Some(local) = &self.local {
            if local.id == *holder.id {
                return Ok(local.store.clone());
            }
        }
        self.members.store(holder)
    }

    /// The copies a write must make, or UNAVAILABLE when no member holds
    /// replicas.
    fn copies_wanted(&self, placement: &Placement) -> Result<usize> {
        match placement.copies_wanted(self.replica_count) {
            0 => Err(Error::unavailable(
                "the cluster CAS has no members: no worker with replica space is linked",
            )),
            n => Ok(n),
        }
    }
}

#[async_trait]
impl BlobStore for ClusterStore {
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        find_missing::find_missing(&self.inner, instance, digests).await
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        if digest.is_empty_blob() {
            return Ok(Bytes::new());
        }
        let stream = self.read(instance, digest, 0, None).await?;
        collect_stream(stream, digest.size()).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        read::read(&self.inner, instance, digest, offset, limit).await
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        write::put(&self.inner, instance, digest, data).await
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        write::begin_write(&self.inner, instance, digest).await
    }
}
