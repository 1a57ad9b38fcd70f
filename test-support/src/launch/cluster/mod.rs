//! A cluster of `reapi-scheduler` and `reapi-worker` processes for a test,
//! each a child process with its own data directory and log, all killed when
//! the [`Cluster`] is dropped.
//!
//! Schedulers announce themselves like `reapi-server`
//! (`reapi-scheduler listening on ADDR, data in DIR`), workers once linked to
//! a scheduler (`reapi-worker ID ready, data in DIR`); [`Cluster::start`]
//! returns when every process has. Several schedulers are each given the
//! full list of schedulers, their own included (`--schedulers`), so their
//! ports are picked before any starts; a single scheduler listens on a port
//! the kernel picks. Workers get every scheduler's address.
//!
//! Everything lives under one temporary directory: `scheduler-0/`,
//! `worker-0/`, ... each with `data/` and `stderr.log`. When the test fails,
//! the end of each process's log is printed.

mod member;
mod options;

use std::net::SocketAddr;
use std::panic;
use std::path::Path;
use std::thread;

use tempfile::TempDir;

use crate::launch::ports;

pub use member::{Scheduler, Worker, RUST_LOG, SCHEDULER, START_TIMEOUT, WORKER};
pub use options::{ClusterOptions, S3Bucket, DEFAULT_EXECUTORS};

use member::Launch;
use options::{scheduler_args, worker_args};

/// Lines of each process's log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

/// Schedulers and workers, killed when dropped.
pub struct Cluster {
    options: ClusterOptions,
    schedulers: Vec<Scheduler>,
    workers: Vec<Worker>,
    /// Holds every process's directory; removed last.
    dir: TempDir,
}

impl Cluster {
    /// Starts `schedulers` schedulers, then `workers` workers, each group in
    /// parallel, and returns once every one has announced itself.
    pub fn start(schedulers: usize, workers: usize, options: ClusterOptions) -> Cluster {
        assert!(schedulers > 0, "a cluster needs a scheduler");
        let dir = tempfile::Builder::new()
            .prefix("reapi-e2e-cluster-")
            .tempdir()
            .expect("cannot create a temporary directory for the cluster");
        let listens: Vec<SocketAddr> = if schedulers == 1 {
            vec![SocketAddr::from(([127, 0, 0, 1], 0))]
        } else {
            ports::free_addrs(schedulers)
        };
        let launches: Vec<(Launch, SocketAddr)> = listens
            .iter()
            .enumerate()
            .map(|(i, &listen)| {
                let mut launch = Launch::new(SCHEDULER, i, dir.path(), &options);
                launch
                    .args
                    .extend(scheduler_args(listen, &listens, &options));
                (launch, listen)
            })
            .collect();
        let schedulers = in_parallel(launches, |(launch, listen)| {
            Scheduler::start(launch, listen)
        });
        let mut cluster = Cluster {
            options,
            schedulers,
            workers: Vec::new(),
            dir,
        };
        let launches: Vec<Launch> = (0..workers).map(|i| cluster.worker_launch(i)).collect();
        cluster.workers = in_parallel(launches, Worker::start);
        cluster
    }

    /// The directory holding every process's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn scheduler(&self, i: usize) -> &Scheduler {
        &self.schedulers[i]
    }

    pub fn scheduler_mut(&mut self, i: usize) -> &mut Scheduler {
        &mut self.schedulers[i]
    }

    pub fn schedulers(&self) -> &[Scheduler] {
        &self.schedulers
    }

    /// Every scheduler's address, in order (for a load balancer).
    pub fn scheduler_addrs(&self) -> Vec<SocketAddr> {
        self.schedulers.iter().map(Scheduler::addr).collect()
    }

    pub fn worker(&self, i: usize) -> &Worker {
        &self.workers[i]
    }

    pub fn worker_mut(&mut self, i: usize) -> &mut Worker {
        &mut self.workers[i]
    }

    pub fn workers(&self) -> &[Worker] {
        &self.workers
    }

    /// Starts one more worker and returns it once it is ready.
    pub fn add_worker(&mut self) -> &mut Worker {
        let launch = self.worker_launch(self.workers.len());
        self.workers.push(Worker::start(launch));
        self.workers.last_mut().expect("just pushed")
    }

    /// Starts one more worker with its own `options` instead of the
    /// cluster's (their worker fields: executors, `--cas`, drain grace,
    /// extra arguments, bucket), e.g. an execution-only worker
    /// (`--replica_space 0`) next to storage-only ones (`executors: 0`),
    /// and returns it once it is ready.
    pub fn add_worker_with(&mut self, options: &ClusterOptions) -> &mut Worker {
        self.add_workers_with(1, options)
            .last_mut()
            .expect("just started one")
    }

    /// Starts `count` more workers with `options` (see
    /// [`Cluster::add_worker_with`]) in parallel, and returns them once
    /// every one is ready. They are the last `count` of
    /// [`Cluster::workers`].
    pub fn add_workers_with(&mut self, count: usize, options: &ClusterOptions) -> &mut [Worker] {
        let first = self.workers.len();
        let launches: Vec<Launch> = (first..first + count)
            .map(|i| self.worker_launch_with(i, options))
            .collect();
        let started = in_parallel(launches, Worker::start);
        self.workers.extend(started);
        &mut self.workers[first..]
    }

    /// Kills scheduler `i` if it still runs and starts it again on the same
    /// address and data directory.
    pub fn restart_scheduler(&mut self, i: usize) -> &mut Scheduler {
        self.schedulers[i].restart();
        &mut self.schedulers[i]
    }

    /// Kills worker `i` if it still runs and starts it again on the same
    /// data directory.
    pub fn restart_worker(&mut self, i: usize) -> &mut Worker {
        self.workers[i].restart();
        &mut self.workers[i]
    }

    fn worker_launch(&self, index: usize) -> Launch {
        self.worker_launch_with(index, &self.options)
    }

    fn worker_launch_with(&self, index: usize, options: &ClusterOptions) -> Launch {
        let mut launch = Launch::new(WORKER, index, self.dir.path(), options);
        launch
            .args
            .extend(worker_args(&self.scheduler_addrs(), options));
        launch
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Workers first, so they do not log a flood of reconnects.
        for worker in &mut self.workers {
            worker.kill();
        }
        for scheduler in &mut self.schedulers {
            scheduler.kill();
        }
        if thread::panicking() {
            for scheduler in &mut self.schedulers {
                eprintln!("{}", scheduler.report(Some(LOG_TAIL_LINES)));
            }
            for worker in &mut self.workers {
                eprintln!(
                    "{} (id {})",
                    worker.report(Some(LOG_TAIL_LINES)),
                    worker.id()
                );
            }
        }
    }
}

/// Runs `start` on every input, each on its own thread, and returns the
/// results in order. If any panics, the others' results are dropped (which
/// kills the processes they started) and the first panic goes on.
fn in_parallel<I: Send, T: Send>(inputs: Vec<I>, start: impl Fn(I) -> T + Sync) -> Vec<T> {
    let results: Vec<thread::Result<T>> = thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .into_iter()
            .map(|input| {
                let start = &start;
                scope.spawn(move || start(input))
            })
            .collect();
        handles.into_iter().map(|handle| handle.join()).collect()
    });
    let mut started = Vec::with_capacity(results.len());
    let mut first_panic = None;
    for result in results {
        match result {
            Ok(value) => started.push(value),
            Err(payload) => {
                first_panic.get_or_insert(payload);
            }
        }
    }
    if let Some(payload) = first_panic {
        drop(started);
        panic::resume_unwind(payload);
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_parallel_keeps_the_order() {
        assert_eq!(in_parallel(vec![3, 1, 2], |n| n * 10), [30, 10, 20]);
    }

    #[test]
    #[should_panic(expected = "two is bad")]
    fn in_parallel_passes_on_a_panic() {
        in_parallel(vec![1, 2, 3], |n| {
            assert!(n != 2, "two is bad");
            n
        });
    }
}
