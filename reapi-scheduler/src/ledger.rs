//! The books of the CPUs and memory that running actions hold on a pool:
//! a [`ResourceLedger`] per pool, and a [`Reservation`] per lease that gives
//! its share back when dropped. Whether an executor could ever run an action
//! is `reapi_core::platform`'s question; whether it can run it now is this
//! ledger's.

use std::sync::{Arc, Mutex, MutexGuard};

use reapi_core::platform::{ExecutorProperties, Requirements, Resources};

/// Tracks the CPUs and memory of one executor (or of a worker whose
/// executors share the machine) that running actions hold.
///
/// Cloning gives another handle on the same ledger.
#[derive(Clone, Debug)]
pub(crate) struct ResourceLedger {
    #[cfg_attr(not(test), allow(dead_code))] // only the tests read it
    capacity: Resources,
    free: Arc<Mutex<Resources>>,
}

impl ResourceLedger {
    pub(crate) fn new(capacity: Resources) -> Self {
        ResourceLedger {
            capacity,
            free: Arc::new(Mutex::new(capacity)),
        }
    }

    /// A ledger holding the resources an executor offers.
    pub(crate) fn for_executor(executor: &ExecutorProperties) -> Self {
        Self::new(executor.resources())
    }

    #[cfg_attr(not(test), allow(dead_code))] // only the tests call it
    pub(crate) fn capacity(&self) -> Resources {
        self.capacity
    }

    /// What is not reserved right now.
    #[cfg_attr(not(test), allow(dead_code))] // only the tests call it
    pub(crate) fn available(&self) -> Resources {
        *lock(&self.free)
    }

    /// Reserves what `wanted` asks for, if it is free now; the reservation
    /// lasts until the returned value is dropped. `None` both when the
    /// resources are busy and when they exceed the capacity: telling those
    /// apart is [`ExecutorProperties::check`]'s job.
    pub(crate) fn try_reserve(&self, wanted: &Requirements) -> Option<Reservation> {
        let want = wanted.resources();
        let mut free = lock(&self.free);
        if !free.covers(&want) {
            return None;
        }
        free.cpus -= want.cpus;
        free.memory -= want.memory;
        Some(Reservation {
            free: Arc::clone(&self.free),
            held: want,
        })
    }
}

/// Resources held by a running action, given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    free: Arc<Mutex<Resources>>,
    held: Resources,
}

impl Reservation {
    #[cfg_attr(not(test), allow(dead_code))] // only the tests call it
    pub(crate) fn resources(&self) -> Resources {
        self.held
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut free = lock(&self.free);
        // Saturating: the ledger only ever gets back what it handed out, but
        // a drop must not panic.
        free.cpus = free.cpus.saturating_add(self.held.cpus);
        free.memory = free.memory.saturating_add(self.held.memory);
    }
}

/// Locks the ledger even if a holder panicked: its two counters are updated
/// together under the lock, so they are never half-written.
fn lock(mutex: &Mutex<Resources>) -> MutexGuard<'_, Resources> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reapi_core::proto::remote_execution::{platform::Property, Platform};

    fn wants(pairs: &[(&str, &str)]) -> Requirements {
        let properties = pairs
            .iter()
            .map(|(name, value)| Property {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        Requirements::from_platform(&Platform { properties }).unwrap()
    }

    fn offers(pairs: &[&str]) -> ExecutorProperties {
        ExecutorProperties::from_pairs(pairs).unwrap()
    }

    #[test]
    fn reservations_exhaust_and_release() {
        let ledger = ResourceLedger::for_executor(&offers(&["cpus=4", "memory=8G"]));
        let two_cpus = wants(&[("cpus", "2"), ("memory", "1G")]);

        let first = ledger.try_reserve(&two_cpus).unwrap();
        let second = ledger.try_reserve(&two_cpus).unwrap();
        assert_eq!(
            ledger.available(),
            Resources {
                cpus: 0,
                memory: 6 << 30
            }
        );
        assert!(ledger.try_reserve(&two_cpus).is_none());
        // An action that claims nothing still fits.
        let free_rider = ledger.try_reserve(&wants(&[])).unwrap();
        assert_eq!(free_rider.resources(), Resources::default());

        drop(first);
        assert_eq!(ledger.available().cpus, 2);
        let third = ledger.try_reserve(&two_cpus).unwrap();
        assert!(ledger.try_reserve(&two_cpus).is_none());

        // Memory runs out on its own too.
        drop((second, third));
        assert!(ledger.try_reserve(&wants(&[("memory", "9G")])).is_none());
        let big = ledger.try_reserve(&wants(&[("memory", "8G")])).unwrap();
        assert!(ledger.try_reserve(&wants(&[("memory", "1")])).is_none());
        drop(big);
        assert_eq!(ledger.available(), ledger.capacity());
    }

    #[test]
    fn ledger_is_shared_across_threads() {
        let ledger = ResourceLedger::new(Resources { cpus: 3, memory: 0 });
        let one = wants(&[("cpus", "1")]);
        let held: Vec<Reservation> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| ledger.clone().try_reserve(&one)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        assert_eq!(held.len(), 3);
        assert_eq!(ledger.available().cpus, 0);
        drop(held);
        assert_eq!(ledger.available().cpus, 3);
    }
}
