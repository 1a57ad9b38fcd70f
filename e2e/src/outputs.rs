//! What the e2e workspace's targets must produce under `bazel-bin`.
//!
//! The workspace's own sh_test (`//tests:check`) checks the outputs where the
//! test runs, which with remote execution is on the server. [`check`] makes
//! the same checks (and a few stricter ones: exact bytes) on the files Bazel
//! put in the local `bazel-bin`, so a result the server executed correctly
//! but returned wrongly is caught too. [`snapshot`] records the outputs for
//! comparing two builds.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

/// The outputs under `bazel-bin` that [`snapshot`] records: one of each kind
/// the workspace produces (small, tool-made, big, empty, directory, made from
/// a directory, a linked binary).
pub const OUTPUTS: &[&str] = &[
    "name.txt",
    "greeting.txt",
    "big.txt",
    "empty.txt",
    "tree",
    "tree_listing.txt",
    "tools/hello",
];

/// The checksum `//tools:hello` prints: 64-bit FNV-1a of the greeting, as 16
/// hex digits (see `lib/greet.cc`).
pub fn checksum(text: &str) -> String {
    let mut hash: u64 = 14695981039346656037;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(1099511628211);
    }
    format!("{hash:016x}")
}

/// What `//tools:hello NAME` prints.
pub fn hello_output(name: &str) -> String {
    let greeting = format!("Hello, {name}!");
    let sum = checksum(&greeting);
    format!("{greeting}\nchecksum {sum}\n")
}

/// The exact contents of the workspace's file outputs (every output but the
/// binary `tools/hello`), by path under `bazel-bin`; a tree's files are listed
/// as `tree/...`.
pub fn expected_files() -> BTreeMap<String, Vec<u8>> {
    let mut big = String::with_capacity(5_200_000);
    for i in 0..400_000 {
        big.push_str(&format!("line {i:07}\n"));
    }
    let listing = "./\n\
                   ./greeting.txt 18\n\
                   ./sub/\n\
                   ./sub/deeper/\n\
                   ./sub/deeper/empty.txt 0\n\
                   ./sub/numbers.txt 14\n";
    [
        ("name.txt", "remote cache\n".to_string()),
        ("greeting.txt", hello_output("remote cache")),
        ("big.txt", big),
        ("empty.txt", String::new()),
        ("tree/greeting.txt", "hello from a tree\n".to_string()),
        ("tree/sub/numbers.txt", "one\ntwo\nthree\n".to_string()),
        ("tree/sub/deeper/empty.txt", String::new()),
        ("tree_listing.txt", listing.to_string()),
    ]
    .into_iter()
    .map(|(path, text)| (path.to_string(), text.into_bytes()))
    .collect()
}

/// Checks the outputs in `bin_dir` (a workspace's `bazel-bin`, after a build
/// that downloaded them) against [`expected_files`], and runs the tool: it
/// must be executable and print the expected greeting. Panics listing every
/// problem.
pub fn check(bin_dir: &Path) {
    let mut problems = Vec::new();
    let expected = expected_files();
    for (path, bytes) in &expected {
        let file = bin_dir.join(path);
        match fs::read(&file) {
            Ok(actual) if actual == *bytes => {}
            Ok(actual) => problems.push(format!(
                "{path}: {} bytes, expected {}; starts with {:?}",
                actual.len(),
                bytes.len(),
                String::from_utf8_lossy(&actual[..actual.len().min(80)])
            )),
            Err(e) => problems.push(format!("{path}: cannot read {}: {e}", file.display())),
        }
    }
    // The tree holds nothing else.
    let tree_files: Vec<String> = snapshot_paths(&bin_dir.join("tree"), "tree")
        .into_iter()
        .filter(|path| !expected.contains_key(path))
        .collect();
    if !tree_files.is_empty() {
        problems.push(format!("the tree has unexpected files: {tree_files:?}"));
    }
    let hello = bin_dir.join("tools/hello");
    match Command::new(&hello).arg("tester").output() {
        Ok(output)
            if output.status.success() && output.stdout == hello_output("tester").as_bytes() => {}
        Ok(output) => problems.push(format!(
            "tools/hello tester: {}, printed {:?}, expected {:?}; stderr {:?}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            hello_output("tester"),
            String::from_utf8_lossy(&output.stderr)
        )),
        Err(e) => problems.push(format!("cannot run {}: {e}", hello.display())),
    }
    assert!(
        problems.is_empty(),
        "the outputs in {} are wrong:\n  {}",
        bin_dir.display(),
        problems.join("\n  ")
    );
}

/// The relative paths (prefixed with `name`) of the files under `path`,
/// following symlinks; empty if it cannot be listed.
fn snapshot_paths(path: &Path, name: &str) -> Vec<String> {
    let mut files = BTreeMap::new();
    if path.exists() {
        walk(path, name.to_string(), &mut files);
    }
    files.into_keys().collect()
}

/// Contents and executable bit of every file of [`OUTPUTS`] in `bin_dir`, by
/// path (a tree's files as `tree/...`), following symlinks (local sandboxes
/// leave directory outputs as symlinks). Panics if an output is missing.
pub fn snapshot(bin_dir: &Path) -> BTreeMap<String, (Vec<u8>, bool)> {
    let mut files = BTreeMap::new();
    for output in OUTPUTS {
        walk(&bin_dir.join(output), output.to_string(), &mut files);
    }
    files
}

/// Panics, naming the first difference, unless two snapshots are identical.
pub fn assert_same(
    what_a: &str,
    a: &BTreeMap<String, (Vec<u8>, bool)>,
    what_b: &str,
    b: &BTreeMap<String, (Vec<u8>, bool)>,
) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what_a} and {what_b} have different files"
    );
    for (path, (bytes, executable)) in a {
        let (other_bytes, other_executable) = &b[path];
        assert!(
            bytes == other_bytes,
            "{path} differs: {} bytes in {what_a}, {} in {what_b}",
            bytes.len(),
            other_bytes.len()
        );
        assert_eq!(
            executable, other_executable,
            "{path}: the executable bit differs between {what_a} and {what_b}"
        );
    }
}

fn walk(path: &Path, name: String, into: &mut BTreeMap<String, (Vec<u8>, bool)>) {
    let metadata =
        fs::metadata(path).unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    if metadata.is_dir() {
        let entries =
            fs::read_dir(path).unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
        for entry in entries {
            let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", path.display()));
            let child = format!("{name}/{}", entry.file_name().to_string_lossy());
            walk(&entry.path(), child, into);
        }
    } else {
        let bytes =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        into.insert(name, (bytes, is_executable(&metadata)));
    }
}

#[cfg(unix)]
fn is_executable(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_metadata: &fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a_64() {
        // Reference values of 64-bit FNV-1a.
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_eq!(checksum("a"), "af63dc4c8601ec8c");
        assert_eq!(
            hello_output("x"),
            format!("Hello, x!\nchecksum {}\n", checksum("Hello, x!"))
        );
    }

    #[test]
    fn expected_files_match_the_workspace() {
        let files = expected_files();
        assert_eq!(files["big.txt"].len(), 5_200_000);
        assert!(files["big.txt"].ends_with(b"line 0399999\n"));
        // The sizes the tree listing names are those of the tree's files.
        assert_eq!(files["tree/greeting.txt"].len(), 18);
        assert_eq!(files["tree/sub/numbers.txt"].len(), 14);
        assert_eq!(files["tree_listing.txt"].len(), 88);
    }
}
