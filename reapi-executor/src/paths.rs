//! Walking paths under the input root without following symlinks, and the
//! preparation the spec asks for before a command runs: the working
//! directory must exist and the parents of every output path are created.
//!
//! Paths here are the normalised, root-relative forms from
//! [`crate::command`]. Nothing here follows a symlink: the input tree and
//! the action may both contain symlinks that lead out of the action's
//! directory, and the worker must not create or read through them.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use reapi_core::{Error, ErrorExt, Result};

use crate::command::CommandSpec;
use crate::identity::give_to;
use crate::materialize::place::DIRECTORY_MODE;

/// The metadata of `root/rel` (not following a final symlink), or `None`
/// when it does not exist or one of its parents is not a real directory
/// (a symlink or a file): then there is nothing at that path for us.
pub fn lookup_no_follow(root: &Path, rel: &str) -> io::Result<Option<fs::Metadata>> {
    let mut path = root.to_path_buf();
    let components: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
    if components.is_empty() {
        return fs::symlink_metadata(root).map(Some);
    }
    let last = components.len() - 1;
    for (i, component) in components.iter().enumerate() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if i == last => return Ok(Some(meta)),
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Ok(None),
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns at the last component")
}

fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// Creates `root/rel` and its missing parents as real directories, given
/// to `owner` when there is one (the user actions run as, when not the
/// server's). A component that exists as a symlink or a file is
/// INVALID_ARGUMENT: the request's input tree and its outputs disagree.
pub fn create_dirs_no_follow(root: &Path, rel: &str, owner: Option<(u32, u32)>) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.mode(DIRECTORY_MODE);
    let mut path = root.to_path_buf();
    let mut so_far = String::new();
    for component in rel.split('/').filter(|c| !c.is_empty()) {
        path.push(component);
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(meta) => {
                let what = if meta.file_type().is_symlink() {
                    "a symlink"
                } else {
                    "a file"
                };
                return Err(Error::invalid_argument(format!(
                    "{so_far:?} is {what} in the input tree, but an output path needs it to be a directory"
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                builder
                    .create(&path)
                    .and_then(|()| give_to(&path, owner))
                    .with_context(|| format!("creating directory {so_far:?}"))?;
            }
            Err(e) => return Err(Error::io(format!("inspecting {so_far:?}"), e)),
        }
    }
    Ok(())
}

/// Checks the working directory is a directory of the input tree and
/// creates the parent directories of every output path (the spec has the
/// worker do so, even where the input tree has none), owned by `owner`
/// when given, as the input directories are.
pub fn prepare_run(root: &Path, spec: &CommandSpec, owner: Option<(u32, u32)>) -> Result<()> {
    let wd = &spec.working_directory;
    match lookup_no_follow(root, wd).with_context(|| format!("inspecting {wd:?}"))? {
        Some(meta) if meta.is_dir() => {}
        _ => {
            return Err(Error::invalid_argument(format!(
                "the working directory {wd:?} is not a directory of the input tree"
            )))
        }
    }
    for output in &spec.outputs {
        let parent = match output.root_relative.rsplit_once('/') {
            Some((parent, _)) => parent,
            None => "",
        };
        // Only the parents: an output directory itself is the action's to
        // make (the spec says so), and one it does not make is absent.
        create_dirs_no_follow(root, parent, owner)
            .with_context(|| format!("preparing output path {:?}", output.path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn lookups_do_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();

        assert!(lookup_no_follow(root, "d/f").unwrap().unwrap().is_file());
        assert!(lookup_no_follow(root, "").unwrap().unwrap().is_dir());
        let link = lookup_no_follow(root, "link").unwrap().unwrap();
        assert!(link.file_type().is_symlink());
        assert!(lookup_no_follow(root, "link/f").unwrap().is_none());
        assert!(lookup_no_follow(root, "etc/passwd").unwrap().is_none());
        assert!(lookup_no_follow(root, "d/f/g").unwrap().is_none());
        assert!(lookup_no_follow(root, "missing/x").unwrap().is_none());
    }

    #[test]
    fn output_parents_are_created_but_not_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::os::unix::fs::symlink("/tmp", root.join("out")).unwrap();
        fs::write(root.join("file"), "x").unwrap();
        create_dirs_no_follow(root, "a/b/c", None).unwrap();
        assert!(root.join("a/b/c").is_dir());
        create_dirs_no_follow(root, "a/b", None).unwrap();
        create_dirs_no_follow(root, "", None).unwrap();
        let err = create_dirs_no_follow(root, "out/x", None).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = create_dirs_no_follow(root, "file/x", None).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
}
