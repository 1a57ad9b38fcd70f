//! The lines the project's binaries print on stdout once they serve, and
//! their parsing:
//!
//! ```text
//! reapi-server listening on 127.0.0.1:PORT, data in DIR
//! reapi-scheduler listening on 127.0.0.1:PORT, data in DIR
//! reapi-worker ID ready, data in DIR
//! ```
//!
//! A test learns from them the port the kernel picked and the worker's id.

use std::net::SocketAddr;

/// What follows the address or id.
const DATA_IN: &str = ", data in ";

/// The start of the line `binary` prints once it listens, e.g.
/// `reapi-scheduler listening on `.
pub fn listening_prefix(binary: &str) -> String {
    format!("{binary} listening on ")
}

/// The address in `BINARY listening on ADDR, data in DIR`, or `None` if
/// `line` is not that.
pub fn parse_listening(binary: &str, line: &str) -> Option<SocketAddr> {
    let rest = line.trim().strip_prefix(&listening_prefix(binary))?;
    let (addr, _data_dir) = rest.split_once(DATA_IN)?;
    addr.parse().ok()
}

/// The start of the line a worker prints once it is linked to a scheduler.
pub const WORKER_PREFIX: &str = "reapi-worker ";

/// The id in `reapi-worker ID ready, data in DIR`, or `None` if `line` is not
/// that.
pub fn parse_worker_ready(line: &str) -> Option<String> {
    let rest = line.trim().strip_prefix(WORKER_PREFIX)?;
    let (id, _data_dir) = rest.split_once(&format!(" ready{DATA_IN}"))?;
    (!id.is_empty() && !id.contains(char::is_whitespace)).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_listening_line() {
        let addr = parse_listening(
            "reapi-server",
            "reapi-server listening on 127.0.0.1:41234, data in /tmp/x, y\n",
        );
        assert_eq!(addr, Some("127.0.0.1:41234".parse().unwrap()));
        let v6 = parse_listening(
            "reapi-server",
            "reapi-server listening on [::1]:80, data in d",
        );
        assert_eq!(v6, Some("[::1]:80".parse().unwrap()));
        assert_eq!(
            parse_listening("reapi-server", "reapi-server listening on 127.0.0.1:0"),
            None
        );
        assert_eq!(parse_listening("reapi-server", "hello"), None);
    }

    #[test]
    fn parses_the_scheduler_line_only_for_the_scheduler() {
        let line = "reapi-scheduler listening on 127.0.0.1:9000, data in /tmp/s";
        assert_eq!(
            parse_listening("reapi-scheduler", line),
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(parse_listening("reapi-server", line), None);
        assert!(line.starts_with(&listening_prefix("reapi-scheduler")));
    }

    #[test]
    fn parses_the_worker_line() {
        assert_eq!(
            parse_worker_ready("reapi-worker w-1f2e ready, data in /tmp/w, x\n"),
            Some("w-1f2e".to_string())
        );
        assert_eq!(
            parse_worker_ready("reapi-worker ready, data in /tmp/w"),
            None
        );
        assert_eq!(
            parse_worker_ready("reapi-worker a b ready, data in /tmp/w"),
            None
        );
        assert_eq!(parse_worker_ready("reapi-worker w-1 starting"), None);
        assert_eq!(
            parse_worker_ready("reapi-scheduler listening on 127.0.0.1:1, data in d"),
            None
        );
    }
}
