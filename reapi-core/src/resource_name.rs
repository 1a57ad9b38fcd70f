//! ByteStream resource names (REAPI v2), parsed and printed.
//!
//! Upload:   `{instance}/uploads/{uuid}/blobs/{digest_function/}{hash}/{size}{/metadata}`
//!           `{instance}/uploads/{uuid}/compressed-blobs/{compressor}/{digest_function/}{hash}/{size}{/metadata}`
//! Download: `{instance}/blobs/{digest_function/}{hash}/{size}`
//!           `{instance}/compressed-blobs/{compressor}/{digest_function/}{hash}/{size}`
//!
//! Parsing rules beyond the grammar above:
//!
//! - The instance name is everything before the first reserved word
//!   ([`RESERVED_SEGMENTS`]); it may have several segments, none empty. An
//!   empty instance name has no segment at all (the name starts with the
//!   marker word).
//! - `compressed-blobs/identity/...` is accepted and means "not compressed"
//!   (`compressor: None`); it is printed back in the canonical `blobs/...` form.
//! - The digest-function segment is recognised by its name: REAPI function
//!   names are short words containing letters that are not hex digits, so they
//!   can never be mistaken for a hash. `sha256` is accepted and, since its
//!   hash length identifies it, never printed. Other known functions are
//!   rejected as unsupported.
//! - Upload metadata is everything after the `/` that follows the size, kept
//!   verbatim and never interpreted. A name ending in `{size}/` therefore has
//!   `metadata: Some("")`, which prints back with its trailing `/`, so every
//!   value round-trips.
//! - A download name has nothing after the size.
//! - The upload uuid is any non-empty segment, except that `blobs` and
//!   `compressed-blobs` there mean the uuid was left out.
//!
//! Every malformed name is INVALID_ARGUMENT with a message quoting the name.

use std::fmt;
use std::str::FromStr;

use crate::digest::{parse_size, Digest, DigestFunction};
use crate::error::{Error, Result};
use crate::instance::RESERVED_SEGMENTS;

/// Compression of a `compressed-blobs` stream. Plain `blobs` have none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compressor {
    Zstd,
    Deflate,
}

impl Compressor {
    /// The lowercase name used in resource names.
    pub fn as_str(self) -> &'static str {
        match self {
            Compressor::Zstd => "zstd",
            Compressor::Deflate => "deflate",
        }
    }
}

impl fmt::Display for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed download (`Read`) resource name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadResource {
    pub instance_name: String,
    pub compressor: Option<Compressor>,
    /// Made with the function the name gives (SHA-256 when it names none).
    pub digest: Digest,
}

/// A parsed upload (`Write`) resource name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteResource {
    pub instance_name: String,
    pub uuid: String,
    pub compressor: Option<Compressor>,
    /// Made with the function the name gives (SHA-256 when it names none).
    pub digest: Digest,
    /// Trailing segments after the size, kept verbatim without the leading `/`.
    pub metadata: Option<String>,
}

const BLOBS: &str = "blobs";
const COMPRESSED_BLOBS: &str = "compressed-blobs";
const UPLOADS: &str = "uploads";

/// Names REAPI gives digest functions that this server does not serve. Known
/// so that a client asking for one hears "not supported" rather than a
/// puzzling complaint about the hash.
const UNSUPPORTED_FUNCTIONS: [&str; 8] = [
    "sha1",
    "md5",
    "sha384",
    "sha512",
    "vso",
    "murmur3",
    "sha256tree",
    "gitsha1",
];

/// Longest part of a client-supplied string quoted in an error. Status
/// messages travel in HTTP/2 trailers, which some clients cap at a few KiB;
/// an overlong one would turn INVALID_ARGUMENT into a transport error.
const MAX_QUOTED: usize = 256;

impl ReadResource {
    /// An uncompressed download name.
    pub fn new(instance_name: impl Into<String>, digest: Digest) -> Self {
        ReadResource {
            instance_name: instance_name.into(),
            compressor: None,
            digest,
        }
    }

    pub fn with_compressor(mut self, compressor: Option<Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    pub fn parse(name: &str) -> Result<Self> {
        let segments: Vec<&str> = name.split('/').collect();
        let (instance_name, marker, rest) = split_instance(name, &segments)?;
        if marker != BLOBS && marker != COMPRESSED_BLOBS {
            return Err(wrong_marker(
                name,
                marker,
                "a download",
                "\"blobs\" or \"compressed-blobs\"",
            ));
        }
        let blob = parse_blob(name, marker, rest)?;
        if let Some(extra) = blob.after_size {
            return Err(malformed(
                name,
                format!(
                    "a download name ends at the size, found {:?} after it",
                    clip(&extra.join("/"))
                ),
            ));
        }
        Ok(ReadResource {
            instance_name,
            compressor: blob.compressor,
            digest: blob.digest,
        })
    }
}

impl WriteResource {
    /// An uncompressed upload name without metadata.
    pub fn new(instance_name: impl Into<String>, uuid: impl Into<String>, digest: Digest) -> Self {
        WriteResource {
            instance_name: instance_name.into(),
            uuid: uuid.into(),
            compressor: None,
            digest,
            metadata: None,
        }
    }

    pub fn with_compressor(mut self, compressor: Option<Compressor>) -> Self {
        self.compressor = compressor;
        self
    }

    pub fn with_metadata(mut self, metadata: Option<String>) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn parse(name: &str) -> Result<Self> {
        let segments: Vec<&str> = name.split('/').collect();
        let (instance_name, marker, rest) = split_instance(name, &segments)?;
        if marker != UPLOADS {
            return Err(wrong_marker(name, marker, "an upload", "\"uploads\""));
        }
        let (uuid, rest) = match rest.split_first() {
            // Without this check `uploads/blobs/{hash}/{size}` would read
            // "blobs" as the uuid and then complain about the hash.
            Some((&uuid, _)) if uuid.is_empty() || uuid == BLOBS || uuid == COMPRESSED_BLOBS => {
                return Err(malformed(name, "the upload uuid is missing"));
            }
            Some((&uuid, rest)) => (uuid, rest),
            None => return Err(malformed(name, "the upload uuid is missing")),
        };
        let (marker, rest) = match rest.split_first() {
            Some((&marker, rest)) if marker == BLOBS || marker == COMPRESSED_BLOBS => {
                (marker, rest)
            }
            other => {
                let found = other
                    .map(|(segment, _)| format!(", found {:?}", clip(segment)))
                    .unwrap_or_default();
                return Err(malformed(
                    name,
                    format!(
                        "expected \"blobs\" or \"compressed-blobs\" after the upload uuid{found}"
                    ),
                ));
            }
        };
        let blob = parse_blob(name, marker, rest)?;
        Ok(WriteResource {
            instance_name,
            uuid: uuid.to_owned(),
            compressor: blob.compressor,
            digest: blob.digest,
            metadata: blob.after_size.map(|segments| segments.join("/")),
        })
    }
}

impl FromStr for ReadResource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ReadResource::parse(s)
    }
}

impl FromStr for WriteResource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        WriteResource::parse(s)
    }
}

impl fmt::Display for ReadResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_instance(f, &self.instance_name)?;
        write_blob(f, self.compressor, &self.digest)
    }
}

impl fmt::Display for WriteResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_instance(f, &self.instance_name)?;
        write!(f, "{UPLOADS}/{}/", self.uuid)?;
        write_blob(f, self.compressor, &self.digest)?;
        match &self.metadata {
            Some(metadata) => write!(f, "/{metadata}"),
            None => Ok(()),
        }
    }
}

fn write_instance(f: &mut fmt::Formatter<'_>, instance_name: &str) -> fmt::Result {
    if instance_name.is_empty() {
        Ok(())
    } else {
        write!(f, "{instance_name}/")
    }
}

fn write_blob(
    f: &mut fmt::Formatter<'_>,
    compressor: Option<Compressor>,
    digest: &Digest,
) -> fmt::Result {
    match compressor {
        Some(c) => write!(f, "{COMPRESSED_BLOBS}/{c}/")?,
        None => write!(f, "{BLOBS}/")?,
    }
    // SHA-256 is the default and is left out, as clients before REAPI 2.5
    // expect; every other function is named, since hash lengths are shared.
    match digest.function() {
        DigestFunction::Sha256 => {}
        other => write!(f, "{other}/")?,
    }
    write!(f, "{}/{}", digest.hash_hex(), digest.size())
}

/// Splits off the instance name: the segments before the first reserved word.
/// Returns the instance name, the reserved word and the segments after it.
fn split_instance<'n, 's>(
    name: &str,
    segments: &'s [&'n str],
) -> Result<(String, &'n str, &'s [&'n str])> {
    if name.is_empty() {
        return Err(malformed(name, "the name is empty"));
    }
    let Some(position) = segments
        .iter()
        .position(|segment| RESERVED_SEGMENTS.contains(segment))
    else {
        return Err(malformed(
            name,
            "no \"blobs\", \"compressed-blobs\" or \"uploads\" segment",
        ));
    };
    let (instance, rest) = segments.split_at(position);
    let Some((&marker, rest)) = rest.split_first() else {
        // `position` came from `segments`, so `rest` starts with the marker.
        return Err(malformed(name, "no resource part after the instance name"));
    };
    if instance.iter().any(|segment| segment.is_empty()) {
        return Err(malformed(name, "the instance name has an empty segment"));
    }
    Ok((instance.join("/"), marker, rest))
}

/// The error for a name whose first reserved word is not the one expected.
fn wrong_marker(name: &str, marker: &str, expected_kind: &str, expected_words: &str) -> Error {
    let what = match marker {
        UPLOADS => format!("this is an upload name, {expected_kind} name was expected"),
        BLOBS | COMPRESSED_BLOBS => {
            format!("this is a download name, {expected_kind} name was expected")
        }
        _ => format!(
            "found the reserved word {marker:?}, which may not be part of an instance \
             name, where {expected_words} was expected"
        ),
    };
    malformed(name, what)
}

/// The part of a name from `blobs` or `compressed-blobs` on.
struct BlobPart<'s, 'n> {
    compressor: Option<Compressor>,
    digest: Digest,
    /// The segments after the size, `None` if the name ends at the size.
    after_size: Option<&'s [&'n str]>,
}

/// Parses `blobs/{digest_function/}{hash}/{size}...` or
/// `compressed-blobs/{compressor}/{digest_function/}{hash}/{size}...`;
/// `rest` is what follows `marker`.
fn parse_blob<'s, 'n>(name: &str, marker: &str, rest: &'s [&'n str]) -> Result<BlobPart<'s, 'n>> {
    let (compressor, rest) = if marker == COMPRESSED_BLOBS {
        let Some((&compressor, rest)) = rest.split_first() else {
            return Err(malformed(name, "the compressor is missing"));
        };
        (parse_compressor(name, compressor)?, rest)
    } else {
        (None, rest)
    };
    let (digest_function, rest) = match rest.split_first() {
        Some((&segment, tail)) => match parse_digest_function(name, segment)? {
            Some(function) => (function, tail),
            None => (DigestFunction::Sha256, rest),
        },
        None => (DigestFunction::Sha256, rest),
    };
    let (hash, size, after_size) = match rest {
        [] | [""] => return Err(malformed(name, "the hash and size are missing")),
        [_] => return Err(malformed(name, "the size is missing")),
        [hash, size] => (*hash, *size, None),
        [hash, size, tail @ ..] => (*hash, *size, Some(tail)),
    };
    // Checked before the size: with an unknown function name in front, the
    // "size" is really the hash and complaining about it would mislead.
    if is_function_name(hash) {
        return Err(malformed(
            name,
            format!("expected the hash after the digest function, found {hash:?}"),
        ));
    }
    if looks_like_function_name(hash) {
        return Err(malformed(
            name,
            format!(
                "{:?} is neither a hash nor a known digest function",
                clip(hash)
            ),
        ));
    }
    let size = parse_size(size).map_err(|e| malformed(name, e.message()))?;
    let digest =
        Digest::from_hex(digest_function, hash, size).map_err(|e| malformed(name, e.message()))?;
    Ok(BlobPart {
        compressor,
        digest,
        after_size,
    })
}

fn parse_compressor(name: &str, segment: &str) -> Result<Option<Compressor>> {
    // A hash here means the compressor was left out; saying so beats
    // calling the hash an unknown compressor.
    if segment.is_empty() || Digest::from_hex(DigestFunction::Sha256, segment, 0).is_ok() {
        return Err(malformed(name, "the compressor is missing"));
    }
    match segment {
        "zstd" => Ok(Some(Compressor::Zstd)),
        "deflate" => Ok(Some(Compressor::Deflate)),
        // Legal per the spec's Compressor enum; it just means "uncompressed".
        "identity" => Ok(None),
        other => Err(malformed(
            name,
            format!(
                "compressor {:?} is not supported; use \"zstd\" or \"deflate\"",
                clip(other)
            ),
        )),
    }
}

/// `Some` if `segment` names a digest function we serve, `None` if it is not
/// a function name (and so should be the hash), an error if it names one we
/// do not serve.
fn parse_digest_function(name: &str, segment: &str) -> Result<Option<DigestFunction>> {
    if let Some(function) = DigestFunction::from_name(segment) {
        return Ok(Some(function));
    }
    if is_function_name(segment) {
        return Err(malformed(
            name,
            format!("digest function {segment:?} is not supported; this server serves sha256 and blake3"),
        ));
    }
    let lowercase = segment.to_ascii_lowercase();
    if is_function_name(&lowercase) {
        return Err(malformed(
            name,
            format!(
                "digest function {:?} must be written in lowercase",
                clip(segment)
            ),
        ));
    }
    Ok(None)
}

/// Whether `segment` is the resource-name spelling of a REAPI digest function,
/// served or not.
fn is_function_name(segment: &str) -> bool {
    DigestFunction::from_name(segment).is_some() || UNSUPPORTED_FUNCTIONS.contains(&segment)
}

/// A short lowercase word that cannot be hex: what an unknown digest function
/// name in the hash position looks like.
fn looks_like_function_name(segment: &str) -> bool {
    segment.len() <= 16
        && segment.starts_with(|c: char| c.is_ascii_lowercase())
        && segment
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && segment.bytes().any(|b| matches!(b, b'g'..=b'z'))
}

fn malformed(name: &str, what: impl AsRef<str>) -> Error {
    Error::invalid_argument(format!(
        "invalid resource name {:?}: {}",
        clip(name),
        clip(what.as_ref())
    ))
}

/// At most `MAX_QUOTED` characters of `s`, marked when cut.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_QUOTED) {
        Some((end, _)) => format!("{}...", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn hello() -> Digest {
        Digest::of_bytes(b"hello")
    }

    fn read(instance: &str, compressor: Option<Compressor>) -> ReadResource {
        ReadResource::new(instance, hello()).with_compressor(compressor)
    }

    fn write(
        instance: &str,
        compressor: Option<Compressor>,
        metadata: Option<&str>,
    ) -> WriteResource {
        WriteResource::new(instance, "7b3c-uuid", hello())
            .with_compressor(compressor)
            .with_metadata(metadata.map(str::to_owned))
    }

    #[test]
    fn parses_every_download_form() {
        let cases = [
            (format!("blobs/{HELLO}/5"), read("", None)),
            (format!("blobs/sha256/{HELLO}/5"), read("", None)),
            (format!("main/blobs/{HELLO}/5"), read("main", None)),
            (format!("main/blobs/sha256/{HELLO}/5"), read("main", None)),
            (format!("a/b/c/blobs/{HELLO}/5"), read("a/b/c", None)),
            (format!("a/b/c/blobs/sha256/{HELLO}/5"), read("a/b/c", None)),
            (
                format!("compressed-blobs/zstd/{HELLO}/5"),
                read("", Some(Compressor::Zstd)),
            ),
            (
                format!("main/compressed-blobs/deflate/{HELLO}/5"),
                read("main", Some(Compressor::Deflate)),
            ),
            (
                format!("a/b/c/compressed-blobs/zstd/sha256/{HELLO}/5"),
                read("a/b/c", Some(Compressor::Zstd)),
            ),
            (
                format!("a/b/compressed-blobs/identity/{HELLO}/5"),
                read("a/b", None),
            ),
            // Capitalised words are not reserved.
            (format!("Blobs/blobs/{HELLO}/5"), read("Blobs", None)),
        ];
        for (name, expected) in cases {
            assert_eq!(ReadResource::parse(&name).unwrap(), expected, "{name}");
            assert_eq!(name.parse::<ReadResource>().unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn parses_every_upload_form() {
        let u = "7b3c-uuid";
        let cases = [
            (
                format!("uploads/{u}/blobs/{HELLO}/5"),
                write("", None, None),
            ),
            (
                format!("uploads/{u}/blobs/sha256/{HELLO}/5"),
                write("", None, None),
            ),
            (
                format!("main/uploads/{u}/blobs/{HELLO}/5"),
                write("main", None, None),
            ),
            (
                format!("a/b/c/uploads/{u}/blobs/sha256/{HELLO}/5"),
                write("a/b/c", None, None),
            ),
            (
                format!("main/uploads/{u}/compressed-blobs/zstd/{HELLO}/5"),
                write("main", Some(Compressor::Zstd), None),
            ),
            (
                format!("uploads/{u}/compressed-blobs/deflate/sha256/{HELLO}/5"),
                write("", Some(Compressor::Deflate), None),
            ),
            (
                format!("uploads/{u}/compressed-blobs/identity/{HELLO}/5"),
                write("", None, None),
            ),
            (
                format!("uploads/{u}/blobs/{HELLO}/5/meta"),
                write("", None, Some("meta")),
            ),
            (
                format!("a/b/uploads/{u}/compressed-blobs/zstd/{HELLO}/5/x/y/z"),
                write("a/b", Some(Compressor::Zstd), Some("x/y/z")),
            ),
            // Metadata is opaque: reserved words and empty segments included.
            (
                format!("uploads/{u}/blobs/{HELLO}/5/blobs//uploads/"),
                write("", None, Some("blobs//uploads/")),
            ),
            (
                format!("uploads/{u}/blobs/{HELLO}/5/"),
                write("", None, Some("")),
            ),
        ];
        for (name, expected) in cases {
            assert_eq!(WriteResource::parse(&name).unwrap(), expected, "{name}");
            assert_eq!(name.parse::<WriteResource>().unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn uuid_is_any_non_empty_segment() {
        let name = format!("uploads/not a uuid: actions!/blobs/{HELLO}/5");
        let parsed = WriteResource::parse(&name).unwrap();
        assert_eq!(parsed.uuid, "not a uuid: actions!");
        assert_eq!(parsed.to_string(), name);
    }

    #[test]
    fn prints_the_canonical_form() {
        let cases = [
            (read("", None).to_string(), format!("blobs/{HELLO}/5")),
            (
                read("a/b", None).to_string(),
                format!("a/b/blobs/{HELLO}/5"),
            ),
            (
                read("m", Some(Compressor::Zstd)).to_string(),
                format!("m/compressed-blobs/zstd/{HELLO}/5"),
            ),
            (
                read("", Some(Compressor::Deflate)).to_string(),
                format!("compressed-blobs/deflate/{HELLO}/5"),
            ),
            (
                write("", None, None).to_string(),
                format!("uploads/7b3c-uuid/blobs/{HELLO}/5"),
            ),
            (
                write("a/b", Some(Compressor::Zstd), Some("x/y")).to_string(),
                format!("a/b/uploads/7b3c-uuid/compressed-blobs/zstd/{HELLO}/5/x/y"),
            ),
            (
                write("", None, Some("")).to_string(),
                format!("uploads/7b3c-uuid/blobs/{HELLO}/5/"),
            ),
        ];
        for (printed, expected) in cases {
            assert_eq!(printed, expected);
        }
        // Explicit sha256 and identity are canonicalised away.
        let explicit = format!("i/compressed-blobs/identity/sha256/{HELLO}/5");
        assert_eq!(
            ReadResource::parse(&explicit).unwrap().to_string(),
            format!("i/blobs/{HELLO}/5")
        );
    }

    #[test]
    fn blake3_names_carry_the_function_into_the_digest() {
        let blake = DigestFunction::Blake3.digest_of(b"hello");
        let hex = blake.hash_hex();
        let read = ReadResource::parse(&format!("main/blobs/blake3/{hex}/5")).unwrap();
        assert_eq!(read.digest, blake);
        assert_eq!(read.to_string(), format!("main/blobs/blake3/{hex}/5"));
        let write = WriteResource::parse(&format!(
            "uploads/u/compressed-blobs/zstd/blake3/{hex}/5/meta"
        ))
        .unwrap();
        assert_eq!(write.digest, blake);
        assert_eq!(write.compressor, Some(Compressor::Zstd));
        // The same hash without the function segment is a SHA-256 digest:
        // another blob.
        let plain = ReadResource::parse(&format!("main/blobs/{hex}/5")).unwrap();
        assert_eq!(plain.digest.function(), DigestFunction::Sha256);
        assert_ne!(plain.digest, blake);
        assert!(ReadResource::parse(&format!("blobs/BLAKE3/{hex}/5")).is_err());
        assert!(ReadResource::parse(&format!("blobs/blake3/{}/5", &hex[..40])).is_err());
    }

    #[test]
    fn printing_round_trips() {
        let empty = Digest::EMPTY;
        let big = Digest::new(DigestFunction::Sha256, [0xab; 32], i64::MAX as u64);
        let blake = DigestFunction::Blake3.digest_of(b"hello");
        for instance in ["", "main", "a/b/c"] {
            for compressor in [None, Some(Compressor::Zstd), Some(Compressor::Deflate)] {
                for digest in [hello(), empty, big, blake, Digest::EMPTY_BLAKE3] {
                    let r = ReadResource::new(instance, digest).with_compressor(compressor);
                    assert_eq!(ReadResource::parse(&r.to_string()).unwrap(), r, "{r}");
                    for metadata in [None, Some(""), Some("m"), Some("m/n//o/")] {
                        let w = WriteResource::new(instance, "u-1", digest)
                            .with_compressor(compressor)
                            .with_metadata(metadata.map(str::to_owned));
                        assert_eq!(WriteResource::parse(&w.to_string()).unwrap(), w, "{w}");
                    }
                }
            }
        }
    }

    fn assert_invalid(result: Result<impl fmt::Debug>, name: &str) -> String {
        let err = result.expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err}");
        assert!(
            err.message().contains(&format!("{name:?}")),
            "message does not quote {name:?}: {err}"
        );
        err.message().to_owned()
    }

    #[test]
    fn rejects_malformed_download_names() {
        let short = &HELLO[..63];
        let cases = [
            String::new(),
            "blobs".into(),
            "blobs/".into(),
            "compressed-blobs".into(),
            "compressed-blobs/zstd".into(),
            format!("compressed-blobs/{HELLO}/5"),
            format!("blobs/{HELLO}"),
            format!("blobs/{HELLO}/"),
            "blobs/5".into(),
            "blobs//5".into(),
            format!("blobs/{short}/5"),
            format!("blobs/{HELLO}0/5"),
            format!("blobs/{}/5", HELLO.to_uppercase()),
            format!("blobs/{short}g/5"),
            format!("blobs/{HELLO}/-1"),
            format!("blobs/{HELLO}/+5"),
            format!("blobs/{HELLO}/5.0"),
            format!("blobs/{HELLO}/five"),
            format!("blobs/{HELLO}/ 5"),
            format!("blobs/{HELLO}/99999999999999999999"),
            format!("blobs/{HELLO}/9223372036854775808"),
            format!("compressed-blobs/gzip/{HELLO}/5"),
            format!("compressed-blobs/ZSTD/{HELLO}/5"),
            format!("compressed-blobs//{HELLO}/5"),
            format!("blobs/sha1/{HELLO}/5"),
            format!("blobs/SHA256/{HELLO}/5"),
            format!("blobs/sha3/{HELLO}/5"),
            format!("blobs/sha256/sha256/{HELLO}/5"),
            format!("blobs/{HELLO}/sha256/5"),
            format!("blobs/{HELLO}/5/"),
            format!("blobs/{HELLO}/5/extra"),
            format!("main/blobs/{HELLO}/5/a/b"),
            format!("/blobs/{HELLO}/5"),
            format!("//blobs/{HELLO}/5"),
            format!("a//b/blobs/{HELLO}/5"),
            format!("a/b//blobs/{HELLO}/5"),
            format!("actions/blobs/{HELLO}/5"),
            format!("a/operations/b/blobs/{HELLO}/5"),
            format!("capabilities/{HELLO}/5"),
            format!("main/{HELLO}/5"),
            format!("uploads/u/blobs/{HELLO}/5"),
            format!("main/uploads/u/blobs/{HELLO}/5"),
            format!("blobs/blobs/{HELLO}/5"),
            format!("main/blobs/uploads/{HELLO}/5"),
        ];
        for name in cases {
            assert_invalid(ReadResource::parse(&name), &name);
        }
    }

    #[test]
    fn rejects_malformed_upload_names() {
        let short = &HELLO[..63];
        let cases = [
            String::new(),
            "uploads".into(),
            "uploads/".into(),
            "uploads/u".into(),
            "uploads/u/".into(),
            "uploads/u/blobs".into(),
            format!("uploads/blobs/{HELLO}/5"),
            format!("uploads/compressed-blobs/zstd/{HELLO}/5"),
            format!("uploads//blobs/{HELLO}/5"),
            format!("uploads/u/{HELLO}/5"),
            format!("uploads/u/actions/{HELLO}/5"),
            format!("uploads/u/blobs/{HELLO}"),
            format!("uploads/u/blobs/{HELLO}/"),
            format!("uploads/u/blobs/{short}/5"),
            format!("uploads/u/blobs/{}/5", HELLO.to_uppercase()),
            format!("uploads/u/blobs/{HELLO}/-1"),
            format!("uploads/u/blobs/{HELLO}/+5"),
            format!("uploads/u/blobs/{HELLO}/x"),
            format!("uploads/u/blobs/{HELLO}/18446744073709551616"),
            format!("uploads/u/compressed-blobs/brotli/{HELLO}/5"),
            format!("uploads/u/compressed-blobs/{HELLO}/5"),
            format!("uploads/u/blobs/md5/{HELLO}/5"),
            format!("uploads/u/blobs/sha256tree/{HELLO}/5"),
            format!("/uploads/u/blobs/{HELLO}/5"),
            format!("a//uploads/u/blobs/{HELLO}/5"),
            format!("compressed-blobs/uploads/u/blobs/{HELLO}/5"),
            format!("a/capabilities/uploads/u/blobs/{HELLO}/5"),
            format!("blobs/{HELLO}/5"),
            format!("main/compressed-blobs/zstd/{HELLO}/5"),
        ];
        for name in cases {
            assert_invalid(WriteResource::parse(&name), &name);
        }
    }

    #[test]
    fn error_messages_say_what_is_wrong() {
        let cases = [
            (format!("blobs/sha1/{HELLO}/5"), "not supported"),
            (format!("blobs/sha3/{HELLO}/5"), "digest function"),
            (
                format!("blobs/sha256/sha256/{HELLO}/5"),
                "expected the hash",
            ),
            (
                format!("compressed-blobs/{HELLO}/5"),
                "compressor is missing",
            ),
            (
                format!("compressed-blobs//{HELLO}/5"),
                "compressor is missing",
            ),
            ("blobs/".to_owned(), "hash and size are missing"),
            (format!("a/capabilities/blobs/{HELLO}/5"), "reserved word"),
            (format!("blobs/SHA256/{HELLO}/5"), "lowercase"),
            (format!("compressed-blobs/gzip/{HELLO}/5"), "\"gzip\""),
            (format!("blobs/{HELLO}/5/x"), "after"),
            (format!("a//blobs/{HELLO}/5"), "empty segment"),
            (format!("actions/blobs/{HELLO}/5"), "\"actions\""),
            (format!("uploads/u/blobs/{HELLO}/5"), "upload name"),
            (format!("blobs/{HELLO}"), "size is missing"),
            (format!("blobs/{HELLO}/-1"), "size"),
            ("blobs".to_owned(), "missing"),
            (String::new(), "empty"),
        ];
        for (name, needle) in cases {
            let message = assert_invalid(ReadResource::parse(&name), &name);
            assert!(message.contains(needle), "{name}: {message}");
        }
        let name = format!("uploads/blobs/{HELLO}/5");
        let message = assert_invalid(WriteResource::parse(&name), &name);
        assert!(message.contains("uuid is missing"), "{message}");
        let name = format!("blobs/{HELLO}/5");
        let message = assert_invalid(WriteResource::parse(&name), &name);
        assert!(message.contains("download name"), "{message}");
    }

    #[test]
    fn long_names_are_clipped_in_errors() {
        let name = format!("{}/blobs/{HELLO}/x", "i".repeat(100_000));
        let err = ReadResource::parse(&name).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().len() < 2 * MAX_QUOTED + 200,
            "{}",
            err.message().len()
        );
        // Multi-byte characters are cut on a character boundary.
        let name = "é".repeat(1000);
        let err = WriteResource::parse(&name).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for name in [
            "/",
            "//",
            "///",
            "blobs//",
            "uploads//",
            "compressed-blobs/",
            "a/",
            "é/blobs/é/é",
            "uploads/u/compressed-blobs",
            "uploads/u/compressed-blobs/zstd/sha256",
        ] {
            assert_eq!(
                ReadResource::parse(name).unwrap_err().code(),
                Code::InvalidArgument,
                "{name}"
            );
            assert_eq!(
                WriteResource::parse(name).unwrap_err().code(),
                Code::InvalidArgument,
                "{name}"
            );
        }
    }
}
