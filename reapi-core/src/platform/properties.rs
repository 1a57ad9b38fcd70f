//! What an executor offers: [`ExecutorProperties`], read from
//! `--platform name=value` flags or from the `Platform` a worker announces.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::resources::{parse_cpus, parse_memory, Resources, CPUS, MEMORY};
use crate::error::{Error, Result};
use crate::proto::remote_execution::{platform::Property, Platform};

/// What one executor offers: string properties (a name may carry several
/// values) and its total resources.
///
/// Executors with equal properties form a pool, hence `Eq + Hash`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExecutorProperties {
    pub(super) properties: BTreeMap<String, BTreeSet<String>>,
    pub(super) resources: Resources,
}

impl ExecutorProperties {
    /// Parses `name=value` strings, as given by `--platform OSFamily=linux`
    /// flags. The value is everything after the first `=` and may be empty.
    /// `cpus` and `memory` are parsed as numbers; giving either twice with
    /// different values is an error. An executor that states no `cpus` or
    /// `memory` offers 0, so it only takes actions that claim none: the
    /// binary, not this type, should fill in the host's figures.
    pub fn from_pairs<I, S>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut builder = OfferBuilder::default();
        for pair in pairs {
            let pair = pair.as_ref();
            let (name, value) = pair.split_once('=').ok_or_else(|| {
                Error::invalid_argument(format!(
                    "executor property {pair:?} is not of the form name=value"
                ))
            })?;
            builder.add(name, value)?;
        }
        Ok(builder.finish())
    }

    /// Reads the properties an executor announced as a `Platform` message
    /// (for example when a worker registers).
    pub fn from_platform(platform: &Platform) -> Result<Self> {
        let mut builder = OfferBuilder::default();
        for property in &platform.properties {
            builder.add(&property.name, &property.value)?;
        }
        Ok(builder.finish())
    }

    /// The properties as a `Platform` message in the spec's canonical order
    /// (by name, then value). Resources are included when non-zero, so
    /// `from_platform(&p.to_platform())` gives back `p`.
    pub fn to_platform(&self) -> Platform {
        let mut properties: Vec<Property> = self
            .properties
            .iter()
            .flat_map(|(name, values)| {
                values.iter().map(move |value| Property {
                    name: name.clone(),
                    value: value.clone(),
                })
            })
            .collect();
        if self.resources.cpus > 0 {
            properties.push(Property {
                name: CPUS.into(),
                value: self.resources.cpus.to_string(),
            });
        }
        if self.resources.memory > 0 {
            properties.push(Property {
                name: MEMORY.into(),
                value: self.resources.memory.to_string(),
            });
        }
        properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
        Platform { properties }
    }

    /// Adds `name=value` to what the executor offers (a string property;
    /// the resources are not changed this way).
    pub fn offer(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty() || name == CPUS || name == MEMORY {
            return Err(Error::invalid_argument(format!(
                "{name:?} cannot be offered as a string property"
            )));
        }
        self.properties
            .entry(name.to_string())
            .or_default()
            .insert(value.to_string());
        Ok(())
    }

    /// The executor's total resources (not what is free right now).
    pub fn resources(&self) -> Resources {
        self.resources
    }

    /// The values offered under `name` (empty when the name is not offered).
    pub fn values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.properties
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Every string property as `(name, value)`, sorted.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        iter_pairs(&self.properties)
    }
}

impl fmt::Display for ExecutorProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, value) in self.properties() {
            write!(f, "{name}={value}, ")?;
        }
        write!(f, "{}", self.resources)
    }
}

/// Collects an executor's offer, rejecting a resource given twice with
/// different values: which one was meant cannot be guessed.
#[derive(Default)]
struct OfferBuilder {
    offer: ExecutorProperties,
    cpus: Option<u32>,
    memory: Option<u64>,
}

impl OfferBuilder {
    fn add(&mut self, name: &str, value: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid_argument(format!(
                "executor property with value {value:?} has an empty name"
            )));
        }
        match name {
            CPUS => {
                let cpus = parse_cpus(value, "executor property")?;
                set_once(&mut self.cpus, cpus, name)?;
                self.offer.resources.cpus = cpus;
            }
            MEMORY => {
                let memory = parse_memory(value, "executor property")?;
                set_once(&mut self.memory, memory, name)?;
                self.offer.resources.memory = memory;
            }
            _ => {
                self.offer
                    .properties
                    .entry(name.to_string())
                    .or_default()
                    .insert(value.to_string());
            }
        }
        Ok(())
    }

    fn finish(self) -> ExecutorProperties {
        self.offer
    }
}

fn set_once<T: PartialEq + fmt::Display + Copy>(
    slot: &mut Option<T>,
    value: T,
    name: &str,
) -> Result<()> {
    match *slot {
        Some(previous) if previous != value => Err(Error::invalid_argument(format!(
            "executor property {name} is given twice, as {previous} and {value}"
        ))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

pub(super) fn iter_pairs(
    map: &BTreeMap<String, BTreeSet<String>>,
) -> impl Iterator<Item = (&str, &str)> {
    map.iter()
        .flat_map(|(name, values)| values.iter().map(move |v| (name.as_str(), v.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::test_support::offers;
    use tonic::Code;

    #[test]
    fn executor_flags_parse() {
        let executor =
            ExecutorProperties::from_pairs(["OSFamily=linux", "tag=a=b", "empty=", "memory=1.5k"])
                .unwrap();
        assert_eq!(executor.values("tag").collect::<Vec<_>>(), ["a=b"]);
        assert_eq!(executor.values("empty").collect::<Vec<_>>(), [""]);
        assert_eq!(executor.resources().memory, 1536);

        for bad in ["OSFamily", "=linux"] {
            let err = ExecutorProperties::from_pairs([bad]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
        }
        // The same resource twice is fine only if it agrees.
        offers(&["cpus=4", "cpus=4"]);
        let err = ExecutorProperties::from_pairs(["cpus=4", "cpus=8"]).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("cpus"), "{err}");
    }

    #[test]
    fn executor_platform_round_trip() {
        let executor = offers(&[
            "label=b",
            "OSFamily=linux",
            "label=a",
            "cpus=4",
            "memory=2G",
        ]);
        let announced = executor.to_platform();
        let names: Vec<_> = announced
            .properties
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        assert_eq!(
            names,
            [
                "OSFamily=linux",
                "cpus=4",
                "label=a",
                "label=b",
                "memory=2147483648"
            ]
        );
        assert_eq!(
            ExecutorProperties::from_platform(&announced).unwrap(),
            executor
        );
        assert_eq!(
            executor.to_string(),
            "OSFamily=linux, label=a, label=b, cpus=4, memory=2G"
        );
    }
}
