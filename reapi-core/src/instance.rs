//! Instance names: which ones a server accepts, and their syntax.
//!
//! Instance names separate tenants: every store and cache is keyed by the
//! instance name, so nothing of one instance is visible from another.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// Words that mark the start of the resource part of a ByteStream name and so
/// can never be a segment of an instance name.
pub const RESERVED_SEGMENTS: [&str; 7] = [
    "blobs",
    "uploads",
    "actions",
    "actionResults",
    "operations",
    "capabilities",
    "compressed-blobs",
];

/// Checks the syntax of an instance name: empty, or `/`-separated non-empty
/// segments none of which is a reserved word.
pub fn validate_instance_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Ok(());
    }
    for segment in name.split('/') {
        if segment.is_empty() {
            return Err(Error::invalid_argument(format!(
                "instance name {name:?} has an empty segment"
            )));
        }
        if RESERVED_SEGMENTS.contains(&segment) {
            return Err(Error::invalid_argument(format!(
                "instance name {name:?} contains the reserved segment {segment:?}"
            )));
        }
    }
    Ok(())
}

/// Which instance names the server serves.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum InstancePolicy {
    /// Any syntactically valid name; each is a separate namespace.
    #[default]
    Any,
    /// Only the listed names.
    Only(BTreeSet<String>),
}

impl InstancePolicy {
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        InstancePolicy::Only(names.into_iter().map(Into::into).collect())
    }

    /// INVALID_ARGUMENT for a malformed name or one this server does not
    /// serve. Not NOT_FOUND: a client would read that as a cache miss and
    /// carry on against an instance that does not exist.
    pub fn check(&self, name: &str) -> Result<()> {
        validate_instance_name(name)?;
        match self {
            InstancePolicy::Any => Ok(()),
            InstancePolicy::Only(names) if names.contains(name) => Ok(()),
            InstancePolicy::Only(names) => Err(Error::invalid_argument(format!(
                "unknown instance name {name:?}; this server serves {:?}",
                names.iter().collect::<Vec<_>>()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn any_accepts_valid_names() {
        let policy = InstancePolicy::Any;
        for name in ["", "main", "a/b/c", "team-1/linux_x86"] {
            policy.check(name).unwrap();
        }
    }

    #[test]
    fn rejects_malformed_names() {
        let policy = InstancePolicy::Any;
        for name in [
            "/a",
            "a/",
            "a//b",
            "blobs",
            "x/uploads/y",
            "compressed-blobs",
        ] {
            assert_eq!(
                policy.check(name).unwrap_err().code(),
                Code::InvalidArgument,
                "{name}"
            );
        }
    }

    #[test]
    fn only_listed_names() {
        let policy = InstancePolicy::only(["", "ci"]);
        policy.check("").unwrap();
        policy.check("ci").unwrap();
        assert_eq!(
            policy.check("other").unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}
