//! The numeric resources, CPUs and memory: their property names, the
//! [`Resources`] pair, and how their values are parsed and printed.

use std::fmt;

use crate::config::parse_byte_size;
use crate::error::{Error, Result};

/// Name of the numeric property counting CPUs.
pub const CPUS: &str = "cpus";
/// Name of the numeric property counting bytes of memory.
pub const MEMORY: &str = "memory";

/// The numeric resources: CPUs and bytes of memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    pub cpus: u32,
    pub memory: u64,
}

impl Resources {
    /// True when `self` is at least `wanted` in every resource.
    pub fn covers(&self, wanted: &Resources) -> bool {
        self.cpus >= wanted.cpus && self.memory >= wanted.memory
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{CPUS}={}, {MEMORY}={}",
            self.cpus,
            format_bytes(self.memory)
        )
    }
}

pub(super) fn parse_cpus(value: &str, what: &str) -> Result<u32> {
    let text = value.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_argument(format!(
            "{what} {CPUS}={value:?} is not a whole number of CPUs"
        )));
    }
    text.parse()
        .map_err(|_| Error::invalid_argument(format!("{what} {CPUS}={value:?} is out of range")))
}

pub(super) fn parse_memory(value: &str, what: &str) -> Result<u64> {
    parse_byte_size(value).map_err(|e| {
        Error::invalid_argument(format!(
            "{what} {MEMORY}={value:?} is not a byte size: {}",
            e.message()
        ))
    })
}

/// Bytes in a short form that [`parse_byte_size`] reads back (`16G`).
pub(super) fn format_bytes(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::test_support::platform;
    use crate::platform::{ExecutorProperties, Requirements};
    use tonic::Code;

    #[test]
    fn bad_numbers_are_invalid_argument() {
        for (name, value) in [
            ("cpus", "lots"),
            ("cpus", "1.5"),
            ("cpus", "-1"),
            ("cpus", ""),
            ("cpus", "99999999999"),
            ("memory", "much"),
            ("memory", "4X"),
            ("memory", "-5"),
        ] {
            let err = Requirements::from_platform(&platform(&[(name, value)])).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name}={value}");
            assert!(
                err.message().contains(&format!("{name}={value:?}")),
                "{err}"
            );

            let err = ExecutorProperties::from_pairs([format!("{name}={value}")]).unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{name}={value}");
            assert!(err.message().contains(name), "{err}");
        }
        let err = Requirements::from_platform(&platform(&[("", "x")])).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }

    #[test]
    fn byte_sizes_print_in_a_form_that_parses_back() {
        for bytes in [0, 1, 1023, 1024, 1536, 16 << 30, 3 << 40, u64::MAX] {
            let text = format_bytes(bytes);
            assert_eq!(parse_byte_size(&text).unwrap(), bytes, "{text}");
        }
    }
}
