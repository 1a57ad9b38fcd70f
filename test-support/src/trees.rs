//! Input trees: [`TreeSpec`] describes one by paths and builds its
//! canonical Directory messages (names sorted, one blob per file and per
//! directory); [`file_node`] and [`dir_node`] make single nodes for trees
//! a test writes by hand (bad ones included).

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;
use reapi_core::proto::remote_execution::{Directory, DirectoryNode, FileNode, SymlinkNode};
use reapi_core::{Digest, DigestFunction};

use crate::digests::{dig, dig_msg, PDigest};

/// An input tree described by paths (with `/`): files, executables,
/// symlinks and empty directories. Directories on the way to a path are
/// made as needed.
#[derive(Clone, Debug, Default)]
pub struct TreeSpec {
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug)]
enum Entry {
    File(Bytes, bool),
    Symlink(String),
    Dir(TreeSpec),
}

/// A built input tree: its root digest and every blob in it (files and
/// encoded directories).
#[derive(Clone, Debug)]
pub struct Tree {
    pub root: PDigest,
    pub blobs: Vec<Vec<u8>>,
}

impl TreeSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// The tree of `files` (path and contents), those at `executables`
    /// marked executable.
    pub fn from_files(files: &[(String, Vec<u8>)], executables: &[String]) -> Self {
        files
            .iter()
            .fold(TreeSpec::new(), |tree, (path, contents)| {
                if executables.contains(path) {
                    tree.executable(path, contents)
                } else {
                    tree.file(path, contents)
                }
            })
    }

    pub fn file(mut self, path: &str, content: &[u8]) -> Self {
        self.insert(path, Entry::File(Bytes::copy_from_slice(content), false));
        self
    }

    pub fn executable(mut self, path: &str, content: &[u8]) -> Self {
        self.insert(path, Entry::File(Bytes::copy_from_slice(content), true));
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.insert(path, Entry::Symlink(target.to_string()));
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.insert(path, Entry::Dir(TreeSpec::default()));
        self
    }

    fn insert(&mut self, path: &str, entry: Entry) {
        match path.split_once('/') {
            None => {
                self.entries.insert(path.to_string(), entry);
            }
            Some((first, rest)) => {
                let sub = self
                    .entries
                    .entry(first.to_string())
                    .or_insert_with(|| Entry::Dir(TreeSpec::default()));
                match sub {
                    Entry::Dir(sub) => sub.insert(rest, entry),
                    _ => panic!("{first} is not a directory"),
                }
            }
        }
    }

    /// The root Directory's SHA-256 digest; every blob goes into `blobs`.
    pub fn build(&self, blobs: &mut Vec<Bytes>) -> Digest {
        self.build_with(DigestFunction::Sha256, blobs)
    }

    /// The root Directory's digest made with `function`, as are all the
    /// digests in the tree; every blob goes into `blobs`.
    pub fn build_with(&self, function: DigestFunction, blobs: &mut Vec<Bytes>) -> Digest {
        let dir = self.directory(function, blobs);
        let bytes = Bytes::from(dir.encode_to_vec());
        let digest = function.digest_of(&bytes);
        blobs.push(bytes);
        digest
    }

    /// The root digest and every blob, as protocol messages and bytes.
    pub fn tree(&self) -> Tree {
        self.tree_with(DigestFunction::Sha256)
    }

    /// [`TreeSpec::tree`] with digests made by `function`.
    pub fn tree_with(&self, function: DigestFunction) -> Tree {
        let mut blobs = Vec::new();
        let root = self.build_with(function, &mut blobs).to_proto();
        Tree {
            root,
            blobs: blobs.into_iter().map(Vec::from).collect(),
        }
    }

    fn directory(&self, function: DigestFunction, blobs: &mut Vec<Bytes>) -> Directory {
        let mut dir = Directory::default();
        for (name, entry) in &self.entries {
            match entry {
                Entry::File(content, executable) => {
                    dir.files.push(FileNode {
                        name: name.clone(),
                        digest: Some(function.digest_of(content).to_proto()),
                        is_executable: *executable,
                        node_properties: None,
                    });
                    blobs.push(content.clone());
                }
                Entry::Symlink(target) => dir.symlinks.push(SymlinkNode {
                    name: name.clone(),
                    target: target.clone(),
                    ..Default::default()
                }),
                Entry::Dir(sub) => {
                    let digest = sub.build_with(function, blobs);
                    dir.directories.push(DirectoryNode {
                        name: name.clone(),
                        digest: Some(digest.to_proto()),
                    });
                }
            }
        }
        dir
    }
}

/// A non-executable FileNode for `contents`.
pub fn file_node(name: &str, contents: &[u8]) -> FileNode {
    FileNode {
        name: name.into(),
        digest: Some(dig(contents)),
        is_executable: false,
        node_properties: None,
    }
}

/// A DirectoryNode for the encoded `dir`.
pub fn dir_node(name: &str, dir: &Directory) -> DirectoryNode {
    DirectoryNode {
        name: name.into(),
        digest: Some(dig_msg(dir)),
    }
}
