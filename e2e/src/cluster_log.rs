//! Reading what a cluster's processes log, at the levels the harness sets
//! ([`reapi_test_support::launch::cluster::RUST_LOG`]: debug for scheduling
//! and execution).
//!
//! The binaries log with `tracing`'s default format, one event a line:
//!
//! ```text
//! 2025-01-01T00:00:00.000000Z DEBUG reapi_executor::worker::lease: lease accepted lease=7 action=HASH/SIZE executor=ID/2
//! 2025-01-01T00:00:00.000000Z DEBUG action{digest=HASH/SIZE executor=ID/2}: reapi_executor::action: command finished exit_code=0 timed_out=false
//! 2025-01-01T00:00:00.000000Z  WARN reapi_scheduler::scheduler::leases: action lost its worker; requeued action=HASH/SIZE attempt=1 reason="worker ID was lost: ..."
//! ```
//!
//! The messages the tests look for are the constants below, each with the
//! process that logs it; [`field`] and [`span_field`] read a line's values.

use std::collections::BTreeMap;

use reapi_test_support::launch::cluster::Cluster;

/// Worker, debug: it took a lease and claimed an executor for it
/// (`lease=N action=DIGEST executor=ID`).
pub const LEASE_ACCEPTED: &str = "lease accepted";

/// Worker, debug, in the span `action{digest=DIGEST executor=ID}`: the
/// action's command ended (`exit_code=N timed_out=BOOL`); its outputs are
/// uploaded and its result reported next.
pub const COMMAND_FINISHED: &str = "command finished";

/// Worker, info: a lease ended in an error, reported as such (`lease=N`).
pub const LEASE_WITHOUT_RESULT: &str = "lease ended without a result";

/// Worker, warn: the link to a scheduler broke and the runs of its leases
/// were killed (`scheduler=ADDR stopped=N`).
pub const LINK_RUNS_STOPPED: &str = "link lost; its runs were stopped";

/// Worker, warn: the link to a scheduler broke (`scheduler=ADDR`).
pub const LINK_LOST: &str = "link to scheduler lost; reconnecting";

/// Worker, info: SIGTERM received, no new leases (`running=N`).
pub const DRAINING: &str = "draining: no new leases";

/// Worker, info: the drain ended with every lease finished and reported.
pub const DRAINED: &str = "drained: every lease finished and was reported";

/// Worker, warn: the drain grace ran out with leases still running.
pub const DRAIN_ABANDONED: &str = "grace period over; running leases abandoned";

/// Scheduler, warn: a lease was lost with its worker and the action went
/// back to the queue (`action=DIGEST attempt=N reason="..."`).
pub const ACTION_REQUEUED: &str = "action lost its worker; requeued";

/// Scheduler, warn: an action was lost too often and failed.
pub const ACTION_LOST_TOO_OFTEN: &str = "action lost its worker too often; failing it";

/// Scheduler, warn: a worker's link ended while it held leases, which were
/// requeued (`worker=ID leases=N reason="..."`).
pub const WORKER_LOST: &str = "worker lost; its leases were requeued";

/// Scheduler, info: a worker's link ended without a goodbye while it held
/// no lease (`worker=ID reason=...`).
pub const WORKER_DISCONNECTED: &str = "worker disconnected";

/// Worker, warn: stopping, it waited in vain for a scheduler to read its
/// last messages and close the link.
pub const LINK_CLOSE_TIMED_OUT: &str = "the scheduler did not close the link in time";

/// Scheduler, info: a worker said goodbye (`worker=ID reason=...`).
pub const WORKER_LEAVING: &str = "worker is leaving";

/// Scheduler, info: a worker that said goodbye left holding no lease
/// (`worker=ID`).
pub const WORKER_LEFT_CLEANLY: &str = "worker left cleanly";

/// Scheduler, info: a worker linked (`worker=ID address=... pools=...`).
pub const WORKER_JOINED: &str = "worker joined";

/// Scheduler, debug: an Execute from a client went on to the action's home,
/// another scheduler (`action=DIGEST home=ID`).
pub const EXECUTE_FORWARDED: &str = "Execute forwarded to the action's home";

/// The lines of `log` whose message is `message`: the text after the
/// event's target (`module::path: `) starts with it.
/// Panics unless worker `i`'s log says it drained once, with every lease
/// finished and reported, nothing abandoned or stopped, and its links
/// closed by the schedulers in time.
pub fn assert_drained_cleanly(log: &str, i: usize) {
    assert_eq!(
        count(log, DRAINED),
        1,
        "worker {i} did not log `{DRAINED}`:\n{log}"
    );
    for message in [
        DRAIN_ABANDONED,
        LEASE_WITHOUT_RESULT,
        LINK_RUNS_STOPPED,
        LINK_LOST,
        LINK_CLOSE_TIMED_OUT,
    ] {
        let lines = lines_with(log, message);
        assert!(
            lines.is_empty(),
            "drained worker {i} logged `{message}`:\n{}",
            lines.join("\n")
        );
    }
}

pub fn lines_with<'a>(log: &'a str, message: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|line| message_of(line).is_some_and(|m| m.starts_with(message)))
        .collect()
}

/// How many lines of `log` have the message `message`.
pub fn count(log: &str, message: &str) -> usize {
    lines_with(log, message).len()
}

/// The levels `tracing` prints.
const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];

/// The text of a line after its timestamp, level, spans and target, e.g.
/// `lease accepted lease=7 ...`, or `None` for a line not in that format.
fn message_of(line: &str) -> Option<&str> {
    let (_timestamp, rest) = line.trim_start().split_once(' ')?;
    let (level, mut rest) = rest.trim_start().split_once(' ')?;
    if !LEVELS.contains(&level) {
        return None;
    }
    loop {
        // Spans with fields: `name{...}: ` (nested ones: `a{...}:b{...}: `);
        // then the target, a path: `module::path: `.
        let end = rest.find([' ', '{'])?;
        if rest[end..].starts_with('{') {
            rest = &rest[rest.find("}: ")? + 3..];
            continue;
        }
        return rest[..end].ends_with(':').then(|| &rest[end + 1..]);
    }
}

/// The value of the event field `name` in `line` (`name=value` or
/// `name="quoted value"`, unquoted), or `None`. Span fields are not
/// looked at: see [`span_field`].
pub fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let message = message_of(line)?;
    value_after(message, &format!(" {name}="))
}

/// The value of the field `name` of the span `span` the event is in
/// (`span{name=value ...}: `), or `None`.
pub fn span_field<'a>(line: &'a str, span: &str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("{span}{{"))? + span.len() + 1;
    let fields = &line[start..start + line[start..].find("}:")?];
    // Span fields here are digests and ids: no spaces, no quotes.
    fields
        .split(' ')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// The value following `key` (which includes the leading space and `=`).
fn value_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(key)? + key.len();
    let rest = &text[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => return Some(&quoted[..i]),
                _ => escaped = false,
            }
        }
        return Some(quoted);
    }
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The action digests of a worker's accepted leases, in order (an action
/// leased twice appears twice).
pub fn accepted_actions(worker_log: &str) -> Vec<String> {
    lines_with(worker_log, LEASE_ACCEPTED)
        .into_iter()
        .filter_map(|line| field(line, "action"))
        .map(str::to_string)
        .collect()
}

/// The commands a worker finished: action digest and exit code, in order.
pub fn finished_commands(worker_log: &str) -> Vec<(String, Option<i64>)> {
    lines_with(worker_log, COMMAND_FINISHED)
        .into_iter()
        .filter_map(|line| {
            let digest = span_field(line, "action", "digest")?;
            let code = field(line, "exit_code").and_then(|c| c.parse().ok());
            Some((digest.to_string(), code))
        })
        .collect()
}

/// The actions a scheduler requeued after losing their worker, with the
/// reason it gave, in order.
pub fn requeued_actions(scheduler_log: &str) -> Vec<(String, String)> {
    lines_with(scheduler_log, ACTION_REQUEUED)
        .into_iter()
        .filter_map(|line| {
            Some((
                field(line, "action")?.to_string(),
                field(line, "reason").unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// What one worker of a cluster logged about its leases.
#[derive(Clone, Debug)]
pub struct WorkerLeases {
    /// Its position in the cluster (`worker-N/`).
    pub index: usize,
    /// The id it announced.
    pub id: String,
    /// The action digests of the leases it accepted, in order.
    pub accepted: Vec<String>,
    /// The commands it finished (digest, exit code), in order.
    pub finished: Vec<(String, Option<i64>)>,
}

impl WorkerLeases {
    /// Leases accepted whose command has not finished (yet, or ever).
    pub fn unfinished(&self) -> usize {
        self.accepted.len().saturating_sub(self.finished.len())
    }

    /// Panics unless the commands it finished with status 0 are exactly the
    /// leases it accepted (as sets): every lease it took ran to success,
    /// none was cut off.
    pub fn assert_every_lease_succeeded(&self) {
        let mut accepted = self.accepted.clone();
        let mut succeeded: Vec<String> = self
            .finished
            .iter()
            .filter(|(_, code)| *code == Some(0))
            .map(|(digest, _)| digest.clone())
            .collect();
        accepted.sort();
        succeeded.sort();
        assert_eq!(
            accepted, succeeded,
            "worker {} ({}): the commands that finished with status 0 are not the leases it took",
            self.index, self.id
        );
    }
}

/// What every worker of `cluster` logged about its leases so far.
pub fn worker_leases(cluster: &Cluster) -> Vec<WorkerLeases> {
    cluster
        .workers()
        .iter()
        .enumerate()
        .map(|(index, worker)| {
            let log = worker.log();
            WorkerLeases {
                index,
                id: worker.id().to_string(),
                accepted: accepted_actions(&log),
                finished: finished_commands(&log),
            }
        })
        .collect()
}

/// Commands finished so far on every worker of `cluster` together.
pub fn commands_finished(cluster: &Cluster) -> usize {
    cluster
        .workers()
        .iter()
        .map(|worker| count(&worker.log(), COMMAND_FINISHED))
        .sum()
}

/// How many times each action was leased to (accepted by) one of the
/// workers `leases` describes, over all of them.
pub fn lease_counts(leases: &[WorkerLeases]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for worker in leases {
        for action in &worker.accepted {
            *counts.entry(action.as_str()).or_insert(0) += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCEPTED: &str = "2025-01-01T00:00:00.000001Z DEBUG reapi_executor::worker::lease: \
        lease accepted lease=7 action=ab12/345 executor=w1/2";
    const FINISHED: &str = "2025-01-01T00:00:00.000002Z DEBUG action{digest=ab12/345 \
        executor=w1/2}: reapi_executor::action: command finished exit_code=0 timed_out=false";
    const REQUEUED: &str = "2025-01-01T00:00:00.000003Z  WARN reapi_scheduler::scheduler::leases: \
        action lost its worker; requeued action=cd34/56 attempt=1 \
        reason=\"worker w1 was lost: its stream failed: \\\"boom\\\"\"";
    const LOST: &str = "2025-01-01T00:00:00.000004Z  WARN reapi_scheduler::scheduler::link: \
        worker lost; its leases were requeued worker=w1 leases=3 reason=\"its stream ended\"";

    #[test]
    fn finds_messages_after_the_target_and_spans() {
        let log = [ACCEPTED, FINISHED, REQUEUED, LOST, "not a log line"].join("\n");
        assert_eq!(lines_with(&log, LEASE_ACCEPTED), [ACCEPTED]);
        assert_eq!(lines_with(&log, COMMAND_FINISHED), [FINISHED]);
        assert_eq!(lines_with(&log, ACTION_REQUEUED), [REQUEUED]);
        assert_eq!(count(&log, WORKER_LOST), 1);
        // A message is matched at its start, not anywhere in a line.
        assert_eq!(count(&log, "requeued"), 0);
    }

    #[test]
    fn reads_event_and_span_fields() {
        assert_eq!(field(ACCEPTED, "lease"), Some("7"));
        assert_eq!(field(ACCEPTED, "action"), Some("ab12/345"));
        assert_eq!(field(ACCEPTED, "missing"), None);
        assert_eq!(field(FINISHED, "exit_code"), Some("0"));
        assert_eq!(field(FINISHED, "digest"), None);
        assert_eq!(span_field(FINISHED, "action", "digest"), Some("ab12/345"));
        assert_eq!(span_field(FINISHED, "action", "executor"), Some("w1/2"));
        assert_eq!(
            field(REQUEUED, "reason"),
            Some("worker w1 was lost: its stream failed: \\\"boom\\\"")
        );
        assert_eq!(field(LOST, "leases"), Some("3"));
    }

    #[test]
    fn collects_leases_commands_and_requeues() {
        let log = [ACCEPTED, FINISHED, REQUEUED].join("\n");
        assert_eq!(accepted_actions(&log), ["ab12/345"]);
        assert_eq!(finished_commands(&log), [("ab12/345".to_string(), Some(0))]);
        assert_eq!(
            requeued_actions(&log),
            [(
                "cd34/56".to_string(),
                "worker w1 was lost: its stream failed: \\\"boom\\\"".to_string()
            )]
        );
    }
}
