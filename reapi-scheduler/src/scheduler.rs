//! The scheduler core: a priority queue of actions, deduplication of
//! identical in-flight actions, and dispatch of each action to an idle
//! executor whose properties satisfy it.
//!
//! Ownership of timeouts (see docs/adr/0004): the sandbox enforces the
//! action's timeout and reports what was captured; the scheduler only adds a
//! grace period on top, for an executor that stops answering.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use reapi_core::execution::{ExecutionJob, ExecutionOutcome, ExecutorId};
use reapi_core::platform::{Requirements, Reservation, ResourceLedger};
use reapi_core::proto::remote_execution::{Action, Command, ExecuteResponse};
use reapi_core::{ActionCache, Digest, Error, ExecutorPool, Result};
use tokio::sync::{watch, Notify};
use tonic::Code;

use crate::config::SchedulerConfig;
use crate::operation::{OperationId, OperationState, OperationWatch, Progress};
use crate::queue::{PriorityQueue, Slot};

/// Extra time past an action's own timeout before the scheduler gives up on
/// the executor running it.
const EXECUTOR_GRACE: Duration = Duration::from_secs(60);

/// An action to queue.
pub struct Submission {
    pub job: ExecutionJob,
    pub requirements: Requirements,
    pub priority: i32,
    /// `Action.do_not_cache`: the result is not cached and the action is not
    /// merged with identical ones.
    pub do_not_cache: bool,
}

/// Identical actions: same instance and action digest (SHA-256 is the only
/// digest function, so it is implied).
type ActionKey = (String, Digest);

/// What every operation of one action shares: the decoded Action and
/// Command and what follows from them. Operations of the same action are
/// common (`do_not_cache` ones are never merged), and the decoded messages
/// were the largest part of a queued operation when each kept its own.
struct SharedAction {
    instance_name: String,
    action_digest: Digest,
    action: Action,
    command: Command,
    /// Already capped by the server's maximum.
    timeout: Duration,
    requirements: Requirements,
}

impl SharedAction {
    fn key(&self) -> ActionKey {
        (self.instance_name.clone(), self.action_digest)
    }

    /// The job for one run of the action (the pool takes it by value).
    fn job(&self, queued_at: SystemTime) -> ExecutionJob {
        ExecutionJob {
            instance_name: self.instance_name.clone(),
            action_digest: self.action_digest,
            action: self.action.clone(),
            command: self.command.clone(),
            timeout: self.timeout,
            queued_at,
        }
    }
}

/// An action with operations queued or running.
struct ActionEntry {
    action: Arc<SharedAction>,
    /// Its operations queued or running; the entry goes with the last one.
    operations: usize,
    /// The cacheable operation that identical cacheable submissions join.
    joinable: Option<OperationId>,
}

enum Phase {
    Queued(Slot),
    Running {
        /// Tells the run's task to drop the run (killing the action); the
        /// task frees the executor once the run has really ended.
        cancel: Arc<Notify>,
    },
}

struct ActiveOperation {
    action: Arc<SharedAction>,
    queued_at: SystemTime,
    priority: i32,
    /// Not `do_not_cache`: its result is cached, and identical submissions
    /// join it.
    cacheable: bool,
    attempts: u32,
    phase: Phase,
    progress: watch::Sender<Progress>,
}

impl ActiveOperation {
    fn watch(&self, id: OperationId) -> OperationWatch {
        OperationWatch::new(id, self.action.action_digest, self.progress.subscribe())
    }
}

struct CompletedOperation {
    action_digest: Digest,
    response: Arc<ExecuteResponse>,
}

impl CompletedOperation {
    fn progress(&self) -> Progress {
        Progress::Completed(self.response.clone())
    }
}

#[derive(Default)]
struct State {
    queue: PriorityQueue<OperationId>,
    active: HashMap<OperationId, ActiveOperation>,
    actions: HashMap<ActionKey, ActionEntry>,
    completed: HashMap<OperationId, CompletedOperation>,
    completed_order: VecDeque<(Instant, OperationId)>,
    busy: HashSet<ExecutorId>,
    ledgers: HashMap<String, ResourceLedger>,
}

impl State {
    /// The shared form of a submitted action, counting one more operation
    /// of it. The submission's own decoded messages are dropped when the
    /// action is already known.
    fn share_action(
        &mut self,
        key: ActionKey,
        job: ExecutionJob,
        requirements: Requirements,
        joinable: Option<OperationId>,
    ) -> Arc<SharedAction> {
        let entry = self.actions.entry(key).or_insert_with(|| ActionEntry {
            action: Arc::new(SharedAction {
                instance_name: job.instance_name,
                action_digest: job.action_digest,
                action: job.action,
                command: job.command,
                timeout: job.timeout,
                requirements,
            }),
            operations: 0,
            joinable: None,
        });
        entry.operations += 1;
        if joinable.is_some() {
            entry.joinable = joinable;
        }
        entry.action.clone()
    }

    /// Counts one operation of `action` fewer, once it has ended.
    fn release_action(&mut self, action: &SharedAction, id: OperationId) {
        let key = action.key();
        let Some(entry) = self.actions.get_mut(&key) else {
            return;
        };
        if entry.joinable == Some(id) {
            entry.joinable = None;
        }
        entry.operations -= 1;
        if entry.operations == 0 {
            self.actions.remove(&key);
        }
    }
}

pub struct Scheduler {
    state: Mutex<State>,
    pool: Arc<dyn ExecutorPool>,
    action_cache: Arc<dyn ActionCache>,
    config: SchedulerConfig,
    /// Wakes the dispatcher: something was queued or an executor freed up.
    wake: Arc<Notify>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // Lets the dispatcher notice the scheduler is gone and end.
        self.wake.notify_one();
    }
}

impl Scheduler {
    /// Creates the scheduler and starts its dispatcher task.
    pub fn start(
        pool: Arc<dyn ExecutorPool>,
        action_cache: Arc<dyn ActionCache>,
        config: SchedulerConfig,
    ) -> Arc<Self> {
        let scheduler = Arc::new(Scheduler {
            state: Mutex::new(State::default()),
            pool,
            action_cache,
            config,
            wake: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&scheduler);
        let wake = scheduler.wake.clone();
        tokio::spawn(async move {
            loop {
                // Registered before dispatching, so a wake-up during the
                // dispatch is not lost.
                let woken = wake.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                match weak.upgrade() {
                    Some(scheduler) => scheduler.dispatch(),
                    None => return,
                }
                woken.await;
            }
        });
        scheduler
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn pool(&self) -> &Arc<dyn ExecutorPool> {
        &self.pool
    }

    /// Queues an action, or joins an identical one already in flight.
    /// Returns a watch of the operation's state.
    pub fn submit(&self, submission: Submission) -> OperationWatch {
        let Submission {
            job,
            requirements,
            priority,
            do_not_cache,
        } = submission;
        let cacheable = !do_not_cache;
        let key = (job.instance_name.clone(), job.action_digest);
        let mut state = self.state.lock();
        let joinable = state.actions.get(&key).and_then(|entry| entry.joinable);
        if let Some(id) = joinable.filter(|_| cacheable) {
            if let Some(active) = state.active.get(&id) {
                tracing::debug!(action = %key.1, "joining identical in-flight action");
                return active.watch(id);
            }
        }
        let id = OperationId::random();
        let queued_at = job.queued_at;
        let action = state.share_action(key, job, requirements, cacheable.then_some(id));
        let priority = priority.clamp(self.config.priority_range.0, self.config.priority_range.1);
        let slot = state.queue.push(priority, id);
        let (progress, rx) = watch::channel(Progress::Queued);
        let watch = OperationWatch::new(id, action.action_digest, rx);
        state.active.insert(
            id,
            ActiveOperation {
                action,
                queued_at,
                priority,
                cacheable,
                attempts: 0,
                phase: Phase::Queued(slot),
                progress,
            },
        );
        drop(state);
        self.wake.notify_one();
        watch
    }

    /// Registers an operation that finished without running (a cache hit
    /// found by Execute), so that its name answers WaitExecution and
    /// GetOperation like any other finished operation. Returns its name.
    pub fn record_finished(&self, action_digest: Digest, response: ExecuteResponse) -> String {
        let id = OperationId::random();
        let done = CompletedOperation {
            action_digest,
            response: Arc::new(response),
        };
        self.remember_completed(&mut self.state.lock(), id, done);
        id.to_string()
    }

    /// A watch of an operation's state: live while it runs, the final state
    /// once finished. `None` for an unknown (or forgotten) name.
    pub fn subscribe(&self, name: &str) -> Option<OperationWatch> {
        let id = OperationId::parse(name)?;
        let mut state = self.state.lock();
        self.expire_completed(&mut state);
        if let Some(active) = state.active.get(&id) {
            return Some(active.watch(id));
        }
        let done = state.completed.get(&id)?;
        let (_, rx) = watch::channel(done.progress());
        Some(OperationWatch::new(id, done.action_digest, rx))
    }

    pub fn get(&self, name: &str) -> Option<OperationState> {
        self.subscribe(name).map(|watch| watch.state())
    }

    /// Every operation still known, running ones first.
    pub fn list(&self) -> Vec<OperationState> {
        let mut state = self.state.lock();
        self.expire_completed(&mut state);
        let mut ops: Vec<OperationState> = state
            .active
            .iter()
            .map(|(id, active)| {
                let progress = active.progress.borrow().clone();
                progress.to_state(*id, active.action.action_digest)
            })
            .collect();
        ops.sort_by(|a, b| a.name.cmp(&b.name));
        let mut done: Vec<OperationState> = state
            .completed
            .iter()
            .map(|(id, done)| done.progress().to_state(*id, done.action_digest))
            .collect();
        done.sort_by(|a, b| a.name.cmp(&b.name));
        ops.extend(done);
        ops
    }

    pub fn queue_len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Cancels a queued or running operation: it completes with CANCELLED
    /// for every client waiting on it, and a running action is killed.
    pub fn cancel(&self, name: &str) -> Result<()> {
        let unknown = || Error::not_found(format!("operation {name:?} is unknown"));
        let id = OperationId::parse(name).ok_or_else(unknown)?;
        let mut state = self.state.lock();
        let Some(active) = state.active.remove(&id) else {
            return if state.completed.contains_key(&id) {
                Ok(())
            } else {
                Err(unknown())
            };
        };
        match &active.phase {
            Phase::Queued(slot) => {
                state.queue.remove(*slot);
            }
            // The executor stays busy until the run's task has dropped the
            // run: handing it a new action before would race the kill.
            Phase::Running { cancel, .. } => cancel.notify_one(),
        }
        let response = ExecuteResponse {
            status: Some(
                Error::cancelled(format!("operation {name} was cancelled")).to_rpc_status(),
            ),
            ..Default::default()
        };
        self.complete(&mut state, id, active, response);
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    /// Hands queued actions to idle executors that satisfy them.
    fn dispatch(self: &Arc<Self>) {
        let executors = self.pool.executors();
        let mut guard = self.state.lock();
        let state = &mut *guard;
        for executor in executors {
            if state.queue.len() == 0 {
                break;
            }
            if state.busy.contains(&executor.id) {
                continue;
            }
            let ledger = state
                .ledgers
                .entry(executor.worker.clone())
                .or_insert_with(|| ResourceLedger::for_executor(&executor.properties))
                .clone();
            let mut chosen: Option<(Slot, OperationId, Reservation)> = None;
            for (slot, id) in state.queue.iter() {
                let Some(active) = state.active.get(id) else {
                    continue;
                };
                let requirements = &active.action.requirements;
                if !executor.properties.satisfies(requirements) {
                    continue;
                }
                if let Some(reservation) = ledger.try_reserve(requirements) {
                    chosen = Some((slot, *id, reservation));
                    break;
                }
            }
            let Some((slot, id, reservation)) = chosen else {
                continue;
            };
            state.queue.remove(slot);
            let Some(active) = state.active.get_mut(&id) else {
                continue;
            };
            active.attempts += 1;
            let job = active.action.job(active.queued_at);
            let limit = job.timeout + EXECUTOR_GRACE;
            let scheduler = Arc::clone(self);
            let executor_id = executor.id.clone();
            let cancel = Arc::new(Notify::new());
            let cancelled = cancel.clone();
            tokio::spawn(async move {
                let run = tokio::time::timeout(limit, scheduler.pool.run(&executor_id, job));
                let outcome = tokio::select! {
                    outcome = run => Some(outcome.unwrap_or_else(|_| Err(Error::unavailable(format!(
                        "executor {executor_id} did not report within the action's timeout"
                    ))))),
                    _ = cancelled.notified() => None,
                };
                // The run has ended or been dropped (its sandbox killed the
                // action): its resources are free before anyone is woken.
                drop(reservation);
                match outcome {
                    Some(outcome) => scheduler.finish(id, &executor_id, outcome).await,
                    None => scheduler.release(&executor_id),
                }
            });
            active.phase = Phase::Running { cancel };
            active.progress.send_replace(Progress::Executing);
            state.busy.insert(executor.id.clone());
        }
    }

    /// Records the end of one run: caches and publishes the result, or
    /// requeues after an executor loss.
    async fn finish(
        &self,
        id: OperationId,
        executor: &ExecutorId,
        outcome: Result<ExecutionOutcome>,
    ) {
        let (action, cacheable) = {
            let state = self.state.lock();
            match state.active.get(&id) {
                Some(active) => (active.action.clone(), active.cacheable),
                None => {
                    // Cancelled while the run was finishing.
                    drop(state);
                    self.release(executor);
                    return;
                }
            }
        };
        let response = match outcome {
            Ok(outcome) => {
                // The run is over: the executor takes the next action while
                // this result is written to the cache (a synced write).
                self.release(executor);
                let succeeded = outcome.result.exit_code == 0 && !outcome.timed_out;
                if cacheable && succeeded {
                    if let Err(e) = self
                        .action_cache
                        .put(
                            &action.instance_name,
                            &action.action_digest,
                            &outcome.result,
                        )
                        .await
                    {
                        tracing::warn!(action = %action.action_digest, error = %e, "caching the action result failed");
                    }
                }
                let status = outcome.timed_out.then(|| {
                    Error::deadline_exceeded(format!(
                        "action {} exceeded its timeout of {:?}",
                        action.action_digest, action.timeout
                    ))
                    .to_rpc_status()
                });
                ExecuteResponse {
                    result: Some(outcome.result),
                    status,
                    ..Default::default()
                }
            }
            Err(e) => {
                let mut state = self.state.lock();
                state.busy.remove(executor);
                let Some(active) = state.active.get(&id) else {
                    drop(state);
                    self.wake.notify_one();
                    return;
                };
                let (attempts, priority) = (active.attempts, active.priority);
                if e.code() == Code::Unavailable && attempts < self.config.max_attempts {
                    tracing::warn!(operation = %id, error = %e, attempt = attempts, "executor lost; requeueing");
                    let slot = state.queue.push(priority, id);
                    if let Some(active) = state.active.get_mut(&id) {
                        active.phase = Phase::Queued(slot);
                        active.progress.send_replace(Progress::Queued);
                    }
                    drop(state);
                    self.wake.notify_one();
                    return;
                }
                let e = if e.code() == Code::Unavailable {
                    e.context(format!("giving up after {attempts} attempts"))
                } else {
                    e
                };
                ExecuteResponse {
                    status: Some(e.to_rpc_status()),
                    ..Default::default()
                }
            }
        };
        // Both branches above have freed the executor already; it may be
        // running another action by now.
        let mut state = self.state.lock();
        if let Some(active) = state.active.remove(&id) {
            self.complete(&mut state, id, active, response);
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Frees an executor whose run ended without a result to publish.
    fn release(&self, executor: &ExecutorId) {
        self.state.lock().busy.remove(executor);
        self.wake.notify_one();
    }

    fn complete(
        &self,
        state: &mut State,
        id: OperationId,
        active: ActiveOperation,
        response: ExecuteResponse,
    ) {
        state.release_action(&active.action, id);
        let done = CompletedOperation {
            action_digest: active.action.action_digest,
            response: Arc::new(response),
        };
        active.progress.send_replace(done.progress());
        self.remember_completed(state, id, done);
    }

    /// Keeps a finished operation for GetOperation and WaitExecution, for
    /// the configured retention.
    fn remember_completed(&self, state: &mut State, id: OperationId, done: CompletedOperation) {
        state.completed.insert(id, done);
        state.completed_order.push_back((Instant::now(), id));
        self.expire_completed(state);
    }

    fn expire_completed(&self, state: &mut State) {
        let now = Instant::now();
        while let Some((at, id)) = state.completed_order.front() {
            let expired = now.duration_since(*at) > self.config.completed_retention;
            if !expired && state.completed_order.len() <= self.config.max_completed {
                break;
            }
            state.completed.remove(id);
            state.completed_order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The scheduler's own rules, against a pool whose runs the test
    //! releases one by one (real executors are exercised in `tests/`).

    use super::*;
    use crate::operation::Stage;
    use async_trait::async_trait;
    use reapi_cas::action_cache::MemoryActionCache;
    use reapi_core::execution::ExecutorInfo;
    use reapi_core::platform::ExecutorProperties;
    use reapi_core::proto::remote_execution::{Action, ActionResult, Command};
    use std::time::SystemTime;
    use tokio::sync::{mpsc, oneshot};

    /// A pool of scripted executors: each run reports its action digest and
    /// waits for the test to say how it ends.
    struct ScriptedPool {
        executors: Vec<ExecutorInfo>,
        started: mpsc::UnboundedSender<(Digest, oneshot::Sender<Result<ExecutionOutcome>>)>,
        /// Executors with a run in progress: like a real pool, a second run
        /// on a busy executor is refused until the first is dropped.
        busy: Arc<parking_lot::Mutex<HashSet<ExecutorId>>>,
    }

    struct BusyGuard(Arc<parking_lot::Mutex<HashSet<ExecutorId>>>, ExecutorId);

    impl Drop for BusyGuard {
        fn drop(&mut self) {
            self.0.lock().remove(&self.1);
        }
    }

    #[async_trait]
    impl ExecutorPool for ScriptedPool {
        fn executors(&self) -> Vec<ExecutorInfo> {
            self.executors.clone()
        }

        async fn run(&self, executor: &ExecutorId, job: ExecutionJob) -> Result<ExecutionOutcome> {
            if !self.busy.lock().insert(executor.clone()) {
                return Err(Error::failed_precondition(format!(
                    "{executor} is already running an action"
                )));
            }
            let _busy = BusyGuard(self.busy.clone(), executor.clone());
            let (tx, rx) = oneshot::channel();
            let _ = self.started.send((job.action_digest, tx));
            rx.await
                .unwrap_or_else(|_| Err(Error::cancelled("test dropped the run")))
        }
    }

    type Started = mpsc::UnboundedReceiver<(Digest, oneshot::Sender<Result<ExecutionOutcome>>)>;

    fn setup(
        executors: usize,
        config: SchedulerConfig,
    ) -> (Arc<Scheduler>, Arc<MemoryActionCache>, Started) {
        let properties = ExecutorProperties::from_pairs(["OSFamily=linux"]).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = ScriptedPool {
            executors: (0..executors)
                .map(|i| ExecutorInfo {
                    id: ExecutorId(format!("test/{i}")),
                    worker: "test".into(),
                    properties: properties.clone(),
                })
                .collect(),
            started: tx,
            busy: Default::default(),
        };
        let cache = Arc::new(MemoryActionCache::new(1 << 20));
        (
            Scheduler::start(Arc::new(pool), cache.clone(), config),
            cache,
            rx,
        )
    }

    fn submission(tag: &str, priority: i32) -> Submission {
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
        }
    }

    fn success(code: i32) -> Result<ExecutionOutcome> {
        Ok(ExecutionOutcome {
            result: ActionResult {
                exit_code: code,
                ..Default::default()
            },
            timed_out: false,
        })
    }

    async fn finished(op: &mut OperationWatch) -> ExecuteResponse {
        op.done().await.unwrap().response.unwrap()
    }

    #[tokio::test]
    async fn runs_by_priority_then_fifo() {
        let (scheduler, _, mut started) = setup(1, SchedulerConfig::default());
        let mut blocker = scheduler.submit(submission("blocker", 0));
        let (first, release) = started.recv().await.unwrap();
        assert_eq!(first, Digest::of_bytes(b"blocker"));
        let _low = scheduler.submit(submission("low", 10));
        let _a = scheduler.submit(submission("a", 0));
        let _b = scheduler.submit(submission("b", 0));
        let _urgent = scheduler.submit(submission("urgent", -5));
        assert_eq!(scheduler.queue_len(), 4);
        release.send(success(0)).unwrap();
        finished(&mut blocker).await;
        let mut order = Vec::new();
        for _ in 0..4 {
            let (digest, release) = started.recv().await.unwrap();
            order.push(digest);
            release.send(success(0)).unwrap();
        }
        let expected: Vec<Digest> = ["urgent", "a", "b", "low"]
            .iter()
            .map(|t| Digest::of_bytes(t.as_bytes()))
            .collect();
        assert_eq!(order, expected);
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
        let properties = ExecutorProperties::from_pairs(["OSFamily=linux"]).unwrap();
        let (tx, mut started) = mpsc::unbounded_channel();
        let pool = ScriptedPool {
            executors: vec![ExecutorInfo {
                id: ExecutorId("test/0".into()),
                worker: "test".into(),
                properties,
            }],
            started: tx,
            busy: Default::default(),
        };
        let cache = Arc::new(GatedCache {
            inner: MemoryActionCache::new(1 << 20),
            gate: tokio::sync::Semaphore::new(0),
        });
        let scheduler = Scheduler::start(Arc::new(pool), cache.clone(), SchedulerConfig::default());
        let mut first = scheduler.submit(submission("first", 0));
        let mut second = scheduler.submit(submission("second", 0));
        let (digest, release) = started.recv().await.unwrap();
        assert_eq!(digest, Digest::of_bytes(b"first"));
        release.send(success(0)).unwrap();
        // The first result's cache write is held; the only executor runs the
        // second action meanwhile, and is not handed out twice.
        let (digest, release) = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("the executor stayed busy during the cache write")
            .unwrap();
        assert_eq!(digest, Digest::of_bytes(b"second"));
        assert!(!first.state().is_done(), "published before it was cached");
        release.send(success(0)).unwrap();
        cache.gate.add_permits(2);
        assert_eq!(finished(&mut first).await.result.unwrap().exit_code, 0);
        assert_eq!(finished(&mut second).await.result.unwrap().exit_code, 0);
        assert!(cache
            .inner
            .lookup("", &Digest::of_bytes(b"first"))
            .is_some());
        assert!(cache
            .inner
            .lookup("", &Digest::of_bytes(b"second"))
            .is_some());
    }

    #[tokio::test]
    async fn identical_actions_run_once() {
        let (scheduler, cache, mut started) = setup(2, SchedulerConfig::default());
        let mut one = scheduler.submit(submission("same", 0));
        let mut two = scheduler.submit(submission("same", 0));
        assert_eq!(one.name(), two.name());
        let (_, release) = started.recv().await.unwrap();
        release.send(success(0)).unwrap();
        assert_eq!(finished(&mut one).await.result.unwrap().exit_code, 0);
        assert_eq!(finished(&mut two).await.result.unwrap().exit_code, 0);
        assert!(started.try_recv().is_err(), "the action ran twice");
        assert!(cache.lookup("", &Digest::of_bytes(b"same")).is_some());
    }

    #[tokio::test]
    async fn do_not_cache_is_neither_merged_nor_cached() {
        let (scheduler, cache, mut started) = setup(2, SchedulerConfig::default());
        let mut sub = submission("private", 0);
        sub.do_not_cache = true;
        let mut one = scheduler.submit(sub);
        let mut sub = submission("private", 0);
        sub.do_not_cache = true;
        let mut two = scheduler.submit(sub);
        assert_ne!(one.name(), two.name());
        for _ in 0..2 {
            let (_, release) = started.recv().await.unwrap();
            release.send(success(0)).unwrap();
        }
        finished(&mut one).await;
        finished(&mut two).await;
        assert!(cache.lookup("", &Digest::of_bytes(b"private")).is_none());
    }

    #[tokio::test]
    async fn identical_submissions_share_one_decoded_action() {
        let (scheduler, _, mut started) = setup(1, SchedulerConfig::default());
        let mut blocker = scheduler.submit(submission("blocker", 0));
        let (_, release_blocker) = started.recv().await.unwrap();
        let private = || Submission {
            do_not_cache: true,
            ..submission("private", 0)
        };
        let mut copies = [scheduler.submit(private()), scheduler.submit(private())];
        let third = scheduler.submit(private());
        {
            let state = scheduler.state.lock();
            let shared: Vec<&Arc<SharedAction>> = state
                .active
                .values()
                .map(|op| &op.action)
                .filter(|action| action.action_digest == Digest::of_bytes(b"private"))
                .collect();
            assert_eq!(shared.len(), 3);
            assert!(shared.iter().all(|action| Arc::ptr_eq(action, shared[0])));
            assert_eq!(state.actions.len(), 2, "blocker and one shared action");
        }
        scheduler.cancel(&third.name()).unwrap();
        release_blocker.send(success(0)).unwrap();
        finished(&mut blocker).await;
        for copy in &mut copies {
            let (digest, release) = started.recv().await.unwrap();
            assert_eq!(digest, Digest::of_bytes(b"private"));
            release.send(success(0)).unwrap();
            finished(copy).await;
        }
        assert!(
            scheduler.state.lock().actions.is_empty(),
            "an action outlived its operations"
        );
    }

    #[tokio::test]
    async fn failed_actions_are_not_cached() {
        let (scheduler, cache, mut started) = setup(1, SchedulerConfig::default());
        let mut op = scheduler.submit(submission("fails", 0));
        let (_, release) = started.recv().await.unwrap();
        release.send(success(3)).unwrap();
        assert_eq!(finished(&mut op).await.result.unwrap().exit_code, 3);
        assert!(cache.lookup("", &Digest::of_bytes(b"fails")).is_none());
    }

    #[tokio::test]
    async fn executor_loss_requeues_then_gives_up() {
        let config = SchedulerConfig {
            max_attempts: 2,
            ..Default::default()
        };
        let (scheduler, _, mut started) = setup(1, config);
        let mut op = scheduler.submit(submission("flaky", 0));
        let (_, release) = started.recv().await.unwrap();
        release
            .send(Err(Error::unavailable("worker died")))
            .unwrap();
        let (_, release) = started.recv().await.unwrap();
        assert_eq!(op.state().stage, Stage::Executing);
        release
            .send(Err(Error::unavailable("worker died again")))
            .unwrap();
        let response = finished(&mut op).await;
        let status = response.status.unwrap();
        assert_eq!(status.code, Code::Unavailable as i32);
        assert!(status.message.contains("2 attempts"), "{}", status.message);
    }

    #[tokio::test]
    async fn cancel_queued_and_running() {
        let (scheduler, _, mut started) = setup(1, SchedulerConfig::default());
        let mut running = scheduler.submit(submission("running", 0));
        let (_, _release) = started.recv().await.unwrap();
        let mut queued = scheduler.submit(submission("queued", 0));
        let queued_name = queued.name();
        scheduler.cancel(&queued_name).unwrap();
        assert_eq!(
            finished(&mut queued).await.status.unwrap().code,
            Code::Cancelled as i32
        );
        let running_name = running.name();
        scheduler.cancel(&running_name).unwrap();
        assert_eq!(
            finished(&mut running).await.status.unwrap().code,
            Code::Cancelled as i32
        );
        assert_eq!(scheduler.queue_len(), 0);
        // The executor is free again once the cancelled run is dropped: a
        // new action starts (and is not refused as "already running").
        let _next = scheduler.submit(submission("next", 0));
        let (digest, _) = started.recv().await.unwrap();
        assert_eq!(digest, Digest::of_bytes(b"next"));
        assert_eq!(
            scheduler.cancel("operations/nope").unwrap_err().code(),
            Code::NotFound
        );
    }

    #[tokio::test]
    async fn cancelling_hands_the_executor_over_cleanly() {
        let (scheduler, _, mut started) = setup(1, SchedulerConfig::default());
        for round in 0..20 {
            let blocker = scheduler.submit(submission(&format!("blocker {round}"), 0));
            let (_, _release) = started.recv().await.unwrap();
            let mut next = scheduler.submit(submission(&format!("next {round}"), 0));
            let name = blocker.name();
            scheduler.cancel(&name).unwrap();
            let (digest, release) = started.recv().await.unwrap();
            assert_eq!(digest, Digest::of_bytes(format!("next {round}").as_bytes()));
            release.send(success(0)).unwrap();
            let response = finished(&mut next).await;
            assert!(
                response.status.is_none(),
                "round {round}: {:?}",
                response.status
            );
        }
    }

    #[tokio::test]
    async fn finished_operations_stay_visible_then_expire() {
        let config = SchedulerConfig {
            max_completed: 1,
            ..Default::default()
        };
        let (scheduler, _, mut started) = setup(1, config);
        let mut first = scheduler.submit(submission("first", 0));
        let name = first.name();
        started.recv().await.unwrap().1.send(success(0)).unwrap();
        finished(&mut first).await;
        assert!(scheduler.get(&name).unwrap().is_done());
        let mut second = scheduler.submit(submission("second", 0));
        started.recv().await.unwrap().1.send(success(0)).unwrap();
        finished(&mut second).await;
        assert!(
            scheduler.get(&name).is_none(),
            "oldest finished operation kept past the limit"
        );
    }
}
