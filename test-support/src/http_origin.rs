//! A small HTTP/1.1 origin on loopback for tests of fetching: fixed bodies
//! by path, redirects, error statuses and slow answers; it counts the
//! requests it serves, so a test can tell a fetch from a cache hit. Each
//! connection is answered once and closed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// What a path answers.
#[derive(Clone, Debug)]
pub enum Route {
    /// 200 with this body.
    Body(Vec<u8>),
    /// 302 to this location.
    Redirect(String),
    /// This status, empty body.
    Status(u16),
    /// 200 with this body, after waiting.
    Slow(Duration, Vec<u8>),
    /// 200 with this body when the request has the header `name: value`
    /// (name in any case), else 401.
    Authorized {
        name: String,
        value: String,
        body: Vec<u8>,
    },
}

pub struct Origin {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    stopping: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Origin {
    /// Serves `routes` (path -> answer; other paths get 404) on a free
    /// loopback port.
    pub fn start(routes: &[(&str, Route)]) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the HTTP origin");
        let addr = listener.local_addr().expect("the origin's address");
        let routes: Arc<HashMap<String, Route>> = Arc::new(
            routes
                .iter()
                .map(|(path, route)| (path.to_string(), route.clone()))
                .collect(),
        );
        let hits = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let accept = {
            let (hits, stopping) = (Arc::clone(&hits), Arc::clone(&stopping));
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (routes, hits) = (Arc::clone(&routes), Arc::clone(&hits));
                    std::thread::spawn(move || answer(stream, &routes, &hits));
                }
            })
        };
        Origin {
            addr,
            hits,
            stopping,
            accept: Some(accept),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests answered so far (any path).
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting; the port refuses connections afterwards.
    pub fn stop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(stream: TcpStream, routes: &HashMap<String, Route>, hits: &AtomicUsize) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The headers, up to the blank line, as (lowercase name, value).
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
                }
            }
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    hits.fetch_add(1, Ordering::SeqCst);
    let (status, location, body) = match routes.get(path) {
        Some(Route::Body(body)) => (200, None, body.clone()),
        Some(Route::Redirect(to)) => (302, Some(to.clone()), Vec::new()),
        Some(Route::Status(code)) => (*code, None, Vec::new()),
        Some(Route::Slow(wait, body)) => {
            std::thread::sleep(*wait);
            (200, None, body.clone())
        }
        Some(Route::Authorized { name, value, body }) => {
            let wanted = (name.to_ascii_lowercase(), value.clone());
            if headers.contains(&wanted) {
                (200, None, body.clone())
            } else {
                (401, None, Vec::new())
            }
        }
        None => (404, None, Vec::new()),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(location) = location {
        head.push_str(&format!("Location: {location}\r\n"));
    }
    head.push_str("\r\n");
    let mut stream = stream;
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}
