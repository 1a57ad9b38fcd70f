//! Builders shared by the platform tests: a `Platform` message, an action's
//! [`Requirements`] and an executor's [`ExecutorProperties`] from pairs.

use super::{ExecutorProperties, Requirements};
use crate::proto::remote_execution::{platform::Property, Platform};

pub(super) fn platform(pairs: &[(&str, &str)]) -> Platform {
    Platform {
        properties: pairs
            .iter()
            .map(|(name, value)| Property {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
    }
}

pub(super) fn wants(pairs: &[(&str, &str)]) -> Requirements {
    Requirements::from_platform(&platform(pairs)).unwrap()
}

pub(super) fn offers(pairs: &[&str]) -> ExecutorProperties {
    ExecutorProperties::from_pairs(pairs).unwrap()
}
