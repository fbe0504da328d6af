//! warden's database schema, as sea-orm migrations that run on SQLite and
//! PostgreSQL alike. `warden serve` applies them at start-up and
//! `warden migrate` applies them and exits.

use sea_orm_migration::{MigrationTrait, async_trait};

pub use sea_orm_migration::MigratorTrait;

mod m20261122_000001_initial;
mod m20261123_000001_idempotency_keys_by_revision;
mod m20261205_000001_notify_commits;

/// Applies warden's migrations in order: `Migrator::up(&db, None)`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261123_000001_idempotency_keys_by_revision::Migration),
            Box::new(m20261205_000001_notify_commits::Migration),
        ]
    }
}
