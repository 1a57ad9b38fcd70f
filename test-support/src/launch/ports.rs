//! Free loopback ports for processes that must be told their address up
//! front (schedulers that list each other, haproxy).
//!
//! The kernel picks each port (bind to port 0), the listener is dropped and
//! the port handed on. Another process may take it in between; the window is
//! short, and callers that can retry do.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// `n` distinct free addresses on 127.0.0.1.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    // All listeners stay open until every port is picked, so that the kernel
    // cannot hand out the same port twice.
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| {
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .unwrap_or_else(|e| panic!("cannot bind a free port on 127.0.0.1: {e}"))
        })
        .collect();
    listeners
        .iter()
        .map(|listener| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
        .collect()
}

/// One free address on 127.0.0.1.
pub fn free_addr() -> SocketAddr {
    free_addrs(1)[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_distinct_bindable_loopback_ports() {
        let addrs = free_addrs(3);
        assert_eq!(addrs.len(), 3);
        for (i, addr) in addrs.iter().enumerate() {
            assert!(addr.ip().is_loopback() && addr.port() != 0);
            assert!(!addrs[..i].contains(addr));
            TcpListener::bind(addr).unwrap();
        }
    }
}
