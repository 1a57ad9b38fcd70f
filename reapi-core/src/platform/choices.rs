//! The properties a sandbox interprets rather than merely matches: each
//! takes one of a few values, and an action asking two of them at once asks
//! for what no executor can do.
//!
//! - `network`: `on` runs the action with the host's network; `off` (and,
//!   at isolation `linux`, not asking) gives it only a loopback interface
//!   of its own. Every level can give the network; only `linux` can
//!   withhold it.
//! - `rootfs`: what the action sees as `/`. `host` is the host's file
//!   system (with its input root at its own path); `input-root` is the
//!   action's input root alone, with a minimal `/dev` and its own `/proc`,
//!   as BuildStream expects. Only `linux` can give `input-root`. An action
//!   that does not ask gets its executor pool's default.
//!
//! Executors offer the values their sandbox can honour, so asking for one
//! routes the action to an executor that honours it.

use crate::error::{Error, Result};

/// A property with a fixed set of values.
pub struct Choice {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

/// Name of the network property.
pub const NETWORK: &str = "network";
/// The action gets the host's network.
pub const NETWORK_ON: &str = "on";
/// The action gets no network but its own loopback.
pub const NETWORK_OFF: &str = "off";

/// Name of the property saying what the action sees as `/`.
pub const ROOTFS: &str = "rootfs";
/// `/` is the host's.
pub const ROOTFS_HOST: &str = "host";
/// `/` is the action's input root.
pub const ROOTFS_INPUT_ROOT: &str = "input-root";

/// Every property with a fixed set of values.
pub const CHOICES: [Choice; 2] = [
    Choice {
        name: NETWORK,
        values: &[NETWORK_ON, NETWORK_OFF],
    },
    Choice {
        name: ROOTFS,
        values: &[ROOTFS_HOST, ROOTFS_INPUT_ROOT],
    },
];

/// The choice named `name`, if it is one.
pub(super) fn choice(name: &str) -> Option<&'static Choice> {
    CHOICES.iter().find(|c| c.name == name)
}

impl Choice {
    /// Checks one value an action gave, and that it does not contradict
    /// one it gave before (`earlier`).
    pub(super) fn check<'a>(
        &self,
        value: &str,
        mut earlier: impl Iterator<Item = &'a String>,
    ) -> Result<()> {
        if !self.values.contains(&value) {
            let allowed: Vec<String> = self.values.iter().map(|v| format!("{v:?}")).collect();
            return Err(Error::invalid_argument(format!(
                "platform property {}={value:?}: the value must be {}",
                self.name,
                allowed.join(" or ")
            )));
        }
        match earlier.find(|other| other.as_str() != value) {
            Some(other) => Err(Error::invalid_argument(format!(
                "platform properties {name}={other} and {name}={value} contradict each other",
                name = self.name
            ))),
            None => Ok(()),
        }
    }
}

/// What a command sees as `/`: the values of [`ROOTFS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootFs {
    /// The host's file system, with the input root at its own path.
    #[default]
    Host,
    /// The input root alone.
    InputRoot,
}

impl RootFs {
    /// The value as the property spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RootFs::Host => ROOTFS_HOST,
            RootFs::InputRoot => ROOTFS_INPUT_ROOT,
        }
    }
}

impl std::str::FromStr for RootFs {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self> {
        match value {
            ROOTFS_HOST => Ok(RootFs::Host),
            ROOTFS_INPUT_ROOT => Ok(RootFs::InputRoot),
            other => Err(Error::invalid_argument(format!(
                "{ROOTFS} {other:?}: expected {ROOTFS_HOST:?} or {ROOTFS_INPUT_ROOT:?}"
            ))),
        }
    }
}

impl std::fmt::Display for RootFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
