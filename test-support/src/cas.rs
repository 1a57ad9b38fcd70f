//! ContentAddressableStorage calls: FindMissingBlobs, BatchUpdateBlobs
//! (uploads split into batches under the limit), BatchReadBlobs, GetTree.

use prost::Message;
use reapi_core::proto::remote_execution as re;
use tonic::{Code, Status};

use reapi_core::DigestFunction;

use crate::clients::Cas;
use crate::digests::{sha256, PDigest};
use crate::status::rpc_code;

/// `max_batch_total_size_bytes` the server must advertise and enforce.
pub const MAX_BATCH: usize = 4 * 1024 * 1024;

/// Digests absent from the CAS, in the order the server returned them.
pub async fn find_missing(cas: &mut Cas, instance: &str, digests: &[PDigest]) -> Vec<PDigest> {
    try_find_missing(cas, instance, digests)
        .await
        .expect("FindMissingBlobs")
}

pub async fn try_find_missing(
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<PDigest>, Status> {
    try_find_missing_with(DigestFunction::Sha256, cas, instance, digests).await
}

/// [`try_find_missing`] of digests made with `function`.
pub async fn try_find_missing_with(
    function: DigestFunction,
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<PDigest>, Status> {
    Ok(cas
        .find_missing_blobs(re::FindMissingBlobsRequest {
            instance_name: instance.into(),
            blob_digests: digests.to_vec(),
            digest_function: function.proto_value(),
        })
        .await?
        .into_inner()
        .missing_blob_digests)
}

/// Whether one blob is present.
pub async fn is_present(cas: &mut Cas, instance: &str, digest: &PDigest) -> bool {
    find_missing(cas, instance, std::slice::from_ref(digest))
        .await
        .is_empty()
}

/// One BatchUpdateBlobs request for all of `blobs`, however large.
pub fn update_request(instance: &str, blobs: &[&[u8]]) -> re::BatchUpdateBlobsRequest {
    update_request_with(DigestFunction::Sha256, instance, blobs)
}

fn update_request_with(
    function: DigestFunction,
    instance: &str,
    blobs: &[&[u8]],
) -> re::BatchUpdateBlobsRequest {
    re::BatchUpdateBlobsRequest {
        instance_name: instance.into(),
        requests: blobs.iter().map(|b| update_entry(function, b)).collect(),
        digest_function: function.proto_value(),
    }
}

fn update_entry(function: DigestFunction, blob: &[u8]) -> re::batch_update_blobs_request::Request {
    re::batch_update_blobs_request::Request {
        digest: Some(function.digest_of(blob).to_proto()),
        data: blob.to_vec(),
        compressor: 0,
    }
}

/// Uploads blobs with BatchUpdateBlobs and asserts each succeeded; returns
/// their digests. Blobs go in order, in as few requests as fit in
/// [`MAX_BATCH`] encoded bytes each (one request when they all fit).
pub async fn upload<B: AsRef<[u8]>>(cas: &mut Cas, instance: &str, blobs: &[B]) -> Vec<PDigest> {
    upload_with(DigestFunction::Sha256, cas, instance, blobs).await
}

/// [`upload`] with digests made by `function`.
pub async fn upload_with<B: AsRef<[u8]>>(
    function: DigestFunction,
    cas: &mut Cas,
    instance: &str,
    blobs: &[B],
) -> Vec<PDigest> {
    let empty = update_request_with(function, instance, &[]);
    let mut digests = Vec::with_capacity(blobs.len());
    let mut batch = empty.clone();
    let mut size = empty.encoded_len();
    for blob in blobs {
        let entry = update_entry(function, blob.as_ref());
        // Field 2 (`requests`): a one-byte key, the length, the message.
        let entry_size = 1 + prost::length_delimiter_len(entry.encoded_len()) + entry.encoded_len();
        if !batch.requests.is_empty() && size + entry_size > MAX_BATCH {
            let full = std::mem::replace(&mut batch, empty.clone());
            digests.extend(upload_batch(cas, full).await);
            size = empty.encoded_len();
        }
        size += entry_size;
        batch.requests.push(entry);
    }
    if !batch.requests.is_empty() {
        digests.extend(upload_batch(cas, batch).await);
    }
    digests
}

async fn upload_batch(cas: &mut Cas, request: re::BatchUpdateBlobsRequest) -> Vec<PDigest> {
    let digests: Vec<PDigest> = request
        .requests
        .iter()
        .map(|r| r.digest.clone().expect("digest"))
        .collect();
    let responses = cas
        .batch_update_blobs(request)
        .await
        .expect("BatchUpdateBlobs")
        .into_inner()
        .responses;
    assert_eq!(responses.len(), digests.len());
    for (digest, response) in digests.iter().zip(&responses) {
        assert_eq!(response.digest.as_ref(), Some(digest));
        assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    }
    digests
}

pub async fn upload_one(cas: &mut Cas, instance: &str, blob: &[u8]) -> PDigest {
    upload(cas, instance, &[blob]).await.remove(0)
}

/// Uploads an encoded message; returns its digest.
pub async fn upload_msg<M: Message>(cas: &mut Cas, instance: &str, message: &M) -> PDigest {
    upload_one(cas, instance, &message.encode_to_vec()).await
}

pub async fn batch_read(
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<re::batch_read_blobs_response::Response>, Status> {
    batch_read_with(DigestFunction::Sha256, cas, instance, digests).await
}

/// [`batch_read`] of digests made with `function`.
pub async fn batch_read_with(
    function: DigestFunction,
    cas: &mut Cas,
    instance: &str,
    digests: &[PDigest],
) -> Result<Vec<re::batch_read_blobs_response::Response>, Status> {
    Ok(cas
        .batch_read_blobs(re::BatchReadBlobsRequest {
            instance_name: instance.into(),
            digests: digests.to_vec(),
            acceptable_compressors: vec![],
            digest_function: function.proto_value(),
        })
        .await?
        .into_inner()
        .responses)
}

pub fn tree_request(
    instance: &str,
    root: &PDigest,
    page_size: i32,
    token: &str,
) -> re::GetTreeRequest {
    re::GetTreeRequest {
        instance_name: instance.into(),
        root_digest: Some(root.clone()),
        page_size,
        page_token: token.into(),
        digest_function: sha256(),
    }
}

/// Every page of a GetTree stream; an error whether it comes at the call or
/// in the stream.
pub async fn get_tree(
    cas: &mut Cas,
    request: re::GetTreeRequest,
) -> Result<Vec<re::GetTreeResponse>, Status> {
    let mut stream = cas.get_tree(request).await?.into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}
