//! A weighted LRU map: entries carry a weight (bytes), and inserting past
//! the budget evicts the least recently used entries.
//!
//! Ages are ticks of a counter, ordered in a `BTreeMap`, so a touch and an
//! eviction are O(log n). Used by the in-memory store and action cache.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

pub struct Lru<K, V> {
    entries: HashMap<K, Entry<V>>,
    by_age: BTreeMap<u64, K>,
    next_tick: u64,
    used: u64,
    budget: u64,
}

struct Entry<V> {
    value: V,
    tick: u64,
    weight: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub fn new(budget: u64) -> Self {
        Lru {
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            next_tick: 0,
            used: 0,
            budget,
        }
    }

    /// The value, made the most recently used.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        let tick = self.next_tick;
        let entry = self.entries.get_mut(key)?;
        self.next_tick += 1;
        let old = std::mem::replace(&mut entry.tick, tick);
        if let Some(k) = self.by_age.remove(&old) {
            self.by_age.insert(tick, k);
        }
        Some(&entry.value)
    }

    /// Inserts or replaces, then evicts the oldest entries until the total
    /// weight fits the budget. The entry just inserted is never evicted.
    pub fn insert(&mut self, key: K, value: V, weight: u64) {
        self.remove(&key);
        let tick = self.next_tick;
        self.next_tick += 1;
        self.used += weight;
        self.by_age.insert(tick, key.clone());
        self.entries.insert(
            key,
            Entry {
                value,
                tick,
                weight,
            },
        );
        while self.used > self.budget {
            let Some(oldest) = self.by_age.first_key_value().map(|(t, _)| *t) else {
                break;
            };
            if oldest == tick {
                break;
            }
            if let Some(victim) = self.by_age.remove(&oldest) {
                if let Some(entry) = self.entries.remove(&victim) {
                    self.used -= entry.weight;
                }
            }
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let entry = self.entries.remove(key)?;
        self.by_age.remove(&entry.tick);
        self.used -= entry.weight;
        Some(entry.value)
    }

    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first() {
        let mut lru = Lru::new(10);
        lru.insert("a", 1, 4);
        lru.insert("b", 2, 4);
        assert_eq!(lru.get(&"a"), Some(&1));
        lru.insert("c", 3, 4);
        assert!(lru.get(&"b").is_none());
        assert_eq!(lru.get(&"a"), Some(&1));
        assert_eq!(lru.used(), 8);
    }

    #[test]
    fn keeps_an_oversized_newcomer_alone() {
        let mut lru = Lru::new(5);
        lru.insert("a", 1, 3);
        lru.insert("big", 2, 9);
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.get(&"big"), Some(&2));
    }

    #[test]
    fn replacing_updates_weight() {
        let mut lru = Lru::new(100);
        lru.insert("a", 1, 10);
        lru.insert("a", 2, 20);
        assert_eq!(lru.used(), 20);
        assert_eq!(lru.remove(&"a"), Some(2));
        assert_eq!(lru.used(), 0);
        assert_eq!(lru.len(), 0);
    }
}
