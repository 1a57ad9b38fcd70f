//! Rendezvous (highest-random-weight) hashing: every process that knows the
//! same members ranks them the same way for a key, with no shared state,
//! and a change of membership moves only the keys whose top members
//! changed (about 1/N of them when one of N members comes or goes).
//!
//! Used to pick an action's home scheduler (the top one), and the replica
//! holders of blobs and action-cache entries (the top k).
//!
//! Scores must be equal in every process and every version of the
//! service, so the hash is spelled out here (FNV-1a and the SplitMix64
//! finalizer) rather than taken from a hasher whose output may change.

use crate::digest::Digest;

/// A key's position in hash space: computed once, ranked against many
/// members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacementKey(u64);

impl PlacementKey {
    /// The key of a blob, action or action-cache entry of an instance.
    pub fn for_digest(instance: &str, digest: &Digest) -> Self {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&digest.hash()[..8]);
        PlacementKey(mix(fnv1a(instance.as_bytes()) ^ u64::from_le_bytes(prefix)))
    }

    pub fn for_bytes(bytes: &[u8]) -> Self {
        PlacementKey(mix(fnv1a(bytes)))
    }

    /// The weight of `member` (its [`member_hash`]) for this key.
    pub fn score(self, member: u64) -> u64 {
        mix(self.0 ^ member)
    }
}

/// A member's fixed part of every score; compute once per member.
pub fn member_hash(id: &str) -> u64 {
    mix(fnv1a(id.as_bytes()).wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// `members` (with their [`member_hash`]) ordered from the highest score for
/// `key` down. Ties, which need a 64-bit collision, fall back to the order
/// given.
pub fn rank<T: Clone>(key: PlacementKey, members: &[(u64, T)]) -> Vec<T> {
    let mut scored: Vec<(u64, usize)> = members
        .iter()
        .enumerate()
        .map(|(i, (hash, _))| (key.score(*hash), i))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    scored
        .into_iter()
        .map(|(_, i)| members[i].1.clone())
        .collect()
}

/// The member with the highest score for `key`.
pub fn top<T: Clone>(key: PlacementKey, members: &[(u64, T)]) -> Option<T> {
    members
        .iter()
        .enumerate()
        .max_by(|(ia, a), (ib, b)| key.score(a.0).cmp(&key.score(b.0)).then(ib.cmp(ia)))
        .map(|(_, (_, member))| member.clone())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer: every input bit affects every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<(u64, String)> {
        (0..n)
            .map(|i| {
                let id = format!("member-{i}");
                (member_hash(&id), id)
            })
            .collect()
    }

    fn keys(n: usize) -> Vec<PlacementKey> {
        (0..n)
            .map(|i| PlacementKey::for_digest("", &Digest::of_bytes(format!("{i}").as_bytes())))
            .collect()
    }

    #[test]
    fn top_is_the_first_of_the_ranking() {
        let members = members(7);
        for key in keys(200) {
            assert_eq!(top(key, &members), rank(key, &members).first().cloned());
        }
        assert_eq!(top::<String>(keys(1)[0], &[]), None);
    }

    #[test]
    fn load_is_spread_evenly() {
        let members = members(5);
        let mut counts = std::collections::HashMap::new();
        for key in keys(10_000) {
            *counts.entry(top(key, &members).unwrap()).or_insert(0) += 1;
        }
        for (member, count) in counts {
            assert!(
                (1_700..2_300).contains(&count),
                "{member}: {count} of 10000"
            );
        }
    }

    #[test]
    fn adding_a_member_moves_about_one_in_n_keys() {
        let before = members(9);
        let after = members(10);
        let keys = keys(10_000);
        let moved = keys
            .iter()
            .filter(|key| top(**key, &before) != top(**key, &after))
            .count();
        // Expected 1/10; every moved key moved to the new member.
        assert!((800..1_200).contains(&moved), "{moved} of 10000 moved");
        for key in &keys {
            let now = top(*key, &after).unwrap();
            if top(*key, &before).unwrap() != now {
                assert_eq!(now, "member-9");
            }
        }
    }

    #[test]
    fn instances_place_the_same_digest_independently() {
        let members = members(16);
        let digest = Digest::of_bytes(b"same");
        let spots: std::collections::HashSet<String> = (0..50)
            .map(|i| {
                top(
                    PlacementKey::for_digest(&format!("i{i}"), &digest),
                    &members,
                )
                .unwrap()
            })
            .collect();
        assert!(spots.len() > 5, "{spots:?}");
    }

    #[test]
    fn scores_are_fixed_across_versions() {
        // Every process of a cluster must rank alike: a change here would
        // split a cluster running two versions. Update only on purpose.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(mix(1), 0x5692_161d_100b_05e5);
    }
}
