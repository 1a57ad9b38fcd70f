//! Finding the members of a cluster from what the operator gave: a list of
//! `host:port` entries, or one DNS name whose A records are all the
//! members (a Kubernetes headless Service). Every entry is resolved, and
//! resolved again every few seconds, so members that come and go behind a
//! name are followed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

/// How often names are resolved again.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// The operator's list of members, as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberList {
    entries: Vec<String>,
}

impl MemberList {
    /// Entries of the form `host:port`, separated by commas or given one
    /// by one; INVALID_ARGUMENT when an entry has no port.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let mut parsed = Vec::new();
        for entry in entries {
            for part in entry.as_ref().split(',') {
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let port_ok = part
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    return Err(Error::invalid_argument(format!(
                        "member {part:?} is not host:port"
                    )));
                }
                parsed.push(part.to_string());
            }
        }
        if parsed.is_empty() {
            return Err(Error::invalid_argument("the member list is empty"));
        }
        Ok(MemberList { entries: parsed })
    }

    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// Every address the entries resolve to now. An entry that does not
    /// resolve is skipped (its members may be starting); UNAVAILABLE only
    /// when nothing resolves.
    pub async fn resolve(&self) -> Result<BTreeSet<SocketAddr>> {
        let mut addresses = BTreeSet::new();
        let mut failures = Vec::new();
        for entry in &self.entries {
            match tokio::net::lookup_host(entry.as_str()).await {
                Ok(found) => addresses.extend(found),
                Err(e) => failures.push(format!("{entry}: {e}")),
            }
        }
        if addresses.is_empty() {
            return Err(Error::unavailable(format!(
                "no member resolves ({})",
                failures.join("; ")
            )));
        }
        if !failures.is_empty() {
            tracing::debug!(failures = %failures.join("; "), "some members did not resolve");
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lists_and_names_resolve() {
        let list =
            MemberList::parse(&["127.0.0.1:9001,127.0.0.1:9002", " localhost:9003 "]).unwrap();
        assert_eq!(list.entries().len(), 3);
        let found = list.resolve().await.unwrap();
        assert!(found.contains(&"127.0.0.1:9001".parse().unwrap()));
        assert!(found.contains(&"127.0.0.1:9002".parse().unwrap()));
        assert!(found.iter().any(|a| a.port() == 9003));
    }

    #[test]
    fn entries_without_a_port_are_refused() {
        for bad in ["localhost", "127.0.0.1", ":80", "host:port", ""] {
            assert!(MemberList::parse(&[bad]).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_unavailable() {
        let list = MemberList::parse(&["no-such-host.invalid:1"]).unwrap();
        let err = list.resolve().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
    }
}
