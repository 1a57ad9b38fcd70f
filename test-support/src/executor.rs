//! A local executor pool over a MemoryStore or a DiskStore in a temporary
//! directory, run directly (no scheduler), for the executor's own tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use reapi_cas::store::{DiskStore, DiskStoreConfig, MemoryStore};
use reapi_core::execution::{ExecutionJob, ExecutionOutcome, ExecutorPool};
use reapi_core::proto::remote_execution::{Action, Command, Tree};
use reapi_core::{BlobStore, Digest, Result};
use reapi_executor::sandbox::isolation::Isolation;
use reapi_executor::{LocalExecutorConfig, LocalExecutorPool};

use crate::trees::TreeSpec;

/// `/bin/sh -c SCRIPT` run in `dir` (its input root and working
/// directory), output to `dir/stdout` and `dir/stderr`, for tests that
/// drive a [`reapi_core::execution::Sandbox`] directly.
pub fn shell_in(
    dir: &std::path::Path,
    script: &str,
    resources: reapi_core::platform::Resources,
    timeout: Duration,
) -> reapi_core::execution::SandboxCommand {
    reapi_core::execution::SandboxCommand {
        arguments: vec!["/bin/sh".into(), "-c".into(), script.into()],
        environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
        input_root: dir.to_path_buf(),
        working_directory: dir.to_path_buf(),
        stdout_path: dir.join("stdout"),
        stderr_path: dir.join("stderr"),
        timeout,
        resources,
        network: false,
        rootfs: None,
    }
}

/// The instance every harness job runs in and every blob is stored under.
pub const INSTANCE: &str = "test";

pub struct Harness {
    pub cas: Arc<dyn BlobStore>,
    pub disk: Option<Arc<DiskStore>>,
    pub pool: LocalExecutorPool,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A pool of two executors over a MemoryStore, at isolation level
    /// `process`: commands see the host's file system, so tests can watch
    /// them through files in [`Harness::scratch`].
    pub async fn memory() -> Harness {
        Self::memory_at(Isolation::Process).await
    }

    /// A pool of two executors over a MemoryStore at `isolation`.
    pub async fn memory_at(isolation: Isolation) -> Harness {
        Self::memory_at_in(isolation, &std::env::temp_dir()).await
    }

    /// The same with its directories in a new directory under `parent`.
    pub async fn memory_at_in(isolation: Isolation, parent: &std::path::Path) -> Harness {
        Self::memory_running_as(isolation, parent, None).await
    }

    /// The same, running actions as `run_as` (`None`: the test's user).
    pub async fn memory_running_as(
        isolation: Isolation,
        parent: &std::path::Path,
        run_as: Option<(u32, u32)>,
    ) -> Harness {
        let cas: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(1 << 30));
        let dir = tempfile::tempdir_in(parent).unwrap();
        Self::build(cas, None, dir, run_as, isolation).await
    }

    /// A pool of two executors over a DiskStore, running actions as the
    /// test's own user (so inputs are copied from the store).
    pub async fn disk() -> Harness {
        Self::disk_running_as(None).await
    }

    /// A pool of two executors over a DiskStore, running actions as
    /// `run_as` (`None`: the test's own user).
    pub async fn disk_running_as(run_as: Option<(u32, u32)>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(
            DiskStore::open(DiskStoreConfig {
                root: dir.path().join("cas"),
                max_bytes: 4 << 30,
                retention: std::time::Duration::ZERO,
            })
            .await
            .unwrap(),
        );
        let cas: Arc<dyn BlobStore> = disk.clone();
        Self::build(cas, Some(disk), dir, run_as, Isolation::Process).await
    }

    async fn build(
        cas: Arc<dyn BlobStore>,
        disk: Option<Arc<DiskStore>>,
        dir: tempfile::TempDir,
        run_as: Option<(u32, u32)>,
        isolation: Isolation,
    ) -> Harness {
        let mut config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
        config.executors = 2;
        config.run_as = run_as;
        config.isolation = Some(isolation);
        let sandbox = config
            .process_sandbox()
            .unwrap_or_else(|e| panic!("isolation {isolation}: {e}"));
        let pool = LocalExecutorPool::new(cas.clone(), disk.clone(), Arc::new(sandbox), config)
            .await
            .unwrap();
        Harness {
            cas,
            disk,
            pool,
            dir,
        }
    }

    /// A directory outside the pool's work directory for test files.
    pub fn scratch(&self) -> PathBuf {
        let path = self.dir.path().join("scratch");
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    pub async fn put(&self, data: impl Into<Bytes>) -> Digest {
        let data = data.into();
        let digest = Digest::of_bytes(&data);
        self.cas.put(INSTANCE, &digest, data).await.unwrap();
        digest
    }

    pub async fn put_message<M: Message>(&self, message: &M) -> Digest {
        self.put(message.encode_to_vec()).await
    }

    pub async fn read(&self, digest: &Digest) -> Vec<u8> {
        self.cas.get(INSTANCE, digest).await.unwrap().to_vec()
    }

    pub async fn read_proto(
        &self,
        digest: &reapi_core::proto::remote_execution::Digest,
    ) -> Vec<u8> {
        self.read(&Digest::from_proto(reapi_core::DigestFunction::Sha256, digest).unwrap())
            .await
    }

    /// Uploads `tree` (and its files) and returns the root digest.
    pub async fn upload_tree(&self, tree: &TreeSpec) -> Digest {
        let mut blobs = Vec::new();
        let root = tree.build(&mut blobs);
        for blob in blobs {
            self.put(blob).await;
        }
        root
    }

    pub async fn run(&self, command: Command, input_root: Digest) -> Result<ExecutionOutcome> {
        self.run_timed(command, input_root, Duration::from_secs(60))
            .await
    }

    /// Claims a free executor and runs the command on it.
    pub async fn run_timed(
        &self,
        command: Command,
        input_root: Digest,
        timeout: Duration,
    ) -> Result<ExecutionOutcome> {
        let claim = self
            .pool
            .claim()
            .expect("a free executor for the test's run");
        self.pool
            .run(&claim, job(command, input_root, timeout))
            .await
    }

    /// Action directories left in the work directory.
    pub fn leftover_action_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.pool.actions_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    pub async fn stdout(&self, outcome: &ExecutionOutcome) -> String {
        let digest = outcome
            .result
            .stdout_digest
            .as_ref()
            .expect("stdout digest");
        String::from_utf8(self.read_proto(digest).await).unwrap()
    }

    pub async fn stderr(&self, outcome: &ExecutionOutcome) -> String {
        let digest = outcome
            .result
            .stderr_digest
            .as_ref()
            .expect("stderr digest");
        String::from_utf8(self.read_proto(digest).await).unwrap()
    }

    pub async fn tree(&self, digest: &reapi_core::proto::remote_execution::Digest) -> Tree {
        Tree::decode(Bytes::from(self.read_proto(digest).await)).unwrap()
    }
}

/// The job of running `command` on `input_root` in [`INSTANCE`].
pub fn job(command: Command, input_root: Digest, timeout: Duration) -> ExecutionJob {
    let action = Action {
        command_digest: Some(Digest::of_message(&command).to_proto()),
        input_root_digest: Some(input_root.to_proto()),
        ..Default::default()
    };
    ExecutionJob {
        instance_name: INSTANCE.into(),
        action_digest: Digest::of_message(&action),
        action,
        command,
        timeout,
        queued_at: SystemTime::now(),
    }
}
