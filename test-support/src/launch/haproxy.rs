//! Debian's haproxy as a TCP load balancer in front of several gRPC servers,
//! the way an operator would put one in front of redundant schedulers.
//!
//! All connections go to the first backend that passes its health check
//! (`balance first`); when it dies, haproxy marks it down within a few
//! hundred milliseconds and sends new connections to the next one, while a
//! failed connect is retried on another backend (`option redispatch`). The
//! client and server timeouts are long because gRPC streams (Execute,
//! WaitExecution) stay open for as long as an action runs.
//!
//! haproxy runs in the foreground (`-db`) on a free loopback port, with its
//! configuration and log in a temporary directory; it is killed when the
//! [`HaProxy`] is dropped, and its log printed if the test failed.
//! `scripts/test` installs it (`apt-get install -y haproxy`); tests call
//! [`haproxy_or_skip`] first.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::launch::ports;
use crate::process::Process;

/// Where Debian's haproxy package installs it.
pub const DEFAULT_HAPROXY: &str = "/usr/sbin/haproxy";

/// Environment variable naming another haproxy binary to use.
pub const HAPROXY_ENV: &str = "HAPROXY";

/// How long haproxy may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts tried before giving up: another process may take the free port
/// between picking it and haproxy binding it.
const START_ATTEMPTS: usize = 3;

/// haproxy's path, or `None` when it is missing and the test should be
/// skipped. On CI (`CI=true`) a missing haproxy is a failure instead, so that
/// the tests cannot pass there by not running.
pub fn haproxy_or_skip(test: &str) -> Option<PathBuf> {
    let haproxy = haproxy_path();
    if haproxy.is_file() {
        return Some(haproxy);
    }
    let hint = "install Debian's haproxy (apt-get install -y haproxy), or run scripts/test";
    if env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!(
            "{} not found and CI=true: the haproxy tests must run on CI ({hint})",
            haproxy.display()
        );
    }
    eprintln!("skipping {test}: {} not found ({hint})", haproxy.display());
    None
}

fn haproxy_path() -> PathBuf {
    env::var_os(HAPROXY_ENV).map_or_else(|| PathBuf::from(DEFAULT_HAPROXY), PathBuf::from)
}

/// The haproxy configuration: a TCP frontend on `listen` in front of
/// `backends`, tried in order.
pub fn config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let mut config = format!(
        "# Written by reapi-test-support (test-support/src/launch/haproxy.rs).
global
    log stderr format raw local0 info
    maxconn 4096

defaults
    mode tcp
    log global
    option tcplog
    option redispatch
    retries 3
    timeout connect 2s
    timeout client 10m
    timeout server 10m
    timeout check 1s

frontend reapi
    bind {listen}
    default_backend servers

backend servers
    balance first
"
    );
    for (i, backend) in backends.iter().enumerate() {
        writeln!(
            config,
            "    server backend{i} {backend} check inter 300ms fall 1 rise 1"
        )
        .expect("writing to a String cannot fail");
    }
    config
}

/// A running haproxy, killed when dropped.
pub struct HaProxy {
    process: Process,
    addr: SocketAddr,
    backends: Vec<SocketAddr>,
    /// Holds the configuration and the log; removed last.
    _dir: TempDir,
}

impl HaProxy {
    /// Starts haproxy in front of `backends` and waits until it accepts
    /// connections. Panics if haproxy is missing: call [`haproxy_or_skip`]
    /// first.
    pub fn start(backends: &[SocketAddr]) -> HaProxy {
        assert!(!backends.is_empty(), "haproxy needs at least one backend");
        let haproxy = haproxy_path();
        assert!(
            haproxy.is_file(),
            "{} not found: call haproxy_or_skip first",
            haproxy.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("reapi-e2e-haproxy-")
            .tempdir()
            .expect("cannot create a temporary directory for haproxy");
        let config_path = dir.path().join("haproxy.cfg");
        let log_path = dir.path().join("haproxy.log");
        for attempt in 1..=START_ATTEMPTS {
            let addr = ports::free_addr();
            fs::write(&config_path, config(addr, backends))
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
            let mut command = Command::new(&haproxy);
            command.arg("-db").arg("-f").arg(&config_path);
            let mut process = Process::start_logged("haproxy", command, &log_path);
            match wait_accepting(&mut process, addr) {
                Ok(()) => {
                    eprintln!(
                        "started haproxy on {addr} in front of {backends:?} (log: {})",
                        log_path.display()
                    );
                    return HaProxy {
                        process,
                        addr,
                        backends: backends.to_vec(),
                        _dir: dir,
                    };
                }
                Err(problem) if attempt < START_ATTEMPTS && process.log().contains("bind") => {
                    eprintln!("haproxy did not start on {addr} ({problem}); trying another port");
                }
                Err(problem) => panic!(
                    "haproxy did not start on {addr}: {problem}\n{}",
                    process.report(None)
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address as a gRPC URL for clients, e.g. `grpc://127.0.0.1:PORT`.
    pub fn grpc_url(&self) -> String {
        format!("grpc://{}", self.addr)
    }

    /// The backends, in the order haproxy tries them.
    pub fn backends(&self) -> &[SocketAddr] {
        &self.backends
    }

    /// haproxy's log so far: health check changes and one line per closed
    /// connection, naming the backend that served it.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        self.process.kill();
        if thread::panicking() {
            eprintln!("{}", self.process.report(Some(200)));
        }
    }
}

/// Waits until `addr` accepts connections, or fails if haproxy exits or
/// takes longer than [`START_TIMEOUT`].
fn wait_accepting(process: &mut Process, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = process.exit_status() {
            return Err(format!("it exited ({status})"));
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            process.kill();
            return Err(format!(
                "its port accepted no connection in {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn config_balances_first_with_health_checks_and_long_timeouts() {
        let listen: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let backends: Vec<SocketAddr> = vec![
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        ];
        let config = config(listen, &backends);
        let lines: Vec<&str> = config.lines().map(str::trim).collect();
        for expected in [
            "mode tcp",
            "bind 127.0.0.1:7000",
            "balance first",
            "option redispatch",
            "retries 3",
            "timeout connect 2s",
            "timeout client 10m",
            "timeout server 10m",
            "server backend0 127.0.0.1:7001 check inter 300ms fall 1 rise 1",
            "server backend1 127.0.0.1:7002 check inter 300ms fall 1 rise 1",
        ] {
            assert!(lines.contains(&expected), "no `{expected}` in:\n{config}");
        }
        let first = config.find("backend0").unwrap();
        let second = config.find("backend1").unwrap();
        assert!(first < second, "backends out of order:\n{config}");
    }

    #[test]
    fn haproxy_accepts_the_config() {
        let Some(haproxy) = haproxy_or_skip("haproxy_accepts_the_config") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("haproxy.cfg");
        let addrs = ports::free_addrs(3);
        fs::write(&path, config(addrs[0], &addrs[1..])).unwrap();
        let output = Command::new(haproxy)
            .arg("-c")
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "haproxy -c rejected the config ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A TCP server that answers `NAME:` followed by whatever it read, then
    /// closes; haproxy's health checks connect and close without data, and
    /// get nothing back. Stops listening when `stop` is set.
    fn backend(name: &'static str, listener: TcpListener, stop: Arc<AtomicBool>) {
        listener.set_nonblocking(true).unwrap();
        thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        let mut buf = [0u8; 64];
                        if let Ok(n @ 1..) = stream.read(&mut buf) {
                            let mut reply = format!("{name}:").into_bytes();
                            reply.extend_from_slice(&buf[..n]);
                            let _ = stream.write_all(&reply);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    }

    /// Sends `ping` through `addr` and returns the reply.
    fn ping(addr: SocketAddr) -> String {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(b"ping").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        reply
    }

    #[test]
    fn forwards_to_the_first_live_backend() {
        if haproxy_or_skip("forwards_to_the_first_live_backend").is_none() {
            return;
        }
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let second = TcpListener::bind("127.0.0.1:0").unwrap();
        let backends = [first.local_addr().unwrap(), second.local_addr().unwrap()];
        let stop_first = Arc::new(AtomicBool::new(false));
        let stop_second = Arc::new(AtomicBool::new(false));
        backend("first", first, Arc::clone(&stop_first));
        backend("second", second, Arc::clone(&stop_second));
        let proxy = HaProxy::start(&backends);
        assert_eq!(proxy.backends(), backends);
        assert!(proxy.grpc_url().starts_with("grpc://127.0.0.1:"));

        for _ in 0..3 {
            assert_eq!(ping(proxy.addr()), "first:ping", "{}", proxy.log());
        }

        // The first backend goes away: a failed connect is redispatched, and
        // the health check soon sends everything to the second.
        stop_first.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = ping(proxy.addr());
            if reply == "second:ping" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still no reply from the second backend, last: {reply:?}\n{}",
                proxy.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
        stop_second.store(true, Ordering::SeqCst);
    }
}
