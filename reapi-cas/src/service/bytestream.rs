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
use tonic::{Request, Response, Status, Streaming};

use super::pending_uploads::{PendingUploads, UploadKey};
use super::MAX_READ_CHUNK;

/// One message of a Write stream, whichever type decoded it: the generated
/// one (through [`ByteStream::write`]) or the one whose data is a view of the
/// received frame (through [`super::ByteStreamRoutes`]).
pub trait WriteMessage: Send + 'static {
    fn resource_name(&self) -> &str;
    fn write_offset(&self) -> i64;
    fn finish_write(&self) -> bool;
    fn into_data(self) -> Bytes;
}

impl WriteMessage for WriteRequest {
    fn resource_name(&self) -> &str {
        &self.resource_name
    }
    fn write_offset(&self) -> i64 {
        self.write_offset
    }
    fn finish_write(&self) -> bool {
        self.finish_write
    }
    fn into_data(self) -> Bytes {
        Bytes::from(self.data)
    }
}

impl WriteMessage for bytestream_bytes::WriteRequest {
    fn resource_name(&self) -> &str {
        &self.resource_name
    }
    fn write_offset(&self) -> i64 {
        self.write_offset
    }
    fn finish_write(&self) -> bool {
        self.finish_write
    }
    fn into_data(self) -> Bytes {
        self.data
    }
}

pub struct ByteStreamService {
    store: Arc<dyn BlobStore>,
    instances: InstancePolicy,
    pending: PendingUploads,
}

impl ByteStreamService {
    pub fn new(store: Arc<dyn BlobStore>, instances: InstancePolicy) -> Self {
        ByteStreamService {
            store,
            instances,
            pending: PendingUploads::default(),
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
        let parked = self.pending.take(key);
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

    /// Runs one Write stream to its end and answers it, logging a failure.
    pub(crate) async fn write<M: WriteMessage>(
        &self,
        stream: Streaming<M>,
    ) -> Result<Response<WriteResponse>, Status> {
        let response = self.write_stream(stream).await.map_err(|e| {
            tracing::debug!(error = %e, "ByteStream Write failed");
            e
        })?;
        Ok(Response::new(response))
    }

    async fn write_stream<M: WriteMessage>(
        &self,
        mut stream: Streaming<M>,
    ) -> Result<WriteResponse> {
        let first = stream
            .message()
            .await
            .map_err(Error::from)?
            .ok_or_else(|| Error::invalid_argument("Write stream had no messages"))?;
        let name = first.resource_name().to_owned();
        let resource = WriteResource::parse(&name)?;
        self.instances.check(&resource.instance_name)?;
        if resource.compressor.is_some() {
            return Err(Error::new(
                tonic::Code::Unimplemented,
                "compressed uploads are not supported (see supported_compressors)",
            ));
        }
        let digest = resource.digest;
        let done = WriteResponse {
            committed_size: digest.size() as i64,
        };
        if self.is_present(&resource).await? {
            return Ok(done);
        }
        let key = UploadKey::of(&resource);
        let mut writer = self
            .start_upload(&resource, &key, first.write_offset())
            .await?;
        let progress = self.pending.track(key.clone(), writer.committed_size());
        let mut message = first;
        loop {
            let offset = message.write_offset();
            if offset < 0 || offset as u64 != writer.committed_size() {
                let committed = writer.committed_size();
                self.pending.park(key, writer);
                return Err(Error::invalid_argument(format!(
                    "write_offset {offset} but {committed} bytes were committed"
                )));
            }
            // Later messages may repeat the name or leave it empty.
            if !message.resource_name().is_empty() && message.resource_name() != name {
                return Err(Error::invalid_argument(format!(
                    "resource_name changed within one Write stream to {:?}",
                    message.resource_name()
                )));
            }
            let finish = message.finish_write();
            writer.write(message.into_data()).await?;
            progress.set_received(writer.committed_size());
            if finish {
                writer
                    .commit()
                    .await
                    .with_context(|| format!("upload of {digest}"))?;
                return Ok(done);
            }
            message = match stream.message().await {
                Ok(Some(next)) => next,
                Ok(None) => {
                    self.pending.park(key, writer);
                    return Err(Error::invalid_argument(format!(
                        "Write stream for {digest} ended before finish_write"
                    )));
                }
                Err(status) => {
                    self.pending.park(key, writer);
                    return Err(Error::from(status).context(format!("Write stream for {digest}")));
                }
            };
        }
    }
}

type ReadStream = Pin<Box<dyn Stream<Item = Result<ReadResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = ReadStream;

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadStream>, Status> {
        let req = request.into_inner();
        let resource = ReadResource::parse(&req.resource_name)?;
        self.instances.check(&resource.instance_name)?;
        if resource.compressor.is_some() {
            return Err(Status::unimplemented(
                "compressed reads are not supported (see supported_compressors)",
            ));
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
        let responses = chunks.flat_map(|chunk| {
            let items: Vec<Result<ReadResponse, Status>> = match chunk {
                // A chunk that fits one message moves into it without a
                // copy when the store handed over the only reference.
                Ok(data) if data.len() <= MAX_READ_CHUNK => vec![Ok(ReadResponse {
                    data: Vec::from(data),
                })],
                Ok(data) => (0..data.len())
                    .step_by(MAX_READ_CHUNK)
                    .map(|start| {
                        let end = (start + MAX_READ_CHUNK).min(data.len());
                        Ok(ReadResponse {
                            data: data.slice(start..end).to_vec(),
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(Status::from(e))],
            };
            futures::stream::iter(items)
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        ByteStreamService::write(self, request.into_inner()).await
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
