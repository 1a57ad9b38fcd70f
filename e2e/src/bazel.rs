//! Running Bazel on a private copy of an e2e workspace.
//!
//! Each [`Bazel`] copies `bazel-workspace/` (or another workspace, see
//! [`Bazel::with_workspace`]) into a temporary directory and
//! runs Bazel there with its own `--output_user_root`, so tests running in
//! parallel get separate Bazel servers and nothing is shared with a user's
//! own Bazel. The Bazel server is shut down when the [`Bazel`] is dropped,
//! and `--max_idle_secs` ends it anyway should the test process die first.

use std::env;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::summary::{self, ProcessSummary, TestResult};

/// Where Debian's `bazel-bootstrap` package installs Bazel.
pub const DEFAULT_BAZEL: &str = "/usr/bin/bazel";

/// Environment variable naming another Bazel binary to use.
pub const BAZEL_ENV: &str = "BAZEL";

/// Longest time one Bazel command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// The checked-in workspace the tests build.
pub fn workspace_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bazel-workspace")
}

/// Bazel's path, or `None` when Bazel is missing and the test should be
/// skipped. On CI (`CI=true`) a missing Bazel is a failure instead, so that
/// the tests cannot pass there by not running.
pub fn bazel_or_skip(test: &str) -> Option<PathBuf> {
    let bazel = env::var_os(BAZEL_ENV).map_or_else(|| PathBuf::from(DEFAULT_BAZEL), PathBuf::from);
    if bazel.is_file() {
        return Some(bazel);
    }
    let hint = "install Debian's bazel-bootstrap and bazel-rules-java, or run scripts/test";
    if env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{} not found and CI=true: the Bazel tests must run on CI ({hint})",
            bazel.display()
        );
    }
    eprintln!("skipping {test}: {} not found ({hint})", bazel.display());
    None
}

/// The result of one Bazel command.
pub struct Output {
    /// The command as run, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// The process summary of the build, panicking (with Bazel's stderr) if
    /// Bazel printed none.
    pub fn summary(&self) -> ProcessSummary {
        summary::parse_last(&self.stderr).unwrap_or_else(|| {
            panic!(
                "no process summary in the output of {}\n{}",
                self.command,
                self.dump()
            )
        })
    }

    /// The result line of the test `label` (e.g. `//tests:check`), panicking
    /// (with everything Bazel printed) if there is none. `bazel test` prints
    /// it on stdout.
    pub fn test_result(&self, label: &str) -> TestResult {
        summary::parse_test_result(&self.stdout, label)
            .or_else(|| summary::parse_test_result(&self.stderr, label))
            .unwrap_or_else(|| {
                panic!(
                    "no result line for {label} in the output of {}\n{}",
                    self.command,
                    self.dump()
                )
            })
    }

    /// Bazel's warnings that mention remote caching or execution. Bazel
    /// treats failed uploads and downloads as warnings and carries on, which
    /// would hide server bugs.
    pub fn remote_warnings(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|line| line.starts_with("WARNING:") && line.to_lowercase().contains("remote"))
            .collect()
    }

    /// Everything Bazel printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "---- bazel stdout ----\n{}---- bazel stderr ----\n{}---- end of bazel output ----",
            self.stdout, self.stderr
        )
    }
}

/// A private copy of an e2e workspace and the Bazel server building it.
pub struct Bazel {
    bazel: PathBuf,
    workspace: PathBuf,
    output_user_root: PathBuf,
    /// More startup options, the same for every command.
    startup: Vec<String>,
    dir: TempDir,
}

impl Bazel {
    /// Copies the e2e workspace into a new temporary directory.
    pub fn new(bazel: PathBuf) -> Bazel {
        Bazel::with_workspace(bazel, &workspace_source())
    }

    /// Copies the workspace `source` (e.g. `cluster-workspace/`) into a new
    /// temporary directory.
    pub fn with_workspace(bazel: PathBuf, source: &Path) -> Bazel {
        let dir = tempfile::Builder::new()
            .prefix("reapi-e2e-bazel-")
            .tempdir()
            .expect("cannot create a temporary directory for Bazel");
        let workspace = dir.path().join("workspace");
        copy_tree(source, &workspace).unwrap_or_else(|e| {
            panic!(
                "cannot copy {} to {}: {e}",
                source.display(),
                workspace.display()
            )
        });
        let output_user_root = dir.path().join("bazel-root");
        Bazel {
            bazel,
            workspace,
            output_user_root,
            startup: Vec::new(),
            dir,
        }
    }

    /// Adds startup options (before the command), e.g. `--host_jvm_args=…`.
    pub fn with_startup_options(mut self, options: &[String]) -> Bazel {
        self.startup.extend_from_slice(options);
        self
    }

    /// The workspace copy Bazel builds.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The temporary directory holding the workspace copy and Bazel's output
    /// root; tests may put their own files there.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `bazel-bin` directory of the workspace (valid after a build).
    pub fn bin_dir(&self) -> PathBuf {
        self.workspace.join("bazel-bin")
    }

    /// The `bazel-testlogs` directory of the workspace (valid after a test).
    pub fn testlogs_dir(&self) -> PathBuf {
        self.workspace.join("bazel-testlogs")
    }

    /// Runs `bazel ARGS` in the workspace and returns what it printed,
    /// whether it succeeded or not.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.bazel);
        command
            // Startup options: they must be the same for every command, or
            // Bazel restarts its server. The user's ~/.bazelrc is ignored;
            // the system one is needed (Debian puts install_base in it).
            .arg("--nohome_rc")
            .arg(format!(
                "--output_user_root={}",
                self.output_user_root.display()
            ))
            .arg("--max_idle_secs=60")
            .args(&self.startup)
            .args(args)
            .current_dir(&self.workspace)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let description = format!("bazel {}", args.join(" "));
        eprintln!("running {description}");
        let output = run_with_timeout(command, &description);
        match summary::parse_last(&output.stderr) {
            Some(summary) => eprintln!(
                "{description}: {} ({}) in {:.1?}: {summary}",
                if output.status.success() {
                    "ok"
                } else {
                    "FAILED"
                },
                output.status,
                output.elapsed
            ),
            None => eprintln!("{description}: {} in {:.1?}", output.status, output.elapsed),
        }
        output
    }

    /// Runs `bazel ARGS` and panics, with everything Bazel printed, if it
    /// fails.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{} failed ({})\n{}",
            output.command,
            output.status,
            output.dump()
        );
        output
    }
}

impl Drop for Bazel {
    fn drop(&mut self) {
        // Only if a server may have been started: `shutdown` would start one.
        if self.output_user_root.exists() {
            let mut command = Command::new(&self.bazel);
            command
                .arg("--nohome_rc")
                .arg(format!(
                    "--output_user_root={}",
                    self.output_user_root.display()
                ))
                .arg("--max_idle_secs=60")
                .arg("shutdown")
                .current_dir(&self.workspace)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Err(e) = command.status() {
                eprintln!("cannot run bazel shutdown: {e}");
            }
        }
        // Bazel leaves read-only directories behind, which a non-root user
        // could not empty: make them writable so the TempDir can go.
        make_dirs_writable(&self.output_user_root);
    }
}

/// Runs a command with piped stdout and stderr, killing it after
/// [`COMMAND_TIMEOUT`] so a hung build fails the test instead of blocking it.
fn run_with_timeout(mut command: Command, description: &str) -> Output {
    let start = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    // Both pipes are read on threads so that neither can fill up and stall
    // Bazel while the other is being read.
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let result = pipe.read_to_end(&mut bytes);
            let mut text = String::from_utf8_lossy(&bytes).into_owned();
            if let Err(e) = result {
                text.push_str(&format!("\n(reading the output failed: {e})\n"));
            }
            text
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr is piped")));
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!("{description} took over {COMMAND_TIMEOUT:?}; killed it\n---- bazel stderr ----\n{stderr}");
            }
            Ok(None) => thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("cannot wait for {description}: {e}"),
        }
    };
    Output {
        command: description.to_string(),
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
        elapsed: start.elapsed(),
    }
}

/// Copies the directory tree `from` to `to`, leaving out the `bazel-*`
/// convenience symlinks a manual build in the source tree leaves behind (and
/// any other symlink: the workspace has none of its own).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            // fs::copy keeps the permissions, hence the scripts' exec bits.
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Adds owner write permission to every directory under `root` (not
/// following symlinks). Errors are ignored: this is best-effort cleanup.
fn make_dirs_writable(root: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(metadata) = fs::symlink_metadata(root) else {
            return;
        };
        if !metadata.is_dir() {
            return;
        }
        let mut permissions = metadata.permissions();
        if permissions.mode() & 0o700 != 0o700 {
            permissions.set_mode(permissions.mode() | 0o700);
            let _ = fs::set_permissions(root, permissions);
        }
        if let Ok(entries) = fs::read_dir(root) {
            for entry in entries.flatten() {
                make_dirs_writable(&entry.path());
            }
        }
    }
    #[cfg(not(unix))]
    let _ = root;
}

/// Startup options that let Debian's Bazel 4.2.3 speak TLS (`grpcs://`).
/// Its bundled Netty finds no ALPN in the JDK (Java 17) and fails before
/// connecting ("JDK provider does not support ALPN protocol"); it works
/// with netty-tcnative's JNI library (Debian's `libnetty-tcnative-jni`,
/// installed by `scripts/test`), which Netty loads only under the name
/// `libnetty_tcnative.so` and not through a symlink, so it is copied into
/// `scratch`.
pub fn tls_startup_options(scratch: &Path) -> Vec<String> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|arch| arch.path().join("jni/libnetty-tcnative.so"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no /usr/lib/*/jni/libnetty-tcnative.so: install Debian's libnetty-tcnative-jni \
                 (scripts/test does)"
            )
        });
    let dir = scratch.join("netty-tcnative");
    std::fs::create_dir_all(&dir).expect("a directory for netty-tcnative");
    std::fs::copy(&found, dir.join("libnetty_tcnative.so"))
        .unwrap_or_else(|e| panic!("copying {}: {e}", found.display()));
    vec![format!(
        "--host_jvm_args=-Djava.library.path={}",
        dir.display()
    )]
}
