//! Several schedulers over real gRPC on loopback, each on a runtime of its
//! own: peered through `SchedulerPeers`, sharing one store and action
//! cache (as a cluster shares a bucket), with one worker linked to all of
//! them over `WorkerLink`. Each action
//! has one home, wherever it is sent; operations are found from any
//! scheduler; a dead home's operations are NOT_FOUND and its actions move.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reapi_cas::config::StorageConfig;
use reapi_cas::service::listener;
use reapi_core::cluster::discovery::MemberList;
use reapi_core::proto::remote_execution as re;
use reapi_executor::worker::GrpcSchedulerConnector;
use reapi_executor::worker::LinkHandle;
use reapi_executor::{
    LocalExecutorConfig, LocalExecutorPool, ProcessSandbox, Worker, WorkerConfig,
};
use reapi_scheduler::{ExecutionServices, Peers, Scheduler, SchedulerConfig};
use reapi_test_support::actions::{sh, ActionSpec};
use reapi_test_support::cas::upload;
use reapi_test_support::clients::{self, Exec};
use reapi_test_support::digests::PDigest;
use reapi_test_support::operations::{execute_request, next_op, response_of, stage_of, Stage};
use reapi_test_support::wait::{eventually, within, PATIENCE};
use tempfile::TempDir;
use tonic::Code;

/// One scheduler, served from a runtime of its own, so that killing it
/// ends everything it runs: its tasks, its connections, its links.
struct Member {
    addr: SocketAddr,
    id: String,
    peers: Arc<Peers>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Cluster {
    members: Vec<Member>,
    worker: Worker,
    _links: Vec<LinkHandle>,
    dir: TempDir,
}

impl Cluster {
    async fn start(schedulers: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let storage = StorageConfig {
            data_dir: dir.path().join("data"),
            disk_size: 1 << 30,
            ..Default::default()
        }
        .open()
        .await
        .unwrap();
        let mut listeners = Vec::new();
        for _ in 0..schedulers {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            listeners.push(listener);
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        let members_list = MemberList::parse(&list).unwrap();

        let mut members = Vec::new();
        for (listener, addr) in listeners.into_iter().zip(&addrs) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (store, action_cache, instances) = (
                storage.store.clone(),
                storage.action_cache.clone(),
                storage.instances.clone(),
            );
            let members_list = members_list.clone();
            let addr = *addr;
            let (scheduler, peers) = runtime
                .spawn(async move {
                    let scheduler =
                        Scheduler::start(action_cache.clone(), SchedulerConfig::default());
                    let peers = Peers::start(
                        scheduler.id(),
                        addr.to_string(),
                        members_list,
                        Duration::from_millis(100),
                        Duration::from_secs(2),
                    );
                    let execution = ExecutionServices {
                        scheduler: scheduler.clone(),
                        peers: Some(peers.clone()),
                        store: store.clone(),
                        action_cache: action_cache.clone(),
                        instances: instances.clone(),
                    };
                    let mut routes = tonic::service::RoutesBuilder::default();
                    let storage_services = reapi_cas::service::StorageServices {
                        store,
                        action_cache,
                        instances,
                        execution: Some(execution.support()),
                    };
                    execution.add_to(&mut routes);
                    storage_services.add_to(&mut routes);
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::spawn(listener::serve(
                        listener,
                        routes.routes(),
                        std::future::pending(),
                    ));
                    (scheduler, peers)
                })
                .await
                .unwrap();
            members.push(Member {
                addr,
                id: scheduler.id().to_string(),
                peers,
                runtime: Some(runtime),
            });
        }

        let mut pool_config = LocalExecutorConfig::new(dir.path().join("work")).unwrap();
        pool_config.executors = 4;
        let pool = LocalExecutorPool::new(
            storage.store.clone(),
            Some(storage.disk.clone()),
            Arc::new(ProcessSandbox::new()),
            pool_config,
        )
        .await
        .unwrap();
        let worker = Worker::new(WorkerConfig::new("shared-worker"), vec![Arc::new(pool)]);
        let links = addrs
            .iter()
            .map(|addr| worker.connect(Arc::new(GrpcSchedulerConnector::new(*addr).unwrap())))
            .collect();
        let cluster = Cluster {
            members,
            worker,
            _links: links,
            dir,
        };
        let everyone_sees_everyone = eventually(PATIENCE, || {
            cluster.worker.linked() == schedulers
                && cluster
                    .members
                    .iter()
                    .all(|m| m.peers.live_peers().len() == schedulers - 1)
        })
        .await;
        assert!(
            everyone_sees_everyone,
            "the schedulers did not find each other"
        );
        cluster
    }

    async fn exec(&self, i: usize) -> Exec {
        clients::exec(&clients::connect(self.members[i].addr).await)
    }

    async fn upload(&self, spec: &ActionSpec) -> PDigest {
        let built = spec.build();
        let channel = clients::connect(self.members[0].addr).await;
        upload(&mut clients::cas(&channel), "", &built.blobs).await;
        built.action_digest
    }

    /// The member a name's home part names.
    fn home_of(&self, name: &str) -> usize {
        self.members
            .iter()
            .position(|m| name.starts_with(&format!("operations/{}/", m.id)))
            .unwrap_or_else(|| panic!("{name} names no member"))
    }

    /// Kills a scheduler: its runtime goes, with every task and socket.
    fn kill(&mut self, i: usize) {
        if let Some(runtime) = self.members[i].runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// An action that records each run in `marks` and takes `seconds`.
fn counted(marks: &std::path::Path, tag: &str, seconds: f64) -> ActionSpec {
    sh(&format!(
        "echo ran >> {}/{tag}; sleep {seconds}",
        marks.display()
    ))
}

fn runs(marks: &std::path::Path, tag: &str) -> usize {
    std::fs::read_to_string(marks.join(tag))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

async fn finish(
    stream: &mut tonic::Streaming<reapi_core::proto::longrunning::Operation>,
) -> re::ExecuteResponse {
    within(PATIENCE, "operation", async {
        loop {
            let op = next_op(stream).await;
            if op.done {
                return response_of(&op);
            }
        }
    })
    .await
}

fn marks_dir(cluster: &Cluster) -> std::path::PathBuf {
    let marks = cluster.dir.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    // Actions run as this user or as `nobody`; both must append.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&marks, std::fs::Permissions::from_mode(0o777)).unwrap();
    marks
}

#[tokio::test]
async fn an_action_sent_to_every_scheduler_runs_once_at_its_home() {
    let cluster = Cluster::start(3).await;
    let marks = marks_dir(&cluster);
    let digest = cluster.upload(&counted(&marks, "once", 1.0)).await;
    let mut streams = Vec::new();
    for i in 0..3 {
        let mut exec = cluster.exec(i).await;
        streams.push(
            exec.execute(execute_request(&digest))
                .await
                .unwrap()
                .into_inner(),
        );
    }
    let mut names = Vec::new();
    for stream in &mut streams {
        let first = next_op(stream).await;
        names.push(first.name.clone());
        let response = if first.done {
            response_of(&first)
        } else {
            finish(stream).await
        };
        assert_eq!(response.result.unwrap().exit_code, 0);
    }
    assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
    assert_eq!(runs(&marks, "once"), 1, "the action ran more than once");
}

#[tokio::test]
async fn operations_are_found_from_any_scheduler() {
    let cluster = Cluster::start(3).await;
    let marks = marks_dir(&cluster);
    let digest = cluster.upload(&counted(&marks, "waited", 1.0)).await;
    let mut exec = cluster.exec(0).await;
    let mut stream = exec
        .execute(execute_request(&digest))
        .await
        .unwrap()
        .into_inner();
    let name = next_op(&mut stream).await.name;
    for i in 0..3 {
        let mut other = cluster.exec(i).await;
        let mut waiting = other
            .wait_execution(re::WaitExecutionRequest { name: name.clone() })
            .await
            .unwrap_or_else(|e| panic!("WaitExecution at scheduler {i}: {e:?}"))
            .into_inner();
        assert_eq!(finish(&mut waiting).await.result.unwrap().exit_code, 0);
        let channel = clients::connect(cluster.members[i].addr).await;
        let op = clients::ops(&channel)
            .get_operation(reapi_core::proto::longrunning::GetOperationRequest {
                name: name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(op.done);
        assert_eq!(stage_of(&op), Stage::Completed);
    }
    finish(&mut stream).await;
}

#[tokio::test]
async fn a_dead_homes_operations_are_not_found_and_its_actions_move() {
    let mut cluster = Cluster::start(3).await;
    let marks = marks_dir(&cluster);
    // Find an action homed on member 0, started through member 1.
    let mut homed = None;
    for n in 0..64 {
        let spec = counted(&marks, &format!("moved-{n}"), 30.0).do_not_cache();
        let digest = cluster.upload(&spec).await;
        let mut exec = cluster.exec(1).await;
        let mut stream = exec
            .execute(execute_request(&digest))
            .await
            .unwrap()
            .into_inner();
        let name = next_op(&mut stream).await.name;
        if cluster.home_of(&name) == 0 {
            homed = Some((spec, digest, name, stream));
            break;
        }
        let channel = clients::connect(cluster.members[1].addr).await;
        let _ = clients::ops(&channel)
            .cancel_operation(reapi_core::proto::longrunning::CancelOperationRequest { name })
            .await;
    }
    let (_spec, digest, name, mut stream) = homed.expect("no action homed on member 0 in 64 tries");
    cluster.kill(0);
    // The stream forwarded through member 1 breaks with UNAVAILABLE.
    let broken = within(PATIENCE, "the forwarded stream to break", async {
        loop {
            match stream.message().await {
                Ok(Some(op)) if !op.done => continue,
                other => return other,
            }
        }
    })
    .await;
    assert_eq!(broken.unwrap_err().code(), Code::Unavailable);
    // Its operation is unknown now, from any live scheduler.
    for i in 1..3 {
        let mut exec = cluster.exec(i).await;
        let err = exec
            .wait_execution(re::WaitExecutionRequest { name: name.clone() })
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
    }
    // Executed again, the action runs at a live home.
    let mut exec = cluster.exec(2).await;
    let mut again = exec
        .execute(execute_request(&digest))
        .await
        .unwrap()
        .into_inner();
    let name = next_op(&mut again).await.name;
    assert_ne!(cluster.home_of(&name), 0, "homed on the dead member");
    let channel = clients::connect(cluster.members[2].addr).await;
    clients::ops(&channel)
        .cancel_operation(reapi_core::proto::longrunning::CancelOperationRequest { name })
        .await
        .unwrap();
}
