//! A flat hash table in copy-on-write chunks, for the decision table.
//!
//! A persistent HAMT finds an entry through a chain of nodes, and on an index
//! larger than the caches each link of the chain is a cache miss. Here an
//! entry is found with one: a hash picks a chunk (the chunk pointers are few
//! enough to stay cached) and a slot in it, and the entry lies in the slot
//! itself (open addressing, linear probing).
//!
//! Cloning a table is O(1), as the index requires: the chunks are shared.
//! A change to a clone copies the directory's top array and one page of
//! chunk pointers, then the one chunk it touches (a few tens of KiB), so a
//! write costs microseconds whatever the size of the table.

use std::fmt;
use std::sync::Arc;

/// Slots per chunk once a table is built or split: a copied chunk stays small
/// while the chunk pointers of a ten-million-entry table stay cacheable.
const CHUNK_SLOTS: usize = 4096;

/// How many 64-byte lines [`Spot::prefetch`] loads from a key's home
/// slot on: a slot may straddle two lines, and a probe run at a load of
/// 0.8 often goes on into the next (at XL, 2 lines made `decide_all` 17 %
/// faster than 1; 3 lines, 4 % more: BENCHMARKS.md §E).
const PREFETCH_LINES: usize = 2;

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
    chunks: Directory<S>,
    len: usize,
}

/// Chunks per directory page: a write copies the top array and one page
/// (about a hundred pointers at XL) instead of every chunk pointer.
const PAGE: usize = 64;

/// The chunks of a table, in pages of [`PAGE`]. Each chunk is an
/// open-addressing table, never full (see [`crowded`]), so that every probe
/// ends at an empty slot; beside it, its number of entries. A lookup reads
/// two pointers (cached) and then the slots.
#[derive(Clone)]
struct Directory<S> {
    pages: Arc<[Page<S>]>,
    chunk_count: usize,
}

/// Up to [`PAGE`] chunks, each with its number of entries.
type Page<S> = Arc<[(Arc<[S]>, u32)]>;

impl<S: Slot> Directory<S> {
    fn new(chunks: impl ExactSizeIterator<Item = Arc<[S]>>) -> Self {
        let chunk_count = chunks.len();
        let chunks: Vec<(Arc<[S]>, u32)> = chunks.map(|chunk| (chunk, 0)).collect();
        let pages = chunks.chunks(PAGE).map(|page| page.to_vec().into()).collect();
        Directory { pages, chunk_count }
    }

    fn len(&self) -> usize {
        self.chunk_count
    }

    #[inline]
    fn chunk(&self, at: usize) -> &Arc<[S]> {
        &self.pages[at / PAGE][at % PAGE].0
    }

    /// Chunk `at` and its number of entries, unshared for a change.
    fn chunk_mut(&mut self, at: usize) -> &mut (Arc<[S]>, u32) {
        let page = Arc::make_mut(&mut Arc::make_mut(&mut self.pages)[at / PAGE]);
        &mut page[at % PAGE]
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<[S]>> + '_ {
        self.pages.iter().flat_map(|page| page.iter().map(|(chunk, _)| chunk))
    }
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

/// Equal when they hold the same entries, however those are laid out.
impl<S: Slot + PartialEq> PartialEq for FlatTable<S> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().all(|entry| entry.key().and_then(|key| other.get(key)) == Some(entry))
    }
}

/// Where a key's entry is, or would be, in a table: found once, then
/// loaded ahead and read, so that a pipeline of decisions hashes each key
/// once (BENCHMARKS.md §F).
pub(super) struct Spot<'a, S: Slot> {
    chunk: &'a [S],
    home: usize,
    key: S::Key,
}

impl<S: Slot> Clone for Spot<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S: Slot> Copy for Spot<'_, S> {}

impl<'a, S: Slot> Spot<'a, S> {
    /// The entry of the key: the decision's hot path, one probe run.
    #[inline]
    pub(super) fn get(&self) -> Option<&'a S> {
        probe(self.chunk, self.key, self.home).ok().map(|at| &self.chunk[at])
    }

    /// Starts loading the cache lines where the entry is, and returns at
    /// once: a later [`Spot::get`] finds them cached (or on their way)
    /// instead of waiting a whole memory round trip. A hint only: it
    /// changes nothing, and does nothing where the CPU has no such hint.
    #[inline]
    pub(super) fn prefetch(&self) {
        let slot: *const S = &self.chunk[self.home];
        for line in 0..PREFETCH_LINES {
            prefetch(slot.cast::<u8>().wrapping_add(line * 64));
        }
    }
}

impl<S: Slot> FlatTable<S> {
    /// An empty table sized to hold `entries` without growing.
    pub(super) fn with_capacity(entries: usize) -> Self {
        let chunk_count = entries.div_ceil(CHUNK_SLOTS * 3 / 4).max(1);
        let per_chunk = (entries / chunk_count) * 5 / 4 + 8;
        FlatTable { chunks: Directory::new((0..chunk_count).map(|_| empty_chunk(per_chunk))), len: 0 }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The chunk that holds, or would hold, the key whose hash is `hash`
    /// (its high half; the low half picks the slot in the chunk).
    #[inline]
    fn chunk_at(&self, hash: u64) -> usize {
        reduce(hash >> 32, self.chunks.len())
    }

    /// The entry of `key`.
    #[inline]
    pub(super) fn get(&self, key: S::Key) -> Option<&S> {
        self.spot(key).get()
    }

    /// Where the probe run of `key` starts: its chunk and home slot.
    #[inline]
    pub(super) fn spot(&self, key: S::Key) -> Spot<'_, S> {
        let hash = S::hash(key);
        let chunk = self.chunks.chunk(self.chunk_at(hash));
        Spot { chunk, home: home(chunk, hash), key }
    }

    /// Inserts `entry`, replacing the entry of the same key.
    pub(super) fn insert(&mut self, entry: S) {
        let Some(key) = entry.key() else { return };
        let hash = S::hash(key);
        let at = self.chunk_at(hash);
        let (chunk, chunk_len) = self.chunks.chunk_mut(at);
        let found = probe(chunk, key, home(chunk, hash));
        Arc::make_mut(chunk)[found.unwrap_or_else(|vacant| vacant)] = entry;
        if found.is_ok() {
            return;
        }
        *chunk_len += 1;
        self.len += 1;
        if crowded(*chunk_len as usize, chunk.len()) {
            *chunk = grown(chunk);
        }
        if self.len > self.chunks.len() * CHUNK_SLOTS * 2 {
            self.split();
        }
    }

    /// Inserts many entries at once, taking them from `entries`. Grouped
    /// by chunk first (a counting sort), the inserts fill one chunk after
    /// another instead of jumping across the whole table: a build from ten
    /// million rows stays in the cache rather than missing it on every row.
    pub(super) fn extend(&mut self, entries: &mut Vec<S>) {
        let chunk_count = self.chunks.len();
        let chunk_of = |entry: &S| entry.key().map_or(0, |key| reduce(S::hash(key) >> 32, chunk_count));
        let mut starts = vec![0; chunk_count + 1];
        for entry in entries.iter() {
            starts[chunk_of(entry) + 1] += 1;
        }
        for at in 1..=chunk_count {
            starts[at] += starts[at - 1];
        }
        let mut grouped = vec![S::EMPTY; entries.len()];
        for entry in entries.drain(..) {
            let start = &mut starts[chunk_of(&entry)];
            grouped[*start] = entry;
            *start += 1;
        }
        let mut entries = grouped.into_iter().peekable();
        for at in 0..chunk_count {
            while let Some(entry) = entries.next_if(|entry| chunk_of(entry) == at) {
                let Some(key) = entry.key() else { continue };
                let (chunk, chunk_len) = self.chunks.chunk_mut(at);
                let slots = Arc::make_mut(chunk);
                let hash = S::hash(key);
                match probe(slots, key, home(slots, hash)) {
                    Ok(found) => slots[found] = entry,
                    Err(vacant) => {
                        slots[vacant] = entry;
                        *chunk_len += 1;
                        self.len += 1;
                    }
                }
                if crowded(*chunk_len as usize, chunk.len()) {
                    *chunk = grown(chunk);
                }
            }
        }
        if self.len > self.chunks.len() * CHUNK_SLOTS * 2 {
            self.split();
        }
    }

    /// Removes the entry of `key` and returns it, if there is one.
    pub(super) fn remove(&mut self, key: S::Key) -> Option<S> {
        let hash = S::hash(key);
        let at = self.chunk_at(hash);
        let chunk = self.chunks.chunk(at);
        let found = probe(chunk, key, home(chunk, hash)).ok()?;
        let (chunk, chunk_len) = self.chunks.chunk_mut(at);
        let removed = remove_at(Arc::make_mut(chunk), found);
        *chunk_len -= 1;
        self.len -= 1;
        Some(removed)
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &S> + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter().filter(|slot| slot.key().is_some()))
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

fn empty_chunk<S: Slot>(slots: usize) -> Arc<[S]> {
    vec![S::EMPTY; slots.max(8)].into()
}

fn home<S>(chunk: &[S], hash: u64) -> usize {
    reduce(hash & 0xffff_ffff, chunk.len())
}

fn next<S>(chunk: &[S], at: usize) -> usize {
    if at + 1 == chunk.len() { 0 } else { at + 1 }
}

/// The slot holding `key` in `chunk` (`Ok`), or the empty slot where it
/// would go (`Err`), searched from slot `from` (the key's home) on.
#[inline]
fn probe<S: Slot>(chunk: &[S], key: S::Key, from: usize) -> Result<usize, usize> {
    // To the end of the chunk, then from its start: two plain loops over
    // slices cost fewer instructions a slot than one that wraps, and every
    // decision walks three runs.
    let (start, end) = chunk.split_at(from);
    let stop = |at: usize, slot: &S| match slot.key() {
        None => Some(Err(at)),
        Some(found) if found == key => Some(Ok(at)),
        Some(_) => None,
    };
    (end.iter().enumerate().find_map(|(at, slot)| stop(from + at, slot)))
        .or_else(|| start.iter().enumerate().find_map(|(at, slot)| stop(at, slot)))
        .unwrap_or_else(|| unreachable!("a chunk is never full, so every probe run ends"))
}

/// Empties slot `hole` by shifting back the entries of its probe run that
/// would no longer be found (no tombstones to sweep later); returns what
/// the slot held.
fn remove_at<S: Slot>(chunk: &mut [S], mut hole: usize) -> S {
    let removed = std::mem::replace(&mut chunk[hole], S::EMPTY);
    let mut at = hole;
    loop {
        at = next(chunk, at);
        let Some(moved) = chunk[at].key() else { break };
        let home = home(chunk, S::hash(moved));
        // The entry at `at` may fill the hole unless its home lies
        // cyclically in (hole, at]: then it is found before the hole.
        let reachable_without_hole = if hole <= at { hole < home && home <= at } else { hole < home || home <= at };
        if !reachable_without_hole {
            chunk[hole] = chunk[at].clone();
            hole = at;
        }
    }
    chunk[hole] = S::EMPTY;
    removed
}

/// More than 7/8 full: probe runs grow long, and a full chunk would never end one.
fn crowded(len: usize, slots: usize) -> bool {
    len * 8 > slots * 7
}

/// `chunk` rehashed into twice the slots.
#[cold]
fn grown<S: Slot>(chunk: &[S]) -> Arc<[S]> {
    let mut bigger = vec![S::EMPTY; chunk.len() * 2];
    for entry in chunk {
        if let Some(key) = entry.key()
            && let Err(at) = probe(&bigger, key, home(&bigger, S::hash(key)))
        {
            bigger[at] = entry.clone();
        }
    }
    bigger.into()
}

/// Starts loading the cache line of `at` into the CPU's caches, and returns
/// at once. A hint only: it changes nothing, and does nothing where the CPU
/// has no such hint.
#[inline]
pub(super) fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code, reason = "the prefetch hint is only offered as an intrinsic")]
    // SAFETY: a prefetch reads nothing into the program and never faults,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(at.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Maps a 32-bit hash onto `0..n` without a division (Lemire's fast range).
#[inline]
fn reduce(hash32: u64, n: usize) -> usize {
    ((hash32 * n as u64) >> 32) as usize
}

/// The hash of a UUID id: its two halves multiplied, as [`mix`] does.
#[inline]
pub(super) fn hash_uuid(id: uuid::Uuid) -> u64 {
    let (high, low) = id.as_u64_pair();
    fold(high ^ 0x243f_6a88_85a3_08d3, low ^ 0x1319_8a2e_0370_7344)
}

/// A 64-bit hash: one 64 × 64 → 128-bit multiply, its halves folded
/// together (foldhash's), so that every input bit moves the upper output
/// bits and both 32-bit halves of the result can pick a position. A
/// decision hashes three keys; splitmix64's finalizer cost about 50
/// instructions a decision where this costs about 15 (BENCHMARKS.md §G).
#[inline]
pub(super) fn mix(x: u64) -> u64 {
    fold(x ^ 0xa409_3822_299f_31d0, 0x082e_fa98_ec4e_6c89)
}

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    product as u64 ^ (product >> 64) as u64
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
