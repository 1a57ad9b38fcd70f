//! A full server on loopback, the production composition of
//! `reapi-server`: disk storage in a temporary data directory, a
//! scheduler, a worker with local executors linked to it in process
//! (optional), and the execution and storage services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use reapi_cas::config::StorageConfig;
use reapi_core::proto::remote_execution as re;
use reapi_executor::host::host_properties;
use reapi_executor::worker::LinkHandle;
use reapi_executor::{
    LocalExecutorConfig, LocalExecutorPool, ProcessSandbox, Worker, WorkerConfig,
};
use reapi_scheduler::{ExecutionServices, InProcessConnector, Scheduler, SchedulerConfig};
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic::Status;

use super::Serving;
use crate::action_cache::get_result;
use crate::actions::ActionSpec;
use crate::bytestream::read_blob;
use crate::cas::upload_with;
use crate::clients::{self, Ac, Bs, Caps, Cas, Exec, Ops};
use crate::digests::PDigest;
use crate::operations::{execute, execute_request, Run};
use crate::wait::{eventually, PATIENCE};

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

/// The server, a channel to it, and its parts a test may look into.
pub struct Server {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub scheduler: Arc<Scheduler>,
    /// The in-process worker, unless [`Config::in_process_worker`] is off.
    pub worker: Option<Worker>,
    /// The in-process worker's link, which runs until stopped.
    _link: Option<LinkHandle>,
    serving: Serving,
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

        let serving = Serving::start(routes.routes()).await;
        let addr = serving.addr;
        Server {
            addr,
            channel: clients::connect(addr).await,
            scheduler,
            worker,
            _link: link,
            serving,
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
        clients::exec(&self.channel)
    }

    pub fn ops(&self) -> Ops {
        clients::ops(&self.channel)
    }

    pub fn cas(&self) -> Cas {
        clients::cas(&self.channel)
    }

    pub fn bs(&self) -> Bs {
        clients::bs(&self.channel)
    }

    pub fn ac(&self) -> Ac {
        clients::ac(&self.channel)
    }

    pub fn caps(&self) -> Caps {
        clients::caps(&self.channel)
    }

    /// Uploads the action (Action, Command, input tree and files) to the
    /// default instance and returns its digest.
    pub async fn upload_action(&self, spec: &ActionSpec) -> PDigest {
        self.upload_action_to("", spec).await
    }

    pub async fn upload_action_to(&self, instance: &str, spec: &ActionSpec) -> PDigest {
        let built = spec.build();
        upload_with(
            spec.digest_function,
            &mut self.cas(),
            instance,
            &built.blobs,
        )
        .await;
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
    pub async fn stop(self) {
        drop(self.channel);
        self.serving.stop().await;
    }
}
