//! Shared harness for the execution-side integration tests: a full server
//! (disk storage, local executors, scheduler) on loopback over real gRPC,
//! clients, builders for actions and input trees, and readers of operation
//! streams.
//!
//! Every test binary includes this module and uses a different subset of it.
#![allow(dead_code, unused_imports)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use reapi_cas::config::StorageConfig;
use reapi_core::proto::bytestream::byte_stream_client::ByteStreamClient;
use reapi_core::proto::bytestream::ReadRequest;
use reapi_core::proto::error_details::{PreconditionFailure, PRECONDITION_FAILURE_TYPE_URL};
use reapi_core::proto::longrunning::operations_client::OperationsClient;
use reapi_core::proto::longrunning::{operation, Operation};
use reapi_core::proto::remote_execution::action_cache_client::ActionCacheClient;
use reapi_core::proto::remote_execution::capabilities_client::CapabilitiesClient;
use reapi_core::proto::remote_execution::content_addressable_storage_client::ContentAddressableStorageClient;
use reapi_core::proto::remote_execution::execution_client::ExecutionClient;
use reapi_executor::host::host_properties;
use reapi_executor::worker::LinkHandle;
use reapi_executor::{
    LocalExecutorConfig, LocalExecutorPool, ProcessSandbox, Worker, WorkerConfig,
};
use reapi_scheduler::{ExecutionServices, InProcessConnector, Scheduler, SchedulerConfig};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

pub use re::execution_stage::Value as Stage;
pub use re::Digest as PDigest;
pub use reapi_core::proto::longrunning as lro;
pub use reapi_core::proto::remote_execution as re;

pub type Exec = ExecutionClient<Channel>;
pub type Ops = OperationsClient<Channel>;
pub type Cas = ContentAddressableStorageClient<Channel>;
pub type Bs = ByteStreamClient<Channel>;
pub type Ac = ActionCacheClient<Channel>;
pub type Caps = CapabilitiesClient<Channel>;

/// Client message limits: far above anything the tests send or receive.
const CLIENT_MESSAGE_LIMIT: usize = 256 * 1024 * 1024;
/// No single stream or wait in these tests should take longer than this; a
/// hang fails the test instead of blocking the suite.
pub const PATIENCE: Duration = Duration::from_secs(60);
/// The PATH given to every command built by [`sh`] (commands get exactly
/// the environment the client sets, nothing more).
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

// -------------------------------------------------------------- server ---

/// How a test server is set up.
#[derive(Clone, Debug)]
pub struct Config {
    pub executors: usize,
    pub scheduler: SchedulerConfig,
    /// Instance names served; `None` serves any.
    pub instances: Option<Vec<String>>,
    /// Extra executor properties (`name=value`), on top of the host's.
    pub platform: Vec<String>,
    /// Whether the server links its own worker (local executors) to the
    /// scheduler. Without it, only workers the test connects over
    /// `WorkerLink` run anything, and actions wait in the queue until one
    /// does.
    pub in_process_worker: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            executors: 2,
            scheduler: SchedulerConfig::default(),
            instances: None,
            platform: Vec::new(),
            in_process_worker: true,
        }
    }
}

/// The production composition (see `bin/src/main.rs`): disk storage in a
/// temporary data directory, a local executor pool working beside it, a
/// scheduler, the execution and storage services, all on a fresh loopback
/// port.
pub struct Server {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub scheduler: Arc<Scheduler>,
    /// The in-process worker, unless [`Config::in_process_worker`] is off.
    pub worker: Option<Worker>,
    /// The in-process worker's link, which runs until stopped.
    _link: Option<LinkHandle>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    dir: TempDir,
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = StorageConfig {
            data_dir: dir.path().join("data"),
            disk_size: 4 << 30,
            instances: config.instances.clone(),
            ..Default::default()
        }
        .open()
        .await
        .expect("opening the storage");

        let scheduler = Scheduler::start(storage.action_cache.clone(), config.scheduler.clone());
        let worker = if config.in_process_worker {
            let mut executor_config =
                LocalExecutorConfig::new(dir.path().join("data").join("work")).expect("defaults");
            executor_config.executors = config.executors;
            executor_config.properties = host_properties(&config.platform).expect("properties");
            executor_config.allow_absolute_symlinks = config.scheduler.allow_absolute_symlinks;
            let pool = LocalExecutorPool::new(
                storage.store.clone(),
                Some(storage.disk.clone()),
                Arc::new(ProcessSandbox::new()),
                executor_config,
            )
            .await
            .expect("starting the executor pool");
            let worker = Worker::new(WorkerConfig::new("local"), vec![Arc::new(pool)]);
            let link = worker.connect(Arc::new(InProcessConnector::new(scheduler.clone())));
            let registered =
                eventually(PATIENCE, || scheduler.executor_summary().workers > 0).await;
            assert!(registered, "the in-process worker did not register");
            Some((worker, link))
        } else {
            None
        };
        let (worker, link) = worker.unzip();
        let execution = ExecutionServices {
            scheduler: scheduler.clone(),
            peers: None,
            store: storage.store.clone(),
            action_cache: storage.action_cache.clone(),
            instances: storage.instances.clone(),
        };

        let mut routes = tonic::service::RoutesBuilder::default();
        let mut storage_services = storage.services();
        storage_services.execution = Some(execution.support());
        execution.add_to(&mut routes);
        storage_services.add_to(&mut routes);

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_routes(routes.routes())
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("server failed");
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        Server {
            addr,
            channel,
            scheduler,
            worker,
            _link: link,
            shutdown: Some(shutdown),
            task,
            dir,
        }
    }

    /// A scratch directory of the test, outside every action's sandbox.
    pub fn scratch(&self) -> PathBuf {
        let path = self.dir.path().join("scratch");
        std::fs::create_dir_all(&path).expect("scratch dir");
        path
    }

    /// The per-run directories left in the executors' work directory.
    pub fn action_dirs(&self) -> Vec<PathBuf> {
        let actions = self.dir.path().join("data").join("work").join("actions");
        match std::fs::read_dir(&actions) {
            Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
            Err(e) => panic!("listing {}: {e}", actions.display()),
        }
    }

    pub fn exec(&self) -> Exec {
        ExecutionClient::new(self.channel.clone())
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn ops(&self) -> Ops {
        OperationsClient::new(self.channel.clone()).max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn cas(&self) -> Cas {
        ContentAddressableStorageClient::new(self.channel.clone())
            .max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
            .max_encoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn bs(&self) -> Bs {
        ByteStreamClient::new(self.channel.clone()).max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn ac(&self) -> Ac {
        ActionCacheClient::new(self.channel.clone()).max_decoding_message_size(CLIENT_MESSAGE_LIMIT)
    }

    pub fn caps(&self) -> Caps {
        CapabilitiesClient::new(self.channel.clone())
    }

    /// Uploads the action (Action, Command, input tree and files) to the
    /// default instance and returns its digest.
    pub async fn upload_action(&self, spec: &ActionSpec) -> PDigest {
        self.upload_action_to("", spec).await
    }

    pub async fn upload_action_to(&self, instance: &str, spec: &ActionSpec) -> PDigest {
        let built = spec.build();
        upload(&mut self.cas(), instance, &built.blobs).await;
        built.action_digest
    }

    /// Uploads and executes `spec` with default request settings; every
    /// streamed operation and the final response.
    pub async fn run(&self, spec: &ActionSpec) -> Run {
        let digest = self.upload_action(spec).await;
        self.run_request(execute_request(&digest)).await
    }

    /// Executes a request that must be accepted; the whole stream.
    pub async fn run_request(&self, request: re::ExecuteRequest) -> Run {
        let ops = execute(&mut self.exec(), request)
            .await
            .expect("Execute refused");
        Run::new(ops)
    }

    /// Reads a blob of the default instance with ByteStream.
    pub async fn read_blob(&self, digest: &PDigest) -> Vec<u8> {
        read_blob(&mut self.bs(), "", digest)
            .await
            .unwrap_or_else(|e| panic!("reading blob {digest:?}: {e:?}"))
    }

    /// GetActionResult on the default instance.
    pub async fn cached_result(&self, action: &PDigest) -> Result<re::ActionResult, Status> {
        get_result(&mut self.ac(), "", action).await
    }

    /// Shuts the server down and waits for it.
    pub async fn stop(mut self) {
        drop(self.channel);
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

// ------------------------------------------------------------- actions ---

/// An action to build: a command, its input files and what it outputs.
#[derive(Clone, Debug, Default)]
pub struct ActionSpec {
    pub arguments: Vec<String>,
    pub environment: Vec<(String, String)>,
    /// Input files by path below the input root, with their contents.
    pub inputs: Vec<(String, Vec<u8>)>,
    /// Paths of `inputs` that are executable.
    pub executables: Vec<String>,
    /// Legacy (REAPI 2.0) output files.
    pub output_files: Vec<String>,
    /// Legacy (REAPI 2.0) output directories.
    pub output_directories: Vec<String>,
    /// REAPI 2.1 output paths.
    pub output_paths: Vec<String>,
    pub working_directory: String,
    pub timeout: Option<Duration>,
    pub do_not_cache: bool,
    /// `Action.platform` properties.
    pub platform: Vec<(String, String)>,
    /// Deprecated `Command.platform` properties.
    pub command_platform: Vec<(String, String)>,
    pub salt: Vec<u8>,
}

/// `/bin/sh -c script` with `PATH` set; extra `args` become `$1`, `$2`...
pub fn sh(script: &str) -> ActionSpec {
    sh_args(script, &[])
}

pub fn sh_args(script: &str, args: &[&str]) -> ActionSpec {
    let mut arguments = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ];
    arguments.extend(args.iter().map(|a| a.to_string()));
    ActionSpec {
        arguments,
        environment: vec![("PATH".into(), PATH.into())],
        ..Default::default()
    }
}

impl ActionSpec {
    pub fn input(mut self, path: &str, contents: &[u8]) -> Self {
        self.inputs.push((path.into(), contents.to_vec()));
        self
    }

    pub fn executable_input(mut self, path: &str, contents: &[u8]) -> Self {
        self.inputs.push((path.into(), contents.to_vec()));
        self.executables.push(path.into());
        self
    }

    pub fn output_file(mut self, path: &str) -> Self {
        self.output_files.push(path.into());
        self
    }

    pub fn output_path(mut self, path: &str) -> Self {
        self.output_paths.push(path.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn do_not_cache(mut self) -> Self {
        self.do_not_cache = true;
        self
    }

    pub fn platform(mut self, name: &str, value: &str) -> Self {
        self.platform.push((name.into(), value.into()));
        self
    }

    pub fn command(&self) -> re::Command {
        #[allow(deprecated)]
        re::Command {
            arguments: self.arguments.clone(),
            environment_variables: self
                .environment
                .iter()
                .map(|(name, value)| re::command::EnvironmentVariable {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            output_files: self.output_files.clone(),
            output_directories: self.output_directories.clone(),
            output_paths: self.output_paths.clone(),
            platform: platform(&self.command_platform),
            working_directory: self.working_directory.clone(),
            ..Default::default()
        }
    }

    /// The Action, given the digests of its Command and input root.
    pub fn action(&self, command: &PDigest, input_root: &PDigest) -> re::Action {
        re::Action {
            command_digest: Some(command.clone()),
            input_root_digest: Some(input_root.clone()),
            timeout: self.timeout.map(reapi_core::proto::time::to_proto_duration),
            do_not_cache: self.do_not_cache,
            salt: self.salt.clone(),
            platform: platform(&self.platform),
        }
    }

    /// Every message and blob of the action.
    pub fn build(&self) -> Built {
        let command = self.command();
        let tree = input_tree_with(&self.inputs, &self.executables);
        let command_digest = dig_msg(&command);
        let action = self.action(&command_digest, &tree.root);
        let action_digest = dig_msg(&action);
        let mut blobs = tree.blobs.clone();
        blobs.push(command.encode_to_vec());
        blobs.push(action.encode_to_vec());
        Built {
            action,
            action_digest,
            command,
            command_digest,
            tree,
            blobs,
        }
    }
}

fn platform(properties: &[(String, String)]) -> Option<re::Platform> {
    if properties.is_empty() {
        return None;
    }
    let mut properties: Vec<re::platform::Property> = properties
        .iter()
        .map(|(name, value)| re::platform::Property {
            name: name.clone(),
            value: value.clone(),
        })
        .collect();
    properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
    Some(re::Platform { properties })
}

/// An action with everything it references.
#[derive(Clone, Debug)]
pub struct Built {
    pub action: re::Action,
    pub action_digest: PDigest,
    pub command: re::Command,
    pub command_digest: PDigest,
    pub tree: Tree,
    /// Every blob: files, directories, the Command and the Action.
    pub blobs: Vec<Vec<u8>>,
}

/// An input tree: its root digest and every blob in it (files and encoded
/// directories).
#[derive(Clone, Debug)]
pub struct Tree {
    pub root: PDigest,
    pub blobs: Vec<Vec<u8>>,
}

#[derive(Default)]
struct DirNode {
    /// Contents and whether executable.
    files: BTreeMap<String, (Vec<u8>, bool)>,
    dirs: BTreeMap<String, DirNode>,
}

/// Builds the canonical input tree holding `files` (paths with `/`).
pub fn input_tree(files: &[(String, Vec<u8>)]) -> Tree {
    input_tree_with(files, &[])
}

/// [`input_tree`] with the files at `executables` marked executable.
pub fn input_tree_with(files: &[(String, Vec<u8>)], executables: &[String]) -> Tree {
    let mut root = DirNode::default();
    for (path, contents) in files {
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().expect("file name");
        let mut node = &mut root;
        for part in parts {
            node = node.dirs.entry(part.to_string()).or_default();
        }
        let executable = executables.contains(path);
        node.files
            .insert(name.to_string(), (contents.clone(), executable));
    }
    let mut blobs = Vec::new();
    let root = encode_dir(&root, &mut blobs);
    Tree { root, blobs }
}

fn encode_dir(node: &DirNode, blobs: &mut Vec<Vec<u8>>) -> PDigest {
    let mut dir = re::Directory::default();
    for (name, (contents, executable)) in &node.files {
        blobs.push(contents.clone());
        let mut file = file_node(name, contents);
        file.is_executable = *executable;
        dir.files.push(file);
    }
    for (name, sub) in &node.dirs {
        let digest = encode_dir(sub, blobs);
        dir.directories.push(re::DirectoryNode {
            name: name.clone(),
            digest: Some(digest),
        });
    }
    let bytes = dir.encode_to_vec();
    let digest = dig(&bytes);
    blobs.push(bytes);
    digest
}

pub fn file_node(name: &str, contents: &[u8]) -> re::FileNode {
    re::FileNode {
        name: name.into(),
        digest: Some(dig(contents)),
        is_executable: false,
        node_properties: None,
    }
}

pub fn dir_node(name: &str, dir: &re::Directory) -> re::DirectoryNode {
    re::DirectoryNode {
        name: name.into(),
        digest: Some(dig_msg(dir)),
    }
}

// ------------------------------------------------------------- digests ---

pub fn dig(bytes: &[u8]) -> PDigest {
    reapi_core::Digest::of_bytes(bytes).to_proto()
}

pub fn dig_msg<M: Message>(message: &M) -> PDigest {
    dig(&message.encode_to_vec())
}

pub fn sha256() -> i32 {
    re::digest_function::Value::Sha256 as i32
}

/// `blobs/{hash}/{size}`, the subject of a MISSING violation.
pub fn subject(d: &PDigest) -> String {
    format!("blobs/{}/{}", d.hash, d.size_bytes)
}

// ----------------------------------------------------------------- CAS ---

/// Uploads blobs with BatchUpdateBlobs, asserting each succeeded.
pub async fn upload(cas: &mut Cas, instance: &str, blobs: &[Vec<u8>]) {
    // Keep each batch well under the 4 MiB limit.
    let mut batch: Vec<&Vec<u8>> = Vec::new();
    let mut size = 0;
    for blob in blobs {
        if size + blob.len() > (2 << 20) && !batch.is_empty() {
            upload_batch(cas, instance, &batch).await;
            batch.clear();
            size = 0;
        }
        size += blob.len();
        batch.push(blob);
    }
    if !batch.is_empty() {
        upload_batch(cas, instance, &batch).await;
    }
}

async fn upload_batch(cas: &mut Cas, instance: &str, blobs: &[&Vec<u8>]) {
    let responses = cas
        .batch_update_blobs(re::BatchUpdateBlobsRequest {
            instance_name: instance.into(),
            requests: blobs
                .iter()
                .map(|b| re::batch_update_blobs_request::Request {
                    digest: Some(dig(b)),
                    data: b.to_vec(),
                    compressor: 0,
                })
                .collect(),
            digest_function: sha256(),
        })
        .await
        .expect("BatchUpdateBlobs")
        .into_inner()
        .responses;
    assert_eq!(responses.len(), blobs.len());
    for response in responses {
        let code = response.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(code, 0, "uploading {response:?}");
    }
}

pub async fn find_missing(cas: &mut Cas, instance: &str, digests: &[PDigest]) -> Vec<PDigest> {
    cas.find_missing_blobs(re::FindMissingBlobsRequest {
        instance_name: instance.into(),
        blob_digests: digests.to_vec(),
        digest_function: sha256(),
    })
    .await
    .expect("FindMissingBlobs")
    .into_inner()
    .missing_blob_digests
}

/// `{instance}/blobs/{hash}/{size}`.
pub fn read_name(instance: &str, d: &PDigest) -> String {
    if instance.is_empty() {
        format!("blobs/{}/{}", d.hash, d.size_bytes)
    } else {
        format!("{instance}/blobs/{}/{}", d.hash, d.size_bytes)
    }
}

/// Reads a whole blob with ByteStream Read.
pub async fn read_blob(bs: &mut Bs, instance: &str, d: &PDigest) -> Result<Vec<u8>, Status> {
    let mut stream = bs
        .read(ReadRequest {
            resource_name: read_name(instance, d),
            read_offset: 0,
            read_limit: 0,
        })
        .await?
        .into_inner();
    let mut data = Vec::new();
    while let Some(response) = stream.message().await? {
        data.extend_from_slice(&response.data);
    }
    Ok(data)
}

pub async fn get_result(
    ac: &mut Ac,
    instance: &str,
    action: &PDigest,
) -> Result<re::ActionResult, Status> {
    Ok(ac
        .get_action_result(re::GetActionResultRequest {
            instance_name: instance.into(),
            action_digest: Some(action.clone()),
            digest_function: sha256(),
            ..Default::default()
        })
        .await?
        .into_inner())
}

// ----------------------------------------------------------- execution ---

pub fn execute_request(action: &PDigest) -> re::ExecuteRequest {
    re::ExecuteRequest {
        action_digest: Some(action.clone()),
        digest_function: sha256(),
        ..Default::default()
    }
}

pub fn with_priority(mut request: re::ExecuteRequest, priority: i32) -> re::ExecuteRequest {
    request.execution_policy = Some(re::ExecutionPolicy { priority });
    request
}

/// Starts an Execute; the operation stream, or the RPC's error.
pub async fn start_execute(
    exec: &mut Exec,
    request: re::ExecuteRequest,
) -> Result<Streaming<Operation>, Status> {
    Ok(exec.execute(request).await?.into_inner())
}

/// Every operation of a stream until it ends (within [`PATIENCE`]).
pub async fn drain(stream: &mut Streaming<Operation>) -> Result<Vec<Operation>, Status> {
    within(PATIENCE, "operation stream", async {
        let mut ops = Vec::new();
        while let Some(op) = stream.message().await? {
            ops.push(op);
        }
        Ok(ops)
    })
    .await
}

/// Executes and reads the whole stream.
pub async fn execute(
    exec: &mut Exec,
    request: re::ExecuteRequest,
) -> Result<Vec<Operation>, Status> {
    let mut stream = start_execute(exec, request).await?;
    drain(&mut stream).await
}

/// The next operation of a stream; panics when it ends or fails.
pub async fn next_op(stream: &mut Streaming<Operation>) -> Operation {
    within(PATIENCE, "next operation", stream.message())
        .await
        .expect("stream failed")
        .expect("stream ended early")
}

/// Reads a stream until an operation at `stage` (or a later one) arrives;
/// every operation read.
pub async fn read_until(stream: &mut Streaming<Operation>, stage: Stage) -> Vec<Operation> {
    let mut ops = Vec::new();
    loop {
        let op = next_op(stream).await;
        let reached = stage_of(&op) as i32 >= stage as i32;
        ops.push(op);
        if reached {
            return ops;
        }
    }
}

pub fn metadata(op: &Operation) -> re::ExecuteOperationMetadata {
    let any = op.metadata.as_ref().expect("operation has metadata");
    assert!(
        any.type_url
            .ends_with("build.bazel.remote.execution.v2.ExecuteOperationMetadata"),
        "metadata type {}",
        any.type_url
    );
    re::ExecuteOperationMetadata::decode(any.value.as_slice()).expect("metadata decodes")
}

pub fn stage_of(op: &Operation) -> Stage {
    Stage::try_from(metadata(op).stage).expect("a known stage")
}

pub fn stages(ops: &[Operation]) -> Vec<Stage> {
    ops.iter().map(stage_of).collect()
}

/// The ExecuteResponse of a done operation.
pub fn response_of(op: &Operation) -> re::ExecuteResponse {
    assert!(op.done, "operation {} is not done", op.name);
    match op.result.as_ref().expect("a done operation has a result") {
        operation::Result::Response(any) => {
            assert!(
                any.type_url
                    .ends_with("build.bazel.remote.execution.v2.ExecuteResponse"),
                "response type {}",
                any.type_url
            );
            re::ExecuteResponse::decode(any.value.as_slice()).expect("response decodes")
        }
        operation::Result::Error(status) => {
            panic!("operation {} failed: {status:?}", op.name)
        }
    }
}

/// A finished Execute stream, checked for the rules every stream follows:
/// one name throughout, only the last operation done, and it COMPLETED
/// with an ExecuteResponse.
pub struct Run {
    pub ops: Vec<Operation>,
    pub response: re::ExecuteResponse,
}

impl Run {
    pub fn new(ops: Vec<Operation>) -> Run {
        assert!(!ops.is_empty(), "the stream sent no operation");
        let name = &ops[0].name;
        assert!(!name.is_empty(), "the operation has no name");
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(&op.name, name, "operation {i} changed name");
            let last = i + 1 == ops.len();
            assert_eq!(
                op.done,
                last,
                "operation {i} of {}: done={}",
                ops.len(),
                op.done
            );
            assert_eq!(
                stage_of(op) == Stage::Completed,
                op.done,
                "COMPLETED exactly when done (operation {i})"
            );
        }
        let response = response_of(ops.last().unwrap());
        Run { ops, response }
    }

    pub fn name(&self) -> &str {
        &self.ops[0].name
    }

    pub fn stages(&self) -> Vec<Stage> {
        stages(&self.ops)
    }

    pub fn result(&self) -> &re::ActionResult {
        self.response
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("no ActionResult: {:?}", self.response))
    }

    /// The response's status code (OK when absent).
    pub fn code(&self) -> Code {
        status_code(&self.response.status)
    }

    /// Asserts the action ran (was not a cache hit) and finished OK.
    #[track_caller]
    pub fn assert_ran_ok(&self) {
        assert_eq!(self.code(), Code::Ok, "{:?}", self.response.status);
        assert!(!self.response.cached_result, "unexpected cache hit");
        let stages = self.stages();
        assert!(
            stages.contains(&Stage::Queued) || stages.contains(&Stage::Executing),
            "stages {stages:?}"
        );
        assert!(!stages.contains(&Stage::CacheCheck), "stages {stages:?}");
    }
}

pub fn status_code(status: &Option<reapi_core::proto::rpc::Status>) -> Code {
    Code::from_i32(status.as_ref().map_or(0, |s| s.code))
}

/// Asserts `result` failed with `code`; returns the status.
#[track_caller]
pub fn assert_code<T: Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(
                status.code(),
                code,
                "{what}: wrong code; message: {}",
                status.message()
            );
            status
        }
    }
}

/// The PreconditionFailure in a gRPC status's details.
pub fn precondition_failure(status: &Status) -> PreconditionFailure {
    assert!(!status.details().is_empty(), "no details in {status:?}");
    let rpc = reapi_core::proto::rpc::Status::decode(status.details())
        .expect("details decode as google.rpc.Status");
    assert_eq!(rpc.code, Code::FailedPrecondition as i32);
    assert_eq!(rpc.details.len(), 1, "{rpc:?}");
    assert_eq!(rpc.details[0].type_url, PRECONDITION_FAILURE_TYPE_URL);
    PreconditionFailure::decode(rpc.details[0].value.as_slice())
        .expect("details[0] decodes as PreconditionFailure")
}

/// The sorted subjects of MISSING violations, asserting every violation is
/// of that type.
pub fn missing_subjects(status: &Status) -> Vec<String> {
    let failure = precondition_failure(status);
    let mut subjects: Vec<String> = failure
        .violations
        .iter()
        .map(|v| {
            assert_eq!(v.r#type, "MISSING", "{v:?}");
            v.subject.clone()
        })
        .collect();
    subjects.sort();
    subjects
}

// -------------------------------------------------------------- timing ---

/// Awaits `future`, failing the test if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Polls `check` every 20 ms until it returns true; false after `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Nanoseconds since the epoch of a protocol timestamp.
pub fn nanos(ts: &Option<reapi_core::proto::protobuf::Timestamp>) -> u128 {
    let ts = ts.as_ref().expect("timestamp is set");
    let at = UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32);
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

pub fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // The state follows the parenthesised command name.
        Ok(stat) => match stat.rsplit_once(')') {
            Some((_, rest)) => !rest.trim_start().starts_with(['Z', 'X']),
            None => true,
        },
    }
}

/// Whether `/proc/{pid}` exists at all (a zombie counts).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Reads a pid a command wrote to `path`, waiting until it is there.
pub async fn read_pid(path: &Path) -> u32 {
    let mut pid = None;
    let found = eventually(Duration::from_secs(20), || {
        pid = std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        pid.is_some()
    })
    .await;
    assert!(found, "no pid in {}", path.display());
    pid.unwrap()
}
