//! Storage: the durable copy of the model and its changelog, in SQLite (the
//! embedded default) or PostgreSQL, through one sea-orm implementation.
//!
//! The seam is shaped by what the index needs: load a snapshot to build from,
//! commit a judged batch in one transaction that also appends it to the
//! changelog, and read the changelog since a revision. The `get_*` and
//! `list_*` reads serve the admin API's listings, which the index does not
//! keep in a browsable order.
//!
//! Listings are keyset-paged: a page ends with a cursor holding the sort key
//! of its last row, and the next page starts strictly after that key, so rows
//! written between two pages never make a listing repeat or skip a row that
//! was there all along.

mod apply;
mod bulk;
mod convert;
mod entity;
mod snapshot;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, ExprTrait, SimpleExpr};
use sea_orm::sqlx::error::DatabaseError;
use sea_orm::sqlx::postgres::{PgListener, PgPoolOptions};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnAcquireErr, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    RuntimeErr, Select, SqliteTransactionMode, TransactionOptions, TransactionTrait, Value,
};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};
use uuid::Uuid;

use crate::model::{
    Change, Grant, Group, GroupId, PasswordHash, Report, ReportId, Revision, Site, SiteId, Subject, Timestamp, User,
    UserId,
};
pub use bulk::{ImportError, ImportProgress};
use convert::{fold_case, subject_from_key, subject_key};
use entity::{all_sites_grant, changelog, group, group_member, idempotency_key, report, site, site_grant, user};

/// Key of the PostgreSQL advisory lock that writers hold for the length of
/// their transaction, so that revisions commit one at a time, in order, with
/// no gap a changelog reader could skip ("warden" in ASCII, then 1).
const WRITER_LOCK_KEY: i64 = 0x7761_7264_656e_0001;

/// The PostgreSQL channel a commit notifies, with its head revision as the
/// payload (a trigger on the changelog sends it: the migration
/// `m20261205_000001_notify_commits`). Replicas wake on it ([`CommitListener`]).
const COMMITS_CHANNEL: &str = "warden_commits";

/// Connections in a file-backed SQLite pool: readers run side by side in WAL
/// mode, writers queue on the write lock.
const SQLITE_POOL_SIZE: u32 = 8;

/// How long a SQLite statement waits for another connection's write lock.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Changelog entries or idempotency keys per multi-row insert (4 bound
/// values a row, far below either backend's parameter limit).
const LOG_INSERT_CHUNK: usize = 1_000;

/// Idempotency keys per lookup (one bound value each).
const KEY_LOOKUP_CHUNK: usize = 1_000;

/// The database behind warden. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// Serializes this process's writers before they reach the database, where
    /// they would otherwise poll for SQLite's write lock or hold a pooled
    /// connection while waiting for PostgreSQL's advisory lock.
    writer: Arc<Mutex<()>>,
    /// The connection write transactions use. On a SQLite file, a pool of
    /// one connection of its own: SQLite drops a connection's page cache
    /// whenever another connection wrote, so commits taking turns on the
    /// shared pool re-read their pages every time; with one writing
    /// connection the cache stays warm. Elsewhere, the shared pool.
    write_db: DatabaseConnection,
    /// Where a SQLite database is, for the snapshot reader's own connection;
    /// `None` on PostgreSQL.
    sqlite_source: Option<snapshot::SqliteSource>,
}

/// Why storage failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded; a retry may succeed.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, or data this code cannot read.
    #[error("storage error: {0}")]
    Internal(String),
    /// Another writer committed after the batch was judged: judge it again.
    #[error("the batch was judged at revision {judged_at} but storage is at {head}")]
    Stale { judged_at: Revision, head: Revision },
    /// A page cursor (held here) that this store did not produce for this
    /// listing.
    #[error("malformed page token `{0}`")]
    BadCursor(String),
}

/// Everything the index is built from, read at one revision (one read
/// transaction).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub revision: Revision,
    pub users: Vec<User>,
    pub sites: Vec<Site>,
    pub groups: Vec<Group>,
    pub memberships: Vec<(GroupId, UserId)>,
    /// All-sites grants first, then site grants.
    pub grants: Vec<Grant>,
    pub reports: Vec<Report>,
}

/// How many chunks of snapshot rows may wait for their reader: enough to
/// keep the reading and the building of an index busy at once.
pub const SNAPSHOT_CHUNKS_IN_FLIGHT: usize = 4;

/// Rows of a snapshot as they are read, a chunk of one table at a time. The
/// tables come in the order of the variants, so rows that name a user, site
/// or group come after it.
#[derive(Debug)]
pub enum Rows {
    Users(Vec<User>),
    Sites(Vec<Site>),
    Groups(Vec<Group>),
    Memberships(Vec<(GroupId, UserId)>),
    /// All-sites grants first, then site grants.
    Grants(Vec<Grant>),
    Reports(Vec<Report>),
}

/// A judged batch to commit.
#[derive(Clone, Copy, Debug)]
pub struct Commit<'a> {
    pub changes: &'a [Change],
    pub actor: Option<UserId>,
    /// The batch's result ids, returned again to a retry with the same key.
    pub ids: &'a [String],
    pub idempotency_key: Option<&'a str>,
    pub committed_at: Timestamp,
    /// The revision the batch was judged at: the commit is refused with
    /// [`StoreError::Stale`] if another writer committed since.
    pub judged_at: Option<Revision>,
}

/// Which grants `list_grants` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantFilter {
    /// The site grants on this site (all-sites grants are not repeated here).
    Site(SiteId),
    /// This user's all-sites grant, if any, then their site grants.
    User(UserId),
    /// This group's all-sites grant, if any, then its site grants.
    Group(GroupId),
}

/// One page of a listing and the cursor of the next page, `None` on the last.
pub type Page<T> = (Vec<T>, Option<String>);

impl Store {
    /// Connects to `database_url`: `sqlite://path/warden.db?mode=rwc`,
    /// `sqlite::memory:` or `postgres://...`.
    ///
    /// SQLite runs in WAL mode with `synchronous=NORMAL` (a commit survives a
    /// crash of the process; a power loss may lose the last commits, never
    /// corrupt the file). An in-memory database lives as long as its
    /// connection, so its pool holds exactly one connection, forever.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        let mut options = ConnectOptions::new(database_url);
        // sea-orm otherwise logs every statement at INFO.
        options.sqlx_logging(false);
        let in_memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
        if database_url.starts_with("sqlite:") {
            // A connection to a local file cannot go stale: skip the ping
            // that would otherwise precede every statement's acquire.
            options.test_before_acquire(false);
            if in_memory {
                options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            } else {
                options.max_connections(SQLITE_POOL_SIZE);
            }
            options.map_sqlx_sqlite_opts(move |sqlite| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                let sqlite = sqlite.busy_timeout(SQLITE_BUSY_TIMEOUT).synchronous(SqliteSynchronous::Normal);
                if in_memory { sqlite } else { sqlite.journal_mode(SqliteJournalMode::Wal) }
            });
        }
        let db = Database::connect(options.clone()).await?;
        let write_db = if database_url.starts_with("sqlite:") && !in_memory {
            options.max_connections(1).min_connections(1).idle_timeout(None).max_lifetime(None);
            Database::connect(options).await?
        } else {
            db.clone()
        };
        let sqlite_source = (db.get_database_backend() == DbBackend::Sqlite).then(|| snapshot::SqliteSource {
            filename: db.get_sqlite_connection_pool().connect_options().get_filename().to_owned(),
            in_memory,
            busy_timeout: SQLITE_BUSY_TIMEOUT,
        });
        Ok(Store { db, write_db, writer: Arc::new(Mutex::new(())), sqlite_source })
    }

    /// Applies the pending migrations, in one transaction that holds the
    /// writer lock, so that replicas starting together migrate once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let _writer = self.writer.lock().await;
        let txn = self.begin_write().await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Reads everything the index is built from, at one revision, and sends
    /// it to `rows_tx` a chunk at a time as it is read (see `snapshot` for
    /// how). Returns the revision. Every row is sent once, the tables in the
    /// order of [`Rows`]; if the read fails, the rows sent are partial.
    pub async fn read_snapshot(&self, rows_tx: mpsc::Sender<Rows>) -> Result<Revision, StoreError> {
        match &self.sqlite_source {
            Some(source) => {
                let source = source.clone();
                tokio::task::spawn_blocking(move || snapshot::read_sqlite(&source, &rows_tx))
                    .await
                    .map_err(|e| StoreError::Internal(format!("reading a snapshot panicked: {e}")))?
            }
            None => snapshot::read_postgres(self.db.get_postgres_connection_pool(), &rows_tx).await,
        }
    }

    /// Reads everything the index is built from, at one revision, into
    /// memory, each table in primary-key order.
    pub async fn load_snapshot(&self) -> Result<Snapshot, StoreError> {
        let (rows_tx, mut rows_rx) = mpsc::channel(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let collect = async {
            let mut snapshot = Snapshot::default();
            while let Some(rows) = rows_rx.recv().await {
                snapshot.extend(rows);
            }
            snapshot
        };
        let (revision, mut snapshot) = tokio::join!(self.read_snapshot(rows_tx), collect);
        snapshot.revision = revision?;
        snapshot.sort();
        Ok(snapshot)
    }

    /// The revision of the last committed batch, 0 before the first.
    pub async fn head_revision(&self) -> Result<Revision, StoreError> {
        head_revision_of(&self.db).await
    }

    /// Commits a batch in one transaction: writes every change in order,
    /// appends the changes to the changelog at `head + 1`, and records the
    /// idempotency key's result if there is one. Returns the new revision.
    ///
    /// Committing a key that is already recorded fails: ask
    /// `idempotent_result` first.
    pub async fn commit(&self, commit: Commit<'_>) -> Result<Revision, StoreError> {
        let mut txn = self.begin_commit().await?;
        let revision = txn.append(&[commit]).await?;
        txn.commit().await?;
        Ok(revision)
    }

    /// Begins a transaction that appends batches at the head of the
    /// changelog; it holds the writers' lock until committed or dropped
    /// (dropping it rolls everything back).
    ///
    /// Writers are serialized (a process-wide lock, then SQLite's write lock
    /// taken at `BEGIN IMMEDIATE` or a PostgreSQL advisory lock), so revisions
    /// commit in order without gaps, and the head read here stays the head
    /// until this transaction ends.
    pub async fn begin_commit(&self) -> Result<CommitTxn, StoreError> {
        let writer = self.writer.clone().lock_owned().await;
        let txn = self.begin_write().await?;
        let head = head_revision_of(&txn).await?;
        Ok(CommitTxn { txn, head, _writer: writer })
    }

    /// The committed result of an idempotency key, if any: (revision, ids).
    pub async fn idempotent_result(&self, key: &str) -> Result<Option<(Revision, Vec<String>)>, StoreError> {
        let Some(row) = idempotency_key::Entity::find_by_id(key.to_owned()).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(Some((revision_of(row.revision)?, from_json(&row.ids)?)))
    }

    /// Changelog entries with revision > `after`, ascending, at most `limit`.
    pub async fn changes_since(&self, after: Revision, limit: u64) -> Result<Vec<(Revision, Vec<Change>)>, StoreError> {
        changes_since_on(&self.db, after, limit).await
    }

    pub async fn get_user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        user::Entity::find_by_id(id.0).one(&self.db).await?.map(convert::user_from_row).transpose()
    }

    /// Users ordered by lower-cased email. A non-empty `search` keeps the
    /// users whose email or name starts with it, ignoring case.
    pub async fn list_users(&self, search: &str, after: Option<&str>, limit: u64) -> Result<Page<User>, StoreError> {
        let mut select = user::Entity::find();
        let prefix = fold_case(search);
        if !prefix.is_empty() {
            select = select.filter(
                Condition::any()
                    .add(starts_with(user::Column::EmailKey, &prefix))
                    .add(starts_with(user::Column::NameKey, &prefix)),
            );
        }
        let after = after.map(parse_text_cursor).transpose()?.map(|(id, email_key)| vec![email_key.into(), id.into()]);
        let rows = page_rows(&self.db, select, &[user::Column::EmailKey, user::Column::Id], after, limit).await?;
        finish_page(rows, limit, |row| text_cursor(row.id, &row.email_key), convert::user_from_row)
    }

    /// The id and password hash of the user with this lower-cased email.
    pub async fn password_by_email(
        &self,
        email_key: &str,
    ) -> Result<Option<(UserId, Option<PasswordHash>)>, StoreError> {
        let row: Option<(Uuid, Option<String>)> = user::Entity::find()
            .select_only()
            .columns([user::Column::Id, user::Column::PasswordHash])
            .filter(user::Column::EmailKey.eq(fold_case(email_key)))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(row.map(|(id, hash)| (UserId(id), hash.map(PasswordHash))))
    }

    /// The password hash of a user; `None` for a user without a password or
    /// an unknown user.
    pub async fn password_of(&self, id: UserId) -> Result<Option<PasswordHash>, StoreError> {
        let hash: Option<Option<String>> = user::Entity::find_by_id(id.0)
            .select_only()
            .column(user::Column::PasswordHash)
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(hash.flatten().map(PasswordHash))
    }

    pub async fn get_site(&self, id: SiteId) -> Result<Option<Site>, StoreError> {
        site::Entity::find_by_id(id.0).one(&self.db).await?.map(convert::site_from_row).transpose()
    }

    /// Sites ordered by id.
    pub async fn list_sites(&self, after: Option<&str>, limit: u64) -> Result<Page<Site>, StoreError> {
        let after = after.map(parse_id_cursor).transpose()?.map(|id| vec![id.into()]);
        let rows = page_rows(&self.db, site::Entity::find(), &[site::Column::Id], after, limit).await?;
        finish_page(rows, limit, |row| row.id.to_string(), convert::site_from_row)
    }

    pub async fn get_group(&self, id: GroupId) -> Result<Option<Group>, StoreError> {
        group::Entity::find_by_id(id.0).one(&self.db).await?.map(convert::group_from_row).transpose()
    }

    /// Groups ordered by lower-cased name.
    pub async fn list_groups(&self, after: Option<&str>, limit: u64) -> Result<Page<Group>, StoreError> {
        let after = after.map(parse_text_cursor).transpose()?.map(|(id, name_key)| vec![name_key.into(), id.into()]);
        let key = [group::Column::NameKey, group::Column::Id];
        let rows = page_rows(&self.db, group::Entity::find(), &key, after, limit).await?;
        finish_page(rows, limit, |row| text_cursor(row.id, &row.name_key), convert::group_from_row)
    }

    /// The members of a group, ordered by user id.
    pub async fn list_group_members(
        &self,
        group: GroupId,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Page<UserId>, StoreError> {
        let after = after.map(parse_id_cursor).transpose()?.map(|id| vec![id.into()]);
        let select = group_member::Entity::find().filter(group_member::Column::GroupId.eq(group.0));
        let rows = page_rows(&self.db, select, &[group_member::Column::UserId], after, limit).await?;
        finish_page(rows, limit, |row| row.user_id.to_string(), |row| Ok(UserId(row.user_id)))
    }

    /// Grants on a site ordered by subject, or a subject's grants: its
    /// all-sites grant first, then its site grants ordered by site id.
    pub async fn list_grants(
        &self,
        filter: GrantFilter,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Page<Grant>, StoreError> {
        let subject = match filter {
            GrantFilter::Site(site) => return self.list_site_grants(site, after, limit).await,
            GrantFilter::User(user) => Subject::User(user),
            GrantFilter::Group(group) => Subject::Group(group),
        };
        let (kind, subject_id) = subject_key(subject);
        // The cursor is `*` after the all-sites grant, or the last site id.
        let after_site = match after {
            None => None,
            Some(ALL_SITES_CURSOR) => Some(None),
            Some(site) => Some(Some(parse_id_cursor(site)?)),
        };
        let mut grants = Vec::new();
        if after_site.is_none() {
            let all_sites = all_sites_grant::Entity::find_by_id((kind.to_owned(), subject_id)).one(&self.db).await?;
            if let Some(row) = all_sites {
                grants.push(convert::all_sites_grant_from_row(row)?);
            }
        }
        let select = site_grant::Entity::find()
            .filter(site_grant::Column::SubjectKind.eq(kind))
            .filter(site_grant::Column::SubjectId.eq(subject_id));
        let after_key = after_site.flatten().map(|site| vec![site.into()]);
        // With the all-sites grant on the page, one site grant fewer fits.
        let remaining = std::cmp::max(limit, 1) - grants.len() as u64;
        let rows = page_rows(&self.db, select, &[site_grant::Column::SiteId], after_key, remaining).await?;
        for row in rows {
            grants.push(convert::site_grant_from_row(row)?);
        }
        Ok(split_page(grants, limit, |grant| match grant.target {
            crate::model::Target::AllSites => ALL_SITES_CURSOR.to_owned(),
            crate::model::Target::Site(site) => site.to_string(),
        }))
    }

    /// The site grants on `site`, ordered by subject kind and id.
    async fn list_site_grants(&self, site: SiteId, after: Option<&str>, limit: u64) -> Result<Page<Grant>, StoreError> {
        let after = after
            .map(|cursor| {
                let (kind, id) = cursor.split_once(CURSOR_SEPARATOR).ok_or_else(|| bad_cursor(cursor))?;
                let subject = subject_from_key(kind, parse_id_cursor(id)?).map_err(|_| bad_cursor(cursor))?;
                let (kind, id) = subject_key(subject);
                Ok::<_, StoreError>(vec![kind.into(), id.into()])
            })
            .transpose()?;
        let select = site_grant::Entity::find().filter(site_grant::Column::SiteId.eq(site.0));
        let key = [site_grant::Column::SubjectKind, site_grant::Column::SubjectId];
        let rows = page_rows(&self.db, select, &key, after, limit).await?;
        finish_page(
            rows,
            limit,
            |row| format!("{}{CURSOR_SEPARATOR}{}", row.subject_kind, row.subject_id),
            convert::site_grant_from_row,
        )
    }

    pub async fn get_report(&self, id: ReportId) -> Result<Option<Report>, StoreError> {
        report::Entity::find_by_id(id.0).one(&self.db).await?.map(convert::report_from_row).transpose()
    }

    /// Reports ordered by id, of one site or of all.
    pub async fn list_reports(
        &self,
        site: Option<SiteId>,
        after: Option<&str>,
        limit: u64,
    ) -> Result<Page<Report>, StoreError> {
        let after = after.map(parse_id_cursor).transpose()?.map(|id| vec![id.into()]);
        let mut select = report::Entity::find();
        if let Some(SiteId(site)) = site {
            select = select.filter(report::Column::SiteId.eq(site));
        }
        let rows = page_rows(&self.db, select, &[report::Column::Id], after, limit).await?;
        finish_page(rows, limit, |row| row.id.to_string(), convert::report_from_row)
    }

    /// The oldest revision the changelog still holds; `None` when it is empty.
    pub async fn oldest_retained_revision(&self) -> Result<Option<Revision>, StoreError> {
        let oldest: Option<Option<i64>> = changelog::Entity::find()
            .select_only()
            .expr(Expr::col(changelog::Column::Revision).min())
            .into_tuple()
            .one(&self.db)
            .await?;
        oldest.flatten().map(revision_of).transpose()
    }

    /// Drops the changelog entries at or below `through`, and the
    /// idempotency keys of those revisions; returns how many entries.
    /// Watchers older than what remains must resync from a full read, and a
    /// retry whose key is gone is judged as a new batch: keys are kept as
    /// long as the changelog, so that the table does not grow forever.
    ///
    /// INVARIANT: the head entry is never dropped, because the next revision
    /// is counted from it. (A commit racing this only raises the head.)
    pub async fn prune_changelog(&self, through: Revision) -> Result<u64, StoreError> {
        let head = self.head_revision().await?;
        let through = stored_revision(std::cmp::min(through, head.saturating_sub(1)))?;
        let deleted =
            changelog::Entity::delete_many().filter(changelog::Column::Revision.lte(through)).exec(&self.db).await?;
        idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::Revision.lte(through))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }

    /// Listens for the commits of every process sharing this database, on
    /// PostgreSQL; `None` on SQLite, which cannot notify another process.
    pub async fn listen_for_commits(&self) -> Result<Option<CommitListener>, StoreError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        // Its own connection: a listener holds one for good, which would
        // otherwise be one fewer for the queries.
        let options = self.db.get_postgres_connection_pool().connect_options();
        let pool = PgPoolOptions::new().max_connections(1).connect_lazy_with((*options).clone());
        let mut listener = PgListener::connect_with(&pool).await?;
        // Reconnecting at once would retry in a busy loop while the database is down.
        listener.eager_reconnect(false);
        listener.listen(COMMITS_CHANNEL).await?;
        Ok(Some(CommitListener(listener)))
    }

    /// Begins a write transaction holding the database's writer lock.
    async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let txn = match self.write_db.get_database_backend() {
            DbBackend::Postgres => {
                let txn = self.write_db.begin().await?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")).await?;
                txn
            }
            DbBackend::Sqlite => {
                // Taking the write lock at BEGIN, not at the first write,
                // keeps the head revision read inside the transaction current.
                let options = TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                };
                self.write_db.begin_with_options(options).await?
            }
            _ => self.write_db.begin().await?,
        };
        Ok(txn)
    }
}

/// Hears the commits of every process sharing a PostgreSQL database.
pub struct CommitListener(PgListener);

impl CommitListener {
    /// The head revision of the next commit heard. Fails when the
    /// connection is lost, and reconnects at the next call; the
    /// notifications sent meanwhile are lost: poll storage as well.
    pub async fn next(&mut self) -> Result<Revision, StoreError> {
        let Some(notification) = self.0.try_recv().await? else {
            return Err(StoreError::Unavailable("the connection listening for commits was lost".to_owned()));
        };
        notification
            .payload()
            .parse()
            .map_err(|_| StoreError::Internal(format!("a commit notified `{}`", notification.payload())))
    }
}

/// A write transaction at the head of the changelog (see
/// [`Store::begin_commit`]). Dropped uncommitted, it leaves no trace.
pub struct CommitTxn {
    txn: DatabaseTransaction,
    /// The revision of the last batch in storage, including those appended here.
    head: Revision,
    _writer: OwnedMutexGuard<()>,
}

impl CommitTxn {
    /// The revision of the last batch: the storage head when the transaction
    /// began, plus the batches appended since.
    pub fn head(&self) -> Revision {
        self.head
    }

    /// The committed results of those `keys` that are recorded: key →
    /// (revision, ids). Read under the writers' lock, so no other writer
    /// can record one of them before this transaction ends.
    pub async fn idempotent_results(
        &self,
        keys: &[&str],
    ) -> Result<HashMap<String, (Revision, Vec<String>)>, StoreError> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(KEY_LOOKUP_CHUNK) {
            let rows = idempotency_key::Entity::find()
                .filter(idempotency_key::Column::Key.is_in(chunk.iter().copied()))
                .all(&self.txn)
                .await?;
            for row in rows {
                found.insert(row.key, (revision_of(row.revision)?, from_json(&row.ids)?));
            }
        }
        Ok(found)
    }

    /// Changelog entries with revision > `after`, ascending, at most
    /// `limit`, read in this transaction: while it holds the writers' lock
    /// no other process can commit past them.
    pub async fn changes_since(&self, after: Revision, limit: u64) -> Result<Vec<(Revision, Vec<Change>)>, StoreError> {
        changes_since_on(&self.txn, after, limit).await
    }

    /// Appends `commits` in order, each at its own revision from `head + 1`
    /// on with its own changelog entry and idempotency key, and returns the
    /// revision of the last. A commit judged at another revision than the
    /// one it follows is refused with [`StoreError::Stale`].
    ///
    /// The changes of all commits are written as one sequence (consecutive
    /// grant changes of several commits share their statements), and the
    /// changelog entries and keys go in multi-row inserts: a group of small
    /// batches costs about as many statements as one.
    pub async fn append(&mut self, commits: &[Commit<'_>]) -> Result<Revision, StoreError> {
        let mut entries = Vec::with_capacity(commits.len());
        let mut keys = Vec::new();
        for (revision, commit) in (self.head + 1..).zip(commits) {
            if let Some(judged_at) = commit.judged_at
                && judged_at + 1 != revision
            {
                return Err(StoreError::Stale { judged_at, head: revision - 1 });
            }
            let stored_revision = stored_revision(revision)?;
            entries.push(changelog::ActiveModel {
                revision: Set(stored_revision),
                committed_at: Set(commit.committed_at.0),
                actor_id: Set(commit.actor.map(|UserId(id)| id)),
                changes: Set(to_json(commit.changes)?),
            });
            if let Some(key) = commit.idempotency_key {
                keys.push(idempotency_key::ActiveModel {
                    key: Set(key.to_owned()),
                    revision: Set(stored_revision),
                    ids: Set(to_json(commit.ids)?),
                    created_at: Set(commit.committed_at.0),
                });
            }
        }
        let changes: Vec<&Change> = commits.iter().flat_map(|commit| commit.changes).collect();
        apply::apply_changes(&self.txn, &changes).await?;
        for chunk in entries.chunks(LOG_INSERT_CHUNK) {
            changelog::Entity::insert_many(chunk.to_vec()).exec_without_returning(&self.txn).await?;
        }
        for chunk in keys.chunks(LOG_INSERT_CHUNK) {
            idempotency_key::Entity::insert_many(chunk.to_vec()).exec_without_returning(&self.txn).await?;
        }
        self.head += commits.len() as Revision;
        Ok(self.head)
    }

    /// Makes every appended batch durable at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.txn.commit().await?;
        Ok(())
    }
}

/// Separates the fields of a cursor.
const CURSOR_SEPARATOR: char = '|';

/// The cursor after a subject's all-sites grant.
const ALL_SITES_CURSOR: &str = "*";

/// A cursor for rows ordered by a text key, then id. The id comes first: it
/// never holds the separator, the text may.
fn text_cursor(id: Uuid, key: &str) -> String {
    format!("{id}{CURSOR_SEPARATOR}{key}")
}

fn parse_text_cursor(cursor: &str) -> Result<(Uuid, String), StoreError> {
    let (id, key) = cursor.split_once(CURSOR_SEPARATOR).ok_or_else(|| bad_cursor(cursor))?;
    Ok((parse_id_cursor(id)?, key.to_owned()))
}

fn parse_id_cursor(cursor: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(cursor).map_err(|_| bad_cursor(cursor))
}

fn bad_cursor(cursor: &str) -> StoreError {
    StoreError::BadCursor(cursor.to_owned())
}

/// Rows per page: at least one, so that paging always advances.
fn page_len(limit: u64) -> usize {
    usize::try_from(std::cmp::max(limit, 1)).unwrap_or(usize::MAX)
}

/// The rows of `select` whose `key` comes after `after`, in `key` order, at
/// most one more than a page of `limit` (the extra row tells whether a next
/// page exists).
async fn page_rows<E: EntityTrait>(
    db: &impl ConnectionTrait,
    mut select: Select<E>,
    key: &[E::Column],
    after: Option<Vec<Value>>,
    limit: u64,
) -> Result<Vec<E::Model>, DbErr> {
    if let Some(after) = after {
        // A row-value comparison: one index range scan on every backend.
        let columns = Expr::tuple(key.iter().map(|column| column.into_expr()));
        select = select.filter(columns.gt(Expr::tuple(after.into_iter().map(Expr::val))));
    }
    for column in key {
        select = select.order_by_asc(*column);
    }
    select.limit(std::cmp::max(limit, 1).saturating_add(1)).all(db).await
}

/// Cuts `rows` to a page of `limit` and converts them; the next cursor is
/// the last row's when more rows followed.
fn finish_page<M, T>(
    rows: Vec<M>,
    limit: u64,
    cursor: impl Fn(&M) -> String,
    convert: impl Fn(M) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let (rows, next) = split_page(rows, limit, cursor);
    Ok((rows.into_iter().map(convert).collect::<Result<_, _>>()?, next))
}

fn split_page<T>(mut rows: Vec<T>, limit: u64, cursor: impl Fn(&T) -> String) -> Page<T> {
    let len = page_len(limit);
    if rows.len() <= len {
        return (rows, None);
    }
    rows.truncate(len);
    let next = rows.last().map(cursor);
    (rows, next)
}

/// Keys that start with `prefix`, as a range on the (byte-wise ordered) key
/// column so that an index serves it: `prefix <= key < prefix + U+10FFFF`.
/// (A key whose next character is U+10FFFF itself, a noncharacter, is missed.)
fn starts_with(column: impl ColumnTrait, prefix: &str) -> SimpleExpr {
    let end = format!("{prefix}{}", char::MAX);
    column.gte(prefix).and(column.lt(end))
}

async fn changes_since_on(
    db: &impl ConnectionTrait,
    after: Revision,
    limit: u64,
) -> Result<Vec<(Revision, Vec<Change>)>, StoreError> {
    let Ok(after) = i64::try_from(after) else {
        return Ok(Vec::new());
    };
    let rows = changelog::Entity::find()
        .filter(changelog::Column::Revision.gt(after))
        .order_by_asc(changelog::Column::Revision)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter().map(|row| Ok((revision_of(row.revision)?, from_json(&row.changes)?))).collect()
}

async fn head_revision_of(db: &impl ConnectionTrait) -> Result<Revision, StoreError> {
    let head: Option<Option<i64>> = changelog::Entity::find()
        .select_only()
        .expr(Expr::col(changelog::Column::Revision).max())
        .into_tuple()
        .one(db)
        .await?;
    head.flatten().map_or(Ok(0), revision_of)
}

fn revision_of(stored: i64) -> Result<Revision, StoreError> {
    Revision::try_from(stored)
        .map_err(|_| StoreError::Internal(format!("negative revision `{stored}` in the changelog")))
}

fn stored_revision(revision: Revision) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(|_| StoreError::Internal(format!("revision `{revision}` is out of range")))
}

fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|err| StoreError::Internal(format!("encoding JSON: {err}")))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|err| StoreError::Internal(format!("unreadable JSON in the database: {err}")))
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        if is_unavailable(&err) {
            StoreError::Unavailable(err.to_string())
        } else {
            StoreError::Internal(err.to_string())
        }
    }
}

/// Whether an error says the database cannot serve now (down, unreachable,
/// overloaded, locked) rather than that the request or the code is wrong.
fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout | ConnAcquireErr::ConnectionClosed) => true,
        DbErr::Conn(RuntimeErr::SqlxError(err)) => !matches!(**err, sea_orm::sqlx::Error::Configuration(_)),
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => match &**err {
            sea_orm::sqlx::Error::Io(_)
            | sea_orm::sqlx::Error::Tls(_)
            | sea_orm::sqlx::Error::PoolTimedOut
            | sea_orm::sqlx::Error::PoolClosed
            | sea_orm::sqlx::Error::WorkerCrashed => true,
            sea_orm::sqlx::Error::Database(err) => database_unavailable(err.as_ref()),
            _ => false,
        },
        _ => false,
    }
}

fn database_unavailable(err: &dyn DatabaseError) -> bool {
    let Some(code) = err.code() else {
        return false;
    };
    if err.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() {
        // Primary result codes: BUSY, LOCKED, IOERR, FULL, CANTOPEN.
        return code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6 | 10 | 13 | 14));
    }
    // PostgreSQL SQLSTATE: connection exception, insufficient resources,
    // server shutting down or starting.
    code.starts_with("08") || code.starts_with("53") || matches!(&*code, "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Modules, Role, Target, UserPatch, Visibility};

    /// Runs each test on a fresh, migrated in-memory SQLite database, and on
    /// a fresh PostgreSQL database when `WARDEN_TEST_POSTGRES_URL` names an
    /// administrative database to create it from.
    macro_rules! on_every_backend {
        ($($test:ident),* $(,)?) => {
            mod sqlite {
                $(#[tokio::test]
                async fn $test() {
                    super::$test(super::sqlite_store().await).await;
                })*
            }
            mod postgres {
                $(#[tokio::test]
                async fn $test() {
                    if let Some(store) = super::postgres_store().await {
                        super::$test(store).await;
                    }
                })*
            }
        };
    }

    on_every_backend!(
        migrating_twice_changes_nothing,
        a_committed_batch_loads_back_as_the_same_snapshot,
        a_snapshot_holds_rows_in_key_order_whatever_order_they_were_written_in,
        a_snapshot_streamed_in_many_chunks_builds_the_index_of_its_rows,
        each_commit_advances_the_head_revision_by_one,
        changes_since_returns_the_committed_changes_without_password_hashes,
        an_idempotency_key_keeps_the_result_of_its_batch,
        pruning_the_changelog_keeps_the_head_entry,
        pruning_the_changelog_drops_the_idempotency_keys_of_its_revisions,
        passwords_are_found_by_email_key_and_by_id,
        a_user_update_changes_only_the_patched_fields,
        updates_and_deletes_reach_every_table,
        in_a_run_of_grant_changes_the_last_change_of_each_grant_wins,
        paging_users_with_a_search_returns_every_match_once,
        every_listing_pages_through_all_its_rows,
        a_malformed_cursor_is_a_bad_cursor,
    );

    async fn sqlite_store() -> Store {
        let store = Store::connect("sqlite::memory:").await.expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    /// A SQLite database file in `dir`, created on first connect.
    fn sqlite_file_url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}?mode=rwc", dir.path().join("warden.db").display())
    }

    async fn postgres_store() -> Option<Store> {
        let Ok(admin_url) = std::env::var("WARDEN_TEST_POSTGRES_URL") else {
            eprintln!("skipped on PostgreSQL: set WARDEN_TEST_POSTGRES_URL to run");
            return None;
        };
        let name = format!("warden_store_test_{}", Uuid::new_v4().simple());
        let admin = Database::connect(&admin_url).await.expect("connect to the admin database");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create the test database");
        admin.close().await.expect("close the admin connection");
        let (base, _) = admin_url.rsplit_once('/').expect("the URL ends in /<database>");
        let store = Store::connect(&format!("{base}/{name}")).await.expect("connect");
        store.migrate().await.expect("migrate");
        Some(store)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn user(n: u128, email: &str, name: &str) -> User {
        User {
            id: UserId(id(n)),
            email: email.to_owned(),
            name: name.to_owned(),
            language: "en".to_owned(),
            role: Role::User,
            modules: Modules::default(),
            has_password: false,
            created_at: Timestamp(1_000 + n as i64),
            updated_at: Timestamp(1_000 + n as i64),
        }
    }

    fn user_created(user: User) -> Change {
        Change::UserCreated { user, password: None }
    }

    fn grant(subject: Subject, target: Target, level: Level) -> Change {
        Change::GrantSet { grant: Grant { subject, target, level } }
    }

    async fn commit(store: &Store, changes: &[Change]) -> Revision {
        let commit = Commit {
            changes,
            actor: None,
            ids: &[],
            idempotency_key: None,
            committed_at: Timestamp(7),
            judged_at: None,
        };
        store.commit(commit).await.expect("commit")
    }

    /// Every item of every page, following the cursors to the end.
    async fn all_pages<T, F, Fut>(mut page: F) -> Vec<T>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<Page<T>, StoreError>>,
    {
        let mut items = Vec::new();
        let mut after = None;
        loop {
            let (mut rows, next) = page(after).await.expect("page");
            items.append(&mut rows);
            match next {
                Some(cursor) => after = Some(cursor),
                None => return items,
            }
        }
    }

    fn sample_batch() -> (Vec<Change>, Snapshot) {
        let owner = User { role: Role::Owner, has_password: true, ..user(1, "Ann@Example.com", "Ann") };
        let member = user(2, "bob@example.com", "Bob");
        let site = Site { id: SiteId(id(10)), name: "Shop".to_owned(), created_at: Timestamp(5) };
        let group = Group {
            id: GroupId(id(20)),
            name: "Editors".to_owned(),
            description: "can edit".to_owned(),
            external_id: Some("idp-7".to_owned()),
            created_at: Timestamp(6),
        };
        let report = Report {
            id: ReportId(id(30)),
            site_id: site.id,
            author: member.id,
            name: "Funnel".to_owned(),
            visibility: Visibility::AllUsers,
            created_at: Timestamp(8),
        };
        let site_grant = Grant { subject: Subject::User(member.id), target: Target::Site(site.id), level: Level::Edit };
        let all_sites_grant = Grant { subject: Subject::Group(group.id), target: Target::AllSites, level: Level::View };
        let changes = vec![
            Change::UserCreated { user: owner.clone(), password: Some(PasswordHash("$argon2id$ann".to_owned())) },
            user_created(member.clone()),
            Change::SiteCreated { site: site.clone() },
            Change::GroupCreated { group: group.clone() },
            Change::MemberAdded { group_id: group.id, user_id: member.id },
            Change::GrantSet { grant: site_grant },
            Change::GrantSet { grant: all_sites_grant },
            Change::ReportCreated { report: report.clone() },
        ];
        let expected = Snapshot {
            revision: 1,
            users: vec![owner, member.clone()],
            sites: vec![site],
            groups: vec![group.clone()],
            memberships: vec![(group.id, member.id)],
            grants: vec![all_sites_grant, site_grant],
            reports: vec![report],
        };
        (changes, expected)
    }

    async fn migrating_twice_changes_nothing(store: Store) {
        store.migrate().await.expect("second migrate");
        assert_eq!(store.head_revision().await.expect("head"), 0);
    }

    async fn a_committed_batch_loads_back_as_the_same_snapshot(store: Store) {
        let (changes, expected) = sample_batch();
        assert_eq!(commit(&store, &changes).await, 1);
        assert_eq!(store.load_snapshot().await.expect("snapshot"), expected);
    }

    /// The streamed read that a cold start builds from: more grants than a
    /// chunk holds, gathered as they arrive, give the index of the rows.
    async fn a_snapshot_streamed_in_many_chunks_builds_the_index_of_its_rows(store: Store) {
        use crate::dataset::{Dataset, Shape};
        use crate::index::{Index, IndexBuilder};

        let dataset = Dataset::generate(Shape::with_users(4_000), 5);
        store.import_dataset(&dataset.snapshot, |_| {}).await.expect("import");
        let (rows_tx, mut rows_rx) = mpsc::channel(SNAPSHOT_CHUNKS_IN_FLIGHT);
        let gather = async {
            let (mut builder, mut grant_chunks) = (IndexBuilder::default(), 0);
            while let Some(rows) = rows_rx.recv().await {
                grant_chunks += usize::from(matches!(rows, Rows::Grants(_)));
                builder.add(&rows);
            }
            (builder, grant_chunks)
        };
        let (revision, (builder, grant_chunks)) = tokio::join!(store.read_snapshot(rows_tx), gather);
        assert!(grant_chunks >= 3, "{} grants came in {grant_chunks} chunks", dataset.snapshot.grants.len());
        let mut expected = Index::from_snapshot(&dataset.snapshot);
        expected.apply_batch(1, &[]);
        assert!(builder.finish(revision.expect("read")) == expected, "the streamed index differs from the dataset's");
    }

    async fn a_snapshot_holds_rows_in_key_order_whatever_order_they_were_written_in(store: Store) {
        let users: Vec<User> = [3, 1, 2].map(|n| user(n, &format!("u{n}@example.com"), "U")).into();
        let sites = [12, 11].map(|n| Site { id: SiteId(id(n)), name: "S".to_owned(), created_at: Timestamp(5) });
        let group = Group {
            id: GroupId(id(20)),
            name: "G".to_owned(),
            description: String::new(),
            external_id: None,
            created_at: Timestamp(6),
        };
        let reports = [31, 30].map(|n| Report {
            id: ReportId(id(n)),
            site_id: sites[0].id,
            author: users[0].id,
            name: "R".to_owned(),
            visibility: Visibility::AuthorOnly,
            created_at: Timestamp(8),
        });
        let [u3, u1, u2] = [users[0].id, users[1].id, users[2].id].map(Subject::User);
        let g20 = Subject::Group(group.id);
        let (s12, s11) = (Target::Site(sites[0].id), Target::Site(sites[1].id));
        // One change a commit, in the reverse of key order where it can be.
        let mut changes: Vec<Change> = users.iter().cloned().map(user_created).collect();
        changes.extend(sites.iter().map(|site| Change::SiteCreated { site: site.clone() }));
        changes.push(Change::GroupCreated { group: group.clone() });
        for user in [users[0].id, users[1].id] {
            changes.push(Change::MemberAdded { group_id: group.id, user_id: user });
        }
        for (subject, target) in [(u3, s12), (u3, s11), (u1, s12), (g20, s11), (u2, Target::AllSites)] {
            changes.push(grant(subject, target, Level::View));
        }
        changes.push(grant(g20, Target::AllSites, Level::View));
        changes.extend(reports.iter().map(|report| Change::ReportCreated { report: report.clone() }));
        for change in &changes {
            commit(&store, std::slice::from_ref(change)).await;
        }

        let snapshot = store.load_snapshot().await.expect("snapshot");
        let ids = |ids: Vec<Uuid>| ids.into_iter().map(|id| id.as_u128()).collect::<Vec<_>>();
        assert_eq!(ids(snapshot.users.iter().map(|user| user.id.0).collect()), [1, 2, 3]);
        assert_eq!(ids(snapshot.sites.iter().map(|site| site.id.0).collect()), [11, 12]);
        assert_eq!(ids(snapshot.memberships.iter().map(|(_, user)| user.0).collect()), [1, 3]);
        assert_eq!(ids(snapshot.reports.iter().map(|report| report.id.0).collect()), [30, 31]);
        let grants: Vec<(Subject, Target)> =
            snapshot.grants.iter().map(|grant| (grant.subject, grant.target)).collect();
        // All-sites grants first; each part by subject kind (`group` < `user`), subject id, site id.
        let all_sites = Target::AllSites;
        assert_eq!(grants, [(g20, all_sites), (u2, all_sites), (g20, s11), (u1, s12), (u3, s11), (u3, s12)]);
    }

    /// A snapshot read while a writer holds an open transaction neither waits
    /// for it nor sees its rows.
    async fn a_snapshot_read_neither_waits_for_nor_sees_an_open_write(store: Store) {
        let (changes, expected) = sample_batch();
        commit(&store, &changes).await;
        let txn = store.begin_write().await.expect("begin a write");
        let site = Site { id: SiteId(id(99)), name: "Uncommitted".to_owned(), created_at: Timestamp(9) };
        apply::apply_changes(&txn, &[&Change::SiteCreated { site }]).await.expect("write");
        assert_eq!(store.load_snapshot().await.expect("snapshot"), expected);
        txn.rollback().await.expect("rollback");
    }

    // In-memory SQLite shares one cache between connections, where a read
    // of a table with an open write fails at once: a file it is.
    #[tokio::test]
    async fn a_snapshot_read_neither_waits_for_nor_sees_an_open_write_on_a_sqlite_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = sqlite_file_url(&dir);
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        a_snapshot_read_neither_waits_for_nor_sees_an_open_write(store).await;
    }

    #[tokio::test]
    async fn a_snapshot_read_neither_waits_for_nor_sees_an_open_write_on_postgres() {
        if let Some(store) = postgres_store().await {
            a_snapshot_read_neither_waits_for_nor_sees_an_open_write(store).await;
        }
    }

    async fn each_commit_advances_the_head_revision_by_one(store: Store) {
        assert_eq!(store.head_revision().await.expect("head"), 0);
        for n in 1..=3 {
            let revision = commit(&store, &[user_created(user(n, &format!("u{n}@x.org"), "U"))]).await;
            assert_eq!(revision, n as Revision);
            assert_eq!(store.head_revision().await.expect("head"), revision);
        }
        // A batch with no changes still takes a revision.
        assert_eq!(commit(&store, &[]).await, 4);
    }

    async fn changes_since_returns_the_committed_changes_without_password_hashes(store: Store) {
        let (changes, _) = sample_batch();
        commit(&store, &changes).await;
        let second = [Change::SiteUpdated { site_id: SiteId(id(10)), name: "Store".to_owned() }];
        commit(&store, &second).await;

        let log = store.changes_since(0, 10).await.expect("changes");
        let mut without_passwords = changes.clone();
        if let Change::UserCreated { password, .. } = &mut without_passwords[0] {
            *password = None;
        }
        assert_eq!(log, vec![(1, without_passwords), (2, second.to_vec())]);
        assert_eq!(store.changes_since(1, 10).await.expect("changes"), vec![(2, second.to_vec())]);
        assert_eq!(store.changes_since(0, 1).await.expect("changes").len(), 1);
        assert!(store.changes_since(2, 10).await.expect("changes").is_empty());
        assert!(store.changes_since(Revision::MAX, 10).await.expect("changes").is_empty());
    }

    async fn pruning_the_changelog_keeps_the_head_entry(store: Store) {
        for n in 1..=3 {
            commit(&store, &[user_created(user(n, &format!("u{n}@x.org"), "U"))]).await;
        }
        assert_eq!(store.oldest_retained_revision().await.expect("oldest"), Some(1));
        assert_eq!(store.prune_changelog(1).await.expect("prune"), 1);
        assert_eq!(store.oldest_retained_revision().await.expect("oldest"), Some(2));
        assert_eq!(store.prune_changelog(Revision::MAX).await.expect("prune"), 1);
        assert_eq!(store.oldest_retained_revision().await.expect("oldest"), Some(3));
        assert_eq!(commit(&store, &[]).await, 4);
    }

    async fn pruning_the_changelog_drops_the_idempotency_keys_of_its_revisions(store: Store) {
        for n in 1..=3 {
            let changes = [user_created(user(n, &format!("u{n}@x.org"), "U"))];
            let key = format!("key-{n}");
            let commit = Commit {
                changes: &changes,
                actor: None,
                ids: &[],
                idempotency_key: Some(&key),
                committed_at: Timestamp(7),
                judged_at: None,
            };
            store.commit(commit).await.expect("commit");
        }
        store.prune_changelog(2).await.expect("prune");
        for (key, kept) in [("key-1", false), ("key-2", false), ("key-3", true)] {
            assert_eq!(store.idempotent_result(key).await.expect("lookup").is_some(), kept, "{key}");
        }
    }

    async fn an_idempotency_key_keeps_the_result_of_its_batch(store: Store) {
        assert_eq!(store.idempotent_result("retry-1").await.expect("lookup"), None);
        let ids = vec![id(1).to_string(), String::new()];
        let changes = [user_created(user(1, "a@x.org", "A"))];
        let commit = Commit {
            changes: &changes,
            actor: Some(UserId(id(9))),
            ids: &ids,
            idempotency_key: Some("retry-1"),
            committed_at: Timestamp(7),
            judged_at: None,
        };
        let revision = store.commit(commit).await.expect("commit");
        assert_eq!(store.idempotent_result("retry-1").await.expect("lookup"), Some((revision, ids.clone())));
        // The key is taken: a second batch with it fails whole, leaving no trace.
        assert!(store.commit(commit).await.is_err());
        assert_eq!(store.head_revision().await.expect("head"), revision);
        assert_eq!(store.load_snapshot().await.expect("snapshot").users.len(), 1);
    }

    async fn passwords_are_found_by_email_key_and_by_id(store: Store) {
        let (changes, _) = sample_batch();
        commit(&store, &changes).await;
        let hash = Some(PasswordHash("$argon2id$ann".to_owned()));
        assert_eq!(
            store.password_by_email("ann@example.com").await.expect("lookup"),
            Some((UserId(id(1)), hash.clone()))
        );
        assert_eq!(store.password_by_email("bob@example.com").await.expect("lookup"), Some((UserId(id(2)), None)));
        assert_eq!(store.password_by_email("nobody@example.com").await.expect("lookup"), None);
        assert_eq!(store.password_of(UserId(id(1))).await.expect("lookup"), hash);
        assert_eq!(store.password_of(UserId(id(2))).await.expect("lookup"), None);
    }

    async fn a_user_update_changes_only_the_patched_fields(store: Store) {
        let original = user(1, "a@x.org", "Alice");
        commit(&store, &[user_created(original.clone())]).await;
        let patch = UserPatch {
            email: Some("Alice@Y.org".to_owned()),
            role: Some(Role::Owner),
            password_changed: true,
            password: Some(PasswordHash("$argon2id$new".to_owned())),
            ..UserPatch::default()
        };
        commit(&store, &[Change::UserUpdated { user_id: original.id, patch, updated_at: Timestamp(99) }]).await;

        let updated = store.get_user(original.id).await.expect("get").expect("user");
        let expected = User {
            email: "Alice@Y.org".to_owned(),
            role: Role::Owner,
            has_password: true,
            updated_at: Timestamp(99),
            ..original.clone()
        };
        assert_eq!(updated, expected);
        assert_eq!(store.password_by_email("alice@y.org").await.expect("lookup").map(|(id, _)| id), Some(original.id));
    }

    async fn updates_and_deletes_reach_every_table(store: Store) {
        let (changes, _) = sample_batch();
        commit(&store, &changes).await;
        let (group, member, report) = (GroupId(id(20)), UserId(id(2)), ReportId(id(30)));
        commit(
            &store,
            &[
                Change::GroupUpdated {
                    group_id: group,
                    name: Some("Writers".to_owned()),
                    description: None,
                    external_id: Some(None),
                },
                Change::GroupUpdated { group_id: group, name: None, description: None, external_id: None },
                Change::ReportUpdated {
                    report_id: report,
                    name: None,
                    visibility: Some(Visibility::AuthorOnly),
                    author: Some(UserId(id(1))),
                },
                Change::MemberAdded { group_id: group, user_id: member },
            ],
        )
        .await;
        let group_row = store.get_group(group).await.expect("get").expect("group");
        assert_eq!(
            (group_row.name.as_str(), group_row.description.as_str(), group_row.external_id),
            ("Writers", "can edit", None)
        );
        let report_row = store.get_report(report).await.expect("get").expect("report");
        assert_eq!((report_row.visibility, report_row.author), (Visibility::AuthorOnly, UserId(id(1))));

        commit(
            &store,
            &[
                Change::MemberRemoved { group_id: group, user_id: member },
                grant(Subject::User(member), Target::Site(SiteId(id(10))), Level::NoAccess),
                grant(Subject::Group(group), Target::AllSites, Level::NoAccess),
                Change::UserDeleted { user_id: member },
                Change::GroupDeleted { group_id: group },
                Change::ReportDeleted { report_id: report },
                Change::SiteDeleted { site_id: SiteId(id(10)) },
            ],
        )
        .await;
        let snapshot = store.load_snapshot().await.expect("snapshot");
        assert_eq!(snapshot.users.iter().map(|user| user.id).collect::<Vec<_>>(), vec![UserId(id(1))]);
        assert!(snapshot.sites.is_empty() && snapshot.groups.is_empty() && snapshot.reports.is_empty());
        assert!(snapshot.memberships.is_empty() && snapshot.grants.is_empty());
    }

    async fn in_a_run_of_grant_changes_the_last_change_of_each_grant_wins(store: Store) {
        let user = Subject::User(UserId(id(1)));
        let group = Subject::Group(GroupId(id(2)));
        // More grants than one multi-row statement holds, set and then partly revoked.
        let sites: Vec<SiteId> = (0..1_234).map(|n| SiteId(id(1_000 + n))).collect();
        let mut changes: Vec<Change> = sites.iter().map(|site| grant(user, Target::Site(*site), Level::View)).collect();
        changes.push(grant(group, Target::AllSites, Level::Edit));
        commit(&store, &changes).await;

        let mut changes: Vec<Change> =
            sites[..700].iter().map(|site| grant(user, Target::Site(*site), Level::NoAccess)).collect();
        changes.extend([
            grant(user, Target::Site(sites[0]), Level::Manage),
            grant(user, Target::Site(sites[800]), Level::EditPublish),
            grant(group, Target::AllSites, Level::Manage),
            grant(user, Target::AllSites, Level::View),
            grant(user, Target::AllSites, Level::NoAccess),
        ]);
        commit(&store, &changes).await;

        let grants = store.load_snapshot().await.expect("snapshot").grants;
        let level_of =
            |subject, target| grants.iter().find(|g| g.subject == subject && g.target == target).map(|g| g.level);
        assert_eq!(grants.len(), 1 + 1 + (1_234 - 700));
        assert_eq!(level_of(user, Target::Site(sites[0])), Some(Level::Manage));
        assert_eq!(level_of(user, Target::Site(sites[1])), None);
        assert_eq!(level_of(user, Target::Site(sites[700])), Some(Level::View));
        assert_eq!(level_of(user, Target::Site(sites[800])), Some(Level::EditPublish));
        assert_eq!(level_of(group, Target::AllSites), Some(Level::Manage));
        assert_eq!(level_of(user, Target::AllSites), None);
    }

    async fn paging_users_with_a_search_returns_every_match_once(store: Store) {
        let users = [
            user(1, "al@x.org", "Zed"),
            user(2, "zed@x.org", "Alma"),
            user(3, "ALBERT@x.org", "Bert"),
            user(4, "bob@x.org", "Bob"),
            user(5, "a_l@x.org", "Underscore"),
            user(6, "al%@x.org", "Percent"),
            user(7, "al|pipe@x.org", "Pipe"),
            user(8, "alz@x.org", "Al"),
            user(9, "xal@x.org", "Not a prefix"),
            user(10, "ál@x.org", "Accent"),
        ];
        commit(&store, &users.iter().cloned().map(user_created).collect::<Vec<_>>()).await;

        for (search, expected) in [
            ("Al", vec![1, 2, 3, 6, 7, 8]),
            ("al%", vec![6]),
            ("a_", vec![5]),
            ("", (1..=10).collect()),
            ("nobody", vec![]),
        ] {
            for limit in [1, 2, 4, 100] {
                let found = all_pages(|after| {
                    let store = store.clone();
                    async move { store.list_users(search, after.as_deref(), limit).await }
                })
                .await;
                let mut ids: Vec<u128> = found.iter().map(|user| user.id.0.as_u128()).collect();
                let keys: Vec<String> = found.iter().map(|user| user.email.to_lowercase()).collect();
                assert!(keys.is_sorted(), "pages come in email order: {keys:?}");
                ids.sort_unstable();
                assert_eq!(ids, expected, "search `{search}`, limit {limit}");
            }
        }
    }

    async fn every_listing_pages_through_all_its_rows(store: Store) {
        let group = GroupId(id(500));
        let mut changes = vec![Change::GroupCreated {
            group: Group {
                id: group,
                name: "Big".to_owned(),
                description: String::new(),
                external_id: None,
                created_at: Timestamp(1),
            },
        }];
        for n in 0..7u128 {
            let site = SiteId(id(100 + n));
            changes
                .push(Change::SiteCreated { site: Site { id: site, name: format!("s{n}"), created_at: Timestamp(1) } });
            changes.push(Change::GroupCreated {
                group: Group {
                    id: GroupId(id(200 + n)),
                    name: format!("G|{}", 7 - n),
                    description: String::new(),
                    external_id: None,
                    created_at: Timestamp(1),
                },
            });
            changes.push(Change::MemberAdded { group_id: group, user_id: UserId(id(300 + n)) });
            changes.push(grant(Subject::Group(group), Target::Site(site), Level::View));
            changes.push(grant(Subject::User(UserId(id(300 + n))), Target::Site(SiteId(id(100))), Level::Edit));
            changes.push(Change::ReportCreated {
                report: Report {
                    id: ReportId(id(400 + n)),
                    site_id: SiteId(id(100 + n % 2)),
                    author: UserId(id(300)),
                    name: format!("r{n}"),
                    visibility: Visibility::AllUsers,
                    created_at: Timestamp(1),
                },
            });
        }
        changes.push(grant(Subject::Group(group), Target::AllSites, Level::View));
        commit(&store, &changes).await;

        for limit in [1, 3, 50] {
            let sites = all_pages(|after| {
                let store = store.clone();
                async move { store.list_sites(after.as_deref(), limit).await }
            })
            .await;
            assert_eq!(sites.iter().map(|site| site.id.0).collect::<Vec<_>>(), (100..107).map(id).collect::<Vec<_>>());

            let groups = all_pages(|after| {
                let store = store.clone();
                async move { store.list_groups(after.as_deref(), limit).await }
            })
            .await;
            let names: Vec<&str> = groups.iter().map(|group| group.name.as_str()).collect();
            assert_eq!(names, ["Big", "G|1", "G|2", "G|3", "G|4", "G|5", "G|6", "G|7"]);

            let members = all_pages(|after| {
                let store = store.clone();
                async move { store.list_group_members(group, after.as_deref(), limit).await }
            })
            .await;
            assert_eq!(members, (300..307).map(|n| UserId(id(n))).collect::<Vec<_>>());

            let group_grants = all_pages(|after| {
                let store = store.clone();
                async move { store.list_grants(GrantFilter::Group(group), after.as_deref(), limit).await }
            })
            .await;
            let targets: Vec<Target> = group_grants.iter().map(|grant| grant.target).collect();
            let mut expected = vec![Target::AllSites];
            expected.extend((100..107).map(|n| Target::Site(SiteId(id(n)))));
            assert_eq!(targets, expected);

            let site_grants = all_pages(|after| {
                let store = store.clone();
                async move { store.list_grants(GrantFilter::Site(SiteId(id(100))), after.as_deref(), limit).await }
            })
            .await;
            let subjects: Vec<Subject> = site_grants.iter().map(|grant| grant.subject).collect();
            let mut expected = vec![Subject::Group(group)];
            expected.extend((300..307).map(|n| Subject::User(UserId(id(n)))));
            assert_eq!(subjects, expected);

            let user_grants = all_pages(|after| {
                let store = store.clone();
                async move { store.list_grants(GrantFilter::User(UserId(id(301))), after.as_deref(), limit).await }
            })
            .await;
            assert_eq!(user_grants.len(), 1);

            let reports = all_pages(|after| {
                let store = store.clone();
                async move { store.list_reports(Some(SiteId(id(101))), after.as_deref(), limit).await }
            })
            .await;
            assert_eq!(reports.iter().map(|report| report.id.0).collect::<Vec<_>>(), [401, 403, 405].map(id));
            let all_reports = all_pages(|after| {
                let store = store.clone();
                async move { store.list_reports(None, after.as_deref(), limit).await }
            })
            .await;
            assert_eq!(all_reports.len(), 7);
        }
    }

    async fn a_malformed_cursor_is_a_bad_cursor(store: Store) {
        let site_filter = GrantFilter::Site(SiteId(id(1)));
        assert!(matches!(store.list_sites(Some("nope"), 10).await, Err(StoreError::BadCursor(_))));
        assert!(matches!(store.list_users("", Some("no-separator"), 10).await, Err(StoreError::BadCursor(_))));
        assert!(matches!(store.list_groups(Some("x|name"), 10).await, Err(StoreError::BadCursor(_))));
        assert!(matches!(store.list_grants(site_filter, Some("robot|x"), 10).await, Err(StoreError::BadCursor(_))));
        let cursor = format!("robot|{}", id(1));
        assert!(matches!(store.list_grants(site_filter, Some(&cursor), 10).await, Err(StoreError::BadCursor(_))));
        let user_filter = GrantFilter::User(UserId(id(1)));
        assert!(matches!(store.list_grants(user_filter, Some("**"), 10).await, Err(StoreError::BadCursor(_))));
    }

    #[tokio::test]
    async fn a_sqlite_file_keeps_its_data_across_connections() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = sqlite_file_url(&dir);
        let store = Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let (changes, expected) = sample_batch();
        commit(&store, &changes).await;
        let journal: Option<String> = store
            .db
            .query_one_raw(sea_orm::Statement::from_string(DbBackend::Sqlite, "PRAGMA journal_mode"))
            .await
            .expect("pragma")
            .and_then(|row| row.try_get_by_index(0).ok());
        assert_eq!(journal.as_deref(), Some("wal"));
        drop(store);

        let reopened = Store::connect(&url).await.expect("reconnect");
        reopened.migrate().await.expect("migrate again");
        assert_eq!(reopened.load_snapshot().await.expect("snapshot"), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writers_in_two_processes_commit_revisions_without_gaps() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = sqlite_file_url(&dir);
        let first = Store::connect(&url).await.expect("connect");
        first.migrate().await.expect("migrate");
        // A second pool with its own process-wide lock stands for another process.
        let second = Store::connect(&url).await.expect("connect");
        let writers = (0..8u128).map(|writer| {
            let store = if writer % 2 == 0 { first.clone() } else { second.clone() };
            tokio::spawn(async move {
                for n in 0..10 {
                    let site = SiteId(id(writer * 100 + n));
                    commit(
                        &store,
                        &[Change::SiteCreated {
                            site: Site { id: site, name: "s".to_owned(), created_at: Timestamp(1) },
                        }],
                    )
                    .await;
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.expect("writer");
        }
        let revisions: Vec<Revision> =
            first.changes_since(0, 1_000).await.expect("changes").into_iter().map(|(revision, _)| revision).collect();
        assert_eq!(revisions, (1..=80).collect::<Vec<_>>());
        assert_eq!(second.load_snapshot().await.expect("snapshot").sites.len(), 80);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_unavailable() {
        let error = Store::connect("sqlite:///nonexistent-dir/warden.db?mode=ro").await.err().expect("an error");
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }
}
