//! The `network` and `rootfs` properties a pool offers follow what its
//! sandbox can do: every level gives the network (`network=on`) and the
//! host's file system (`rootfs=host`); only `linux` can withhold the
//! network (`network=off`) or make the input root `/`
//! (`rootfs=input-root`). An operator may offer less, never more.

use std::sync::Arc;

use reapi_cas::store::MemoryStore;
use reapi_core::execution::ExecutorPool;
use reapi_core::platform::{ExecutorProperties, RootFs};
use reapi_core::BlobStore;
use reapi_executor::sandbox::isolation::Isolation;
use reapi_executor::{LocalExecutorConfig, LocalExecutorPool};
use tonic::Code;

async fn pool(isolation: Isolation, platform: &[&str]) -> reapi_core::Result<LocalExecutorPool> {
    pool_with_rootfs(isolation, platform, RootFs::Host).await
}

async fn pool_with_rootfs(
    isolation: Isolation,
    platform: &[&str],
    default_rootfs: RootFs,
) -> reapi_core::Result<LocalExecutorPool> {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
    config.executors = 1;
    config.isolation = Some(isolation);
    config.properties = ExecutorProperties::from_pairs(platform).unwrap();
    config.default_rootfs = default_rootfs;
    let sandbox = config.process_sandbox()?;
    let cas: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(1 << 20));
    let pool = LocalExecutorPool::new(cas, None, Arc::new(sandbox), config).await;
    drop(dir);
    pool
}

fn network_values(pool: &LocalExecutorPool) -> Vec<&str> {
    pool.properties().values("network").collect()
}

fn rootfs_values(pool: &LocalExecutorPool) -> Vec<&str> {
    pool.properties().values("rootfs").collect()
}

#[tokio::test]
async fn pools_offer_the_network_values_their_sandbox_honours() {
    let none = pool(Isolation::None, &[]).await.unwrap();
    assert_eq!(network_values(&none), ["on"]);
    let process = pool(Isolation::Process, &[]).await.unwrap();
    assert_eq!(network_values(&process), ["on"]);
    assert_eq!(rootfs_values(&process), ["host"]);
    let linux = pool(Isolation::Linux, &["OSFamily=linux"]).await.unwrap();
    assert_eq!(network_values(&linux), ["off", "on"]);
    assert_eq!(rootfs_values(&linux), ["host", "input-root"]);
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

#[tokio::test]
async fn only_linux_pools_may_default_to_the_input_root_as_root() {
    let linux = pool_with_rootfs(Isolation::Linux, &[], RootFs::InputRoot).await;
    assert!(linux.is_ok(), "{:?}", linux.err());
    let err = pool_with_rootfs(Isolation::Process, &[], RootFs::InputRoot)
        .await
        .err()
        .expect("a process-level pool cannot make the input root /");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("linux"), "{err}");
}
