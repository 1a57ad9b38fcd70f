//! The action-cache trait: action digest -> `ActionResult`, per instance.
//!
//! Implementations store what they are given; the rule that a hit is only
//! returned while every blob it names is still in the CAS is a layer of its
//! own (see `reapi-cas`), so that it can wrap any action cache.

use async_trait::async_trait;

use crate::digest::Digest;
use crate::error::Result;
use crate::proto::remote_execution::ActionResult;

#[async_trait]
pub trait ActionCache: Send + Sync + 'static {
    /// The result stored for `action_digest`, or `None`. The key is only a
    /// digest: some clients store results under digests that are not Actions.
    async fn get(&self, instance: &str, action_digest: &Digest) -> Result<Option<ActionResult>>;

    /// Stores (or replaces) the result for `action_digest`.
    async fn put(
        &self,
        instance: &str,
        action_digest: &Digest,
        result: &ActionResult,
    ) -> Result<()>;
}
