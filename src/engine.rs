//! The engine joins the index and the store: it publishes the current index
//! for readers and runs writes one at a time (judge on the index, commit to
//! storage, publish the judged index at the committed revision).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use thiserror::Error;
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use crate::index::Index;
use crate::model::{ModelError, Mutation, Revision, Timestamp, UserId};
use crate::store::{Commit, Store, StoreError};

/// How long a read waits for the index to reach the revision it asks for.
pub const REVISION_WAIT: Duration = Duration::from_secs(5);

/// Why the engine could not serve a request.
#[derive(Debug, Error)]
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
    store: Store,
    /// How many revisions the changelog keeps for watchers (at least 1).
    changelog_retention: u64,
    /// The published index; `None` until loaded. Readers take a snapshot of
    /// the pointer and never wait for writers.
    index: ArcSwapOption<Index>,
    /// Serializes writers of this process (storage serializes across processes).
    writer: Mutex<()>,
    revision_tx: watch::Sender<Revision>,
}

impl Engine {
    /// An engine over `store` whose changelog keeps the last
    /// `changelog_retention` revisions (at least one: the head).
    pub fn new(store: Store, changelog_retention: u64) -> Engine {
        Engine {
            store,
            changelog_retention: changelog_retention.max(1),
            index: ArcSwapOption::empty(),
            writer: Mutex::new(()),
            revision_tx: watch::channel(0).0,
        }
    }

    /// The revision of the published index (0 before it is loaded). Reads
    /// from storage made after this call reflect at least this revision.
    pub fn published_revision(&self) -> Revision {
        *self.revision_tx.borrow()
    }

    /// Follows the revision of the published index.
    pub fn subscribe_revisions(&self) -> watch::Receiver<Revision> {
        self.revision_tx.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Builds the index from storage and publishes it.
    pub async fn load(&self) -> Result<(), EngineError> {
        let _writer = self.writer.lock().await;
        let started = std::time::Instant::now();
        let snapshot = self.store.load_snapshot().await?;
        let read_ms = started.elapsed().as_millis() as u64;
        let index = tokio::task::spawn_blocking(move || Index::from_snapshot(&snapshot))
            .await
            .map_err(|e| StoreError::Internal(format!("index build panicked: {e}")))?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let build_ms = elapsed_ms - read_ms;
        let revision = index.revision();
        info!(revision, users = index.user_count(), read_ms, build_ms, elapsed_ms, "index loaded");
        self.publish(index);
        Ok(())
    }

    /// The current index, once loaded.
    pub fn index(&self) -> Result<Arc<Index>, EngineError> {
        self.index.load_full().ok_or(EngineError::NotReady)
    }

    /// The current index once it has reached `revision` (waiting, bounded).
    pub async fn index_at_least(&self, revision: Option<Revision>) -> Result<Arc<Index>, EngineError> {
        let index = self.index()?;
        let Some(wanted) = revision.filter(|wanted| *wanted > index.revision()) else { return Ok(index) };
        let mut revision_rx = self.revision_tx.subscribe();
        let reached = tokio::time::timeout(REVISION_WAIT, revision_rx.wait_for(|at| *at >= wanted)).await;
        match reached {
            Ok(Ok(_)) => self.index(),
            _ => Err(EngineError::RevisionNotReached { wanted, at: self.index()?.revision() }),
        }
    }

    /// Judges and commits one batch: all of it in one transaction with one
    /// revision, or nothing.
    pub async fn mutate(&self, command: MutateCommand) -> Result<Committed, EngineError> {
        let key = command.idempotency_key.as_deref();
        if let Some(committed) = self.idempotent_result(key).await? {
            return Ok(committed);
        }
        let _writer = self.writer.lock().await;
        // A retry with the same key may have committed while this one waited.
        if let Some(committed) = self.idempotent_result(key).await? {
            return Ok(committed);
        }
        let current = self.index()?;
        if let Some(expected) = command.expected_revision
            && expected != current.revision()
        {
            return Err(ModelError::FailedPrecondition(format!(
                "`expected_revision` is {expected} but the latest revision is {}",
                current.revision()
            ))
            .into());
        }
        let judged_on = current.clone();
        let mutations = command.mutations;
        let actor = command.actor;
        let plan = tokio::task::spawn_blocking(move || judged_on.plan(actor, &mutations, Timestamp::now()))
            .await
            .map_err(|e| StoreError::Internal(format!("planning panicked: {e}")))??;

        let commit = Commit {
            changes: &plan.changes,
            actor: command.actor,
            ids: &plan.ids,
            idempotency_key: key,
            committed_at: Timestamp::now(),
            judged_at: Some(current.revision()),
        };
        let revision = match self.store.commit(commit).await {
            Ok(revision) => revision,
            Err(StoreError::Stale { judged_at, head }) => {
                // Another process committed since this index was built: the
                // batch was judged on an old state and nothing was written.
                // Storage holds the truth, so rebuild from it; the caller retries.
                warn!(judged_at, head, "storage moved under the index; reloading");
                drop(_writer);
                self.load().await?;
                return Err(StoreError::Stale { judged_at, head }.into());
            }
            Err(other) => return Err(other.into()),
        };
        let (next, ids) = plan.committed_at(revision);
        self.publish(next);
        self.prune_changelog(revision).await;
        Ok(Committed { revision, ids })
    }

    /// Drops changelog entries older than the retention, every tenth of the
    /// retention (so a write seldom pays for it). INVARIANT: the head entry
    /// is never dropped, because the next revision is counted from it.
    async fn prune_changelog(&self, revision: Revision) {
        let every = self.changelog_retention.div_ceil(10).clamp(1, 1_000);
        if revision <= self.changelog_retention || !revision.is_multiple_of(every) {
            return;
        }
        if let Err(cause) = self.store.prune_changelog(revision - self.changelog_retention).await {
            warn!(%cause, revision, "pruning the changelog failed; will retry later");
        }
    }

    async fn idempotent_result(&self, key: Option<&str>) -> Result<Option<Committed>, EngineError> {
        let Some(key) = key else { return Ok(None) };
        let found = self.store.idempotent_result(key).await?;
        Ok(found.map(|(revision, ids)| Committed { revision, ids }))
    }

    fn publish(&self, index: Index) {
        let revision = index.revision();
        self.index.store(Some(Arc::new(index)));
        self.revision_tx.send_replace(revision);
    }
}
