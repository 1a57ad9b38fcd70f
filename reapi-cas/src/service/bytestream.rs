//! The ByteStream service: streamed blob reads and resumable, verified
//! writes.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reapi_core::proto::bytestream::byte_stream_server::ByteStream;
use reapi_core::proto::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, ReadRequest, ReadResponse, WriteRequest,
    WriteResponse,
};
use reapi_core::proto::bytestream_bytes;
use reapi_core::resource_name::{ReadResource, WriteResource};
use reapi_core::{BlobStore, BlobWriter, Error, ErrorExt, InstancePolicy, Result};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use super::bytestream_zstd;
use super::pending_uploads::{ActiveUpload, PendingUploads, UploadKey};
use super::MAX_READ_CHUNK;

/// Request metadata marking a Write that will never be resumed: the
/// cluster CAS starts every copy it sends a member as a fresh upload. Cut
/// off before `finish_write` (the data was refused, or the sender gave up),
/// such an upload is discarded at once instead of kept, with its temporary
/// file, for a QueryWriteStatus that will not come.
pub const ONE_SHOT_UPLOAD_HEADER: &str = "reapi-one-shot-upload";

pub struct ByteStreamService {
    store: Arc<dyn BlobStore>,
    instances: InstancePolicy,
    pending: Arc<PendingUploads>,
}

impl ByteStreamService {
    pub fn new(store: Arc<dyn BlobStore>, instances: InstancePolicy) -> Self {
        ByteStreamService {
            store,
            instances,
            pending: Arc::default(),
        }
    }

    async fn is_present(&self, resource: &WriteResource) -> Result<bool> {
        let missing = self
            .store
            .find_missing(&resource.instance_name, &[resource.digest])
            .await?;
        Ok(missing.is_empty())
    }

    /// Where a Write stream starts: a fresh upload at offset 0, or the parked
    /// upload it resumes at exactly its committed size.
    async fn start_upload(
        &self,
        resource: &WriteResource,
        key: &UploadKey,
        offset: i64,
    ) -> Result<Box<dyn BlobWriter>> {
        let parked = if offset == 0 {
            self.pending.take(key)
        } else {
            self.pending.take_when_parked(key).await
        };
        match parked {
            Some(writer) if offset >= 0 && offset as u64 == writer.committed_size() => Ok(writer),
            _ if offset == 0 => {
                self.store
                    .begin_write(&resource.instance_name, &resource.digest)
                    .await
            }
            Some(writer) => {
                let committed = writer.committed_size();
                self.pending.park(key.clone(), writer);
                Err(Error::invalid_argument(format!(
                    "write_offset {offset} does not match the {committed} bytes committed; \
                     resume at QueryWriteStatus's committed_size"
                )))
            }
            None => Err(Error::invalid_argument(format!(
                "write_offset {offset} for an upload this server does not hold; start again at 0"
            ))),
        }
    }

    /// Parks an unfinished upload for resumption, its buffers flushed to
    /// where the blob is kept first; an upload that cannot be suspended is
    /// dropped (its client starts again at 0). Done on a task of its own:
    /// a client resetting its stream cancels this call, and the upload must
    /// be parked all the same. The stream's registration (`progress`) lasts
    /// until it is, so QueryWriteStatus and a resuming Write find it
    /// meanwhile.
    ///
    /// The stream is answered only once the upload is parked: its temp file
    /// then counts as a parked upload's (capped, given up before stored
    /// blobs), and a client that opens upload after upload cannot outrun
    /// the parking and push stored blobs out with unparked ones.
    async fn keep_for_resume(
        &self,
        resumable: bool,
        key: UploadKey,
        mut writer: Box<dyn BlobWriter>,
        progress: ActiveUpload,
    ) {
        if !resumable {
            return;
        }
        let pending = Arc::clone(&self.pending);
        let parking = tokio::spawn(async move {
            match writer.suspend().await {
                Ok(()) => pending.park(key, writer),
                Err(e) => {
                    tracing::warn!(error = %e, "an unfinished upload could not be parked; dropped")
                }
            }
            drop(progress);
        });
        // A join error is a panic in the task, already reported by it.
        let _ = parking.await;
    }

    /// Runs one Write stream to its end and answers it, logging a failure.
    /// [`super::ByteStreamRoutes`] decodes the stream straight into
    /// [`bytestream_bytes::WriteRequest`]; the generated server's messages
    /// are converted (see [`ByteStream::write`]). `metadata` is the call's:
    /// it may mark the upload [`ONE_SHOT_UPLOAD_HEADER`].
    pub(crate) async fn write<S>(
        &self,
        metadata: &MetadataMap,
        stream: S,
    ) -> Result<Response<WriteResponse>, Status>
    where
        S: Stream<Item = Result<bytestream_bytes::WriteRequest, Status>> + Send + Unpin,
    {
        let resumable = !metadata.contains_key(ONE_SHOT_UPLOAD_HEADER);
        let response = self.write_stream(stream, resumable).await.map_err(|e| {
            tracing::debug!(error = %e, "ByteStream Write failed");
            e
        })?;
        Ok(Response::new(response))
    }

    /// An upload cut off before `finish_write` is kept for the client to
    /// resume (QueryWriteStatus, then Write from its committed size), unless
    /// it is not `resumable`: then it is discarded at once.
    async fn write_stream<S>(&self, mut stream: S, resumable: bool) -> Result<WriteResponse>
    where
        S: Stream<Item = Result<bytestream_bytes::WriteRequest, Status>> + Send + Unpin,
    {
        let first = stream
            .next()
            .await
            .transpose()
            .map_err(Error::from)?
            .ok_or_else(|| Error::invalid_argument("Write stream had no messages"))?;
        let resource = WriteResource::parse(&first.resource_name)?;
        self.instances.check(&resource.instance_name)?;
        let digest = resource.digest;
        super::check_blob_size(self.store.as_ref(), &digest)?;
        if let Some(compressor) = resource.compressor {
            bytestream_zstd::check_compressor(compressor)?;
            return bytestream_zstd::write(self.store.as_ref(), &resource, first, stream).await;
        }
        let done = WriteResponse {
            committed_size: digest.size() as i64,
        };
        if self.is_present(&resource).await? {
            return Ok(done);
        }
        let key = UploadKey::of(&resource);
        let mut writer = self
            .start_upload(&resource, &key, first.write_offset)
            .await?;
        let progress = self.pending.track(key.clone(), writer.committed_size());
        let name = first.resource_name.clone();
        let mut message = first;
        loop {
            if message.write_offset < 0 || message.write_offset as u64 != writer.committed_size() {
                let committed = writer.committed_size();
                self.keep_for_resume(resumable, key, writer, progress).await;
                return Err(Error::invalid_argument(format!(
                    "write_offset {} but {committed} bytes were committed",
                    message.write_offset
                )));
            }
            // Later messages may repeat the name or leave it empty.
            if !message.resource_name.is_empty() && message.resource_name != name {
                return Err(Error::invalid_argument(format!(
                    "resource_name changed within one Write stream to {:?}",
                    message.resource_name
                )));
            }
            crate::metrics::cas_received(message.data.len());
            writer.write(message.data).await?;
            progress.set_received(writer.committed_size());
            if message.finish_write {
                writer
                    .commit()
                    .await
                    .with_context(|| format!("upload of {digest}"))?;
                return Ok(done);
            }
            message = match stream.next().await {
                Some(Ok(next)) => next,
                None => {
                    self.keep_for_resume(resumable, key, writer, progress).await;
                    return Err(Error::invalid_argument(format!(
                        "Write stream for {digest} ended before finish_write"
                    )));
                }
                Some(Err(status)) => {
                    self.keep_for_resume(resumable, key, writer, progress).await;
                    return Err(Error::from(status).context(format!("Write stream for {digest}")));
                }
            };
        }
    }
}

/// A Read's data, in chunks of at most [`MAX_READ_CHUNK`] bytes.
pub(crate) type ReadChunks = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

impl ByteStreamService {
    /// Answers a Read with the store's chunks, split to fit one message
    /// each. [`super::ByteStreamRoutes`] sends them as
    /// [`bytestream_bytes::ReadResponse`]; the generated server copies each
    /// into a `Vec` (see [`ByteStream::read`]).
    pub(crate) async fn read_chunks(&self, req: ReadRequest) -> Result<ReadChunks, Status> {
        let resource = ReadResource::parse(&req.resource_name)?;
        self.instances.check(&resource.instance_name)?;
        if let Some(compressor) = resource.compressor {
            bytestream_zstd::check_compressor(compressor)?;
            if req.read_limit != 0 {
                return Err(Status::invalid_argument(format!(
                    "read_limit {} on a compressed read: it must be 0 (the compressed size \
                     is not known in advance)",
                    req.read_limit
                )));
            }
        }
        let offset = u64::try_from(req.read_offset).map_err(|_| {
            Status::out_of_range(format!("read_offset {} is negative", req.read_offset))
        })?;
        let limit = match req.read_limit {
            0 => None,
            n if n < 0 => {
                return Err(Status::invalid_argument(format!(
                    "read_limit {n} is negative"
                )))
            }
            n => Some(n as u64),
        };
        let chunks = self
            .store
            .read(&resource.instance_name, &resource.digest, offset, limit)
            .await?;
        let chunks = chunks
            .inspect(|chunk| {
                if let Ok(data) = chunk {
                    crate::metrics::cas_sent(data.len());
                }
            })
            .map(|chunk| chunk.map_err(Status::from));
        let chunks: ReadChunks = match resource.compressor {
            Some(_) => Box::pin(bytestream_zstd::compress_stream(chunks)?),
            None => Box::pin(chunks),
        };
        Ok(Box::pin(chunks.flat_map(|chunk| {
            let pieces: Vec<Result<Bytes, Status>> = match chunk {
                Ok(data) if data.len() <= MAX_READ_CHUNK => vec![Ok(data)],
                Ok(data) => (0..data.len())
                    .step_by(MAX_READ_CHUNK)
                    .map(|start| Ok(data.slice(start..(start + MAX_READ_CHUNK).min(data.len()))))
                    .collect(),
                Err(status) => vec![Err(status)],
            };
            futures::stream::iter(pieces)
        })))
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let chunks = self.read_chunks(request.into_inner()).await?;
        // A chunk moves into its message without a copy when the store
        // handed over the only reference.
        let responses = chunks.map(|chunk| {
            chunk.map(|data| ReadResponse {
                data: Vec::from(data),
            })
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        let (metadata, _, stream) = request.into_parts();
        let stream = stream.map(|message| message.map(Into::into));
        ByteStreamService::write(self, &metadata, stream).await
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        let resource = WriteResource::parse(&request.get_ref().resource_name)?;
        self.instances.check(&resource.instance_name)?;
        if self.is_present(&resource).await? {
            return Ok(Response::new(QueryWriteStatusResponse {
                committed_size: resource.digest.size() as i64,
                complete: true,
            }));
        }
        match self.pending.committed_size(&UploadKey::of(&resource)) {
            Some(committed) => Ok(Response::new(QueryWriteStatusResponse {
                committed_size: committed as i64,
                complete: false,
            })),
            None => Err(Status::not_found(format!(
                "no upload in progress for {}",
                request.get_ref().resource_name
            ))),
        }
    }
}
