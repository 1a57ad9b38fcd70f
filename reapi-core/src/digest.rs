//! Content digests: the hash and size that address every blob.
//!
//! A [`Digest`] is validated once, where it enters from the wire, and is a
//! small `Copy` value afterwards (32 hash bytes and a size), so indexes keyed
//! by it stay compact.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::proto::remote_execution as re;

/// Hash functions a client may name. Only SHA-256 is served today; the enum
/// keeps room for more without changing every signature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DigestFunction {
    #[default]
    Sha256,
}

impl DigestFunction {
    /// Maps the protocol enum value; `UNKNOWN` (0) means "the server's
    /// default", which clients before REAPI 2.5 always send.
    pub fn from_proto(value: i32) -> Result<Self> {
        match re::digest_function::Value::try_from(value) {
            Ok(re::digest_function::Value::Unknown) | Ok(re::digest_function::Value::Sha256) => {
                Ok(DigestFunction::Sha256)
            }
            Ok(other) => Err(Error::invalid_argument(format!(
                "digest function {} is not supported; use SHA256",
                other.as_str_name()
            ))),
            Err(_) => Err(Error::invalid_argument(format!(
                "unknown digest function value {value}"
            ))),
        }
    }

    /// Parses the lowercase name used in ByteStream resource names.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(DigestFunction::Sha256),
            _ => None,
        }
    }

    pub fn to_proto(self) -> re::digest_function::Value {
        match self {
            DigestFunction::Sha256 => re::digest_function::Value::Sha256,
        }
    }

    /// Length of the hash in hex characters.
    pub fn hex_len(self) -> usize {
        match self {
            DigestFunction::Sha256 => 64,
        }
    }
}

/// The hash length (in bytes) of every digest function we serve.
pub const HASH_LEN: usize = 32;

/// A validated content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hash: [u8; HASH_LEN],
    size: u64,
}

impl Digest {
    /// The digest of the empty blob, which is always present.
    pub const EMPTY: Digest = Digest {
        hash: [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ],
        size: 0,
    };

    pub const fn new(hash: [u8; HASH_LEN], size: u64) -> Self {
        Digest { hash, size }
    }

    /// Parses a lowercase hex hash of the right length and a size.
    pub fn from_hex(hash: &str, size: u64) -> Result<Self> {
        if hash.len() != HASH_LEN * 2 {
            return Err(Error::invalid_argument(format!(
                "digest hash {hash:?} has {} characters, expected {}",
                hash.len(),
                HASH_LEN * 2
            )));
        }
        // One pass that validates and decodes: FindMissingBlobs parses
        // thousands of digests per request, and this was its largest cost.
        let mut bytes = [0u8; HASH_LEN];
        for (byte, pair) in bytes.iter_mut().zip(hash.as_bytes().chunks_exact(2)) {
            match (lower_hex_nibble(pair[0]), lower_hex_nibble(pair[1])) {
                (Some(high), Some(low)) => *byte = high << 4 | low,
                _ => {
                    return Err(Error::invalid_argument(format!(
                        "digest hash {hash:?} is not lowercase hexadecimal"
                    )))
                }
            }
        }
        Ok(Digest { hash: bytes, size })
    }

    /// Validates a protocol digest.
    pub fn from_proto(digest: &re::Digest) -> Result<Self> {
        let size = u64::try_from(digest.size_bytes).map_err(|_| {
            Error::invalid_argument(format!(
                "digest {}/{} has a negative size",
                digest.hash, digest.size_bytes
            ))
        })?;
        Digest::from_hex(&digest.hash, size)
    }

    /// Validates an optional protocol digest field, naming it when absent.
    pub fn from_proto_field(digest: Option<&re::Digest>, field: &str) -> Result<Self> {
        match digest {
            Some(d) => Digest::from_proto(d),
            None => Err(Error::invalid_argument(format!("{field} is missing"))),
        }
    }

    pub fn to_proto(&self) -> re::Digest {
        re::Digest {
            hash: self.hash_hex(),
            size_bytes: self.size as i64,
        }
    }

    /// SHA-256 of a buffer held in memory.
    pub fn of_bytes(data: &[u8]) -> Self {
        let mut hasher = DigestHasher::new();
        hasher.update(data);
        hasher.finish()
    }

    /// Digest of a message as it is encoded on the wire.
    pub fn of_message<M: prost::Message>(message: &M) -> Self {
        Digest::of_bytes(&message.encode_to_vec())
    }

    pub fn hash(&self) -> &[u8; HASH_LEN] {
        &self.hash
    }

    pub fn hash_hex(&self) -> String {
        // Two table lookups per byte into a string sized up front:
        // FindMissingBlobs encodes every missing digest of a request.
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut hex = String::with_capacity(HASH_LEN * 2);
        for byte in self.hash {
            hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
        }
        hex
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty_blob(&self) -> bool {
        *self == Digest::EMPTY
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash_hex(), self.size)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses the `hash/size` form.
    fn from_str(s: &str) -> Result<Self> {
        let (hash, size) = s
            .split_once('/')
            .ok_or_else(|| Error::invalid_argument(format!("digest {s:?} is not hash/size")))?;
        let size = parse_size(size)?;
        Digest::from_hex(hash, size)
    }
}

/// The value of one lowercase hexadecimal digit.
fn lower_hex_nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// Parses a decimal blob size: digits only, no sign, no leading `+`.
pub fn parse_size(s: &str) -> Result<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_argument(format!(
            "blob size {s:?} is not a non-negative decimal number"
        )));
    }
    let size: u64 = s
        .parse()
        .map_err(|_| Error::invalid_argument(format!("blob size {s:?} is out of range")))?;
    if size > i64::MAX as u64 {
        return Err(Error::invalid_argument(format!(
            "blob size {s:?} is out of range"
        )));
    }
    Ok(size)
}

/// Incremental SHA-256 that also counts bytes, for verifying a streamed blob.
#[derive(Clone, Default)]
pub struct DigestHasher {
    hasher: Sha256,
    size: u64,
}

impl DigestHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.size += data.len() as u64;
    }

    pub fn bytes_hashed(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digest {
        Digest {
            hash: self.hasher.finalize().into(),
            size: self.size,
        }
    }

    /// Finishes and checks the result against the digest the client claimed.
    pub fn verify(self, expected: &Digest) -> Result<()> {
        if self.size != expected.size() {
            return Err(Error::invalid_argument(format!(
                "blob {expected}: received {} bytes, the digest says {}",
                self.size,
                expected.size()
            )));
        }
        let actual = self.finish();
        if actual != *expected {
            return Err(Error::invalid_argument(format!(
                "blob {expected}: content hashes to {}",
                actual.hash_hex()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn hex_round_trips_every_byte_value() {
        for seed in 0u8..=255 {
            let hash: [u8; HASH_LEN] = std::array::from_fn(|i| seed.wrapping_add(i as u8 * 8));
            let digest = Digest { hash, size: 7 };
            let hex = digest.hash_hex();
            assert_eq!(hex, hex::encode(hash));
            assert_eq!(Digest::from_hex(&hex, 7).unwrap(), digest);
        }
        assert_eq!(Digest::of_bytes(b"hello").hash_hex(), HELLO);
    }

    #[test]
    fn empty_digest_is_sha256_of_nothing() {
        assert_eq!(Digest::of_bytes(b""), Digest::EMPTY);
        assert!(Digest::EMPTY.is_empty_blob());
    }

    #[test]
    fn parses_and_prints_hash_slash_size() {
        let d: Digest = format!("{HELLO}/5").parse().unwrap();
        assert_eq!(d, Digest::of_bytes(b"hello"));
        assert_eq!(d.to_string(), format!("{HELLO}/5"));
    }

    #[test]
    fn proto_round_trip() {
        let d = Digest::of_bytes(b"hello");
        assert_eq!(Digest::from_proto(&d.to_proto()).unwrap(), d);
    }

    #[test]
    fn rejects_bad_hashes_and_sizes() {
        let cases = [
            format!("{}/5", &HELLO[..63]),
            format!("{HELLO}0/5"),
            format!("{}/5", HELLO.to_uppercase()),
            format!("{}g/5", &HELLO[..63]),
            format!("{}é/5", &HELLO[..62]),
            format!("{HELLO}/-1"),
            format!("{HELLO}/+5"),
            format!("{HELLO}/"),
            format!("{HELLO}/99999999999999999999"),
            HELLO.to_string(),
        ];
        for case in cases {
            let err = case.parse::<Digest>().unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{case}");
        }
        let negative = re::Digest {
            hash: HELLO.into(),
            size_bytes: -1,
        };
        assert_eq!(
            Digest::from_proto(&negative).unwrap_err().code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn verify_reports_size_and_hash_mismatch() {
        let expected = Digest::of_bytes(b"hello");
        let mut short = DigestHasher::new();
        short.update(b"hell");
        assert!(short
            .verify(&expected)
            .unwrap_err()
            .to_string()
            .contains("4 bytes"));
        let mut wrong = DigestHasher::new();
        wrong.update(b"jello");
        assert!(wrong
            .verify(&expected)
            .unwrap_err()
            .to_string()
            .contains("hashes to"));
        let mut right = DigestHasher::new();
        right.update(b"he");
        right.update(b"llo");
        right.verify(&expected).unwrap();
    }

    #[test]
    fn digest_function_mapping() {
        assert_eq!(
            DigestFunction::from_proto(0).unwrap(),
            DigestFunction::Sha256
        );
        assert_eq!(
            DigestFunction::from_proto(re::digest_function::Value::Sha256 as i32).unwrap(),
            DigestFunction::Sha256
        );
        assert_eq!(
            DigestFunction::from_proto(re::digest_function::Value::Md5 as i32)
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert!(DigestFunction::from_proto(999).is_err());
    }
}
