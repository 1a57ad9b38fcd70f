//! The driver every scenario shares: N workers issuing one request at a time
//! each, a warm-up phase, then a measured phase bounded by a duration or a
//! count (and always by a time cap), with a progress line on stderr once a
//! second.
//!
//! An operation is a closure called with the worker number and a sequence
//! number unique across the run. Whatever the closure does before returning
//! its future (making a blob, hashing it, building a request) is not timed;
//! the future is.

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use once::Slot;

use crate::procfs::{self, ProcSample};
use crate::stats::{new_histogram, record};

/// What one finished operation did.
#[derive(Default, Debug)]
pub struct Outcome {
    /// Payload bytes moved (blob content).
    pub bytes: u64,
    /// Items handled (blobs, digests, actions).
    pub items: u64,
    /// A scenario-specific mark counted across the run (e.g. a cached
    /// Execute result).
    pub flagged: bool,
    /// Durations (ns) for the extra histograms named in [`RunSpec::extra`],
    /// by index.
    pub extra: Vec<(usize, u64)>,
}

impl Outcome {
    pub fn new(bytes: u64, items: u64) -> Self {
        Outcome {
            bytes,
            items,
            ..Default::default()
        }
    }
}

/// Why an operation did not succeed.
#[derive(Debug)]
pub enum OpError {
    /// Counted as an error; the run goes on until `max_errors`.
    Failed(String),
    /// The scenario has nothing more to do (e.g. its pool of prepared
    /// unique actions ran out): the run ends here, cleanly.
    Exhausted,
}

impl<E: std::fmt::Display> From<E> for OpError {
    fn from(e: E) -> Self {
        OpError::Failed(e.to_string())
    }
}

pub type OpResult = Result<Outcome, OpError>;

/// How to run one measured phase.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// Shown on the progress line.
    pub name: String,
    pub concurrency: usize,
    pub warmup: Duration,
    /// Length of the measured phase when `count` is not set.
    pub duration: Duration,
    /// Measured operations to issue, instead of a duration.
    pub count: Option<u64>,
    /// Hard cap on the measured phase whatever `count` says.
    pub max_time: Duration,
    /// The run stops after this many failed operations.
    pub max_errors: u64,
    /// The server's pid, when it runs on this machine: its memory and CPU
    /// time are sampled at the start and end of the measured phase.
    pub server_pid: Option<u32>,
    /// Names of extra latency histograms the operations fill.
    pub extra: Vec<&'static str>,
    pub progress: bool,
}

/// What a run measured (the measured phase only).
pub struct Measured {
    pub ops: u64,
    pub errors: u64,
    pub first_errors: Vec<String>,
    pub bytes: u64,
    pub items: u64,
    pub flagged: u64,
    /// From the start of the measured phase to the last measured
    /// completion.
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub extra: Vec<(&'static str, Histogram<u64>)>,
    pub warmup_ops: u64,
    pub exhausted: bool,
    pub server: Option<(ProcSample, ProcSample)>,
    pub client: Option<(ProcSample, ProcSample)>,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    phase: AtomicU8,
    seq: AtomicU64,
    tickets: AtomicU64,
    /// Every finished operation, both phases: for the progress line.
    done_ops: AtomicU64,
    done_bytes: AtomicU64,
    errors: AtomicU64,
    exhausted: AtomicBool,
    measure_start: Slot<Instant>,
}

struct WorkerResult {
    ops: u64,
    errors: u64,
    first_errors: Vec<String>,
    bytes: u64,
    items: u64,
    flagged: u64,
    warmup_ops: u64,
    last_done: Option<Instant>,
    latency: Histogram<u64>,
    extra: Vec<Histogram<u64>>,
}

/// Runs `op` as the spec says and returns what the measured phase saw.
pub async fn run<F, Fut>(spec: &RunSpec, op: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = OpResult> + Send + 'static,
{
    let op = Arc::new(op);
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(if spec.warmup.is_zero() {
            MEASURE
        } else {
            WARMUP
        }),
        seq: AtomicU64::new(0),
        tickets: AtomicU64::new(0),
        done_ops: AtomicU64::new(0),
        done_bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        exhausted: AtomicBool::new(false),
        measure_start: Slot::default(),
    });
    let mut samples = (None, None);
    if spec.warmup.is_zero() {
        shared.measure_start.set(Instant::now());
        samples = (
            spec.server_pid.and_then(|p| procfs::sample(Some(p))),
            procfs::sample(None),
        );
    }

    let mut workers = Vec::with_capacity(spec.concurrency);
    for worker in 0..spec.concurrency.max(1) {
        let op = Arc::clone(&op);
        let shared = Arc::clone(&shared);
        let spec = spec.clone();
        workers.push(tokio::spawn(async move {
            worker_loop(worker, &spec, &shared, op.as_ref()).await
        }));
    }

    let progress = spec.progress.then(|| {
        let shared = Arc::clone(&shared);
        let name = spec.name.clone();
        tokio::spawn(progress_loop(name, shared))
    });

    // The controller: warm-up, then the measured phase.
    let controller = {
        let shared = Arc::clone(&shared);
        let spec = spec.clone();
        tokio::spawn(async move {
            let mut samples = (None, None);
            if !spec.warmup.is_zero() {
                sleep_unless_stopped(&shared, spec.warmup).await;
                if shared
                    .phase
                    .compare_exchange(WARMUP, MEASURE, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    shared.measure_start.set(Instant::now());
                    samples = (
                        spec.server_pid.and_then(|p| procfs::sample(Some(p))),
                        procfs::sample(None),
                    );
                }
            }
            let limit = match spec.count {
                Some(_) => spec.max_time,
                None => spec.duration.min(spec.max_time),
            };
            sleep_unless_stopped(&shared, limit).await;
            shared.phase.store(STOP, Ordering::SeqCst);
            samples
        })
    };

    let mut results = Vec::with_capacity(workers.len());
    for worker in workers {
        match worker.await {
            Ok(result) => results.push(result),
            Err(e) => eprintln!("reapi-bench: a worker task failed: {e}"),
        }
    }
    shared.phase.store(STOP, Ordering::SeqCst);
    let end_samples = (
        spec.server_pid.and_then(|p| procfs::sample(Some(p))),
        procfs::sample(None),
    );
    if let Ok(started) = controller.await {
        if samples.0.is_none() && samples.1.is_none() {
            samples = started;
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        let _ = progress.await;
    }

    let mut measured = Measured {
        ops: 0,
        errors: 0,
        first_errors: Vec::new(),
        bytes: 0,
        items: 0,
        flagged: 0,
        elapsed: Duration::ZERO,
        latency: new_histogram(),
        extra: spec
            .extra
            .iter()
            .map(|name| (*name, new_histogram()))
            .collect(),
        warmup_ops: 0,
        exhausted: shared.exhausted.load(Ordering::SeqCst),
        server: samples.0.zip(end_samples.0),
        client: samples.1.zip(end_samples.1),
    };
    let start = shared.measure_start.get();
    let mut last_done: Option<Instant> = None;
    for r in results {
        measured.ops += r.ops;
        measured.errors += r.errors;
        measured.bytes += r.bytes;
        measured.items += r.items;
        measured.flagged += r.flagged;
        measured.warmup_ops += r.warmup_ops;
        for e in r.first_errors {
            if measured.first_errors.len() < 5 {
                measured.first_errors.push(e);
            }
        }
        let _ = measured.latency.add(&r.latency);
        for (mine, theirs) in measured.extra.iter_mut().zip(&r.extra) {
            let _ = mine.1.add(theirs);
        }
        last_done = last_done.max(r.last_done);
    }
    if let (Some(start), Some(end)) = (start, last_done) {
        measured.elapsed = end.saturating_duration_since(start);
    }
    measured
}

async fn sleep_unless_stopped(shared: &Shared, total: Duration) {
    let until = Instant::now() + total;
    while Instant::now() < until && shared.phase.load(Ordering::SeqCst) != STOP {
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

async fn worker_loop<F, Fut>(worker: usize, spec: &RunSpec, shared: &Shared, op: &F) -> WorkerResult
where
    F: Fn(usize, u64) -> Fut,
    Fut: Future<Output = OpResult>,
{
    let mut r = WorkerResult {
        ops: 0,
        errors: 0,
        first_errors: Vec::new(),
        bytes: 0,
        items: 0,
        flagged: 0,
        warmup_ops: 0,
        last_done: None,
        latency: new_histogram(),
        extra: spec.extra.iter().map(|_| new_histogram()).collect(),
    };
    loop {
        let phase = shared.phase.load(Ordering::SeqCst);
        if phase == STOP {
            break;
        }
        let measured = phase == MEASURE;
        if measured {
            if let Some(count) = spec.count {
                if shared.tickets.fetch_add(1, Ordering::SeqCst) >= count {
                    break;
                }
            }
        }
        let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
        let future = op(worker, seq);
        let started = Instant::now();
        let result = future.await;
        let done = Instant::now();
        let ns = done.duration_since(started).as_nanos() as u64;
        shared.done_ops.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(outcome) => {
                shared
                    .done_bytes
                    .fetch_add(outcome.bytes, Ordering::Relaxed);
                if !measured {
                    r.warmup_ops += 1;
                    continue;
                }
                r.ops += 1;
                r.bytes += outcome.bytes;
                r.items += outcome.items;
                r.flagged += u64::from(outcome.flagged);
                record(&mut r.latency, ns);
                for (index, value) in outcome.extra {
                    if let Some(h) = r.extra.get_mut(index) {
                        record(h, value);
                    }
                }
                r.last_done = Some(done);
            }
            Err(OpError::Exhausted) => {
                shared.exhausted.store(true, Ordering::SeqCst);
                shared.phase.store(STOP, Ordering::SeqCst);
                break;
            }
            Err(OpError::Failed(message)) => {
                if measured {
                    r.errors += 1;
                    r.last_done = Some(done);
                }
                if r.first_errors.len() < 3 {
                    r.first_errors.push(message);
                }
                let total = shared.errors.fetch_add(1, Ordering::SeqCst) + 1;
                if total >= spec.max_errors {
                    shared.phase.store(STOP, Ordering::SeqCst);
                    break;
                }
            }
        }
    }
    r
}

async fn progress_loop(name: String, shared: Arc<Shared>) {
    let started = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.tick().await;
    loop {
        interval.tick().await;
        let now = Instant::now();
        let ops = shared.done_ops.load(Ordering::Relaxed);
        let bytes = shared.done_bytes.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let phase = match shared.phase.load(Ordering::SeqCst) {
            WARMUP => "warm-up",
            MEASURE => "measure",
            _ => "stopping",
        };
        let mut line = format!(
            "[{name}] {phase} {:>4.0}s: {:.0} ops/s",
            now.duration_since(started).as_secs_f64(),
            (ops - last.1) as f64 / dt,
        );
        if bytes > last.2 {
            line.push_str(&format!(", {:.1} MB/s", (bytes - last.2) as f64 / dt / 1e6));
        }
        line.push_str(&format!(
            ", {ops} done, {} errors",
            shared.errors.load(Ordering::Relaxed)
        ));
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
        last = (now, ops, bytes);
    }
}

/// A value set once and read later, without a lock on the hot path.
mod once {
    use std::sync::OnceLock;

    pub struct Slot<T>(OnceLock<T>);

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Slot(OnceLock::new())
        }
    }

    impl<T: Copy> Slot<T> {
        pub fn set(&self, value: T) {
            let _ = self.0.set(value);
        }

        pub fn get(&self) -> Option<T> {
            self.0.get().copied()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(count: Option<u64>) -> RunSpec {
        RunSpec {
            name: "test".into(),
            concurrency: 4,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
            count,
            max_time: Duration::from_secs(5),
            max_errors: 10,
            server_pid: None,
            extra: vec!["inner"],
            progress: false,
        }
    }

    #[tokio::test]
    async fn counts_exactly_in_count_mode() {
        let m = run(&spec(Some(100)), |_, _| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(Outcome {
                bytes: 10,
                items: 2,
                flagged: true,
                extra: vec![(0, 500)],
            })
        })
        .await;
        assert_eq!(m.ops, 100);
        assert_eq!(m.bytes, 1000);
        assert_eq!(m.items, 200);
        assert_eq!(m.flagged, 100);
        assert_eq!(m.latency.len(), 100);
        assert_eq!(m.extra[0].1.len(), 100);
        assert!(m.warmup_ops > 0);
        assert!(m.elapsed > Duration::ZERO);
    }

    #[tokio::test]
    async fn errors_stop_the_run_at_max_errors() {
        let spec = RunSpec {
            warmup: Duration::ZERO,
            duration: Duration::from_secs(5),
            ..spec(None)
        };
        let started = Instant::now();
        let m = run(&spec, |_, seq| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if seq % 2 == 0 {
                Err(OpError::Failed("even".into()))
            } else {
                Ok(Outcome::new(1, 1))
            }
        })
        .await;
        assert!(m.errors >= 10, "{}", m.errors);
        assert!(m.ops > 0);
        assert!(!m.first_errors.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn exhaustion_ends_the_run() {
        let m = run(&spec(None), |_, seq| async move {
            if seq >= 30 {
                Err(OpError::Exhausted)
            } else {
                Ok(Outcome::new(0, 1))
            }
        })
        .await;
        assert!(m.exhausted);
        assert!(m.ops + m.warmup_ops <= 30);
    }
}
