//! Forwarding a client's request to the scheduler that serves it: Execute
//! to the action's home, WaitExecution and the Operations calls to the
//! home named in the operation. The request keeps the client's metadata
//! (its build id, for fairness) and is marked as forwarded, so the
//! receiver serves it itself.

use reapi_core::proto::longrunning::operations_client::OperationsClient;
use reapi_core::proto::longrunning::Operation;
use reapi_core::proto::remote_execution::execution_client::ExecutionClient;
use reapi_core::proto::remote_execution::{ExecuteRequest, WaitExecutionRequest};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status, Streaming};

use super::{Peers, FORWARDED_HEADER};
use crate::request_labels::REQUEST_METADATA_HEADER;
use reapi_cas::service::MAX_DECODING_MESSAGE_SIZE;

/// Whether a request came from another scheduler.
pub fn is_forwarded(metadata: &MetadataMap) -> bool {
    metadata.contains_key(FORWARDED_HEADER)
}

/// A request to send on, with the client's request metadata and this
/// scheduler's mark.
pub fn onward<T>(peers: &Peers, message: T, from: &MetadataMap) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = from.get_bin(REQUEST_METADATA_HEADER) {
        request
            .metadata_mut()
            .insert_bin(REQUEST_METADATA_HEADER, value.clone());
    }
    if let Ok(value) = MetadataValue::try_from(peers.id()) {
        request.metadata_mut().insert(FORWARDED_HEADER, value);
    }
    request
}

fn execution(channel: Channel) -> ExecutionClient<Channel> {
    ExecutionClient::new(channel)
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_DECODING_MESSAGE_SIZE)
}

pub fn operations(channel: Channel) -> OperationsClient<Channel> {
    OperationsClient::new(channel)
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_DECODING_MESSAGE_SIZE)
}

/// Whether a forward failed because the peer could not be reached (as
/// opposed to the peer refusing the request).
pub fn unreachable(status: &Status) -> bool {
    status.code() == Code::Unavailable
}

pub async fn execute(
    peers: &Peers,
    address: &str,
    request: ExecuteRequest,
    metadata: &MetadataMap,
) -> Result<Streaming<Operation>, Status> {
    let channel = peers
        .channel(address)
        .ok_or_else(|| Status::unavailable(format!("bad peer address {address}")))?;
    let response = execution(channel)
        .execute(onward(peers, request, metadata))
        .await?;
    Ok(response.into_inner())
}

pub async fn wait_execution(
    peers: &Peers,
    address: &str,
    request: WaitExecutionRequest,
    metadata: &MetadataMap,
) -> Result<Streaming<Operation>, Status> {
    let channel = peers
        .channel(address)
        .ok_or_else(|| Status::unavailable(format!("bad peer address {address}")))?;
    let response = execution(channel)
        .wait_execution(onward(peers, request, metadata))
        .await?;
    Ok(response.into_inner())
}
