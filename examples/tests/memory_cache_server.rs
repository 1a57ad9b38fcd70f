//! Runs the memory-cache example's composition over loopback gRPC: a blob
//! and an action result go in and come back out.

use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::Digest;
use reapi_examples::memory_cache_routes;

#[tokio::test]
async fn stores_blobs_and_results() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_routes(memory_cache_routes(1 << 20).routes())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let endpoint = format!("http://{addr}");
    let mut cas = ContentAddressableStorageClient::connect(endpoint.clone())
        .await
        .unwrap();
    let mut ac = ActionCacheClient::connect(endpoint).await.unwrap();

    let output = Digest::of_bytes(b"output");
    let stored = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            requests: vec![re::batch_update_blobs_request::Request {
                digest: Some(output.to_proto()),
                data: b"output".to_vec(),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.responses[0].status.as_ref().map(|s| s.code), Some(0));

    let action = Digest::of_bytes(b"action");
    let result = re::ActionResult {
        output_files: vec![re::OutputFile {
            path: "out".into(),
            digest: Some(output.to_proto()),
            ..Default::default()
        }],
        ..Default::default()
    };
    ac.update_action_result(re::UpdateActionResultRequest {
        action_digest: Some(action.to_proto()),
        action_result: Some(result.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let hit = ac
        .get_action_result(re::GetActionResultRequest {
            action_digest: Some(action.to_proto()),
            inline_output_files: vec!["out".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit.output_files[0].contents, b"output");
}
