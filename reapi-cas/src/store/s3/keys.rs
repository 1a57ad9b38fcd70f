//! Where things live in the bucket.
//!
//! ```text
//! {prefix}/cas/{hash}-{size}                          blobs of the default instance ""
//! {prefix}/instances/{instance_dir}/cas/{hash}-{size} blobs of a named instance
//! {prefix}/{key}                                      ObjectBucket objects (action-cache backup)
//! ```
//!
//! `{instance_dir}` is [`crate::instance_dir::encode`]: one path component
//! per name, so no instance's keys are a prefix of another's. An empty
//! prefix puts everything at the bucket's root, without a leading `/`.

use reapi_core::{Digest, Result};

use crate::instance_dir;

#[derive(Clone, Debug)]
pub(super) struct KeyLayout {
    /// The configured prefix without leading or trailing `/`.
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: &str) -> Self {
        KeyLayout {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    /// The key of a blob; INVALID_ARGUMENT for an instance name too long
    /// to be one component.
    pub fn blob(&self, instance: &str, digest: &Digest) -> Result<String> {
        let name = format!("cas/{}", digest.storage_name());
        if instance.is_empty() {
            return Ok(self.object(&name));
        }
        let dir = instance_dir::encode_checked(instance)?;
        Ok(self.object(&format!("instances/{dir}/{name}")))
    }

    /// The key of an object named relative to the prefix.
    pub fn object(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let d = Digest::of_bytes(b"hello");
        let h = d.hash_hex();
        let root = KeyLayout::new("");
        assert_eq!(root.blob("", &d).unwrap(), format!("cas/{h}-5"));
        assert_eq!(
            root.blob("a/b", &d).unwrap(),
            format!("instances/a%2Fb/cas/{h}-5")
        );
        assert_eq!(root.object("ac/x"), "ac/x");
        let prefixed = KeyLayout::new("/reapi/");
        assert_eq!(prefixed.blob("", &d).unwrap(), format!("reapi/cas/{h}-5"));
        assert_eq!(
            prefixed.blob("main", &d).unwrap(),
            format!("reapi/instances/main/cas/{h}-5")
        );
        assert_eq!(prefixed.object("ac/x"), "reapi/ac/x");
        let blake = reapi_core::DigestFunction::Blake3.digest_of(b"hello");
        assert_eq!(
            root.blob("", &blake).unwrap(),
            format!("cas/blake3-{}-5", blake.hash_hex())
        );
    }

    #[test]
    fn overlong_instance_names_are_invalid() {
        let err = KeyLayout::new("")
            .blob(&"/".repeat(100), &Digest::EMPTY)
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
}
