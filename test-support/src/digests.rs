//! Digests for tests: of bytes and messages, of blobs nobody stores, the
//! digest-function values, and deterministic data to digest.

use prost::Message;
use reapi_core::proto::remote_execution as re;

pub use re::Digest as PDigest;

/// The SHA-256 digest of `bytes`, as the protocol message.
pub fn dig(bytes: &[u8]) -> PDigest {
    reapi_core::Digest::of_bytes(bytes).to_proto()
}

/// Digest of an encoded message.
pub fn dig_msg<M: Message>(message: &M) -> PDigest {
    dig(&message.encode_to_vec())
}

pub fn empty_digest() -> PDigest {
    dig(b"")
}

/// A 64-hex-character hash nobody stores.
pub fn absent_digest(seed: u64) -> PDigest {
    dig(format!("absent blob {seed}").as_bytes())
}

/// A digest for use as an action key (never needs to be in the CAS).
pub fn action_key(name: &str) -> PDigest {
    dig(format!("action {name}").as_bytes())
}

pub fn sha256() -> i32 {
    re::digest_function::Value::Sha256 as i32
}

pub fn blake3() -> i32 {
    re::digest_function::Value::Blake3 as i32
}

/// The BLAKE3 digest of `bytes`, as the protocol message.
pub fn dig_blake3(bytes: &[u8]) -> PDigest {
    reapi_core::DigestFunction::Blake3
        .digest_of(bytes)
        .to_proto()
}

/// The BLAKE3 digest of an encoded message.
pub fn dig_msg_blake3<M: Message>(message: &M) -> PDigest {
    dig_blake3(&message.encode_to_vec())
}

pub fn md5() -> i32 {
    re::digest_function::Value::Md5 as i32
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}
