//! Object names: where each blob and bucket object lives under the prefix,
//! and how a name is escaped into a JSON API URL.
//!
//! Default instance `""`: `{prefix}/cas/{hash}-{size}`; a named instance:
//! `{prefix}/instances/{instance_dir::encode(name)}/cas/{hash}-{size}`.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reapi_core::{Digest, Error, Result};

use crate::instance_dir;

/// GCS's limit on an object name, in bytes.
const MAX_OBJECT_NAME: usize = 1024;

/// Everything but RFC 3986's unreserved characters is escaped, `/` included:
/// an object name is one path segment of the JSON API.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escapes an object or bucket name for a URL path segment or query value.
pub(super) fn escape(name: &str) -> String {
    utf8_percent_encode(name, SEGMENT).to_string()
}

/// The object names of one store.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    /// Empty, or the prefix with exactly one trailing `/`.
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        let trimmed = prefix.trim_matches('/');
        let prefix = if trimmed.is_empty() {
            String::new()
        } else {
            format!("{trimmed}/")
        };
        Keys { prefix }
    }

    /// The prefix, empty or ending in `/`.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object holding `digest` of `instance`; INVALID_ARGUMENT when the
    /// instance name makes it longer than GCS allows.
    pub(super) fn blob(&self, instance: &str, digest: &Digest) -> Result<String> {
        let name = if instance.is_empty() {
            format!("{}cas/{}", self.prefix, digest.storage_name())
        } else {
            format!(
                "{}instances/{}/cas/{}",
                self.prefix,
                instance_dir::encode(instance),
                digest.storage_name()
            )
        };
        if name.len() > MAX_OBJECT_NAME {
            return Err(Error::invalid_argument(format!(
                "instance name {:?}... is too long for a GCS object name ({} bytes, at most {MAX_OBJECT_NAME})",
                instance.chars().take(40).collect::<String>(),
                name.len()
            )));
        }
        Ok(name)
    }

    /// The object at `key` relative to the prefix.
    pub(super) fn object(&self, key: &str) -> Result<String> {
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(Error::invalid_argument("object key is empty"));
        }
        let name = format!("{}{key}", self.prefix);
        if name.len() > MAX_OBJECT_NAME {
            return Err(Error::invalid_argument(format!(
                "object key {:?}... is too long for a GCS object name",
                key.chars().take(40).collect::<String>()
            )));
        }
        Ok(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Digest::of_bytes(b"hello");
        let h = d.hash_hex();
        assert_eq!(Keys::new("").blob("", &d).unwrap(), format!("cas/{h}-5"));
        let blake = reapi_core::DigestFunction::Blake3.digest_of(b"hello");
        assert_eq!(
            Keys::new("").blob("", &blake).unwrap(),
            format!("cas/blake3-{}-5", blake.hash_hex())
        );
        assert_eq!(
            Keys::new("/p/q/").blob("", &d).unwrap(),
            format!("p/q/cas/{h}-5")
        );
        assert_eq!(
            Keys::new("p").blob("a/b", &d).unwrap(),
            format!("p/instances/a%2Fb/cas/{h}-5")
        );
        assert_eq!(
            Keys::new("p").blob("@default", &d).unwrap(),
            format!("p/instances/%40default/cas/{h}-5")
        );
        assert_eq!(Keys::new("p").object("ac/x").unwrap(), "p/ac/x");
        assert!(Keys::new("p").object("").is_err());
        assert!(Keys::new("").blob(&"/".repeat(400), &d).is_err());
    }

    #[test]
    fn escapes_everything_but_unreserved() {
        assert_eq!(
            escape("p/instances/a%2Fb/x-1~_."),
            "p%2Finstances%2Fa%252Fb%2Fx-1~_."
        );
        assert_eq!(escape("ü "), "%C3%BC%20");
    }
}
