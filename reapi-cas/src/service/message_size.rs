//! Requests over the servers' message size limit get RESOURCE_EXHAUSTED,
//! the gRPC convention for a message too large, with the size and the
//! limit; tonic's own answer is OUT_OF_RANGE, which clients take for a
//! bug of theirs or ours rather than a request to send less.
//!
//! A `tower` layer around every gRPC service rewrites that one status,
//! recognised by tonic's message, in trailers-only answers: the decoding
//! of a unary request and of a streamed request's message both fail before
//! any response is sent. Each rewrite is logged once, for operators.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::{Code, Status};
use tower::{Layer, Service};

/// What tonic says when a message is over the decoding limit.
const TONIC_TOO_LARGE: &str = "decoded message length too large";

#[derive(Clone, Copy, Debug, Default)]
pub struct MessageSizeLayer;

impl<S> Layer<S> for MessageSizeLayer {
    type Service = MessageSizeService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageSizeService { inner }
    }
}

#[derive(Clone, Debug)]
pub struct MessageSizeService<S> {
    inner: S,
}

type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MessageSizeService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(status) = too_large(response.headers()) {
                tracing::warn!(method = %path, error = %status.message(), "request message over the size limit");
                // Replaces grpc-status and grpc-message; fails only on
                // details that cannot be encoded, and there are none.
                let _ = status.add_header(response.headers_mut());
            }
            Ok(response)
        })
    }
}

/// The RESOURCE_EXHAUSTED status to answer instead, when `headers` carry
/// tonic's OUT_OF_RANGE for a message over the limit.
fn too_large(headers: &http::HeaderMap) -> Option<Status> {
    let status = Status::from_header_map(headers)?;
    if status.code() != Code::OutOfRange || !status.message().contains(TONIC_TOO_LARGE) {
        return None;
    }
    // "... found N bytes, the limit is: M bytes"
    let mut numbers = status
        .message()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty());
    let message = match (numbers.next(), numbers.next()) {
        (Some(found), Some(limit)) => format!(
            "the request message is {found} bytes, over this server's limit of {limit} bytes \
             per message: send fewer digests or blobs per call, and blobs over the batch limit \
             through ByteStream"
        ),
        _ => format!(
            "the request message is over this server's size limit ({})",
            status.message()
        ),
    };
    Some(Status::resource_exhausted(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers_of(status: &Status) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        status.add_header(&mut headers).unwrap();
        headers
    }

    #[test]
    fn tonics_out_of_range_for_a_large_message_becomes_resource_exhausted() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 20971600 bytes, the limit is: \
             16777216 bytes",
        );
        let status = too_large(&headers_of(&tonic)).expect("rewritten");
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("20971600 bytes")
                && status.message().contains("limit of 16777216 bytes"),
            "{}",
            status.message()
        );
        // Written back, it reads the same.
        let reread = Status::from_header_map(&headers_of(&status)).unwrap();
        assert_eq!(reread.code(), Code::ResourceExhausted);
        assert_eq!(reread.message(), status.message());
    }

    #[test]
    fn other_statuses_pass_unchanged() {
        for status in [
            Status::out_of_range("read offset 10 is past the end of the blob"),
            Status::invalid_argument("decoded message length too large"),
            Status::ok(""),
        ] {
            assert!(too_large(&headers_of(&status)).is_none(), "{status:?}");
        }
        assert!(too_large(&http::HeaderMap::new()).is_none());
    }
}
