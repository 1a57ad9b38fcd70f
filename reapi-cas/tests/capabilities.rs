//! Capabilities over gRPC.

use reapi_cas::service::{ExecutionSupport, StorageServices};
use reapi_core::proto::remote_execution as re;
use reapi_core::InstancePolicy;
use reapi_test_support::cas::MAX_BATCH;
use reapi_test_support::digests::sha256;
use reapi_test_support::server::storage::{memory_services, Server, Setup, LARGE_BUDGET};
use reapi_test_support::status::assert_code;
use tonic::Code;

async fn capabilities(
    server: &Server,
    instance: &str,
) -> Result<re::ServerCapabilities, tonic::Status> {
    Ok(server
        .caps()
        .get_capabilities(re::GetCapabilitiesRequest {
            instance_name: instance.into(),
        })
        .await?
        .into_inner())
}

fn version(v: &Option<reapi_core::proto::semver::SemVer>) -> (i32, i32, i32) {
    let v = v.as_ref().expect("version is set");
    (v.major, v.minor, v.patch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertises_versions_digest_functions_and_limits() {
    for setup in Setup::ALL {
        let server = Server::start(setup).await;
        for instance in ["", "main", "team/x"] {
            let caps = capabilities(&server, instance).await.unwrap();
            assert_eq!(
                version(&caps.deprecated_api_version),
                (2, 0, 0),
                "{setup:?}"
            );
            assert_eq!(version(&caps.low_api_version), (2, 0, 0), "{setup:?}");
            assert_eq!(version(&caps.high_api_version), (2, 12, 0), "{setup:?}");
            let cache = caps.cache_capabilities.expect("cache capabilities");
            assert!(cache.digest_functions.contains(&sha256()), "{cache:?}");
            assert_eq!(cache.max_batch_total_size_bytes, MAX_BATCH as i64);
            assert!(
                cache
                    .action_cache_update_capabilities
                    .expect("update capabilities")
                    .update_enabled
            );
            assert_eq!(
                cache.symlink_absolute_path_strategy,
                re::symlink_absolute_path_strategy::Value::Allowed as i32
            );
            // zstd, and only zstd, both ways.
            let zstd = vec![re::compressor::Value::Zstd as i32];
            assert_eq!(cache.supported_compressors, zstd);
            assert_eq!(cache.supported_batch_update_compressors, zstd);
            assert!(
                caps.execution_capabilities.is_none(),
                "no execution service runs: {:?}",
                caps.execution_capabilities
            );
        }
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertises_execution_when_it_runs() {
    let services = StorageServices {
        execution: Some(ExecutionSupport {
            priority_range: (-10, 10),
        }),
        ..memory_services(LARGE_BUDGET, InstancePolicy::Any)
    };
    let server = Server::serve(Setup::Memory, services).await;
    let caps = capabilities(&server, "").await.unwrap();
    let exec = caps.execution_capabilities.expect("execution capabilities");
    // Bazel compares the legacy singular field with its own function.
    assert_eq!(exec.digest_function, sha256());
    assert!(exec.digest_functions.contains(&sha256()));
    assert!(exec.exec_enabled);
    let priorities = exec.execution_priority_capabilities.expect("priorities");
    assert_eq!(priorities.priorities.len(), 1);
    assert_eq!(priorities.priorities[0].min_priority, -10);
    assert_eq!(priorities.priorities[0].max_priority, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_unknown_and_malformed_instances() {
    for setup in Setup::ALL {
        let server = Server::start_with(setup, LARGE_BUDGET, Some(vec!["", "ci"])).await;
        capabilities(&server, "").await.unwrap();
        capabilities(&server, "ci").await.unwrap();
        for bad in ["other", "ci/x", "a//b", "blobs", "/ci"] {
            assert_code(
                capabilities(&server, bad).await,
                Code::InvalidArgument,
                &format!("{setup:?} instance {bad:?}"),
            );
        }
        server.stop().await;
    }
}
