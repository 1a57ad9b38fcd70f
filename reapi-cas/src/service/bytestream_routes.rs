//! The ByteStream service as served: Write is decoded into
//! [`bytestream_bytes::WriteRequest`], whose data is a view of the received
//! frame, so an uploaded byte is not copied into a fresh `Vec` on its way to
//! the store; Read answers [`bytestream_bytes::ReadResponse`]s, so a chunk
//! the store holds as a view of another message (a relayed read) is not
//! copied either. QueryWriteStatus goes to the generated server.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::StreamExt;

use reapi_core::proto::bytestream::byte_stream_server::{ByteStreamServer, SERVICE_NAME};
use reapi_core::proto::bytestream::{ReadRequest, WriteResponse};
use reapi_core::proto::bytestream_bytes;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{Body, BoxFuture, Service, StdError};
use tonic::server::{ClientStreamingService, Grpc, NamedService, ServerStreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use super::ByteStreamService;

const WRITE_PATH: &str = "/google.bytestream.ByteStream/Write";
const READ_PATH: &str = "/google.bytestream.ByteStream/Read";

/// Initial receive buffer of a Write stream. While a message's data is still
/// referenced, the buffer cannot be reused in place, and a replacement is at
/// least as large as the original buffer (up to 64 KiB, the most `BytesMut`
/// remembers): 64 KiB lets clients that send 16 KiB chunks (Bazel) share one
/// allocation among four messages instead of allocating per message.
const WRITE_RECEIVE_BUFFER: usize = 64 * 1024;

/// tonic's default; the encoder only sends one small WriteResponse.
const ENCODE_YIELD_THRESHOLD: usize = 32 * 1024;

/// A tower service answering every ByteStream method; add it to a tonic
/// server in place of the generated `ByteStreamServer`.
#[derive(Clone)]
pub struct ByteStreamRoutes {
    service: Arc<ByteStreamService>,
    generated: ByteStreamServer<ByteStreamService>,
    max_decoding_message_size: usize,
}

impl ByteStreamRoutes {
    /// Serves `service`, refusing any message longer than
    /// `max_decoding_message_size` bytes.
    pub fn new(service: ByteStreamService, max_decoding_message_size: usize) -> Self {
        let service = Arc::new(service);
        ByteStreamRoutes {
            generated: ByteStreamServer::from_arc(service.clone())
                .max_decoding_message_size(max_decoding_message_size),
            service,
            max_decoding_message_size,
        }
    }
}

impl NamedService for ByteStreamRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for ByteStreamRoutes
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() == READ_PATH {
            let method = ReadMethod(self.service.clone());
            let limit = self.max_decoding_message_size;
            return Box::pin(async move {
                let mut grpc = Grpc::new(ReadCodec::default())
                    .apply_max_message_size_config(Some(limit), None);
                Ok(grpc.server_streaming(method, request).await)
            });
        }
        if request.uri().path() != WRITE_PATH {
            return self.generated.call(request);
        }
        let method = WriteMethod(self.service.clone());
        let limit = self.max_decoding_message_size;
        Box::pin(async move {
            let mut grpc = Grpc::new(WriteCodec).apply_max_message_size_config(Some(limit), None);
            Ok(grpc.client_streaming(method, request).await)
        })
    }
}

/// Prost encoding and decoding, with [`WRITE_RECEIVE_BUFFER`].
struct WriteCodec;

type WriteProst = ProstCodec<WriteResponse, bytestream_bytes::WriteRequest>;

impl Codec for WriteCodec {
    type Encode = WriteResponse;
    type Decode = bytestream_bytes::WriteRequest;
    type Encoder = ProstEncoder<WriteResponse>;
    type Decoder = ProstDecoder<bytestream_bytes::WriteRequest>;

    fn encoder(&mut self) -> Self::Encoder {
        WriteProst::raw_encoder(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        WriteProst::raw_decoder(BufferSettings::new(
            WRITE_RECEIVE_BUFFER,
            ENCODE_YIELD_THRESHOLD,
        ))
    }
}

struct WriteMethod(Arc<ByteStreamService>);

impl ClientStreamingService<bytestream_bytes::WriteRequest> for WriteMethod {
    type Response = WriteResponse;
    type Future = BoxFuture<Response<WriteResponse>, Status>;

    fn call(
        &mut self,
        request: Request<Streaming<bytestream_bytes::WriteRequest>>,
    ) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let (metadata, _, stream) = request.into_parts();
            service.write(&metadata, stream).await
        })
    }
}

/// Prost encoding of [`bytestream_bytes::ReadResponse`], decoding of the
/// generated `ReadRequest`.
type ReadCodec = ProstCodec<bytestream_bytes::ReadResponse, ReadRequest>;

struct ReadMethod(Arc<ByteStreamService>);

impl ServerStreamingService<ReadRequest> for ReadMethod {
    type Response = bytestream_bytes::ReadResponse;
    type ResponseStream = BoxStream<'static, Result<bytestream_bytes::ReadResponse, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<ReadRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move {
            let chunks = service.read_chunks(request.into_inner()).await?;
            let responses = chunks
                .map(|chunk| chunk.map(|data| bytestream_bytes::ReadResponse { data }))
                .boxed();
            Ok(Response::new(responses))
        })
    }
}
