//! Typed REAPI clients over a channel, with message limits far above
//! anything the tests send or receive.

use std::net::SocketAddr;

use reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient;
use reapi_core::proto::longrunning::operations_client::OperationsClient;
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::capabilities_client::CapabilitiesClient;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::proto::remote_execution::execution_client::ExecutionClient;
use tonic::transport::{Channel, Endpoint};

pub type Cas = ContentAddressableStorageClient<Channel>;
pub type Bs = ByteStreamClient<Channel>;
pub type Ac = ActionCacheClient<Channel>;
pub type Caps = CapabilitiesClient<Channel>;
pub type Exec = ExecutionClient<Channel>;
pub type Ops = OperationsClient<Channel>;

/// Client message limits, both ways.
pub const MESSAGE_LIMIT: usize = 256 * 1024 * 1024;

/// A channel to a server on `addr` (plain HTTP/2).
pub async fn connect(addr: SocketAddr) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

pub fn cas(channel: &Channel) -> Cas {
    ContentAddressableStorageClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn bs(channel: &Channel) -> Bs {
    ByteStreamClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn ac(channel: &Channel) -> Ac {
    ActionCacheClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn caps(channel: &Channel) -> Caps {
    CapabilitiesClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn exec(channel: &Channel) -> Exec {
    ExecutionClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}

pub fn ops(channel: &Channel) -> Ops {
    OperationsClient::new(channel.clone())
        .max_decoding_message_size(MESSAGE_LIMIT)
        .max_encoding_message_size(MESSAGE_LIMIT)
}
