//! The cluster's lease protocol (`reapi.cluster.v1.WorkerLink`) over real
//! gRPC on loopback: a server with no worker of its own, scripted workers
//! ([`FakeWorker`]) that link to it like remote ones, and real REAPI clients
//! whose Execute calls those workers run. Each test is one rule of the
//! protocol as both a worker and a client see it. The scheduler's rules
//! against in-process links are unit-tested in `src/scheduler/tests.rs`.
//! The last test is of the worker runtime's side of a link.
//!
//! Nothing here sleeps to synchronise: tests wait for a message, a stage or
//! a state. Where a test must show that something does *not* happen, it
//! arranges for the wrong outcome to be observable (a worker that would be
//! chosen first if the rule were broken), or, as a last resort, checks that
//! no message arrives for a short while (which can only pass wrongly, never
//! fail wrongly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reapi_core::cluster::messages::{
    scheduler_message, ExecutorGroup, LeaseAnswer, LeaseCancel, LeaseOffer, LeaseResult, Notice,
    StateReport, Welcome,
};
use reapi_core::cluster::service::WorkerLinkClient;
use reapi_core::cluster::{SchedulerMessage, WorkerMessage};
use reapi_core::proto::longrunning as lro;
use reapi_core::proto::remote_execution as re;
use reapi_core::proto::time::to_proto_duration;
use reapi_scheduler::SchedulerConfig;
use reapi_test_support::actions::{sh, ActionSpec};
use reapi_test_support::cas::upload;
use reapi_test_support::digests::{dig, PDigest};
use reapi_test_support::operations::{
    drain, execute_request, next_op, response_of, stage_of, stages, start_execute, Stage,
};
use reapi_test_support::server::full::{Config, Server};
use reapi_test_support::status::{assert_code, rpc_code};
use reapi_test_support::timestamps::{nanos, now_nanos};
use reapi_test_support::wait::{eventually, within, PATIENCE};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status, Streaming};

/// The heartbeat timeout of the tests about dead and silent workers.
const SHORT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a live fake worker reports under the short timeout.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(150);
/// How long "nothing arrives" is watched for, where nothing better exists.
const QUIET: Duration = Duration::from_millis(300);
/// A lease id no scheduler gives out in these tests: the barrier's probe.
const PROBE_LEASE: u64 = u64::MAX;

// -------------------------------------------------------------- server ---

/// A server without an in-process worker: only fake workers run actions.
async fn server() -> Server {
    Server::start_with(Config {
        in_process_worker: false,
        ..Default::default()
    })
    .await
}

/// [`server`] that declares a worker dead after [`SHORT_HEARTBEAT_TIMEOUT`]
/// of silence.
async fn server_with_short_heartbeat() -> Server {
    Server::start_with(Config {
        in_process_worker: false,
        scheduler: SchedulerConfig {
            heartbeat_interval: Duration::from_millis(250),
            heartbeat_timeout: SHORT_HEARTBEAT_TIMEOUT,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

// --------------------------------------------------------- fake worker ---

/// A pool of `executors` identical executors, `free` of them idle.
fn pool(executors: u32, free: u32) -> ExecutorGroup {
    ExecutorGroup {
        properties: Some(re::Platform {
            properties: vec![re::platform::Property {
                name: "OSFamily".into(),
                value: "linux".into(),
            }],
        }),
        executors,
        free,
    }
}

/// What a fake worker would put in its next report, and where it sends.
struct Shared {
    /// `None` once the worker has closed its side of the stream.
    outbound: Option<mpsc::UnboundedSender<WorkerMessage>>,
    report: StateReport,
    /// The pool of each running lease.
    pools_of: HashMap<u64, u32>,
}

impl Shared {
    fn send(&self, message: WorkerMessage) {
        let outbound = self.outbound.as_ref().expect("the link is closed");
        outbound.send(message).expect("the gRPC call is gone");
    }
}

/// A worker whose every move the test makes, over its own gRPC connection
/// to the server's `WorkerLink.Connect`. Its state (pools, running leases,
/// the last offer it handled) changes only when the test accepts, refuses
/// or finishes a lease or edits it with [`FakeWorker::update`]; reports
/// say exactly that state. Answers change the state and are sent under one
/// lock, so a heartbeat report never contradicts an answer.
struct FakeWorker {
    id: String,
    shared: Arc<Mutex<Shared>>,
    inbound: Streaming<SchedulerMessage>,
    /// The scheduler's welcome, once received.
    welcome: Option<Welcome>,
    heartbeat: Option<JoinHandle<()>>,
    _channel: Channel,
}

impl Drop for FakeWorker {
    fn drop(&mut self) {
        // The heartbeat task holds the sender: stop it, so the stream ends.
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }
}

impl FakeWorker {
    /// Opens a link and sends nothing yet. `pools` is what its reports
    /// will say.
    async fn open(server: &Server, id: &str, pools: Vec<ExecutorGroup>) -> FakeWorker {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connecting to the server");
        let (outbound, rx) = mpsc::unbounded_channel();
        let mut client = WorkerLinkClient::new(channel.clone());
        let inbound = within(
            PATIENCE,
            "WorkerLink.Connect",
            client.connect(UnboundedReceiverStream::new(rx)),
        )
        .await
        .expect("WorkerLink.Connect refused");
        FakeWorker {
            id: id.to_string(),
            shared: Arc::new(Mutex::new(Shared {
                outbound: Some(outbound),
                report: StateReport {
                    worker_id: id.to_string(),
                    address: String::new(),
                    pools,
                    running_leases: Vec::new(),
                    last_offer_seen: 0,
                    draining: false,
                    replica_space: 0,
                },
                pools_of: HashMap::new(),
            })),
            inbound,
            welcome: None,
            heartbeat: None,
            _channel: channel,
        }
    }

    /// Links with one pool of `executors`, all free, sends its first report
    /// and waits for the welcome, which must be the first message.
    async fn connect(server: &Server, id: &str, executors: u32) -> FakeWorker {
        FakeWorker::connect_with(server, id, vec![pool(executors, executors)]).await
    }

    /// [`FakeWorker::connect`] with the given pools.
    async fn connect_with(server: &Server, id: &str, pools: Vec<ExecutorGroup>) -> FakeWorker {
        let mut worker = FakeWorker::open(server, id, pools).await;
        worker.report();
        match worker.next().await.kind {
            Some(scheduler_message::Kind::Welcome(welcome)) => worker.welcome = Some(welcome),
            other => panic!("worker {id}: expected a welcome first, got {other:?}"),
        }
        worker
    }

    fn send(&self, message: WorkerMessage) {
        self.shared.lock().unwrap().send(message);
    }

    /// Sends a state report of the worker's current state.
    fn report(&self) {
        let shared = self.shared.lock().unwrap();
        shared.send(WorkerMessage::report(shared.report.clone()));
    }

    /// Changes what the next reports say (without sending one).
    fn update(&self, change: impl FnOnce(&mut StateReport)) {
        change(&mut self.shared.lock().unwrap().report);
    }

    /// Reports every `every` from now on, like a real worker's heartbeat.
    fn heartbeat(&mut self, every: Duration) {
        let shared = self.shared.clone();
        self.heartbeat = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let shared = shared.lock().unwrap();
                let Some(outbound) = &shared.outbound else {
                    return;
                };
                if outbound
                    .send(WorkerMessage::report(shared.report.clone()))
                    .is_err()
                {
                    return;
                }
            }
        }));
    }

    /// Stops the heartbeat: the worker says nothing more unless told to.
    fn stop_heartbeat(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }

    /// Accepts an offer: the lease runs on its pool from now on.
    fn accept(&self, offer: &LeaseOffer) {
        let mut shared = self.shared.lock().unwrap();
        let report = &mut shared.report;
        report.last_offer_seen = report.last_offer_seen.max(offer.lease_id);
        report.running_leases.push(offer.lease_id);
        let pool = &mut report.pools[offer.pool as usize];
        pool.free = pool
            .free
            .checked_sub(1)
            .expect("the test accepted an offer with no free executor");
        shared.pools_of.insert(offer.lease_id, offer.pool);
        shared.send(WorkerMessage::answer(LeaseAnswer {
            lease_id: offer.lease_id,
            accepted: true,
            reason: String::new(),
        }));
    }

    /// Refuses an offer (its state is otherwise unchanged).
    fn refuse(&self, offer: &LeaseOffer, reason: &str) {
        let mut shared = self.shared.lock().unwrap();
        let report = &mut shared.report;
        report.last_offer_seen = report.last_offer_seen.max(offer.lease_id);
        shared.send(WorkerMessage::answer(LeaseAnswer {
            lease_id: offer.lease_id,
            accepted: false,
            reason: reason.into(),
        }));
    }

    /// Sends the result of a lease; if the worker was running it, its
    /// executor is free again.
    fn finish(&self, lease_id: u64, result: re::ActionResult) {
        self.end(LeaseResult {
            lease_id,
            result: Some(result),
            timed_out: false,
            error: None,
        });
    }

    /// Sends how a lease ended, whatever that was; if the worker was
    /// running it, its executor is free again.
    fn end(&self, ended: LeaseResult) {
        let mut shared = self.shared.lock().unwrap();
        let lease_id = ended.lease_id;
        shared.send(WorkerMessage::result(ended));
        if let Some(pool) = shared.pools_of.remove(&lease_id) {
            let report = &mut shared.report;
            report.running_leases.retain(|l| *l != lease_id);
            report.pools[pool as usize].free += 1;
        }
    }

    /// Stops running a lease without a word (as if its run vanished): only
    /// the next report tells.
    fn forget(&self, lease_id: u64) {
        let mut shared = self.shared.lock().unwrap();
        let pool = shared.pools_of.remove(&lease_id).expect("a running lease");
        let report = &mut shared.report;
        report.running_leases.retain(|l| *l != lease_id);
        report.pools[pool as usize].free += 1;
    }

    /// Closes the worker's side of the stream, as a worker process does
    /// when it exits; the scheduler's side stays readable.
    fn close(&mut self) {
        self.stop_heartbeat();
        self.shared.lock().unwrap().outbound = None;
    }

    /// The next message from the scheduler, an error, or `None` when the
    /// scheduler ended the stream.
    /// The list of cluster CAS members, sent whenever it changes, is
    /// skipped: these workers hold no replicas.
    async fn next_or_end(&mut self) -> Option<Result<SchedulerMessage, Status>> {
        let what = format!("worker {}: the next scheduler message", self.id);
        loop {
            let message = within(PATIENCE, &what, self.inbound.message())
                .await
                .transpose();
            if let Some(Ok(SchedulerMessage {
                kind: Some(scheduler_message::Kind::StorageMembers(_)),
            })) = message
            {
                continue;
            }
            return message;
        }
    }

    async fn next(&mut self) -> SchedulerMessage {
        match self.next_or_end().await {
            Some(Ok(message)) => message,
            Some(Err(status)) => panic!("worker {}: the link failed: {status:?}", self.id),
            None => panic!("worker {}: the scheduler ended the link", self.id),
        }
    }

    async fn expect_offer(&mut self) -> LeaseOffer {
        match self.next().await.kind {
            Some(scheduler_message::Kind::Offer(offer)) => offer,
            other => panic!("worker {}: expected an offer, got {other:?}", self.id),
        }
    }

    async fn expect_cancel(&mut self) -> LeaseCancel {
        match self.next().await.kind {
            Some(scheduler_message::Kind::Cancel(cancel)) => cancel,
            other => panic!("worker {}: expected a cancel, got {other:?}", self.id),
        }
    }

    /// The next message must be a notice with `code`; returns it.
    async fn expect_notice(&mut self, code: Code) -> Notice {
        match self.next().await.kind {
            Some(scheduler_message::Kind::Notice(notice)) => {
                let status = notice.status.as_ref().expect("a notice has a status");
                assert_eq!(
                    Code::from_i32(status.code),
                    code,
                    "worker {}: notice {notice:?}",
                    self.id
                );
                assert!(!status.message.is_empty(), "notice without a message");
                notice
            }
            other => panic!(
                "worker {}: expected a {code:?} notice, got {other:?}",
                self.id
            ),
        }
    }

    /// The scheduler must end the stream with an error; returns it.
    async fn expect_error(&mut self) -> Status {
        match self.next_or_end().await {
            Some(Err(status)) => status,
            Some(Ok(message)) => panic!(
                "worker {}: expected the link to fail, got {message:?}",
                self.id
            ),
            None => panic!(
                "worker {}: expected the link to fail, it ended cleanly",
                self.id
            ),
        }
    }

    /// The scheduler must end the stream (it dropped the worker) without
    /// sending anything more.
    async fn expect_end(&mut self) {
        match self.next_or_end().await {
            None => {}
            Some(Err(status)) if status.code() == Code::Ok => {}
            other => panic!(
                "worker {}: expected the link to end, got {other:?}",
                self.id
            ),
        }
    }

    /// Nothing arrives for [`QUIET`]. Only for what nothing else shows.
    async fn expect_quiet(&mut self) {
        if let Ok(message) = tokio::time::timeout(QUIET, self.inbound.message()).await {
            panic!("worker {}: unexpected {message:?}", self.id);
        }
    }

    /// Waits until the scheduler has applied everything this worker sent
    /// so far: messages of one link are handled in order, and an answer for
    /// a lease nobody holds is answered with a notice at once.
    async fn barrier(&mut self) {
        self.send(WorkerMessage::answer(LeaseAnswer {
            lease_id: PROBE_LEASE,
            accepted: true,
            reason: "barrier".into(),
        }));
        let notice = self.expect_notice(Code::NotFound).await;
        assert_eq!(notice.lease_id, PROBE_LEASE);
    }
}

// ------------------------------------------------------------- clients ---

/// An Execute in progress, seen by its client.
struct Client {
    digest: PDigest,
    stream: Streaming<lro::Operation>,
    name: String,
    /// Every operation read so far.
    ops: Vec<lro::Operation>,
}

impl Client {
    /// Uploads and executes `spec`; the first operation must be QUEUED.
    async fn execute(server: &Server, spec: &ActionSpec) -> Client {
        let digest = server.upload_action(spec).await;
        let mut stream = start_execute(&mut server.exec(), execute_request(&digest))
            .await
            .expect("Execute refused");
        let first = next_op(&mut stream).await;
        assert_eq!(stage_of(&first), Stage::Queued, "{first:?}");
        assert!(!first.done);
        Client {
            digest,
            stream,
            name: first.name.clone(),
            ops: vec![first],
        }
    }

    /// The next operation on the stream; it must be at `stage`, not done.
    async fn expect_next(&mut self, stage: Stage) {
        let op = next_op(&mut self.stream).await;
        assert_eq!(op.name, self.name);
        assert_eq!(stage_of(&op), stage, "{op:?}");
        assert!(!op.done, "{op:?}");
        self.ops.push(op);
    }

    /// Reads until an operation at `stage` arrives (earlier stages may be
    /// repeated on the way; the operation must not finish first).
    async fn wait_stage(&mut self, stage: Stage) {
        loop {
            let op = next_op(&mut self.stream).await;
            assert_eq!(op.name, self.name);
            assert!(!op.done, "finished while waiting for {stage:?}: {op:?}");
            let reached = stage_of(&op) == stage;
            self.ops.push(op);
            if reached {
                return;
            }
        }
    }

    /// Reads to the end of the stream; the final ExecuteResponse.
    async fn finished(&mut self) -> re::ExecuteResponse {
        loop {
            let op = next_op(&mut self.stream).await;
            assert_eq!(op.name, self.name);
            let done = op.done;
            self.ops.push(op);
            if done {
                break;
            }
        }
        let rest = drain(&mut self.stream).await.expect("the stream failed");
        assert!(rest.is_empty(), "operations after the last: {rest:?}");
        let last = self.ops.last().unwrap();
        assert_eq!(stage_of(last), Stage::Completed);
        response_of(last)
    }

    /// The stages the client saw, with repeats folded.
    fn stages(&self) -> Vec<Stage> {
        let mut stages = stages(&self.ops);
        stages.dedup();
        stages
    }
}

/// An ActionResult whose stdout is `stdout`, uploaded first as a worker
/// does (the action cache serves a result only when its outputs exist).
async fn uploaded_result(server: &Server, exit_code: i32, stdout: &str) -> re::ActionResult {
    upload(&mut server.cas(), "", &[stdout.as_bytes().to_vec()]).await;
    re::ActionResult {
        exit_code,
        stdout_digest: Some(dig(stdout.as_bytes())),
        ..Default::default()
    }
}

/// A new worker with many free executors (so it is offered work before
/// any other) takes a new action and completes it: whatever a test did
/// before left the scheduler working.
async fn a_fresh_worker_still_completes_work(server: &Server, tag: &str) {
    let mut worker = FakeWorker::connect(server, &format!("healthy-{tag}"), 64).await;
    // Alive under any heartbeat timeout.
    worker.heartbeat(HEARTBEAT_EVERY);
    let mut client = Client::execute(server, &sh(&format!("echo healthy {tag}"))).await;
    let offer = worker.expect_offer().await;
    assert_eq!(offer.action_digest.as_ref(), Some(&client.digest));
    worker.accept(&offer);
    client.wait_stage(Stage::Executing).await;
    let result = uploaded_result(server, 0, &format!("healthy {tag}\n")).await;
    worker.finish(offer.lease_id, result.clone());
    let response = client.finished().await;
    assert_eq!(response.result.as_ref(), Some(&result), "{response:?}");
    assert_eq!(rpc_code(&response.status), Code::Ok);
}

fn assert_invalid(status: &Status, says: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(says),
        "{:?} does not say {says:?}",
        status.message()
    );
}

fn notice_says(notice: &Notice, says: &str) {
    let message = &notice.status.as_ref().unwrap().message;
    assert!(message.contains(says), "{message:?} does not say {says:?}");
}

// --------------------------------------------------------------- tests ---

/// The first report is answered with a welcome naming the scheduler and
/// its heartbeat settings; a worker that keeps reporting outlives the
/// heartbeat timeout, while a silent one beside it is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_welcomed_and_its_reports_keep_it_alive() {
    let server = server_with_short_heartbeat().await;
    let linked = Instant::now();
    let mut alive = FakeWorker::connect(&server, "alive", 1).await;
    let welcome = alive.welcome.clone().unwrap();
    assert_eq!(welcome.scheduler_id, server.scheduler.id());
    assert_eq!(
        welcome.heartbeat_interval,
        Some(to_proto_duration(Duration::from_millis(250)))
    );
    assert_eq!(
        welcome.heartbeat_timeout,
        Some(to_proto_duration(SHORT_HEARTBEAT_TIMEOUT))
    );
    alive.heartbeat(HEARTBEAT_EVERY);
    let mut silent = FakeWorker::connect(&server, "silent", 1).await;
    let summary = server.scheduler.executor_summary();
    assert_eq!(
        (summary.workers, summary.executors, summary.free),
        (2, 2, 2)
    );

    // The silent worker is the clock: once it is dropped, the heartbeat
    // timeout has passed for both.
    silent.expect_end().await;
    assert!(linked.elapsed() >= SHORT_HEARTBEAT_TIMEOUT);
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.executors), (1, 1), "{summary:?}");

    // The one that reported is still linked and still takes work.
    let mut client = Client::execute(&server, &sh("echo alive")).await;
    let offer = alive.expect_offer().await;
    alive.accept(&offer);
    client.wait_stage(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "alive\n").await;
    alive.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result));
    assert!(linked.elapsed() >= SHORT_HEARTBEAT_TIMEOUT);
    assert_eq!(server.scheduler.executor_summary().workers, 1);
}

/// One action, one lease: the offer carries the action, the client sees
/// QUEUED until the worker accepts, EXECUTING until it reports, then the
/// worker's result, which is cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_runs_and_its_result_completes_the_operation() {
    let server = server().await;
    let mut worker = FakeWorker::connect(&server, "w1", 1).await;
    let spec = sh("echo leased");
    let built = spec.build();
    let before = SystemTime::now();
    let mut client = Client::execute(&server, &spec).await;
    assert_eq!(client.digest, built.action_digest);
    let home = format!("operations/{}/", server.scheduler.id());
    assert!(client.name.starts_with(&home), "{}", client.name);

    let offer = worker.expect_offer().await;
    assert!(offer.lease_id > 0);
    assert_eq!(offer.pool, 0);
    assert_eq!(offer.instance_name, "");
    assert_eq!(offer.action_digest.as_ref(), Some(&built.action_digest));
    assert_eq!(offer.action.as_ref(), Some(&built.action));
    assert_eq!(offer.command.as_ref(), Some(&built.command));
    let default_timeout = server.scheduler.config().default_timeout;
    assert_eq!(offer.timeout, Some(to_proto_duration(default_timeout)));
    let deadline = nanos(&offer.deadline);
    let earliest = (before + default_timeout).duration_since(std::time::UNIX_EPOCH);
    assert!(deadline >= earliest.unwrap().as_nanos(), "{offer:?}");
    assert!(nanos(&offer.queued_at) <= now_nanos());
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.free, summary.leases), (0, 1), "{summary:?}");

    worker.accept(&offer);
    client.expect_next(Stage::Executing).await;

    let result = uploaded_result(&server, 0, "leased\n").await;
    worker.finish(offer.lease_id, result.clone());
    worker.report();
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    assert!(!response.cached_result);
    assert_eq!(response.result.as_ref(), Some(&result));
    assert_eq!(
        client.stages(),
        [Stage::Queued, Stage::Executing, Stage::Completed]
    );
    assert_eq!(
        server.cached_result(&client.digest).await.expect("cached"),
        result
    );
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.free, summary.leases), (1, 0), "{summary:?}");

    // The same action again is a cache hit: no offer.
    let again = server
        .run_request(execute_request(&client.digest))
        .await
        .response;
    assert!(again.cached_result);
    assert_eq!(again.result, Some(result));
    worker.expect_quiet().await;
}

/// A refused lease goes back first in line, but the refusing pool is
/// offered nothing until its worker reports again; refusals are not
/// losses, so more of them than `max_attempts` do not fail the action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lease_is_offered_again_after_the_next_report() {
    let server = server().await;
    let max_attempts = server.scheduler.config().max_attempts;
    let mut worker = FakeWorker::connect(&server, "w1", 1).await;
    let mut client = Client::execute(&server, &sh("echo refused")).await;
    let mut last_lease = 0;
    for attempt in 0..=max_attempts {
        let offer = worker.expect_offer().await;
        assert_eq!(offer.action_digest.as_ref(), Some(&client.digest));
        assert!(offer.lease_id > last_lease, "lease ids grow");
        last_lease = offer.lease_id;
        worker.refuse(&offer, "the pool is full");
        if attempt == 0 {
            // Back in the queue, and not offered while the pool counts 0.
            let requeued = eventually(PATIENCE, || server.scheduler.queue_len() == 1).await;
            assert!(requeued, "the refused action was not requeued");
            worker.expect_quiet().await;
        }
        worker.report();
    }
    let offer = worker.expect_offer().await;
    assert_eq!(offer.action_digest.as_ref(), Some(&client.digest));
    worker.accept(&offer);
    client.wait_stage(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "refused, then ran\n").await;
    worker.finish(offer.lease_id, result.clone());
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    assert_eq!(response.result, Some(result));
    // Never EXECUTING before it was accepted.
    assert_eq!(
        client.stages(),
        [Stage::Queued, Stage::Executing, Stage::Completed]
    );
}

/// A lease one worker refuses goes at once to another with room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_lease_goes_to_another_worker() {
    let server = server().await;
    // Equally free: the first linked is offered first.
    let mut first = FakeWorker::connect(&server, "first", 1).await;
    let mut second = FakeWorker::connect(&server, "second", 1).await;
    let mut client = Client::execute(&server, &sh("echo elsewhere")).await;
    let refused = first.expect_offer().await;
    first.refuse(&refused, "draining");
    let offer = second.expect_offer().await;
    assert_eq!(offer.action_digest, refused.action_digest);
    assert!(offer.lease_id > refused.lease_id);
    second.accept(&offer);
    client.wait_stage(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "elsewhere\n").await;
    second.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result));
    // The refusing worker, once it reports, is idle: nothing is queued.
    first.report();
    first.barrier().await;
    assert_eq!(server.scheduler.queue_len(), 0);
}

/// A report that has seen a lease but no longer lists it loses the lease:
/// the action goes to another worker. The first worker's late result is
/// refused with NOT_FOUND and does not complete the operation; the second
/// worker's result does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_for_a_lease_lost_in_a_report_is_dropped() {
    let server = server().await;
    let mut a = FakeWorker::connect(&server, "a", 1).await;
    let mut client = Client::execute(&server, &sh("echo twice")).await;
    let lost = a.expect_offer().await;
    a.accept(&lost);
    client.expect_next(Stage::Executing).await;
    let mut b = FakeWorker::connect(&server, "b", 1).await;

    // `a` says it has handled the lease and runs nothing (its executor is
    // busy with another scheduler's work, so it is offered nothing).
    a.forget(lost.lease_id);
    a.update(|report| report.pools[0].free = 0);
    a.report();
    client.expect_next(Stage::Queued).await;
    let offer = b.expect_offer().await;
    assert_eq!(offer.action_digest, lost.action_digest);
    assert!(offer.lease_id > lost.lease_id);
    b.accept(&offer);
    client.expect_next(Stage::Executing).await;

    let from_a = uploaded_result(&server, 0, "from a\n").await;
    a.finish(lost.lease_id, from_a);
    let notice = a.expect_notice(Code::NotFound).await;
    assert_eq!(notice.lease_id, lost.lease_id);

    let from_b = uploaded_result(&server, 0, "from b\n").await;
    b.finish(offer.lease_id, from_b.clone());
    let response = client.finished().await;
    assert_eq!(response.result.as_ref(), Some(&from_b), "{response:?}");
    assert_eq!(server.cached_result(&client.digest).await.unwrap(), from_b);
    assert_eq!(
        client.stages(),
        [
            Stage::Queued,
            Stage::Executing,
            Stage::Queued,
            Stage::Executing,
            Stage::Completed
        ]
    );
}

/// CancelOperation on a running operation: the client sees CANCELLED, the
/// worker is told to stop the lease, and its executor counts as busy until
/// the worker says the run ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_operation_cancels_its_lease() {
    let server = server().await;
    let mut a = FakeWorker::connect(&server, "a", 1).await;
    let mut client = Client::execute(&server, &sh("sleep 1000")).await;
    let offer = a.expect_offer().await;
    a.accept(&offer);
    client.expect_next(Stage::Executing).await;

    server
        .ops()
        .cancel_operation(lro::CancelOperationRequest {
            name: client.name.clone(),
        })
        .await
        .expect("CancelOperation");
    let cancel = a.expect_cancel().await;
    assert_eq!(cancel.lease_id, offer.lease_id);
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Cancelled, "{response:?}");
    assert!(response.result.is_none());

    // `a`'s executor is still busy: the next action goes to `b`, though
    // `a`, linked first, would be offered it if it were free.
    let mut b = FakeWorker::connect(&server, "b", 1).await;
    let mut second = Client::execute(&server, &sh("echo second")).await;
    let to_b = b.expect_offer().await;
    assert_eq!(to_b.action_digest.as_ref(), Some(&second.digest));
    b.accept(&to_b);

    // `a` stops the run and says so; the result of a cancelled lease is
    // dropped without a notice, and the executor is free again.
    let stopped = uploaded_result(&server, 137, "killed\n").await;
    a.finish(offer.lease_id, stopped);
    let mut third = Client::execute(&server, &sh("echo third")).await;
    let to_a = a.expect_offer().await;
    assert_eq!(to_a.action_digest.as_ref(), Some(&third.digest));
    a.accept(&to_a);
    let result = uploaded_result(&server, 0, "third\n").await;
    a.finish(to_a.lease_id, result.clone());
    assert_eq!(third.finished().await.result, Some(result));
    let result = uploaded_result(&server, 0, "second\n").await;
    b.finish(to_b.lease_id, result.clone());
    assert_eq!(second.finished().await.result, Some(result));
    // The cancelled action was not cached.
    assert_code(
        server.cached_result(&client.digest).await,
        Code::NotFound,
        "GetActionResult of the cancelled action",
    );
}

/// A worker whose stream ends loses its lease: the client sees QUEUED
/// again, another worker gets the action, and its result completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_stream_ends_loses_its_lease_to_another() {
    let server = server().await;
    let mut a = FakeWorker::connect(&server, "a", 1).await;
    let mut client = Client::execute(&server, &sh("echo survivor")).await;
    let first = a.expect_offer().await;
    a.accept(&first);
    client.expect_next(Stage::Executing).await;
    let mut b = FakeWorker::connect(&server, "b", 1).await;

    a.close();
    a.expect_end().await;
    client.expect_next(Stage::Queued).await;
    let offer = b.expect_offer().await;
    assert_eq!(offer.action_digest, first.action_digest);
    assert!(offer.lease_id > first.lease_id);
    b.accept(&offer);
    client.expect_next(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "survivor\n").await;
    b.finish(offer.lease_id, result.clone());
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    assert_eq!(response.result.as_ref(), Some(&result));
    assert_eq!(server.cached_result(&client.digest).await.unwrap(), result);
    assert_eq!(server.scheduler.executor_summary().workers, 1);
}

/// A worker that accepted a lease and then sends nothing for the
/// heartbeat timeout is dead: its stream is ended and the lease goes to a
/// worker that kept reporting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_worker_is_declared_dead_and_its_lease_moves() {
    let server = server_with_short_heartbeat().await;
    let mut quiet = FakeWorker::connect(&server, "quiet", 1).await;
    quiet.heartbeat(HEARTBEAT_EVERY);
    let mut client = Client::execute(&server, &sh("echo moved")).await;
    let first = quiet.expect_offer().await;
    // From its answer on, `quiet` keeps its stream open but says nothing.
    quiet.stop_heartbeat();
    quiet.accept(&first);
    let last_word = Instant::now();
    client.expect_next(Stage::Executing).await;
    let mut chatty = FakeWorker::connect(&server, "chatty", 1).await;
    chatty.heartbeat(HEARTBEAT_EVERY);

    client.expect_next(Stage::Queued).await;
    assert!(last_word.elapsed() >= SHORT_HEARTBEAT_TIMEOUT);
    quiet.expect_end().await;
    let offer = chatty.expect_offer().await;
    assert_eq!(offer.action_digest, first.action_digest);
    assert!(offer.lease_id > first.lease_id);
    chatty.accept(&offer);
    client.expect_next(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "moved\n").await;
    chatty.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result));
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.leases), (1, 0), "{summary:?}");
}

/// An action whose worker dies `max_attempts` (5) times fails with
/// UNAVAILABLE saying so; each loss sends it back to QUEUED first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_lost_five_times_fails_with_unavailable() {
    let server = server().await;
    assert_eq!(server.scheduler.config().max_attempts, 5);
    let spec = sh("echo doomed");
    let mut client = Client::execute(&server, &spec).await;
    for attempt in 1..=5 {
        let mut worker = FakeWorker::connect(&server, &format!("doomed-{attempt}"), 1).await;
        let offer = worker.expect_offer().await;
        assert_eq!(offer.action_digest.as_ref(), Some(&client.digest));
        worker.accept(&offer);
        client.expect_next(Stage::Executing).await;
        // The worker process dies: its connection goes away.
        drop(worker);
        if attempt < 5 {
            client.expect_next(Stage::Queued).await;
        }
    }
    let response = client.finished().await;
    assert_eq!(
        rpc_code(&response.status),
        Code::Unavailable,
        "{response:?}"
    );
    let message = &response.status.as_ref().unwrap().message;
    assert!(message.contains("5 attempts"), "{message:?}");
    assert!(response.result.is_none());
    assert_code(
        server.cached_result(&client.digest).await,
        Code::NotFound,
        "GetActionResult of the failed action",
    );
    assert_eq!(server.scheduler.queue_len(), 0);
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.leases), (0, 0), "{summary:?}");
}

/// A draining worker is offered nothing (even with the most free
/// executors) but finishes what it runs; after a goodbye its stream's end
/// is a clean departure: nothing is requeued, and no worker is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_worker_gets_no_offers_and_leaves_cleanly() {
    let server = server().await;
    let mut drainer = FakeWorker::connect(&server, "drainer", 4).await;
    let mut running = Client::execute(&server, &sh("echo before the drain")).await;
    let lease = drainer.expect_offer().await;
    drainer.accept(&lease);
    running.expect_next(Stage::Executing).await;

    drainer.update(|report| report.draining = true);
    drainer.report();
    drainer.barrier().await;

    // 3 free executors against 1: the drainer would be offered first.
    let mut other = FakeWorker::connect(&server, "other", 1).await;
    let mut later = Client::execute(&server, &sh("echo during the drain")).await;
    let offer = other.expect_offer().await;
    assert_eq!(offer.action_digest.as_ref(), Some(&later.digest));
    other.accept(&offer);
    later.expect_next(Stage::Executing).await;

    let result = uploaded_result(&server, 0, "before the drain\n").await;
    drainer.finish(lease.lease_id, result.clone());
    drainer.report();
    let response = running.finished().await;
    assert_eq!(response.result.as_ref(), Some(&result), "{response:?}");
    drainer.send(WorkerMessage::goodbye("drained"));
    drainer.close();
    // Nothing more came for it: no offer, no cancel, just the end.
    drainer.expect_end().await;
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.leases), (1, 1), "{summary:?}");

    let result = uploaded_result(&server, 0, "during the drain\n").await;
    other.finish(offer.lease_id, result.clone());
    assert_eq!(later.finished().await.result, Some(result));
    other.update(|report| report.draining = true);
    other.report();
    other.send(WorkerMessage::goodbye("drained"));
    other.close();
    other.expect_end().await;

    // Neither operation went back to the queue.
    let stages = [Stage::Queued, Stage::Executing, Stage::Completed];
    assert_eq!(running.stages(), stages);
    assert_eq!(later.stages(), stages);
    assert_eq!(server.scheduler.queue_len(), 0);
    assert_eq!(
        server.scheduler.executor_summary(),
        reapi_scheduler::scheduler::ExecutorSummary::default(),
        "no worker, executor or lease is left"
    );
}

/// A cancelled lease can also end with a report that no longer lists it:
/// the operation stays CANCELLED (it is not requeued), and the executor is
/// free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_lease_ends_with_a_report_without_it() {
    let server = server().await;
    let mut worker = FakeWorker::connect(&server, "w", 1).await;
    let mut client = Client::execute(&server, &sh("sleep 999")).await;
    let offer = worker.expect_offer().await;
    worker.accept(&offer);
    client.expect_next(Stage::Executing).await;
    server
        .ops()
        .cancel_operation(lro::CancelOperationRequest {
            name: client.name.clone(),
        })
        .await
        .expect("CancelOperation");
    assert_eq!(worker.expect_cancel().await.lease_id, offer.lease_id);
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Cancelled);
    assert_eq!(server.scheduler.executor_summary().leases, 1);

    worker.forget(offer.lease_id);
    worker.report();
    let mut next = Client::execute(&server, &sh("echo next")).await;
    let to_worker = worker.expect_offer().await;
    assert_eq!(to_worker.action_digest.as_ref(), Some(&next.digest));
    worker.accept(&to_worker);
    let result = uploaded_result(&server, 0, "next\n").await;
    worker.finish(to_worker.lease_id, result.clone());
    assert_eq!(next.finished().await.result, Some(result));
    // The cancelled operation stayed cancelled.
    let op = server
        .ops()
        .get_operation(lro::GetOperationRequest {
            name: client.name.clone(),
        })
        .await
        .expect("GetOperation")
        .into_inner();
    assert_eq!(rpc_code(&response_of(&op).status), Code::Cancelled);
    assert_eq!(server.scheduler.queue_len(), 0);
}

/// A running operation whose clients all went away is cancelled after the
/// orphan timeout, and its worker is told to stop the lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_no_client_watches_has_its_lease_cancelled() {
    let server = Server::start_with(Config {
        in_process_worker: false,
        scheduler: SchedulerConfig {
            heartbeat_timeout: SHORT_HEARTBEAT_TIMEOUT,
            orphan_timeout: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut worker = FakeWorker::connect(&server, "w", 1).await;
    worker.heartbeat(HEARTBEAT_EVERY);
    let mut client = Client::execute(&server, &sh("sleep 998")).await;
    let offer = worker.expect_offer().await;
    worker.accept(&offer);
    client.expect_next(Stage::Executing).await;
    let name = client.name.clone();
    drop(client);

    let cancel = worker.expect_cancel().await;
    assert_eq!(cancel.lease_id, offer.lease_id);
    assert!(cancel.reason.contains("no client"), "{cancel:?}");
    let op = server
        .ops()
        .get_operation(lro::GetOperationRequest { name })
        .await
        .expect("GetOperation")
        .into_inner();
    assert_eq!(rpc_code(&response_of(&op).status), Code::Cancelled);
}

/// How a lease ended decides the operation's outcome: an error fails it
/// (UNAVAILABLE excepted: the worker could not reach what the run needed,
/// so the action is requeued), a timeout is DEADLINE_EXCEEDED with the
/// result, a failing exit code is a result; only a clean success is
/// cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn how_a_lease_ended_decides_the_outcome() {
    let server = server().await;
    let mut worker = FakeWorker::connect(&server, "w", 1).await;
    let error = |code: Code, message: &str| LeaseResult {
        error: Some(reapi_core::proto::rpc::Status {
            code: code as i32,
            message: message.into(),
            details: vec![],
        }),
        ..Default::default()
    };
    let ran = uploaded_result(&server, 0, "ran\n").await;
    let failed = uploaded_result(&server, 3, "failed\n").await;
    let cases: Vec<(&str, LeaseResult, Code, Option<&re::ActionResult>)> = vec![
        (
            "internal",
            error(Code::Internal, "the sandbox broke"),
            Code::Internal,
            None,
        ),
        (
            "missing input",
            error(Code::FailedPrecondition, "input vanished"),
            Code::FailedPrecondition,
            None,
        ),
        (
            "timed out",
            LeaseResult {
                result: Some(ran.clone()),
                timed_out: true,
                ..Default::default()
            },
            Code::DeadlineExceeded,
            Some(&ran),
        ),
        (
            "exit 3",
            LeaseResult {
                result: Some(failed.clone()),
                ..Default::default()
            },
            Code::Ok,
            Some(&failed),
        ),
        ("empty", LeaseResult::default(), Code::Internal, None),
    ];
    for (what, mut ended, code, result) in cases {
        let mut client = Client::execute(&server, &sh(&format!("echo {what}"))).await;
        let offer = worker.expect_offer().await;
        worker.accept(&offer);
        client.expect_next(Stage::Executing).await;
        ended.lease_id = offer.lease_id;
        worker.end(ended);
        let response = client.finished().await;
        assert_eq!(rpc_code(&response.status), code, "{what}: {response:?}");
        assert_eq!(response.result.as_ref(), result, "{what}");
        assert_code(
            server.cached_result(&client.digest).await,
            Code::NotFound,
            &format!("{what}: GetActionResult"),
        );
    }

    // UNAVAILABLE: back to the queue, and offered again.
    let mut client = Client::execute(&server, &sh("echo unavailable")).await;
    let first = worker.expect_offer().await;
    worker.accept(&first);
    client.expect_next(Stage::Executing).await;
    let mut ended = error(Code::Unavailable, "the CAS is unreachable");
    ended.lease_id = first.lease_id;
    worker.end(ended);
    client.expect_next(Stage::Queued).await;
    let again = worker.expect_offer().await;
    assert_eq!(again.action_digest, first.action_digest);
    assert!(again.lease_id > first.lease_id);
    worker.accept(&again);
    worker.finish(again.lease_id, ran.clone());
    let response = client.finished().await;
    assert_eq!(rpc_code(&response.status), Code::Ok, "{response:?}");
    assert_eq!(server.cached_result(&client.digest).await.unwrap(), ran);
}

/// A worker that links again under the same id replaces its old link: the
/// old stream is ended, the leases it held are requeued, and the new link
/// is offered work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_links_again_loses_the_leases_of_its_old_link() {
    let server = server().await;
    let mut old = FakeWorker::connect(&server, "phoenix", 1).await;
    let mut client = Client::execute(&server, &sh("echo reborn")).await;
    let first = old.expect_offer().await;
    old.accept(&first);
    client.expect_next(Stage::Executing).await;

    // The worker restarted: a new link, nothing running.
    let mut new = FakeWorker::connect(&server, "phoenix", 1).await;
    old.expect_end().await;
    client.expect_next(Stage::Queued).await;
    let offer = new.expect_offer().await;
    assert_eq!(offer.action_digest, first.action_digest);
    assert!(offer.lease_id > first.lease_id);
    new.accept(&offer);
    client.expect_next(Stage::Executing).await;
    let result = uploaded_result(&server, 0, "reborn\n").await;
    new.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result));
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.leases), (1, 0), "{summary:?}");
}

/// An offer names the pool (index in the worker's report) whose
/// properties the action asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_names_the_pool_that_can_run_the_action() {
    let server = server().await;
    let labelled = |label: &str, executors: u32| {
        let mut group = pool(executors, executors);
        let platform = group.properties.as_mut().unwrap();
        platform.properties.push(re::platform::Property {
            name: "pool".into(),
            value: label.into(),
        });
        group
    };
    let mut worker = FakeWorker::connect_with(
        &server,
        "pools",
        vec![labelled("small", 1), labelled("big", 2)],
    )
    .await;
    let mut big = Client::execute(&server, &sh("echo big").platform("pool", "big")).await;
    let to_big = worker.expect_offer().await;
    assert_eq!(to_big.action_digest.as_ref(), Some(&big.digest));
    assert_eq!(to_big.pool, 1);
    let mut small = Client::execute(&server, &sh("echo small").platform("pool", "small")).await;
    let to_small = worker.expect_offer().await;
    assert_eq!(to_small.action_digest.as_ref(), Some(&small.digest));
    assert_eq!(to_small.pool, 0);
    worker.accept(&to_big);
    worker.accept(&to_small);
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.executors, summary.free), (3, 1), "{summary:?}");

    // Nothing offers `pool=huge`: refused at once, before any queueing.
    let digest = server
        .upload_action(&sh("echo huge").platform("pool", "huge"))
        .await;
    let refused = start_execute(&mut server.exec(), execute_request(&digest)).await;
    let status = assert_code(refused.map(|_| ()), Code::FailedPrecondition, "Execute");
    assert!(status.message().contains("pool"), "{status:?}");

    for (offer, client, stdout) in [
        (&to_big, &mut big, "big\n"),
        (&to_small, &mut small, "small\n"),
    ] {
        let result = uploaded_result(&server, 0, stdout).await;
        worker.finish(offer.lease_id, result.clone());
        assert_eq!(client.finished().await.result, Some(result));
    }
    worker.report();
    worker.barrier().await;
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.free, summary.leases), (3, 0), "{summary:?}");
}

// ----------------------------------------------------------- bad input ---

/// A link must start with a state report: anything else ends it with
/// INVALID_ARGUMENT and registers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_message_must_be_a_state_report() {
    let server = server().await;
    let firsts = [
        (
            "an answer",
            WorkerMessage::answer(LeaseAnswer {
                lease_id: 1,
                accepted: true,
                reason: String::new(),
            }),
        ),
        (
            "a result",
            WorkerMessage::result(LeaseResult {
                lease_id: 1,
                result: Some(re::ActionResult::default()),
                ..Default::default()
            }),
        ),
        ("a goodbye", WorkerMessage::goodbye("bye")),
        ("a message without a kind", WorkerMessage { kind: None }),
    ];
    for (what, first) in firsts {
        let mut worker = FakeWorker::open(&server, "rude", vec![pool(1, 1)]).await;
        worker.send(first);
        let status = worker.expect_error().await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status.message().contains("state report"),
            "{what}: {status:?}"
        );
        assert_eq!(server.scheduler.executor_summary().workers, 0, "{what}");
    }
    a_fresh_worker_still_completes_work(&server, "first-message").await;
}

/// A worker that sends nothing at all is cut off after the heartbeat
/// timeout with DEADLINE_EXCEEDED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_without_a_first_report_is_cut_off() {
    let server = server_with_short_heartbeat().await;
    let opened = Instant::now();
    let mut mute = FakeWorker::open(&server, "mute", vec![pool(1, 1)]).await;
    let status = mute.expect_error().await;
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(opened.elapsed() >= SHORT_HEARTBEAT_TIMEOUT);
    assert_eq!(server.scheduler.executor_summary().workers, 0);
    a_fresh_worker_still_completes_work(&server, "mute").await;
}

/// A first report must name the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_report_without_a_worker_id_is_refused() {
    let server = server().await;
    let long = "x".repeat(257);
    for (id, says) in [
        ("", "no worker_id"),
        ("two\nlines", "printable"),
        (long.as_str(), "256"),
    ] {
        let mut worker = FakeWorker::open(&server, id, vec![pool(1, 1)]).await;
        worker.report();
        assert_invalid(&worker.expect_error().await, says);
        assert_eq!(server.scheduler.executor_summary().workers, 0);
    }
    a_fresh_worker_still_completes_work(&server, "worker-id").await;
}

/// Every pool of a first report must have executors, no more free than it
/// has, and valid properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_report_with_impossible_pools_is_refused() {
    let server = server().await;
    let mut bad_cpus = pool(1, 1);
    bad_cpus
        .properties
        .as_mut()
        .unwrap()
        .properties
        .push(re::platform::Property {
            name: "cpus".into(),
            value: "many".into(),
        });
    let mut unnamed = pool(1, 1);
    unnamed.properties.as_mut().unwrap().properties[0].name = String::new();
    let cases = [
        (vec![pool(0, 0)], "has no executors"),
        (vec![pool(1, 1), pool(0, 0)], "pool 1"),
        (vec![pool(2, 3)], "3 free of 2"),
        (vec![bad_cpus], "cpus"),
        (vec![unnamed], "empty name"),
    ];
    for (pools, says) in cases {
        let mut worker = FakeWorker::open(&server, "impossible", pools).await;
        worker.report();
        assert_invalid(&worker.expect_error().await, says);
        assert_eq!(server.scheduler.executor_summary().workers, 0);
    }
    a_fresh_worker_still_completes_work(&server, "pools").await;
}

/// A malformed later report (or a message without a kind) gets an
/// INVALID_ARGUMENT notice and is ignored whole: each of these reports
/// drops the worker's lease, and the lease survives all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_malformed_report_gets_a_notice_and_changes_nothing() {
    let server = server().await;
    let mut worker = FakeWorker::connect(&server, "sloppy", 1).await;
    let mut client = Client::execute(&server, &sh("echo kept")).await;
    let offer = worker.expect_offer().await;
    worker.accept(&offer);
    client.expect_next(Stage::Executing).await;

    // Each edit makes a report malformed; applied, any of them would also
    // lose the lease (seen, not listed).
    type Edit = fn(&mut StateReport);
    let lost = |change: Edit| {
        let mut report = StateReport {
            worker_id: "sloppy".into(),
            pools: vec![pool(1, 1)],
            running_leases: vec![],
            last_offer_seen: offer.lease_id,
            ..Default::default()
        };
        change(&mut report);
        WorkerMessage::report(report)
    };
    let bad_reports: [(Edit, &str); 5] = [
        (|r| r.pools[0].free = 2, "2 free of 1"),
        (|r| r.pools[0].executors = 0, "no executors"),
        (|r| r.worker_id.clear(), "no worker_id"),
        (|r| r.worker_id = "someone-else".into(), "changes its id"),
        (|r| r.pools.push(pool(1, 1)), "changes its id or pools"),
    ];
    for (change, says) in bad_reports {
        worker.send(lost(change));
        let notice = worker.expect_notice(Code::InvalidArgument).await;
        assert_eq!(notice.lease_id, 0);
        notice_says(&notice, says);
    }
    worker.send(WorkerMessage { kind: None });
    let notice = worker.expect_notice(Code::InvalidArgument).await;
    notice_says(&notice, "no kind");

    // Still linked, the lease still its own.
    let summary = server.scheduler.executor_summary();
    assert_eq!((summary.workers, summary.leases), (1, 1), "{summary:?}");
    let result = uploaded_result(&server, 0, "kept\n").await;
    worker.finish(offer.lease_id, result.clone());
    let response = client.finished().await;
    assert_eq!(response.result, Some(result));
    assert_eq!(
        client.stages(),
        [Stage::Queued, Stage::Executing, Stage::Completed]
    );
    a_fresh_worker_still_completes_work(&server, "later-report").await;
}

/// A report listing a lease the worker does not hold from this scheduler
/// (made up, or another worker's) gets a FAILED_PRECONDITION notice and a
/// cancel for it; the real holder keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_listing_a_lease_not_held_gets_a_notice_and_a_cancel() {
    let server = server().await;
    let mut holder = FakeWorker::connect(&server, "holder", 1).await;
    let mut client = Client::execute(&server, &sh("echo held")).await;
    let offer = holder.expect_offer().await;
    holder.accept(&offer);
    client.expect_next(Stage::Executing).await;

    let mut liar = FakeWorker::connect(&server, "liar", 2).await;
    for lease_id in [offer.lease_id, 77] {
        liar.update(|report| report.running_leases = vec![lease_id]);
        liar.report();
        let notice = liar.expect_notice(Code::FailedPrecondition).await;
        assert_eq!(notice.lease_id, lease_id);
        notice_says(&notice, server.scheduler.id());
        let cancel = liar.expect_cancel().await;
        assert_eq!(cancel.lease_id, lease_id);
    }

    let result = uploaded_result(&server, 0, "held\n").await;
    holder.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result));
    assert_eq!(
        client.stages(),
        [Stage::Queued, Stage::Executing, Stage::Completed]
    );
    drop(liar);
    a_fresh_worker_still_completes_work(&server, "lease-not-held").await;
}

/// A result or an answer for a lease the worker does not hold (made up,
/// or another worker's) gets a NOT_FOUND notice and is dropped; the real
/// holder's result still completes the operation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_for_an_unknown_lease_gets_not_found() {
    let server = server().await;
    let mut holder = FakeWorker::connect(&server, "holder", 1).await;
    let mut client = Client::execute(&server, &sh("echo mine")).await;
    let offer = holder.expect_offer().await;
    holder.accept(&offer);
    client.expect_next(Stage::Executing).await;

    let mut stranger = FakeWorker::connect(&server, "stranger", 1).await;
    let forged = uploaded_result(&server, 0, "forged\n").await;
    for lease_id in [4242, offer.lease_id] {
        stranger.finish(lease_id, forged.clone());
        let notice = stranger.expect_notice(Code::NotFound).await;
        assert_eq!(notice.lease_id, lease_id);
        notice_says(&notice, "a result");
        stranger.send(WorkerMessage::answer(LeaseAnswer {
            lease_id,
            accepted: false,
            reason: "forged".into(),
        }));
        let notice = stranger.expect_notice(Code::NotFound).await;
        assert_eq!(notice.lease_id, lease_id);
        notice_says(&notice, "an answer");
    }

    let result = uploaded_result(&server, 0, "mine\n").await;
    holder.finish(offer.lease_id, result.clone());
    assert_eq!(client.finished().await.result, Some(result.clone()));
    assert_eq!(server.cached_result(&client.digest).await.unwrap(), result);
    drop(stranger);
    a_fresh_worker_still_completes_work(&server, "unknown-lease").await;
}

/// Operation names of another scheduler (or unknown ones of this one) are
/// NOT_FOUND for WaitExecution, GetOperation and CancelOperation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_of_another_scheduler_are_not_found() {
    let server = server().await;
    let uuid = "0b7e2a4e-5a8c-4c1e-9d55-3f2a9b8c7d6e";
    let home = server.scheduler.id();
    assert_ne!(home, "deadbeef0000");
    for name in [
        format!("operations/deadbeef0000/{uuid}"),
        format!("operations/{home}/{uuid}"),
    ] {
        let waited = server
            .exec()
            .wait_execution(re::WaitExecutionRequest { name: name.clone() })
            .await
            .map(|_| ());
        assert_code(waited, Code::NotFound, &format!("WaitExecution {name}"));
        let got = server
            .ops()
            .get_operation(lro::GetOperationRequest { name: name.clone() })
            .await;
        assert_code(got, Code::NotFound, &format!("GetOperation {name}"));
        let cancelled = server
            .ops()
            .cancel_operation(lro::CancelOperationRequest { name: name.clone() })
            .await;
        assert_code(
            cancelled,
            Code::NotFound,
            &format!("CancelOperation {name}"),
        );
    }
    a_fresh_worker_still_completes_work(&server, "foreign-name").await;
}

/// A worker that links again while running leases of its previous link
/// (it restarted its link, or the scheduler lost it) is welcomed first,
/// as the protocol promises ("Welcome: the first message"), then told
/// that the leases are not its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relinking_worker_is_welcomed_before_it_hears_about_its_leases() {
    let server = server().await;
    let mut worker = FakeWorker::open(&server, "relinked", vec![pool(2, 1)]).await;
    worker.update(|report| {
        report.running_leases = vec![9];
        report.last_offer_seen = 9;
    });
    worker.report();
    match worker.next().await.kind {
        Some(scheduler_message::Kind::Welcome(welcome)) => {
            assert_eq!(welcome.scheduler_id, server.scheduler.id())
        }
        other => panic!("expected a welcome first, got {other:?}"),
    }
    let notice = worker.expect_notice(Code::FailedPrecondition).await;
    assert_eq!(notice.lease_id, 9);
    assert_eq!(worker.expect_cancel().await.lease_id, 9);
    drop(worker);
    a_fresh_worker_still_completes_work(&server, "relinked").await;
}

// -------------------------------------------------------- worker side ---

/// The name of the threads of the runtime a probed link runs on.
const PROBE_THREAD: &str = "link-probe";

/// CPU time used so far by this process's threads named `name`.
fn threads_cpu_time(name: &str) -> Duration {
    let mut ticks = 0;
    for task in std::fs::read_dir("/proc/self/task").expect("listing /proc/self/task") {
        let path = task.expect("a thread").path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (_, after_name) = stat.rsplit_once(')').expect("a command name");
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // Fields 14 and 15 (utime, stime), counting from 1 with the state
        // as 3; in clock ticks of 1/100 s on Linux.
        ticks += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    Duration::from_millis(ticks * 10)
}

/// `Worker::connect` returns a `LinkHandle` that only stops the link; a
/// caller that drops it (as `bin/src/bin/reapi-server.rs` does with its
/// in-process worker's) gets a link that keeps running, quietly. (The link
/// task used to busy-loop on the closed `stopped` watch channel.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_link_whose_handle_is_dropped_does_not_spin() {
    let server = server().await;
    // The link runs alone on a runtime of its own: the CPU time of that
    // runtime's thread is the link's.
    let probe = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(PROBE_THREAD)
        .enable_all()
        .build()
        .expect("a runtime");
    let worker = reapi_executor::Worker::new(reapi_executor::WorkerConfig::new("detached"), vec![]);
    let connector = reapi_scheduler::InProcessConnector::new(server.scheduler.clone());
    let handle = {
        let _inside = probe.enter();
        worker.connect(Arc::new(connector))
    };
    let linked = eventually(PATIENCE, || worker.linked() == 1).await;
    assert!(linked, "the worker did not link");

    drop(handle);
    let window = Duration::from_secs(1);
    let before = threads_cpu_time(PROBE_THREAD);
    tokio::time::sleep(window).await;
    let used = threads_cpu_time(PROBE_THREAD) - before;
    assert!(
        used < window / 10,
        "the link used {used:?} of CPU in {window:?} once its handle was dropped"
    );
    // Dropping the handle does not stop the link.
    assert_eq!(worker.linked(), 1);
    assert_eq!(server.scheduler.executor_summary().workers, 1);
    probe.shutdown_background();
}

/// The figures an autoscaler reads: a pool's executors, and how many run
/// a lease, rendered by the scheduler's metrics collector; the queue and
/// execution time histograms count the action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_metrics_follow_a_lease() {
    use prometheus_client::registry::Registry;
    use reapi_scheduler::metrics::SchedulerCollector;

    let server = server().await;
    let mut worker = FakeWorker::connect(&server, "metered", 2).await;
    let mut registry = Registry::with_prefix("reapi");
    registry.register_collector(Box::new(SchedulerCollector::new(&server.scheduler)));
    let render = |registry: &Registry| {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    };
    let pools = server.scheduler.pool_summaries();
    assert_eq!(pools.len(), 1, "{pools:?}");
    assert_eq!(
        (
            pools[0].executors,
            pools[0].used_executors,
            pools[0].workers
        ),
        (2, 0, 1)
    );
    let line = |name: &str| format!("reapi_{name}{{pool=\"{}\"}}", pools[0].pool);
    let text = render(&registry);
    assert!(
        text.contains(&format!("{} 2\n", line("executors"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("{} 0\n", line("used_executors"))),
        "{text}"
    );
    assert!(text.contains("reapi_linked_workers 1\n"), "{text}");
    assert!(
        text.contains(&format!("{} 0\n", line("pool_queued_actions"))),
        "{text}"
    );
    for member in [
        "reapi_cluster_members{kind=\"scheduler\",state=\"live\"} 1\n",
        "reapi_cluster_members{kind=\"worker\",state=\"live\"} 1\n",
        "reapi_cluster_members{kind=\"worker\",state=\"draining\"} 0\n",
    ] {
        assert!(text.contains(member), "{member:?} missing from\n{text}");
    }

    let executions_before = reapi_core::metrics::render();
    let mut client = Client::execute(&server, &sh("echo metered")).await;
    let offer = worker.expect_offer().await;
    worker.accept(&offer);
    client.wait_stage(Stage::Executing).await;
    assert_eq!(server.scheduler.pool_summaries()[0].used_executors, 1);
    let text = render(&registry);
    assert!(
        text.contains(&format!("{} 1\n", line("used_executors"))),
        "{text}"
    );
    assert!(text.contains("reapi_leases 1\n"), "{text}");

    let result = uploaded_result(&server, 0, "metered\n").await;
    worker.finish(offer.lease_id, result);
    client.finished().await;
    assert_eq!(server.scheduler.pool_summaries()[0].used_executors, 0);
    let text = render(&registry);
    assert!(
        text.contains(&format!("{} 0\n", line("used_executors"))),
        "{text}"
    );
    assert!(text.contains("reapi_queued_actions 0\n"), "{text}");
    // The process-wide histograms are shared with the tests running beside
    // this one: the queue time count of this pool grew.
    let count = |text: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(&line("queue_seconds_count")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(count(&reapi_core::metrics::render()) > count(&executions_before));
}
