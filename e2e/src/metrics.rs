//! The operators' HTTP port of the cluster's processes (`--metrics_listen`):
//! where a process serves it, a plain HTTP GET of `/metrics`, `/healthz`
//! and `/readyz`, and the parsing of the Prometheus text those metrics come
//! in.
//!
//! With `--metrics_listen` a binary prints, after the announcement the
//! cluster harness waits for, where that port is:
//!
//! ```text
//! reapi-scheduler listening on 127.0.0.1:PORT, data in DIR
//! reapi-scheduler metrics on http://127.0.0.1:PORT
//! ```
//!
//! so the processes are started by
//! [`reapi_test_support::launch::cluster::Cluster`] with `--metrics_listen
//! 127.0.0.1:0` among their arguments, and [`MetricsPort::of`] reads the
//! second line.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use reapi_test_support::launch::cluster::START_TIMEOUT;
use reapi_test_support::process::Process;

/// How long one HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// The operators' port of one process.
#[derive(Clone, Debug)]
pub struct MetricsPort {
    /// The process's name, for messages.
    name: String,
    addr: SocketAddr,
}

impl MetricsPort {
    /// Waits, at most [`START_TIMEOUT`], for `BINARY metrics on
    /// http://ADDR` among the lines `process` printed on stdout after its
    /// announcement. Panics, with its log, if it exits or prints no such
    /// line in time.
    pub fn of(process: &mut Process, binary: &str) -> MetricsPort {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let stdout = process.stdout_rest();
            if let Some(addr) = stdout
                .lines()
                .find_map(|line| parse_metrics_line(binary, line))
            {
                eprintln!("{}: metrics on http://{addr}", process.name());
                return MetricsPort {
                    name: process.name().to_string(),
                    addr,
                };
            }
            if !process.is_running() || Instant::now() > deadline {
                let report = process.report(None);
                panic!(
                    "{} did not print `{binary} metrics on http://ADDR` after its announcement \
                     within {START_TIMEOUT:?}\n{report}",
                    process.name()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where it serves `/metrics`, `/healthz` and `/readyz`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path` on it.
    pub fn get(&self, path: &str) -> io::Result<HttpResponse> {
        http_get(self.addr, path)
    }

    /// The process's metrics, parsed; panics if they cannot be fetched.
    pub fn scrape(&self) -> Metrics {
        let response = self
            .get("/metrics")
            .unwrap_or_else(|e| panic!("GET /metrics of {} failed: {e}", self.name));
        assert_eq!(
            response.status, 200,
            "GET /metrics of {}: {response:?}",
            self.name
        );
        Metrics::parse(&response.body)
    }
}

/// The address in `BINARY metrics on http://ADDR`, or `None`.
pub fn parse_metrics_line(binary: &str, line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix(&format!("{binary} metrics on http://"))?
        .parse()
        .ok()
}

/// What an HTTP GET answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `addr` over HTTP/1.1, one connection per request.
pub fn http_get(addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

/// Parses a whole HTTP/1.x response (a `Content-Length` or chunked body, or
/// one that runs to the end of the connection).
pub fn parse_http_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of the response headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let mut body = &raw[end + 4..];
    let body = if chunked {
        let mut decoded = Vec::new();
        loop {
            let line_end = body
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(|| bad("a chunk without its size line"))?;
            let size = String::from_utf8_lossy(&body[..line_end]);
            let size = size.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size, 16).map_err(|_| bad("a chunk size is not hex"))?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            if body.len() < size {
                return Err(bad("a chunk is cut short"));
            }
            decoded.extend_from_slice(&body[..size]);
            body = body.get(size + 2..).unwrap_or_default();
        }
        decoded
    } else {
        match length {
            Some(length) if length <= body.len() => body[..length].to_vec(),
            Some(_) => return Err(bad("the body is shorter than its Content-Length")),
            None => body.to_vec(),
        }
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// One sample of the Prometheus text format: `name{labels} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if it has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Every sample of one scrape.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the Prometheus text format (and OpenMetrics): comment lines
    /// are skipped, a line that is not a sample panics.
    pub fn parse(text: &str) -> Metrics {
        let samples = text
            .lines()
            .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
            .map(|line| parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}")))
            .collect();
        Metrics { samples }
    }

    /// The samples named `name` whose labels include every one of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |sample| {
            sample.name == name
                && labels
                    .iter()
                    .all(|(key, value)| sample.label(key) == Some(value))
        })
    }

    /// The sum of the samples named `name` with `labels` (0 if there is
    /// none: a counter or histogram appears only once used).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|sample| sample.value).sum()
    }

    /// Whether a sample named `name` is there at all.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|sample| sample.name == name)
    }
}

/// `name value`, `name{k="v",...} value`, optionally with a timestamp or an
/// exemplar after the value.
fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            inside = inside.trim_start_matches([',', ' ']);
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inside.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let close = loop {
                let (i, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break i,
                    c => value.push(c),
                }
            };
            labels.push((key.trim().to_string(), value));
            inside = &after[close + 1..];
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# HELP reapi_used_executors Executors running an action, by pool.
# TYPE reapi_used_executors gauge
reapi_used_executors{pool=\"ISA=x86-64,OSFamily=linux,cpus=2\"} 2
reapi_used_executors{pool=\"pool=\\\"odd\\\\one\\\"\"} 1
reapi_queued_actions 3
reapi_queue_seconds_bucket{le=\"+Inf\",pool=\"a\"} 7
reapi_queue_seconds_count{pool=\"a\"} 7
reapi_grpc_server_handled_total{service=\"build.bazel.remote.execution.v2.Execution\",method=\"Execute\",code=\"OK\"} 6 # {trace_id=\"x\"} 1
# EOF
";

    #[test]
    fn parses_samples_labels_and_escapes() {
        let metrics = Metrics::parse(SCRAPE);
        assert_eq!(metrics.samples.len(), 6);
        assert_eq!(metrics.sum("reapi_used_executors", &[]), 3.0);
        assert_eq!(
            metrics.samples[1].label("pool"),
            Some("pool=\"odd\\one\""),
            "{:?}",
            metrics.samples[1]
        );
        assert_eq!(metrics.sum("reapi_queued_actions", &[]), 3.0);
        assert_eq!(metrics.sum("reapi_queue_seconds_count", &[]), 7.0);
        assert_eq!(
            metrics.sum("reapi_queue_seconds_bucket", &[("le", "+Inf")]),
            7.0
        );
        assert_eq!(
            metrics.sum(
                "reapi_grpc_server_handled_total",
                &[("method", "Execute"), ("code", "OK")]
            ),
            6.0
        );
        assert_eq!(
            metrics.sum("reapi_grpc_server_handled_total", &[("code", "NOT_FOUND")]),
            0.0
        );
        assert_eq!(metrics.sum("reapi_absent", &[]), 0.0);
        assert!(metrics.has("reapi_queued_actions"));
        assert!(!metrics.has("reapi_absent"));
    }

    #[test]
    fn reads_the_metrics_line() {
        assert_eq!(
            parse_metrics_line(
                "reapi-worker",
                "reapi-worker metrics on http://127.0.0.1:4567\n"
            ),
            Some("127.0.0.1:4567".parse().unwrap())
        );
        assert_eq!(
            parse_metrics_line(
                "reapi-worker",
                "reapi-scheduler metrics on http://127.0.0.1:4567"
            ),
            None
        );
    }

    #[test]
    fn parses_http_responses() {
        let plain = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 21\r\n\r\nnot ready: draining\n\n";
        assert_eq!(
            parse_http_response(plain).unwrap(),
            HttpResponse {
                status: 503,
                body: "not ready: draining\n\n".to_string()
            }
        );
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_http_response(chunked).unwrap().body, "abcde");
        let to_the_end = b"HTTP/1.0 200 OK\r\n\r\nready\n";
        assert_eq!(parse_http_response(to_the_end).unwrap().body, "ready\n");
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
