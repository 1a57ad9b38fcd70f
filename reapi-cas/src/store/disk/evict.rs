//! LRU eviction against the byte budget, sparing blobs protected by the
//! retention time (see `retention.rs`). The budget covers stored blobs and
//! temp files of unfinished writes; when evicting blobs cannot bring usage
//! down, suspended uploads' files go, oldest first (see `temp_space.rs`).
//!
//! Runs in the thread of the commit that took the store over budget, after
//! that commit's blob is indexed (and pinned, so it is never the victim).
//! One thread evicts at a time; a commit that finds eviction already under
//! way returns at once, and the evicting thread re-checks the budget after
//! it lets go, so no commit's bytes are missed.
//!
//! With a retention time, room is made before a new blob is stored instead
//! ([`Inner::make_room`]), as protected blobs may leave none: then the write
//! is refused rather than the budget exceeded. Only writes that do not fit
//! take that path; below the budget a write costs one more atomic load.

use std::time::Instant;

use reapi_core::{Digest, Error, Result};

use super::retention;
use super::Inner;

/// Eviction frees space down to this share of the budget, so that it runs
/// once per 5 % of the budget written rather than on every commit.
pub(super) fn low_water(max_bytes: u64) -> u64 {
    max_bytes - max_bytes / 20
}

impl Inner {
    /// Bytes counted against the budget: stored blobs and temp files.
    pub(super) fn counted_bytes(&self) -> u64 {
        self.index
            .used_bytes()
            .saturating_add(self.temp_space.bytes())
    }

    /// Whether a new blob of `size` bytes fits in the budget as it stands.
    pub(super) fn fits(&self, size: u64) -> bool {
        self.counted_bytes().saturating_add(size) <= self.max_bytes
    }

    /// Called as a write in progress adds to its temp file: evicts if temp
    /// files took the store over budget. With a retention time, when
    /// nothing can go, the write is refused (RESOURCE_EXHAUSTED) as a new
    /// blob would be. Without one, says nothing when nothing can go: the
    /// commit that ends the write warns if the store is still over then.
    /// A blob already stored is written again without trouble.
    pub(super) fn room_for_temp_files(&self, instance: &str, digest: &Digest) -> Result<()> {
        if self.counted_bytes() <= self.max_bytes {
            return Ok(());
        }
        if self.retention.is_some() {
            if self.present(instance, digest).is_some() {
                return Ok(());
            }
            return self.make_room(digest, 0);
        }
        if let Some(guard) = self.evict_lock.try_lock() {
            self.evict_down_to(low_water(self.max_bytes));
            drop(guard);
        }
        Ok(())
    }

    /// The oldest protected clock value, with a retention time.
    fn protected_since(&self) -> Option<u64> {
        self.retention.as_ref().map(|r| r.protected_since())
    }

    /// Evicts least recently used (unprotected) blobs if the store is over
    /// budget.
    pub(super) fn evict_if_needed(&self) {
        while self.counted_bytes() > self.max_bytes {
            let Some(guard) = self.evict_lock.try_lock() else {
                return;
            };
            let evicted = self.evict_down_to(low_water(self.max_bytes));
            drop(guard);
            if evicted == 0 {
                let used_bytes = self.index.used_bytes();
                let temp_bytes = self.temp_space.bytes();
                match &self.retention {
                    Some(r) => tracing::warn!(
                        used_bytes,
                        temp_bytes,
                        max_bytes = self.max_bytes,
                        retention = %retention::display(r.window()),
                        "disk store is over budget and every blob is protected by the retention time"
                    ),
                    None => tracing::warn!(
                        used_bytes,
                        temp_bytes,
                        max_bytes = self.max_bytes,
                        "disk store is over budget but found nothing to evict"
                    ),
                }
                return;
            }
        }
    }

    /// With a retention time, makes room for `size` more bytes of a new
    /// blob (those not yet counted in its temp file): evicts unprotected
    /// blobs down to the low-water mark less them, and refuses the blob
    /// with RESOURCE_EXHAUSTED when they still do not fit. The caller has
    /// checked that the blob is not already stored. Without a retention
    /// time, does nothing: eviction after the commit always finds room.
    pub(super) fn make_room(&self, digest: &Digest, size: u64) -> Result<()> {
        let Some(retention) = &self.retention else {
            return Ok(());
        };
        if self.fits(size) {
            return Ok(());
        }
        if !retention.recently_full() {
            let guard = self.evict_lock.lock();
            if !self.fits(size) {
                self.evict_down_to(low_water(self.max_bytes).saturating_sub(size));
            }
            drop(guard);
            if self.fits(size) {
                return Ok(());
            }
            retention.set_full();
            tracing::warn!(
                blob = %digest,
                used_bytes = self.index.used_bytes(),
                temp_bytes = self.temp_space.bytes(),
                max_bytes = self.max_bytes,
                retention = %retention::display(retention.window()),
                "disk store is full of protected blobs; refusing new writes"
            );
        }
        Err(Error::resource_exhausted(format!(
            "disk store is full of blobs protected for the retention time of {}: \
             blob {digest} does not fit, {} of {} bytes are used by blobs referenced \
             within that time and {} by uploads in progress; retry later",
            retention::display(retention.window()),
            self.index.used_bytes(),
            self.max_bytes,
            self.temp_space.bytes(),
        )))
    }

    /// Evicts unprotected blobs, least recently used first, until usage is
    /// at most `target`, then, if that was not enough, suspended uploads'
    /// files. Returns how many blobs and files went. The caller holds
    /// `evict_lock`.
    fn evict_down_to(&self, target: u64) -> u64 {
        let blobs = self.evict_blobs_down_to(target);
        let over = self.counted_bytes().saturating_sub(target);
        if over == 0 || self.temp_space.suspended_bytes() == 0 {
            return blobs;
        }
        let given_up = self.temp_space.give_up_oldest(over);
        if given_up > 0 {
            tracing::info!(
                bytes = given_up,
                used_bytes = self.index.used_bytes(),
                temp_bytes = self.temp_space.bytes(),
                max_bytes = self.max_bytes,
                "disk store is full: dropped the data of the oldest unfinished uploads \
                 (their clients start them again)"
            );
        }
        blobs + u64::from(given_up > 0)
    }

    /// The blob part of [`Inner::evict_down_to`]; returns how many went.
    fn evict_blobs_down_to(&self, target: u64) -> u64 {
        let started = Instant::now();
        let (mut blobs, mut bytes) = (0u64, 0u64);
        // A few rounds: a round's victims may be used (and so spared)
        // between their selection and their eviction.
        for _ in 0..4 {
            let used = self.counted_bytes();
            if used <= target {
                break;
            }
            let victims = self
                .index
                .select_victims(used - target, self.protected_since());
            let mut round = 0u64;
            for victim in &victims {
                if self.counted_bytes() <= target {
                    break;
                }
                let path = self.path_of(&victim.key);
                let freed = self.index.evict_with(victim, || {
                    if let Err(e) = std::fs::remove_file(&path) {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            tracing::warn!(path = %path.display(), "evicting blob: {e}");
                        }
                    }
                });
                if let Some(size) = freed {
                    tracing::trace!(blob = %victim.key.digest(), path = %path.display(), "evicted");
                    round += 1;
                    bytes += size;
                }
            }
            blobs += round;
            if round == 0 {
                break;
            }
        }
        if blobs > 0 {
            tracing::debug!(
                blobs,
                bytes,
                used_bytes = self.index.used_bytes(),
                max_bytes = self.max_bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "disk store evicted least recently used blobs"
            );
        }
        blobs
    }
}

#[cfg(test)]
mod tests {
    use super::low_water;

    #[test]
    fn low_water_is_95_percent() {
        assert_eq!(low_water(1000), 950);
        assert_eq!(low_water(0), 0);
        assert_eq!(low_water(u64::MAX), u64::MAX - u64::MAX / 20);
    }
}
