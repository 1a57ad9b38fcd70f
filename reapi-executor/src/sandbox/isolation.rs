//! Isolation levels: how much of the host an action's command sees and may
//! use. An executor pool runs all its actions at one level.
//!
//! - `none`: a child process in its own process group, as the configured
//!   user; nothing else.
//! - `process`: also a pid namespace of its own where the host allows one
//!   (everything it starts dies with it and with the server), resource
//!   limits (no core dumps, a cap on open files), the whole tree killed on
//!   timeout.
//! - `linux`: also a cgroup with the CPUs and memory it asked for as limits
//!   and a process cap ([`super::cgroup`]), and mount, network, IPC and
//!   hostname namespaces: a private `/tmp` and `/proc`, the server's data
//!   (the store, other actions) hidden under an empty directory with only
//!   its own input root put back, and no network but its own loopback.

use std::fmt;
use std::str::FromStr;

use reapi_core::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isolation {
    None,
    Process,
    Linux,
}

impl Isolation {
    pub const ALL: [Isolation; 3] = [Isolation::None, Isolation::Process, Isolation::Linux];

    pub fn name(self) -> &'static str {
        match self {
            Isolation::None => "none",
            Isolation::Process => "process",
            Isolation::Linux => "linux",
        }
    }
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Isolation {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Isolation::ALL
            .into_iter()
            .find(|level| level.name() == text)
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "isolation {text:?} is not one of none, process, linux"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_by_strength() {
        for level in Isolation::ALL {
            assert_eq!(level.name().parse::<Isolation>().unwrap(), level);
        }
        assert!(Isolation::None < Isolation::Process && Isolation::Process < Isolation::Linux);
        let err = "chroot".parse::<Isolation>().unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("none, process, linux"), "{err}");
    }
}
