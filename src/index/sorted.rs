//! Ordered collections for the index's entries, shaped by what they hold.
//!
//! Most users hold about ten grants and sit in a group or two, most sites have
//! a few dozen grantees: a sorted vector keeps those in one allocation, is
//! searched in a few cache lines, and is cheap to copy when its entry is
//! copied on write. A few subjects (agencies, busy sites, big groups) hold
//! thousands; those switch to a persistent B-tree so that a change copies
//! a path, not the whole collection.

use std::ops::Bound;

use itertools::Either;

/// Above this many entries a [`SmallOrdMap`] turns into a B-tree; below half
/// of it, back into a vector (the gap keeps it from flipping on every change).
const FEW: usize = 128;

/// An ordered map of copyable keys and values: a sorted vector while small,
/// a persistent B-tree while large. Equal contents compare equal whichever
/// the shape.
#[derive(Clone, Debug)]
pub(super) enum SmallOrdMap<K: Ord + Copy, V: Copy> {
    Few(Vec<(K, V)>),
    Many(imbl::OrdMap<K, V>),
}

impl<K: Ord + Copy, V: Copy> Default for SmallOrdMap<K, V> {
    fn default() -> Self {
        SmallOrdMap::Few(Vec::new())
    }
}

impl<K: Ord + Copy, V: Copy + PartialEq> PartialEq for SmallOrdMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy, V: Copy> SmallOrdMap<K, V> {
    /// A map of `entries`, which must be sorted by key without duplicates
    /// (the order storage returns them in).
    pub(super) fn from_sorted(entries: Vec<(K, V)>) -> Self {
        debug_assert!(entries.windows(2).all(|pair| pair[0].0 < pair[1].0));
        if entries.len() > FEW { SmallOrdMap::Many(entries.into_iter().collect()) } else { SmallOrdMap::Few(entries) }
    }

    pub(super) fn get(&self, key: &K) -> Option<V> {
        match self {
            SmallOrdMap::Few(entries) => entries.binary_search_by(|(k, _)| k.cmp(key)).ok().map(|at| entries[at].1),
            SmallOrdMap::Many(map) => map.get(key).copied(),
        }
    }

    pub(super) fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn insert(&mut self, key: K, value: V) {
        match self {
            SmallOrdMap::Few(entries) => match entries.binary_search_by(|(k, _)| k.cmp(&key)) {
                Ok(at) => entries[at].1 = value,
                Err(at) => {
                    // One more place, not double: the entry holding this
                    // vector was just copied on write, so the copy is
                    // exactly full, and `insert` would double it. At XL
                    // that slack was 1.5 KB resident per new grant, on
                    // every busy site written (BENCHMARKS.md §G.3).
                    entries.reserve_exact(1);
                    entries.insert(at, (key, value));
                    if entries.len() > FEW {
                        *self = SmallOrdMap::Many(entries.drain(..).collect());
                    }
                }
            },
            SmallOrdMap::Many(map) => {
                map.insert(key, value);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &K) {
        match self {
            SmallOrdMap::Few(entries) => {
                if let Ok(at) = entries.binary_search_by(|(k, _)| k.cmp(key)) {
                    entries.remove(at);
                }
            }
            SmallOrdMap::Many(map) => {
                map.remove(key);
                if map.len() < FEW / 2 {
                    *self = SmallOrdMap::Few(map.iter().map(|(k, v)| (*k, *v)).collect());
                }
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            SmallOrdMap::Few(entries) => entries.len(),
            SmallOrdMap::Many(map) => map.len(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry in key order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (K, V)> + '_ {
        self.range_from(Bound::Unbounded)
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = K> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// The entries from `from` on, in key order.
    pub(super) fn range_from(&self, from: Bound<K>) -> impl Iterator<Item = (K, V)> + '_ {
        match self {
            SmallOrdMap::Few(entries) => {
                let start = match from {
                    Bound::Unbounded => 0,
                    Bound::Included(key) => entries.partition_point(|(k, _)| *k < key),
                    Bound::Excluded(key) => entries.partition_point(|(k, _)| *k <= key),
                };
                Either::Left(entries[start..].iter().copied())
            }
            SmallOrdMap::Many(map) => Either::Right(map.range((from, Bound::Unbounded)).map(|(k, v)| (*k, *v))),
        }
    }
}

/// An ordered set with the shapes of [`SmallOrdMap`].
#[derive(Clone, Debug, PartialEq)]
pub(super) struct SmallOrdSet<T: Ord + Copy>(SmallOrdMap<T, ()>);

impl<T: Ord + Copy> Default for SmallOrdSet<T> {
    fn default() -> Self {
        SmallOrdSet(SmallOrdMap::default())
    }
}

impl<T: Ord + Copy> SmallOrdSet<T> {
    /// A set of `items`, which must be sorted without duplicates.
    pub(super) fn from_sorted(items: Vec<T>) -> Self {
        SmallOrdSet(SmallOrdMap::from_sorted(items.into_iter().map(|item| (item, ())).collect()))
    }

    pub(super) fn contains(&self, item: &T) -> bool {
        self.0.contains_key(item)
    }

    pub(super) fn insert(&mut self, item: T) {
        self.0.insert(item, ());
    }

    pub(super) fn remove(&mut self, item: &T) {
        self.0.remove(item);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.0.keys()
    }

    /// The items from `from` on, in order.
    pub(super) fn range_from(&self, from: Bound<T>) -> impl Iterator<Item = T> + '_ {
        self.0.range_from(from).map(|(item, ())| item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vector copied on write with its entry is exactly full; an insert
    /// must not double it.
    #[test]
    fn an_insert_into_a_copied_vector_takes_one_more_place() {
        let map: SmallOrdMap<u32, ()> = SmallOrdMap::from_sorted((0..100).map(|key| (key * 2, ())).collect());
        let mut copy = map.clone();
        copy.insert(51, ());
        assert!(matches!(&copy, SmallOrdMap::Few(entries) if entries.len() == 101 && entries.capacity() == 101));
    }

    /// Drives a map through both shapes and back, checking it against a
    /// BTreeMap after every step.
    #[test]
    fn a_small_ord_map_behaves_like_a_btree_map_in_both_shapes() {
        let mut map = SmallOrdMap::default();
        let mut reference = std::collections::BTreeMap::new();
        let keys: Vec<u32> = (0..3 * FEW as u32).map(|i| (i * 7919) % 1000).collect();
        let check = |map: &SmallOrdMap<u32, u32>, reference: &std::collections::BTreeMap<u32, u32>| {
            assert_eq!(map.len(), reference.len());
            assert!(map.iter().eq(reference.iter().map(|(k, v)| (*k, *v))));
            for probe in [0, 1, 500, 999, 1000] {
                assert_eq!(map.get(&probe), reference.get(&probe).copied());
                let from = map.range_from(Bound::Excluded(probe)).map(|(k, _)| k);
                assert!(from.eq(reference.range((Bound::Excluded(probe), Bound::Unbounded)).map(|(k, _)| *k)));
                let from = map.range_from(Bound::Included(probe)).map(|(k, _)| k);
                assert!(from.eq(reference.range(probe..).map(|(k, _)| *k)));
            }
            assert_eq!(*map, SmallOrdMap::from_sorted(reference.iter().map(|(k, v)| (*k, *v)).collect()));
        };
        for (n, key) in keys.iter().enumerate() {
            map.insert(*key, n as u32);
            reference.insert(*key, n as u32);
            check(&map, &reference);
        }
        assert!(matches!(map, SmallOrdMap::Many(_)));
        for key in &keys {
            map.remove(key);
            reference.remove(key);
            check(&map, &reference);
        }
        assert!(matches!(map, SmallOrdMap::Few(_)));
        assert!(map.is_empty());
    }
}
