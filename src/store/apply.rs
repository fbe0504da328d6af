//! Writes the changes of a committed batch to the tables, in order, inside
//! the commit's transaction.
//!
//! The index has already judged the batch, so nothing here re-checks the
//! model's rules; the statements are written to be harmless when repeated
//! (an existing member is ignored, a missing grant deletes nothing).

use std::collections::BTreeMap;

use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::convert::{
    fold_case, group_row, level_code, report_row, role_text, site_row, subject_key, user_row, visibility_text,
};
use super::entity::{all_sites_grant, group, group_member, report, site, site_grant, user};
use crate::model::{Change, Grant, GroupId, Level, ReportId, SiteId, Subject, Target, UserId, UserPatch};

/// Rows per multi-row upsert: 4 bound values a row stays far below SQLite's
/// limit of 32,766 parameters a statement and PostgreSQL's 65,535.
const UPSERT_CHUNK: usize = 500;

/// Grants per batched delete. Each is an `OR` term; SQLite parses an `OR`
/// chain as a tree as deep as it is long and refuses trees deeper than 1,000.
const DELETE_CHUNK: usize = 200;

/// Applies `changes` in order. Consecutive grant changes, which a batch may
/// hold by the hundred thousand, are written together in multi-row statements.
pub(super) async fn apply_changes<C: ConnectionTrait>(db: &C, changes: &[&Change]) -> Result<(), DbErr> {
    let both_grants = |a: &&Change, b: &&Change| matches!((a, b), (Change::GrantSet { .. }, Change::GrantSet { .. }));
    for run in changes.chunk_by(both_grants) {
        if let [Change::GrantSet { .. }, ..] = run {
            let grants: Vec<Grant> = run
                .iter()
                .filter_map(|change| if let Change::GrantSet { grant } = change { Some(*grant) } else { None })
                .collect();
            set_grants(db, &grants).await?;
        } else {
            for change in run {
                apply_change(db, change).await?;
            }
        }
    }
    Ok(())
}

async fn apply_change<C: ConnectionTrait>(db: &C, change: &Change) -> Result<(), DbErr> {
    match change {
        Change::UserCreated { user, password } => {
            user::Entity::insert(user_row(user, password.as_ref())).exec_without_returning(db).await?;
        }
        Change::UserUpdated { user_id: UserId(id), patch, updated_at } => {
            let mut columns = user_patch_columns(patch);
            columns.push((user::Column::UpdatedAt, Expr::value(updated_at.0)));
            update_columns::<user::Entity, _>(db, columns, user::Column::Id.eq(*id)).await?;
        }
        Change::UserDeleted { user_id: UserId(id) } => {
            user::Entity::delete_by_id(*id).exec(db).await?;
        }
        Change::SiteCreated { site } => {
            site::Entity::insert(site_row(site)).exec_without_returning(db).await?;
        }
        Change::SiteUpdated { site_id: SiteId(id), name } => {
            site::Entity::update_many()
                .col_expr(site::Column::Name, Expr::value(name.clone()))
                .filter(site::Column::Id.eq(*id))
                .exec(db)
                .await?;
        }
        Change::SiteDeleted { site_id: SiteId(id) } => {
            site::Entity::delete_by_id(*id).exec(db).await?;
        }
        Change::GroupCreated { group } => {
            group::Entity::insert(group_row(group)).exec_without_returning(db).await?;
        }
        Change::GroupUpdated { group_id: GroupId(id), name, description, external_id } => {
            let mut columns = Vec::new();
            if let Some(name) = name {
                columns.push((group::Column::Name, Expr::value(name.clone())));
                columns.push((group::Column::NameKey, Expr::value(fold_case(name))));
            }
            if let Some(description) = description {
                columns.push((group::Column::Description, Expr::value(description.clone())));
            }
            if let Some(external_id) = external_id {
                columns.push((group::Column::ExternalId, Expr::value(external_id.clone())));
            }
            update_columns::<group::Entity, _>(db, columns, group::Column::Id.eq(*id)).await?;
        }
        Change::GroupDeleted { group_id: GroupId(id) } => {
            group::Entity::delete_by_id(*id).exec(db).await?;
        }
        Change::MemberAdded { group_id: GroupId(group_id), user_id: UserId(user_id) } => {
            let member = group_member::ActiveModel { group_id: Set(*group_id), user_id: Set(*user_id) };
            group_member::Entity::insert(member)
                .on_conflict(
                    OnConflict::columns([group_member::Column::GroupId, group_member::Column::UserId])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(db)
                .await?;
        }
        Change::MemberRemoved { group_id: GroupId(group_id), user_id: UserId(user_id) } => {
            group_member::Entity::delete_by_id((*group_id, *user_id)).exec(db).await?;
        }
        Change::GrantSet { grant } => set_grants(db, std::slice::from_ref(grant)).await?,
        Change::ReportCreated { report } => {
            report::Entity::insert(report_row(report)).exec_without_returning(db).await?;
        }
        Change::ReportUpdated { report_id: ReportId(id), name, visibility, author } => {
            let mut columns = Vec::new();
            if let Some(name) = name {
                columns.push((report::Column::Name, Expr::value(name.clone())));
            }
            if let Some(visibility) = visibility {
                columns.push((report::Column::Visibility, Expr::value(visibility_text(*visibility))));
            }
            if let Some(UserId(author)) = author {
                columns.push((report::Column::AuthorId, Expr::value(*author)));
            }
            update_columns::<report::Entity, _>(db, columns, report::Column::Id.eq(*id)).await?;
        }
        Change::ReportDeleted { report_id: ReportId(id) } => {
            report::Entity::delete_by_id(*id).exec(db).await?;
        }
    }
    Ok(())
}

/// The user columns a patch sets, besides `updated_at`. The password hash is
/// set only when the patch carries one.
fn user_patch_columns(patch: &UserPatch) -> Vec<(user::Column, SimpleExpr)> {
    let mut columns = Vec::new();
    if let Some(email) = &patch.email {
        columns.push((user::Column::Email, Expr::value(email.clone())));
        columns.push((user::Column::EmailKey, Expr::value(fold_case(email))));
    }
    if let Some(name) = &patch.name {
        columns.push((user::Column::Name, Expr::value(name.clone())));
        columns.push((user::Column::NameKey, Expr::value(fold_case(name))));
    }
    if let Some(language) = &patch.language {
        columns.push((user::Column::Language, Expr::value(language.clone())));
    }
    if let Some(role) = patch.role {
        columns.push((user::Column::Role, Expr::value(role_text(role))));
    }
    if let Some(modules) = patch.modules {
        columns.push((user::Column::Analytics, Expr::value(modules.analytics)));
        columns.push((user::Column::TagManager, Expr::value(modules.tag_manager)));
        columns.push((user::Column::ConsentManager, Expr::value(modules.consent_manager)));
        columns.push((user::Column::CustomerDataPlatform, Expr::value(modules.customer_data_platform)));
        columns.push((user::Column::Administration, Expr::value(modules.administration)));
    }
    if let Some(hash) = &patch.password {
        columns.push((user::Column::PasswordHash, Expr::value(hash.0.clone())));
    }
    columns
}

/// Sets `columns` on the rows matching `filter`; an update that changes
/// nothing issues no statement (an empty `SET` is not SQL).
async fn update_columns<E: EntityTrait, C: ConnectionTrait>(
    db: &C,
    columns: Vec<(E::Column, SimpleExpr)>,
    filter: SimpleExpr,
) -> Result<(), DbErr> {
    if columns.is_empty() {
        return Ok(());
    }
    let mut update = E::update_many().filter(filter);
    for (column, value) in columns {
        update = update.col_expr(column, value);
    }
    update.exec(db).await?;
    Ok(())
}

/// Writes a run of grant changes: upserts for levels, deletes for `NoAccess`.
///
/// Only the last change of each (subject, target) in the run counts, as it
/// would if the changes ran one by one; that also keeps every key once per
/// statement, which PostgreSQL requires of `ON CONFLICT DO UPDATE`.
async fn set_grants<C: ConnectionTrait>(db: &C, grants: &[Grant]) -> Result<(), DbErr> {
    let latest: BTreeMap<(Subject, Target), Level> =
        grants.iter().map(|grant| ((grant.subject, grant.target), grant.level)).collect();

    let mut site_upserts = Vec::new();
    let mut all_sites_upserts = Vec::new();
    let mut site_deletes = Vec::new();
    let mut all_sites_deletes = Vec::new();
    for ((subject, target), level) in latest {
        let (kind, subject_id) = subject_key(subject);
        match (target, level_code(level)) {
            (Target::Site(SiteId(site_id)), Some(level)) => site_upserts.push(site_grant::ActiveModel {
                subject_kind: Set(kind.to_owned()),
                subject_id: Set(subject_id),
                site_id: Set(site_id),
                level: Set(level),
            }),
            (Target::AllSites, Some(level)) => all_sites_upserts.push(all_sites_grant::ActiveModel {
                subject_kind: Set(kind.to_owned()),
                subject_id: Set(subject_id),
                level: Set(level),
            }),
            (Target::Site(SiteId(site_id)), None) => site_deletes.push(
                Condition::all()
                    .add(site_grant::Column::SubjectKind.eq(kind))
                    .add(site_grant::Column::SubjectId.eq(subject_id))
                    .add(site_grant::Column::SiteId.eq(site_id)),
            ),
            (Target::AllSites, None) => all_sites_deletes.push(
                Condition::all()
                    .add(all_sites_grant::Column::SubjectKind.eq(kind))
                    .add(all_sites_grant::Column::SubjectId.eq(subject_id)),
            ),
        }
    }

    let site_conflict = OnConflict::columns([
        site_grant::Column::SubjectKind,
        site_grant::Column::SubjectId,
        site_grant::Column::SiteId,
    ])
    .update_column(site_grant::Column::Level)
    .to_owned();
    for chunk in site_upserts.chunks(UPSERT_CHUNK) {
        site_grant::Entity::insert_many(chunk.to_vec())
            .on_conflict(site_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    let all_sites_conflict =
        OnConflict::columns([all_sites_grant::Column::SubjectKind, all_sites_grant::Column::SubjectId])
            .update_column(all_sites_grant::Column::Level)
            .to_owned();
    for chunk in all_sites_upserts.chunks(UPSERT_CHUNK) {
        all_sites_grant::Entity::insert_many(chunk.to_vec())
            .on_conflict(all_sites_conflict.clone())
            .exec_without_returning(db)
            .await?;
    }
    for chunk in site_deletes.chunks(DELETE_CHUNK) {
        let any = chunk.iter().cloned().fold(Condition::any(), Condition::add);
        site_grant::Entity::delete_many().filter(any).exec(db).await?;
    }
    for chunk in all_sites_deletes.chunks(DELETE_CHUNK) {
        let any = chunk.iter().cloned().fold(Condition::any(), Condition::add);
        all_sites_grant::Entity::delete_many().filter(any).exec(db).await?;
    }
    Ok(())
}
