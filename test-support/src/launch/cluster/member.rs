//! One process of a cluster: how it is launched (binary, arguments,
//! environment, directory), so that it can be restarted the same way, and
//! the running [`Scheduler`] or [`Worker`] with what it announced.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::launch::announce;
use crate::launch::binaries;
use crate::process::Process;

use super::options::ClusterOptions;

/// The scheduler binary.
pub const SCHEDULER: &str = "reapi-scheduler";

/// The worker binary.
pub const WORKER: &str = "reapi-worker";

/// The processes' log filter: scheduling and execution in detail, the rest
/// at info.
pub const RUST_LOG: &str = "info,reapi_scheduler=debug,reapi_executor=debug";

/// How long a process may take to print its line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start (and restart) one process.
#[derive(Clone, Debug)]
pub(super) struct Launch {
    binary: &'static str,
    /// E.g. `reapi-worker 2`, for messages.
    label: String,
    /// The process's own directory: `data/` and `stderr.log`.
    dir: PathBuf,
    pub(super) args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Launch {
    pub(super) fn new(
        binary: &'static str,
        index: usize,
        cluster_dir: &Path,
        options: &ClusterOptions,
    ) -> Launch {
        let name = binary.trim_start_matches("reapi-");
        let dir = cluster_dir.join(format!("{name}-{index}"));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let mut envs = vec![
            ("RUST_LOG".to_string(), RUST_LOG.to_string()),
            // The log is a file, read by people: no colour escapes.
            ("NO_COLOR".to_string(), "1".to_string()),
        ];
        let mut args = vec![
            "--data-dir".to_string(),
            dir.join("data").display().to_string(),
        ];
        if let Some(s3) = &options.s3 {
            args.extend(s3.args());
            envs.extend(s3.envs());
        }
        Launch {
            binary,
            label: format!("{binary} {index}"),
            dir,
            args,
            envs,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("stderr.log")
    }

    /// Starts the process and returns it with the line it announced itself
    /// with.
    fn start(&self, prefix: &str) -> (Process, String) {
        let mut command = Command::new(binaries::binary(self.binary));
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        let (process, line) = Process::start_announced(
            &self.label,
            command,
            &self.log_path(),
            prefix,
            START_TIMEOUT,
        );
        eprintln!(
            "{}: {line} (log: {})",
            self.label,
            self.log_path().display()
        );
        (process, line)
    }

    /// Marks a restart in the log, which the new process appends to.
    fn note_restart(&self) {
        let path = self.log_path();
        let written = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut log| writeln!(log, "---- {} restarted by the test ----", self.label));
        if let Err(e) = written {
            eprintln!("cannot mark the restart in {}: {e}", path.display());
        }
    }
}

/// A running `reapi-scheduler`; derefs to its [`Process`].
pub struct Scheduler {
    process: Process,
    addr: SocketAddr,
    launch: Launch,
}

impl Scheduler {
    pub(super) fn start(mut launch: Launch, listen: SocketAddr) -> Scheduler {
        let (mut process, line) = launch.start(&announce::listening_prefix(SCHEDULER));
        let Some(addr) = announce::parse_listening(SCHEDULER, &line) else {
            panic!(
                "{}: not `{}ADDR, data in DIR`: {line:?}\n{}",
                launch.label,
                announce::listening_prefix(SCHEDULER),
                process.report(None)
            );
        };
        if listen.port() != 0 && addr != listen {
            panic!(
                "{} was told to listen on {listen} but says it listens on {addr}\n{}",
                launch.label,
                process.report(None)
            );
        }
        // A restart must come back on the same address, which its peers and
        // workers know.
        set_listen(&mut launch.args, addr);
        Scheduler {
            process,
            addr,
            launch,
        }
    }

    /// The address it serves on (gRPC for clients and workers).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// E.g. `grpc://127.0.0.1:PORT`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.launch.data_dir()
    }

    /// Kills it if it still runs and starts it again on the same address
    /// and data directory.
    pub(super) fn restart(&mut self) {
        self.process.kill();
        self.launch.note_restart();
        *self = Scheduler::start(self.launch.clone(), self.addr);
    }
}

impl Deref for Scheduler {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Scheduler {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// A running `reapi-worker`; derefs to its [`Process`].
pub struct Worker {
    process: Process,
    id: String,
    launch: Launch,
}

impl Worker {
    pub(super) fn start(launch: Launch) -> Worker {
        let (mut process, line) = launch.start(announce::WORKER_PREFIX);
        let Some(id) = announce::parse_worker_ready(&line) else {
            panic!(
                "{}: not `{}ID ready, data in DIR`: {line:?}\n{}",
                launch.label,
                announce::WORKER_PREFIX,
                process.report(None)
            );
        };
        Worker {
            process,
            id,
            launch,
        }
    }

    /// The id it announced (and registers with the schedulers under).
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn data_dir(&self) -> PathBuf {
        self.launch.data_dir()
    }

    /// Kills it if it still runs and starts it again on the same data
    /// directory.
    pub(super) fn restart(&mut self) {
        self.process.kill();
        self.launch.note_restart();
        *self = Worker::start(self.launch.clone());
    }
}

impl Deref for Worker {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.process
    }
}

impl DerefMut for Worker {
    fn deref_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

/// Replaces the value of `--listen` in `args`.
fn set_listen(args: &mut [String], addr: SocketAddr) {
    if let Some(i) = args.iter().position(|arg| arg == "--listen") {
        args[i + 1] = addr.to_string();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::cluster::S3Bucket;

    #[test]
    fn every_process_gets_its_data_dir_log_filter_and_bucket() {
        let dir = tempfile::tempdir().unwrap();
        let options = ClusterOptions {
            s3: Some(S3Bucket {
                endpoint: "http://127.0.0.1:8333".to_string(),
                bucket: "cache".to_string(),
                region: "us-east-1".to_string(),
                access_key_id: "id".to_string(),
                secret_access_key: "secret".to_string(),
            }),
            ..ClusterOptions::default()
        };
        let launch = Launch::new(WORKER, 3, dir.path(), &options);
        assert_eq!(launch.label, "reapi-worker 3");
        assert_eq!(launch.dir, dir.path().join("worker-3"));
        assert!(launch.dir.is_dir());
        assert_eq!(
            launch.args,
            [
                "--data-dir".to_string(),
                dir.path().join("worker-3/data").display().to_string(),
                "--s3-bucket".to_string(),
                "cache".to_string(),
                "--s3-endpoint".to_string(),
                "http://127.0.0.1:8333".to_string(),
                "--s3-path-style".to_string(),
                "--s3-region".to_string(),
                "us-east-1".to_string(),
            ]
        );
        let env = |key: &str| {
            launch
                .envs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(env("RUST_LOG"), Some(RUST_LOG));
        assert_eq!(env("NO_COLOR"), Some("1"));
        assert_eq!(env("AWS_ACCESS_KEY_ID"), Some("id"));
        assert_eq!(env("AWS_SECRET_ACCESS_KEY"), Some("secret"));
    }

    #[test]
    fn a_restart_keeps_the_announced_address() {
        let mut args: Vec<String> = ["--data-dir", "d", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        set_listen(&mut args, SocketAddr::from(([127, 0, 0, 1], 7005)));
        assert_eq!(args, ["--data-dir", "d", "--listen", "127.0.0.1:7005"]);
    }
}
