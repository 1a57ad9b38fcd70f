//! The in-memory index: which blobs are on disk, their sizes, and when each
//! was last used.
//!
//! Compact and sharded. An entry is 44 bytes (a 40-byte [`Key`] holding the
//! hash, a 47-bit size, the digest function's bit and a 16-bit instance id,
//! plus a 32-bit tick), kept in
//! one of [`SHARDS`] `HashMap`s, each behind its own mutex and selected by a
//! hash byte that the map's own hasher does not use. Hashes are SHA-256 or
//! BLAKE3 of verified content, so the map hashes with the first 8 hash bytes directly
//! (lookups of arbitrary client digests only probe; inserts are verified).
//! Each slot costs 45 bytes (entry plus control byte) and tables are 44 % to
//! 87 % full, so 51 to 103 bytes per blob; 94.4 at 1 M blobs (measured by
//! `index_bytes_per_blob`). The limits that buy this: 65 536 instance names
//! and blobs under 128 TiB per store.
//!
//! A request takes one tick (`find_missing` one per batch).
//! Ages are 32-bit ticks of a global 64-bit clock that advances once per
//! access, compared with wrapping arithmetic. Every 2^29 ticks a sweep
//! clamps ages above 2^30 to 2^30, so real ages stay below 2^31 and a tick
//! from after a snapshot of the clock (a negative age) is recognisable.
//! The price: blobs unused for over 2^30 accesses tie for oldest.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use reapi_core::digest::{Digest, DigestFunction, HASH_LEN};

use super::instances::InstanceId;

/// Number of index shards; a power of two.
pub(super) const SHARDS: usize = 64;
/// Index byte that selects the shard (the map's hasher uses bytes 0..8).
const SHARD_BYTE: usize = 8;

/// A last-use time: the low 32 bits of the index clock.
pub(super) type Tick = u32;

/// Ages at or above this are ticks taken after the clock was read.
const FUTURE_AGE: u32 = 1 << 31;
/// Ages are clamped to this by the periodic sweep.
const MAX_AGE: u32 = 1 << 30;
/// How often (in ticks) the sweep runs.
const SWEEP_EVERY: u64 = 1 << 29;
/// Ages are grouped by `age >> AGE_BUCKET_SHIFT` when choosing victims.
const AGE_BUCKET_SHIFT: u32 = 15;

/// Identifies a stored blob: instance and digest, packed into 40 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Key {
    hash: [u8; HASH_LEN],
    size_lo: u32,
    /// The size's bits 32 to 46, and [`BLAKE3_BIT`] for a BLAKE3 digest.
    size_hi: u16,
    instance: InstanceId,
}

/// The bit of `Key::size_hi` that marks a BLAKE3 digest: the function is
/// part of a blob's identity, and the hash alone does not say it.
const BLAKE3_BIT: u16 = 1 << 15;

impl Key {
    /// The largest blob size a key can hold (128 TiB).
    pub(super) const MAX_SIZE: u64 = (1 << 47) - 1;

    /// `None` when the size does not fit in 48 bits: such a blob is never
    /// stored.
    pub(super) fn new(instance: InstanceId, digest: &Digest) -> Option<Key> {
        let size = digest.size();
        if size > Self::MAX_SIZE {
            return None;
        }
        let function_bit = match digest.function() {
            DigestFunction::Sha256 => 0,
            DigestFunction::Blake3 => BLAKE3_BIT,
        };
        Some(Key {
            hash: *digest.hash(),
            size_lo: size as u32,
            size_hi: (size >> 32) as u16 | function_bit,
            instance,
        })
    }

    pub(super) fn size(&self) -> u64 {
        u64::from(self.size_lo) | (u64::from(self.size_hi & !BLAKE3_BIT) << 32)
    }

    fn function(&self) -> DigestFunction {
        if self.size_hi & BLAKE3_BIT == 0 {
            DigestFunction::Sha256
        } else {
            DigestFunction::Blake3
        }
    }

    pub(super) fn instance(&self) -> InstanceId {
        self.instance
    }

    pub(super) fn digest(&self) -> Digest {
        Digest::new(self.function(), self.hash, self.size())
    }

    fn shard(&self) -> usize {
        usize::from(self.hash[SHARD_BYTE]) & (SHARDS - 1)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.hash[..8]);
        state.write_u64(u64::from_le_bytes(head) ^ u64::from(self.instance));
    }
}

/// Passes [`Key`]'s pre-mixed value through; hashes anything else with FNV-1a.
#[derive(Clone, Copy, Default)]
pub(super) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0 ^ 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn write_u64(&mut self, value: u64) {
        self.0 ^= value;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[derive(Clone, Copy, Default)]
pub(super) struct BuildKeyHasher;

impl BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

type Map = HashMap<Key, Tick, BuildKeyHasher>;

#[derive(Default)]
struct Shard {
    map: Map,
    /// Blobs between their insertion and the end of the commit that
    /// inserted them: never evicted. Almost always empty.
    pinned: Vec<Key>,
}

/// What [`Index::insert_with`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Inserted {
    /// The blob was new; it is pinned until [`Index::unpin`].
    New,
    /// The blob was already there; its age was refreshed.
    AlreadyPresent,
}

/// An eviction candidate.
#[derive(Clone, Copy, Debug)]
pub(super) struct Victim {
    pub(super) key: Key,
    tick: Tick,
    age: u32,
}

pub(super) struct Index {
    shards: Box<[Mutex<Shard>]>,
    clock: AtomicU64,
    used_bytes: AtomicU64,
    count: AtomicU64,
}

fn age(now: Tick, tick: Tick) -> Option<u32> {
    let age = now.wrapping_sub(tick);
    (age < FUTURE_AGE).then_some(age)
}

impl Index {
    pub(super) fn new() -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            clock: AtomicU64::new(0),
            used_bytes: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Fills an empty index from a directory scan. `entries` must be in
    /// least-recently-used-first order and hold no duplicates.
    pub(super) fn load(&self, entries: &[Key]) {
        let mut per_shard = [0usize; SHARDS];
        for key in entries {
            per_shard[key.shard()] += 1;
        }
        for (shard, n) in self.shards.iter().zip(per_shard) {
            shard.lock().map.reserve(n);
        }
        let mut bytes = 0u64;
        for (i, key) in entries.iter().enumerate() {
            self.shards[key.shard()].lock().map.insert(*key, i as Tick);
            bytes += key.size();
        }
        self.clock.store(entries.len() as u64, Ordering::Relaxed);
        self.used_bytes.store(bytes, Ordering::Relaxed);
        self.count.store(entries.len() as u64, Ordering::Relaxed);
    }

    /// Takes a fresh tick; one per request is enough (a batch shares one).
    pub(super) fn tick(&self) -> Tick {
        let t = self.clock.fetch_add(1, Ordering::Relaxed);
        if t % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.clamp_ages();
        }
        t as Tick
    }

    fn now(&self) -> Tick {
        self.clock() as Tick
    }

    /// The whole clock: the next tick to be taken.
    pub(super) fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    /// Keeps every age below [`MAX_AGE`] (see the module comment).
    fn clamp_ages(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let now = self.now();
            let floor = now.wrapping_sub(MAX_AGE);
            for tick in shard.map.values_mut() {
                if age(now, *tick).is_some_and(|a| a > MAX_AGE) {
                    *tick = floor;
                }
            }
        }
    }

    /// Whether the blob is present, refreshing its age when it is.
    pub(super) fn touch(&self, key: &Key, tick: Tick) -> bool {
        let mut shard = self.shards[key.shard()].lock();
        match shard.map.get_mut(key) {
            Some(t) => {
                *t = tick;
                true
            }
            None => false,
        }
    }

    /// Inserts a blob unless present. `install` runs under the shard lock
    /// only when the blob is absent (it renames the content file into
    /// place), so it is ordered with evictions of the same blob.
    pub(super) fn insert_with<E>(
        &self,
        key: &Key,
        tick: Tick,
        install: impl FnOnce() -> Result<(), E>,
    ) -> Result<Inserted, E> {
        let mut shard = self.shards[key.shard()].lock();
        if let Some(t) = shard.map.get_mut(key) {
            *t = tick;
            return Ok(Inserted::AlreadyPresent);
        }
        install()?;
        shard.map.insert(*key, tick);
        shard.pinned.push(*key);
        self.used_bytes.fetch_add(key.size(), Ordering::AcqRel);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(Inserted::New)
    }

    /// Ends the protection of a blob inserted by [`Index::insert_with`].
    pub(super) fn unpin(&self, key: &Key) {
        let mut shard = self.shards[key.shard()].lock();
        if let Some(i) = shard.pinned.iter().position(|k| k == key) {
            shard.pinned.swap_remove(i);
        }
    }

    /// Forgets a blob whatever its age if `check` (run under the shard lock,
    /// so no write of the same blob can interleave) says so. Returns
    /// whether it was forgotten.
    pub(super) fn remove_if(&self, key: &Key, check: impl FnOnce() -> bool) -> bool {
        let mut shard = self.shards[key.shard()].lock();
        if !shard.map.contains_key(key) || !check() {
            return false;
        }
        shard.map.remove(key);
        self.used_bytes.fetch_sub(key.size(), Ordering::AcqRel);
        self.count.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Evicts a victim if it was not used since it was chosen and is not
    /// pinned; `delete` runs under the shard lock. Returns the bytes freed.
    pub(super) fn evict_with(&self, victim: &Victim, delete: impl FnOnce()) -> Option<u64> {
        let mut shard = self.shards[victim.key.shard()].lock();
        if shard.map.get(&victim.key) != Some(&victim.tick) || shard.pinned.contains(&victim.key) {
            return None;
        }
        shard.map.remove(&victim.key);
        delete();
        let size = victim.key.size();
        self.used_bytes.fetch_sub(size, Ordering::AcqRel);
        self.count.fetch_sub(1, Ordering::Relaxed);
        Some(size)
    }

    /// The least recently used unpinned blobs holding at least `need`
    /// bytes (fewer when the index holds less), oldest first. With
    /// `protected_since`, blobs whose tick is at or after that clock value
    /// (see `retention.rs`) are never chosen.
    ///
    /// Two passes with bounded memory: a histogram of bytes by age bucket
    /// finds the youngest bucket that must go, then the entries at least
    /// that old are collected and sorted.
    pub(super) fn select_victims(&self, need: u64, protected_since: Option<u64>) -> Vec<Victim> {
        let clock = self.clock();
        let now = clock as Tick;
        // A tick at or after `since` has an age of at most `clock - since`.
        // Clamped ages only ever get younger, so clamping never uncovers a
        // protected blob; an age window of 2^31 or more protects them all.
        let min_age = protected_since.map_or(0, |since| {
            u32::try_from(clock.saturating_sub(since))
                .map_or(u32::MAX, |protected| protected.saturating_add(1))
        });
        let mut histogram = vec![0u64; (FUTURE_AGE >> AGE_BUCKET_SHIFT) as usize];
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (key, &tick) in &shard.map {
                if let Some(a) = age(now, tick).filter(|&a| a >= min_age) {
                    if !shard.pinned.contains(key) {
                        histogram[(a >> AGE_BUCKET_SHIFT) as usize] += key.size();
                    }
                }
            }
        }
        let mut bytes = 0u64;
        let mut threshold = 0usize;
        for (bucket, &b) in histogram.iter().enumerate().rev() {
            bytes += b;
            if bytes >= need {
                threshold = bucket;
                break;
            }
        }
        drop(histogram);

        let mut victims = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for (key, &tick) in &shard.map {
                if let Some(a) = age(now, tick).filter(|&a| a >= min_age) {
                    if (a >> AGE_BUCKET_SHIFT) as usize >= threshold && !shard.pinned.contains(key)
                    {
                        victims.push(Victim {
                            key: *key,
                            tick,
                            age: a,
                        });
                    }
                }
            }
        }
        victims.sort_unstable_by_key(|v| std::cmp::Reverse(v.age));
        let mut bytes = 0u64;
        let keep = victims
            .iter()
            .position(|v| {
                bytes += v.key.size();
                bytes >= need
            })
            .map_or(victims.len(), |i| i + 1);
        victims.truncate(keep);
        victims
    }

    /// Every stored blob's key, shard by shard (a snapshot: blobs may come
    /// and go meanwhile).
    pub(super) fn keys(&self) -> Vec<Key> {
        let mut keys = Vec::with_capacity(usize::try_from(self.count()).unwrap_or(0));
        for shard in self.shards.iter() {
            keys.extend(shard.lock().map.keys().copied());
        }
        keys
    }

    pub(super) fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Acquire)
    }

    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Bytes allocated by the shard maps (buckets plus control bytes).
    pub(super) fn allocated_bytes(&self) -> usize {
        let bucket = std::mem::size_of::<(Key, Tick)>() + 1;
        self.shards
            .iter()
            .map(|s| {
                let cap = s.lock().map.capacity();
                if cap == 0 {
                    0
                } else {
                    // hashbrown: capacity is 7/8 of a power-of-two bucket
                    // count (or buckets - 1 for tiny tables).
                    let buckets = (cap * 8 / 7).next_power_of_two();
                    buckets * bucket + 16
                }
            })
            .sum()
    }

    #[cfg(test)]
    pub(super) fn set_clock(&self, value: u64) {
        self.clock.store(value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32, size: u64) -> Key {
        let d = Digest::of_bytes(&n.to_le_bytes());
        Key::new(0, &Digest::new(DigestFunction::Sha256, *d.hash(), size)).unwrap()
    }

    #[test]
    fn entries_are_compact() {
        assert_eq!(std::mem::size_of::<Key>(), 40);
        assert_eq!(std::mem::size_of::<(Key, Tick)>(), 44);
    }

    #[test]
    fn key_round_trips_digest_and_instance() {
        let d = Digest::new(
            DigestFunction::Sha256,
            *Digest::of_bytes(b"x").hash(),
            Key::MAX_SIZE,
        );
        let k = Key::new(7, &d).unwrap();
        assert_eq!(k.digest(), d);
        assert_eq!(k.instance(), 7);
        assert!(Key::new(
            0,
            &Digest::new(DigestFunction::Sha256, *d.hash(), Key::MAX_SIZE + 1)
        )
        .is_none());
        assert_ne!(Key::new(1, &d), Key::new(2, &d));
        let blake = Digest::new(DigestFunction::Blake3, *d.hash(), Key::MAX_SIZE);
        let kb = Key::new(7, &blake).unwrap();
        assert_eq!(kb.digest(), blake);
        assert_eq!(kb.size(), Key::MAX_SIZE);
        assert_ne!(kb, k, "one hash under two functions is two blobs");
    }

    #[test]
    fn victims_are_oldest_first_and_cover_need() {
        let index = Index::new();
        let keys: Vec<Key> = (0..100).map(|n| key(n, 10)).collect();
        index.load(&keys);
        // Touch the five oldest: they become the youngest.
        for k in &keys[..5] {
            let t = index.tick();
            assert!(index.touch(k, t));
        }
        let victims = index.select_victims(25, None);
        let got: Vec<Key> = victims.iter().map(|v| v.key).collect();
        assert_eq!(got, keys[5..8].to_vec());
        assert_eq!(index.select_victims(100_000, None).len(), 100);
    }

    #[test]
    fn pinned_and_refreshed_blobs_are_not_evicted() {
        let index = Index::new();
        let a = key(1, 10);
        let b = key(2, 10);
        let t = index.tick();
        assert_eq!(index.insert_with::<()>(&a, t, || Ok(())), Ok(Inserted::New));
        let t = index.tick();
        assert_eq!(index.insert_with::<()>(&b, t, || Ok(())), Ok(Inserted::New));
        assert_eq!(
            index.insert_with::<()>(&b, t, || panic!("must not reinstall")),
            Ok(Inserted::AlreadyPresent)
        );
        assert!(index.select_victims(10, None).is_empty());
        index.unpin(&a);
        let victims = index.select_victims(10, None);
        assert_eq!(victims.len(), 1);
        assert_eq!(victims[0].key, a);
        let t = index.tick();
        index.touch(&a, t);
        assert_eq!(index.evict_with(&victims[0], || panic!("refreshed")), None);
        let victims = index.select_victims(10, None);
        assert_eq!(index.evict_with(&victims[0], || ()), Some(10));
        assert_eq!(index.used_bytes(), 10);
        assert_eq!(index.count(), 1);
    }

    #[test]
    fn ages_survive_clock_wrap_and_clamping() {
        let index = Index::new();
        index.set_clock(u64::from(u32::MAX) - 2);
        let keys: Vec<Key> = (0..6).map(|n| key(n, 1)).collect();
        for k in &keys {
            let t = index.tick();
            index.insert_with::<()>(k, t, || Ok(())).unwrap();
            index.unpin(k);
        }
        let order: Vec<Key> = index
            .select_victims(6, None)
            .iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(order, keys);

        // Far in the future, every age is clamped and ties; a new blob is
        // still younger than all of them.
        let young = key(99, 1);
        index.set_clock(u64::from(u32::MAX) + 3 * SWEEP_EVERY - 1);
        index.tick(); // runs the sweep
        let t = index.tick();
        index.insert_with::<()>(&young, t, || Ok(())).unwrap();
        index.unpin(&young);
        let order: Vec<Key> = index
            .select_victims(7, None)
            .iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(order.len(), 7);
        assert_eq!(order[6], young);
    }

    #[test]
    fn protected_blobs_are_never_victims_even_across_the_wrap() {
        let index = Index::new();
        // Ticks wrap from u32::MAX to 0 in the middle of these inserts.
        index.set_clock(u64::from(u32::MAX) - 4);
        let keys: Vec<Key> = (0..10).map(|n| key(n, 10)).collect();
        let mut since = 0;
        for (i, k) in keys.iter().enumerate() {
            if i == 6 {
                since = index.clock();
            }
            let t = index.tick();
            index.insert_with::<()>(k, t, || Ok(())).unwrap();
            index.unpin(k);
        }
        // Blobs 6.. took their ticks at or after `since`: only 0..6 go.
        let victims: Vec<Key> = index
            .select_victims(1000, Some(since))
            .iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(victims, keys[..6].to_vec());
        // Protection covers a blob touched again, in LRU order otherwise.
        let t = index.tick();
        index.touch(&keys[0], t);
        let victims: Vec<Key> = index
            .select_victims(30, Some(since))
            .iter()
            .map(|v| v.key)
            .collect();
        assert_eq!(victims, keys[1..4].to_vec());
        // Protecting from the current clock protects no tick taken before.
        assert_eq!(index.select_victims(1000, Some(index.clock())).len(), 10);
        // A window reaching back past the whole age range protects all.
        assert!(index.select_victims(1000, Some(0)).is_empty());
        let long_ago = index.clock() - (1 << 31);
        assert!(index.select_victims(1000, Some(long_ago)).is_empty());
        assert_eq!(index.select_victims(1000, None).len(), 10);
    }

    /// Index memory per blob at 1 M blobs. Run with
    /// `cargo test -p reapi-cas --release -- --ignored --nocapture index_bytes_per_blob`.
    #[test]
    #[ignore]
    fn index_bytes_per_blob() {
        fn rss() -> usize {
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
            let pages: usize = statm
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            pages * 4096
        }
        const N: u32 = 1_000_000;
        let before = rss();
        let index = Index::new();
        for n in 0..N {
            let t = index.tick();
            let k = key(n, 100);
            index.insert_with::<()>(&k, t, || Ok(())).unwrap();
            index.unpin(&k);
        }
        let after = rss();
        let computed = index.allocated_bytes() as f64 / f64::from(N);
        let measured = (after - before) as f64 / f64::from(N);
        println!(
            "index of {N} blobs: {computed:.1} bytes/blob allocated by the maps, \
             {measured:.1} bytes/blob RSS growth"
        );
        assert!(computed < 100.0, "{computed}");
    }
}
