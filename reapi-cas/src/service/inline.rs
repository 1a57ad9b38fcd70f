//! Inlining of stdout, stderr and output files into an `ActionResult`, as
//! GetActionResult and (REAPI 2.9) Execute requests may ask.

use reapi_core::proto::remote_execution::{ActionResult, Digest as ProtoDigest};
use reapi_core::{BlobStore, Digest, DigestFunction};

/// Total bytes inlined into one response; what does not fit stays a digest
/// for the client to fetch.
pub const MAX_INLINE_BYTES: u64 = 1024 * 1024;

/// What the client asked to have inlined.
#[derive(Clone, Copy, Debug, Default)]
pub struct InlineRequest<'a> {
    pub stdout: bool,
    pub stderr: bool,
    pub output_files: &'a [String],
    /// The function of the action's digest, which its outputs' share.
    pub function: DigestFunction,
}

/// Fills `stdout_raw`, `stderr_raw` and output file `contents` while they fit
/// the budget. A blob that vanished meanwhile is simply not inlined.
pub async fn inline_outputs(
    store: &dyn BlobStore,
    instance: &str,
    request: InlineRequest<'_>,
    result: &mut ActionResult,
) {
    let mut budget = MAX_INLINE_BYTES;
    let mut fits = |digest: Option<&ProtoDigest>| {
        let digest = digest.and_then(|d| Digest::from_proto(request.function, d).ok())?;
        if digest.size() > budget {
            return None;
        }
        budget -= digest.size();
        Some(digest)
    };
    let fetch = |digest: Digest| async move {
        store
            .get(instance, &digest)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default()
    };
    if request.stdout && result.stdout_raw.is_empty() {
        if let Some(d) = fits(result.stdout_digest.as_ref()) {
            result.stdout_raw = fetch(d).await;
        }
    }
    if request.stderr && result.stderr_raw.is_empty() {
        if let Some(d) = fits(result.stderr_digest.as_ref()) {
            result.stderr_raw = fetch(d).await;
        }
    }
    for file in &mut result.output_files {
        if !request.output_files.contains(&file.path) || !file.contents.is_empty() {
            continue;
        }
        if let Some(d) = fits(file.digest.as_ref()) {
            file.contents = fetch(d).await;
        }
    }
}
