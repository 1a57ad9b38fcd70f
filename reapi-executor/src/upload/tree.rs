//! Builds the `Tree` of an output directory from the file system, never
//! following symlinks: files become `FileNode`s (hashed, with the owner's
//! executable bit), directories `DirectoryNode`s, symlinks `SymlinkNode`s
//! with their target as read. Other file types (sockets, FIFOs, devices)
//! are left out with a warning. Entries are sorted by name in UTF-8 byte
//! order, as the spec's canonical form requires.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use bytes::Bytes;
use prost::Message;
use reapi_core::proto::remote_execution::{Directory, DirectoryNode, FileNode, SymlinkNode, Tree};
use reapi_core::{Digest, Error, ErrorExt, Result};

use super::hash::FileHasher;
use super::Blobs;

/// An output directory's `Tree`, and the messages that make it up.
pub struct BuiltTree {
    pub tree: Tree,
    /// Digest of the root `Directory` message.
    pub root_digest: Digest,
    /// Every distinct `Directory` message of the tree (root included),
    /// encoded, for clients that want `root_directory_digest`.
    pub directories: Vec<(Digest, Bytes)>,
}

/// Walks `path` (a directory, not a symlink to one), recording every file
/// in `blobs`.
pub fn build_tree(path: &Path, hasher: &mut FileHasher, blobs: &mut Blobs) -> Result<BuiltTree> {
    let mut walk = Walk {
        hasher,
        blobs,
        children: Vec::new(),
        seen: HashSet::new(),
        directories: Vec::new(),
    };
    let root = walk.directory(path)?;
    let root_bytes = Bytes::from(root.encode_to_vec());
    let root_digest = walk.hasher.digest_of(&root_bytes);
    let mut directories = std::mem::take(&mut walk.directories);
    if !walk.seen.contains(&root_digest) {
        directories.push((root_digest, root_bytes));
    }
    Ok(BuiltTree {
        tree: Tree {
            root: Some(root),
            children: walk.children,
        },
        root_digest,
        directories,
    })
}

struct Walk<'a> {
    hasher: &'a mut FileHasher,
    blobs: &'a mut Blobs,
    /// Distinct subdirectories, in the order first met.
    children: Vec<Directory>,
    seen: HashSet<Digest>,
    directories: Vec<(Digest, Bytes)>,
}

impl Walk<'_> {
    fn directory(&mut self, path: &Path) -> Result<Directory> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
            let entry = entry.with_context(|| format!("reading {}", path.display()))?;
            let name = entry.file_name().into_string().map_err(|name| {
                Error::failed_precondition(format!(
                    "output {} holds {name:?}, a name that is not UTF-8",
                    path.display()
                ))
            })?;
            entries.push(name);
        }
        entries.sort_unstable();

        let mut dir = Directory::default();
        for name in entries {
            let child = path.join(&name);
            let meta = fs::symlink_metadata(&child)
                .with_context(|| format!("inspecting {}", child.display()))?;
            let kind = meta.file_type();
            if kind.is_symlink() {
                let target = fs::read_link(&child)
                    .with_context(|| format!("reading symlink {}", child.display()))?;
                let target = target.into_os_string().into_string().map_err(|t| {
                    Error::failed_precondition(format!(
                        "output symlink {} points to {t:?}, which is not UTF-8",
                        child.display()
                    ))
                })?;
                dir.symlinks.push(SymlinkNode {
                    name,
                    target,
                    ..Default::default()
                });
            } else if kind.is_dir() {
                let sub = self.directory(&child)?;
                let bytes = Bytes::from(sub.encode_to_vec());
                let digest = self.hasher.digest_of(&bytes);
                if self.seen.insert(digest) {
                    self.children.push(sub);
                    self.directories.push((digest, bytes));
                }
                dir.directories.push(DirectoryNode {
                    name,
                    digest: Some(digest.to_proto()),
                });
            } else if kind.is_file() {
                let digest = self
                    .hasher
                    .hash(&child)
                    .with_context(|| format!("hashing {}", child.display()))?;
                self.blobs.add_file(digest, &child);
                dir.files.push(FileNode {
                    name,
                    digest: Some(digest.to_proto()),
                    is_executable: meta.permissions().mode() & 0o100 != 0,
                    ..Default::default()
                });
            } else {
                tracing::warn!(
                    path = %child.display(),
                    "leaving a special file out of an output directory"
                );
            }
        }
        Ok(dir)
    }
}
