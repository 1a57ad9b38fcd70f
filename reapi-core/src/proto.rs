//! Protocol types, re-exported from the `bazel-remote-apis` crate so users
//! depend on `reapi-core` alone.

pub use bazel_remote_apis::build::bazel::remote::asset::v1 as remote_asset;
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as remote_execution;
pub use bazel_remote_apis::build::bazel::semver;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::longrunning;
pub use bazel_remote_apis::google::protobuf;
pub use bazel_remote_apis::google::rpc;

/// `google.bytestream.WriteRequest` with `data` as [`bytes::Bytes`].
///
/// Same fields and tags as the generated type, so the two are the same on
/// the wire. Decoded from a gRPC frame, `data` is a view of the received
/// buffer rather than a copy into a fresh `Vec`: at 1 MiB per message that
/// copy (and the page faults of the new allocation) was a tenth of the
/// server's CPU during a large upload.
pub mod bytestream_bytes {
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct WriteRequest {
        #[prost(string, tag = "1")]
        pub resource_name: ::prost::alloc::string::String,
        #[prost(int64, tag = "2")]
        pub write_offset: i64,
        #[prost(bool, tag = "3")]
        pub finish_write: bool,
        #[prost(bytes = "bytes", tag = "10")]
        pub data: ::prost::bytes::Bytes,
    }

    /// `google.bytestream.ReadResponse` with `data` as [`bytes::Bytes`]: a
    /// relayed read (the cluster CAS reading a member for a client) passes
    /// each chunk from the member's message into the client's without
    /// copying it into a `Vec` on the way.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct ReadResponse {
        #[prost(bytes = "bytes", tag = "10")]
        pub data: ::prost::bytes::Bytes,
    }

    /// The generated message as this one; `data` moves without a copy.
    impl From<super::bytestream::WriteRequest> for WriteRequest {
        fn from(request: super::bytestream::WriteRequest) -> Self {
            WriteRequest {
                resource_name: request.resource_name,
                write_offset: request.write_offset,
                finish_write: request.finish_write,
                data: request.data.into(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use prost::Message;

        use super::super::bytestream;
        use super::WriteRequest;

        #[test]
        fn the_bytes_form_reads_and_writes_the_generated_wire_format() {
            let generated = bytestream::WriteRequest {
                resource_name: "main/uploads/u/blobs/ab/3".into(),
                write_offset: 1 << 40,
                finish_write: true,
                data: vec![7, 0, 255],
            };
            let ours = WriteRequest::decode(generated.encode_to_vec().as_slice()).unwrap();
            assert_eq!(ours.resource_name, generated.resource_name);
            assert_eq!(ours.write_offset, generated.write_offset);
            assert!(ours.finish_write);
            assert_eq!(&ours.data[..], &generated.data[..]);
            assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        }

        #[test]
        fn the_bytes_read_response_is_the_generated_one_on_the_wire() {
            let generated = bytestream::ReadResponse {
                data: vec![3, 0, 9],
            };
            let ours = super::ReadResponse::decode(generated.encode_to_vec().as_slice()).unwrap();
            assert_eq!(&ours.data[..], &generated.data[..]);
            assert_eq!(ours.encode_to_vec(), generated.encode_to_vec());
        }

        #[test]
        fn data_decoded_from_bytes_shares_the_buffer() {
            let encoded = bytes::Bytes::from(
                WriteRequest {
                    data: vec![1u8; 4096].into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            );
            let decoded = WriteRequest::decode(encoded.clone()).unwrap();
            let start = encoded.as_ptr() as usize;
            let inside = decoded.data.as_ptr() as usize;
            assert!(inside > start && inside < start + encoded.len());
        }
    }
}

/// `google.rpc` error-detail messages that the generated crate does not
/// ship. Field numbers follow `google/rpc/error_details.proto`.
pub mod error_details {
    /// Describes what preconditions have failed; REAPI uses it to list the
    /// blobs missing at Execute.
    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct PreconditionFailure {
        #[prost(message, repeated, tag = "1")]
        pub violations: ::prost::alloc::vec::Vec<precondition_failure::Violation>,
    }

    pub mod precondition_failure {
        #[derive(Clone, PartialEq, ::prost::Message)]
        pub struct Violation {
            #[prost(string, tag = "1")]
            pub r#type: ::prost::alloc::string::String,
            #[prost(string, tag = "2")]
            pub subject: ::prost::alloc::string::String,
            #[prost(string, tag = "3")]
            pub description: ::prost::alloc::string::String,
        }
    }

    pub const PRECONDITION_FAILURE_TYPE_URL: &str =
        "type.googleapis.com/google.rpc.PreconditionFailure";
}

/// Conversions between protocol time types and std.
pub mod time {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::protobuf;

    /// A `google.protobuf.Timestamp` for a wall-clock time (times before
    /// 1970 are clamped to the epoch).
    pub fn timestamp(at: SystemTime) -> protobuf::Timestamp {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        protobuf::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: since.subsec_nanos() as i32,
        }
    }

    /// A timestamp as a wall-clock time; `None` when it is before 1970 or
    /// malformed.
    pub fn system_time(t: &protobuf::Timestamp) -> Option<SystemTime> {
        if t.seconds < 0 || t.nanos < 0 || t.nanos >= 1_000_000_000 {
            return None;
        }
        UNIX_EPOCH.checked_add(Duration::new(t.seconds as u64, t.nanos as u32))
    }

    /// A protocol duration as std; `None` when it is negative or malformed.
    pub fn duration(d: &protobuf::Duration) -> Option<Duration> {
        if d.seconds < 0 || d.nanos < 0 || d.nanos >= 1_000_000_000 {
            return None;
        }
        Some(Duration::new(d.seconds as u64, d.nanos as u32))
    }

    pub fn to_proto_duration(d: Duration) -> protobuf::Duration {
        protobuf::Duration {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn timestamps_split_seconds_and_nanos() {
            let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
            let ts = timestamp(t);
            assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
            let before = timestamp(UNIX_EPOCH - Duration::from_secs(5));
            assert_eq!((before.seconds, before.nanos), (0, 0));
        }

        #[test]
        fn durations_reject_negative_and_malformed() {
            let ok = protobuf::Duration {
                seconds: 2,
                nanos: 5,
            };
            assert_eq!(duration(&ok), Some(Duration::new(2, 5)));
            for bad in [(-1, 0), (0, -1), (0, 1_000_000_000)] {
                let d = protobuf::Duration {
                    seconds: bad.0,
                    nanos: bad.1,
                };
                assert_eq!(duration(&d), None);
            }
            assert_eq!(
                to_proto_duration(Duration::new(3, 7)),
                protobuf::Duration {
                    seconds: 3,
                    nanos: 7
                }
            );
        }
    }
}

/// Packing messages into `google.protobuf.Any`.
pub mod any {
    use prost::Message;

    use super::protobuf::Any;

    pub fn pack<M: Message>(type_name: &str, message: &M) -> Any {
        Any {
            type_url: format!("type.googleapis.com/{type_name}"),
            value: message.encode_to_vec(),
        }
    }
}
