//! The `network` property a pool offers follows what its sandbox can do:
//! every level gives the network (`network=on`), only `linux` can withhold
//! it (`network=off`). An operator may offer less, never more.

use std::sync::Arc;

use reapi_cas::store::MemoryStore;
use reapi_core::execution::ExecutorPool;
use reapi_core::platform::ExecutorProperties;
use reapi_core::BlobStore;
use reapi_executor::sandbox::isolation::Isolation;
use reapi_executor::{LocalExecutorConfig, LocalExecutorPool};
use tonic::Code;

async fn pool(isolation: Isolation, platform: &[&str]) -> reapi_core::Result<LocalExecutorPool> {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
    config.executors = 1;
    config.isolation = Some(isolation);
    config.properties = ExecutorProperties::from_pairs(platform).unwrap();
    let sandbox = config
        .process_sandbox()
        .unwrap_or_else(|e| panic!("isolation {isolation}: {e}"));
    let cas: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(1 << 20));
    let pool = LocalExecutorPool::new(cas, None, Arc::new(sandbox), config).await;
    drop(dir);
    pool
}

fn network_values(pool: &LocalExecutorPool) -> Vec<&str> {
    pool.properties().values("network").collect()
}

#[tokio::test]
async fn pools_offer_the_network_values_their_sandbox_honours() {
    let none = pool(Isolation::None, &[]).await.unwrap();
    assert_eq!(network_values(&none), ["on"]);
    let process = pool(Isolation::Process, &[]).await.unwrap();
    assert_eq!(network_values(&process), ["on"]);
    let linux = pool(Isolation::Linux, &["OSFamily=linux"]).await.unwrap();
    assert_eq!(network_values(&linux), ["off", "on"]);
    assert_eq!(
        linux.properties().values("OSFamily").collect::<Vec<_>>(),
        ["linux"]
    );
}

#[tokio::test]
async fn an_operator_may_offer_less_but_not_more() {
    let offline_only = pool(Isolation::Linux, &["network=off"]).await.unwrap();
    assert_eq!(network_values(&offline_only), ["off"]);
    let err = pool(Isolation::Process, &["network=off"])
        .await
        .err()
        .expect("a process-level pool cannot keep actions offline");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("network=off"), "{err}");
    let err = pool(Isolation::Linux, &["network=maybe"])
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
}
