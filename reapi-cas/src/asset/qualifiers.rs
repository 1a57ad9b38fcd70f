//! The qualifiers of a Remote Asset request: which this server understands
//! (`checksum.sri`, checked against what it fetches; `bazel.canonical_id`,
//! Bazel's cache key for a download, kept only as part of the asset's
//! identity; `http_header:` and `http_header_url:`, headers for the
//! download, see [`super::headers`]), and the refusal, naming them, of any
//! other: the spec asks a server to refuse qualifiers it does not support
//! rather than ignore a constraint the client relies on.

use base64::Engine as _;
use reapi_core::proto::remote_asset as re_asset;
use reapi_core::{Error, Result};
use sha2::{Digest as _, Sha256, Sha384, Sha512};

use super::headers::FetchHeaders;

/// Qualifier names this server supports.
pub const CHECKSUM_SRI: &str = "checksum.sri";
pub const CANONICAL_ID: &str = "bazel.canonical_id";
const SUPPORTED: [&str; 2] = [CHECKSUM_SRI, CANONICAL_ID];

/// What a request's qualifiers say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Qualifiers {
    /// The checksum fetched content must have.
    pub checksum: Option<Checksum>,
    /// Every qualifier but the headers, sorted by name: the asset's
    /// identity beside its URI.
    pub all: Vec<(String, String)>,
    /// Headers to send with the download; not part of the identity.
    pub headers: FetchHeaders,
}

/// A Subresource Integrity hash: the strongest one of an SRI value that
/// this server can check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checksum {
    Sha256(Vec<u8>),
    Sha384(Vec<u8>),
    Sha512(Vec<u8>),
}

impl Checksum {
    pub fn hasher(&self) -> ChecksumHasher {
        match self {
            Checksum::Sha256(_) => ChecksumHasher::Sha256(Sha256::new()),
            Checksum::Sha384(_) => ChecksumHasher::Sha384(Sha384::new()),
            Checksum::Sha512(_) => ChecksumHasher::Sha512(Sha512::new()),
        }
    }

    fn expected(&self) -> &[u8] {
        match self {
            Checksum::Sha256(h) | Checksum::Sha384(h) | Checksum::Sha512(h) => h,
        }
    }

    /// The SRI spelling, e.g. `sha256-…`.
    pub fn to_sri(&self) -> String {
        sri(self.algorithm(), self.expected())
    }

    fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Sha384(_) => "sha384",
            Checksum::Sha512(_) => "sha512",
        }
    }
}

fn sri(algorithm: &str, hash: &[u8]) -> String {
    format!(
        "{algorithm}-{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// Hashes fetched bytes for a [`Checksum`].
pub enum ChecksumHasher {
    Sha256(Sha256),
    Sha384(Sha384),
    Sha512(Sha512),
}

impl ChecksumHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            ChecksumHasher::Sha256(h) => h.update(data),
            ChecksumHasher::Sha384(h) => h.update(data),
            ChecksumHasher::Sha512(h) => h.update(data),
        }
    }

    /// Whether the bytes hashed have `expected`; the error says what they
    /// had instead.
    pub fn check(self, expected: &Checksum) -> std::result::Result<(), String> {
        let (algorithm, got) = match self {
            ChecksumHasher::Sha256(h) => ("sha256", h.finalize().to_vec()),
            ChecksumHasher::Sha384(h) => ("sha384", h.finalize().to_vec()),
            ChecksumHasher::Sha512(h) => ("sha512", h.finalize().to_vec()),
        };
        if got == expected.expected() {
            Ok(())
        } else {
            Err(format!(
                "checksum mismatch: expected {}, got {}",
                expected.to_sri(),
                sri(algorithm, &got)
            ))
        }
    }
}

/// Reads `qualifiers`; unsupported or repeated names and unreadable values
/// are INVALID_ARGUMENT naming them.
pub fn parse(qualifiers: &[re_asset::Qualifier]) -> Result<Qualifiers> {
    let mut names: Vec<&str> = qualifiers.iter().map(|q| q.name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(Error::invalid_argument(format!(
            "qualifier {:?} is given more than once",
            pair[0]
        )));
    }
    let mut headers = FetchHeaders::default();
    let mut all = Vec::new();
    for q in qualifiers {
        if !headers.take(&q.name, &q.value)? {
            all.push((q.name.clone(), q.value.clone()));
        }
    }
    all.sort();
    let unsupported: Vec<&str> = all
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !SUPPORTED.contains(name))
        .collect();
    if !unsupported.is_empty() {
        return Err(Error::invalid_argument(format!(
            "unsupported qualifiers: {} (this server supports {}, http_header:NAME and \
             http_header_url:INDEX:NAME)",
            unsupported.join(", "),
            SUPPORTED.join(", ")
        )));
    }
    let checksum = all
        .iter()
        .find(|(name, _)| name == CHECKSUM_SRI)
        .map(|(_, value)| parse_sri(value))
        .transpose()?;
    Ok(Qualifiers {
        checksum,
        all,
        headers,
    })
}

/// An SRI value: space-separated `ALGORITHM-BASE64[?OPTIONS]`; the
/// strongest algorithm this server knows wins, as browsers do.
fn parse_sri(value: &str) -> Result<Checksum> {
    let bad = |why: &str| {
        Error::invalid_argument(format!(
            "qualifier {CHECKSUM_SRI} {:?}: {why}",
            truncated(value)
        ))
    };
    let mut best: Option<Checksum> = None;
    for item in value.split_whitespace() {
        let item = item.split('?').next().unwrap_or(item);
        let Some((algorithm, encoded)) = item.split_once('-') else {
            return Err(bad("expected ALGORITHM-BASE64"));
        };
        let (rank, length) = match algorithm {
            "sha256" => (1, 32),
            "sha384" => (2, 48),
            "sha512" => (3, 64),
            _ => continue,
        };
        let hash = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| bad("the hash is not base64"))?;
        if hash.len() != length {
            return Err(bad(&format!("a {algorithm} hash is {length} bytes")));
        }
        let checksum = match rank {
            1 => Checksum::Sha256(hash),
            2 => Checksum::Sha384(hash),
            _ => Checksum::Sha512(hash),
        };
        let stronger = best.as_ref().is_none_or(|b| strength(b) < rank);
        if stronger {
            best = Some(checksum);
        }
    }
    best.ok_or_else(|| bad("no sha256, sha384 or sha512 hash in it"))
}

fn strength(checksum: &Checksum) -> u8 {
    match checksum {
        Checksum::Sha256(_) => 1,
        Checksum::Sha384(_) => 2,
        Checksum::Sha512(_) => 3,
    }
}

fn truncated(value: &str) -> &str {
    let mut end = value.len().min(120);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// SHA-256 of `data` as an SRI value, e.g. for tests and logs.
pub fn sha256_sri(data: &[u8]) -> String {
    sri("sha256", &Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, value: &str) -> re_asset::Qualifier {
        re_asset::Qualifier {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn checksums_are_read_strongest_first_and_checked() {
        let data = b"fetched bytes";
        let sha256 = sha256_sri(data);
        let sha512 = sri("sha512", &Sha512::digest(data));
        let parsed = parse(&[q(CHECKSUM_SRI, &format!("{sha256} {sha512}?opt md5-AAAA"))]).unwrap();
        let checksum = parsed.checksum.unwrap();
        assert!(matches!(checksum, Checksum::Sha512(_)));
        let mut hasher = checksum.hasher();
        hasher.update(data);
        hasher.check(&checksum).unwrap();
        let mut wrong = checksum.hasher();
        wrong.update(b"other bytes");
        let err = wrong.check(&checksum).unwrap_err();
        assert!(
            err.contains("checksum mismatch") && err.contains(&sha512),
            "{err}"
        );
    }

    #[test]
    fn all_qualifiers_are_kept_sorted_as_the_assets_identity() {
        let parsed = parse(&[q(CANONICAL_ID, "v1"), q(CHECKSUM_SRI, &sha256_sri(b"x"))]).unwrap();
        assert_eq!(parsed.all[0].0, CANONICAL_ID);
        assert_eq!(parsed.all[1].0, CHECKSUM_SRI);
        assert_eq!(parse(&[]).unwrap(), Qualifiers::default());
        let with_header = parse(&[
            q(CANONICAL_ID, "v1"),
            q("http_header:Authorization", "Bearer t"),
        ])
        .unwrap();
        assert_eq!(
            with_header.all,
            vec![(CANONICAL_ID.to_string(), "v1".to_string())],
            "headers are not part of the identity"
        );
        assert!(!with_header.headers.is_empty());
    }

    #[test]
    fn unsupported_repeated_and_unreadable_qualifiers_are_invalid_arguments() {
        for (qualifiers, expected) in [
            (
                vec![q("vcs.commit", "abc"), q("resource_type", "x")],
                "unsupported qualifiers: resource_type, vcs.commit",
            ),
            (
                vec![q(CANONICAL_ID, "a"), q(CANONICAL_ID, "b")],
                "given more than once",
            ),
            (vec![q(CHECKSUM_SRI, "sha256-!!!")], "not base64"),
            (vec![q(CHECKSUM_SRI, "sha256-AAAA")], "32 bytes"),
            (vec![q(CHECKSUM_SRI, "md5-AAAA")], "no sha256"),
            (vec![q(CHECKSUM_SRI, "nonsense")], "ALGORITHM-BASE64"),
        ] {
            let err = parse(&qualifiers).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
            assert!(err.message().contains(expected), "{}", err.message());
        }
    }
}
