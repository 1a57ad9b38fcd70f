//! Finding the workspace's own binaries (`reapi-server`, `reapi-scheduler`,
//! `reapi-worker`), built first if need be.
//!
//! They live in the `reapi-server` package, so Cargo gives the test crates
//! (`reapi-e2e`, this one) no `CARGO_BIN_EXE_*`. They are looked for in the
//! target directory the running test executable was built into
//! (`<target>/<profile>/deps/<test>` → `<target>/<profile>/<name>`), after
//! running `cargo build -p reapi-server --bins` with the same profile: that
//! is a no-op when they are up to date, and guarantees
//! `cargo test -p reapi-e2e` alone never tests a stale binary. The build
//! runs once per test process.
//!
//! `REAPI_SERVER_BIN`, `REAPI_SCHEDULER_BIN`, `REAPI_WORKER_BIN` (the name in
//! upper case, `-` as `_`, then `_BIN`) name another binary to test instead.

use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The package whose binaries the tests run.
const PACKAGE: &str = "reapi-server";

/// The path of the binary `name` (e.g. `reapi-scheduler`), built first if
/// need be, or the one its environment variable ([`env_var`]) names.
pub fn binary(name: &str) -> PathBuf {
    let var = env_var(name);
    if let Some(path) = env::var_os(&var) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{var}={} is not a file", path.display());
        return path;
    }
    let binary = built_profile_dir().join(format!("{name}{}", env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "`cargo build -p {PACKAGE} --bins` succeeded but {} does not exist \
         (is `{name}` a binary of {PACKAGE}?); or set {var}",
        binary.display()
    );
    binary
}

/// The environment variable naming another binary for `name`:
/// `reapi-server` → `REAPI_SERVER_BIN`.
pub fn env_var(name: &str) -> String {
    format!("{}_BIN", name.to_uppercase().replace('-', "_"))
}

/// The profile directory holding the binaries, after building them once.
fn built_profile_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = profile_dir();
        build(&dir);
        dir
    })
    .clone()
}

/// `<target>/<profile>`, from this test executable's own path.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("cannot find the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable has no parent directory");
    assert!(
        deps.file_name() == Some(OsStr::new("deps")),
        "the test executable {} is not in a Cargo `deps` directory; set {}",
        exe.display(),
        env_var(PACKAGE)
    );
    deps.parent()
        .expect("`deps` has no parent directory")
        .to_path_buf()
}

/// Runs `cargo build -p reapi-server --bins` so that they land in
/// `profile_dir`.
fn build(profile_dir: &Path) {
    let profile = match profile_dir.file_name().and_then(OsStr::to_str) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("cannot tell the Cargo profile of {}", profile_dir.display()),
    };
    let mut target_dir = profile_dir
        .parent()
        .expect("profile directory has no parent");
    // With `--target TRIPLE` the layout is `<target>/<triple>/<profile>`; the
    // target directory proper is the one Cargo tags with CACHEDIR.TAG.
    let mut triple = None;
    if !target_dir.join("CACHEDIR.TAG").exists() {
        if let Some(parent) = target_dir
            .parent()
            .filter(|p| p.join("CACHEDIR.TAG").exists())
        {
            triple = target_dir.file_name();
            target_dir = parent;
        }
    }
    // This crate (`test-support/`) sits at the workspace's root, whatever
    // crate's test executable runs this code.
    let workspace_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // Cargo sets CARGO for the processes it runs; fall back to PATH otherwise.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args(["build", "--quiet", "-p", PACKAGE, "--bins"])
        .arg("--profile")
        .arg(profile)
        .arg("--manifest-path")
        .arg(&workspace_manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(triple) = triple {
        command.arg("--target").arg(triple);
    }
    // Cargo gives a test the variables it gives its package's build (the
    // test's CARGO_MANIFEST_DIR, ...). Passed on, they make build scripts
    // that watch them (ring's) rerun, and everything above them rebuild,
    // once for every test crate in turn: about 45 s each time.
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_tests) {
            command.env_remove(&name);
        }
    }
    eprintln!("building the {PACKAGE} binaries: {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "building the {PACKAGE} binaries failed ({status}): {command:?}"
    );
}

/// Whether `name` is one of the variables Cargo sets when it runs a test
/// (or a build script) for a package, rather than one a user sets.
fn set_by_cargo_for_tests(name: &str) -> bool {
    const PREFIXES: [&str; 3] = ["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_"];
    const NAMES: [&str; 8] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p)) || NAMES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_override_variable_after_the_binary() {
        assert_eq!(env_var("reapi-server"), "REAPI_SERVER_BIN");
        assert_eq!(env_var("reapi-scheduler"), "REAPI_SCHEDULER_BIN");
        assert_eq!(env_var("reapi-worker"), "REAPI_WORKER_BIN");
    }

    #[test]
    fn only_cargos_own_package_variables_are_dropped_from_the_build() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_CRATE_NAME",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_tests(name), "{name}");
        }
        for name in [
            "CARGO_HOME",
            "CARGO_INCREMENTAL",
            "CARGO_TARGET_DIR",
            "CARGO",
            "PATH",
        ] {
            assert!(!set_by_cargo_for_tests(name), "{name}");
        }
    }
}
