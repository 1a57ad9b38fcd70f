//! The action queue: ordered by priority (lower values run sooner, as REAPI
//! defines) and first-in first-out within a priority.

use std::collections::BTreeMap;

/// A queued item's place; used to remove it (cancel, dispatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    priority: i32,
    seq: u64,
}

pub struct PriorityQueue<T> {
    entries: BTreeMap<Slot, T>,
    next_seq: u64,
}

impl<T> Default for PriorityQueue<T> {
    fn default() -> Self {
        PriorityQueue {
            entries: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> PriorityQueue<T> {
    pub fn push(&mut self, priority: i32, item: T) -> Slot {
        let slot = Slot {
            priority,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.entries.insert(slot, item);
        slot
    }

    pub fn remove(&mut self, slot: Slot) -> Option<T> {
        self.entries.remove(&slot)
    }

    /// Items in the order they should run.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &T)> {
        self.entries.iter().map(|(slot, item)| (*slot, item))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_priority_value_first_then_fifo() {
        let mut q = PriorityQueue::default();
        q.push(5, "late-low");
        let a = q.push(0, "first");
        q.push(0, "second");
        q.push(-3, "urgent");
        let order: Vec<_> = q.iter().map(|(_, v)| *v).collect();
        assert_eq!(order, ["urgent", "first", "second", "late-low"]);
        assert_eq!(q.remove(a), Some("first"));
        assert_eq!(q.remove(a), None);
        assert_eq!(q.len(), 3);
    }
}
