//! On PostgreSQL, every statement that adds changelog entries notifies the
//! `warden_commits` channel with the highest revision it added; PostgreSQL
//! delivers it when (and only if) the transaction commits. Replicas sharing
//! the database wake on it (`Engine::follow_storage`), and the writer pays no
//! round trip for it. SQLite cannot notify another process: nothing to do.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE_FUNCTION: &str = "CREATE OR REPLACE FUNCTION warden_notify_commits() RETURNS trigger \
    LANGUAGE plpgsql AS $$ \
    BEGIN \
        PERFORM pg_notify('warden_commits', (SELECT max(revision) FROM added)::text); \
        RETURN NULL; \
    END $$";

const CREATE_TRIGGER: &str = "CREATE TRIGGER changelog_notify_commits AFTER INSERT ON changelog \
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION warden_notify_commits()";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(CREATE_FUNCTION).await?;
        db.execute_unprepared(CREATE_TRIGGER).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER changelog_notify_commits ON changelog").await?;
        db.execute_unprepared("DROP FUNCTION warden_notify_commits()").await?;
        Ok(())
    }
}
