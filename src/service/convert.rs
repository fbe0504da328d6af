//! Every proto ↔ domain conversion, in one place. Parsing a request checks
//! each field and names it when it is malformed (INVALID_ARGUMENT); the
//! domain never sees a prost type.

use std::collections::HashMap;

use uuid::Uuid;

use super::password;
use crate::index::{AccessPath, Explanation, PathKind, SiteAccess, UserAccess};
use crate::model::{
    self, Action, Change, Check, Grant, GroupId, Level, ModelError, Modules, Mutation, NewGroup, NewReport, NewSite,
    NewUser, PasswordHash, ReportId, Resource, Revision, Role, SiteId, Subject, Target, UserId, UserUpdate, Visibility,
    validate,
};
use crate::pb;

/// Most checks in one `CheckBatch`.
pub const MAX_CHECK_BATCH: usize = 10_000;
/// Most mutations in one `Mutate`.
pub const MAX_MUTATIONS: usize = 100_000;
/// Page size when the request gives none, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1_000;

/// A parsed `CheckRequest`.
#[derive(Clone, Copy, Debug)]
pub struct CheckQuery {
    pub check: Check,
    pub at_least_revision: Option<Revision>,
}

pub fn uuid(field: &str, raw: &str) -> Result<Uuid, ModelError> {
    if raw.is_empty() {
        return Err(ModelError::invalid(field, "is required"));
    }
    Uuid::parse_str(raw).map_err(|_| ModelError::invalid(field, format!("`{raw}` is not a UUID")))
}

/// An id the caller may leave empty.
fn optional_uuid(field: &str, raw: &str) -> Result<Option<Uuid>, ModelError> {
    if raw.is_empty() { Ok(None) } else { uuid(field, raw).map(Some) }
}

pub fn revision(field: &str, raw: &str) -> Result<Option<Revision>, ModelError> {
    if raw.is_empty() {
        return Ok(None);
    }
    raw.parse().map(Some).map_err(|_| ModelError::invalid(field, format!("`{raw}` is not a revision")))
}

pub fn level(field: &str, raw: i32) -> Result<Level, ModelError> {
    match pb::Level::try_from(raw) {
        Ok(pb::Level::NoAccess) => Ok(Level::NoAccess),
        Ok(pb::Level::View) => Ok(Level::View),
        Ok(pb::Level::Edit) => Ok(Level::Edit),
        Ok(pb::Level::EditPublish) => Ok(Level::EditPublish),
        Ok(pb::Level::Manage) => Ok(Level::Manage),
        Ok(pb::Level::Unspecified) => Err(ModelError::invalid(field, "is required")),
        Err(_) => Err(ModelError::invalid(field, format!("{raw} is not a level"))),
    }
}

fn action(field: &str, raw: i32) -> Result<Action, ModelError> {
    match pb::Action::try_from(raw) {
        Ok(pb::Action::View) => Ok(Action::View),
        Ok(pb::Action::Edit) => Ok(Action::Edit),
        Ok(pb::Action::Publish) => Ok(Action::Publish),
        Ok(pb::Action::Manage) => Ok(Action::Manage),
        Ok(pb::Action::Delete) => Ok(Action::Delete),
        Ok(pb::Action::Unspecified) => Err(ModelError::invalid(field, "is required")),
        Err(_) => Err(ModelError::invalid(field, format!("{raw} is not an action"))),
    }
}

/// A role; unspecified means `default`.
fn role(field: &str, raw: i32, default: Option<Role>) -> Result<Role, ModelError> {
    match (pb::Role::try_from(raw), default) {
        (Ok(pb::Role::User), _) => Ok(Role::User),
        (Ok(pb::Role::Owner), _) => Ok(Role::Owner),
        (Ok(pb::Role::Unspecified), Some(default)) => Ok(default),
        (Ok(pb::Role::Unspecified), None) => Err(ModelError::invalid(field, "must be ROLE_USER or ROLE_OWNER")),
        (Err(_), _) => Err(ModelError::invalid(field, format!("{raw} is not a role"))),
    }
}

/// A visibility; unspecified means `default`.
fn visibility(field: &str, raw: i32, default: Option<Visibility>) -> Result<Visibility, ModelError> {
    use pb::ReportVisibility as V;
    match (V::try_from(raw), default) {
        (Ok(V::AuthorOnly), _) => Ok(Visibility::AuthorOnly),
        (Ok(V::AllUsers), _) => Ok(Visibility::AllUsers),
        (Ok(V::Unspecified), Some(default)) => Ok(default),
        (Ok(V::Unspecified), None) => Err(ModelError::invalid(field, "must be AUTHOR_ONLY or ALL_USERS")),
        (Err(_), _) => Err(ModelError::invalid(field, format!("{raw} is not a report visibility"))),
    }
}

pub fn resource(field: &str, raw: Option<pb::Resource>) -> Result<Resource, ModelError> {
    use pb::resource::Kind;
    // Field names are spelled out only on error: a CheckBatch converts thousands of these.
    match raw.and_then(|r| r.kind) {
        Some(Kind::SiteId(id)) => Ok(Resource::Site(SiteId(uuid("site_id", &id).map_err(|e| e.within(field))?))),
        Some(Kind::ReportId(id)) => {
            Ok(Resource::Report(ReportId(uuid("report_id", &id).map_err(|e| e.within(field))?)))
        }
        Some(Kind::Instance(_)) => Ok(Resource::Instance),
        None => Err(ModelError::invalid(field, "is required: one of site_id, report_id, instance")),
    }
}

fn subject(field: &str, raw: Option<pb::Subject>) -> Result<Subject, ModelError> {
    use pb::subject::Kind;
    match raw.and_then(|s| s.kind) {
        Some(Kind::UserId(id)) => Ok(Subject::User(UserId(uuid(&format!("{field}.user_id"), &id)?))),
        Some(Kind::GroupId(id)) => Ok(Subject::Group(GroupId(uuid(&format!("{field}.group_id"), &id)?))),
        None => Err(ModelError::invalid(field, "is required: one of user_id, group_id")),
    }
}

/// Checks one `CheckRequest`.
pub fn check_query(request: pb::CheckRequest) -> Result<CheckQuery, ModelError> {
    Ok(CheckQuery {
        check: Check {
            user: UserId(uuid("user_id", &request.user_id)?),
            resource: resource("resource", request.resource)?,
            action: action("action", request.action)?,
        },
        at_least_revision: revision("at_least_revision", &request.at_least_revision)?,
    })
}

/// The checks of a `CheckBatchRequest`, and the revision the answers must
/// reflect at least: the newest that the batch or any of its checks names.
pub fn check_batch(request: pb::CheckBatchRequest) -> Result<(Vec<Check>, Option<Revision>), ModelError> {
    if request.checks.len() > MAX_CHECK_BATCH {
        return Err(ModelError::invalid(
            "checks",
            format!("holds {} checks; at most {MAX_CHECK_BATCH}", request.checks.len()),
        ));
    }
    let mut at_least = revision("at_least_revision", &request.at_least_revision)?;
    let mut checks = Vec::with_capacity(request.checks.len());
    for (i, check) in request.checks.into_iter().enumerate() {
        let query = check_query(check).map_err(|e| e.within(&format!("checks[{i}]")))?;
        at_least = at_least.max(query.at_least_revision);
        checks.push(query.check);
    }
    Ok((checks, at_least))
}

/// Stored password hashes of the users whose own-password changes a batch
/// must verify, read before conversion (conversion itself does no I/O).
pub type StoredPasswords = HashMap<UserId, Option<PasswordHash>>;

/// The users whose stored password a batch needs: updates that carry a
/// `current_password`.
pub fn users_giving_current_password(request: &pb::MutateRequest) -> Vec<UserId> {
    request
        .mutations
        .iter()
        .filter_map(|m| match &m.op {
            Some(pb::mutation::Op::UpdateUser(u)) if u.current_password.is_some() => {
                Uuid::parse_str(&u.user_id).ok().map(UserId)
            }
            _ => None,
        })
        .collect()
}

/// The parts of a `MutateRequest` besides its mutations.
pub struct MutateHeader {
    pub actor: Option<UserId>,
    pub idempotency_key: Option<String>,
    pub expected_revision: Option<Revision>,
}

pub fn mutate_header(request: &pb::MutateRequest) -> Result<MutateHeader, ModelError> {
    let key = request.idempotency_key.trim();
    if key.len() > 200 {
        return Err(ModelError::invalid("idempotency_key", "is longer than 200 characters"));
    }
    Ok(MutateHeader {
        actor: optional_uuid("actor_user_id", &request.actor_user_id)?.map(UserId),
        idempotency_key: (!key.is_empty()).then(|| key.to_string()),
        expected_revision: revision("expected_revision", &request.expected_revision)?,
    })
}

/// Whether converting a batch is cheap enough to do on an async worker: a
/// few mutations and no password to hash or verify (argon2 takes
/// milliseconds). A hop to the blocking pool costs more than the rest.
pub fn converts_quickly(raw: &[pb::Mutation]) -> bool {
    raw.len() <= 64
        && raw.iter().all(|m| match &m.op {
            Some(pb::mutation::Op::CreateUser(u)) => u.password.is_empty(),
            Some(pb::mutation::Op::UpdateUser(u)) => u.password.is_none() && u.current_password.is_none(),
            _ => true,
        })
}

/// Checks every mutation of a batch and hashes its passwords. CPU-heavy when
/// passwords are set: call it off the async workers.
pub fn mutations(raw: Vec<pb::Mutation>, stored_passwords: &StoredPasswords) -> Result<Vec<Mutation>, ModelError> {
    if raw.is_empty() {
        return Err(ModelError::invalid("mutations", "is empty"));
    }
    if raw.len() > MAX_MUTATIONS {
        return Err(ModelError::invalid("mutations", format!("holds {}; at most {MAX_MUTATIONS}", raw.len())));
    }
    raw.into_iter().enumerate().map(|(i, m)| mutation(&format!("mutations[{i}]"), m, stored_passwords)).collect()
}

fn mutation(at: &str, raw: pb::Mutation, stored_passwords: &StoredPasswords) -> Result<Mutation, ModelError> {
    use pb::mutation::Op;
    let Some(op) = raw.op else {
        return Err(ModelError::invalid(at, "names no operation"));
    };
    let f = |op: &str, field: &str| format!("{at}.{op}.{field}");
    Ok(match op {
        Op::CreateUser(m) => Mutation::CreateUser(NewUser {
            id: optional_uuid(&f("create_user", "id"), &m.id)?.map(UserId),
            email: validate::email(&f("create_user", "email"), &m.email)?,
            name: validate::name(&f("create_user", "name"), &m.name, false)?,
            password: new_password(&f("create_user", "password"), Some(&m.password).filter(|p| !p.is_empty()))?,
            language: language_or_default(&f("create_user", "language"), &m.language)?,
            role: role(&f("create_user", "role"), m.role, Some(Role::User))?,
        }),
        Op::UpdateUser(m) => {
            let user_id = UserId(uuid(&f("update_user", "user_id"), &m.user_id)?);
            let current_password_verified = match (&m.current_password, stored_passwords.get(&user_id)) {
                (Some(given), Some(Some(stored))) => password::verify(given, stored),
                _ => false,
            };
            Mutation::UpdateUser(UserUpdate {
                user_id: Some(user_id),
                email: m.email.map(|e| validate::email(&f("update_user", "email"), &e)).transpose()?,
                name: m.name.map(|n| validate::name(&f("update_user", "name"), &n, false)).transpose()?,
                language: m.language.map(|l| validate::language(&f("update_user", "language"), &l)).transpose()?,
                role: m.role.map(|r| role(&f("update_user", "role"), r, None)).transpose()?,
                modules: m.modules.map(modules),
                password: new_password(&f("update_user", "password"), m.password.as_ref())?,
                current_password_verified,
            })
        }
        Op::DeleteUser(m) => Mutation::DeleteUser(UserId(uuid(&f("delete_user", "user_id"), &m.user_id)?)),
        Op::CreateSite(m) => Mutation::CreateSite(NewSite {
            id: optional_uuid(&f("create_site", "id"), &m.id)?.map(SiteId),
            name: validate::name(&f("create_site", "name"), &m.name, true)?,
        }),
        Op::UpdateSite(m) => Mutation::UpdateSite {
            site_id: SiteId(uuid(&f("update_site", "site_id"), &m.site_id)?),
            name: m.name.map(|n| validate::name(&f("update_site", "name"), &n, true)).transpose()?,
        },
        Op::DeleteSite(m) => Mutation::DeleteSite(SiteId(uuid(&f("delete_site", "site_id"), &m.site_id)?)),
        Op::CreateGroup(m) => Mutation::CreateGroup(NewGroup {
            id: optional_uuid(&f("create_group", "id"), &m.id)?.map(GroupId),
            name: validate::name(&f("create_group", "name"), &m.name, true)?,
            description: description(&f("create_group", "description"), &m.description)?,
            external_id: external_id(&f("create_group", "external_id"), &m.external_id)?,
        }),
        Op::UpdateGroup(m) => Mutation::UpdateGroup {
            group_id: GroupId(uuid(&f("update_group", "group_id"), &m.group_id)?),
            name: m.name.map(|n| validate::name(&f("update_group", "name"), &n, true)).transpose()?,
            description: m.description.map(|d| description(&f("update_group", "description"), &d)).transpose()?,
            external_id: m.external_id.map(|e| external_id(&f("update_group", "external_id"), &e)).transpose()?,
        },
        Op::DeleteGroup(m) => Mutation::DeleteGroup(GroupId(uuid(&f("delete_group", "group_id"), &m.group_id)?)),
        Op::AddGroupMembers(m) => Mutation::AddGroupMembers {
            group_id: GroupId(uuid(&f("add_group_members", "group_id"), &m.group_id)?),
            user_ids: user_ids(&f("add_group_members", "user_ids"), &m.user_ids)?,
        },
        Op::RemoveGroupMembers(m) => Mutation::RemoveGroupMembers {
            group_id: GroupId(uuid(&f("remove_group_members", "group_id"), &m.group_id)?),
            user_ids: user_ids(&f("remove_group_members", "user_ids"), &m.user_ids)?,
        },
        Op::SetGrant(m) => {
            use pb::set_grant::Target as T;
            let target = match m.target {
                Some(T::SiteId(id)) => Target::Site(SiteId(uuid(&f("set_grant", "site_id"), &id)?)),
                Some(T::AllSites(true)) => Target::AllSites,
                Some(T::AllSites(false)) => {
                    return Err(ModelError::invalid(f("set_grant", "all_sites"), "must be true when set"));
                }
                None => return Err(ModelError::invalid(f("set_grant", "target"), "is required: site_id or all_sites")),
            };
            Mutation::SetGrant(Grant {
                subject: subject(&f("set_grant", "subject"), m.subject)?,
                target,
                level: level(&f("set_grant", "level"), m.level)?,
            })
        }
        Op::CreateReport(m) => Mutation::CreateReport(NewReport {
            id: optional_uuid(&f("create_report", "id"), &m.id)?.map(ReportId),
            site_id: SiteId(uuid(&f("create_report", "site_id"), &m.site_id)?),
            author: optional_uuid(&f("create_report", "author_user_id"), &m.author_user_id)?.map(UserId),
            name: validate::name(&f("create_report", "name"), &m.name, true)?,
            visibility: visibility(&f("create_report", "visibility"), m.visibility, Some(Visibility::AuthorOnly))?,
        }),
        Op::UpdateReport(m) => Mutation::UpdateReport {
            report_id: ReportId(uuid(&f("update_report", "report_id"), &m.report_id)?),
            name: m.name.map(|n| validate::name(&f("update_report", "name"), &n, true)).transpose()?,
            visibility: m.visibility.map(|v| visibility(&f("update_report", "visibility"), v, None)).transpose()?,
        },
        Op::DeleteReport(m) => Mutation::DeleteReport(ReportId(uuid(&f("delete_report", "report_id"), &m.report_id)?)),
    })
}

/// Checks a new password against the policy and hashes it.
fn new_password(field: &str, password: Option<&String>) -> Result<Option<PasswordHash>, ModelError> {
    let Some(password) = password else { return Ok(None) };
    validate::password(field, password)?;
    password::hash(password).map(Some).map_err(|_| ModelError::invalid(field, "could not be hashed"))
}

fn language_or_default(field: &str, raw: &str) -> Result<String, ModelError> {
    if raw.trim().is_empty() { Ok("en".to_string()) } else { validate::language(field, raw) }
}

fn description(field: &str, raw: &str) -> Result<String, ModelError> {
    if raw.chars().count() > 2_000 {
        return Err(ModelError::invalid(field, "is longer than 2000 characters"));
    }
    Ok(raw.trim().to_string())
}

/// An external id; empty means none.
fn external_id(field: &str, raw: &str) -> Result<Option<String>, ModelError> {
    let id = raw.trim();
    if id.chars().count() > 200 {
        return Err(ModelError::invalid(field, "is longer than 200 characters"));
    }
    Ok((!id.is_empty()).then(|| id.to_string()))
}

fn user_ids(field: &str, raw: &[String]) -> Result<Vec<UserId>, ModelError> {
    if raw.is_empty() {
        return Err(ModelError::invalid(field, "is empty"));
    }
    raw.iter().enumerate().map(|(i, id)| uuid(&format!("{field}[{i}]"), id).map(UserId)).collect()
}

fn modules(m: pb::Modules) -> Modules {
    Modules {
        analytics: m.analytics,
        tag_manager: m.tag_manager,
        consent_manager: m.consent_manager,
        customer_data_platform: m.customer_data_platform,
        administration: m.administration,
    }
}

/// A page size: 0 means the default; larger than the maximum is capped.
pub fn page_size(field: &str, raw: i32) -> Result<u64, ModelError> {
    match raw {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err(ModelError::invalid(field, "must not be negative")),
        n => Ok((n as u64).min(MAX_PAGE_SIZE)),
    }
}

/// Page tokens are the store's cursor, hex-encoded so callers treat them as opaque.
pub fn page_token(field: &str, raw: &str) -> Result<Option<String>, ModelError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || ModelError::invalid(field, "is not a token from an earlier page");
    if !raw.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..raw.len())
        .step_by(2)
        .map(|i| raw.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).map(Some).map_err(|_| bad())
}

pub fn next_page_token(cursor: Option<String>) -> String {
    cursor.map(|c| c.bytes().map(|b| format!("{b:02x}")).collect()).unwrap_or_default()
}

pub fn level_to_pb(level: Level) -> pb::Level {
    match level {
        Level::NoAccess => pb::Level::NoAccess,
        Level::View => pb::Level::View,
        Level::Edit => pb::Level::Edit,
        Level::EditPublish => pb::Level::EditPublish,
        Level::Manage => pb::Level::Manage,
    }
}

fn role_to_pb(role: Role) -> pb::Role {
    match role {
        Role::User => pb::Role::User,
        Role::Owner => pb::Role::Owner,
    }
}

fn visibility_to_pb(visibility: Visibility) -> pb::ReportVisibility {
    match visibility {
        Visibility::AuthorOnly => pb::ReportVisibility::AuthorOnly,
        Visibility::AllUsers => pb::ReportVisibility::AllUsers,
    }
}

fn modules_to_pb(modules: Modules) -> pb::Modules {
    pb::Modules {
        analytics: modules.analytics,
        tag_manager: modules.tag_manager,
        consent_manager: modules.consent_manager,
        customer_data_platform: modules.customer_data_platform,
        administration: modules.administration,
    }
}

pub fn user_to_pb(user: model::User) -> pb::User {
    pb::User {
        id: user.id.to_string(),
        email: user.email,
        name: user.name,
        language: user.language,
        role: role_to_pb(user.role) as i32,
        modules: Some(modules_to_pb(user.modules)),
        has_password: user.has_password,
        created_at: user.created_at.to_rfc3339(),
        updated_at: user.updated_at.to_rfc3339(),
    }
}

pub fn site_to_pb(site: model::Site) -> pb::Site {
    pb::Site { id: site.id.to_string(), name: site.name, created_at: site.created_at.to_rfc3339() }
}

pub fn group_to_pb(group: model::Group) -> pb::Group {
    pb::Group {
        id: group.id.to_string(),
        name: group.name,
        description: group.description,
        external_id: group.external_id.unwrap_or_default(),
        created_at: group.created_at.to_rfc3339(),
    }
}

pub fn grant_to_pb(grant: Grant) -> pb::Grant {
    let subject = match grant.subject {
        Subject::User(id) => pb::subject::Kind::UserId(id.to_string()),
        Subject::Group(id) => pb::subject::Kind::GroupId(id.to_string()),
    };
    let target = match grant.target {
        Target::Site(id) => pb::grant::Target::SiteId(id.to_string()),
        Target::AllSites => pb::grant::Target::AllSites(true),
    };
    pb::Grant {
        subject: Some(pb::Subject { kind: Some(subject) }),
        target: Some(target),
        level: level_to_pb(grant.level) as i32,
    }
}

pub fn report_to_pb(report: model::Report) -> pb::Report {
    pb::Report {
        id: report.id.to_string(),
        site_id: report.site_id.to_string(),
        author_user_id: report.author.to_string(),
        name: report.name,
        visibility: visibility_to_pb(report.visibility) as i32,
        created_at: report.created_at.to_rfc3339(),
    }
}

/// The least level of a lookup: unspecified means VIEW; NO_ACCESS asks for nothing.
pub fn min_level(field: &str, raw: i32) -> Result<Level, ModelError> {
    match raw {
        0 => Ok(Level::View),
        raw => match level(field, raw)? {
            Level::NoAccess => Err(ModelError::invalid(field, "must be VIEW or higher")),
            level => Ok(level),
        },
    }
}

/// A lookup page token: the id the previous page ended with.
pub fn id_page_token(field: &str, raw: &str) -> Result<Option<Uuid>, ModelError> {
    let bad = || ModelError::invalid(field, "is not a token from an earlier page");
    page_token(field, raw)?.map(|id| Uuid::parse_str(&id).map_err(|_| bad())).transpose()
}

/// The token of the page after one that ended with `last` (empty on the last page).
pub fn id_next_page_token(last: Option<Uuid>, more: bool) -> String {
    next_page_token(last.filter(|_| more).map(|id| id.to_string()))
}

pub fn site_access_to_pb(access: &SiteAccess) -> pb::SiteAccess {
    pb::SiteAccess { site_id: access.site.to_string(), level: level_to_pb(access.level) as i32 }
}

pub fn user_access_to_pb(access: UserAccess) -> pb::UserAccess {
    pb::UserAccess {
        user_id: access.user.to_string(),
        level: level_to_pb(access.level) as i32,
        paths: access.paths.into_iter().map(path_to_pb).collect(),
    }
}

pub fn path_to_pb(path: AccessPath) -> pb::AccessPath {
    let (kind, group) = match path.kind {
        PathKind::Owner => (pb::PathKind::Owner, None),
        PathKind::Direct => (pb::PathKind::Direct, None),
        PathKind::AllSites => (pb::PathKind::AllSites, None),
        PathKind::Group(id) => (pb::PathKind::Group, Some(id)),
        PathKind::GroupAllSites(id) => (pb::PathKind::GroupAllSites, Some(id)),
    };
    pb::AccessPath {
        kind: kind as i32,
        level: level_to_pb(path.level) as i32,
        group_id: group.map(|id| id.to_string()).unwrap_or_default(),
        group_name: path.group_name.unwrap_or_default(),
        wins: path.wins,
    }
}

pub fn explanation_to_pb(explanation: Explanation, revision: Revision) -> pb::ExplainResponse {
    pb::ExplainResponse {
        effective_level: level_to_pb(explanation.level) as i32,
        paths: explanation.paths.into_iter().map(path_to_pb).collect(),
        site_id: explanation.site.map(|id| id.to_string()).unwrap_or_default(),
        report: explanation.report.map(|r| pb::ReportAccess {
            can_view: r.can_view,
            can_edit: r.can_edit,
            can_delete: r.can_delete,
            reason: r.reason,
        }),
        revision: revision.to_string(),
    }
}

pub fn change_to_pb(change: Change) -> pb::Change {
    use pb::change::Kind;
    let membership = |group_id: GroupId, user_id: UserId| pb::Membership {
        group_id: group_id.to_string(),
        user_id: user_id.to_string(),
    };
    let kind = match change {
        Change::UserCreated { user, .. } => Kind::UserCreated(user_to_pb(user)),
        Change::UserUpdated { user_id, patch, updated_at } => Kind::UserUpdated(pb::UserUpdated {
            user_id: user_id.to_string(),
            email: patch.email,
            name: patch.name,
            language: patch.language,
            role: patch.role.map(|role| role_to_pb(role) as i32),
            modules: patch.modules.map(modules_to_pb),
            password_changed: patch.password_changed,
            updated_at: updated_at.to_rfc3339(),
        }),
        Change::UserDeleted { user_id } => Kind::UserDeleted(user_id.to_string()),
        Change::SiteCreated { site } => Kind::SiteCreated(site_to_pb(site)),
        Change::SiteUpdated { site_id, name } => {
            Kind::SiteUpdated(pb::SiteUpdated { site_id: site_id.to_string(), name })
        }
        Change::SiteDeleted { site_id } => Kind::SiteDeleted(site_id.to_string()),
        Change::GroupCreated { group } => Kind::GroupCreated(group_to_pb(group)),
        Change::GroupUpdated { group_id, name, description, external_id } => Kind::GroupUpdated(pb::GroupUpdated {
            group_id: group_id.to_string(),
            name,
            description,
            external_id: external_id.map(Option::unwrap_or_default),
        }),
        Change::GroupDeleted { group_id } => Kind::GroupDeleted(group_id.to_string()),
        Change::MemberAdded { group_id, user_id } => Kind::MemberAdded(membership(group_id, user_id)),
        Change::MemberRemoved { group_id, user_id } => Kind::MemberRemoved(membership(group_id, user_id)),
        Change::GrantSet { grant } => Kind::GrantSet(grant_to_pb(grant)),
        Change::ReportCreated { report } => Kind::ReportCreated(report_to_pb(report)),
        Change::ReportUpdated { report_id, name, visibility, author } => Kind::ReportUpdated(pb::ReportUpdated {
            report_id: report_id.to_string(),
            name,
            visibility: visibility.map(|v| visibility_to_pb(v) as i32),
            author_user_id: author.map(|id| id.to_string()),
        }),
        Change::ReportDeleted { report_id } => Kind::ReportDeleted(report_id.to_string()),
    };
    pb::Change { kind: Some(kind) }
}
