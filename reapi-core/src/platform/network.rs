//! The `network` property: whether an action may use the host's network.
//!
//! An action asking `network=on` runs with the host's network; one asking
//! `network=off`, or nothing, runs without it where the executor can take it
//! away (isolation `linux`: only a loopback interface of its own). Executors
//! offer the values their sandbox can honour: every level can give the
//! network, only `linux` can withhold it, so `network=off` routes an action
//! to such an executor.

use crate::error::{Error, Result};

/// Name of the property.
pub const NETWORK: &str = "network";
/// The action gets the host's network.
pub const NETWORK_ON: &str = "on";
/// The action gets no network but its own loopback.
pub const NETWORK_OFF: &str = "off";

/// Checks one value an action gave for [`NETWORK`].
pub(super) fn check_value(value: &str) -> Result<()> {
    if value == NETWORK_ON || value == NETWORK_OFF {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "platform property {NETWORK}={value:?}: the value must be \
             {NETWORK_ON:?} or {NETWORK_OFF:?}"
        )))
    }
}

/// An action asking for both values asks for nothing any executor can do.
pub(super) fn refuse_both() -> Error {
    Error::invalid_argument(format!(
        "platform properties {NETWORK}={NETWORK_ON} and {NETWORK}={NETWORK_OFF} \
         contradict each other"
    ))
}
