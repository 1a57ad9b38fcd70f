//! The queue of one class of actions (equal requirements): lower priority
//! values first, as REAPI defines; at equal priority, round-robin across
//! the builds that queued them (`tool_invocation_id`), so a large build
//! does not starve a small one; first-in first-out within one build.
//!
//! Removal is lazy: the scheduler cancels a queued operation by marking it,
//! and entries whose operation is no longer queued are dropped when they
//! reach the head (`live` says which are still wanted). Every operation is
//! O(log priorities) plus the stale entries it skips, whatever the length
//! of the queue.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// The build an action belongs to; the empty string for clients that send
/// no request metadata.
pub type BuildId = Arc<str>;

pub struct FairQueue<T> {
    levels: BTreeMap<i32, Level<T>>,
    /// Entries held, stale ones included.
    len: usize,
}

/// The actions of one priority.
struct Level<T> {
    /// Builds with queued actions, in turn order; a build is here exactly
    /// when its entry in `builds` is not empty.
    turns: VecDeque<BuildId>,
    builds: HashMap<BuildId, VecDeque<T>>,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            turns: VecDeque::new(),
            builds: HashMap::new(),
        }
    }
}

impl<T> Default for FairQueue<T> {
    fn default() -> Self {
        FairQueue {
            levels: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<T> FairQueue<T> {
    /// Queues `item` behind everything of its build and priority.
    pub fn push_back(&mut self, priority: i32, build: &BuildId, item: T) {
        let level = self.levels.entry(priority).or_default();
        let queue = level.builds.entry(build.clone()).or_default();
        if queue.is_empty() {
            level.turns.push_back(build.clone());
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// Queues `item` ahead of everything of its priority: an action that
    /// lost its executor goes first again.
    pub fn push_front(&mut self, priority: i32, build: &BuildId, item: T) {
        let level = self.levels.entry(priority).or_default();
        let queue = level.builds.entry(build.clone()).or_default();
        if queue.is_empty() {
            level.turns.push_front(build.clone());
        } else if let Some(at) = level.turns.iter().position(|b| b == build) {
            // Bounded by the number of builds queued at this priority.
            let turn = level.turns.remove(at).expect("position is in range");
            level.turns.push_front(turn);
        }
        queue.push_front(item);
        self.len += 1;
    }

    /// The item that would be popped next, with its priority; stale entries
    /// before it are dropped.
    pub fn peek(&mut self, live: impl Fn(&T) -> bool) -> Option<(i32, &T)> {
        self.drop_stale_heads(&live);
        let (priority, level) = self.levels.iter().next()?;
        let build = level.turns.front()?;
        let item = level.builds.get(build)?.front()?;
        Some((*priority, item))
    }

    /// Takes the next live item: the lowest priority value, the build whose
    /// turn it is, its oldest item. That build then goes to the back of the
    /// turns.
    pub fn pop(&mut self, live: impl Fn(&T) -> bool) -> Option<T> {
        self.drop_stale_heads(&live);
        let mut entry = self.levels.first_entry()?;
        let level = entry.get_mut();
        let build = level.turns.pop_front()?;
        let queue = level.builds.get_mut(&build)?;
        let item = queue.pop_front()?;
        if queue.is_empty() {
            level.builds.remove(&build);
        } else {
            level.turns.push_back(build);
        }
        if level.turns.is_empty() {
            entry.remove();
        }
        self.len -= 1;
        Some(item)
    }

    /// Entries held, including stale ones not yet dropped.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops stale entries until the head is live (or the queue empty).
    fn drop_stale_heads(&mut self, live: &impl Fn(&T) -> bool) {
        while let Some(mut entry) = self.levels.first_entry() {
            let level = entry.get_mut();
            let Some(build) = level.turns.front().cloned() else {
                entry.remove();
                continue;
            };
            let queue = level.builds.get_mut(&build);
            match queue.and_then(|q| q.front().map(live)) {
                Some(true) => return,
                Some(false) => {
                    let queue = level.builds.get_mut(&build).expect("checked above");
                    queue.pop_front();
                    self.len -= 1;
                    if queue.is_empty() {
                        level.builds.remove(&build);
                        level.turns.pop_front();
                    }
                }
                None => {
                    // A turn without items breaks the invariant; repair it.
                    level.builds.remove(&build);
                    level.turns.pop_front();
                }
            }
            if level.turns.is_empty() {
                entry.remove();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(name: &str) -> BuildId {
        Arc::from(name)
    }

    fn drain(queue: &mut FairQueue<&'static str>) -> Vec<&'static str> {
        std::iter::from_fn(|| queue.pop(|_| true)).collect()
    }

    #[test]
    fn lower_priority_value_first_then_fifo() {
        let mut q = FairQueue::default();
        let b = build("");
        q.push_back(5, &b, "late-low");
        q.push_back(0, &b, "first");
        q.push_back(0, &b, "second");
        q.push_back(-3, &b, "urgent");
        assert_eq!(q.peek(|_| true), Some((-3, &"urgent")));
        assert_eq!(drain(&mut q), ["urgent", "first", "second", "late-low"]);
        assert!(q.is_empty());
    }

    #[test]
    fn builds_take_turns_at_equal_priority() {
        let mut q = FairQueue::default();
        let (big, small) = (build("big"), build("small"));
        for item in ["b1", "b2", "b3", "b4"] {
            q.push_back(0, &big, item);
        }
        q.push_back(0, &small, "s1");
        q.push_back(0, &small, "s2");
        assert_eq!(drain(&mut q), ["b1", "s1", "b2", "s2", "b3", "b4"]);
    }

    #[test]
    fn a_requeued_item_goes_first() {
        let mut q = FairQueue::default();
        let (a, b) = (build("a"), build("b"));
        q.push_back(0, &a, "a1");
        q.push_back(0, &b, "b1");
        q.push_back(0, &b, "b2");
        q.push_front(0, &b, "b0");
        assert_eq!(drain(&mut q), ["b0", "a1", "b1", "b2"]);
        q.push_front(1, &a, "alone");
        assert_eq!(drain(&mut q), ["alone"]);
    }

    #[test]
    fn stale_entries_are_skipped_and_dropped() {
        let mut q = FairQueue::default();
        let (a, b) = (build("a"), build("b"));
        q.push_back(0, &a, "gone-1");
        q.push_back(0, &b, "kept");
        q.push_back(0, &a, "gone-2");
        q.push_back(2, &a, "later");
        let live = |item: &&str| !item.starts_with("gone");
        assert_eq!(q.peek(live), Some((0, &"kept")));
        assert_eq!(q.len(), 2, "the stale heads before it are dropped");
        assert_eq!(q.pop(live), Some("kept"));
        assert_eq!(q.pop(live), Some("later"));
        assert_eq!(q.pop(live), None);
        assert!(q.is_empty());
    }
}
