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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use crate::launch::announce;
use crate::launch::binaries;
use crate::process::Process;

/// How long the server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming a `reapi-server` binary to use instead of the
/// workspace's own build.
pub const SERVER_BIN_ENV: &str = "REAPI_SERVER_BIN";

/// The server binary's name.
const NAME: &str = "reapi-server";

/// The path of the `reapi-server` binary, built first if need be (see
/// [`binaries`]). Set `REAPI_SERVER_BIN` to test another binary instead.
pub fn server_binary() -> PathBuf {
    binaries::binary(NAME)
}

/// A running `reapi-server`, killed when dropped.
pub struct Server {
    process: Process,
    addr: SocketAddr,
    data_dir: PathBuf,
    /// What it was started with, to start it again ([`Server::restart`]).
    args: Vec<String>,
    envs: Vec<(String, String)>,
    starts: usize,
    /// Holds the data directory and the log; removed last.
    dir: TempDir,
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
        let dir = tempfile::Builder::new()
            .prefix("reapi-e2e-server-")
            .tempdir()
            .expect("cannot create a temporary directory for the server");
        let data_dir = dir.path().join("data");
        let args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (process, addr) = launch(&dir, &data_dir, &args, &envs, "server.log");
        Server {
            process,
            addr,
            data_dir,
            args,
            envs,
            starts: 1,
            dir,
        }
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the server if it still runs and starts it again over the same
    /// data directory, with the same arguments (on a new port; the log of
    /// each start is kept in its own file).
    pub fn restart(&mut self) {
        self.process.kill();
        self.starts += 1;
        let log = format!("server-{}.log", self.starts);
        let (process, addr) = launch(&self.dir, &self.data_dir, &self.args, &self.envs, &log);
        self.process = process;
        self.addr = addr;
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
        self.process.log()
    }

    /// Panics, with the server's log, if the server is no longer running: a
    /// crash during a test must fail it even if the client coped.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.process.exit_status() {
            panic!("{NAME} exited during the test ({status})");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill();
        if thread::panicking() {
            eprintln!("{}", self.process.report(None));
        }
    }
}

/// Starts the binary over `data_dir` and waits for its listening line.
fn launch(
    dir: &TempDir,
    data_dir: &Path,
    args: &[String],
    envs: &[(String, String)],
    log_name: &str,
) -> (Process, SocketAddr) {
    let binary = server_binary();
    let log_path = dir.path().join(log_name);
    let mut command = Command::new(&binary);
    command
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        // The log is a file, read by people: no colour escapes.
        .env("NO_COLOR", "1");
    let (mut process, line) = Process::start_announced(
        NAME,
        command,
        &log_path,
        &announce::listening_prefix(NAME),
        START_TIMEOUT,
    );
    let Some(addr) = announce::parse_listening(NAME, &line) else {
        panic!(
            "{NAME}'s first line is not `{}ADDR, data in DIR`: {line:?}\n{}",
            announce::listening_prefix(NAME),
            process.report(None)
        );
    };
    eprintln!(
        "started {} on {addr} (log: {})",
        binary.display(),
        log_path.display()
    );
    (process, addr)
}
