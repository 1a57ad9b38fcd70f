//! Content digests: the hash and size that address every blob.
//!
//! A [`Digest`] is validated once, where it enters from the wire, and is a
//! small `Copy` value afterwards (32 hash bytes, a size and the function that
//! made the hash), so indexes keyed by it stay compact. The function is part
//! of a digest's identity: a BLAKE3 blob and a SHA-256 blob never compare
//! equal, so no store, cache or index can hand one out for the other.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::proto::remote_execution as re;

/// Hash functions a client may name: SHA-256 (the default, and what clients
/// before REAPI 2.5 use) and BLAKE3.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestFunction {
    #[default]
    Sha256,
    Blake3,
}

impl DigestFunction {
    /// Every function served, in the order Capabilities lists them.
    pub const ALL: [DigestFunction; 2] = [DigestFunction::Sha256, DigestFunction::Blake3];

    /// Maps the protocol enum value; `UNKNOWN` (0) means "the server's
    /// default", which clients before REAPI 2.5 always send.
    pub fn from_proto(value: i32) -> Result<Self> {
        match re::digest_function::Value::try_from(value) {
            Ok(re::digest_function::Value::Unknown) | Ok(re::digest_function::Value::Sha256) => {
                Ok(DigestFunction::Sha256)
            }
            Ok(re::digest_function::Value::Blake3) => Ok(DigestFunction::Blake3),
            Ok(other) => Err(Error::invalid_argument(format!(
                "digest function {} is not supported; use SHA256 or BLAKE3",
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
            "blake3" => Some(DigestFunction::Blake3),
            _ => None,
        }
    }

    /// The lowercase name used in resource names and storage keys.
    pub fn name(self) -> &'static str {
        match self {
            DigestFunction::Sha256 => "sha256",
            DigestFunction::Blake3 => "blake3",
        }
    }

    pub fn to_proto(self) -> re::digest_function::Value {
        match self {
            DigestFunction::Sha256 => re::digest_function::Value::Sha256,
            DigestFunction::Blake3 => re::digest_function::Value::Blake3,
        }
    }

    /// The protocol value to put in a request's `digest_function` field.
    pub fn proto_value(self) -> i32 {
        self.to_proto() as i32
    }

    /// Length of the hash in hex characters.
    pub fn hex_len(self) -> usize {
        HASH_LEN * 2
    }

    /// The digest of the empty blob, which is always present.
    pub fn empty_digest(self) -> Digest {
        match self {
            DigestFunction::Sha256 => Digest::EMPTY,
            DigestFunction::Blake3 => Digest::EMPTY_BLAKE3,
        }
    }

    /// A hasher for a blob streamed in pieces.
    pub fn hasher(self) -> DigestHasher {
        DigestHasher::for_function(self)
    }

    /// The digest of a buffer held in memory.
    pub fn digest_of(self, data: &[u8]) -> Digest {
        // One-shot calls: no boxed streaming state for the many small
        // messages hashed this way.
        let hash = match self {
            DigestFunction::Sha256 => Sha256::digest(data).into(),
            DigestFunction::Blake3 => *blake3::hash(data).as_bytes(),
        };
        Digest::new(self, hash, data.len() as u64)
    }

    /// The digest of a message as it is encoded on the wire.
    pub fn digest_of_message<M: prost::Message>(self, message: &M) -> Digest {
        self.digest_of(&message.encode_to_vec())
    }
}

impl fmt::Display for DigestFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The hash length (in bytes) of every digest function we serve.
pub const HASH_LEN: usize = 32;

/// A validated content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hash: [u8; HASH_LEN],
    size: u64,
    function: DigestFunction,
}

impl Digest {
    /// The SHA-256 digest of the empty blob, which is always present.
    pub const EMPTY: Digest = Digest {
        hash: [
            0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f,
            0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b,
            0x78, 0x52, 0xb8, 0x55,
        ],
        size: 0,
        function: DigestFunction::Sha256,
    };

    /// The BLAKE3 digest of the empty blob.
    pub const EMPTY_BLAKE3: Digest = Digest {
        hash: [
            0xaf, 0x13, 0x49, 0xb9, 0xf5, 0xf9, 0xa1, 0xa6, 0xa0, 0x40, 0x4d, 0xea, 0x36, 0xdc,
            0xc9, 0x49, 0x9b, 0xcb, 0x25, 0xc9, 0xad, 0xc1, 0x12, 0xb7, 0xcc, 0x9a, 0x93, 0xca,
            0xe4, 0x1f, 0x32, 0x62,
        ],
        size: 0,
        function: DigestFunction::Blake3,
    };

    pub const fn new(function: DigestFunction, hash: [u8; HASH_LEN], size: u64) -> Self {
        Digest {
            hash,
            size,
            function,
        }
    }

    /// Parses a lowercase hex hash of the right length and a size.
    pub fn from_hex(function: DigestFunction, hash: &str, size: u64) -> Result<Self> {
        if hash.len() != function.hex_len() {
            return Err(Error::invalid_argument(format!(
                "digest hash {hash:?} has {} characters, expected {}",
                hash.len(),
                function.hex_len()
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
        Ok(Digest::new(function, bytes, size))
    }

    /// Validates a protocol digest made with `function`.
    pub fn from_proto(function: DigestFunction, digest: &re::Digest) -> Result<Self> {
        let size = u64::try_from(digest.size_bytes).map_err(|_| {
            Error::invalid_argument(format!(
                "digest {}/{} has a negative size",
                digest.hash, digest.size_bytes
            ))
        })?;
        Digest::from_hex(function, &digest.hash, size)
    }

    /// Validates an optional protocol digest field, naming it when absent.
    pub fn from_proto_field(
        function: DigestFunction,
        digest: Option<&re::Digest>,
        field: &str,
    ) -> Result<Self> {
        match digest {
            Some(d) => Digest::from_proto(function, d),
            None => Err(Error::invalid_argument(format!("{field} is missing"))),
        }
    }

    /// The protocol form. The function is not in it: it travels in the
    /// request's `digest_function` (or the resource name) beside it.
    pub fn to_proto(&self) -> re::Digest {
        re::Digest {
            hash: self.hash_hex(),
            size_bytes: self.size as i64,
        }
    }

    /// SHA-256 of a buffer held in memory.
    pub fn of_bytes(data: &[u8]) -> Self {
        DigestFunction::Sha256.digest_of(data)
    }

    /// SHA-256 of a message as it is encoded on the wire.
    pub fn of_message<M: prost::Message>(message: &M) -> Self {
        Digest::of_bytes(&message.encode_to_vec())
    }

    /// A digest of `data` made with this digest's function: how the digests
    /// of a message's parts are made (a Directory's children, an action's
    /// outputs) so they share the function of the message's own digest.
    pub fn sibling_of(&self, data: &[u8]) -> Digest {
        self.function.digest_of(data)
    }

    /// Checks that `data` is the blob this digest names (INVALID_ARGUMENT
    /// saying how it differs otherwise).
    pub fn verify_content(&self, data: &[u8]) -> Result<()> {
        let mut hasher = self.function.hasher();
        hasher.update(data);
        hasher.verify(self)
    }

    pub fn hash(&self) -> &[u8; HASH_LEN] {
        &self.hash
    }

    pub fn function(&self) -> DigestFunction {
        self.function
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

    /// A name for the blob in a storage key or file name: `{hash}-{size}`
    /// for SHA-256 (the layout before BLAKE3, kept so existing stores stay
    /// readable) and `{function}-{hash}-{size}` for any other function.
    pub fn storage_name(&self) -> String {
        match self.function {
            DigestFunction::Sha256 => format!("{}-{}", self.hash_hex(), self.size),
            other => format!("{other}-{}-{}", self.hash_hex(), self.size),
        }
    }

    /// Reverses [`Digest::storage_name`]; `None` for a name it cannot have
    /// produced (so each digest has exactly one name).
    pub fn parse_storage_name(name: &str) -> Option<Digest> {
        let (function, rest) = match name.split_once('-') {
            Some((prefix, rest)) if prefix.len() != HASH_LEN * 2 => {
                match DigestFunction::from_name(prefix)? {
                    DigestFunction::Sha256 => return None,
                    other => (other, rest),
                }
            }
            _ => (DigestFunction::Sha256, name),
        };
        let (hash, size) = rest.split_once('-')?;
        if size.len() > 1 && size.starts_with('0') {
            return None;
        }
        let size = parse_size(size).ok()?;
        Digest::from_hex(function, hash, size).ok()
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_empty_blob(&self) -> bool {
        *self == self.function.empty_digest()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.function {
            DigestFunction::Sha256 => write!(f, "{}/{}", self.hash_hex(), self.size),
            other => write!(f, "{other}/{}/{}", self.hash_hex(), self.size),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    /// Parses the form [`Display`](fmt::Display) prints: `hash/size` for
    /// SHA-256, `function/hash/size` for any other function.
    fn from_str(s: &str) -> Result<Self> {
        let not_a_digest = || Error::invalid_argument(format!("digest {s:?} is not hash/size"));
        let (function, rest) = match s.split_once('/') {
            Some((name, rest)) if rest.contains('/') => (
                DigestFunction::from_name(name)
                    .filter(|f| *f != DigestFunction::Sha256)
                    .ok_or_else(not_a_digest)?,
                rest,
            ),
            _ => (DigestFunction::Sha256, s),
        };
        let (hash, size) = rest.split_once('/').ok_or_else(not_a_digest)?;
        let size = parse_size(size)?;
        Digest::from_hex(function, hash, size)
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

/// Incremental hashing with a digest function that also counts bytes, for
/// verifying a streamed blob or hashing a file.
#[derive(Clone)]
pub struct DigestHasher {
    state: HasherState,
    size: u64,
}

#[derive(Clone)]
enum HasherState {
    Sha256(Sha256),
    // Boxed: BLAKE3's chunk stack is about 1.9 KB, and hashers are moved
    // into and out of tasks.
    Blake3(Box<blake3::Hasher>),
}

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::for_function(DigestFunction::Sha256)
    }
}

impl DigestHasher {
    /// A SHA-256 hasher.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn for_function(function: DigestFunction) -> Self {
        let state = match function {
            DigestFunction::Sha256 => HasherState::Sha256(Sha256::new()),
            DigestFunction::Blake3 => HasherState::Blake3(Box::new(blake3::Hasher::new())),
        };
        DigestHasher { state, size: 0 }
    }

    pub fn function(&self) -> DigestFunction {
        match self.state {
            HasherState::Sha256(_) => DigestFunction::Sha256,
            HasherState::Blake3(_) => DigestFunction::Blake3,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.state {
            HasherState::Sha256(hasher) => hasher.update(data),
            HasherState::Blake3(hasher) => {
                hasher.update(data);
            }
        }
        self.size += data.len() as u64;
    }

    pub fn bytes_hashed(&self) -> u64 {
        self.size
    }

    pub fn finish(self) -> Digest {
        match self.state {
            HasherState::Sha256(hasher) => {
                Digest::new(DigestFunction::Sha256, hasher.finalize().into(), self.size)
            }
            HasherState::Blake3(hasher) => Digest::new(
                DigestFunction::Blake3,
                *hasher.finalize().as_bytes(),
                self.size,
            ),
        }
    }

    /// Finishes and checks the result against the digest the client claimed.
    pub fn verify(self, expected: &Digest) -> Result<()> {
        if self.function() != expected.function() {
            return Err(Error::internal(format!(
                "blob {expected} was hashed with {}",
                self.function()
            )));
        }
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
            for function in DigestFunction::ALL {
                let digest = Digest::new(function, hash, 7);
                let hex = digest.hash_hex();
                assert_eq!(hex, hex::encode(hash));
                assert_eq!(Digest::from_hex(function, &hex, 7).unwrap(), digest);
            }
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
                    assert!(
                        Digest::from_hex(DigestFunction::Sha256, text, 5).is_err(),
                        "{byte:#x} at {at}"
                    );
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
        assert_eq!(
            Digest::from_proto(DigestFunction::Sha256, &d.to_proto()).unwrap(),
            d
        );
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
            Digest::from_proto(DigestFunction::Sha256, &negative)
                .unwrap_err()
                .code(),
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
            DigestFunction::from_proto(re::digest_function::Value::Blake3 as i32).unwrap(),
            DigestFunction::Blake3
        );
        assert_eq!(
            DigestFunction::from_proto(re::digest_function::Value::Md5 as i32)
                .unwrap_err()
                .code(),
            Code::InvalidArgument
        );
        assert!(DigestFunction::from_proto(999).is_err());
    }

    #[test]
    fn blake3_digests_are_their_own_and_never_equal_sha256_ones() {
        assert_eq!(DigestFunction::Blake3.digest_of(b""), Digest::EMPTY_BLAKE3);
        assert!(Digest::EMPTY_BLAKE3.is_empty_blob());
        let sha = Digest::of_bytes(b"hello");
        let blake = DigestFunction::Blake3.digest_of(b"hello");
        assert_eq!(blake.function(), DigestFunction::Blake3);
        assert_eq!(blake.size(), 5);
        assert_ne!(blake.hash(), sha.hash());
        // Same hash bytes under another function are another blob.
        assert_ne!(
            Digest::new(DigestFunction::Blake3, *sha.hash(), 5),
            sha,
            "the function is part of a digest's identity"
        );
        let mut pieces = DigestFunction::Blake3.hasher();
        pieces.update(b"hel");
        pieces.update(b"lo");
        pieces.clone().verify(&blake).unwrap();
        assert_eq!(
            pieces.verify(&sha).unwrap_err().code(),
            Code::Internal,
            "a hasher of the wrong function is a bug, not bad input"
        );
        assert_eq!(sha.sibling_of(b"x"), Digest::of_bytes(b"x"));
        assert_eq!(
            blake.sibling_of(b"x"),
            DigestFunction::Blake3.digest_of(b"x")
        );
    }

    #[test]
    fn storage_names_keep_the_sha256_layout_and_name_other_functions() {
        let sha = Digest::of_bytes(b"hello");
        assert_eq!(sha.storage_name(), format!("{HELLO}-5"));
        let blake = DigestFunction::Blake3.digest_of(b"hello");
        assert_eq!(
            blake.storage_name(),
            format!("blake3-{}-5", blake.hash_hex())
        );
        for d in [sha, blake, Digest::EMPTY, Digest::EMPTY_BLAKE3] {
            assert_eq!(Digest::parse_storage_name(&d.storage_name()), Some(d));
            assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        }
        for bad in [
            format!("sha256-{HELLO}-5"),
            format!("md5-{HELLO}-5"),
            format!("{HELLO}-05"),
            format!("{HELLO}--5"),
            format!("{HELLO}5"),
            format!("blake3-{HELLO}"),
            format!("blake3-{}-5", &HELLO[..62]),
        ] {
            assert_eq!(Digest::parse_storage_name(&bad), None, "{bad}");
        }
        assert!(format!("sha256/{HELLO}/5").parse::<Digest>().is_err());
        assert!(format!("md5/{HELLO}/5").parse::<Digest>().is_err());
    }
}
