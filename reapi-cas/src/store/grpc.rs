//! `GrpcStore`: the CAS of another REAPI server, as a `BlobStore`. A worker
//! uses it to reach the cluster's CAS through a scheduler when no bucket is
//! shared: FindMissingBlobs for presence, ByteStream Read and Write for
//! content (streamed both ways, never held whole), BatchUpdateBlobs for
//! small writes.
//!
//! Every write is verified here as well as by the server: a blob that does
//! not match its digest is refused before its last byte leaves. The cluster
//! CAS reaches its members with [`GrpcStore::for_member`] instead, which
//! leaves that to the member: each verifies the copy it stores, and a
//! scheduler relaying one write to three members would otherwise hash it
//! three more times.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use reapi_core::blob_store::{collect_stream, BlobStore, BlobWriter, ChunkStream};
use reapi_core::proto::bytestream::{ReadRequest, WriteResponse};
use reapi_core::proto::bytestream_bytes::{ReadResponse, WriteRequest};
use reapi_core::proto::remote_execution::batch_update_blobs_request;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::proto::remote_execution::{BatchUpdateBlobsRequest, FindMissingBlobsRequest};
use reapi_core::resource_name::{ReadResource, WriteResource};
use reapi_core::{Digest, DigestFunction, DigestHasher, Error, Result};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use crate::service::bytestream::ONE_SHOT_UPLOAD_HEADER;
use crate::service::{
    HTTP2_CONNECTION_WINDOW, HTTP2_STREAM_WINDOW, MAX_BATCH_TOTAL_SIZE, MAX_DECODING_MESSAGE_SIZE,
};

/// Digests per FindMissingBlobs request: well inside the message limit.
const FIND_MISSING_BATCH: usize = 10_000;
/// Blobs up to this size are written with one BatchUpdateBlobs call.
const BATCH_WRITE_LIMIT: u64 = 1 << 20;
/// Chunks queued towards one ByteStream Write before `write` waits.
const WRITE_QUEUE: usize = 4;
const WRITE_PATH: &str = "/google.bytestream.ByteStream/Write";
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";

pub struct GrpcStore {
    target: String,
    channel: Channel,
    /// Hash every write here too, so a bad blob never finishes a write.
    verify_writes: bool,
    /// Mark uploads [`ONE_SHOT_UPLOAD_HEADER`]: this store never resumes
    /// one, so the server need not keep one that is cut off.
    one_shot_writes: bool,
}

impl GrpcStore {
    /// A store reaching the server at `address` (`host:port`); connects
    /// lazily, so the server may start later.
    pub fn new(address: &str) -> Result<Self> {
        let endpoint = reapi_core::cluster::transport::endpoint(address)
            .map_err(|e| Error::invalid_argument(format!("CAS address: {}", e.message())))?
            .tcp_nodelay(true)
            .connect_timeout(std::time::Duration::from_secs(5))
            .http2_keep_alive_interval(std::time::Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(HTTP2_STREAM_WINDOW)
            .initial_connection_window_size(HTTP2_CONNECTION_WINDOW);
        Ok(GrpcStore {
            target: address.to_string(),
            channel: endpoint.connect_lazy(),
            verify_writes: true,
            one_shot_writes: false,
        })
    }

    /// A store reaching a member of the cluster CAS, whose writes are not
    /// hashed here (the member verifies what it stores) and are one-shot
    /// uploads, which the member discards as soon as one is abandoned.
    pub fn for_member(address: &str) -> Result<Self> {
        Ok(GrpcStore {
            verify_writes: false,
            one_shot_writes: true,
            ..GrpcStore::new(address)?
        })
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_DECODING_MESSAGE_SIZE)
    }

    fn error(&self, what: &str, status: tonic::Status) -> Error {
        Error::from(status).context(format!("{what} at CAS {}", self.target))
    }
}

#[async_trait]
impl BlobStore for GrpcStore {
    async fn find_missing(&self, instance: &str, digests: &[Digest]) -> Result<Vec<Digest>> {
        let mut missing = Vec::new();
        // A request names one digest function, so a mixed list is asked
        // about function by function (in practice a list has one).
        for function in DigestFunction::ALL {
            let of_function: Vec<Digest>;
            let asked = if digests.iter().all(|d| d.function() == function) {
                digests
            } else {
                of_function = digests
                    .iter()
                    .filter(|d| d.function() == function)
                    .copied()
                    .collect();
                &of_function
            };
            for batch in asked.chunks(FIND_MISSING_BATCH) {
                let response = self
                    .cas()
                    .find_missing_blobs(FindMissingBlobsRequest {
                        instance_name: instance.to_string(),
                        blob_digests: batch.iter().map(Digest::to_proto).collect(),
                        digest_function: function.proto_value(),
                    })
                    .await
                    .map_err(|s| self.error("FindMissingBlobs", s))?;
                for digest in &response.get_ref().missing_blob_digests {
                    missing.push(Digest::from_proto(function, digest)?);
                }
            }
            if asked.len() == digests.len() {
                break;
            }
        }
        Ok(missing)
    }

    async fn get(&self, instance: &str, digest: &Digest) -> Result<Bytes> {
        let stream = self.read(instance, digest, 0, None).await?;
        collect_stream(stream, digest.size()).await
    }

    async fn read(
        &self,
        instance: &str,
        digest: &Digest,
        offset: u64,
        limit: Option<u64>,
    ) -> Result<ChunkStream> {
        if digest.is_empty_blob() && offset == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let request = ReadRequest {
            resource_name: ReadResource::new(instance, *digest).to_string(),
            read_offset: i64::try_from(offset)
                .map_err(|_| Error::out_of_range(format!("offset {offset} is too large")))?,
            read_limit: limit.map_or(0, |l| i64::try_from(l).unwrap_or(i64::MAX)),
        };
        // Decoded as bytestream_bytes::ReadResponse: each chunk is a view of
        // the received buffer, not a copy into a Vec.
        let mut client = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        client
            .ready()
            .await
            .map_err(|e| Error::unavailable(format!("CAS {} not ready: {e}", self.target)))?;
        let response = client
            .server_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(READ_PATH),
                ProstCodec::<ReadRequest, ReadResponse>::default(),
            )
            .await
            .map_err(|s| self.error(&format!("reading {digest}"), s))?;
        let target = self.target.clone();
        let digest = *digest;
        Ok(response
            .into_inner()
            .map(move |item| match item {
                Ok(chunk) => Ok(chunk.data),
                Err(status) => {
                    Err(Error::from(status).context(format!("reading {digest} at CAS {target}")))
                }
            })
            .boxed())
    }

    async fn put(&self, instance: &str, digest: &Digest, data: Bytes) -> Result<()> {
        if self.verify_writes {
            digest.verify_content(&data)?;
        }
        if digest.is_empty_blob() {
            return Ok(());
        }
        if digest.size() > BATCH_WRITE_LIMIT {
            let mut writer = self.begin_write(instance, digest).await?;
            writer.write(data).await?;
            return writer.commit().await;
        }
        let response = self
            .cas()
            .batch_update_blobs(BatchUpdateBlobsRequest {
                instance_name: instance.to_string(),
                requests: vec![batch_update_blobs_request::Request {
                    digest: Some(digest.to_proto()),
                    data: data.to_vec(),
                    ..Default::default()
                }],
                digest_function: digest.function().proto_value(),
            })
            .await
            .map_err(|s| self.error(&format!("writing {digest}"), s))?;
        match response
            .get_ref()
            .responses
            .first()
            .and_then(|r| r.status.as_ref())
        {
            Some(status) if status.code != 0 => Err(Error::from_rpc_status(status)
                .context(format!("writing {digest} at CAS {}", self.target))),
            _ => Ok(()),
        }
    }

    async fn begin_write(&self, instance: &str, digest: &Digest) -> Result<Box<dyn BlobWriter>> {
        let resource =
            WriteResource::new(instance, uuid::Uuid::new_v4().to_string(), *digest).to_string();
        let (chunks, rx) = mpsc::channel::<WriteRequest>(WRITE_QUEUE);
        let mut client = tonic::client::Grpc::new(self.channel.clone());
        let target = self.target.clone();
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if self.one_shot_writes {
            request
                .metadata_mut()
                .insert(ONE_SHOT_UPLOAD_HEADER, MetadataValue::from_static("1"));
        }
        let call: JoinHandle<Result<WriteResponse>> = tokio::spawn(async move {
            client
                .ready()
                .await
                .map_err(|e| Error::unavailable(format!("CAS {target} not ready: {e}")))?;
            let response = client
                .client_streaming(
                    request,
                    PathAndQuery::from_static(WRITE_PATH),
                    ProstCodec::<WriteRequest, WriteResponse>::default(),
                )
                .await
                .map_err(Error::from)?;
            Ok(response.into_inner())
        });
        Ok(Box::new(GrpcWriter {
            target: self.target.clone(),
            resource,
            digest: *digest,
            hasher: self.verify_writes.then(|| digest.function().hasher()),
            written: 0,
            chunks: Some(chunks),
            call: Some(call),
        }))
    }
}

/// A ByteStream Write in progress. Dropped without `commit`, the request
/// stream ends without `finish_write` and the server discards the upload.
struct GrpcWriter {
    target: String,
    resource: String,
    digest: Digest,
    /// None when the caller verifies the data (see [`GrpcStore::for_member`]).
    hasher: Option<DigestHasher>,
    written: u64,
    chunks: Option<mpsc::Sender<WriteRequest>>,
    call: Option<JoinHandle<Result<WriteResponse>>>,
}

impl GrpcWriter {
    async fn send(&mut self, data: Bytes, finish: bool) -> Result<()> {
        let request = WriteRequest {
            // Only the first message must carry the name.
            resource_name: if self.written == 0 {
                self.resource.clone()
            } else {
                String::new()
            },
            write_offset: self.written as i64,
            finish_write: finish,
            data,
        };
        let sender = self
            .chunks
            .as_ref()
            .ok_or_else(|| Error::failed_precondition("write already finished"))?;
        if sender.send(request).await.is_err() {
            // The call ended early: its error says why.
            return Err(self.call_error().await);
        }
        Ok(())
    }

    async fn call_error(&mut self) -> Error {
        match self.call.take() {
            Some(call) => match call.await {
                Ok(Err(e)) => e.context(format!("writing {} to CAS {}", self.digest, self.target)),
                Ok(Ok(_)) => Error::internal("the CAS ended the write early"),
                Err(e) => Error::internal(format!("write task failed: {e}")),
            },
            None => Error::internal("the write already ended"),
        }
    }
}

impl Drop for GrpcWriter {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.abort();
        }
    }
}

#[async_trait]
impl BlobWriter for GrpcWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if self.written + chunk.len() as u64 > self.digest.size() {
            return Err(Error::invalid_argument(format!(
                "blob {} is longer than its digest says",
                self.digest
            )));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&chunk);
        }
        let len = chunk.len() as u64;
        // Large chunks go in pieces the server's message limit accepts.
        let mut rest = chunk;
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(MAX_BATCH_TOTAL_SIZE / 2));
            let piece_len = piece.len() as u64;
            self.send(piece, false).await?;
            self.written += piece_len;
        }
        debug_assert!(len > 0);
        Ok(())
    }

    fn committed_size(&self) -> u64 {
        self.written
    }

    async fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some(hasher) = self.hasher.take() {
            hasher.verify(&self.digest)?;
        }
        if self.digest.is_empty_blob() {
            return Ok(());
        }
        // `written` counts what was sent; the last message only finishes.
        let request = WriteRequest {
            resource_name: String::new(),
            write_offset: self.written as i64,
            finish_write: true,
            data: Bytes::new(),
        };
        let sender = self
            .chunks
            .take()
            .ok_or_else(|| Error::failed_precondition("write already finished"))?;
        let _ = sender.send(request).await;
        drop(sender);
        let call = self
            .call
            .take()
            .ok_or_else(|| Error::internal("the write already ended"))?;
        let response = call
            .await
            .map_err(|e| Error::internal(format!("write task failed: {e}")))?
            .map_err(|e| e.context(format!("writing {} to CAS {}", self.digest, self.target)))?;
        if response.committed_size != self.digest.size() as i64 {
            return Err(Error::internal(format!(
                "CAS {} committed {} of {} bytes of {}",
                self.target,
                response.committed_size,
                self.digest.size(),
                self.digest
            )));
        }
        Ok(())
    }
}

/// For callers that want the store as a trait object.
pub fn grpc_store(address: &str) -> Result<Arc<dyn BlobStore>> {
    Ok(Arc::new(GrpcStore::new(address)?))
}
