//! Starting the real `reapi-server` binary for a test.
//!
//! The server runs as a child process with its own data directory and listens
//! on a port the kernel picks (`--listen 127.0.0.1:0`). It announces itself
//! with one line on stdout:
//!
//! ```text
//! reapi-server listening on 127.0.0.1:PORT, data in DIR
//! ```
//!
//! which gives the test the bound address. Its stderr goes to a log file that
//! is printed when the test fails.

use std::env;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

/// How long the server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming a `reapi-server` binary to use instead of the
/// workspace's own build.
pub const SERVER_BIN_ENV: &str = "REAPI_SERVER_BIN";

/// The start of the line the server prints on stdout once it listens.
const LISTENING_PREFIX: &str = "reapi-server listening on ";

/// The path of the `reapi-server` binary, built first if need be.
///
/// `reapi-server` lives in another package of the workspace, so Cargo gives
/// this crate no `CARGO_BIN_EXE_reapi-server`. The binary is looked for in the
/// target directory this test executable was built into
/// (`<target>/<profile>/deps/<test>` → `<target>/<profile>/reapi-server`),
/// after running `cargo build` for it with the same profile: that is a no-op
/// when it is up to date, and guarantees `cargo test -p reapi-e2e` alone never
/// tests a stale server. The build runs once per test process.
///
/// Set `REAPI_SERVER_BIN` to test another binary instead.
pub fn server_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(find_or_build_server).clone()
}

fn find_or_build_server() -> PathBuf {
    if let Some(path) = env::var_os(SERVER_BIN_ENV) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{SERVER_BIN_ENV}={} is not a file",
            path.display()
        );
        return path;
    }
    let exe = env::current_exe().expect("cannot find the test executable's path");
    let deps = exe
        .parent()
        .expect("the test executable has no parent directory");
    assert!(
        deps.file_name() == Some(OsStr::new("deps")),
        "the test executable {} is not in a Cargo `deps` directory; set {SERVER_BIN_ENV}",
        exe.display()
    );
    let profile_dir = deps.parent().expect("`deps` has no parent directory");
    let binary = profile_dir.join(format!("reapi-server{}", env::consts::EXE_SUFFIX));
    build_server(profile_dir);
    assert!(
        binary.is_file(),
        "`cargo build` succeeded but {} does not exist",
        binary.display()
    );
    binary
}

/// Runs `cargo build -p reapi-server` so that it lands in `profile_dir`.
fn build_server(profile_dir: &Path) {
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
    let workspace_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // Cargo sets CARGO for the processes it runs; fall back to PATH otherwise.
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .args([
            "build",
            "--quiet",
            "-p",
            "reapi-server",
            "--bin",
            "reapi-server",
        ])
        .arg("--profile")
        .arg(profile)
        .arg("--manifest-path")
        .arg(&workspace_manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if let Some(triple) = triple {
        command.arg("--target").arg(triple);
    }
    eprintln!("building reapi-server: {command:?}");
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    assert!(
        status.success(),
        "building reapi-server failed ({status}): {command:?}"
    );
}

/// A running `reapi-server`, killed when dropped.
pub struct Server {
    child: Child,
    addr: SocketAddr,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// What the server printed on stdout after its listening line.
    stdout_rest: Arc<Mutex<String>>,
    /// Holds the data directory and the log; removed last.
    _dir: TempDir,
}

impl Server {
    /// Starts a server with a fresh data directory.
    pub fn start() -> Server {
        Server::start_with_args(&[])
    }

    /// Starts a server with a fresh data directory and extra command-line
    /// arguments.
    pub fn start_with_args(extra_args: &[&str]) -> Server {
        Server::start_with_args_and_env(extra_args, &[])
    }

    /// Starts a server with a fresh data directory, extra command-line
    /// arguments and extra environment variables (on top of the test's own
    /// environment, which the server inherits).
    pub fn start_with_args_and_env(extra_args: &[&str], envs: &[(&str, &str)]) -> Server {
        let binary = server_binary();
        let dir = tempfile::Builder::new()
            .prefix("reapi-e2e-server-")
            .tempdir()
            .expect("cannot create a temporary directory for the server");
        let data_dir = dir.path().join("data");
        let log_path = dir.path().join("server.log");
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));

        let mut command = Command::new(&binary);
        command
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data_dir)
            .args(extra_args)
            .envs(envs.iter().copied())
            // The log is a file, read by people: no colour escapes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

        // Read stdout on a thread so the wait for the first line can time out;
        // the thread then keeps draining stdout so the server never blocks on
        // a full pipe.
        let stdout = child.stdout.take().expect("stdout is piped");
        let stdout_rest = Arc::new(Mutex::new(String::new()));
        let (first_line_tx, first_line_rx) = mpsc::channel();
        let rest = Arc::clone(&stdout_rest);
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = match lines.next() {
                Some(Ok(line)) => Ok(line),
                Some(Err(e)) => Err(format!("reading its stdout failed: {e}")),
                None => Err("it closed stdout without printing anything".to_string()),
            };
            // The receiver is gone only if the test already gave up.
            let _ = first_line_tx.send(first);
            for line in lines.map_while(Result::ok) {
                let mut rest = rest.lock().unwrap_or_else(|e| e.into_inner());
                rest.push_str(&line);
                rest.push('\n');
            }
        });

        let first_line = match first_line_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(problem)) => fail_start(&mut child, &log_path, &problem),
            Err(RecvTimeoutError::Timeout) => fail_start(
                &mut child,
                &log_path,
                &format!("it printed no line on stdout within {START_TIMEOUT:?}"),
            ),
            Err(RecvTimeoutError::Disconnected) => {
                fail_start(&mut child, &log_path, "its stdout reader stopped")
            }
        };
        let addr = match parse_listening_line(&first_line) {
            Some(addr) => addr,
            None => fail_start(
                &mut child,
                &log_path,
                &format!(
                    "its first line is not `{LISTENING_PREFIX}ADDR, data in DIR`: {first_line:?}"
                ),
            ),
        };
        eprintln!(
            "started {} on {addr} (log: {})",
            binary.display(),
            log_path.display()
        );
        Server {
            child,
            addr,
            data_dir,
            log_path,
            stdout_rest,
            _dir: dir,
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's address as a gRPC URL for clients, e.g.
    /// `grpc://127.0.0.1:PORT`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server's stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log_path.display()))
    }

    /// Panics, with the server's log, if the server is no longer running: a
    /// crash during a test must fail it even if the client coped.
    pub fn assert_running(&mut self) {
        match self.child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => panic!("reapi-server exited during the test ({status})"),
            Err(e) => panic!("cannot check whether reapi-server still runs: {e}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Killing an already exited child fails harmlessly.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let rest = self.stdout_rest.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "---- reapi-server stderr ({}) ----\n{}---- reapi-server stdout after the first line ----\n{}---- end of reapi-server output ----",
                self.log_path.display(),
                self.log(),
                rest
            );
        }
    }
}

/// Stops a server that failed to start and panics with its log.
fn fail_start(child: &mut Child, log_path: &Path, problem: &str) -> ! {
    let _ = child.kill();
    let status = child
        .wait()
        .map(|s| s.to_string())
        .unwrap_or_else(|e| e.to_string());
    let log = fs::read_to_string(log_path).unwrap_or_else(|e| format!("(cannot read log: {e})"));
    panic!("reapi-server did not start: {problem} (exit: {status})\n---- its stderr ----\n{log}");
}

/// Extracts the address from `reapi-server listening on ADDR, data in DIR`.
fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(LISTENING_PREFIX)?;
    let (addr, _data_dir) = rest.split_once(", data in ")?;
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let addr =
            parse_listening_line("reapi-server listening on 127.0.0.1:41234, data in /tmp/x, y\n");
        assert_eq!(addr, Some("127.0.0.1:41234".parse().unwrap()));
        let v6 = parse_listening_line("reapi-server listening on [::1]:80, data in d");
        assert_eq!(v6, Some("[::1]:80".parse().unwrap()));
        assert_eq!(
            parse_listening_line("reapi-server listening on 127.0.0.1:0"),
            None
        );
        assert_eq!(parse_listening_line("hello"), None);
    }
}
