//! The scheduler's own rules, against scripted workers linked in process:
//! each test says what a worker answers. The gRPC form of the same
//! protocol is tested in `tests/worker_protocol.rs`.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::StreamExt;
use reapi_cas::action_cache::MemoryActionCache;
use reapi_core::cluster::messages::{
    scheduler_message, ExecutorGroup, LeaseAnswer, LeaseOffer, LeaseResult, StateReport,
};
use reapi_core::cluster::service::SchedulerMessageStream;
use reapi_core::cluster::{SchedulerMessage, WorkerMessage};
use reapi_core::platform::{ExecutorProperties, Requirements};
use reapi_core::proto::remote_execution::{Action, ActionResult, Command, ExecuteResponse};
use reapi_core::{ActionCache, Digest, Result};
use tokio::sync::mpsc;
use tonic::{Code, Status};

use super::*;
use crate::operation::Stage;

const PATIENCE: Duration = Duration::from_secs(10);

/// A worker whose every move the test makes.
struct ScriptedWorker {
    id: String,
    to_scheduler: mpsc::UnboundedSender<std::result::Result<WorkerMessage, Status>>,
    from_scheduler: SchedulerMessageStream,
    pools: Vec<ExecutorGroup>,
    running: Vec<u64>,
    last_offer_seen: u64,
}

impl ScriptedWorker {
    async fn connect(scheduler: &Arc<Scheduler>, id: &str, executors: u32) -> Self {
        Self::connect_with(scheduler, id, executors, &["OSFamily=linux"]).await
    }

    async fn connect_with(
        scheduler: &Arc<Scheduler>,
        id: &str,
        executors: u32,
        properties: &[&str],
    ) -> Self {
        let (to_scheduler, rx) = mpsc::unbounded_channel();
        let from_scheduler =
            scheduler.serve_link(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed());
        let properties = ExecutorProperties::from_pairs(properties.iter().copied()).unwrap();
        let mut worker = ScriptedWorker {
            id: id.to_string(),
            to_scheduler,
            from_scheduler,
            pools: vec![ExecutorGroup {
                properties: Some(properties.to_platform()),
                executors,
                free: executors,
            }],
            running: Vec::new(),
            last_offer_seen: 0,
        };
        worker.report();
        match worker.next().await.kind {
            Some(scheduler_message::Kind::Welcome(_)) => worker,
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    fn send(&self, message: WorkerMessage) {
        self.to_scheduler.send(Ok(message)).unwrap();
    }

    fn report(&self) {
        self.send(WorkerMessage::report(StateReport {
            worker_id: self.id.clone(),
            pools: self.pools.clone(),
            running_leases: self.running.clone(),
            last_offer_seen: self.last_offer_seen,
            ..Default::default()
        }));
    }

    /// The next message, past lists of cluster CAS members (these workers
    /// hold no replicas).
    async fn next(&mut self) -> SchedulerMessage {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.from_scheduler.next())
                .await
                .expect("no message from the scheduler in time")
                .expect("the scheduler ended the link")
                .expect("the scheduler failed the link");
            if !matches!(
                message.kind,
                Some(scheduler_message::Kind::StorageMembers(_))
            ) {
                return message;
            }
        }
    }

    async fn offer(&mut self) -> LeaseOffer {
        match self.next().await.kind {
            Some(scheduler_message::Kind::Offer(offer)) => {
                self.last_offer_seen = self.last_offer_seen.max(offer.lease_id);
                offer
            }
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    /// Takes the next offer and accepts it.
    async fn take(&mut self) -> LeaseOffer {
        let offer = self.offer().await;
        self.running.push(offer.lease_id);
        self.pools[0].free -= 1;
        self.send(WorkerMessage::answer(LeaseAnswer {
            lease_id: offer.lease_id,
            accepted: true,
            reason: String::new(),
        }));
        offer
    }

    fn finish(&mut self, lease_id: u64, exit_code: i32) {
        self.send(WorkerMessage::result(LeaseResult {
            lease_id,
            result: Some(ActionResult {
                exit_code,
                ..Default::default()
            }),
            ..Default::default()
        }));
        self.running.retain(|l| *l != lease_id);
        self.pools[0].free += 1;
        self.report();
    }

    async fn no_message_for(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) =
            tokio::time::timeout_at(deadline, self.from_scheduler.next()).await
        {
            if !matches!(
                &message,
                Ok(SchedulerMessage {
                    kind: Some(scheduler_message::Kind::StorageMembers(_))
                })
            ) {
                panic!("unexpected message {message:?}");
            }
        }
    }
}

fn digest_of(offer: &LeaseOffer) -> Digest {
    Digest::from_proto(
        reapi_core::DigestFunction::Sha256,
        offer.action_digest.as_ref().unwrap(),
    )
    .unwrap()
}

fn start(config: SchedulerConfig) -> (Arc<Scheduler>, Arc<MemoryActionCache>) {
    let cache = Arc::new(MemoryActionCache::new(1 << 20));
    (
        Scheduler::start_with_id("test".into(), cache.clone(), config),
        cache,
    )
}

fn submission(tag: &str, priority: i32) -> Submission {
    submission_of(tag, priority, "")
}

fn submission_of(tag: &str, priority: i32, build: &str) -> Submission {
    Submission {
        job: ExecutionJob {
            instance_name: String::new(),
            action_digest: Digest::of_bytes(tag.as_bytes()),
            action: Action::default(),
            command: Command::default(),
            timeout: Duration::from_secs(60),
            queued_at: SystemTime::now(),
        },
        requirements: Requirements::default(),
        priority,
        do_not_cache: false,
        labels: RequestLabels {
            build: build.into(),
            ..Default::default()
        },
    }
}

async fn finished(op: &mut OperationWatch) -> ExecuteResponse {
    tokio::time::timeout(PATIENCE, op.done())
        .await
        .expect("the operation did not finish in time")
        .unwrap()
        .response
        .unwrap()
}

fn requires(name: &str, value: &str) -> Requirements {
    use reapi_core::proto::remote_execution::{platform::Property, Platform};
    Requirements::from_platform(&Platform {
        properties: vec![Property {
            name: name.into(),
            value: value.into(),
        }],
    })
    .unwrap()
}

fn tag(name: &str) -> Digest {
    Digest::of_bytes(name.as_bytes())
}

#[tokio::test]
async fn runs_by_priority_then_fifo() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let mut blocker = scheduler.submit(submission("blocker", 0));
    let first = worker.take().await;
    assert_eq!(digest_of(&first), tag("blocker"));
    let _low = scheduler.submit(submission("low", 10));
    let _a = scheduler.submit(submission("a", 0));
    let _b = scheduler.submit(submission("b", 0));
    let _urgent = scheduler.submit(submission("urgent", -5));
    assert_eq!(scheduler.queue_len(), 4);
    worker.finish(first.lease_id, 0);
    finished(&mut blocker).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        let offer = worker.take().await;
        order.push(digest_of(&offer));
        worker.finish(offer.lease_id, 0);
    }
    assert_eq!(order, [tag("urgent"), tag("a"), tag("b"), tag("low")]);
}

#[tokio::test]
async fn builds_take_turns_at_equal_priority() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let _blocker = scheduler.submit(submission("blocker", 0));
    let blocker = worker.take().await;
    let mut watches = Vec::new();
    for i in 0..4 {
        watches.push(scheduler.submit(submission_of(&format!("big{i}"), 0, "big-build")));
    }
    for i in 0..2 {
        watches.push(scheduler.submit(submission_of(&format!("small{i}"), 0, "small-build")));
    }
    worker.finish(blocker.lease_id, 0);
    let mut order = Vec::new();
    for _ in 0..6 {
        let offer = worker.take().await;
        order.push(digest_of(&offer));
        worker.finish(offer.lease_id, 0);
    }
    let expected: Vec<Digest> = ["big0", "small0", "big1", "small1", "big2", "big3"]
        .iter()
        .map(|t| tag(t))
        .collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn actions_go_only_to_pools_that_offer_what_they_ask() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut plain = ScriptedWorker::connect(&scheduler, "plain", 1).await;
    let mut gpu =
        ScriptedWorker::connect_with(&scheduler, "gpu", 1, &["OSFamily=linux", "gpu=yes"]).await;
    let mut wants_gpu = submission("needs a gpu", 0);
    wants_gpu.requirements = requires("gpu", "yes");
    let _op = scheduler.submit(wants_gpu);
    let offer = gpu.take().await;
    assert_eq!(digest_of(&offer), tag("needs a gpu"));
    plain.no_message_for(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn identical_actions_run_once() {
    let (scheduler, cache) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 2).await;
    let mut one = scheduler.submit(submission("same", 0));
    let mut two = scheduler.submit(submission("same", 0));
    assert_eq!(one.name(), two.name());
    let offer = worker.take().await;
    worker.finish(offer.lease_id, 0);
    assert_eq!(finished(&mut one).await.result.unwrap().exit_code, 0);
    assert_eq!(finished(&mut two).await.result.unwrap().exit_code, 0);
    worker.no_message_for(Duration::from_millis(200)).await;
    assert!(cache.lookup("", &tag("same")).is_some());
}

#[tokio::test]
async fn do_not_cache_is_neither_merged_nor_cached_and_failures_are_not_cached() {
    let (scheduler, cache) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 2).await;
    let private = || Submission {
        do_not_cache: true,
        ..submission("private", 0)
    };
    let mut one = scheduler.submit(private());
    let mut two = scheduler.submit(private());
    assert_ne!(one.name(), two.name());
    for _ in 0..2 {
        let offer = worker.take().await;
        worker.finish(offer.lease_id, 0);
    }
    finished(&mut one).await;
    finished(&mut two).await;
    assert!(cache.lookup("", &tag("private")).is_none());

    let mut failing = scheduler.submit(submission("fails", 0));
    let offer = worker.take().await;
    worker.finish(offer.lease_id, 3);
    assert_eq!(finished(&mut failing).await.result.unwrap().exit_code, 3);
    assert!(cache.lookup("", &tag("fails")).is_none());
}

#[tokio::test]
async fn identical_submissions_share_one_decoded_action() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let private = || Submission {
        do_not_cache: true,
        ..submission("private", 0)
    };
    let copies = [scheduler.submit(private()), scheduler.submit(private())];
    {
        let state = scheduler.state.lock();
        let shared: Vec<&Arc<state::SharedAction>> =
            state.active.values().map(|op| &op.action).collect();
        assert_eq!(shared.len(), 2);
        assert!(Arc::ptr_eq(shared[0], shared[1]));
        assert_eq!(state.actions.len(), 1);
    }
    for copy in &copies {
        scheduler.cancel(&copy.name()).unwrap();
    }
    let state = scheduler.state.lock();
    assert!(
        state.actions.is_empty(),
        "an action outlived its operations"
    );
    assert_eq!(state.queued, 0);
}

/// An action cache whose writes wait until the test opens the gate.
struct GatedCache {
    inner: MemoryActionCache,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl ActionCache for GatedCache {
    async fn get(&self, instance: &str, digest: &Digest) -> Result<Option<ActionResult>> {
        self.inner.get(instance, digest).await
    }

    async fn put(&self, instance: &str, digest: &Digest, result: &ActionResult) -> Result<()> {
        let _permit = self.gate.acquire().await;
        self.inner.put(instance, digest, result).await
    }
}

#[tokio::test]
async fn the_executor_takes_the_next_action_while_a_result_is_cached() {
    let cache = Arc::new(GatedCache {
        inner: MemoryActionCache::new(1 << 20),
        gate: tokio::sync::Semaphore::new(0),
    });
    let scheduler =
        Scheduler::start_with_id("test".into(), cache.clone(), SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let mut first = scheduler.submit(submission("first", 0));
    let mut second = scheduler.submit(submission("second", 0));
    let offer = worker.take().await;
    assert_eq!(digest_of(&offer), tag("first"));
    worker.finish(offer.lease_id, 0);
    // The first result's cache write is held; the only executor runs the
    // second action meanwhile.
    let offer = worker.take().await;
    assert_eq!(digest_of(&offer), tag("second"));
    assert!(!first.state().is_done(), "published before it was cached");
    worker.finish(offer.lease_id, 0);
    cache.gate.add_permits(2);
    assert_eq!(finished(&mut first).await.result.unwrap().exit_code, 0);
    assert_eq!(finished(&mut second).await.result.unwrap().exit_code, 0);
}

#[tokio::test]
async fn a_refused_lease_goes_back_first_without_counting_a_loss() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let mut op = scheduler.submit(submission("refused", 0));
    let offer = worker.offer().await;
    worker.send(WorkerMessage::answer(LeaseAnswer {
        lease_id: offer.lease_id,
        accepted: false,
        reason: "full".into(),
    }));
    // No offer until the worker reports free executors again.
    worker.no_message_for(Duration::from_millis(200)).await;
    assert_eq!(op.state().stage, Stage::Queued);
    worker.report();
    let again = worker.take().await;
    assert_eq!(digest_of(&again), tag("refused"));
    assert!(again.lease_id > offer.lease_id);
    assert_eq!(
        scheduler
            .state
            .lock()
            .active
            .values()
            .next()
            .unwrap()
            .losses,
        0
    );
    worker.finish(again.lease_id, 0);
    finished(&mut op).await;
}

#[tokio::test]
async fn reports_do_not_overcommit_offers_the_worker_has_not_seen() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 2).await;
    let _a = scheduler.submit(submission("a", 0));
    let _b = scheduler.submit(submission("b", 0));
    let _c = scheduler.submit(submission("c", 0));
    let first = worker.offer().await;
    let second = worker.offer().await;
    // A report written before the worker saw either offer: both executors
    // free, nothing seen. The scheduler must not offer a third lease.
    worker.send(WorkerMessage::report(StateReport {
        worker_id: "w".into(),
        pools: worker.pools.clone(),
        ..Default::default()
    }));
    worker.no_message_for(Duration::from_millis(200)).await;
    assert!(first.lease_id < second.lease_id);
    assert_eq!(scheduler.queue_len(), 1);
}

#[tokio::test]
async fn cancelling_a_running_operation_tells_its_worker() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let mut running = scheduler.submit(submission("running", 0));
    let offer = worker.take().await;
    let mut queued = scheduler.submit(submission("queued", 0));
    scheduler.cancel(&queued.name()).unwrap();
    assert_eq!(
        finished(&mut queued).await.status.unwrap().code,
        Code::Cancelled as i32
    );
    scheduler.cancel(&running.name()).unwrap();
    assert_eq!(
        finished(&mut running).await.status.unwrap().code,
        Code::Cancelled as i32
    );
    match worker.next().await.kind {
        Some(scheduler_message::Kind::Cancel(cancel)) => {
            assert_eq!(cancel.lease_id, offer.lease_id)
        }
        other => panic!("expected a cancel, got {other:?}"),
    }
    // The executor is busy until the worker says the run stopped.
    let _next = scheduler.submit(submission("next", 0));
    worker.no_message_for(Duration::from_millis(200)).await;
    worker.send(WorkerMessage::result(LeaseResult {
        lease_id: offer.lease_id,
        error: Some(reapi_core::Error::cancelled("stopped").to_rpc_status()),
        ..Default::default()
    }));
    worker.running.clear();
    worker.pools[0].free = 1;
    worker.report();
    assert_eq!(digest_of(&worker.take().await), tag("next"));
    assert_eq!(
        scheduler.cancel("operations/test/nope").unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn an_operation_nobody_watches_is_cancelled() {
    let config = SchedulerConfig {
        orphan_timeout: Duration::from_millis(300),
        heartbeat_timeout: Duration::from_millis(400),
        ..Default::default()
    };
    let (scheduler, _) = start(config);
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let watch = scheduler.submit(submission("abandoned", 0));
    let name = watch.name();
    let offer = worker.take().await;
    drop(watch);
    // Keep the worker alive while the orphan timeout runs.
    let cancel = loop {
        worker.report();
        match tokio::time::timeout(Duration::from_millis(100), worker.from_scheduler.next()).await {
            Ok(Some(Ok(SchedulerMessage {
                kind: Some(scheduler_message::Kind::Cancel(cancel)),
            }))) => break cancel,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => continue,
        }
    };
    assert_eq!(cancel.lease_id, offer.lease_id);
    let state = scheduler.get(&name).unwrap();
    assert_eq!(
        state.response.unwrap().status.unwrap().code,
        Code::Cancelled as i32
    );
}

#[tokio::test]
async fn finished_operations_stay_visible_then_expire() {
    let config = SchedulerConfig {
        max_completed: 1,
        ..Default::default()
    };
    let (scheduler, _) = start(config);
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let mut first = scheduler.submit(submission("first", 0));
    let name = first.name();
    assert!(name.starts_with("operations/test/"), "{name}");
    let offer = worker.take().await;
    worker.finish(offer.lease_id, 0);
    finished(&mut first).await;
    assert!(scheduler.get(&name).unwrap().is_done());
    let mut second = scheduler.submit(submission("second", 0));
    let offer = worker.take().await;
    worker.finish(offer.lease_id, 0);
    finished(&mut second).await;
    assert!(
        scheduler.get(&name).is_none(),
        "oldest finished operation kept past the limit"
    );
}

#[tokio::test]
async fn queue_classes_go_away_when_empty() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker =
        ScriptedWorker::connect_with(&scheduler, "w", 1, &["OSFamily=linux", "memory=1G"]).await;
    let mut ops = Vec::new();
    for memory in 1..=50 {
        let mut sub = submission(&format!("m{memory}"), 0);
        sub.requirements = requires("memory", &memory.to_string());
        ops.push(scheduler.submit(sub));
    }
    assert_eq!(scheduler.state.lock().queues.class_count(), 50);
    for _ in 0..50 {
        let offer = worker.take().await;
        worker.finish(offer.lease_id, 0);
    }
    for op in &mut ops {
        finished(op).await;
    }
    assert_eq!(scheduler.state.lock().queues.class_count(), 0);
}

/// Waits until `check` holds of the scheduler's status.
async fn status_until(
    scheduler: &Scheduler,
    what: &str,
    check: impl Fn(&crate::status::ClusterStatus) -> bool,
) -> crate::status::ClusterStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = scheduler.status();
        if check(&status) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status never showed {what}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn status_shows_running_actions_with_their_labels_and_recent_failures() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 2).await;
    let labelled = |tag: &str, mnemonic: &str, target: &str| Submission {
        labels: RequestLabels {
            build: "b".into(),
            mnemonic: mnemonic.into(),
            target: target.into(),
        },
        ..submission(tag, 0)
    };
    let mut compile = scheduler.submit(labelled("compile", "CppCompile", "//src:lib"));
    let mut queued = [
        scheduler.submit(labelled("link", "CppLink", "//src:bin")),
        scheduler.submit(labelled("test", "TestRunner", "//src:test")),
    ];
    let first = worker.take().await;
    let second = worker.take().await;

    let status = status_until(&scheduler, "two running actions", |s| {
        s.running.iter().filter(|a| a.phase == "running").count() == 2
    })
    .await;
    assert_eq!(status.running_total, 2);
    assert_eq!((status.queued, status.active), (1, 3));
    let compile_row = status
        .running
        .iter()
        .find(|a| a.action_digest == tag("compile"))
        .expect("the compile action runs");
    assert_eq!(
        (
            compile_row.mnemonic.as_str(),
            compile_row.target.as_str(),
            compile_row.worker.as_str()
        ),
        ("CppCompile", "//src:lib", "w")
    );
    assert_eq!(status.workers.len(), 1);
    assert_eq!(
        (
            status.workers[0].used_executors,
            status.workers[0].executors
        ),
        (2, 2)
    );
    assert_eq!(status.pools.len(), 1);
    assert_eq!(status.pools[0].used_executors, 2);
    assert_eq!(status.pools[0].queued_actions, 1);

    // The compile action fails, the other succeeds; the third runs and
    // finishes.
    let compile_lease = if digest_of(&first) == tag("compile") {
        first.lease_id
    } else {
        second.lease_id
    };
    let other_lease = first.lease_id + second.lease_id - compile_lease;
    worker.finish(compile_lease, 3);
    assert_eq!(finished(&mut compile).await.result.unwrap().exit_code, 3);
    worker.finish(other_lease, 0);
    let third = worker.take().await;
    worker.finish(third.lease_id, 0);
    for op in &mut queued {
        assert_eq!(finished(op).await.result.unwrap().exit_code, 0);
    }

    let status = status_until(&scheduler, "nothing running", |s| s.running_total == 0).await;
    assert_eq!(status.failures.len(), 1, "{:#?}", status.failures);
    let failure = &status.failures[0];
    assert_eq!(
        (
            failure.mnemonic.as_str(),
            failure.target.as_str(),
            failure.worker.as_str(),
            failure.what.as_str()
        ),
        ("CppCompile", "//src:lib", "w", "exit code 3")
    );
    assert_eq!((status.queued, status.active), (0, 0));
    assert_eq!(status.pools[0].queued_actions, 0);
    assert!(scheduler.state.lock().queued_by_requirements.is_empty());
}

#[tokio::test]
async fn recent_failures_keep_the_newest_and_skip_cancellations() {
    let (scheduler, _) = start(SchedulerConfig::default());
    let mut worker = ScriptedWorker::connect(&scheduler, "w", 1).await;
    let failures = crate::status::RECENT_FAILURES + 3;
    for i in 0..failures {
        let mut op = scheduler.submit(submission(&format!("fail{i}"), 0));
        let offer = worker.take().await;
        worker.finish(offer.lease_id, 1);
        finished(&mut op).await;
    }
    let cancelled = scheduler.submit(submission("cancelled", 0));
    assert_eq!(scheduler.status().pools[0].queued_actions, 1);
    scheduler.cancel(&cancelled.name()).unwrap();

    let status = scheduler.status();
    assert_eq!(status.pools[0].queued_actions, 0);
    assert!(scheduler.state.lock().queued_by_requirements.is_empty());
    assert_eq!(status.failures.len(), crate::status::RECENT_FAILURES);
    assert_eq!(
        status.failures[0].action_digest,
        tag(&format!("fail{}", failures - 1)),
        "newest first"
    );
    assert!(status
        .failures
        .iter()
        .all(|f| f.action_digest != tag("fail0") && f.action_digest != tag("cancelled")));
}
