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
        // thousands of digests per request (the cluster CAS its members'
        // answers too), and this was its largest cost. Eight digits at a
        // time, as one u64.
        let mut bytes = [0u8; HASH_LEN];
        let mut valid = true;
        for (out, digits) in bytes
            .chunks_exact_mut(4)
            .zip(hash.as_bytes().chunks_exact(8))
        {
            let mut word = [0u8; 8];
            word.copy_from_slice(digits);
            let (decoded, ok) = decode_hex_word(u64::from_le_bytes(word));
            valid &= ok;
            out.copy_from_slice(&decoded);
        }
        if !valid {
            return Err(Error::invalid_argument(format!(
                "digest hash {hash:?} is not lowercase hexadecimal"
            )));
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
        // One table lookup per byte: FindMissingBlobs encodes every missing
        // digest of a request, and the cluster CAS every digest it forwards.
        let mut hex = [0u8; HASH_LEN * 2];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(self.hash) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
        }
        // Checking 64 ASCII bytes is cheaper than pushing them as chars.
        std::str::from_utf8(&hex)
            .expect("hex digits are ASCII")
            .to_owned()
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

/// Which of `asked` are in `missing`, when `missing` lists them in the
/// order they were asked (as a store's FindMissingBlobs answer does): one
/// pass, no hashing. `None` when `missing` is in some other order.
pub fn missing_in_order(asked: &[Digest], missing: &[Digest]) -> Option<Vec<bool>> {
    let mut rest = missing.iter().peekable();
    let marks = asked
        .iter()
        .map(|digest| rest.next_if(|m| *m == digest).is_some())
        .collect();
    rest.peek().is_none().then_some(marks)
}

/// The two lowercase hexadecimal digits of each byte value.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0xf]];
        byte += 1;
    }
    table
};

/// Decodes eight lowercase hexadecimal digits (little-endian in `word`)
/// into four bytes, all lanes at once; the flag says whether every byte
/// was such a digit.
fn decode_hex_word(word: u64) -> ([u8; 4], bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // For bytes below 0x80 (checked separately), the top bit of each lane
    // of `at_least(lo)` says byte >= lo, of `at_most(hi)` byte <= hi; no
    // lane borrows from its neighbour.
    let at_least = |lo: u8| ((word | HIGH) - ONES * u64::from(lo)) & HIGH;
    let at_most = |hi: u8| (((ONES * u64::from(hi)) | HIGH) - word) & HIGH;
    let digit = at_least(b'0') & at_most(b'9');
    let letter = at_least(b'a') & at_most(b'f');
    let ok = (digit | letter) & !word & HIGH == HIGH;
    // '0'..'9' are 0x30..0x39 and 'a'..'f' 0x61..0x66: the low nibble,
    // plus 9 for letters (bit 6 set).
    let values = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Lanes 0,2,4,6 hold high nibbles, 1,3,5,7 low ones.
    let pairs = ((values & 0x00ff_00ff_00ff_00ff) << 4) | ((values >> 8) & 0x00ff_00ff_00ff_00ff);
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let pairs = (pairs | (pairs >> 16)) & 0x0000_0000_ffff_ffff;
    let mut decoded = [0u8; 4];
    decoded.copy_from_slice(&pairs.to_le_bytes()[..4]);
    (decoded, ok)
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
    fn every_byte_but_a_lowercase_hex_digit_is_refused_anywhere() {
        for byte in 0u8..=255 {
            if byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) {
                continue;
            }
            for at in [0, 1, 31, 62, 63] {
                let mut hash = HELLO.as_bytes().to_vec();
                hash[at] = byte;
                // A byte above 0x7f alone is not UTF-8, so not a &str; the
                // multibyte case is in `rejects_bad_hashes_and_sizes`.
                if let Ok(text) = std::str::from_utf8(&hash) {
                    assert!(Digest::from_hex(text, 5).is_err(), "{byte:#x} at {at}");
                }
            }
        }
    }

    #[test]
    fn missing_in_order_marks_an_ordered_answer_and_refuses_any_other() {
        let d: Vec<Digest> = (0u8..4).map(|i| Digest::of_bytes(&[i])).collect();
        assert_eq!(
            missing_in_order(&d, &[d[1], d[3]]),
            Some(vec![false, true, false, true])
        );
        assert_eq!(missing_in_order(&d, &[]), Some(vec![false; 4]));
        assert_eq!(missing_in_order(&d, &d), Some(vec![true; 4]));
        assert_eq!(missing_in_order(&d, &[d[3], d[1]]), None);
        assert_eq!(missing_in_order(&d[..2], &[d[2]]), None);
        // A repeated digest answered once marks its first asking only.
        let repeated = [d[0], d[0]];
        assert_eq!(
            missing_in_order(&repeated, &[d[0]]),
            Some(vec![true, false])
        );
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
