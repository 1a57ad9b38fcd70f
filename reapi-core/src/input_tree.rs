//! Validation of what an action gives a worker to lay out on disk: the
//! `Directory` messages of its input tree, its working directory and its
//! output paths.
//!
//! Everything is checked lexically, before anything touches a disk, so a
//! malformed or hostile action is refused with INVALID_ARGUMENT naming the
//! entry or path and the rule it breaks, instead of failing halfway through
//! materialisation.
//!
//! Rules for a `Directory` (the spec's canonical form, plus what a file system
//! needs):
//! - files, directories and symlinks are each sorted by name in strictly
//!   increasing UTF-8 byte order, and no name appears twice, within a list or
//!   across the three;
//! - a name is not empty, `.` or `..`, and holds no `/` and no NUL;
//! - every file and directory has a well-formed digest;
//! - a symlink target is not empty and holds no NUL; an absolute target is
//!   refused unless the caller allows absolute symlinks; a relative target,
//!   resolved lexically from the symlink's own directory, never climbs above
//!   the input root (not even on the way: `../root/x` depends on what lies
//!   outside the root).
//!
//! The symlink check is one symlink at a time and does not follow other
//! symlinks: `d/up -> ..` and `x -> d/up/..` each pass, yet `x` really points
//! above the root. So this is hygiene, not the security boundary: a worker
//! must still create input symlinks without following them and must not
//! follow symlinks when it collects outputs. (An action can make any symlink
//! it likes while it runs anyway.)
//!
//! Paths in a `Command` (working directory, output paths) use `/`, are
//! relative, and are normalised lexically: `.` segments are dropped and `..`
//! pops a segment, but may never climb above where the path starts. An empty
//! path (or `.`) names the starting directory itself, which the spec allows
//! for output directories. A single trailing `/` is tolerated, although the
//! spec says clients must not send one; `a//b` is refused, as it is more
//! likely a bug in the client than a path.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::fmt;

use crate::digest::{Digest, DigestFunction};
use crate::error::{Error, ErrorExt, Result};
use crate::proto::remote_execution::Directory;

/// Checks one `Directory` message. `path_from_root` is where it sits in the
/// input tree (`""` for the root, `"a/b"` below), which decides how far up
/// its relative symlinks may point and names entries in errors.
pub fn validate_directory(
    dir: &Directory,
    path_from_root: &str,
    allow_absolute_symlinks: bool,
) -> Result<()> {
    let mut components = Vec::new();
    resolve(&mut components, path_from_root, Segments::Strict).map_err(|problem| {
        Error::invalid_argument(format!(
            "directory path {path_from_root:?} {}",
            problem.describe("the input root")
        ))
    })?;
    // Which digests are well formed does not depend on the function (every
    // function's hash is 32 bytes), and the children are not followed here.
    check_directory(
        DigestFunction::default(),
        dir,
        &components.join("/"),
        allow_absolute_symlinks,
    )
    .map(drop)
}

/// Checks a whole input tree: `root`, then every directory below it, fetched
/// by digest through `lookup` (which may return the message owned or
/// borrowed, and whose errors are passed on with the directory's path added).
/// `lookup` is trusted to return the directory the digest names. The
/// children's digests are made with `function`, the root digest's.
///
/// A directory shared by several paths is checked once, at its shallowest
/// path: its symlinks only get safer deeper down, and checking every path
/// would take exponential time on a tree built to share subtrees.
pub fn validate_tree<D, F>(
    function: DigestFunction,
    root: &Directory,
    mut lookup: F,
    allow_absolute_symlinks: bool,
) -> Result<()>
where
    F: FnMut(&Digest) -> Result<D>,
    D: Borrow<Directory>,
{
    let mut pending: VecDeque<(Digest, String)> = VecDeque::new();
    let push_children =
        |pending: &mut VecDeque<_>, dir_path: &str, children: Vec<(Digest, &str)>| {
            for (digest, name) in children {
                pending.push_back((digest, join(dir_path, name)));
            }
        };
    let children = check_directory(function, root, "", allow_absolute_symlinks)?;
    push_children(&mut pending, "", children);

    // Breadth first, so the first visit of a digest is at its smallest depth.
    // Keeping the depth (not a plain "seen" set) also stops a lookup that
    // answers with a cycle.
    let mut checked_at: HashMap<Digest, usize> = HashMap::new();
    while let Some((digest, path)) = pending.pop_front() {
        let depth = path.split('/').count();
        if checked_at.get(&digest).is_some_and(|&d| d <= depth) {
            continue;
        }
        checked_at.insert(digest, depth);
        let fetched = lookup(&digest).with_context(|| format!("directory {path:?} ({digest})"))?;
        let dir: &Directory = fetched.borrow();
        let children = check_directory(function, dir, &path, allow_absolute_symlinks)?;
        push_children(&mut pending, &path, children);
    }
    Ok(())
}

/// Checks an output path of a `Command` (`output_paths`, `output_files` or
/// `output_directories`) on its own: relative, no NUL, no empty segment, and
/// no `..` climbing above the working directory.
///
/// When the working directory is known, [`resolve_output_path`] is the better
/// check: it lets `..` leave the working directory as long as the path stays
/// inside the input root, which clients such as recc rely on.
pub fn validate_output_path(path: &str) -> Result<()> {
    let mut components = Vec::new();
    resolve(&mut components, path, Segments::Strict).map_err(|problem| {
        Error::invalid_argument(format!(
            "output path {path:?} {}",
            problem.describe("the working directory")
        ))
    })
}

/// Checks a `Command.working_directory`: relative to the input root, no NUL,
/// no empty segment, no `..` climbing above the root. Empty means the root.
pub fn validate_working_directory(path: &str) -> Result<()> {
    normalize_working_directory(path).map(drop)
}

/// The working directory in normal form: relative to the input root, `.`
/// and `..` resolved, no trailing `/`; `""` for the root itself.
pub fn normalize_working_directory(path: &str) -> Result<String> {
    let mut components = Vec::new();
    resolve(&mut components, path, Segments::Strict).map_err(|problem| {
        Error::invalid_argument(format!(
            "working directory {path:?} {}",
            problem.describe("the input root")
        ))
    })?;
    Ok(components.join("/"))
}

/// Joins the working directory and an output path and returns where the
/// output lies relative to the input root, in normal form (`""` when it is
/// the root itself). `..` may leave the working directory but not the root.
pub fn resolve_output_path(working_directory: &str, output_path: &str) -> Result<String> {
    let mut components = Vec::new();
    resolve(&mut components, working_directory, Segments::Strict).map_err(|problem| {
        Error::invalid_argument(format!(
            "working directory {working_directory:?} {}",
            problem.describe("the input root")
        ))
    })?;
    resolve(&mut components, output_path, Segments::Strict).map_err(|problem| {
        Error::invalid_argument(format!(
            "output path {output_path:?} (in working directory {working_directory:?}) {}",
            problem.describe("the input root")
        ))
    })?;
    Ok(components.join("/"))
}

/// The three kinds of entries of a `Directory`, for messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
    Symlink,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Symlink => "symlink",
        })
    }
}

/// Checks one directory whose path (already normal) is `dir_path`, and
/// returns its subdirectories' digests and names for a tree walk.
fn check_directory<'a>(
    function: DigestFunction,
    dir: &'a Directory,
    dir_path: &str,
    allow_absolute_symlinks: bool,
) -> Result<Vec<(Digest, &'a str)>> {
    let lists = [
        (
            Kind::File,
            dir.files
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            Kind::Directory,
            dir.directories.iter().map(|d| d.name.as_str()).collect(),
        ),
        (
            Kind::Symlink,
            dir.symlinks.iter().map(|s| s.name.as_str()).collect(),
        ),
    ];
    for (kind, names) in &lists {
        check_names(*kind, names, dir_path)?;
    }

    // Each list is sorted and unique now; a name shared between two lists
    // would make two entries want the same place on disk.
    let mut all: Vec<(&str, Kind)> = lists
        .iter()
        .flat_map(|(kind, names)| names.iter().map(move |name| (*name, *kind)))
        .collect();
    // Stable, so the message names the kinds in the order file, directory,
    // symlink.
    all.sort_by(|a, b| a.0.cmp(b.0));
    for pair in all.windows(2) {
        if let [(name, first), (other, second)] = pair {
            if name == other {
                return Err(Error::invalid_argument(format!(
                    "{first} {:?} is also listed as a {second}; a name may be used once per directory",
                    join(dir_path, name)
                )));
            }
        }
    }

    for file in &dir.files {
        Digest::from_proto_field(function, file.digest.as_ref(), "digest")
            .with_context(|| format!("file {:?}", join(dir_path, &file.name)))?;
    }
    let mut children = Vec::with_capacity(dir.directories.len());
    for child in &dir.directories {
        let digest = Digest::from_proto_field(function, child.digest.as_ref(), "digest")
            .with_context(|| format!("directory {:?}", join(dir_path, &child.name)))?;
        children.push((digest, child.name.as_str()));
    }
    for link in &dir.symlinks {
        check_symlink_target(
            &join(dir_path, &link.name),
            dir_path,
            &link.target,
            allow_absolute_symlinks,
        )?;
    }
    Ok(children)
}

fn check_names(kind: Kind, names: &[&str], dir_path: &str) -> Result<()> {
    let place = || {
        if dir_path.is_empty() {
            "the input root".to_string()
        } else {
            format!("directory {dir_path:?}")
        }
    };
    for name in names {
        let rule = if name.is_empty() {
            Some("a name must not be empty")
        } else if *name == "." || *name == ".." {
            Some("a name must not be \".\" or \"..\"")
        } else if name.contains('/') {
            Some("a name must not contain '/'")
        } else if name.contains('\0') {
            Some("a name must not contain a NUL byte")
        } else {
            None
        };
        if let Some(rule) = rule {
            return Err(Error::invalid_argument(format!(
                "{kind} {name:?} in {}: {rule}",
                place()
            )));
        }
    }
    for pair in names.windows(2) {
        if let [previous, name] = pair {
            if previous == name {
                return Err(Error::invalid_argument(format!(
                    "{kind} {:?} is listed twice",
                    join(dir_path, name)
                )));
            }
            if previous > name {
                return Err(Error::invalid_argument(format!(
                    "{kind} {name:?} in {} comes after {previous:?}; {kind} entries must be sorted by name (UTF-8 byte order)",
                    place()
                )));
            }
        }
    }
    Ok(())
}

fn check_symlink_target(
    link_path: &str,
    dir_path: &str,
    target: &str,
    allow_absolute_symlinks: bool,
) -> Result<()> {
    let refuse = |rule: &str| {
        Err(Error::invalid_argument(format!(
            "symlink {link_path:?} -> {target:?}: {rule}"
        )))
    };
    if target.is_empty() {
        return refuse("the target is empty");
    }
    if target.contains('\0') {
        return refuse("the target contains a NUL byte");
    }
    if target.starts_with('/') {
        if allow_absolute_symlinks {
            return Ok(());
        }
        return refuse("absolute symlink targets are not allowed");
    }
    let mut components: Vec<&str> = dir_path.split('/').filter(|c| !c.is_empty()).collect();
    // `a//b` and a trailing `/` are ordinary in symlink targets.
    match resolve(&mut components, target, Segments::Lenient) {
        Ok(()) => Ok(()),
        Err(PathProblem::Escapes) => refuse("the target points outside the input root"),
        Err(problem) => refuse(&format!(
            "the target {}",
            problem.describe("the input root")
        )),
    }
}

fn join(dir_path: &str, name: &str) -> String {
    if dir_path.is_empty() {
        name.to_string()
    } else {
        format!("{dir_path}/{name}")
    }
}

/// How to treat empty segments (`a//b`, a trailing `/`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Segments {
    /// Allow a single trailing `/`, refuse any other empty segment.
    Strict,
    /// Skip empty segments, as a file system does.
    Lenient,
}

#[derive(Debug, PartialEq, Eq)]
enum PathProblem {
    Absolute,
    Nul,
    EmptySegment,
    Escapes,
}

impl PathProblem {
    /// The rule broken, for a path that must stay inside `boundary`.
    fn describe(&self, boundary: &str) -> String {
        match self {
            PathProblem::Absolute => format!("is absolute; it must be relative to {boundary}"),
            PathProblem::Nul => "contains a NUL byte".to_string(),
            PathProblem::EmptySegment => "has an empty segment (\"//\")".to_string(),
            PathProblem::Escapes => format!("climbs above {boundary} with \"..\""),
        }
    }
}

/// Applies a relative `path` to the `components` of the directory it starts
/// from, lexically. `..` fails if there is nothing left to pop: the path
/// would leave the directory it started in (or the one `components` is
/// relative to, when it is not empty).
fn resolve<'a>(
    components: &mut Vec<&'a str>,
    path: &'a str,
    segments: Segments,
) -> Result<(), PathProblem> {
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.starts_with('/') {
        return Err(PathProblem::Absolute);
    }
    let body = match segments {
        Segments::Strict => path.strip_suffix('/').unwrap_or(path),
        Segments::Lenient => path,
    };
    if body.is_empty() {
        return Ok(());
    }
    for segment in body.split('/') {
        match segment {
            "" if segments == Segments::Strict => return Err(PathProblem::EmptySegment),
            "" | "." => {}
            ".." => {
                if components.pop().is_none() {
                    return Err(PathProblem::Escapes);
                }
            }
            name => components.push(name),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::remote_execution::{DirectoryNode, FileNode, SymlinkNode};
    use tonic::Code;

    fn file(name: &str) -> FileNode {
        FileNode {
            name: name.into(),
            digest: Some(Digest::of_bytes(name.as_bytes()).to_proto()),
            ..Default::default()
        }
    }

    fn subdir(name: &str, child: &Directory) -> DirectoryNode {
        DirectoryNode {
            name: name.into(),
            digest: Some(Digest::of_message(child).to_proto()),
        }
    }

    fn link(name: &str, target: &str) -> SymlinkNode {
        SymlinkNode {
            name: name.into(),
            target: target.into(),
            ..Default::default()
        }
    }

    fn dir(files: &[&str], dirs: &[&str], links: &[(&str, &str)]) -> Directory {
        Directory {
            files: files.iter().map(|n| file(n)).collect(),
            directories: dirs
                .iter()
                .map(|n| subdir(n, &Directory::default()))
                .collect(),
            symlinks: links.iter().map(|(n, t)| link(n, t)).collect(),
            ..Default::default()
        }
    }

    /// Asserts INVALID_ARGUMENT whose message holds every `parts`.
    fn assert_invalid(result: Result<impl fmt::Debug>, parts: &[&str]) {
        let err = result.expect_err("expected an error");
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
        let text = err.to_string();
        for part in parts {
            assert!(text.contains(part), "{text:?} lacks {part:?}");
        }
    }

    #[test]
    fn accepts_a_canonical_directory() {
        let d = dir(
            &["a", "b", "c.txt"],
            &["d", "e"],
            &[("f", "a"), ("g", "d/x")],
        );
        validate_directory(&d, "", false).unwrap();
        validate_directory(&Directory::default(), "", false).unwrap();
    }

    #[test]
    fn refuses_bad_names() {
        for (name, rule) in [
            ("", "must not be empty"),
            (".", "must not be \".\" or \"..\""),
            ("..", "must not be \".\" or \"..\""),
            ("a/b", "must not contain '/'"),
            ("../etc", "must not contain '/'"),
            ("nul\0", "NUL"),
        ] {
            let quoted = format!("{name:?}");
            assert_invalid(
                validate_directory(&dir(&[name], &[], &[]), "", false),
                &["file", &quoted, "the input root", rule],
            );
            assert_invalid(
                validate_directory(&dir(&[], &[name], &[]), "sub", false),
                &["directory", &quoted, "directory \"sub\"", rule],
            );
            assert_invalid(
                validate_directory(&dir(&[], &[], &[(name, "x")]), "", false),
                &["symlink", &quoted, rule],
            );
        }
        // Names that merely look odd are fine.
        validate_directory(&dir(&["...", ".hidden", "a b", "ü"], &[], &[]), "", false).unwrap();
    }

    #[test]
    fn refuses_unsorted_entries() {
        assert_invalid(
            validate_directory(&dir(&["b", "a"], &[], &[]), "", false),
            &["file \"a\"", "comes after \"b\"", "sorted"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &["y", "x"], &[]), "top", false),
            &["directory \"x\"", "directory \"top\"", "sorted"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("m", "x"), ("l", "x")]), "", false),
            &["symlink \"l\"", "sorted"],
        );
        // Byte order, not case-insensitive or locale order.
        validate_directory(&dir(&["B", "a"], &[], &[]), "", false).unwrap();
        assert_invalid(
            validate_directory(&dir(&["a", "B"], &[], &[]), "", false),
            &["sorted"],
        );
    }

    #[test]
    fn refuses_duplicates_within_a_list() {
        assert_invalid(
            validate_directory(&dir(&["a", "a"], &[], &[]), "sub", false),
            &["file \"sub/a\" is listed twice"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &["d", "d"], &[]), "", false),
            &["directory \"d\" is listed twice"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("l", "x"), ("l", "x")]), "", false),
            &["symlink \"l\" is listed twice"],
        );
    }

    #[test]
    fn refuses_duplicates_across_lists() {
        assert_invalid(
            validate_directory(&dir(&["x"], &["x"], &[]), "", false),
            &["file \"x\" is also listed as a directory"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &["x"], &[("x", "y")]), "a", false),
            &["\"a/x\"", "directory", "symlink"],
        );
        assert_invalid(
            validate_directory(&dir(&["a", "x"], &[], &[("x", "a")]), "", false),
            &["\"x\"", "file", "symlink"],
        );
    }

    #[test]
    fn refuses_missing_or_malformed_digests() {
        let mut d = dir(&["a"], &[], &[]);
        d.files[0].digest = None;
        assert_invalid(
            validate_directory(&d, "in", false),
            &["file \"in/a\"", "digest is missing"],
        );

        let mut d = dir(&[], &["sub"], &[]);
        if let Some(digest) = d.directories[0].digest.as_mut() {
            digest.hash = "xyz".into();
        }
        assert_invalid(
            validate_directory(&d, "", false),
            &["directory \"sub\"", "xyz"],
        );

        let mut d = dir(&["f"], &[], &[]);
        if let Some(digest) = d.files[0].digest.as_mut() {
            digest.size_bytes = -1;
        }
        assert_invalid(
            validate_directory(&d, "", false),
            &["file \"f\"", "negative"],
        );
    }

    #[test]
    fn symlink_targets_stay_inside_the_root() {
        // Up, but still inside.
        validate_directory(&dir(&[], &[], &[("link", "../file")]), "sub", false).unwrap();
        validate_directory(&dir(&[], &[], &[("link", "../../x/y")]), "a/b", false).unwrap();
        validate_directory(&dir(&[], &[], &[("link", "./x//y/")]), "", false).unwrap();
        validate_directory(&dir(&[], &[], &[("link", "..")]), "sub", false).unwrap();
        // Out of the root.
        assert_invalid(
            validate_directory(
                &dir(&[], &[], &[("link", "../../etc/passwd")]),
                "sub",
                false,
            ),
            &[
                "symlink \"sub/link\" -> \"../../etc/passwd\"",
                "outside the input root",
            ],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("link", "..")]), "", false),
            &["symlink \"link\"", "outside"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("link", "x/../../y")]), "", false),
            &["outside"],
        );
        // Out and back in still depends on what lies outside the root.
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("link", "../sub/x")]), "", false),
            &["outside"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("link", "")]), "", false),
            &["symlink \"link\"", "empty"],
        );
        assert_invalid(
            validate_directory(&dir(&[], &[], &[("link", "a\0b")]), "", false),
            &["NUL"],
        );
    }

    #[test]
    fn absolute_symlinks_only_when_allowed() {
        let d = dir(&[], &[], &[("link", "/usr/bin/python3")]);
        assert_invalid(
            validate_directory(&d, "tools", false),
            &["symlink \"tools/link\" -> \"/usr/bin/python3\"", "absolute"],
        );
        validate_directory(&d, "tools", true).unwrap();
    }

    #[test]
    fn directory_path_is_checked_too() {
        let d = Directory::default();
        validate_directory(&d, "a/b/", false).unwrap();
        assert_invalid(
            validate_directory(&d, "/a", false),
            &["directory path \"/a\"", "absolute"],
        );
        assert_invalid(validate_directory(&d, "..", false), &["climbs above"]);
    }

    #[test]
    fn tree_walk_checks_every_directory_with_its_path() {
        let escaping = dir(&[], &[], &[("link", "../../outside")]);
        let mid = Directory {
            directories: vec![subdir("deep", &escaping)],
            ..Default::default()
        };
        let root = Directory {
            files: vec![file("f")],
            directories: vec![subdir("mid", &mid)],
            ..Default::default()
        };
        let store: HashMap<Digest, Directory> = [mid.clone(), escaping.clone()]
            .into_iter()
            .map(|d| (Digest::of_message(&d), d))
            .collect();
        let lookup = |digest: &Digest| {
            store
                .get(digest)
                .ok_or_else(|| Error::not_found(format!("directory {digest} is missing")))
        };
        // "mid/deep/../../outside" is "outside": inside the root.
        validate_tree(DigestFunction::Sha256, &root, lookup, false).unwrap();

        // The same directory one level up escapes, and is named by its path.
        let shallow = Directory {
            directories: vec![subdir("top", &escaping)],
            ..Default::default()
        };
        assert_invalid(
            validate_tree(DigestFunction::Sha256, &shallow, lookup, false),
            &[
                "symlink \"top/link\" -> \"../../outside\"",
                "outside the input root",
            ],
        );
    }

    #[test]
    fn tree_walk_reports_entry_paths_and_lookup_errors() {
        let bad = dir(&["b", "a"], &[], &[]);
        let root = Directory {
            directories: vec![subdir("x", &bad)],
            ..Default::default()
        };
        let bad_digest = Digest::of_message(&bad);
        assert_invalid(
            validate_tree(
                DigestFunction::Sha256,
                &root,
                |d: &Digest| {
                    assert_eq!(*d, bad_digest);
                    Ok(bad.clone())
                },
                false,
            ),
            &["file \"a\" in directory \"x\""],
        );

        let err = validate_tree(
            DigestFunction::Sha256,
            &root,
            |d: &Digest| Err::<Directory, _>(Error::not_found(format!("{d} is missing"))),
            false,
        )
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.to_string().contains("directory \"x\""), "{err}");
    }

    #[test]
    fn tree_walk_survives_a_lookup_that_loops() {
        // Not a real Merkle tree (a directory cannot contain its own digest),
        // but a lookup could answer like this; the walk must end.
        let digest = Digest::of_bytes(b"loop");
        let looping = Directory {
            directories: vec![DirectoryNode {
                name: "again".into(),
                digest: Some(digest.to_proto()),
            }],
            ..Default::default()
        };
        let mut calls = 0;
        validate_tree(
            DigestFunction::Sha256,
            &looping,
            |_: &Digest| {
                calls += 1;
                Ok(&looping)
            },
            false,
        )
        .unwrap();
        assert_eq!(calls, 1);
    }

    #[test]
    fn tree_walk_checks_shared_subtrees_once() {
        // Two levels of eight children each sharing one subtree: every
        // distinct directory is fetched once, not 64 times.
        let leaf = dir(&["f"], &[], &[]);
        let names: Vec<String> = (0..8).map(|i| format!("d{i}")).collect();
        let level = |child: &Directory| Directory {
            directories: names.iter().map(|n| subdir(n, child)).collect(),
            ..Default::default()
        };
        let middle = level(&leaf);
        let root = level(&middle);
        let store: HashMap<Digest, Directory> = [leaf, middle]
            .into_iter()
            .map(|d| (Digest::of_message(&d), d))
            .collect();
        let mut fetched = 0;
        validate_tree(
            DigestFunction::Sha256,
            &root,
            |d: &Digest| {
                fetched += 1;
                store.get(d).ok_or_else(|| Error::not_found("missing"))
            },
            false,
        )
        .unwrap();
        assert_eq!(fetched, 2);
    }

    #[test]
    fn output_paths() {
        for good in ["a", "a/b", "a/./b", "./a", "a/../b", "a/", ".", ""] {
            validate_output_path(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        for (bad, rule) in [
            ("../x", "climbs above the working directory"),
            ("a/../../x", "climbs above the working directory"),
            ("..", "climbs above"),
            ("/abs", "absolute"),
            ("/", "absolute"),
            ("a//b", "empty segment"),
            ("a//", "empty segment"),
            ("a\0b", "NUL"),
        ] {
            let quoted = format!("output path {bad:?}");
            assert_invalid(validate_output_path(bad), &[&quoted, rule]);
        }
    }

    #[test]
    fn output_paths_resolve_against_the_working_directory() {
        assert_eq!(resolve_output_path("", "out/a.o").unwrap(), "out/a.o");
        assert_eq!(resolve_output_path("src/", "./a.o").unwrap(), "src/a.o");
        assert_eq!(resolve_output_path("a/b", "c").unwrap(), "a/b/c");
        assert_eq!(resolve_output_path("a/./b", "../c").unwrap(), "a/c");
        assert_eq!(resolve_output_path("a", "").unwrap(), "a");
        // Leaving the working directory is fine while inside the root...
        assert_eq!(resolve_output_path("src", "../out/a.o").unwrap(), "out/a.o");
        assert_eq!(resolve_output_path("src", "..").unwrap(), "");
        // ...leaving the root is not.
        assert_invalid(
            resolve_output_path("src", "../../a.o"),
            &[
                "output path \"../../a.o\"",
                "working directory \"src\"",
                "input root",
            ],
        );
        assert_invalid(
            resolve_output_path("", "../a.o"),
            &["climbs above the input root"],
        );
        assert_invalid(resolve_output_path("src", "/tmp/a.o"), &["absolute"]);
        assert_invalid(
            resolve_output_path("..", "a.o"),
            &["working directory \"..\""],
        );
    }

    #[test]
    fn working_directories() {
        for good in ["", ".", "a", "a/b", "a/", "./a", "a/../b"] {
            validate_working_directory(good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
        }
        assert_eq!(normalize_working_directory("./a/b/../c/").unwrap(), "a/c");
        assert_eq!(normalize_working_directory("").unwrap(), "");
        for (bad, rule) in [
            ("/abs", "absolute"),
            ("..", "climbs above the input root"),
            ("a/../..", "climbs above the input root"),
            ("a//b", "empty segment"),
            ("a\0", "NUL"),
        ] {
            let quoted = format!("working directory {bad:?}");
            assert_invalid(validate_working_directory(bad), &[&quoted, rule]);
        }
    }
}
