//! Protocol types, re-exported from the `bazel-remote-apis` crate so users
//! depend on `reapi-core` alone.

pub use bazel_remote_apis::build::bazel::remote::execution::v2 as remote_execution;
pub use bazel_remote_apis::build::bazel::semver;
pub use bazel_remote_apis::google::bytestream;
pub use bazel_remote_apis::google::longrunning;
pub use bazel_remote_apis::google::protobuf;
pub use bazel_remote_apis::google::rpc;

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

    pub fn timestamp(at: SystemTime) -> protobuf::Timestamp {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        protobuf::Timestamp {
            seconds: since.as_secs() as i64,
            nanos: since.subsec_nanos() as i32,
        }
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
