//! Moving blobs with plain REAPI calls: ByteStream Write and Read, and the
//! set-up upload of whatever a scenario needs present (FindMissingBlobs,
//! then BatchUpdateBlobs for small blobs and ByteStream for large ones).

use futures::{StreamExt, TryStreamExt};
use prost::Message;
use reapi_core::proto::bytestream::{ReadRequest, WriteRequest};
use reapi_core::proto::remote_execution as re;
use reapi_core::{Digest, DigestFunction, DigestHasher};
use tonic::Code;

use crate::client::Clients;
use crate::content::Blob;
use crate::options::instance_prefix;

/// Blobs up to this size go in batches during set-up.
const BATCH_BLOB_LIMIT: usize = 1 << 20;
/// Payload per set-up batch, under the usual 4 MiB limit.
const BATCH_BYTES: usize = 3 << 20;
/// Blobs per set-up batch.
const BATCH_COUNT: usize = 1000;
/// Digests per set-up FindMissingBlobs.
const FIND_CHUNK: usize = 10_000;
/// Set-up requests in flight.
const SETUP_CONCURRENCY: usize = 16;

pub fn write_resource(instance: &str, digest: &Digest) -> String {
    format!(
        "{}uploads/{}/blobs/{}/{}",
        instance_prefix(instance),
        uuid::Uuid::new_v4(),
        digest.hash_hex(),
        digest.size()
    )
}

pub fn read_resource(instance: &str, digest: &Digest) -> String {
    format!(
        "{}blobs/{}/{}",
        instance_prefix(instance),
        digest.hash_hex(),
        digest.size()
    )
}

/// The request stream of one Write, made lazily chunk by chunk.
pub fn write_requests(
    resource: String,
    blob: Blob,
    chunk: usize,
) -> impl futures::Stream<Item = WriteRequest> + Send + 'static {
    let chunk = chunk.max(1);
    let len = blob.len();
    futures::stream::unfold(Some(0usize), move |offset| {
        let blob = blob.clone();
        let resource = resource.clone();
        async move {
            let offset = offset?;
            let data = blob.slice(offset, chunk);
            let end = offset + data.len();
            let finish = end >= len;
            let request = WriteRequest {
                resource_name: if offset == 0 { resource } else { String::new() },
                write_offset: offset as i64,
                finish_write: finish,
                data,
            };
            Some((request, (!finish).then_some(end)))
        }
    })
}

/// Uploads `blob` with one ByteStream Write.
pub async fn bytestream_write(
    clients: &Clients,
    worker: usize,
    blob: Blob,
    chunk: usize,
) -> Result<(), String> {
    let digest = blob.digest;
    let resource = write_resource(clients.instance(), &digest);
    let response = clients
        .bytestream(worker)
        .write(write_requests(resource, blob, chunk))
        .await
        .map_err(|s| format!("Write {digest}: {}: {}", s.code(), s.message()))?
        .into_inner();
    if response.committed_size != digest.size() as i64 {
        return Err(format!(
            "Write {digest}: committed_size {} instead of {}",
            response.committed_size,
            digest.size()
        ));
    }
    Ok(())
}

/// Reads a whole blob with ByteStream Read; returns the bytes received.
/// With `verify` the content is hashed and checked.
pub async fn bytestream_read(
    clients: &Clients,
    worker: usize,
    digest: &Digest,
    verify: bool,
) -> Result<u64, String> {
    let request = ReadRequest {
        resource_name: read_resource(clients.instance(), digest),
        read_offset: 0,
        read_limit: 0,
    };
    let fail = |s: tonic::Status| format!("Read {digest}: {}: {}", s.code(), s.message());
    let mut stream = clients
        .bytestream(worker)
        .read(request)
        .await
        .map_err(fail)?
        .into_inner();
    let mut received = 0u64;
    let mut hasher = verify.then(DigestHasher::new);
    while let Some(message) = stream.message().await.map_err(fail)? {
        received += message.data.len() as u64;
        if let Some(h) = hasher.as_mut() {
            h.update(&message.data);
        }
    }
    if received != digest.size() {
        return Err(format!(
            "Read {digest}: received {received} bytes instead of {}",
            digest.size()
        ));
    }
    if let Some(h) = hasher {
        h.verify(digest).map_err(|e| e.to_string())?;
    }
    Ok(received)
}

/// FindMissingBlobs over any number of digests; returns the missing ones.
pub async fn find_missing(clients: &Clients, digests: &[Digest]) -> Result<Vec<Digest>, String> {
    let chunks: Vec<Vec<re::Digest>> = digests
        .chunks(FIND_CHUNK)
        .map(|c| c.iter().map(Digest::to_proto).collect())
        .collect();
    let answers: Vec<Vec<re::Digest>> = futures::stream::iter(chunks.into_iter().enumerate())
        .map(|(i, blob_digests)| async move {
            let request = re::FindMissingBlobsRequest {
                instance_name: clients.instance().to_owned(),
                blob_digests,
                digest_function: 0,
            };
            clients
                .cas(i)
                .find_missing_blobs(request)
                .await
                .map(|r| r.into_inner().missing_blob_digests)
                .map_err(|s| format!("FindMissingBlobs: {}: {}", s.code(), s.message()))
        })
        .buffered(SETUP_CONCURRENCY)
        .try_collect()
        .await?;
    answers
        .into_iter()
        .flatten()
        .map(|d| Digest::from_proto(DigestFunction::Sha256, &d).map_err(|e| e.to_string()))
        .collect()
}

/// Uploads one batch of small in-memory blobs; every one must succeed.
pub async fn batch_update(
    clients: &Clients,
    worker: usize,
    blobs: Vec<(Digest, Vec<u8>)>,
) -> Result<(), String> {
    let request = re::BatchUpdateBlobsRequest {
        instance_name: clients.instance().to_owned(),
        requests: blobs
            .into_iter()
            .map(|(digest, data)| re::batch_update_blobs_request::Request {
                digest: Some(digest.to_proto()),
                data,
                compressor: 0,
            })
            .collect(),
        digest_function: 0,
    };
    let response = clients
        .cas(worker)
        .batch_update_blobs(request)
        .await
        .map_err(|s| format!("BatchUpdateBlobs: {}: {}", s.code(), s.message()))?
        .into_inner();
    for r in &response.responses {
        let status = r.status.clone().unwrap_or_default();
        if status.code != Code::Ok as i32 {
            return Err(format!(
                "BatchUpdateBlobs: blob {:?}: code {}: {}",
                r.digest, status.code, status.message
            ));
        }
    }
    Ok(())
}

/// Something to have present before a run.
#[derive(Clone)]
pub enum Upload {
    Blob(Blob),
    Bytes(Digest, Vec<u8>),
}

impl Upload {
    /// An encoded message and its digest.
    pub fn message<M: Message>(message: &M) -> Upload {
        let data = message.encode_to_vec();
        Upload::Bytes(Digest::of_bytes(&data), data)
    }

    pub fn digest(&self) -> Digest {
        match self {
            Upload::Blob(b) => b.digest,
            Upload::Bytes(d, _) => *d,
        }
    }

    fn len(&self) -> usize {
        self.digest().size() as usize
    }

    fn into_bytes(self) -> (Digest, Vec<u8>) {
        match self {
            Upload::Blob(b) => (b.digest, b.to_vec()),
            Upload::Bytes(d, data) => (d, data),
        }
    }
}

/// Makes every item present: asks which are missing, then uploads those.
/// Returns how many were uploaded.
pub async fn ensure_present(clients: &Clients, items: Vec<Upload>) -> Result<usize, String> {
    let digests: Vec<Digest> = items.iter().map(Upload::digest).collect();
    let missing: std::collections::HashSet<Digest> =
        find_missing(clients, &digests).await?.into_iter().collect();
    let mut seen = std::collections::HashSet::new();
    let todo: Vec<Upload> = items
        .into_iter()
        .filter(|i| missing.contains(&i.digest()) && seen.insert(i.digest()))
        .collect();
    let uploaded = todo.len();
    let (small, large): (Vec<Upload>, Vec<Upload>) =
        todo.into_iter().partition(|i| i.len() <= BATCH_BLOB_LIMIT);

    let mut batches: Vec<Vec<Upload>> = Vec::new();
    let mut current: Vec<Upload> = Vec::new();
    let mut current_bytes = 0;
    for item in small {
        if !current.is_empty()
            && (current_bytes + item.len() > BATCH_BYTES || current.len() >= BATCH_COUNT)
        {
            batches.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current_bytes += item.len();
        current.push(item);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    futures::stream::iter(batches.into_iter().enumerate())
        .map(|(i, batch)| async move {
            let blobs = batch.into_iter().map(Upload::into_bytes).collect();
            batch_update(clients, i, blobs).await
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    futures::stream::iter(large.into_iter().enumerate())
        .map(|(i, item)| async move {
            match item {
                Upload::Blob(blob) => bytestream_write(clients, i, blob, 1 << 20).await,
                Upload::Bytes(..) => Err("large in-memory uploads are not used".to_owned()),
            }
        })
        .buffer_unordered(4)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(uploaded)
}
