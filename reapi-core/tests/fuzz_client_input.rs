//! Property tests of everything that parses what a client sends (arbtest,
//! so they run in plain `cargo test`): resource names, digests, sizes,
//! working directories and output paths, Directory messages and whole input
//! trees. None may panic or hang on any input; what they accept must
//! round-trip; what they refuse is INVALID_ARGUMENT with a bounded message.
//!
//! `cargo test` gives each property arbtest's default budget (a fraction of
//! a second); `scripts/fuzz` runs each for longer (`ARBTEST_BUDGET_MS`).
//! A failure prints the seed to replay it with.

use std::collections::HashMap;

use arbtest::arbitrary::{Result as ArbResult, Unstructured};
use reapi_core::digest::{parse_size, DigestFunction};
use reapi_core::input_tree::{
    normalize_working_directory, resolve_output_path, validate_directory, validate_output_path,
    validate_tree,
};
use reapi_core::proto::remote_execution as re;
use reapi_core::resource_name::{ReadResource, WriteResource};
use reapi_core::{Digest, Error};
use tonic::Code;

/// Longest error message a client may get back, whatever it sent: messages
/// travel in HTTP/2 trailers.
const MAX_MESSAGE: usize = 2048;

const SHA256_OF_NOTHING: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Pieces of valid and almost-valid names, so that the generator reaches
/// the parsers' deeper branches rather than failing at the first segment.
const PIECES: &[&str] = &[
    "",
    "blobs",
    "compressed-blobs",
    "uploads",
    "zstd",
    "deflate",
    "identity",
    "sha256",
    "blake3",
    "md5",
    ".",
    "..",
    "0",
    "5",
    "-1",
    "18446744073709551615",
    "18446744073709551616",
    "007",
    SHA256_OF_NOTHING,
    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "e3b0",
    "instance",
    "a b",
    "\0",
    "é",
    "%2F",
    "1f8f3c2e-3a1b-4c5d-9e6f-7a8b9c0d1e2f",
];

fn piece(u: &mut Unstructured) -> ArbResult<String> {
    Ok(if u.ratio(1, 5)? {
        u.arbitrary::<String>()?
    } else {
        u.choose(PIECES)?.to_string()
    })
}

/// Segments joined by `/`, sometimes with a leading or doubled slash.
fn path_like(u: &mut Unstructured) -> ArbResult<String> {
    let segments = u.int_in_range(0..=9)?;
    let mut text = String::new();
    if u.ratio(1, 8)? {
        text.push('/');
    }
    for i in 0..segments {
        if i > 0 {
            text.push('/');
            if u.ratio(1, 16)? {
                text.push('/');
            }
        }
        text.push_str(&piece(u)?);
    }
    Ok(text)
}

fn assert_refusal(err: &Error, input: &str) {
    assert_eq!(err.code(), Code::InvalidArgument, "{input:?}: {err}");
    assert!(
        err.to_string().len() <= MAX_MESSAGE,
        "{} bytes of error for {} bytes of input",
        err.to_string().len(),
        input.len()
    );
}

#[test]
fn resource_names_are_parsed_or_refused_and_round_trip() {
    arbtest::arbtest(|u| {
        let name = path_like(u)?;
        match ReadResource::parse(&name) {
            Ok(read) => {
                let again = ReadResource::parse(&read.to_string()).expect("printed name parses");
                assert_eq!(again, read, "{name:?}");
            }
            Err(err) => assert_refusal(&err, &name),
        }
        match WriteResource::parse(&name) {
            Ok(write) => {
                let again = WriteResource::parse(&write.to_string()).expect("printed name parses");
                assert_eq!(again, write, "{name:?}");
            }
            Err(err) => assert_refusal(&err, &name),
        }
        Ok(())
    });
}

#[test]
fn long_resource_names_get_short_errors() {
    arbtest::arbtest(|u| {
        let mut name = path_like(u)?;
        let filler = u.int_in_range(1000..=100_000)?;
        name.push_str(&"x".repeat(filler));
        if let Err(err) = ReadResource::parse(&name) {
            assert_refusal(&err, &name);
        }
        if let Err(err) = WriteResource::parse(&name) {
            assert_refusal(&err, &name);
        }
        Ok(())
    });
}

#[test]
fn digests_are_parsed_or_refused() {
    arbtest::arbtest(|u| {
        let hash = piece(u)?;
        let size: i64 = u.arbitrary()?;
        let proto = re::Digest {
            hash: hash.clone(),
            size_bytes: size,
        };
        let function = if u.arbitrary()? {
            DigestFunction::Blake3
        } else {
            DigestFunction::Sha256
        };
        match Digest::from_proto(function, &proto) {
            Ok(digest) => {
                assert!(size >= 0);
                assert_eq!(digest.size(), size as u64);
                assert_eq!(digest.hash_hex(), hash);
                assert_eq!(digest.function(), function);
                assert_eq!(digest.to_proto(), proto);
            }
            Err(err) => assert_refusal(&err, &hash),
        }
        let text = piece(u)?;
        match parse_size(&text) {
            Ok(n) => assert_eq!(text.parse::<u64>().ok(), Some(n), "{text:?}"),
            Err(err) => assert_refusal(&err, &text),
        }
        Ok(())
    });
}

#[test]
fn working_directories_normalize_once_and_for_all() {
    arbtest::arbtest(|u| {
        let path = path_like(u)?;
        match normalize_working_directory(&path) {
            Ok(normal) => {
                assert_eq!(normalize_working_directory(&normal).unwrap(), normal);
                assert!(
                    !normal.starts_with('/') && !normal.ends_with('/'),
                    "{normal:?}"
                );
                assert!(
                    normal.is_empty()
                        || normal
                            .split('/')
                            .all(|s| !s.is_empty() && s != "." && s != ".."),
                    "{path:?} -> {normal:?}"
                );
            }
            Err(err) => assert_refusal(&err, &path),
        }
        let output = path_like(u)?;
        if let Err(err) = validate_output_path(&output) {
            assert_refusal(&err, &output);
        }
        match resolve_output_path(&path, &output) {
            Ok(resolved) => assert!(!resolved.starts_with('/'), "{resolved:?}"),
            Err(err) => assert_refusal(&err, &output),
        }
        Ok(())
    });
}

fn node_name(u: &mut Unstructured) -> ArbResult<String> {
    Ok(if u.ratio(1, 3)? {
        path_like(u)?
    } else {
        u.choose(&["a", "b", "c", "lib", "x.o"])?.to_string()
    })
}

fn some_digest(u: &mut Unstructured, pool: usize) -> ArbResult<re::Digest> {
    let i = u.int_in_range(0..=pool)? as u8;
    Ok(Digest::of_bytes(&[i]).to_proto())
}

/// A Directory of a few entries of each kind, names and targets drawn to
/// hit the validator's rules (order, duplicates, `..`, absolute links).
fn directory(u: &mut Unstructured, pool: usize) -> ArbResult<re::Directory> {
    let mut dir = re::Directory::default();
    for _ in 0..u.int_in_range(0..=4)? {
        dir.files.push(re::FileNode {
            name: node_name(u)?,
            digest: Some(some_digest(u, pool)?),
            is_executable: u.arbitrary()?,
            ..Default::default()
        });
    }
    for _ in 0..u.int_in_range(0..=3)? {
        dir.directories.push(re::DirectoryNode {
            name: node_name(u)?,
            digest: if u.ratio(1, 10)? {
                None
            } else {
                Some(some_digest(u, pool)?)
            },
        });
    }
    for _ in 0..u.int_in_range(0..=3)? {
        dir.symlinks.push(re::SymlinkNode {
            name: node_name(u)?,
            target: path_like(u)?,
            ..Default::default()
        });
    }
    if u.ratio(1, 2)? {
        dir.files.sort_by(|a, b| a.name.cmp(&b.name));
        dir.directories.sort_by(|a, b| a.name.cmp(&b.name));
        dir.symlinks.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(dir)
}

#[test]
fn directories_are_checked_without_panicking() {
    arbtest::arbtest(|u| {
        let dir = directory(u, 4)?;
        let at = path_like(u)?;
        let absolute: bool = u.arbitrary()?;
        if let Err(err) = validate_directory(&dir, &at, absolute) {
            assert_refusal(&err, &at);
        } else {
            for name in dir
                .files
                .iter()
                .map(|f| &f.name)
                .chain(dir.directories.iter().map(|d| &d.name))
                .chain(dir.symlinks.iter().map(|s| &s.name))
            {
                assert!(
                    !name.is_empty() && !name.contains('/') && !name.contains('\0'),
                    "accepted entry name {name:?}"
                );
                assert!(name != "." && name != "..", "accepted entry name {name:?}");
            }
        }
        Ok(())
    });
}

#[test]
fn input_trees_with_shared_and_cyclic_subtrees_end() {
    arbtest::arbtest(|u| {
        // Directories refer to one another by digest, cycles included, as a
        // hostile client could make the lookup answer.
        let pool = u.int_in_range(1..=6)?;
        let mut by_digest: HashMap<Digest, re::Directory> = HashMap::new();
        for i in 0..=pool {
            let digest = Digest::of_bytes(&[i as u8]);
            by_digest.insert(digest, directory(u, pool)?);
        }
        let root = directory(u, pool)?;
        let absolute: bool = u.arbitrary()?;
        let mut lookups = 0usize;
        let result = validate_tree(
            DigestFunction::Sha256,
            &root,
            |digest| {
                lookups += 1;
                by_digest
                    .get(digest)
                    .cloned()
                    .ok_or_else(|| Error::not_found(format!("{digest}")))
            },
            absolute,
        );
        // A walk that followed cycles would fetch without end.
        assert!(lookups <= 64 * (pool + 1), "{lookups} lookups");
        if let Err(err) = result {
            assert!(
                matches!(err.code(), Code::InvalidArgument | Code::NotFound),
                "{err}"
            );
        }
        Ok(())
    });
}
