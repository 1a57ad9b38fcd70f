//! Runs the custom-sandbox example's worker against a real scheduler over
//! loopback gRPC: an Execute reaches the embedded worker, runs through the
//! auditing sandbox, and its output comes back through the CAS.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use reapi_cas::config::StorageConfig;
use reapi_cas::service::listener;
use reapi_core::proto::longrunning::operation;
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::proto::remote_execution::execution_client::ExecutionClient;
use reapi_core::Digest;
use reapi_examples::custom_sandbox::{start_worker, AuditingSandbox};
use reapi_scheduler::{ExecutionServices, Scheduler, SchedulerConfig};
use tonic::service::RoutesBuilder;

#[tokio::test]
async fn an_action_runs_through_the_custom_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let storage = StorageConfig {
        data_dir: dir.path().join("scheduler"),
        disk_size: 1 << 30,
        ..Default::default()
    }
    .open()
    .await
    .unwrap();
    let scheduler = Scheduler::start(storage.action_cache.clone(), SchedulerConfig::default());
    let mut routes = RoutesBuilder::default();
    let mut storage_services = storage.services();
    let execution = ExecutionServices {
        scheduler: scheduler.clone(),
        peers: None,
        store: storage.store.clone(),
        action_cache: storage.action_cache.clone(),
        instances: storage.instances.clone(),
    };
    storage_services.execution = Some(execution.support());
    execution.add_to(&mut routes);
    storage_services.add_to(&mut routes);
    let listener = listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(listener::serve(
        listener,
        routes.routes(),
        std::future::pending(),
    ));

    let sandbox = Arc::new(AuditingSandbox::default());
    let worker = start_worker(addr, &dir.path().join("work"), 1, sandbox.clone())
        .await
        .unwrap();
    for _ in 0..500 {
        if scheduler.executor_summary().workers == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        scheduler.executor_summary().workers,
        1,
        "the worker never linked"
    );

    let command = re::Command {
        arguments: vec!["/bin/sh".into(), "-c".into(), "echo hello > out.txt".into()],
        output_paths: vec!["out.txt".into()],
        ..Default::default()
    };
    let root = re::Directory::default();
    let action = re::Action {
        command_digest: Some(Digest::of_message(&command).to_proto()),
        input_root_digest: Some(Digest::of_message(&root).to_proto()),
        ..Default::default()
    };
    let blobs = [
        command.encode_to_vec(),
        root.encode_to_vec(),
        action.encode_to_vec(),
    ];
    let endpoint = format!("http://{addr}");
    let mut cas = ContentAddressableStorageClient::connect(endpoint.clone())
        .await
        .unwrap();
    cas.batch_update_blobs(re::BatchUpdateBlobsRequest {
        requests: blobs
            .iter()
            .map(|blob| re::batch_update_blobs_request::Request {
                digest: Some(Digest::of_bytes(blob).to_proto()),
                data: blob.clone(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();

    let mut exec = ExecutionClient::connect(endpoint).await.unwrap();
    let mut stream = exec
        .execute(re::ExecuteRequest {
            action_digest: Some(Digest::of_message(&action).to_proto()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(op) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("the action did not finish in time")
        .unwrap()
    {
        last = Some(op);
    }
    let Some(operation::Result::Response(any)) = last.and_then(|op| op.result) else {
        panic!("the operation ended without a response");
    };
    let response = re::ExecuteResponse::decode(any.value.as_slice()).unwrap();
    let result = response.result.expect("a result");
    assert_eq!(result.exit_code, 0);
    assert_eq!(
        result.output_files[0].digest,
        Some(Digest::of_bytes(b"hello\n").to_proto())
    );
    let audit = sandbox.entries();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].arguments[2], "echo hello > out.txt");
    assert_eq!(audit[0].exit_code, 0);
    worker.drain(Duration::from_secs(10)).await;
}
