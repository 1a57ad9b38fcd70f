//! Blob contents made cheaply: a shared pseudo-random prefix plus a short
//! unique tail per blob.
//!
//! SHA-256 is sequential, so the hasher state after the shared prefix is
//! computed once and cloned for every blob: a blob's digest costs one hash
//! of its tail (at most 64 bytes), whatever its size. Every byte is still
//! pseudo-random (incompressible) and every blob distinct, so the server
//! hashes, stores and reads each one in full.

use std::sync::Arc;

use reapi_core::{Digest, DigestHasher};

/// Longest unique tail.
const TAIL: usize = 64;

/// SplitMix64: a tiny, fast, well-mixed PRNG step.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Fills `buf` with pseudo-random bytes from `seed`.
pub fn fill_random(buf: &mut [u8], seed: u64) {
    let mut state = seed;
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&splitmix64(&mut state).to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let last = splitmix64(&mut state).to_le_bytes();
    let n = rest.len();
    rest.copy_from_slice(&last[..n]);
}

/// A per-run value that makes blobs of this run differ from earlier runs'.
pub fn run_nonce() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut state = now.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32);
    splitmix64(&mut state)
}

/// Makes blob number `n` of a family of blobs of one size.
pub struct BlobFactory {
    size: usize,
    seed: u64,
    prefix: Arc<Vec<u8>>,
    prefix_hasher: DigestHasher,
}

impl BlobFactory {
    /// Blobs of `size` bytes. The same `seed` gives the same blobs, so a
    /// rerun against the same server finds set-up blobs already present.
    pub fn new(size: usize, seed: u64) -> Self {
        let prefix_len = size.saturating_sub(TAIL);
        let mut prefix = vec![0u8; prefix_len];
        fill_random(&mut prefix, seed ^ 0x005e_ed0f_5eed);
        let mut prefix_hasher = DigestHasher::new();
        prefix_hasher.update(&prefix);
        BlobFactory {
            size,
            seed,
            prefix: Arc::new(prefix),
            prefix_hasher,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    fn tail(&self, n: u64) -> Vec<u8> {
        let mut tail = vec![0u8; self.size - self.prefix.len()];
        let mut state = self.seed ^ n.wrapping_mul(0xa076_1d64_78bd_642f);
        let mix = splitmix64(&mut state);
        fill_random(&mut tail, mix);
        // For tails of 16 bytes or more the blob number itself is written
        // in, so distinct numbers never collide.
        if tail.len() >= 16 {
            tail[..8].copy_from_slice(&n.to_le_bytes());
            tail[8..16].copy_from_slice(&self.seed.to_le_bytes());
        }
        tail
    }

    /// Blob `n` as a digest and a reader over its content.
    pub fn blob(&self, n: u64) -> Blob {
        let tail = self.tail(n);
        let mut hasher = self.prefix_hasher.clone();
        hasher.update(&tail);
        Blob {
            digest: hasher.finish(),
            prefix: Arc::clone(&self.prefix),
            tail: Arc::new(tail),
        }
    }
}

/// One generated blob: its digest and its content in two parts.
#[derive(Clone)]
pub struct Blob {
    pub digest: Digest,
    prefix: Arc<Vec<u8>>,
    tail: Arc<Vec<u8>>,
}

impl Blob {
    pub fn len(&self) -> usize {
        self.prefix.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies bytes `start..start + len` into a new buffer.
    pub fn slice(&self, start: usize, len: usize) -> Vec<u8> {
        let end = (start + len).min(self.len());
        let mut out = Vec::with_capacity(end.saturating_sub(start));
        let p = self.prefix.len();
        if start < p {
            out.extend_from_slice(&self.prefix[start..end.min(p)]);
        }
        if end > p {
            out.extend_from_slice(&self.tail[start.max(p) - p..end - p]);
        }
        out
    }

    /// The whole content in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        self.slice(0, self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_content_and_differ() {
        for size in [0usize, 1, 7, 63, 64, 65, 1000, 100_000] {
            let factory = BlobFactory::new(size, 42);
            let a = factory.blob(1);
            let b = factory.blob(2);
            assert_eq!(a.len(), size);
            assert_eq!(Digest::of_bytes(&a.to_vec()), a.digest, "size {size}");
            if size >= 8 {
                assert_ne!(a.digest, b.digest, "size {size}");
            }
            let mut joined = Vec::new();
            let mut at = 0;
            while at < size {
                joined.extend(a.slice(at, 333));
                at += 333;
            }
            assert_eq!(joined, a.to_vec());
        }
    }

    #[test]
    fn same_seed_same_blobs() {
        let a = BlobFactory::new(4096, 7).blob(3);
        let b = BlobFactory::new(4096, 7).blob(3);
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.digest, BlobFactory::new(4096, 8).blob(3).digest);
    }
}
