//! Conversions between stored rows and domain types. Enums are stored as
//! short words and levels as small integers, so a database row reads the same
//! to a person as to the code; a row this code cannot read is corruption and
//! surfaces as `StoreError::Internal`.

use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use super::StoreError;
use super::entity::{all_sites_grant, group, report, site, site_grant, user};
use crate::model::{
    Grant, Group, GroupId, Level, Modules, PasswordHash, Report, ReportId, Role, Site, SiteId, Subject, Target,
    Timestamp, User, UserId, Visibility,
};

/// The stored code of a level; `None` for `NoAccess`, which is never stored.
pub(super) fn level_code(level: Level) -> Option<i16> {
    match level {
        Level::NoAccess => None,
        Level::View => Some(1),
        Level::Edit => Some(2),
        Level::EditPublish => Some(3),
        Level::Manage => Some(4),
    }
}

pub(super) fn level_from_code(code: i16) -> Result<Level, StoreError> {
    match code {
        1 => Ok(Level::View),
        2 => Ok(Level::Edit),
        3 => Ok(Level::EditPublish),
        4 => Ok(Level::Manage),
        other => Err(corrupt("level", other)),
    }
}

pub(super) fn role_text(role: Role) -> &'static str {
    match role {
        Role::Owner => "owner",
        Role::User => "user",
    }
}

pub(super) fn role_from_text(text: &str) -> Result<Role, StoreError> {
    match text {
        "owner" => Ok(Role::Owner),
        "user" => Ok(Role::User),
        other => Err(corrupt("role", other)),
    }
}

pub(super) fn visibility_text(visibility: Visibility) -> &'static str {
    match visibility {
        Visibility::AuthorOnly => "author_only",
        Visibility::AllUsers => "all_users",
    }
}

pub(super) fn visibility_from_text(text: &str) -> Result<Visibility, StoreError> {
    match text {
        "author_only" => Ok(Visibility::AuthorOnly),
        "all_users" => Ok(Visibility::AllUsers),
        other => Err(corrupt("visibility", other)),
    }
}

pub(super) const USER_KIND: &str = "user";
pub(super) const GROUP_KIND: &str = "group";

/// The stored `(subject_kind, subject_id)` of a subject.
pub(super) fn subject_key(subject: Subject) -> (&'static str, Uuid) {
    match subject {
        Subject::User(UserId(id)) => (USER_KIND, id),
        Subject::Group(GroupId(id)) => (GROUP_KIND, id),
    }
}

pub(super) fn subject_from_key(kind: &str, id: Uuid) -> Result<Subject, StoreError> {
    match kind {
        USER_KIND => Ok(Subject::User(UserId(id))),
        GROUP_KIND => Ok(Subject::Group(GroupId(id))),
        other => Err(corrupt("subject_kind", other)),
    }
}

fn corrupt(column: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unreadable `{column}` value `{value}` in the database"))
}

/// The key a case-insensitive column is matched and sorted on.
pub(super) fn fold_case(text: &str) -> String {
    text.to_lowercase()
}

pub(super) fn user_row(user: &User, password: Option<&PasswordHash>) -> user::ActiveModel {
    user::ActiveModel {
        id: Set(user.id.0),
        email: Set(user.email.clone()),
        email_key: Set(fold_case(&user.email)),
        name: Set(user.name.clone()),
        name_key: Set(fold_case(&user.name)),
        language: Set(user.language.clone()),
        role: Set(role_text(user.role).to_owned()),
        analytics: Set(user.modules.analytics),
        tag_manager: Set(user.modules.tag_manager),
        consent_manager: Set(user.modules.consent_manager),
        customer_data_platform: Set(user.modules.customer_data_platform),
        administration: Set(user.modules.administration),
        password_hash: Set(password.map(|hash| hash.0.clone())),
        created_at: Set(user.created_at.0),
        updated_at: Set(user.updated_at.0),
    }
}

pub(super) fn user_from_row(row: user::Model) -> Result<User, StoreError> {
    Ok(User {
        id: UserId(row.id),
        role: role_from_text(&row.role)?,
        modules: Modules {
            analytics: row.analytics,
            tag_manager: row.tag_manager,
            consent_manager: row.consent_manager,
            customer_data_platform: row.customer_data_platform,
            administration: row.administration,
        },
        has_password: row.password_hash.is_some(),
        email: row.email,
        name: row.name,
        language: row.language,
        created_at: Timestamp(row.created_at),
        updated_at: Timestamp(row.updated_at),
    })
}

pub(super) fn site_row(site: &Site) -> site::ActiveModel {
    site::ActiveModel { id: Set(site.id.0), name: Set(site.name.clone()), created_at: Set(site.created_at.0) }
}

pub(super) fn site_from_row(row: site::Model) -> Result<Site, StoreError> {
    Ok(Site { id: SiteId(row.id), name: row.name, created_at: Timestamp(row.created_at) })
}

pub(super) fn group_row(group: &Group) -> group::ActiveModel {
    group::ActiveModel {
        id: Set(group.id.0),
        name: Set(group.name.clone()),
        name_key: Set(fold_case(&group.name)),
        description: Set(group.description.clone()),
        external_id: Set(group.external_id.clone()),
        created_at: Set(group.created_at.0),
    }
}

pub(super) fn group_from_row(row: group::Model) -> Result<Group, StoreError> {
    Ok(Group {
        id: GroupId(row.id),
        name: row.name,
        description: row.description,
        external_id: row.external_id,
        created_at: Timestamp(row.created_at),
    })
}

pub(super) fn report_row(report: &Report) -> report::ActiveModel {
    report::ActiveModel {
        id: Set(report.id.0),
        site_id: Set(report.site_id.0),
        author_id: Set(report.author.0),
        name: Set(report.name.clone()),
        visibility: Set(visibility_text(report.visibility).to_owned()),
        created_at: Set(report.created_at.0),
    }
}

pub(super) fn report_from_row(row: report::Model) -> Result<Report, StoreError> {
    Ok(Report {
        id: ReportId(row.id),
        site_id: SiteId(row.site_id),
        author: UserId(row.author_id),
        visibility: visibility_from_text(&row.visibility)?,
        name: row.name,
        created_at: Timestamp(row.created_at),
    })
}

pub(super) fn site_grant_from_row(row: site_grant::Model) -> Result<Grant, StoreError> {
    Ok(Grant {
        subject: subject_from_key(&row.subject_kind, row.subject_id)?,
        target: Target::Site(SiteId(row.site_id)),
        level: level_from_code(row.level)?,
    })
}

pub(super) fn all_sites_grant_from_row(row: all_sites_grant::Model) -> Result<Grant, StoreError> {
    Ok(Grant {
        subject: subject_from_key(&row.subject_kind, row.subject_id)?,
        target: Target::AllSites,
        level: level_from_code(row.level)?,
    })
}
