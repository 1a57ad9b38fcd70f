//! FindMissingBlobs over the cluster: each digest is asked of its holders
//! only, one batched request per member, all members in parallel. A blob
//! is present when any of its holders has it (that holder also refreshes
//! its age, which is what protects it from eviction).
//!
//! A member that cannot answer counts as not having its digests: the
//! client uploads them again, which costs bandwidth but never loses a
//! blob. A blob sitting off its place (membership changed and repair has
//! not moved it yet) is reported missing for the same reason.

use std::collections::HashSet;

use futures::future::join_all;
use reapi_core::{Digest, Result};

use super::Inner;

pub(super) async fn find_missing(
    inner: &Inner,
    instance: &str,
    digests: &[Digest],
) -> Result<Vec<Digest>> {
    let placement = inner.placement();
    let k = placement.copies_wanted(inner.replica_count);
    if k == 0 {
        return Ok(digests
            .iter()
            .filter(|d| !d.is_empty_blob())
            .copied()
            .collect());
    }
    let mut asked: HashSet<Digest> = HashSet::with_capacity(digests.len());
    let mut per_member: Vec<Vec<Digest>> = vec![Vec::new(); placement.len()];
    let mut top = Vec::with_capacity(k);
    for digest in digests {
        if digest.is_empty_blob() || !asked.insert(*digest) {
            continue;
        }
        placement.top_indices(instance, digest, k, &mut top);
        for &member in &top {
            per_member[member].push(*digest);
        }
    }
    let queries = per_member
        .iter()
        .enumerate()
        .filter(|(_, list)| !list.is_empty())
        .map(|(member, list)| {
            let holder = &placement.holders()[member];
            async move {
                let store = inner.store_of(holder)?;
                let missing = store.find_missing(instance, list).await?;
                Ok::<_, reapi_core::Error>((member, missing))
            }
        });
    let mut present: HashSet<Digest> = HashSet::with_capacity(asked.len());
    for (member, answer) in per_member
        .iter()
        .enumerate()
        .filter(|(_, list)| !list.is_empty())
        .map(|(member, _)| member)
        .zip(join_all(queries).await)
    {
        match answer {
            Ok((_, missing)) => {
                let missing: HashSet<&Digest> = missing.iter().collect();
                present.extend(per_member[member].iter().filter(|d| !missing.contains(d)));
            }
            Err(e) => {
                tracing::warn!(
                    member = %placement.holders()[member].id,
                    error = %e,
                    "cluster CAS member did not answer FindMissingBlobs; its blobs count as missing"
                );
            }
        }
    }
    Ok(digests
        .iter()
        .filter(|d| !d.is_empty_blob() && !present.contains(d))
        .copied()
        .collect())
}
