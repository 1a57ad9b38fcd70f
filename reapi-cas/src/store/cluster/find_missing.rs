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
use reapi_core::digest::missing_in_order;
use reapi_core::{Digest, Result};

use super::Inner;

/// What one member is asked: its digests, and where each sits in the
/// request (a digest asked twice is asked twice: no hashing to dedupe).
#[derive(Default)]
struct Share {
    digests: Vec<Digest>,
    positions: Vec<usize>,
}

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
    let mut shares: Vec<Share> = (0..placement.len()).map(|_| Share::default()).collect();
    let mut top = Vec::with_capacity(k);
    for (position, digest) in digests.iter().enumerate() {
        if digest.is_empty_blob() {
            continue;
        }
        placement.top_indices(instance, digest, k, &mut top);
        for &member in &top {
            shares[member].digests.push(*digest);
            shares[member].positions.push(position);
        }
    }
    let queries = shares
        .iter()
        .enumerate()
        .filter(|(_, share)| !share.digests.is_empty())
        .map(|(member, share)| {
            let holder = &placement.holders()[member];
            async move {
                let answer = match inner.store_of(holder) {
                    Ok(store) => store.find_missing(instance, &share.digests).await,
                    Err(e) => Err(e),
                };
                (member, answer)
            }
        });
    let mut present = vec![false; digests.len()];
    for (member, answer) in join_all(queries).await {
        let share = &shares[member];
        match answer {
            Ok(missing) => match missing_in_order(&share.digests, &missing) {
                Some(marks) => {
                    for (&position, lacks) in share.positions.iter().zip(marks) {
                        present[position] |= !lacks;
                    }
                }
                // A member that reorders its answer is matched by lookup.
                None => {
                    let missing: HashSet<&Digest> = missing.iter().collect();
                    for (position, digest) in share.positions.iter().zip(&share.digests) {
                        present[*position] |= !missing.contains(digest);
                    }
                }
            },
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
        .zip(present)
        .filter(|(digest, present)| !digest.is_empty_blob() && !present)
        .map(|(digest, _)| *digest)
        .collect())
}
