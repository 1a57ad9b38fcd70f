//! Shared test harness: a pool over a MemoryStore or a DiskStore in a temp
//! directory, and builders for input trees and commands.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;
use reapi_cas::store::{DiskStore, DiskStoreConfig, MemoryStore};
use reapi_core::execution::{ExecutionJob, ExecutionOutcome, ExecutorPool};
use reapi_core::proto::remote_execution::command::EnvironmentVariable;
use reapi_core::proto::remote_execution::{
    Action, Command, Directory, DirectoryNode, FileNode, SymlinkNode, Tree,
};
use reapi_core::{BlobStore, Digest, Result};
use reapi_executor::{LocalExecutorConfig, LocalExecutorPool};

pub const INSTANCE: &str = "test";

pub struct Harness {
    pub cas: Arc<dyn BlobStore>,
    pub disk: Option<Arc<DiskStore>>,
    pub pool: LocalExecutorPool,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// A pool of two executors over a MemoryStore.
    pub async fn memory() -> Harness {
        let cas: Arc<dyn BlobStore> = Arc::new(MemoryStore::new(1 << 30));
        Self::build(cas, None, tempfile::tempdir().unwrap(), None).await
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
            })
            .await
            .unwrap(),
        );
        let cas: Arc<dyn BlobStore> = disk.clone();
        Self::build(cas, Some(disk), dir, run_as).await
    }

    async fn build(
        cas: Arc<dyn BlobStore>,
        disk: Option<Arc<DiskStore>>,
        dir: tempfile::TempDir,
        run_as: Option<(u32, u32)>,
    ) -> Harness {
        let mut config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
        config.executors = 2;
        config.run_as = run_as;
        let sandbox = config.process_sandbox();
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
        self.read(&Digest::from_proto(digest).unwrap()).await
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

/// A Command running `args` with `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    Command {
        arguments: args.iter().map(|a| a.to_string()).collect(),
        environment_variables: env
            .iter()
            .map(|(name, value)| EnvironmentVariable {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        ..Default::default()
    }
}

/// `sh -c script`, with PATH set so the script finds the usual tools.
pub fn shell(script: &str) -> Command {
    command(
        &["/bin/sh", "-c", script],
        &[("PATH", "/usr/local/bin:/usr/bin:/bin")],
    )
}

/// An input tree described by paths, built into canonical Directory
/// messages.
#[derive(Clone, Debug, Default)]
pub struct TreeSpec {
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug)]
enum Entry {
    File(Bytes, bool),
    Symlink(String),
    Dir(TreeSpec),
}

impl TreeSpec {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, path: &str, content: &[u8]) -> Self {
        self.insert(path, Entry::File(Bytes::copy_from_slice(content), false));
        self
    }

    pub fn executable(mut self, path: &str, content: &[u8]) -> Self {
        self.insert(path, Entry::File(Bytes::copy_from_slice(content), true));
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.insert(path, Entry::Symlink(target.to_string()));
        self
    }

    pub fn dir(mut self, path: &str) -> Self {
        self.insert(path, Entry::Dir(TreeSpec::default()));
        self
    }

    fn insert(&mut self, path: &str, entry: Entry) {
        match path.split_once('/') {
            None => {
                self.entries.insert(path.to_string(), entry);
            }
            Some((first, rest)) => {
                let sub = self
                    .entries
                    .entry(first.to_string())
                    .or_insert_with(|| Entry::Dir(TreeSpec::default()));
                match sub {
                    Entry::Dir(sub) => sub.insert(rest, entry),
                    _ => panic!("{first} is not a directory"),
                }
            }
        }
    }

    /// The root Directory's digest; every blob goes into `blobs`.
    pub fn build(&self, blobs: &mut Vec<Bytes>) -> Digest {
        let dir = self.directory(blobs);
        let bytes = Bytes::from(dir.encode_to_vec());
        let digest = Digest::of_bytes(&bytes);
        blobs.push(bytes);
        digest
    }

    fn directory(&self, blobs: &mut Vec<Bytes>) -> Directory {
        let mut dir = Directory::default();
        for (name, entry) in &self.entries {
            match entry {
                Entry::File(content, executable) => {
                    dir.files.push(FileNode {
                        name: name.clone(),
                        digest: Some(Digest::of_bytes(content).to_proto()),
                        is_executable: *executable,
                        ..Default::default()
                    });
                    blobs.push(content.clone());
                }
                Entry::Symlink(target) => dir.symlinks.push(SymlinkNode {
                    name: name.clone(),
                    target: target.clone(),
                    ..Default::default()
                }),
                Entry::Dir(sub) => {
                    let digest = sub.build(blobs);
                    dir.directories.push(DirectoryNode {
                        name: name.clone(),
                        digest: Some(digest.to_proto()),
                    });
                }
            }
        }
        dir
    }
}

/// Whether a process is still running (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// Waits up to `limit` for `cond`.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// The pids in a file of one pid per line.
pub fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}
