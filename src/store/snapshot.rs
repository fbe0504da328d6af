//! Reading a [`Snapshot`]: every row the index is built from, at one
//! revision, as fast as each backend allows (cold start reads ~11M rows).
//!
//! Each table is read by ONE statement selecting only the columns a
//! snapshot holds (of a password hash, only whether there is one). All
//! statements run in one read transaction, so the rows are those of one
//! revision, the head revision read first.
//!
//! The rows are sent on in chunks as they are read, so that the index is
//! built while the rest is read and no one holds all of them (at XL, ~11M
//! rows would take ~0.6 GB while the index is built). They come in storage
//! order: an `ORDER BY` would walk the primary-key index and look every row
//! up in the table (SQLite's tables are rowid tables, and the index does not
//! hold `level`): for the 10M rows of `site_grants` at XL that took twice as
//! long as a scan in the sqlite3 shell (4.6 s against 2.3 s). A [`Snapshot`]
//! read whole is put in primary-key order after the read, so that two reads
//! of the same data compare equal.
//!
//! SQLite is read through rusqlite on a connection of its own, in a blocking
//! thread. sqlx runs each SQLite connection on a worker thread and hands
//! every row to the async task over a channel: a wake-up, and on one core two
//! context switches, per row, which made a cold start at 10M grants take
//! minutes. PostgreSQL rows arrive over a socket without such a hand-off;
//! each table comes as one `COPY ... TO STDOUT` in the binary format, parsed
//! here, on a connection of the store's pool.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rusqlite::{OpenFlags, Row};
use sea_orm::sqlx::postgres::PgPool;
use sea_orm::sqlx::{self, Connection as _};
use sea_orm::{DbErr, RuntimeErr};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tracing::info;
use uuid::Uuid;

use super::convert::{level_from_code, role_from_text, subject_from_key, subject_key, visibility_from_text};
use super::{Rows, Snapshot, StoreError, revision_of};
use crate::model::{
    Grant, Group, GroupId, Modules, Report, ReportId, Revision, Site, SiteId, Target, Timestamp, User, UserId,
};

const HEAD_REVISION: &str = "SELECT MAX(revision) FROM changelog";
const USERS: &str = "SELECT id, email, name, language, role, analytics, tag_manager, consent_manager, \
     customer_data_platform, administration, password_hash IS NOT NULL, created_at, updated_at \
     FROM users";
const SITES: &str = "SELECT id, name, created_at FROM sites";
const GROUPS: &str = "SELECT id, name, description, external_id, created_at FROM user_groups";
const MEMBERSHIPS: &str = "SELECT group_id, user_id FROM group_members";
const ALL_SITES_GRANTS: &str = "SELECT subject_kind, subject_id, level FROM all_sites_grants";
const SITE_GRANTS: &str = "SELECT subject_kind, subject_id, site_id, level FROM site_grants";
const REPORTS: &str = "SELECT id, site_id, author_id, name, visibility, created_at FROM reports";

/// Where a SQLite store's database is, to open a reading connection to it.
#[derive(Clone, Debug)]
pub(super) struct SqliteSource {
    /// The file, or the name sqlx gave an in-memory database.
    pub filename: PathBuf,
    /// An in-memory database, reached through SQLite's shared cache (as
    /// sqlx opens it). There, a read of a table that another connection is
    /// writing fails at once (`SQLITE_LOCKED`) instead of seeing the last
    /// commit as a file in WAL mode lets it; the engine loads under its
    /// writer lock, so its own writes never overlap a load.
    pub in_memory: bool,
    pub busy_timeout: Duration,
}

/// Rows sent on at once: big enough that a chunk costs nothing to hand over,
/// small enough that the chunks in flight stay a few megabytes.
const CHUNK_ROWS: usize = 16 * 1024;

/// Reads a snapshot from SQLite into `rows_tx` and returns its revision.
/// Blocking: run it in a blocking thread.
pub(super) fn read_sqlite(source: &SqliteSource, rows_tx: &mpsc::Sender<Rows>) -> Result<Revision, StoreError> {
    // The same flags sqlx opens with, so that an in-memory name reaches the
    // same shared-cache database; NO_MUTEX: this connection stays on one thread.
    let mut flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if source.in_memory {
        flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    let mut conn = rusqlite::Connection::open_with_flags(&source.filename, flags)?;
    conn.busy_timeout(source.busy_timeout)?;
    // A deferred transaction sees one snapshot of the database from its
    // first read (the head revision) to its end, while writers go on.
    let txn = conn.transaction()?;
    let revision = txn.query_row(HEAD_REVISION, [], |row| row.get::<_, Option<i64>>(0))?.map_or(Ok(0), revision_of)?;
    let mut times = TableTimes::start();
    read_sqlite_table(&txn, USERS, rows_tx, Rows::Users, |row| {
        Ok(User {
            id: UserId(uuid_at(row, 0)?),
            email: row.get(1)?,
            name: row.get(2)?,
            language: row.get(3)?,
            role: role_from_text(row.get_ref(4)?.as_str()?)?,
            modules: Modules {
                analytics: row.get(5)?,
                tag_manager: row.get(6)?,
                consent_manager: row.get(7)?,
                customer_data_platform: row.get(8)?,
                administration: row.get(9)?,
            },
            has_password: row.get(10)?,
            created_at: Timestamp(row.get(11)?),
            updated_at: Timestamp(row.get(12)?),
        })
    })?;
    times.users = times.lap();
    read_sqlite_table(&txn, SITES, rows_tx, Rows::Sites, |row| {
        Ok(Site { id: SiteId(uuid_at(row, 0)?), name: row.get(1)?, created_at: Timestamp(row.get(2)?) })
    })?;
    times.sites = times.lap();
    read_sqlite_table(&txn, GROUPS, rows_tx, Rows::Groups, |row| {
        Ok(Group {
            id: GroupId(uuid_at(row, 0)?),
            name: row.get(1)?,
            description: row.get(2)?,
            external_id: row.get(3)?,
            created_at: Timestamp(row.get(4)?),
        })
    })?;
    times.groups = times.lap();
    read_sqlite_table(&txn, MEMBERSHIPS, rows_tx, Rows::Memberships, |row| {
        Ok((GroupId(uuid_at(row, 0)?), UserId(uuid_at(row, 1)?)))
    })?;
    times.memberships = times.lap();
    read_sqlite_table(&txn, ALL_SITES_GRANTS, rows_tx, Rows::Grants, |row| {
        Ok(Grant {
            subject: subject_from_key(row.get_ref(0)?.as_str()?, uuid_at(row, 1)?)?,
            target: Target::AllSites,
            level: level_from_code(row.get(2)?)?,
        })
    })?;
    times.all_sites_grants = times.lap();
    read_sqlite_table(&txn, SITE_GRANTS, rows_tx, Rows::Grants, |row| {
        Ok(Grant {
            subject: subject_from_key(row.get_ref(0)?.as_str()?, uuid_at(row, 1)?)?,
            target: Target::Site(SiteId(uuid_at(row, 2)?)),
            level: level_from_code(row.get(3)?)?,
        })
    })?;
    times.site_grants = times.lap();
    read_sqlite_table(&txn, REPORTS, rows_tx, Rows::Reports, |row| {
        Ok(Report {
            id: ReportId(uuid_at(row, 0)?),
            site_id: SiteId(uuid_at(row, 1)?),
            author: UserId(uuid_at(row, 2)?),
            name: row.get(3)?,
            visibility: visibility_from_text(row.get_ref(4)?.as_str()?)?,
            created_at: Timestamp(row.get(5)?),
        })
    })?;
    times.reports = times.lap();
    txn.commit()?;
    times.log("sqlite");
    Ok(revision)
}

/// Every row of one statement, converted and sent on in chunks as `Rows`
/// of the kind `wrap` makes.
fn read_sqlite_table<T>(
    txn: &rusqlite::Transaction<'_>,
    sql: &str,
    rows_tx: &mpsc::Sender<Rows>,
    wrap: fn(Vec<T>) -> Rows,
    convert: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<(), StoreError> {
    let mut statement = txn.prepare(sql)?;
    let mut rows = statement.query([])?;
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    while let Some(row) = rows.next()? {
        chunk.push(convert(row)?);
        if chunk.len() == CHUNK_ROWS {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_ROWS));
            rows_tx.blocking_send(wrap(full)).map_err(|_| receiver_gone())?;
        }
    }
    if !chunk.is_empty() {
        rows_tx.blocking_send(wrap(chunk)).map_err(|_| receiver_gone())?;
    }
    Ok(())
}

fn receiver_gone() -> StoreError {
    StoreError::Internal("the snapshot's rows were no longer received".to_owned())
}

/// A UUID as sqlx stores it in SQLite: a 16-byte blob.
fn uuid_at(row: &Row<'_>, column: usize) -> Result<Uuid, StoreError> {
    let bytes = row.get_ref(column)?.as_blob()?;
    Uuid::from_slice(bytes)
        .map_err(|_| StoreError::Internal(format!("a UUID of {} bytes in the database", bytes.len())))
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, SystemIoFailure};
        match err.sqlite_error_code() {
            Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | CannotOpen) => {
                StoreError::Unavailable(err.to_string())
            }
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(err: rusqlite::types::FromSqlError) -> Self {
        StoreError::Internal(format!("unreadable value in the database: {err}"))
    }
}

/// Reads a snapshot from PostgreSQL into `rows_tx` and returns its revision.
pub(super) async fn read_postgres(pool: &PgPool, rows_tx: &mpsc::Sender<Rows>) -> Result<Revision, StoreError> {
    let mut conn = pool.acquire().await?;
    // One snapshot for every statement of the transaction.
    let mut txn = conn.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?;
    let head: Option<i64> = sqlx::query_scalar(HEAD_REVISION).fetch_one(&mut *txn).await?;
    let revision = head.map_or(Ok(0), revision_of)?;
    let mut times = TableTimes::start();
    copy_postgres_table(&mut txn, USERS, rows_tx, Rows::Users, |row| {
        Ok(User {
            id: UserId(row.uuid()?),
            email: row.string()?,
            name: row.string()?,
            language: row.string()?,
            role: role_from_text(row.text()?)?,
            modules: Modules {
                analytics: row.bool()?,
                tag_manager: row.bool()?,
                consent_manager: row.bool()?,
                customer_data_platform: row.bool()?,
                administration: row.bool()?,
            },
            has_password: row.bool()?,
            created_at: Timestamp(row.i64()?),
            updated_at: Timestamp(row.i64()?),
        })
    })
    .await?;
    times.users = times.lap();
    copy_postgres_table(&mut txn, SITES, rows_tx, Rows::Sites, |row| {
        Ok(Site { id: SiteId(row.uuid()?), name: row.string()?, created_at: Timestamp(row.i64()?) })
    })
    .await?;
    times.sites = times.lap();
    copy_postgres_table(&mut txn, GROUPS, rows_tx, Rows::Groups, |row| {
        Ok(Group {
            id: GroupId(row.uuid()?),
            name: row.string()?,
            description: row.string()?,
            external_id: row.optional_string()?,
            created_at: Timestamp(row.i64()?),
        })
    })
    .await?;
    times.groups = times.lap();
    copy_postgres_table(&mut txn, MEMBERSHIPS, rows_tx, Rows::Memberships, |row| {
        Ok((GroupId(row.uuid()?), UserId(row.uuid()?)))
    })
    .await?;
    times.memberships = times.lap();
    copy_postgres_table(&mut txn, ALL_SITES_GRANTS, rows_tx, Rows::Grants, |row| {
        Ok(Grant {
            subject: subject_from_key(row.text()?, row.uuid()?)?,
            target: Target::AllSites,
            level: level_from_code(row.i16()?)?,
        })
    })
    .await?;
    times.all_sites_grants = times.lap();
    copy_postgres_table(&mut txn, SITE_GRANTS, rows_tx, Rows::Grants, |row| {
        Ok(Grant {
            subject: subject_from_key(row.text()?, row.uuid()?)?,
            target: Target::Site(SiteId(row.uuid()?)),
            level: level_from_code(row.i16()?)?,
        })
    })
    .await?;
    times.site_grants = times.lap();
    copy_postgres_table(&mut txn, REPORTS, rows_tx, Rows::Reports, |row| {
        Ok(Report {
            id: ReportId(row.uuid()?),
            site_id: SiteId(row.uuid()?),
            author: UserId(row.uuid()?),
            name: row.string()?,
            visibility: visibility_from_text(row.text()?)?,
            created_at: Timestamp(row.i64()?),
        })
    })
    .await?;
    times.reports = times.lap();
    txn.commit().await?;
    times.log("postgres");
    Ok(revision)
}

/// Every row of one query, converted and sent on in chunks as `Rows` of
/// the kind `wrap` makes. The rows come as `COPY ... TO STDOUT`
/// in PostgreSQL's binary format, a few length-prefixed fields a row, which
/// costs the client less than a sqlx `PgRow` a row (at XL, `site_grants` read
/// in 10.6 s against 12.5 s through sqlx rows, on a busy machine where psql
/// alone took 11.5 s for the same COPY: PostgreSQL producing the rows is
/// what is left).
async fn copy_postgres_table<T>(
    txn: &mut sqlx::PgTransaction<'_>,
    query: &str,
    rows_tx: &mpsc::Sender<Rows>,
    wrap: fn(Vec<T>) -> Rows,
    convert: impl Fn(&mut CopyRow<'_>) -> Result<T, StoreError>,
) -> Result<(), StoreError> {
    let mut chunks = txn.copy_out_raw(&format!("COPY ({query}) TO STDOUT (FORMAT binary)")).await?;
    let mut converted = Vec::with_capacity(CHUNK_ROWS);
    // Bytes received and not parsed yet: a row may span chunks.
    let mut pending: Vec<u8> = Vec::new();
    let mut header_read = false;
    let mut trailer_read = false;
    while let Some(chunk) = chunks.next().await {
        pending.extend_from_slice(&chunk?);
        let mut at = 0;
        if !header_read {
            let Some(header_len) = copy_header_len(&pending)? else { continue };
            at = header_len;
            header_read = true;
        }
        while !trailer_read && let Some((row, len)) = CopyRow::parse(&pending[at..])? {
            at += len;
            match row {
                Some(mut row) => {
                    converted.push(convert(&mut row)?);
                    row.finish()?;
                }
                None => trailer_read = true,
            }
        }
        pending.drain(..at);
        if converted.len() >= CHUNK_ROWS {
            let full = std::mem::replace(&mut converted, Vec::with_capacity(CHUNK_ROWS));
            rows_tx.send(wrap(full)).await.map_err(|_| receiver_gone())?;
        }
    }
    if !trailer_read || !pending.is_empty() {
        return Err(copy_error("the data ends before its trailer"));
    }
    if !converted.is_empty() {
        rows_tx.send(wrap(converted)).await.map_err(|_| receiver_gone())?;
    }
    Ok(())
}

/// The signature that starts PostgreSQL's binary COPY format.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// The length of the binary COPY header at the start of `data`, once all of
/// it has arrived: signature, flags, and the extension area's length and data.
fn copy_header_len(data: &[u8]) -> Result<Option<usize>, StoreError> {
    let fixed = COPY_SIGNATURE.len() + 8;
    if data.len() < fixed {
        return Ok(None);
    }
    if !data.starts_with(COPY_SIGNATURE) {
        return Err(copy_error("no binary COPY signature"));
    }
    let extension = be_i32(&data[fixed - 4..fixed]);
    let len = usize::try_from(extension).map_err(|_| copy_error("a negative header extension length"))? + fixed;
    Ok((data.len() >= len).then_some(len))
}

/// The fields of one row of binary COPY data, read in order.
struct CopyRow<'a> {
    fields: &'a [u8],
    left: i16,
}

impl<'a> CopyRow<'a> {
    /// The row at the start of `data` and its length in bytes, `Some((None,
    /// 2))` for the trailer, or `None` when the row has not all arrived.
    fn parse(data: &'a [u8]) -> Result<Option<(Option<CopyRow<'a>>, usize)>, StoreError> {
        let Some(count) = data.get(..2).map(be_i16) else { return Ok(None) };
        if count == -1 {
            return Ok(Some((None, 2)));
        }
        let mut len = 2;
        for _ in 0..count {
            let Some(field_len) = data.get(len..len + 4).map(be_i32) else { return Ok(None) };
            len += 4 + usize::try_from(field_len).unwrap_or(0);
        }
        if data.len() < len {
            return Ok(None);
        }
        Ok(Some((Some(CopyRow { fields: &data[2..len], left: count }), len)))
    }

    /// The next field; `None` for NULL.
    fn next(&mut self) -> Result<Option<&'a [u8]>, StoreError> {
        if self.left == 0 {
            return Err(copy_error("a row with too few fields"));
        }
        self.left -= 1;
        let len = be_i32(&self.fields[..4]);
        let (field, rest) = match usize::try_from(len) {
            Ok(len) => (Some(&self.fields[4..4 + len]), &self.fields[4 + len..]),
            Err(_) => (None, &self.fields[4..]),
        };
        self.fields = rest;
        Ok(field)
    }

    fn field(&mut self) -> Result<&'a [u8], StoreError> {
        self.next()?.ok_or_else(|| copy_error("a NULL in a NOT NULL column"))
    }

    fn sized<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        self.field()?.try_into().map_err(|_| copy_error("a field of the wrong size"))
    }

    fn uuid(&mut self) -> Result<Uuid, StoreError> {
        Ok(Uuid::from_bytes(self.sized()?))
    }

    fn text(&mut self) -> Result<&'a str, StoreError> {
        std::str::from_utf8(self.field()?).map_err(|_| copy_error("text that is not UTF-8"))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        self.text().map(str::to_owned)
    }

    fn optional_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(|text| Some(text.to_owned()))
                .map_err(|_| copy_error("text that is not UTF-8")),
        }
    }

    fn bool(&mut self) -> Result<bool, StoreError> {
        Ok(self.sized::<1>()? != [0])
    }

    fn i16(&mut self) -> Result<i16, StoreError> {
        Ok(i16::from_be_bytes(self.sized()?))
    }

    fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.sized()?))
    }

    /// Checks that every field was read.
    fn finish(self) -> Result<(), StoreError> {
        if self.left == 0 { Ok(()) } else { Err(copy_error("a row with more fields than read")) }
    }
}

fn be_i16(bytes: &[u8]) -> i16 {
    i16::from_be_bytes([bytes[0], bytes[1]])
}

fn be_i32(bytes: &[u8]) -> i32 {
    i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

fn copy_error(what: &str) -> StoreError {
    StoreError::Internal(format!("unreadable binary COPY data from PostgreSQL: {what}"))
}

/// A sqlx error is judged (unavailable or internal) as the store judges sea-orm's.
impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        DbErr::Query(RuntimeErr::SqlxError(std::sync::Arc::new(err))).into()
    }
}

impl Snapshot {
    /// Adds a chunk of rows.
    pub(super) fn extend(&mut self, rows: Rows) {
        match rows {
            Rows::Users(users) => self.users.extend(users),
            Rows::Sites(sites) => self.sites.extend(sites),
            Rows::Groups(groups) => self.groups.extend(groups),
            Rows::Memberships(memberships) => self.memberships.extend(memberships),
            Rows::Grants(grants) => self.grants.extend(grants),
            Rows::Reports(reports) => self.reports.extend(reports),
        }
    }

    /// Puts every table in primary-key order (all-sites grants first).
    pub(super) fn sort(&mut self) {
        self.users.sort_by_key(|user| user.id);
        self.sites.sort_by_key(|site| site.id);
        self.groups.sort_by_key(|group| group.id);
        self.memberships.sort();
        self.grants.sort_by_key(grant_key);
        self.reports.sort_by_key(|report| report.id);
    }
}

/// The order of grants in a snapshot: all-sites grants first, each kind by
/// its rows' primary key (stored subject key, then site).
fn grant_key(grant: &Grant) -> (bool, (&'static str, Uuid), Option<SiteId>) {
    let site = match grant.target {
        Target::AllSites => None,
        Target::Site(site) => Some(site),
    };
    (site.is_some(), subject_key(grant.subject), site)
}

/// How long each table took to read, for the log.
struct TableTimes {
    lap_started: Instant,
    users: u64,
    sites: u64,
    groups: u64,
    memberships: u64,
    all_sites_grants: u64,
    site_grants: u64,
    reports: u64,
}

impl TableTimes {
    fn start() -> TableTimes {
        TableTimes {
            lap_started: Instant::now(),
            users: 0,
            sites: 0,
            groups: 0,
            memberships: 0,
            all_sites_grants: 0,
            site_grants: 0,
            reports: 0,
        }
    }

    /// Milliseconds since the start or the previous lap.
    fn lap(&mut self) -> u64 {
        let now = Instant::now();
        let ms = now.duration_since(self.lap_started).as_millis() as u64;
        self.lap_started = now;
        ms
    }

    fn log(&self, backend: &'static str) {
        info!(
            backend,
            users_ms = self.users,
            sites_ms = self.sites,
            groups_ms = self.groups,
            memberships_ms = self.memberships,
            all_sites_grants_ms = self.all_sites_grants,
            site_grants_ms = self.site_grants,
            reports_ms = self.reports,
            "snapshot read"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_copy_row_is_parsed_only_once_all_of_it_has_arrived() {
        // Three fields: a UUID, a NULL, a text.
        let mut row = 3i16.to_be_bytes().to_vec();
        row.extend(16i32.to_be_bytes());
        row.extend(Uuid::from_u128(7).as_bytes());
        row.extend((-1i32).to_be_bytes());
        row.extend(2i32.to_be_bytes());
        row.extend(b"hi");
        for cut in 0..row.len() {
            assert!(CopyRow::parse(&row[..cut]).expect("parse").is_none(), "a row cut at {cut} is not whole");
        }
        row.extend(b"next row");
        let (parsed, len) = CopyRow::parse(&row).expect("parse").expect("a whole row");
        assert_eq!(len, row.len() - b"next row".len());
        let mut parsed = parsed.expect("a row, not the trailer");
        assert_eq!(parsed.uuid().expect("uuid"), Uuid::from_u128(7));
        assert_eq!(parsed.optional_string().expect("null"), None);
        assert_eq!(parsed.text().expect("text"), "hi");
        parsed.finish().expect("every field read");
        assert!(matches!(CopyRow::parse(&(-1i16).to_be_bytes()), Ok(Some((None, 2)))));
    }

    #[test]
    fn the_binary_copy_header_is_measured_once_all_of_it_has_arrived() {
        let mut header = COPY_SIGNATURE.to_vec();
        header.extend(0i32.to_be_bytes());
        header.extend(3i32.to_be_bytes());
        header.extend(b"ext");
        for cut in 0..header.len() {
            assert_eq!(copy_header_len(&header[..cut]).expect("header"), None, "a header cut at {cut}");
        }
        assert_eq!(copy_header_len(&header).expect("header"), Some(header.len()));
        assert!(copy_header_len(b"NOTCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0").is_err());
    }
}
