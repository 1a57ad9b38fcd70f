//! WaitExecution and the google.longrunning Operations service over gRPC.

use std::collections::HashSet;
use std::time::Duration;

use reapi_core::proto::longrunning as lro;
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::time::to_proto_duration;
use reapi_test_support::actions::sh;
use reapi_test_support::clients::Ops;
use reapi_test_support::operations::{
    drain, execute_request, metadata, next_op, read_until, response_of, stage_of, start_execute,
    Run, Stage,
};
use reapi_test_support::server::full::{Config, Server};
use reapi_test_support::status::{assert_code, rpc_code};
use reapi_test_support::wait::within;
use tonic::Code;

async fn get(ops: &mut Ops, name: &str) -> Result<lro::Operation, tonic::Status> {
    Ok(ops
        .get_operation(lro::GetOperationRequest { name: name.into() })
        .await?
        .into_inner())
}

async fn list_names(ops: &mut Ops) -> Vec<(String, bool)> {
    let list = ops
        .list_operations(lro::ListOperationsRequest::default())
        .await
        .expect("ListOperations")
        .into_inner();
    list.operations
        .iter()
        .map(|op| (op.name.clone(), op.done))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_execution_after_the_stream_is_dropped() {
    let server = Server::start().await;
    let digest = server.upload_action(&sh("sleep 1; echo done")).await;
    let mut exec = server.exec();
    let mut stream = start_execute(&mut exec, execute_request(&digest))
        .await
        .expect("Execute");
    let first = next_op(&mut stream).await;
    assert!(!first.done);
    let name = first.name.clone();
    drop(stream);

    // While it runs.
    let mut ops = server.ops();
    let during = get(&mut ops, &name)
        .await
        .expect("GetOperation while running");
    assert_eq!(during.name, name);
    assert!(!during.done);
    assert!(during.result.is_none());
    assert!(
        matches!(stage_of(&during), Stage::Queued | Stage::Executing),
        "{:?}",
        stage_of(&during)
    );
    assert_eq!(metadata(&during).action_digest.as_ref(), Some(&digest));
    assert!(list_names(&mut ops).await.contains(&(name.clone(), false)));
    // A short WaitOperation returns the running operation.
    let waited = ops
        .wait_operation(lro::WaitOperationRequest {
            name: name.clone(),
            timeout: Some(to_proto_duration(Duration::from_millis(100))),
        })
        .await
        .expect("WaitOperation")
        .into_inner();
    assert!(!waited.done);

    // WaitExecution picks the operation up again and ends with its result.
    let mut waiting = exec
        .wait_execution(re::WaitExecutionRequest { name: name.clone() })
        .await
        .expect("WaitExecution")
        .into_inner();
    let run = Run::new(drain(&mut waiting).await.expect("WaitExecution stream"));
    assert_eq!(run.name(), name);
    run.assert_ran_ok();
    assert_eq!(run.result().exit_code, 0);
    assert_eq!(
        server
            .read_blob(run.result().stdout_digest.as_ref().unwrap())
            .await,
        b"done\n"
    );

    // After it finished.
    let after = get(&mut ops, &name).await.expect("GetOperation when done");
    assert!(after.done);
    assert_eq!(stage_of(&after), Stage::Completed);
    assert_eq!(
        response_of(&after).result.as_ref().map(|r| r.exit_code),
        Some(0)
    );
    assert!(list_names(&mut ops).await.contains(&(name.clone(), true)));
    let waited = ops
        .wait_operation(lro::WaitOperationRequest {
            name: name.clone(),
            timeout: None,
        })
        .await
        .expect("WaitOperation")
        .into_inner();
    assert!(waited.done);
    assert_eq!(response_of(&waited).result, run.response.result);

    // WaitExecution on a finished operation answers at once.
    let mut again = exec
        .wait_execution(re::WaitExecutionRequest { name: name.clone() })
        .await
        .expect("WaitExecution when done")
        .into_inner();
    let again = Run::new(drain(&mut again).await.expect("stream"));
    assert_eq!(again.ops.len(), 1);
    assert_eq!(again.response.result, run.response.result);
    // A finished operation may be deleted; DeleteOperation is fine with it.
    ops.delete_operation(lro::DeleteOperationRequest { name })
        .await
        .expect("DeleteOperation of a finished operation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wait_operation_blocks_until_done() {
    let server = Server::start().await;
    let digest = server.upload_action(&sh("sleep 1; echo x")).await;
    let mut stream = start_execute(&mut server.exec(), execute_request(&digest))
        .await
        .expect("Execute");
    let name = next_op(&mut stream).await.name;
    let waited = within(
        Duration::from_secs(20),
        "WaitOperation",
        server.ops().wait_operation(lro::WaitOperationRequest {
            name: name.clone(),
            timeout: Some(to_proto_duration(Duration::from_secs(30))),
        }),
    )
    .await
    .expect("WaitOperation")
    .into_inner();
    assert!(waited.done);
    assert_eq!(stage_of(&waited), Stage::Completed);
    assert_eq!(response_of(&waited).result.unwrap().exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_operations_are_not_found() {
    let server = Server::start().await;
    let mut ops = server.ops();
    let unknown = "operations/00000000-0000-0000-0000-000000000000";
    assert_code(
        server
            .exec()
            .wait_execution(re::WaitExecutionRequest {
                name: unknown.into(),
            })
            .await,
        Code::NotFound,
        "WaitExecution of an unknown name",
    );
    assert_code(get(&mut ops, unknown).await, Code::NotFound, "GetOperation");
    assert_code(
        ops.wait_operation(lro::WaitOperationRequest {
            name: unknown.into(),
            timeout: None,
        })
        .await,
        Code::NotFound,
        "WaitOperation",
    );
    assert_code(
        ops.cancel_operation(lro::CancelOperationRequest {
            name: unknown.into(),
        })
        .await,
        Code::NotFound,
        "CancelOperation",
    );
    assert_code(
        ops.delete_operation(lro::DeleteOperationRequest {
            name: unknown.into(),
        })
        .await,
        Code::NotFound,
        "DeleteOperation",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_operations_cannot_be_deleted_but_can_be_cancelled_while_queued() {
    let server = Server::start_with(Config {
        executors: 1,
        ..Default::default()
    })
    .await;
    let blocker = server.upload_action(&sh("sleep 30")).await;
    let queued = server.upload_action(&sh("echo never")).await;
    let mut exec = server.exec();
    let mut blocking = start_execute(&mut exec, execute_request(&blocker))
        .await
        .expect("Execute blocker");
    let blocker_name = read_until(&mut blocking, Stage::Executing).await[0]
        .name
        .clone();
    let mut waiting = start_execute(&mut exec, execute_request(&queued))
        .await
        .expect("Execute queued");
    let first = next_op(&mut waiting).await;
    assert_eq!(stage_of(&first), Stage::Queued);

    let mut ops = server.ops();
    assert_code(
        ops.delete_operation(lro::DeleteOperationRequest {
            name: blocker_name.clone(),
        })
        .await,
        Code::FailedPrecondition,
        "DeleteOperation of a running operation",
    );

    // Cancelling the queued one ends its stream with CANCELLED; it never ran.
    ops.cancel_operation(lro::CancelOperationRequest {
        name: first.name.clone(),
    })
    .await
    .expect("CancelOperation");
    let mut all = vec![first];
    all.extend(drain(&mut waiting).await.expect("stream"));
    let run = Run::new(all);
    assert_eq!(run.code(), Code::Cancelled);
    assert!(run.response.result.is_none(), "{:?}", run.response.result);
    assert_eq!(server.scheduler.queue_len(), 0);
    // Cancelling again is harmless.
    ops.cancel_operation(lro::CancelOperationRequest {
        name: run.name().into(),
    })
    .await
    .expect("CancelOperation of a finished operation");

    ops.cancel_operation(lro::CancelOperationRequest { name: blocker_name })
        .await
        .expect("CancelOperation of the blocker");
    let done = drain(&mut blocking).await.expect("blocker stream");
    assert_eq!(
        rpc_code(&response_of(done.last().unwrap()).status),
        Code::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_operations_pages_through_everything() {
    let server = Server::start().await;
    let mut names = HashSet::new();
    for i in 0..5 {
        let run = server.run(&sh(&format!("echo {i}"))).await;
        names.insert(run.name().to_string());
    }
    let mut ops = server.ops();
    let mut seen = HashSet::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = ops
            .list_operations(lro::ListOperationsRequest {
                page_size: 2,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListOperations")
            .into_inner();
        pages += 1;
        assert!(page.operations.len() <= 2);
        for op in &page.operations {
            assert!(op.done);
            assert!(seen.insert(op.name.clone()), "{} listed twice", op.name);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(seen, names);
    assert_eq!(pages, 3);
    assert_code(
        ops.list_operations(lro::ListOperationsRequest {
            filter: "done = true".into(),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "ListOperations with a filter",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_operations_expire_after_the_retention() {
    let server = Server::start_with(Config {
        scheduler: reapi_scheduler::SchedulerConfig {
            completed_retention: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let run = server.run(&sh("echo short-lived")).await;
    let name = run.name().to_string();
    let mut ops = server.ops();
    assert!(get(&mut ops, &name).await.expect("kept at first").done);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_code(
        get(&mut ops, &name).await,
        Code::NotFound,
        "expired GetOperation",
    );
    assert_code(
        server
            .exec()
            .wait_execution(re::WaitExecutionRequest { name: name.clone() })
            .await,
        Code::NotFound,
        "expired WaitExecution",
    );
    assert!(!list_names(&mut ops).await.iter().any(|(n, _)| *n == name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cache_hit_answers_wait_execution_and_get_operation() {
    let server = Server::start().await;
    let digest = server.upload_action(&sh("echo cached")).await;
    server
        .run_request(execute_request(&digest))
        .await
        .assert_ran_ok();
    let hit = server.run_request(execute_request(&digest)).await;
    assert!(hit.response.cached_result);
    let name = hit.name().to_string();

    // A client that lost the Execute stream reconnects by name.
    let mut waiting = server
        .exec()
        .wait_execution(re::WaitExecutionRequest { name: name.clone() })
        .await
        .expect("WaitExecution of a cache hit")
        .into_inner();
    let again = Run::new(drain(&mut waiting).await.expect("stream"));
    assert_eq!(again.name(), name);
    assert!(again.response.cached_result);
    assert_eq!(again.response.result, hit.response.result);

    let mut ops = server.ops();
    let op = get(&mut ops, &name)
        .await
        .expect("GetOperation of a cache hit");
    assert!(op.done);
    assert_eq!(metadata(&op).action_digest.as_ref(), Some(&digest));
    assert!(list_names(&mut ops).await.contains(&(name, true)));
}
