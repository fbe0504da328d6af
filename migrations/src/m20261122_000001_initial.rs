//! The initial schema.
//!
//! There are no foreign keys on purpose: the in-memory index judges every
//! batch before it reaches storage, and cascades (a deleted user's grants,
//! memberships and reports) arrive as explicit changes of the same batch.
//!
//! Columns used for prefix search and keyset paging over text (`email_key`,
//! `name_key`) compare byte-wise on both backends (SQLite's default `BINARY`
//! collation, `COLLATE "C"` on PostgreSQL), so a range scan `>= prefix` finds
//! exactly the keys that start with the prefix, through the index, and pages
//! come in the same order everywhere.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, boolean, small_integer, text, text_null, uuid, uuid_null};
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Email,
    EmailKey,
    Name,
    NameKey,
    Language,
    Role,
    Analytics,
    TagManager,
    ConsentManager,
    CustomerDataPlatform,
    Administration,
    PasswordHash,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sites {
    Table,
    Id,
    Name,
    CreatedAt,
}

/// Not `groups`: that is a reserved word in some SQL dialects.
#[derive(DeriveIden)]
enum UserGroups {
    Table,
    Id,
    Name,
    NameKey,
    Description,
    ExternalId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GroupMembers {
    Table,
    GroupId,
    UserId,
}

#[derive(DeriveIden)]
enum SiteGrants {
    Table,
    SubjectKind,
    SubjectId,
    SiteId,
    Level,
}

#[derive(DeriveIden)]
enum AllSitesGrants {
    Table,
    SubjectKind,
    SubjectId,
    Level,
}

#[derive(DeriveIden)]
enum Reports {
    Table,
    Id,
    SiteId,
    AuthorId,
    Name,
    Visibility,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Changelog {
    Table,
    Revision,
    CommittedAt,
    ActorId,
    Changes,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    Revision,
    Ids,
    CreatedAt,
}

/// A text column that sorts and compares byte-wise on every backend.
fn key_text(column: impl IntoIden, backend: DbBackend) -> ColumnDef {
    let mut def = text(column);
    if backend == DbBackend::Postgres {
        def.extra("COLLATE \"C\"");
    }
    def
}

fn index(name: &str, table: impl IntoIden) -> IndexCreateStatement {
    Index::create().name(name).table(table).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let backend = manager.get_database_backend();

        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(uuid(Users::Id).primary_key())
                    .col(text(Users::Email))
                    .col(key_text(Users::EmailKey, backend))
                    .col(text(Users::Name))
                    .col(key_text(Users::NameKey, backend))
                    .col(text(Users::Language))
                    .col(text(Users::Role))
                    .col(boolean(Users::Analytics))
                    .col(boolean(Users::TagManager))
                    .col(boolean(Users::ConsentManager))
                    .col(boolean(Users::CustomerDataPlatform))
                    .col(boolean(Users::Administration))
                    .col(text_null(Users::PasswordHash))
                    .col(big_integer(Users::CreatedAt))
                    .col(big_integer(Users::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager.create_index(index("users_email_key", Users::Table).col(Users::EmailKey).unique().to_owned()).await?;
        manager.create_index(index("users_name_key", Users::Table).col(Users::NameKey).to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(Sites::Table)
                    .col(uuid(Sites::Id).primary_key())
                    .col(text(Sites::Name))
                    .col(big_integer(Sites::CreatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(UserGroups::Table)
                    .col(uuid(UserGroups::Id).primary_key())
                    .col(text(UserGroups::Name))
                    .col(key_text(UserGroups::NameKey, backend))
                    .col(text(UserGroups::Description))
                    .col(text_null(UserGroups::ExternalId))
                    .col(big_integer(UserGroups::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("user_groups_name_key", UserGroups::Table).col(UserGroups::NameKey).unique().to_owned())
            .await?;
        // Several groups may have no external id: NULLs never collide in a unique index.
        manager
            .create_index(
                index("user_groups_external_id", UserGroups::Table).col(UserGroups::ExternalId).unique().to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(GroupMembers::Table)
                    .col(uuid(GroupMembers::GroupId))
                    .col(uuid(GroupMembers::UserId))
                    .primary_key(Index::create().col(GroupMembers::GroupId).col(GroupMembers::UserId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index("group_members_user_id", GroupMembers::Table).col(GroupMembers::UserId).to_owned())
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SiteGrants::Table)
                    .col(text(SiteGrants::SubjectKind))
                    .col(uuid(SiteGrants::SubjectId))
                    .col(uuid(SiteGrants::SiteId))
                    .col(small_integer(SiteGrants::Level))
                    .primary_key(
                        Index::create().col(SiteGrants::SubjectKind).col(SiteGrants::SubjectId).col(SiteGrants::SiteId),
                    )
                    .to_owned(),
            )
            .await?;
        // Leads with the site for "grants on this site"; the rest is the paging order.
        manager
            .create_index(
                index("site_grants_site_id", SiteGrants::Table)
                    .col(SiteGrants::SiteId)
                    .col(SiteGrants::SubjectKind)
                    .col(SiteGrants::SubjectId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(AllSitesGrants::Table)
                    .col(text(AllSitesGrants::SubjectKind))
                    .col(uuid(AllSitesGrants::SubjectId))
                    .col(small_integer(AllSitesGrants::Level))
                    .primary_key(Index::create().col(AllSitesGrants::SubjectKind).col(AllSitesGrants::SubjectId))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Reports::Table)
                    .col(uuid(Reports::Id).primary_key())
                    .col(uuid(Reports::SiteId))
                    .col(uuid(Reports::AuthorId))
                    .col(text(Reports::Name))
                    .col(text(Reports::Visibility))
                    .col(big_integer(Reports::CreatedAt))
                    .to_owned(),
            )
            .await?;
        // Leads with the site for "reports of this site"; the id is the paging order.
        manager
            .create_index(index("reports_site_id", Reports::Table).col(Reports::SiteId).col(Reports::Id).to_owned())
            .await?;
        manager.create_index(index("reports_author_id", Reports::Table).col(Reports::AuthorId).to_owned()).await?;

        manager
            .create_table(
                Table::create()
                    .table(Changelog::Table)
                    .col(big_integer(Changelog::Revision).primary_key())
                    .col(big_integer(Changelog::CommittedAt))
                    .col(uuid_null(Changelog::ActorId))
                    .col(text(Changelog::Changes))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(text(IdempotencyKeys::Key).primary_key())
                    .col(big_integer(IdempotencyKeys::Revision))
                    .col(text(IdempotencyKeys::Ids))
                    .col(big_integer(IdempotencyKeys::CreatedAt))
                    .to_owned(),
            )
            .await?;

        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            Changelog::Table.into_iden(),
            Reports::Table.into_iden(),
            AllSitesGrants::Table.into_iden(),
            SiteGrants::Table.into_iden(),
            GroupMembers::Table.into_iden(),
            UserGroups::Table.into_iden(),
            Sites::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
