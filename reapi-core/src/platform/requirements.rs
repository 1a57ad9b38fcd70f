//! What an action asks for: [`Requirements`], read from the platform that
//! [`required_platform`] picks out of the Action or the Command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::choices::{self, RootFs, NETWORK, NETWORK_ON, ROOTFS};
use super::properties::iter_pairs;
use super::resources::{format_bytes, parse_cpus, parse_memory, Resources, CPUS, MEMORY};
use crate::error::{Error, Result};
use crate::proto::remote_execution::{platform::Property, Action, Command, Platform};

static EMPTY_PLATFORM: Platform = Platform {
    properties: Vec::new(),
};

/// The platform an action asks for: `Action.platform` (REAPI 2.2+), or the
/// deprecated `Command.platform` that older clients set instead.
///
/// An `Action.platform` that is present but empty also falls back: a client
/// that filled only the Command would otherwise run anywhere, possibly on the
/// wrong OS.
pub fn required_platform<'a>(action: &'a Action, command: &'a Command) -> &'a Platform {
    if let Some(platform) = action.platform.as_ref() {
        if !platform.properties.is_empty() {
            return platform;
        }
    }
    #[allow(deprecated)]
    let legacy = command.platform.as_ref();
    legacy.unwrap_or(&EMPTY_PLATFORM)
}

/// What an action asks of its executor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Requirements {
    pub(super) properties: BTreeMap<String, BTreeSet<String>>,
    pub(super) resources: Resources,
}

impl Requirements {
    /// Parses an action's platform. A malformed `cpus` or `memory` is
    /// INVALID_ARGUMENT naming the property; anything else is kept as an
    /// exact-match constraint. An empty property name is INVALID_ARGUMENT,
    /// as no executor could offer it.
    pub fn from_platform(platform: &Platform) -> Result<Self> {
        let mut wanted = Requirements::default();
        for Property { name, value } in &platform.properties {
            match name.as_str() {
                "" => {
                    return Err(Error::invalid_argument(format!(
                        "platform property with value {value:?} has an empty name"
                    )))
                }
                CPUS => {
                    let cpus = parse_cpus(value, "platform property")?;
                    wanted.resources.cpus = wanted.resources.cpus.max(cpus);
                }
                MEMORY => {
                    let memory = parse_memory(value, "platform property")?;
                    wanted.resources.memory = wanted.resources.memory.max(memory);
                }
                _ => {
                    if let Some(choice) = choices::choice(name) {
                        choice.check(value, wanted.properties.get(name).into_iter().flatten())?;
                    }
                    wanted
                        .properties
                        .entry(name.clone())
                        .or_default()
                        .insert(value.clone());
                }
            }
        }
        Ok(wanted)
    }

    /// The requirements of an action, from [`required_platform`].
    pub fn for_action(action: &Action, command: &Command) -> Result<Self> {
        Self::from_platform(required_platform(action, command))
    }

    /// The resources to reserve (and to limit the action to) while it runs.
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// Whether the action asked for the host's network (`network=on`).
    pub fn wants_network(&self) -> bool {
        self.properties
            .get(NETWORK)
            .is_some_and(|values| values.contains(NETWORK_ON))
    }

    /// The `rootfs` the action asked for, if it did.
    pub fn rootfs(&self) -> Option<RootFs> {
        let value = self.properties.get(ROOTFS)?.first()?;
        value.parse().ok()
    }

    /// Every string constraint as `(name, value)`, sorted.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        iter_pairs(&self.properties)
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .properties()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        if self.resources.cpus > 0 {
            parts.push(format!("{CPUS}={}", self.resources.cpus));
        }
        if self.resources.memory > 0 {
            parts.push(format!("{MEMORY}={}", format_bytes(self.resources.memory)));
        }
        if parts.is_empty() {
            f.write_str("no properties")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::test_support::{platform, wants};

    #[test]
    fn network_is_on_only_when_asked() {
        assert!(wants(&[("network", "on")]).wants_network());
        assert!(!wants(&[("network", "off")]).wants_network());
        assert!(!wants(&[("OSFamily", "linux")]).wants_network());
        // Asked twice the same way is asked once.
        assert!(wants(&[("network", "on"), ("network", "on")]).wants_network());
    }

    #[test]
    fn rootfs_is_read_and_checked() {
        assert_eq!(
            wants(&[("rootfs", "input-root")]).rootfs(),
            Some(RootFs::InputRoot)
        );
        assert_eq!(wants(&[("rootfs", "host")]).rootfs(), Some(RootFs::Host));
        assert_eq!(wants(&[("OSFamily", "linux")]).rootfs(), None);
        for bad in [
            &[("rootfs", "/")][..],
            &[("rootfs", "host"), ("rootfs", "input-root")],
        ] {
            let err = Requirements::from_platform(&platform(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.to_string().contains("rootfs"), "{err}");
        }
    }

    #[test]
    fn network_values_other_than_on_and_off_are_refused() {
        for bad in [
            &[("network", "yes")][..],
            &[("network", "ON")],
            &[("network", "")],
        ] {
            let err = Requirements::from_platform(&platform(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
            assert!(err.to_string().contains("network"), "{err}");
        }
        let both = platform(&[("network", "off"), ("network", "on")]);
        let err = Requirements::from_platform(&both).unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
        assert!(err.to_string().contains("contradict"), "{err}");
    }

    #[test]
    fn unsorted_and_duplicate_properties_are_accepted() {
        let sorted = wants(&[("ISA", "x86-64"), ("OSFamily", "linux")]);
        let unsorted = wants(&[
            ("OSFamily", "linux"),
            ("ISA", "x86-64"),
            ("OSFamily", "linux"),
        ]);
        assert_eq!(sorted, unsorted);
    }

    #[test]
    fn a_resource_listed_twice_asks_for_the_larger() {
        let wanted = wants(&[
            ("cpus", "2"),
            ("cpus", "4"),
            ("memory", "1G"),
            ("memory", "1M"),
        ]);
        assert_eq!(
            wanted.resources(),
            Resources {
                cpus: 4,
                memory: 1 << 30
            }
        );
    }

    #[test]
    #[allow(deprecated)]
    fn action_platform_falls_back_to_command_platform() {
        let windows = platform(&[("OSFamily", "windows")]);
        let linux = platform(&[("OSFamily", "linux")]);
        let command = Command {
            platform: Some(windows.clone()),
            ..Default::default()
        };

        let modern = Action {
            platform: Some(linux.clone()),
            ..Default::default()
        };
        assert_eq!(required_platform(&modern, &command), &linux);

        let legacy = Action::default();
        assert_eq!(required_platform(&legacy, &command), &windows);

        let empty = Action {
            platform: Some(Platform::default()),
            ..Default::default()
        };
        assert_eq!(required_platform(&empty, &command), &windows);

        let bare = Command::default();
        assert!(required_platform(&legacy, &bare).properties.is_empty());

        let wanted = Requirements::for_action(&legacy, &command).unwrap();
        assert_eq!(wanted, wants(&[("OSFamily", "windows")]));
    }
}
