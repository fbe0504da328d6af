//! Idempotency keys are pruned with the changelog, by revision: an index on
//! `revision` makes each prune read only the keys it drops.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Revision,
}

const INDEX: &str = "idempotency_keys_revision";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let index = Index::create().name(INDEX).table(IdempotencyKeys::Table).col(IdempotencyKeys::Revision).to_owned();
        manager.create_index(index).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(IdempotencyKeys::Table).to_owned()).await
    }
}
