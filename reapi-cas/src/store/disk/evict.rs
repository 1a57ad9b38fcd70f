//! LRU eviction against the byte budget.
//!
//! Runs in the thread of the commit that took the store over budget, after
//! that commit's blob is indexed (and pinned, so it is never the victim).
//! One thread evicts at a time; a commit that finds eviction already under
//! way returns at once, and the evicting thread re-checks the budget after
//! it lets go, so no commit's bytes are missed.

use std::time::Instant;

use super::Inner;

/// Eviction frees space down to this share of the budget, so that it runs
/// once per 5 % of the budget written rather than on every commit.
pub(super) fn low_water(max_bytes: u64) -> u64 {
    max_bytes - max_bytes / 20
}

impl Inner {
    /// Evicts least recently used blobs if the store is over budget.
    pub(super) fn evict_if_needed(&self) {
        while self.index.used_bytes() > self.max_bytes {
            let Some(guard) = self.evict_lock.try_lock() else {
                return;
            };
            let progress = self.evict_to_low_water();
            drop(guard);
            if !progress {
                return;
            }
        }
    }

    /// Returns whether anything was evicted.
    fn evict_to_low_water(&self) -> bool {
        let started = Instant::now();
        let target = low_water(self.max_bytes);
        let (mut blobs, mut bytes) = (0u64, 0u64);
        // A few rounds: a round's victims may be used (and so spared)
        // between their selection and their eviction.
        for _ in 0..4 {
            let used = self.index.used_bytes();
            if used <= target {
                break;
            }
            let victims = self.index.select_victims(used - target);
            let mut round = 0u64;
            for victim in &victims {
                if self.index.used_bytes() <= target {
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
        } else {
            tracing::warn!(
                used_bytes = self.index.used_bytes(),
                max_bytes = self.max_bytes,
                "disk store is over budget but found nothing to evict"
            );
        }
        blobs > 0
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
