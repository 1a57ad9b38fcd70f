//! The first message of a gRPC request, read by the grants layer before the
//! service sees the call (it names the instance), then handed back in front
//! of the rest of the body, so the service decodes the request as sent.
//!
//! Reading holds at most one message, under the same limit the services
//! decode with; a larger one is refused here as tonic would refuse it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::Status;

/// gRPC's length prefix: a compressed flag and a 4-byte big-endian length.
const PREFIX: usize = 5;

/// The first message's bytes and the request body to pass on.
pub struct Read {
    /// `None` when the body ended before a whole message.
    pub message: Option<Bytes>,
    pub body: Body,
}

/// Reads `body` until its first message is whole.
pub async fn read_first(mut body: Body, limit: usize) -> Result<Read, Status> {
    let mut read = BytesMut::new();
    let mut trailers = None;
    let mut ended = false;
    let message = loop {
        if read.len() >= PREFIX {
            let compressed = read[0] != 0;
            let length = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
            if compressed {
                return Err(Status::unimplemented(
                    "compressed request messages are not accepted by this server",
                ));
            }
            if length > limit {
                return Err(Status::resource_exhausted(format!(
                    "the request message is {length} bytes, over this server's limit of \
                     {limit} bytes per message"
                )));
            }
            if read.len() >= PREFIX + length {
                let mut whole = read.clone().freeze();
                whole.advance(PREFIX);
                break Some(whole.slice(..length));
            }
        }
        if ended {
            break None;
        }
        match body.frame().await {
            None => ended = true,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => read.extend_from_slice(&data),
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    ended = true;
                }
            },
            Some(Err(e)) => return Err(Status::cancelled(format!("reading the request: {e}"))),
        }
    };
    let replayed = Replayed {
        prefix: Some(read.freeze()),
        rest: if ended { None } else { Some(body) },
        trailers,
    };
    Ok(Read {
        message,
        body: Body::new(replayed),
    })
}

/// What was read, then whatever the client still sends.
struct Replayed {
    prefix: Option<Bytes>,
    /// `None` once the client's body ended while reading.
    rest: Option<Body>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for Replayed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(prefix) = self.prefix.take() {
            if !prefix.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(prefix))));
            }
        }
        if let Some(rest) = self.rest.as_mut() {
            return Pin::new(rest).poll_frame(cx);
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        let prefix_done = self.prefix.as_ref().is_none_or(|p| p.is_empty());
        match &self.rest {
            Some(rest) => prefix_done && rest.is_end_stream(),
            None => prefix_done && self.trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |rest| rest.size_hint());
        hint.set_lower(hint.lower() + prefix);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

/// Field 1 of a message as a string: `instance_name` or `resource_name` in
/// every request the grants layer reads. Other fields are skipped unread.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FirstField {
    #[prost(string, tag = "1")]
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
        bytes.extend_from_slice(message);
        bytes
    }

    /// A body that arrives in `chunks`.
    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c))));
        Body::new(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
    }

    async fn all_of(body: Body) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn a_message_split_across_frames_is_read_and_replayed_whole() {
        let first = framed(b"first message");
        let second = framed(b"second");
        let mut sent = first.clone();
        sent.extend_from_slice(&second);
        let chunks = vec![sent[..3].to_vec(), sent[3..9].to_vec(), sent[9..].to_vec()];
        let read = read_first(body_of(chunks), 100).await.unwrap();
        assert_eq!(read.message.as_deref(), Some(&b"first message"[..]));
        assert_eq!(all_of(read.body).await, sent);
    }

    #[tokio::test]
    async fn a_body_without_a_whole_message_is_passed_on_as_it_was() {
        let partial = framed(b"cut short")[..7].to_vec();
        let read = read_first(body_of(vec![partial.clone()]), 100)
            .await
            .unwrap();
        assert!(read.message.is_none());
        assert_eq!(all_of(read.body).await, partial);
        let read = read_first(body_of(vec![]), 100).await.unwrap();
        assert!(read.message.is_none());
        assert!(all_of(read.body).await.is_empty());
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_refused_before_it_is_read() {
        // Only the prefix arrives: the refusal cannot wait for the rest.
        let prefix = framed(&[7; 101])[..PREFIX].to_vec();
        let err = read_first(body_of(vec![prefix]), 100).await.err().unwrap();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(err.message().contains("101 bytes"), "{}", err.message());
    }

    #[tokio::test]
    async fn compressed_messages_are_refused() {
        let mut bytes = framed(b"x");
        bytes[0] = 1;
        let err = read_first(body_of(vec![bytes]), 100).await.err().unwrap();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }

    #[test]
    fn field_one_is_found_among_others() {
        use prost::Message;
        let request = find_missing("team/a");
        let field = FirstField::decode(&request[..]).unwrap();
        assert_eq!(field.value, "team/a");
    }

    fn find_missing(instance: &str) -> Vec<u8> {
        use prost::Message;
        use reapi_core::proto::remote_execution as re;
        re::FindMissingBlobsRequest {
            instance_name: instance.into(),
            blob_digests: vec![re::Digest {
                hash: "ab".repeat(32),
                size_bytes: 3,
            }],
            digest_function: 1,
        }
        .encode_to_vec()
    }
}
