//! The engine joins the index and the store: it publishes the current index
//! for readers and runs writes one group at a time.
//!
//! Writes are group-committed. A `Mutate` joins a queue; one committer task
//! at a time takes every queued batch, judges them one after another (each
//! on the index the previous one produced, each with its own revision), and
//! commits the accepted ones together in one storage transaction, then
//! publishes the last index. A batch the rules refuse fails alone; if the
//! transaction fails, every batch of the group fails and nothing is
//! published. Under load, one transaction (and its round trips to storage)
//! serves many batches.
//!
//! Replicas sharing one database follow each other through the changelog:
//! each applies the batches the others commit ([`Engine::follow_storage`]),
//! and catches up before it judges a group of its own.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use thiserror::Error;
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::index::{Index, IndexBuilder};
use crate::malloc::{self, Trimmer};
use crate::model::{Change, ModelError, Mutation, Revision, Timestamp, UserId};
use crate::store::{Commit, CommitListener, CommitTxn, Rows, SNAPSHOT_CHUNKS_IN_FLIGHT, Store, StoreError};

/// How long a read waits for the index to reach the revision it asks for.
pub const REVISION_WAIT: Duration = Duration::from_secs(5);

/// How often a replica reads storage for batches other processes committed
/// when nothing wakes it sooner: PostgreSQL notifies every commit, and a
/// read asking for a revision not yet applied wakes it at once.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Changelog entries a catch-up reads and applies at a time.
const CATCH_UP_CHUNK: u64 = 1_000;

/// Batches of at most this many mutations are judged on the committer task
/// itself (a few microseconds each); larger ones on the blocking pool, so
/// that judging a big batch never stalls the async workers serving reads.
const INLINE_PLAN_LIMIT: usize = 64;

/// How often writes trim the heap at most: often enough that what they free
/// is soon given back, rarely enough that the trim's lock is never felt.
const TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Why the engine could not serve a request.
#[derive(Clone, Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the grant index is still loading")]
    NotReady,
    #[error("the index is at revision {at} and did not reach revision {wanted} within {REVISION_WAIT:?}")]
    RevisionNotReached { wanted: Revision, at: Revision },
}

/// A write: an ordered batch on behalf of an actor.
#[derive(Debug, Default)]
pub struct MutateCommand {
    pub mutations: Vec<Mutation>,
    /// `None`: the trusted admin tooling.
    pub actor: Option<UserId>,
    pub idempotency_key: Option<String>,
    pub expected_revision: Option<Revision>,
}

/// The answer to a committed write.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub revision: Revision,
    pub ids: Vec<String>,
}

pub struct Engine {
    shared: Arc<Shared>,
}

/// The engine's state, shared with the committer task (which must outlive a
/// cancelled `Mutate` call: the batches of its group belong to other calls).
struct Shared {
    store: Store,
    /// How many revisions the changelog keeps for watchers (at least 1).
    changelog_retention: u64,
    /// The published index; `None` until loaded. Readers take a snapshot of
    /// the pointer and never wait for writers.
    index: ArcSwapOption<Index>,
    /// Held while loading the index or committing a group: serializes the
    /// writers of this process (storage serializes across processes).
    writer: Mutex<()>,
    revision_tx: watch::Sender<Revision>,
    /// Wakes [`Engine::follow_storage`] before its next poll.
    follow_wake: Notify,
    queue: std::sync::Mutex<Queue>,
    /// How many batches wait in the queue.
    queued_tx: watch::Sender<usize>,
    /// Hands the memory that writes freed back to the kernel (see [`malloc`]).
    trimmer: Trimmer,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    /// Whether a committer task is running; it stops when the queue is
    /// empty. INVARIANT: changed only with the queue locked, so a batch is
    /// never queued without a committer to take it.
    committer_running: bool,
}

/// A queued batch and where its answer goes.
struct Pending {
    command: MutateCommand,
    reply_tx: oneshot::Sender<Result<Committed, EngineError>>,
}

impl Pending {
    fn answer(self, result: Result<Committed, EngineError>) {
        // The caller may have gone away; the batch's fate does not depend on it.
        let _ = self.reply_tx.send(result);
    }
}

/// Holds every write (they wait in the queue) until dropped.
pub struct WritesPaused<'a> {
    _writer: MutexGuard<'a, ()>,
}

impl Engine {
    /// An engine over `store` whose changelog keeps the last
    /// `changelog_retention` revisions (at least one: the head).
    pub fn new(store: Store, changelog_retention: u64) -> Engine {
        Engine {
            shared: Arc::new(Shared {
                store,
                changelog_retention: changelog_retention.max(1),
                index: ArcSwapOption::empty(),
                writer: Mutex::new(()),
                revision_tx: watch::channel(0).0,
                follow_wake: Notify::new(),
                queue: std::sync::Mutex::new(Queue::default()),
                queued_tx: watch::channel(0).0,
                trimmer: Trimmer::new(TRIM_INTERVAL),
            }),
        }
    }

    /// The revision of the published index (0 before it is loaded). Reads
    /// from storage made after this call reflect at least this revision.
    pub fn published_revision(&self) -> Revision {
        *self.shared.revision_tx.borrow()
    }

    /// Follows the revision of the published index.
    pub fn subscribe_revisions(&self) -> watch::Receiver<Revision> {
        self.shared.revision_tx.subscribe()
    }

    /// Follows how many batches wait for the writer.
    pub fn subscribe_queued_writes(&self) -> watch::Receiver<usize> {
        self.shared.queued_tx.subscribe()
    }

    /// Holds every write until the returned guard is dropped: batches sent
    /// meanwhile wait in the queue, and are then judged and committed as one
    /// group (maintenance; tests use it to form a group deterministically).
    pub async fn pause_writes(&self) -> WritesPaused<'_> {
        WritesPaused { _writer: self.shared.writer.lock().await }
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Builds the index from storage and publishes it.
    pub async fn load(&self) -> Result<(), EngineError> {
        let _writer = self.shared.writer.lock().await;
        self.shared.load().await
    }

    /// The current index, once loaded.
    pub fn index(&self) -> Result<Arc<Index>, EngineError> {
        self.shared.index()
    }

    /// The current index once it has reached `revision` (waiting, bounded).
    pub async fn index_at_least(&self, revision: Option<Revision>) -> Result<Arc<Index>, EngineError> {
        let index = self.index()?;
        let Some(wanted) = revision.filter(|wanted| *wanted > index.revision()) else { return Ok(index) };
        // Another replica may have committed it: look now, not at the next poll.
        self.shared.follow_wake.notify_one();
        let mut revision_rx = self.shared.revision_tx.subscribe();
        let reached = tokio::time::timeout(REVISION_WAIT, revision_rx.wait_for(|at| *at >= wanted)).await;
        match reached {
            Ok(Ok(_)) => self.index(),
            _ => Err(EngineError::RevisionNotReached { wanted, at: self.index()?.revision() }),
        }
    }

    /// Applies the batches other processes commit to the same storage, as
    /// they commit them, until the task is dropped. It reads the changelog
    /// whenever PostgreSQL notifies a commit this index has not applied
    /// (see [`Shared::hear_commits`]), a read asks for a revision it has not
    /// reached, or [`FOLLOW_INTERVAL`] passes (notifications are lost while
    /// a connection is down).
    pub async fn follow_storage(&self) {
        // The listener runs in a task of its own, so that nothing cancels it
        // halfway through a reconnect; it stops when this future is dropped.
        let mut hearing = tokio::task::JoinSet::new();
        hearing.spawn(self.shared.clone().hear_commits());
        loop {
            tokio::select! {
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                () = self.shared.follow_wake.notified() => {}
            }
            if let Err(cause) = self.shared.follow().await {
                warn!(%cause, "reading the batches other replicas committed failed; will retry");
            }
        }
    }

    /// Judges and commits one batch: all of it with one revision, or nothing.
    /// The batch may share its storage transaction with other batches (see
    /// the module documentation).
    pub async fn mutate(&self, command: MutateCommand) -> Result<Committed, EngineError> {
        // A retry of a committed batch is answered without queuing.
        if let Some(key) = command.idempotency_key.as_deref()
            && let Some((revision, ids)) = self.shared.store.idempotent_result(key).await?
        {
            return Ok(Committed { revision, ids });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        let start_committer = {
            let mut queue = self.shared.lock_queue();
            queue.pending.push(Pending { command, reply_tx });
            self.shared.queued_tx.send_replace(queue.pending.len());
            !std::mem::replace(&mut queue.committer_running, true)
        };
        if start_committer {
            tokio::spawn(self.shared.clone().run_committer());
        }
        reply_rx.await.map_err(|_| StoreError::Internal("the committer stopped before answering".to_owned()))?
    }
}

impl Shared {
    fn index(&self) -> Result<Arc<Index>, EngineError> {
        self.index.load_full().ok_or(EngineError::NotReady)
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        // The queue is consistent after every statement: a panic elsewhere cannot break it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Builds the index from storage and publishes it. The caller holds the
    /// writer lock. One blocking thread gathers the rows into the index while
    /// the rest are read, then finishes it: built in one thread, the index
    /// and the temporaries it was gathered in share one allocator arena, and
    /// the memory the temporaries free is reused rather than stranded.
    async fn load(&self) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        let (rows_tx, mut rows_rx) = mpsc::channel::<Rows>(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let (revision_tx, revision_rx) = oneshot::channel::<Revision>();
        let building = tokio::task::spawn_blocking(move || {
            let mut builder = IndexBuilder::default();
            while let Some(rows) = rows_rx.blocking_recv() {
                builder.add(&rows);
            }
            // No revision: the read failed and the rows are partial.
            let revision = revision_rx.blocking_recv().ok()?;
            Some(builder.finish(revision))
        });
        let read = self.store.read_snapshot(rows_tx).await;
        let read_ms = started.elapsed().as_millis() as u64;
        if let Ok(revision) = read {
            let _ = revision_tx.send(revision);
        }
        let built = building.await.map_err(|e| StoreError::Internal(format!("index build panicked: {e}")))?;
        read?;
        let index = built.ok_or_else(|| StoreError::Internal("the index builder lost its revision".to_owned()))?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let build_ms = elapsed_ms - read_ms;
        let revision = index.revision();
        info!(revision, users = index.user_count(), read_ms, build_ms, elapsed_ms, "index loaded");
        self.publish(Arc::new(index));
        Ok(())
    }

    /// Wakes [`Engine::follow_storage`] whenever PostgreSQL notifies a commit
    /// this index has not applied (most it hears are this process's own).
    /// Returns at once on SQLite, which cannot notify.
    async fn hear_commits(self: Arc<Self>) {
        let mut listener = None;
        loop {
            let heard = match listener.as_mut() {
                Some(listener) => CommitListener::next(listener).await,
                None => match self.store.listen_for_commits().await {
                    Ok(Some(started)) => {
                        listener = Some(started);
                        continue;
                    }
                    Ok(None) => return,
                    Err(cause) => Err(cause),
                },
            };
            match heard {
                Ok(revision) if revision <= *self.revision_tx.borrow() => {}
                Ok(_) => self.follow_wake.notify_one(),
                Err(cause) => {
                    // The next call reconnects; the poll covers what is missed meanwhile.
                    warn!(%cause, "listening for commits failed; retrying in a second");
                    tokio::time::sleep(FOLLOW_INTERVAL).await;
                }
            }
        }
    }

    /// Applies what storage holds beyond the published index, if anything.
    async fn follow(&self) -> Result<(), EngineError> {
        // Most polls find nothing: they ask without holding up the writer.
        if self.store.head_revision().await? <= *self.revision_tx.borrow() {
            return Ok(());
        }
        let _writer = self.writer.lock().await;
        self.catch_up(None).await?;
        Ok(())
    }

    /// Applies the batches storage holds beyond the published index, read
    /// from the changelog (in `txn`, if given), publishing each chunk, and
    /// returns the index then published. Rebuilds the index from storage
    /// instead where the changelog does not hold what happened: when it no
    /// longer reaches back to the index (pruned meanwhile), or when the
    /// index is at revision 0 (the first revision may be a bulk import,
    /// whose rows are not in its entry). The caller holds the writer lock.
    async fn catch_up(&self, txn: Option<&CommitTxn>) -> Result<Arc<Index>, EngineError> {
        loop {
            let index = self.index()?;
            let from = index.revision();
            let batches = match txn {
                Some(txn) => txn.changes_since(from, CATCH_UP_CHUNK).await?,
                None => self.store.changes_since(from, CATCH_UP_CHUNK).await?,
            };
            let Some((last, _)) = batches.last() else { return Ok(index) };
            let (last, whole_chunk) = (*last, batches.len() as u64 == CATCH_UP_CHUNK);
            let gap = batches.iter().zip(from + 1..).any(|((revision, _), next)| *revision != next);
            if gap || from == 0 {
                info!(at = from, "storage holds what the changelog does not say; reloading");
                self.load().await?;
                return self.index();
            }
            // A chunk may hold large batches: applied off the async workers.
            let caught_up = tokio::task::spawn_blocking(move || {
                let mut caught_up = Index::clone(&index);
                for (revision, changes) in &batches {
                    caught_up.apply_batch(*revision, changes);
                }
                caught_up
            })
            .await
            .map_err(|e| StoreError::Internal(format!("applying the changelog panicked: {e}")))?;
            debug!(from, to = last, "applied batches committed by another process");
            self.publish(Arc::new(caught_up));
            if !whole_chunk {
                return self.index();
            }
        }
    }

    fn publish(&self, index: Arc<Index>) {
        let revision = index.revision();
        self.index.store(Some(index));
        self.revision_tx.send_replace(revision);
    }

    /// Commits queued groups until the queue is empty.
    async fn run_committer(self: Arc<Self>) {
        let _handover = CommitterHandover(self.clone());
        loop {
            let _writer = self.writer.lock().await;
            let group = {
                let mut queue = self.lock_queue();
                if queue.pending.is_empty() {
                    queue.committer_running = false;
                    return;
                }
                self.queued_tx.send_replace(0);
                std::mem::take(&mut queue.pending)
            };
            if let Some((first, last)) = self.commit_group(group).await {
                self.prune_changelog(first, last).await;
                if self.trimmer.due() {
                    tokio::task::spawn_blocking(trim_heap);
                }
            }
        }
    }

    /// Judges and commits one group, answers every batch of it, and returns
    /// the revisions committed (first, last), if any.
    async fn commit_group(&self, group: Vec<Pending>) -> Option<(Revision, Revision)> {
        let (current, mut txn) = match self.begin_at_head().await {
            Ok(begun) => begun,
            Err(error) => return fail_all(group, || error.clone()),
        };
        let judged = match judge_group(&txn, current, group).await {
            Ok(judged) => judged,
            Err((error, group)) => return fail_all(group, || error.clone().into()),
        };
        let Some(last_index) = judged.last_index else {
            // Nothing to write (every batch refused or answered by its key).
            return None;
        };
        let commits: Vec<Commit<'_>> = judged.accepted.iter().map(Accepted::commit).collect();
        let written = match txn.append(&commits).await {
            Ok(_) => txn.commit().await,
            Err(error) => Err(error),
        };
        drop(commits);
        if let Err(error) = written {
            let waiting = judged.accepted.into_iter().map(|accepted| accepted.pending).chain(judged.same_key);
            for pending in waiting {
                pending.answer(Err(error.clone().into()));
            }
            return None;
        }
        let first = judged.accepted[0].revision;
        let last = last_index.revision();
        // Published before any answer, so a caller that gets its revision
        // finds it in the index.
        self.publish(last_index);
        let mut answers = HashMap::new();
        for accepted in judged.accepted {
            let committed = Committed { revision: accepted.revision, ids: accepted.ids };
            if let Some(key) = accepted.pending.command.idempotency_key.clone() {
                answers.insert(key, committed.clone());
            }
            accepted.pending.answer(Ok(committed));
        }
        for pending in judged.same_key {
            let answer = pending.command.idempotency_key.as_ref().and_then(|key| answers.get(key)).cloned();
            let answer = answer.ok_or_else(|| StoreError::Internal("an idempotency key lost its batch".to_owned()));
            pending.answer(answer.map_err(EngineError::from));
        }
        Some((first, last))
    }

    /// Begins the group's transaction on an index at the storage head. If
    /// other processes committed since the published index, their batches
    /// are applied first, read in the transaction: it holds the writers'
    /// lock, so the head stays where it is meanwhile.
    async fn begin_at_head(&self) -> Result<(Arc<Index>, CommitTxn), EngineError> {
        let txn = self.store.begin_commit().await?;
        let (index, head) = (self.index()?, txn.head());
        let current = if head > index.revision() {
            self.catch_up(Some(&txn)).await?
        } else if head < index.revision() {
            // Storage went back (restored from a backup): it holds the truth.
            warn!(index = index.revision(), head, "storage is behind the index; reloading");
            self.load().await?;
            self.index()?
        } else {
            index
        };
        if current.revision() != head {
            return Err(StoreError::Stale { judged_at: current.revision(), head }.into());
        }
        Ok((current, txn))
    }

    /// Drops changelog entries older than the retention whenever the head
    /// passes a multiple of a tenth of the retention (so a write seldom pays
    /// for it). INVARIANT: the head entry is never dropped, because the next
    /// revision is counted from it.
    async fn prune_changelog(&self, first: Revision, last: Revision) {
        let every = self.changelog_retention.div_ceil(10).clamp(1, 1_000);
        if last <= self.changelog_retention || last / every == (first - 1) / every {
            return;
        }
        if let Err(cause) = self.store.prune_changelog(last - self.changelog_retention).await {
            warn!(%cause, revision = last, "pruning the changelog failed; will retry later");
        }
    }
}

/// Ends a committer: if it stops abnormally (a panic), the batches still
/// queued get a new committer instead of waiting forever.
struct CommitterHandover(Arc<Shared>);

impl Drop for CommitterHandover {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let mut queue = self.0.lock_queue();
        queue.committer_running = !queue.pending.is_empty();
        if queue.committer_running {
            tokio::spawn(self.0.clone().run_committer());
        }
    }
}

/// A batch accepted by the rules, waiting for the group's transaction.
struct Accepted {
    pending: Pending,
    revision: Revision,
    changes: Vec<Change>,
    ids: Vec<String>,
    committed_at: Timestamp,
}

impl Accepted {
    fn commit(&self) -> Commit<'_> {
        Commit {
            changes: &self.changes,
            actor: self.pending.command.actor,
            ids: &self.ids,
            idempotency_key: self.pending.command.idempotency_key.as_deref(),
            committed_at: self.committed_at,
            judged_at: Some(self.revision - 1),
        }
    }
}

/// A judged group: what to commit, and the index once it is committed.
struct Judged {
    accepted: Vec<Accepted>,
    /// Batches whose idempotency key an accepted batch of the group carries:
    /// they get its answer.
    same_key: Vec<Pending>,
    /// The index with every accepted batch applied, at the last one's revision.
    last_index: Option<Arc<Index>>,
}

/// Judges the batches of a group in order, each on the index the previous
/// accepted one produced. Refused batches, and retries of batches committed
/// earlier, are answered here. Fails (handing the group back) only if
/// storage cannot be read.
async fn judge_group(
    txn: &CommitTxn,
    current: Arc<Index>,
    group: Vec<Pending>,
) -> Result<Judged, (StoreError, Vec<Pending>)> {
    let keys: Vec<&str> = group.iter().filter_map(|pending| pending.command.idempotency_key.as_deref()).collect();
    let stored = if keys.is_empty() {
        HashMap::new()
    } else {
        match txn.idempotent_results(&keys).await {
            Ok(stored) => stored,
            Err(error) => return Err((error, group)),
        }
    };
    let mut judged = Judged { accepted: Vec::new(), same_key: Vec::new(), last_index: None };
    let mut judged_on = current;
    for mut pending in group {
        let command = &mut pending.command;
        if let Some(key) = command.idempotency_key.as_deref() {
            if let Some((revision, ids)) = stored.get(key) {
                pending.answer(Ok(Committed { revision: *revision, ids: ids.clone() }));
                continue;
            }
            if judged.accepted.iter().any(|a| a.pending.command.idempotency_key.as_deref() == Some(key)) {
                judged.same_key.push(pending);
                continue;
            }
        }
        if let Some(expected) = command.expected_revision
            && expected != judged_on.revision()
        {
            let latest = judged_on.revision();
            let refused = ModelError::FailedPrecondition(format!(
                "`expected_revision` is {expected} but the latest revision is {latest}"
            ));
            pending.answer(Err(refused.into()));
            continue;
        }
        let mutations = std::mem::take(&mut command.mutations);
        match plan(judged_on.clone(), command.actor, mutations).await {
            Ok(mut plan) => {
                let revision = judged_on.revision() + 1;
                let changes = std::mem::take(&mut plan.changes);
                let (next, ids) = plan.committed_at(revision);
                judged_on = Arc::new(next);
                judged.last_index = Some(judged_on.clone());
                judged.accepted.push(Accepted { pending, revision, changes, ids, committed_at: Timestamp::now() });
            }
            Err(refused) => pending.answer(Err(refused)),
        }
    }
    Ok(judged)
}

/// Judges one batch on `index`: inline when it is small, else on the
/// blocking pool.
async fn plan(
    index: Arc<Index>,
    actor: Option<UserId>,
    mutations: Vec<Mutation>,
) -> Result<crate::index::Plan, EngineError> {
    if mutations.len() <= INLINE_PLAN_LIMIT {
        return Ok(index.plan(actor, &mutations, Timestamp::now())?);
    }
    let planned = tokio::task::spawn_blocking(move || index.plan(actor, &mutations, Timestamp::now()))
        .await
        .map_err(|e| StoreError::Internal(format!("planning panicked: {e}")))?;
    Ok(planned?)
}

/// Answers every batch of `group` with an error; nothing was committed.
fn fail_all(group: Vec<Pending>, error: impl Fn() -> EngineError) -> Option<(Revision, Revision)> {
    for pending in group {
        pending.answer(Err(error()));
    }
    None
}

/// Trims the heap, on a blocking thread: writes free the chunks of the index
/// versions they replace.
fn trim_heap() {
    let started = std::time::Instant::now();
    malloc::trim();
    tracing::debug!(elapsed_us = started.elapsed().as_micros() as u64, "heap trimmed");
}
