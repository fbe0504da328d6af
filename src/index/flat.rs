//! A flat hash table in copy-on-write chunks, for the decision table.
//!
//! A persistent HAMT finds an entry through a chain of nodes, and on an index
//! larger than the caches each link of the chain is a cache miss. Here an
//! entry is found with one: a hash picks a chunk (the chunk pointers are few
//! enough to stay cached) and a slot in it, and the entry lies in the slot
//! itself (open addressing, linear probing).
//!
//! Cloning a table is O(1), as the index requires: the chunks are shared.
//! The first change to a clone copies the chunk pointers, and a change copies
//! the one chunk it touches (a few tens of KiB), so a write costs microseconds
//! whatever the size of the table.

use std::fmt;
use std::sync::Arc;

/// Slots per chunk once a table is built or split: a copied chunk stays small
/// while the chunk pointers of a ten-million-entry table stay cacheable.
const CHUNK_SLOTS: usize = 4096;

/// What a table holds: entries that carry their own key, with a value that
/// means "empty" (so that a slot needs no separate tag).
pub(super) trait Slot: Clone {
    type Key: Copy + Eq;
    const EMPTY: Self;
    /// The key of the entry in this slot; `None` when the slot is empty.
    fn key(&self) -> Option<Self::Key>;
    fn hash(key: Self::Key) -> u64;
}

#[derive(Clone)]
pub(super) struct FlatTable<S: Slot> {
    chunks: Arc<Vec<Arc<Chunk<S>>>>,
    len: usize,
}

#[derive(Clone)]
struct Chunk<S> {
    /// Never full (see [`Chunk::is_crowded`]), so that every probe ends at an empty slot.
    slots: Box<[S]>,
    len: usize,
}

impl<S: Slot> Default for FlatTable<S> {
    fn default() -> Self {
        FlatTable::with_capacity(0)
    }
}

impl<S: Slot> fmt::Debug for FlatTable<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FlatTable").field("len", &self.len).field("chunks", &self.chunks.len()).finish()
    }
}

impl<S: Slot> FlatTable<S> {
    /// An empty table sized to hold `entries` without growing.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let chunk_count = entries.div_ceil(CHUNK_SLOTS * 3 / 4).max(1);
        let per_chunk = (entries / chunk_count) * 5 / 4 + 8;
        let chunks = (0..chunk_count).map(|_| Arc::new(Chunk::with_capacity(per_chunk))).collect();
        FlatTable { chunks: Arc::new(chunks), len: 0 }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The entry of `key`. The decision's hot path: one chunk, one probe run.
    #[inline]
    pub(super) fn get(&self, key: S::Key) -> Option<&S> {
        let hash = S::hash(key);
        let chunk = &self.chunks[reduce(hash >> 32, self.chunks.len())];
        chunk.find(key, hash).map(|at| &chunk.slots[at])
    }

    /// Inserts `entry`, replacing the entry of the same key.
    pub(super) fn insert(&mut self, entry: S) {
        let Some(key) = entry.key() else { return };
        let hash = S::hash(key);
        let chunks = Arc::make_mut(&mut self.chunks);
        let at = reduce(hash >> 32, chunks.len());
        let chunk = Arc::make_mut(&mut chunks[at]);
        if chunk.insert(key, hash, entry) {
            self.len += 1;
            if chunk.is_crowded() {
                chunk.grow();
            }
            if self.len > chunks.len() * CHUNK_SLOTS * 2 {
                self.split();
            }
        }
    }

    /// Removes the entry of `key`, if any.
    pub(super) fn remove(&mut self, key: S::Key) {
        let hash = S::hash(key);
        let at = reduce(hash >> 32, self.chunks.len());
        if self.chunks[at].find(key, hash).is_none() {
            return;
        }
        let chunk = Arc::make_mut(&mut Arc::make_mut(&mut self.chunks)[at]);
        chunk.remove(key, hash);
        self.len -= 1;
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &S> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.slots.iter().filter(|slot| slot.key().is_some()))
    }

    /// Grown by inserts well past the size it was built for: redistributes the
    /// entries over twice as many chunks, so that copying one on write stays cheap.
    #[cold]
    fn split(&mut self) {
        let mut bigger = FlatTable::with_capacity(self.len * 2);
        for entry in self.iter() {
            bigger.insert(entry.clone());
        }
        *self = bigger;
    }
}

impl<S: Slot> Chunk<S> {
    fn with_capacity(slots: usize) -> Self {
        Chunk { slots: vec![S::EMPTY; slots.max(8)].into_boxed_slice(), len: 0 }
    }

    fn home(&self, hash: u64) -> usize {
        reduce(hash & 0xffff_ffff, self.slots.len())
    }

    fn next(&self, at: usize) -> usize {
        if at + 1 == self.slots.len() { 0 } else { at + 1 }
    }

    #[inline]
    fn find(&self, key: S::Key, hash: u64) -> Option<usize> {
        let mut at = self.home(hash);
        loop {
            match self.slots[at].key() {
                None => return None,
                Some(found) if found == key => return Some(at),
                Some(_) => at = self.next(at),
            }
        }
    }

    /// Puts `entry` in the slot of `key`; true if the key is new.
    fn insert(&mut self, key: S::Key, hash: u64, entry: S) -> bool {
        let mut at = self.home(hash);
        loop {
            match self.slots[at].key() {
                None => {
                    self.slots[at] = entry;
                    self.len += 1;
                    return true;
                }
                Some(found) if found == key => {
                    self.slots[at] = entry;
                    return false;
                }
                Some(_) => at = self.next(at),
            }
        }
    }

    /// Removes `key`, which is present, by shifting back the entries of its
    /// probe run that would no longer be found (no tombstones to sweep later).
    fn remove(&mut self, key: S::Key, hash: u64) {
        let Some(mut hole) = self.find(key, hash) else { return };
        let mut at = hole;
        loop {
            at = self.next(at);
            let Some(moved) = self.slots[at].key() else { break };
            let home = self.home(S::hash(moved));
            // The entry at `at` may fill the hole unless its home lies
            // cyclically in (hole, at]: then it is found before the hole.
            let reachable_without_hole = if hole <= at { hole < home && home <= at } else { hole < home || home <= at };
            if !reachable_without_hole {
                self.slots[hole] = self.slots[at].clone();
                hole = at;
            }
        }
        self.slots[hole] = S::EMPTY;
        self.len -= 1;
    }

    /// More than 7/8 full: probe runs grow long, and a full chunk would never end one.
    fn is_crowded(&self) -> bool {
        self.len * 8 > self.slots.len() * 7
    }

    #[cold]
    fn grow(&mut self) {
        let old = std::mem::replace(self, Chunk::with_capacity(self.slots.len() * 2));
        for entry in old.slots.into_vec() {
            if let Some(key) = entry.key() {
                self.insert(key, S::hash(key), entry);
            }
        }
    }
}

/// Maps a 32-bit hash onto `0..n` without a division (Lemire's fast range).
#[inline]
fn reduce(hash32: u64, n: usize) -> usize {
    ((hash32 * n as u64) >> 32) as usize
}

/// A 64-bit finalizer (splitmix64's): every input bit moves every output bit,
/// so both 32-bit halves of the result can pick a position.
#[inline]
pub(super) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct Entry(u32, u32);

    impl Slot for Entry {
        type Key = u32;
        const EMPTY: Self = Entry(0, 0);
        fn key(&self) -> Option<u32> {
            (self.0 != 0).then_some(self.0)
        }
        fn hash(key: u32) -> u64 {
            // A weak hash on purpose: long probe runs exercise the wrap-around and the back-shifts.
            mix(u64::from(key % 1000))
        }
    }

    /// Drives a table through growth, splits and removals, checking it
    /// against a HashMap after every step, and checks that a clone taken on
    /// the way keeps its contents.
    #[test]
    fn a_flat_table_behaves_like_a_hash_map_and_clones_keep_their_contents() {
        let mut table = FlatTable::<Entry>::default();
        let mut reference = std::collections::HashMap::new();
        let check = |table: &FlatTable<Entry>, reference: &std::collections::HashMap<u32, u32>| {
            assert_eq!(table.len(), reference.len());
            assert_eq!(table.iter().count(), reference.len());
            for key in 1..30_000u32 {
                assert_eq!(table.get(key).map(|e| e.1), reference.get(&key).copied(), "key {key}");
            }
        };
        let keys: Vec<u32> = (1..=20_000u32).map(|i| (i * 7919) % 29_989 + 1).collect();
        for (n, &key) in keys.iter().enumerate() {
            table.insert(Entry(key, n as u32));
            reference.insert(key, n as u32);
        }
        check(&table, &reference);
        let (snapshot, snapshot_reference) = (table.clone(), reference.clone());
        for &key in keys.iter().step_by(3) {
            table.remove(key);
            reference.remove(&key);
        }
        table.remove(29_999);
        check(&table, &reference);
        check(&snapshot, &snapshot_reference);
        for &key in &keys {
            table.remove(key);
            reference.remove(&key);
        }
        check(&table, &reference);
    }
}
