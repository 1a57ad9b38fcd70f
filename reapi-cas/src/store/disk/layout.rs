//! Where things live under the store's root, and the names of content files.
//!
//! ```text
//! {root}/cas/{instance}/{hh}/{hash}-{size}   content files, mode 0444
//! {root}/tmp/{hh}/{uuid}                     writes in progress
//! ```
//!
//! `{instance}` is the instance name encoded as one path component by the
//! crate's shared [`crate::instance_dir`] (reversible, never `.`/`..`, no
//! `/`; `@default` for the empty name), so the index can be rebuilt from the
//! tree alone. Names whose encoding exceeds 255 bytes are refused. `{hh}` is
//! the first two hex digits of the hash, so an instance has at most 256
//! shard directories; `tmp/` has the same shards, so concurrent writes do
//! not all contend for one directory's lock.

use std::path::{Path, PathBuf};

use reapi_core::digest::Digest;

use crate::instance_dir;

/// The directory holding content files.
pub(super) const CAS_DIR: &str = "cas";
/// The directory holding temp files; on the same file system as `cas`.
pub(super) const TMP_DIR: &str = "tmp";
/// The longest file name most file systems accept.
const NAME_MAX: usize = 255;

/// Encodes an instance name as one path component (the crate's shared
/// [`instance_dir`] encoding); `None` when the encoded form would be longer
/// than a file name may be.
pub(super) fn encode_instance(name: &str) -> Option<String> {
    let encoded = instance_dir::encode(name);
    (encoded.len() <= NAME_MAX).then_some(encoded)
}

/// Reverses [`encode_instance`]; `None` for a name it cannot have produced
/// (the shared decoder accepts only canonical encodings, so two directories
/// never hold one instance).
pub(super) fn decode_instance(component: &str) -> Option<String> {
    if component.len() > NAME_MAX {
        return None;
    }
    instance_dir::decode(component)
}

/// The name of a shard directory: the first two hex digits of the hash.
pub(super) fn shard_dir_name(digest: &Digest) -> String {
    hex::encode(&digest.hash()[..1])
}

/// Whether a directory name is a valid shard directory name.
pub(super) fn is_shard_dir_name(name: &str) -> bool {
    name.len() == 2 && name.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// The file name of a content file: `{hash}-{size}` for SHA-256,
/// `{function}-{hash}-{size}` for other functions (see
/// [`Digest::storage_name`]).
pub(super) fn blob_file_name(digest: &Digest) -> String {
    digest.storage_name()
}

/// Parses a content file name; `None` when malformed or not canonical, so
/// each digest has exactly one file name.
pub(super) fn parse_blob_file_name(name: &str) -> Option<Digest> {
    Digest::parse_storage_name(name)
}

/// The content file of `digest` in the instance directory `instance_dir`.
pub(super) fn blob_path(instance_dir: &Path, digest: &Digest) -> PathBuf {
    let mut path = instance_dir.join(shard_dir_name(digest));
    path.push(blob_file_name(digest));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_round_trip() {
        for name in [
            "",
            "main",
            "a/b/c",
            "Team-1/linux_x86",
            ".",
            "..",
            "_",
            "ünï/名前",
        ] {
            let enc = encode_instance(name).unwrap();
            assert!(!enc.contains('/'), "{enc}");
            assert!(enc != "." && enc != ".." && !enc.is_empty(), "{enc}");
            assert_eq!(decode_instance(&enc).as_deref(), Some(name), "{enc}");
        }
        for bad in ["", ".", "..", "a b", "%61"] {
            assert_eq!(decode_instance(bad), None, "{bad}");
        }
    }

    #[test]
    fn long_instance_names_are_refused() {
        assert!(encode_instance(&"a".repeat(255)).is_some());
        assert!(encode_instance(&"a".repeat(256)).is_none());
        assert!(encode_instance(&"/".repeat(86)).is_none());
    }

    #[test]
    fn blob_file_names_round_trip() {
        let d = Digest::of_bytes(b"hello");
        let name = blob_file_name(&d);
        assert_eq!(
            name,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824-5"
        );
        assert_eq!(parse_blob_file_name(&name), Some(d));
        assert_eq!(shard_dir_name(&d), "2c");
        assert!(is_shard_dir_name("2c"));
        let hash = d.hash_hex();
        for bad in [
            hash.clone(),
            format!("{hash}-"),
            format!("{hash}-05"),
            format!("{hash}--5"),
            format!("{hash}-+5"),
            format!("{hash}-5.tmp"),
            format!("{}-5", hash.to_uppercase()),
            format!("{}-5", &hash[1..]),
        ] {
            assert_eq!(parse_blob_file_name(&bad), None, "{bad}");
        }
        assert!(parse_blob_file_name(&format!("{}-0", Digest::EMPTY.hash_hex())).is_some());
        let blake = reapi_core::DigestFunction::Blake3.digest_of(b"hello");
        let name = blob_file_name(&blake);
        assert_eq!(name, format!("blake3-{}-5", blake.hash_hex()));
        assert_eq!(parse_blob_file_name(&name), Some(blake));
        assert_eq!(parse_blob_file_name(&format!("sha256-{hash}-5")), None);
        for bad in ["2C", "2", "2cc", "zz", ".."] {
            assert!(!is_shard_dir_name(bad), "{bad}");
        }
    }
}
