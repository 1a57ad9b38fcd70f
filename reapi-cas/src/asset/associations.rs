//! What the Remote Asset services remember: URI + qualifiers -> a blob or a
//! directory in the CAS, with when it was fetched or pushed and until when
//! it is valid.
//!
//! Kept in the action cache, under a key derived from the asset (ADR
//! 0014): entries then persist, replicate and evict like action results,
//! and the action cache's completeness check drops an association whose
//! blob or directory left the CAS, so a lookup never answers with content
//! that is gone.

use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use reapi_core::proto::protobuf::Timestamp;
use reapi_core::proto::remote_asset as re_asset;
use reapi_core::proto::remote_execution as re;
use reapi_core::{ActionCache, Digest, DigestFunction, Result};

/// What an association points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssetKind {
    Blob,
    Directory,
}

impl AssetKind {
    fn key_tag(self) -> &'static str {
        match self {
            AssetKind::Blob => "reapi.asset.v1/blob",
            AssetKind::Directory => "reapi.asset.v1/directory",
        }
    }
}

/// An association found for one of the asked URIs.
#[derive(Clone, Debug, PartialEq)]
pub struct Found {
    pub uri: String,
    pub digest: Digest,
    pub expires_at: Option<Timestamp>,
}

/// The key an asset is stored under: a message no client sends as an
/// Action, so it cannot collide with a real action's result.
#[derive(Clone, PartialEq, Message)]
struct AssetKey {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "2")]
    uri: String,
    #[prost(message, repeated, tag = "3")]
    qualifiers: Vec<re_asset::Qualifier>,
}

/// The path of an association's blob or directory in its `ActionResult`.
const BLOB_PATH: &str = "asset";

/// An association's expiry, kept in its metadata's auxiliary messages.
const EXPIRE_AT_TYPE: &str = "type.googleapis.com/google.protobuf.Timestamp";

pub struct Associations {
    cache: Arc<dyn ActionCache>,
}

impl Associations {
    pub fn new(cache: Arc<dyn ActionCache>) -> Associations {
        Associations { cache }
    }

    /// Remembers `uri` + `qualifiers` (sorted) -> `digest`, as of now.
    pub async fn record(
        &self,
        instance: &str,
        kind: AssetKind,
        uri: &str,
        qualifiers: &[(String, String)],
        digest: &Digest,
        expire_at: Option<Timestamp>,
    ) -> Result<()> {
        let mut result = re::ActionResult {
            execution_metadata: Some(re::ExecutedActionMetadata {
                worker_completed_timestamp: Some(reapi_core::proto::time::timestamp(
                    SystemTime::now(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        match kind {
            AssetKind::Blob => result.output_files.push(re::OutputFile {
                path: BLOB_PATH.into(),
                digest: Some(digest.to_proto()),
                ..Default::default()
            }),
            AssetKind::Directory => result.output_directories.push(re::OutputDirectory {
                path: BLOB_PATH.into(),
                root_directory_digest: Some(digest.to_proto()),
                ..Default::default()
            }),
        }
        if let (Some(expire_at), Some(metadata)) = (expire_at, result.execution_metadata.as_mut()) {
            metadata
                .auxiliary_metadata
                .push(reapi_core::proto::protobuf::Any {
                    type_url: EXPIRE_AT_TYPE.into(),
                    value: expire_at.encode_to_vec(),
                });
        }
        let key = key(digest.function(), kind, uri, qualifiers);
        self.cache.put(instance, &key, &result).await
    }

    /// The first of `uris` with a valid association: not expired, and no
    /// older than `oldest_accepted` when given. Only associations recorded
    /// with digests of `function` are found.
    pub async fn lookup(
        &self,
        instance: &str,
        function: DigestFunction,
        kind: AssetKind,
        uris: &[String],
        qualifiers: &[(String, String)],
        oldest_accepted: Option<&Timestamp>,
    ) -> Result<Option<Found>> {
        let now = reapi_core::proto::time::timestamp(SystemTime::now());
        for uri in uris {
            let Some(result) = self
                .cache
                .get(instance, &key(function, kind, uri, qualifiers))
                .await?
            else {
                continue;
            };
            let metadata = result.execution_metadata.clone().unwrap_or_default();
            let expires_at = metadata
                .auxiliary_metadata
                .iter()
                .find(|any| any.type_url == EXPIRE_AT_TYPE)
                .and_then(|any| Timestamp::decode(any.value.as_slice()).ok());
            if expires_at.as_ref().is_some_and(|t| earlier(t, &now)) {
                continue;
            }
            let stored_at = metadata.worker_completed_timestamp.unwrap_or_default();
            if oldest_accepted.is_some_and(|oldest| earlier(&stored_at, oldest)) {
                continue;
            }
            let digest = match kind {
                AssetKind::Blob => result.output_files.first().and_then(|f| f.digest.as_ref()),
                AssetKind::Directory => result
                    .output_directories
                    .first()
                    .and_then(|d| d.root_directory_digest.as_ref()),
            };
            let Some(digest) = digest.and_then(|d| Digest::from_proto(function, d).ok()) else {
                continue;
            };
            return Ok(Some(Found {
                uri: uri.clone(),
                digest,
                expires_at,
            }));
        }
        Ok(None)
    }
}

/// The action cache key of an association. It is made with the function of
/// the digests it records, so the action cache reads the entry's digests
/// with that function, and an association made for one function is never
/// an answer for another.
fn key(
    function: DigestFunction,
    kind: AssetKind,
    uri: &str,
    qualifiers: &[(String, String)],
) -> Digest {
    function.digest_of_message(&AssetKey {
        kind: kind.key_tag().into(),
        uri: uri.into(),
        qualifiers: qualifiers
            .iter()
            .map(|(name, value)| re_asset::Qualifier {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
    })
}

fn earlier(a: &Timestamp, b: &Timestamp) -> bool {
    (a.seconds, a.nanos) < (b.seconds, b.nanos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action_cache::MemoryActionCache;

    fn associations() -> Associations {
        Associations::new(Arc::new(MemoryActionCache::new(1 << 20)))
    }

    fn at(seconds_from_now: i64) -> Timestamp {
        let now = reapi_core::proto::time::timestamp(SystemTime::now());
        Timestamp {
            seconds: now.seconds + seconds_from_now,
            nanos: 0,
        }
    }

    #[tokio::test]
    async fn an_association_is_found_by_any_of_the_uris_with_the_same_qualifiers() {
        let assets = associations();
        let digest = Digest::of_bytes(b"content");
        let qualifiers = vec![("bazel.canonical_id".to_string(), "v1".to_string())];
        assets
            .record(
                "",
                AssetKind::Blob,
                "https://b/x",
                &qualifiers,
                &digest,
                None,
            )
            .await
            .unwrap();
        let uris = vec!["https://a/x".to_string(), "https://b/x".to_string()];
        let found = assets
            .lookup(
                "",
                DigestFunction::Sha256,
                AssetKind::Blob,
                &uris,
                &qualifiers,
                None,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.uri, "https://b/x");
        assert_eq!(found.digest, digest);
        // Other qualifiers, kind or instance: another asset.
        let none = [
            assets
                .lookup(
                    "",
                    DigestFunction::Sha256,
                    AssetKind::Blob,
                    &uris,
                    &[],
                    None,
                )
                .await,
            assets
                .lookup(
                    "",
                    DigestFunction::Sha256,
                    AssetKind::Directory,
                    &uris,
                    &qualifiers,
                    None,
                )
                .await,
            assets
                .lookup(
                    "other",
                    DigestFunction::Sha256,
                    AssetKind::Blob,
                    &uris,
                    &qualifiers,
                    None,
                )
                .await,
        ];
        for lookup in none {
            assert_eq!(lookup.unwrap(), None);
        }
    }

    #[tokio::test]
    async fn expired_and_too_old_associations_are_not_found() {
        let assets = associations();
        let digest = Digest::of_bytes(b"content");
        let uris = vec!["u".to_string()];
        assets
            .record("", AssetKind::Blob, "u", &[], &digest, Some(at(-5)))
            .await
            .unwrap();
        assert_eq!(
            assets
                .lookup(
                    "",
                    DigestFunction::Sha256,
                    AssetKind::Blob,
                    &uris,
                    &[],
                    None
                )
                .await
                .unwrap(),
            None
        );
        assets
            .record("", AssetKind::Blob, "u", &[], &digest, Some(at(3600)))
            .await
            .unwrap();
        let found = assets
            .lookup(
                "",
                DigestFunction::Sha256,
                AssetKind::Blob,
                &uris,
                &[],
                None,
            )
            .await
            .unwrap();
        assert_eq!(found.unwrap().expires_at, Some(at(3600)));
        let newer_only = at(60);
        assert_eq!(
            assets
                .lookup(
                    "",
                    DigestFunction::Sha256,
                    AssetKind::Blob,
                    &uris,
                    &[],
                    Some(&newer_only)
                )
                .await
                .unwrap(),
            None
        );
    }
}
