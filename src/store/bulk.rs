//! Bulk import: loads a whole model into an empty database in one
//! transaction, with rows written by the thousand in multi-row INSERTs.
//!
//! It is the fast path for datasets far larger than a `Mutate` batch (the
//! benchmark datasets of `warden import`: up to 1M users and 10M grants).
//! Nothing is judged: the rows must already be valid model data (unique
//! emails and group names, grants naming existing subjects and sites), as a
//! [`Snapshot`] of another store or a generated dataset is.
//!
//! The import commits as ONE revision with one changelog entry, so revisions
//! stay gapless and every later write counts on from it. That entry lists no
//! changes (ten million of them would not fit a changelog row): the import is
//! a starting point, like a restore, and a watcher follows from after it.
//! A server already running on the empty database rebuilds its index from
//! storage when it follows the import's revision (the changelog entry of an
//! import holds none of its rows).

use std::time::Instant;

use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, Iterable};
use tracing::info;

use super::convert::{group_row, level_code, report_row, site_row, subject_key, user_row};
use super::entity::{all_sites_grant, changelog, group, group_member, report, site, site_grant, user};
use super::{Snapshot, Store, StoreError, head_revision_of, stored_revision, to_json};
use crate::model::{Grant, Revision, SiteId, Target, Timestamp};

/// Bound values per INSERT statement: below SQLite's limit of 32,766 (and
/// PostgreSQL's 65,535), so a statement of two-column rows holds 16,000 rows.
const VALUES_PER_STATEMENT: usize = 32_000;

/// How far an import has come, reported after every statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportProgress {
    /// The table being written.
    pub table: &'static str,
    /// Rows written so far, all tables together.
    pub rows_done: u64,
    /// Rows the import writes in all.
    pub rows_total: u64,
}

/// Why an import did not happen. Nothing is written when it fails.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "the database already holds revision {0}: import loads into an empty database only \
         (use a new data directory or database)"
    )]
    NotEmpty(Revision),
    #[error("row {row} of `{table}` is not valid model data: {reason}")]
    InvalidRow { table: &'static str, row: usize, reason: &'static str },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for ImportError {
    fn from(err: sea_orm::DbErr) -> Self {
        ImportError::Store(err.into())
    }
}

impl Store {
    /// Writes every row of `dataset` into this empty database in one
    /// transaction and returns the revision it committed at (1).
    ///
    /// Rows are sorted by primary key before they are written, so each
    /// table's B-tree grows at its end instead of splitting pages all over.
    /// `progress` hears after every statement.
    pub async fn import_dataset(
        &self,
        dataset: &Snapshot,
        mut progress: impl FnMut(ImportProgress),
    ) -> Result<Revision, ImportError> {
        let started = Instant::now();
        let _writer = self.writer.lock().await;
        let txn = self.begin_write().await?;
        let head = head_revision_of(&txn).await?;
        if head != 0 {
            return Err(ImportError::NotEmpty(head));
        }
        let revision = head + 1;
        let sqlite = txn.get_database_backend() == DbBackend::Sqlite;
        if sqlite {
            // A large page cache for this connection while it builds the
            // B-trees (negative: KiB); restored before the connection goes back.
            txn.execute_unprepared("PRAGMA cache_size = -1048576").await?;
        }

        let mut site_grants = Vec::with_capacity(dataset.grants.len());
        let mut all_sites_grants = Vec::new();
        for (row, grant) in dataset.grants.iter().enumerate() {
            if level_code(grant.level).is_none() {
                return Err(ImportError::InvalidRow { table: "grants", row, reason: "a grant at NO_ACCESS" });
            }
            match grant.target {
                Target::Site(site) => site_grants.push((grant, site)),
                Target::AllSites => all_sites_grants.push(grant),
            }
        }
        let mut writer = TableWriter {
            txn: &txn,
            rows_done: 0,
            rows_total: [
                dataset.users.len(),
                dataset.sites.len(),
                dataset.groups.len(),
                dataset.memberships.len(),
                dataset.grants.len(),
                dataset.reports.len(),
            ]
            .iter()
            .sum::<usize>() as u64,
            progress: &mut progress,
        };

        let mut users: Vec<_> = dataset.users.iter().collect();
        users.sort_unstable_by_key(|user| user.id);
        writer.insert::<user::Entity, _, _>("users", &users, |user| user_row(user, None)).await?;

        let mut sites: Vec<_> = dataset.sites.iter().collect();
        sites.sort_unstable_by_key(|site| site.id);
        writer.insert::<site::Entity, _, _>("sites", &sites, |site| site_row(site)).await?;

        let mut groups: Vec<_> = dataset.groups.iter().collect();
        groups.sort_unstable_by_key(|group| group.id);
        writer.insert::<group::Entity, _, _>("groups", &groups, |group| group_row(group)).await?;

        let mut memberships = dataset.memberships.clone();
        memberships.sort_unstable();
        writer
            .insert::<group_member::Entity, _, _>("memberships", &memberships, |(group_id, user_id)| {
                group_member::ActiveModel { group_id: Set(group_id.0), user_id: Set(user_id.0) }
            })
            .await?;

        all_sites_grants.sort_unstable_by_key(|grant| subject_key(grant.subject));
        writer.insert::<all_sites_grant::Entity, _, _>("grants", &all_sites_grants, all_sites_grant_row).await?;
        // The stored key order: (kind text, subject id, site id).
        site_grants.sort_unstable_by_key(|(grant, site)| (subject_key(grant.subject), *site));
        writer.insert::<site_grant::Entity, _, _>("grants", &site_grants, site_grant_row).await?;

        let mut reports: Vec<_> = dataset.reports.iter().collect();
        reports.sort_unstable_by_key(|report| report.id);
        writer.insert::<report::Entity, _, _>("reports", &reports, |report| report_row(report)).await?;

        let entry = changelog::ActiveModel {
            revision: Set(stored_revision(revision)?),
            committed_at: Set(Timestamp::now().0),
            actor_id: Set(None),
            changes: Set(to_json::<[crate::model::Change]>(&[])?),
        };
        changelog::Entity::insert(entry).exec_without_returning(&txn).await?;
        if sqlite {
            txn.execute_unprepared("PRAGMA cache_size = -2000").await?;
        }
        txn.commit().await?;
        if sqlite {
            // One transaction of this size leaves a WAL as large as the
            // database; fold it in and give the disk space back now.
            self.db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        info!(
            revision,
            users = dataset.users.len(),
            grants = dataset.grants.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "dataset imported"
        );
        Ok(revision)
    }
}

/// Writes tables in multi-row INSERTs and counts the rows for `progress`.
struct TableWriter<'a, P> {
    txn: &'a DatabaseTransaction,
    rows_done: u64,
    rows_total: u64,
    progress: &'a mut P,
}

impl<P: FnMut(ImportProgress)> TableWriter<'_, P> {
    /// Inserts `rows` into `E`'s table, as many rows a statement as the
    /// bound-value budget allows for the table's width.
    async fn insert<E, A, T>(
        &mut self,
        table: &'static str,
        rows: &[T],
        to_row: impl Fn(&T) -> A,
    ) -> Result<(), ImportError>
    where
        E: EntityTrait,
        A: ActiveModelTrait<Entity = E>,
    {
        let columns = E::Column::iter().count().max(1);
        let per_statement = (VALUES_PER_STATEMENT / columns).max(1);
        for chunk in rows.chunks(per_statement) {
            E::insert_many(chunk.iter().map(&to_row)).exec_without_returning(self.txn).await?;
            self.rows_done += chunk.len() as u64;
            (self.progress)(ImportProgress { table, rows_done: self.rows_done, rows_total: self.rows_total });
        }
        Ok(())
    }
}

fn site_grant_row((grant, SiteId(site_id)): &(&Grant, SiteId)) -> site_grant::ActiveModel {
    let (kind, subject_id) = subject_key(grant.subject);
    site_grant::ActiveModel {
        subject_kind: Set(kind.to_owned()),
        subject_id: Set(subject_id),
        site_id: Set(*site_id),
        // INVARIANT: NO_ACCESS grants were refused before any row was written.
        level: Set(level_code(grant.level).unwrap_or_default()),
    }
}

fn all_sites_grant_row(grant: &&Grant) -> all_sites_grant::ActiveModel {
    let (kind, subject_id) = subject_key(grant.subject);
    all_sites_grant::ActiveModel {
        subject_kind: Set(kind.to_owned()),
        subject_id: Set(subject_id),
        level: Set(level_code(grant.level).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Shape};
    use crate::index::Index;
    use crate::model::{Change, Grant, Level, Subject, UserId};
    use crate::store::Commit;

    async fn empty_store() -> Store {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    #[tokio::test]
    async fn an_imported_dataset_loads_back_as_the_same_index_at_revision_one() {
        let store = empty_store().await;
        let dataset = Dataset::generate(Shape::with_users(2_000), 3);
        let mut reports = Vec::new();
        let revision = store.import_dataset(&dataset.snapshot, |p| reports.push(p)).await.expect("import");
        assert_eq!(revision, 1);
        let last = reports.last().copied().expect("progress was reported");
        assert_eq!(last.rows_done, last.rows_total);
        assert!(reports.windows(2).all(|w| w[0].rows_done < w[1].rows_done));

        let loaded = store.load_snapshot().await.expect("snapshot");
        assert_eq!(loaded.revision, 1);
        let mut expected = Index::from_snapshot(&dataset.snapshot);
        expected.apply_batch(1, &[]);
        assert_eq!(Index::from_snapshot(&loaded), expected);
        assert_eq!(store.changes_since(0, 10).await.expect("changelog"), vec![(1, Vec::new())]);
    }

    #[tokio::test]
    async fn writes_after_an_import_count_on_from_its_revision() {
        let store = empty_store().await;
        let dataset = Dataset::generate(Shape::with_users(100), 4);
        store.import_dataset(&dataset.snapshot, |_| {}).await.expect("import");
        let grant = Grant {
            subject: Subject::User(dataset.snapshot.users[5].id),
            target: Target::AllSites,
            level: Level::View,
        };
        let changes = [Change::GrantSet { grant }];
        let commit = Commit {
            changes: &changes,
            actor: None,
            ids: &[],
            idempotency_key: None,
            committed_at: Timestamp(1),
            judged_at: None,
        };
        assert_eq!(store.commit(commit).await.expect("commit"), 2);
    }

    #[tokio::test]
    async fn a_database_with_history_is_not_imported_into() {
        let store = empty_store().await;
        let grant =
            Grant { subject: Subject::User(UserId(uuid::Uuid::nil())), target: Target::AllSites, level: Level::View };
        let changes = [Change::GrantSet { grant }];
        let commit = Commit {
            changes: &changes,
            actor: None,
            ids: &[],
            idempotency_key: None,
            committed_at: Timestamp(1),
            judged_at: None,
        };
        store.commit(commit).await.expect("commit");
        let dataset = Dataset::generate(Shape::with_users(100), 4);
        let refused = store.import_dataset(&dataset.snapshot, |_| {}).await;
        assert!(matches!(refused, Err(ImportError::NotEmpty(1))), "{refused:?}");
        assert_eq!(store.load_snapshot().await.expect("snapshot").users.len(), 0);
    }

    #[tokio::test]
    async fn a_grant_at_no_access_refuses_the_whole_import() {
        let store = empty_store().await;
        let mut dataset = Dataset::generate(Shape::with_users(100), 4);
        dataset.snapshot.grants[3].level = Level::NoAccess;
        let refused = store.import_dataset(&dataset.snapshot, |_| {}).await;
        assert!(matches!(refused, Err(ImportError::InvalidRow { row: 3, .. })), "{refused:?}");
        assert_eq!(store.head_revision().await.expect("head"), 0);
    }
}
