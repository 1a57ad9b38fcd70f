//! The ContentAddressableStorage service: FindMissingBlobs, the batch calls
//! and GetTree.

use std::collections::{HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;
use prost::Message;
use reapi_core::digest::missing_in_order;
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::content_addressable_storage_server::ContentAddressableStorage;
use reapi_core::proto::rpc;
use reapi_core::tree::directory_children;
use reapi_core::{BlobStore, Digest, DigestFunction, Error, ErrorExt, InstancePolicy, Result};
use tonic::{Request, Response, Status};

use super::{BATCH_MESSAGE_HEADROOM, MAX_BATCH_TOTAL_SIZE};
use crate::chunking::{self, Splice};
use crate::compression;

/// Directories per GetTree page when the client leaves it to us, and the
/// most we return in one page whatever it asks.
const DEFAULT_TREE_PAGE: usize = 1000;
const MAX_TREE_PAGE: usize = 10_000;

/// Chunk digests per SplitBlob or GetChunkMapping message: about 1 MiB.
const MAX_DIGESTS_PER_MESSAGE: usize = 10_000;

const FAST_CDC_2020: i32 = re::chunking_function::Value::FastCdc2020 as i32;
const IDENTITY: i32 = re::compressor::Value::Identity as i32;
const ZSTD: i32 = re::compressor::Value::Zstd as i32;

pub struct CasService {
    store: Arc<dyn BlobStore>,
    instances: InstancePolicy,
}

impl CasService {
    pub fn new(store: Arc<dyn BlobStore>, instances: InstancePolicy) -> Self {
        CasService { store, instances }
    }

    /// Checks the instance and returns the request's digest function.
    fn check(&self, instance: &str, digest_function: i32) -> Result<DigestFunction> {
        self.instances.check(instance)?;
        DigestFunction::from_proto(digest_function)
    }
}

/// A batch entry's status: as a call's would be, with the server's paths
/// left out and a server fault logged (see `Error::to_rpc_status`).
fn status_of(result: Result<()>) -> rpc::Status {
    match result {
        Ok(()) => rpc::Status::default(),
        Err(e) => e.to_rpc_status(),
    }
}

fn parse_digests(function: DigestFunction, digests: &[re::Digest]) -> Result<Vec<Digest>> {
    digests
        .iter()
        .map(|d| Digest::from_proto(function, d))
        .collect()
}

type TreeStream = Pin<Box<dyn Stream<Item = Result<re::GetTreeResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ContentAddressableStorage for CasService {
    async fn find_missing_blobs(
        &self,
        request: Request<re::FindMissingBlobsRequest>,
    ) -> Result<Response<re::FindMissingBlobsResponse>, Status> {
        let req = request.into_inner();
        let function = self.check(&req.instance_name, req.digest_function)?;
        let digests = parse_digests(function, &req.blob_digests)?;
        let missing = self
            .store
            .find_missing(&req.instance_name, &digests)
            .await?;
        // The request's own digest messages answer, when the store kept
        // their order: no hex encoding or allocation per missing digest.
        let missing_blob_digests = match missing_in_order(&digests, &missing) {
            Some(marks) => req
                .blob_digests
                .into_iter()
                .zip(marks)
                .filter_map(|(digest, missing)| missing.then_some(digest))
                .collect(),
            None => missing.iter().map(Digest::to_proto).collect(),
        };
        Ok(Response::new(re::FindMissingBlobsResponse {
            missing_blob_digests,
        }))
    }

    async fn batch_update_blobs(
        &self,
        request: Request<re::BatchUpdateBlobsRequest>,
    ) -> Result<Response<re::BatchUpdateBlobsResponse>, Status> {
        let req = request.into_inner();
        let function = self.check(&req.instance_name, req.digest_function)?;
        let size = req.encoded_len();
        let limit = MAX_BATCH_TOTAL_SIZE + BATCH_MESSAGE_HEADROOM;
        if size > limit {
            return Err(Error::invalid_argument(format!(
                "BatchUpdateBlobs request is {size} bytes, over the limit of {limit} bytes \
                 (max_batch_total_size_bytes, {MAX_BATCH_TOTAL_SIZE}, plus room for the \
                 digests); use ByteStream Write for large blobs"
            ))
            .into());
        }
        let instance = req.instance_name.as_str();
        let updates = req.requests.into_iter().map(|blob| async move {
            let proto_digest = blob.digest.clone().unwrap_or_default();
            let result = async {
                let digest = Digest::from_proto_field(function, blob.digest.as_ref(), "digest")?;
                super::check_blob_size(self.store.as_ref(), &digest)?;
                crate::metrics::cas_received(blob.data.len());
                let data = match blob.compressor {
                    IDENTITY => Bytes::from(blob.data),
                    ZSTD => {
                        let declared = digest.size();
                        tokio::task::spawn_blocking(move || {
                            compression::decompress_entry(&blob.data, declared)
                        })
                        .await
                        .map_err(|e| Error::internal(format!("decompression task: {e}")))??
                    }
                    other => {
                        return Err(Error::invalid_argument(format!(
                            "blob {digest}: compressor {other} is not supported \
                             (supported_batch_update_compressors: zstd)"
                        )))
                    }
                };
                self.store
                    .put(instance, &digest, data)
                    .await
                    .with_context(|| format!("storing blob {digest}"))
            }
            .await;
            re::batch_update_blobs_response::Response {
                digest: Some(proto_digest),
                status: Some(status_of(result)),
            }
        });
        let responses = futures::future::join_all(updates).await;
        Ok(Response::new(re::BatchUpdateBlobsResponse { responses }))
    }

    async fn batch_read_blobs(
        &self,
        request: Request<re::BatchReadBlobsRequest>,
    ) -> Result<Response<re::BatchReadBlobsResponse>, Status> {
        let req = request.into_inner();
        let function = self.check(&req.instance_name, req.digest_function)?;
        let digests = parse_digests(function, &req.digests)?;
        let total: u64 = digests.iter().map(Digest::size).sum();
        if total > MAX_BATCH_TOTAL_SIZE as u64 {
            return Err(Error::invalid_argument(format!(
                "BatchReadBlobs asks for {total} bytes, over the {MAX_BATCH_TOTAL_SIZE}-byte \
                 limit (max_batch_total_size_bytes); use ByteStream Read for large blobs"
            ))
            .into());
        }
        let instance = req.instance_name.as_str();
        let zstd = req.acceptable_compressors.contains(&ZSTD);
        let reads = digests.iter().map(|digest| async move {
            let mut compressor = IDENTITY;
            let (data, status) = match self.store.get(instance, digest).await {
                Ok(data) if zstd && !data.is_empty() => {
                    crate::metrics::cas_sent(data.len());
                    compressor = ZSTD;
                    let compressed =
                        tokio::task::spawn_blocking(move || compression::compress_entry(&data))
                            .await
                            .map_err(|e| Error::internal(format!("compression task: {e}")))
                            .and_then(|r| r);
                    match compressed {
                        Ok(compressed) => (compressed.to_vec(), rpc::Status::default()),
                        Err(e) => (Vec::new(), status_of(Err(e))),
                    }
                }
                Ok(data) => {
                    crate::metrics::cas_sent(data.len());
                    (data.to_vec(), rpc::Status::default())
                }
                Err(e) => (Vec::new(), status_of(Err(e))),
            };
            re::batch_read_blobs_response::Response {
                digest: Some(digest.to_proto()),
                data,
                compressor,
                status: Some(status),
            }
        });
        let responses = futures::future::join_all(reads).await;
        Ok(Response::new(re::BatchReadBlobsResponse { responses }))
    }

    type GetTreeStream = TreeStream;

    async fn get_tree(
        &self,
        request: Request<re::GetTreeRequest>,
    ) -> Result<Response<Self::GetTreeStream>, Status> {
        let req = request.into_inner();
        let function = self.check(&req.instance_name, req.digest_function)?;
        let root = Digest::from_proto_field(function, req.root_digest.as_ref(), "root_digest")?;
        let page_size = match usize::try_from(req.page_size) {
            Ok(0) => DEFAULT_TREE_PAGE,
            Ok(n) => n.min(MAX_TREE_PAGE),
            Err(_) => return Err(Error::invalid_argument("page_size is negative").into()),
        };
        let skip = parse_page_token(&req.page_token)?;
        // The root must exist: a missing root is NOT_FOUND, while missing
        // subtrees are omitted as the spec allows.
        self.store.get(&req.instance_name, &root).await?;
        let walk = TreeWalk {
            store: self.store.clone(),
            instance: req.instance_name,
            queue: VecDeque::from([root]),
            seen: HashSet::from([root]),
            emitted: 0,
            skip,
            page_size,
        };
        let stream = futures::stream::unfold(Some(walk), |walk| async move {
            let mut walk = walk?;
            match walk.next_page().await {
                Ok(page) => {
                    let done = page.next_page_token.is_empty();
                    Some((Ok(page), (!done).then_some(walk)))
                }
                Err(e) => Some((Err(Status::from(e)), None)),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn split_blob(
        &self,
        request: Request<re::SplitBlobRequest>,
    ) -> Result<Response<re::SplitBlobResponse>, Status> {
        let request = request.into_inner();
        let chunks = self
            .split(
                &request.instance_name,
                request.digest_function,
                request.blob_digest.as_ref(),
            )
            .await?;
        if chunks.len() > MAX_DIGESTS_PER_MESSAGE {
            return Err(Status::resource_exhausted(format!(
                "the blob has {} chunks, too many for one message: use GetChunkMapping",
                chunks.len()
            )));
        }
        Ok(Response::new(re::SplitBlobResponse {
            chunk_digests: chunks.iter().map(Digest::to_proto).collect(),
            chunking_function: FAST_CDC_2020,
        }))
    }

    type GetChunkMappingStream =
        Pin<Box<dyn Stream<Item = Result<re::GetChunkMappingResponse, Status>> + Send>>;

    async fn get_chunk_mapping(
        &self,
        request: Request<re::GetChunkMappingRequest>,
    ) -> Result<Response<Self::GetChunkMappingStream>, Status> {
        let request = request.into_inner();
        let chunks = self
            .split(
                &request.instance_name,
                request.digest_function,
                request.blob_digest.as_ref(),
            )
            .await?;
        let batches: Vec<Result<re::GetChunkMappingResponse, Status>> = chunks
            .chunks(MAX_DIGESTS_PER_MESSAGE)
            .enumerate()
            .map(|(i, batch)| {
                Ok(re::GetChunkMappingResponse {
                    chunk_digests: batch.iter().map(Digest::to_proto).collect(),
                    chunking_function: if i == 0 { FAST_CDC_2020 } else { 0 },
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    async fn splice_blob(
        &self,
        request: Request<re::SpliceBlobRequest>,
    ) -> Result<Response<re::SpliceBlobResponse>, Status> {
        let request = request.into_inner();
        let function = self.check(&request.instance_name, request.digest_function)?;
        let blob = Digest::from_proto_field(function, request.blob_digest.as_ref(), "blob_digest")?;
        let chunks = parse_digests(function, &request.chunk_digests)?;
        let instance = request.instance_name.as_str();
        if let Some(mut splice) = Splice::start(self.store.as_ref(), instance, blob).await? {
            splice.append(&chunks).await?;
            splice.finish().await?;
        }
        Ok(Response::new(re::SpliceBlobResponse {
            blob_digest: Some(blob.to_proto()),
        }))
    }

    async fn register_chunk_mapping(
        &self,
        request: Request<tonic::Streaming<re::RegisterChunkMappingRequest>>,
    ) -> Result<Response<re::RegisterChunkMappingResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("RegisterChunkMapping had no messages"))?;
        let function = self.check(&first.instance_name, first.digest_function)?;
        let blob = Digest::from_proto_field(function, first.blob_digest.as_ref(), "blob_digest")?;
        let instance = first.instance_name.as_str();
        let Some(mut splice) = Splice::start(self.store.as_ref(), instance, blob).await? else {
            return Ok(Response::new(re::RegisterChunkMappingResponse {
                blob_digest: Some(blob.to_proto()),
            }));
        };
        splice
            .append(&parse_digests(function, &first.chunk_digests)?)
            .await?;
        while let Some(next) = stream.message().await? {
            splice
                .append(&parse_digests(function, &next.chunk_digests)?)
                .await?;
        }
        splice.finish().await?;
        Ok(Response::new(re::RegisterChunkMappingResponse {
            blob_digest: Some(blob.to_proto()),
        }))
    }
}

impl CasService {
    async fn split(
        &self,
        instance: &str,
        digest_function: i32,
        blob: Option<&re::Digest>,
    ) -> Result<Vec<Digest>> {
        let function = self.check(instance, digest_function)?;
        let blob = Digest::from_proto_field(function, blob, "blob_digest")?;
        chunking::split(self.store.as_ref(), instance, &blob).await
    }
}

/// Page tokens are the count of directories already returned, so a client
/// can resume a broken GetTree stream statelessly.
fn parse_page_token(token: &str) -> Result<usize> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix("skip:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            Error::invalid_argument(format!(
                "page_token {token:?} is not one this server issued"
            ))
        })
}

/// Breadth-first walk of a directory tree, one page at a time. Each
/// directory is returned once however often it appears.
struct TreeWalk {
    store: Arc<dyn BlobStore>,
    instance: String,
    queue: VecDeque<Digest>,
    seen: HashSet<Digest>,
    emitted: usize,
    skip: usize,
    page_size: usize,
}

impl TreeWalk {
    /// The next page; its token is empty when the walk is complete.
    async fn next_page(&mut self) -> Result<re::GetTreeResponse> {
        let mut directories = Vec::new();
        while directories.len() < self.page_size {
            let Some(digest) = self.queue.pop_front() else {
                break;
            };
            let bytes = match self.store.get(&self.instance, &digest).await {
                Ok(bytes) => bytes,
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(e.context(format!("reading directory {digest}"))),
            };
            let dir = re::Directory::decode(bytes).map_err(|e| {
                Error::invalid_argument(format!(
                    "directory {digest} is not a valid Directory message: {e}"
                ))
            })?;
            let (_, subdirs) = directory_children(digest.function(), &dir)
                .with_context(|| format!("directory {digest}"))?;
            for sub in subdirs {
                if self.seen.insert(sub) {
                    self.queue.push_back(sub);
                }
            }
            self.emitted += 1;
            if self.emitted > self.skip {
                directories.push(dir);
            }
        }
        let next_page_token = if self.queue.is_empty() {
            String::new()
        } else {
            format!("skip:{}", self.emitted)
        };
        Ok(re::GetTreeResponse {
            directories,
            next_page_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens() {
        assert_eq!(parse_page_token("").unwrap(), 0);
        assert_eq!(parse_page_token("skip:42").unwrap(), 42);
        for bad in ["42", "skip:", "skip:-1", "skip:x"] {
            assert_eq!(
                parse_page_token(bad).unwrap_err().code(),
                tonic::Code::InvalidArgument
            );
        }
    }
}
