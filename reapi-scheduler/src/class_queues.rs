//! Queued actions, one [`FairQueue`] per class of equal requirements. A
//! free executor only ever looks at the heads of the classes it can
//! satisfy, so dispatch costs the same with ten or a hundred thousand
//! actions queued. A class goes away when its queue empties: clients
//! cannot grow the set of classes without bound by varying `memory`.

use std::collections::HashMap;

use reapi_core::platform::Requirements;

use crate::fair_queue::{BuildId, FairQueue};
use crate::operation::OperationId;

/// A queue entry: the operation and the ticket its `Queued` phase holds.
/// An entry whose ticket no longer matches is stale (cancelled, or queued
/// again elsewhere in the line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub op: OperationId,
    pub seq: u64,
}

/// Names a class while it has queued actions.
pub(crate) type ClassId = usize;

pub(crate) struct Class {
    pub requirements: Requirements,
    pub queue: FairQueue<Ticket>,
}

#[derive(Default)]
pub(crate) struct ClassQueues {
    slots: Vec<Option<Class>>,
    index: HashMap<Requirements, ClassId>,
    free_slots: Vec<ClassId>,
}

impl ClassQueues {
    pub fn push(
        &mut self,
        requirements: &Requirements,
        priority: i32,
        build: &BuildId,
        ticket: Ticket,
        front: bool,
    ) {
        let id = match self.index.get(requirements) {
            Some(id) => *id,
            None => self.add_class(requirements.clone()),
        };
        let queue = &mut self.slots[id]
            .as_mut()
            .expect("indexed classes exist")
            .queue;
        if front {
            queue.push_front(priority, build, ticket);
        } else {
            queue.push_back(priority, build, ticket);
        }
    }

    fn add_class(&mut self, requirements: Requirements) -> ClassId {
        let class = Class {
            requirements: requirements.clone(),
            queue: FairQueue::default(),
        };
        let id = match self.free_slots.pop() {
            Some(id) => {
                self.slots[id] = Some(class);
                id
            }
            None => {
                self.slots.push(Some(class));
                self.slots.len() - 1
            }
        };
        self.index.insert(requirements, id);
        id
    }

    /// Every class with entries, for dispatch to look at.
    pub fn classes_mut(&mut self) -> impl Iterator<Item = (ClassId, &mut Class)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(id, slot)| slot.as_mut().map(|class| (id, class)))
    }

    pub fn class_mut(&mut self, id: ClassId) -> Option<&mut Class> {
        self.slots.get_mut(id).and_then(Option::as_mut)
    }

    /// Drops the class if its queue is empty.
    pub fn forget_if_empty(&mut self, id: ClassId) {
        let empty = self
            .slots
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|class| class.queue.is_empty());
        if empty {
            if let Some(class) = self.slots[id].take() {
                self.index.remove(&class.requirements);
                self.free_slots.push(id);
            }
        }
    }

    /// Classes currently held.
    #[cfg(test)]
    pub fn class_count(&self) -> usize {
        self.index.len()
    }
}
