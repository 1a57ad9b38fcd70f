//! Reads: the blob's holders in rank order, then every other member. The
//! first that has it streams it. When the blob was found off its place, or
//! a holder ahead of the one that had it did not, the missing holders get
//! a copy in the background (read repair), so the next reader finds it
//! where placement says.
//!
//! NOT_FOUND only when every member answered that it lacks the blob; if a
//! member could not be asked, the read fails UNAVAILABLE, so a client
//! retries rather than concluding the blob is gone.

use std::sync::Arc;

use futures::StreamExt;
use reapi_core::blob_store::{BlobStore, ChunkStream, SMALL_BLOB_LIMIT};
use reapi_core::cluster::placement::Holder;
use reapi_core::{Digest, Error, ErrorExt, Result};
use tonic::Code;

use super::Inner;

pub(super) async fn read(
    inner: &Inner,
    instance: &str,
    digest: &Digest,
    offset: u64,
    limit: Option<u64>,
) -> Result<ChunkStream> {
    if digest.is_empty_blob() {
        if offset > 0 {
            return Err(Error::out_of_range(format!(
                "offset {offset} is past the end of the empty blob"
            )));
        }
        return Ok(futures::stream::empty().boxed());
    }
    let placement = inner.placement();
    let k = placement.copies_wanted(inner.replica_count);
    let ranked = placement.ranked(instance, digest);
    let mut lacking: Vec<Holder> = Vec::new();
    let mut unreachable: Option<Error> = None;
    for (rank, holder) in ranked.iter().enumerate() {
        let store = match inner.store_of(holder) {
            Ok(store) => store,
            Err(e) => {
                unreachable.get_or_insert(e);
                continue;
            }
        };
        match store.read(instance, digest, offset, limit).await {
            Ok(stream) => {
                if !lacking.is_empty() {
                    spawn_read_repair(inner, instance, digest, store, lacking);
                }
                return Ok(stream);
            }
            Err(e) if e.code() == Code::NotFound => {
                if rank < k {
                    lacking.push((*holder).clone());
                }
            }
            // The holder has it and says the range is wrong.
            Err(e) if e.code() == Code::OutOfRange => return Err(e),
            Err(e) => {
                tracing::debug!(member = %holder.id, %digest, error = %e, "cluster CAS read failed; trying the next member");
                unreachable.get_or_insert(e);
            }
        }
    }
    match unreachable {
        Some(e) => Err(Error::unavailable(format!(
            "blob {digest} was not found on the reachable members of the cluster CAS, and some could not be asked: {e}"
        ))),
        None if placement.is_empty() => Err(Error::unavailable(
            "the cluster CAS has no members: no worker with replica space is linked",
        )),
        None => Err(Error::not_found(format!(
            "blob {digest} is not in the cluster CAS ({} members asked)",
            placement.len()
        ))),
    }
}

/// Copies the blob from `source` to each holder in `targets`, unless too
/// many repairs already run.
fn spawn_read_repair(
    inner: &Inner,
    instance: &str,
    digest: &Digest,
    source: Arc<dyn BlobStore>,
    targets: Vec<Holder>,
) {
    let Ok(permit) = inner.read_repairs.clone().try_acquire_owned() else {
        tracing::debug!(%digest, "read repair skipped: enough are running");
        return;
    };
    let stores: Vec<(Holder, Arc<dyn BlobStore>)> = targets
        .into_iter()
        .filter_map(|h| inner.store_of(&h).ok().map(|s| (h, s)))
        .collect();
    let (instance, digest) = (instance.to_string(), *digest);
    tokio::spawn(async move {
        let _permit = permit;
        for (holder, target) in stores {
            match copy_blob(source.as_ref(), target.as_ref(), &instance, &digest).await {
                Ok(()) => {
                    tracing::debug!(%digest, member = %holder.id, "read repair: copied blob to its holder")
                }
                Err(e) => {
                    tracing::warn!(%digest, member = %holder.id, error = %e, "read repair failed")
                }
            }
        }
    });
}

/// Streams one blob from `source` into `target`; the target verifies it.
pub(crate) async fn copy_blob(
    source: &dyn BlobStore,
    target: &dyn BlobStore,
    instance: &str,
    digest: &Digest,
) -> Result<()> {
    if digest.size() <= SMALL_BLOB_LIMIT {
        let data = source.get(instance, digest).await?;
        return target.put(instance, digest, data).await;
    }
    let mut chunks = source.read(instance, digest, 0, None).await?;
    let mut writer = target.begin_write(instance, digest).await?;
    while let Some(chunk) = chunks.next().await {
        writer.write(chunk?).await?;
    }
    writer
        .commit()
        .await
        .context("copying a blob between members")
}
