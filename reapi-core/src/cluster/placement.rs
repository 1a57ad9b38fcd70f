//! Where blobs live in the cluster CAS: the live workers with replica
//! space, ranked per blob by rendezvous hashing ([`super::rendezvous`]).
//! The top `replica_count` are a blob's holders; the rest are where a
//! reader looks next (a blob can sit off its place after membership
//! changed, until repair moves it).
//!
//! Every process builds its `Placement` from the same member list (the
//! schedulers send it to every worker), so they agree on holders without
//! a location index. A `Placement` is immutable: a membership change
//! publishes a new one through a [`tokio::sync::watch`] channel.

use std::sync::Arc;

use tokio::sync::watch;

use super::messages::StorageMember;
use super::rendezvous::{member_hash, PlacementKey};
use crate::digest::Digest;

/// A worker that holds replicas.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Holder {
    pub id: Arc<str>,
    pub address: Arc<str>,
    hash: u64,
}

/// The cluster CAS's members at one moment, with their placement hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Sorted by id, one entry per id.
    holders: Vec<Holder>,
}

/// How placements are published and followed.
pub type PlacementSender = watch::Sender<Arc<Placement>>;
pub type PlacementReceiver = watch::Receiver<Arc<Placement>>;

/// A channel holding an empty placement, for a process that learns its
/// members later.
pub fn placement_channel() -> (PlacementSender, PlacementReceiver) {
    watch::channel(Arc::new(Placement::default()))
}

/// Publishes `placement` on `sender` unless it holds an equal one, and
/// logs the new members as `what`. Returns whether it changed.
pub fn publish(sender: &PlacementSender, placement: Placement, what: &str) -> bool {
    sender.send_if_modified(|current| {
        if **current == placement {
            return false;
        }
        let ids: Vec<&str> = placement.holders.iter().map(|h| h.id.as_ref()).collect();
        tracing::info!(members = placement.len(), "{what}: {}", ids.join(", "));
        *current = Arc::new(placement);
        true
    })
}

impl Placement {
    /// The placement over `members`; duplicates of an id keep the first
    /// address, members without an id or address are left out.
    pub fn new<'a>(members: impl IntoIterator<Item = &'a StorageMember>) -> Placement {
        let mut holders: Vec<Holder> = members
            .into_iter()
            .filter(|m| !m.worker_id.is_empty() && !m.address.is_empty())
            .map(|m| Holder {
                id: Arc::from(m.worker_id.as_str()),
                address: Arc::from(m.address.as_str()),
                hash: member_hash(&m.worker_id),
            })
            .collect();
        holders.sort_by(|a, b| a.id.cmp(&b.id));
        holders.dedup_by(|b, a| a.id == b.id);
        Placement { holders }
    }

    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }

    pub fn holders(&self) -> &[Holder] {
        &self.holders
    }

    pub fn contains(&self, id: &str) -> bool {
        self.holders
            .binary_search_by(|h| h.id.as_ref().cmp(id))
            .is_ok()
    }

    /// This placement without member `id` (a worker handing off its share
    /// before it leaves).
    pub fn without(&self, id: &str) -> Placement {
        Placement {
            holders: self
                .holders
                .iter()
                .filter(|h| &*h.id != id)
                .cloned()
                .collect(),
        }
    }

    /// The members as the protocol sends them.
    pub fn members(&self) -> Vec<StorageMember> {
        self.holders
            .iter()
            .map(|h| StorageMember {
                worker_id: h.id.to_string(),
                address: h.address.to_string(),
            })
            .collect()
    }

    /// Every member, best holder of the blob first.
    pub fn ranked(&self, instance: &str, digest: &Digest) -> Vec<&Holder> {
        let key = PlacementKey::for_digest(instance, digest);
        let mut scored: Vec<(u64, &Holder)> = self
            .holders
            .iter()
            .map(|h| (key.score(h.hash), h))
            .collect();
        // Ids are unique and sorted, so equal scores keep a stable order.
        scored.sort_by_key(|s| std::cmp::Reverse(s.0));
        scored.into_iter().map(|(_, h)| h).collect()
    }

    /// Indices (into [`Placement::holders`]) of the blob's top `k`
    /// holders, best first, without ranking the rest: for batched
    /// lookups over many digests.
    pub fn top_indices(&self, instance: &str, digest: &Digest, k: usize, out: &mut Vec<usize>) {
        out.clear();
        let key = PlacementKey::for_digest(instance, digest);
        let mut best: Vec<(u64, usize)> = Vec::with_capacity(k + 1);
        for (i, h) in self.holders.iter().enumerate() {
            let score = key.score(h.hash);
            if best.len() == k && best.last().is_some_and(|(s, _)| *s >= score) {
                continue;
            }
            let at = best.partition_point(|(s, _)| *s >= score);
            best.insert(at, (score, i));
            best.truncate(k);
        }
        out.extend(best.into_iter().map(|(_, i)| i));
    }

    /// How many copies a blob must have: `replica_count`, or every member
    /// when there are fewer.
    pub fn copies_wanted(&self, replica_count: usize) -> usize {
        replica_count.min(self.holders.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<StorageMember> {
        (0..n)
            .map(|i| StorageMember {
                worker_id: format!("worker-{i}"),
                address: format!("127.0.0.1:{}", 9000 + i),
            })
            .collect()
    }

    fn digests(n: u32) -> Vec<Digest> {
        (0..n).map(|i| Digest::of_bytes(&i.to_le_bytes())).collect()
    }

    fn top_ids(p: &Placement, d: &Digest, k: usize) -> Vec<String> {
        p.ranked("", d)
            .into_iter()
            .take(k)
            .map(|h| h.id.to_string())
            .collect()
    }

    #[test]
    fn top_indices_agree_with_the_full_ranking() {
        let p = Placement::new(&members(7));
        let mut out = Vec::new();
        for d in digests(500) {
            p.top_indices("", &d, 3, &mut out);
            let fast: Vec<String> = out.iter().map(|i| p.holders()[*i].id.to_string()).collect();
            assert_eq!(fast, top_ids(&p, &d, 3));
        }
    }

    #[test]
    fn member_order_and_duplicates_do_not_change_placement() {
        let mut list = members(5);
        let a = Placement::new(&list);
        list.reverse();
        list.push(list[0].clone());
        let b = Placement::new(&list);
        assert_eq!(a, b);
        assert_eq!(b.len(), 5);
        assert!(b.contains("worker-3") && !b.contains("worker-9"));
    }

    /// Adding one worker to N moves about 1/N of each blob's holder slots,
    /// and only onto the new worker; removing one moves only the slots it
    /// held.
    #[test]
    fn membership_change_moves_about_one_nth() {
        let blobs = digests(20_000);
        let (n, k) = (5usize, 3usize);
        let before = Placement::new(&members(n));
        let after = Placement::new(&members(n + 1));
        let mut moved = 0usize;
        for d in &blobs {
            let old = top_ids(&before, d, k);
            let new = top_ids(&after, d, k);
            for id in &new {
                if !old.contains(id) {
                    assert_eq!(
                        id,
                        &format!("worker-{n}"),
                        "a slot moved between old members"
                    );
                    moved += 1;
                }
            }
        }
        // Expected share of slots that move: k / (n + 1) of all k slots,
        // i.e. 1/(n+1) of them.
        let share = moved as f64 / (blobs.len() * k) as f64;
        let expected = 1.0 / (n + 1) as f64;
        assert!(
            (share - expected).abs() < 0.02,
            "moved {share:.3} of slots, expected about {expected:.3}"
        );

        // A worker leaves: the survivors that held a blob still do.
        let mut fewer = members(n);
        fewer.remove(2);
        let fewer = Placement::new(&fewer);
        for d in &blobs {
            let old = top_ids(&before, d, k);
            let new = top_ids(&fewer, d, k);
            for id in old.iter().filter(|id| id.as_str() != "worker-2") {
                assert!(new.contains(id), "{id} lost its slot for {d}");
            }
        }
    }

    #[test]
    fn copies_wanted_is_capped_by_the_members() {
        assert_eq!(Placement::new(&members(2)).copies_wanted(3), 2);
        assert_eq!(Placement::new(&members(5)).copies_wanted(3), 3);
        assert_eq!(Placement::default().copies_wanted(3), 0);
    }
}
