//! Write rules: turns a `Mutate` batch into the changes to commit, judging
//! each mutation against the state the mutations before it left.

use uuid::Uuid;

use super::Index;
use crate::model::{
    Action, Change, Grant, Group, GroupId, Level, ModelError, Mutation, NewGroup, NewReport, NewSite, NewUser, Report,
    ReportId, Resource, Revision, Site, SiteId, Subject, Target, Timestamp, User, UserId, UserPatch, UserUpdate,
    validate,
};

/// A judged batch: the changes to commit, the ids to answer with, and the
/// index as it will be once they are committed.
#[derive(Debug)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// ids[i] is the id of the object mutation i created or changed; empty
    /// for grants and memberships.
    pub ids: Vec<String>,
    /// The index with every change applied, still at the old revision.
    pub index: Index,
}

impl Plan {
    /// The index to publish once the changes are committed at `revision`,
    /// and the ids to answer with.
    pub fn committed_at(self, revision: Revision) -> (Index, Vec<String>) {
        let mut index = self.index;
        index.revision = revision;
        (index, self.ids)
    }
}

impl Index {
    /// Judges `mutations` in order on behalf of `actor` (`None`: the trusted
    /// admin tooling) and returns what to commit. Nothing here is published:
    /// on error the batch leaves no trace.
    pub fn plan(&self, actor: Option<UserId>, mutations: &[Mutation], now: Timestamp) -> Result<Plan, ModelError> {
        if let Some(actor) = actor
            && !self.users.contains_key(&actor)
        {
            return Err(ModelError::denied(format!("`actor_user_id`: unknown user `{actor}`")));
        }
        let mut draft = Draft { index: self.clone(), changes: Vec::new(), actor, now };
        let mut ids = Vec::with_capacity(mutations.len());
        for (position, mutation) in mutations.iter().enumerate() {
            let id = draft.mutate(mutation).map_err(|e| e.in_mutation(position))?;
            ids.push(id.unwrap_or_default());
        }
        // Judged on the end state, so demoting A and promoting B in one batch is fine.
        if !self.owners.is_empty() && draft.index.owners.is_empty() {
            return Err(ModelError::FailedPrecondition(
                "at least one owner must remain: the batch would delete or demote the last owner".into(),
            ));
        }
        Ok(Plan { changes: draft.changes, ids, index: draft.index })
    }
}

/// A batch being judged: the index with the changes so far applied.
struct Draft {
    index: Index,
    changes: Vec<Change>,
    actor: Option<UserId>,
    now: Timestamp,
}

impl Draft {
    /// Judges one mutation, applies its changes to the draft, and returns the
    /// id of the object it created or changed.
    fn mutate(&mut self, mutation: &Mutation) -> Result<Option<String>, ModelError> {
        let field = mutation.field_name();
        match mutation {
            Mutation::CreateUser(new) => self.create_user(new).map(|id| Some(id.to_string())),
            Mutation::UpdateUser(update) => self.update_user(update).map(|id| Some(id.to_string())),
            Mutation::DeleteUser(user_id) => self.delete_user(*user_id).map(|()| Some(user_id.to_string())),
            Mutation::CreateSite(new) => self.create_site(new).map(|id| Some(id.to_string())),
            Mutation::UpdateSite { site_id, name } => {
                self.update_site(*site_id, name.as_deref()).map(|()| Some(site_id.to_string()))
            }
            Mutation::DeleteSite(site_id) => self.delete_site(*site_id).map(|()| Some(site_id.to_string())),
            Mutation::CreateGroup(new) => self.create_group(new).map(|id| Some(id.to_string())),
            Mutation::UpdateGroup { group_id, name, description, external_id } => {
                self.update_group(*group_id, name, description, external_id).map(|()| Some(group_id.to_string()))
            }
            Mutation::DeleteGroup(group_id) => self.delete_group(*group_id).map(|()| Some(group_id.to_string())),
            Mutation::AddGroupMembers { group_id, user_ids } => {
                self.change_members(*group_id, user_ids, true).map(|()| None)
            }
            Mutation::RemoveGroupMembers { group_id, user_ids } => {
                self.change_members(*group_id, user_ids, false).map(|()| None)
            }
            Mutation::SetGrant(grant) => self.set_grant(grant).map(|()| None),
            Mutation::CreateReport(new) => self.create_report(new, field).map(|id| Some(id.to_string())),
            Mutation::UpdateReport { report_id, name, visibility } => {
                self.authorize_report(*report_id, Action::Edit)?;
                self.emit(Change::ReportUpdated {
                    report_id: *report_id,
                    name: name.clone(),
                    visibility: *visibility,
                    author: None,
                });
                Ok(Some(report_id.to_string()))
            }
            Mutation::DeleteReport(report_id) => {
                self.authorize_report(*report_id, Action::Delete)?;
                self.emit(Change::ReportDeleted { report_id: *report_id });
                Ok(Some(report_id.to_string()))
            }
        }
    }

    fn emit(&mut self, change: Change) {
        self.index.apply(&change);
        self.changes.push(change);
    }

    /// Only owners (or the trusted tooling) may do `what`.
    fn require_owner(&self, what: &str) -> Result<(), ModelError> {
        match self.actor {
            Some(actor) if !self.index.is_owner(actor) => Err(ModelError::denied(format!("only owners may {what}"))),
            _ => Ok(()),
        }
    }

    fn require_user(&self, user_id: UserId) -> Result<(), ModelError> {
        match self.index.users.contains_key(&user_id) {
            true => Ok(()),
            false => Err(ModelError::not_found("user", user_id)),
        }
    }

    fn require_site(&self, site_id: SiteId) -> Result<(), ModelError> {
        match self.index.sites.contains_key(&site_id) {
            true => Ok(()),
            false => Err(ModelError::not_found("site", site_id)),
        }
    }

    fn require_group(&self, group_id: GroupId) -> Result<(), ModelError> {
        match self.index.groups.contains_key(&group_id) {
            true => Ok(()),
            false => Err(ModelError::not_found("group", group_id)),
        }
    }

    fn require_email_free(&self, email: &str, owner: Option<UserId>) -> Result<(), ModelError> {
        match self.index.user_by_email.get(validate::email_key(email).as_str()) {
            Some(holder) if Some(*holder) != owner => {
                Err(ModelError::AlreadyExists { what: format!("a user with email `{email}`") })
            }
            _ => Ok(()),
        }
    }

    fn require_group_name_free(&self, name: &str, owner: Option<GroupId>) -> Result<(), ModelError> {
        match self.index.group_by_name.get(validate::group_name_key(name).as_str()) {
            Some(holder) if Some(*holder) != owner => {
                Err(ModelError::AlreadyExists { what: format!("a group named `{name}`") })
            }
            _ => Ok(()),
        }
    }

    fn require_external_id_free(&self, external_id: &str, owner: Option<GroupId>) -> Result<(), ModelError> {
        match self.index.group_by_external_id.get(external_id) {
            Some(holder) if Some(*holder) != owner => {
                Err(ModelError::AlreadyExists { what: format!("a group with external id `{external_id}`") })
            }
            _ => Ok(()),
        }
    }

    fn new_id(requested: Option<Uuid>) -> Uuid {
        requested.unwrap_or_else(Uuid::now_v7)
    }

    fn create_user(&mut self, new: &NewUser) -> Result<UserId, ModelError> {
        self.require_owner("create users")?;
        let id = UserId(Self::new_id(new.id.map(|id| id.0)));
        if self.index.users.contains_key(&id) {
            return Err(ModelError::AlreadyExists { what: format!("user `{id}`") });
        }
        self.require_email_free(&new.email, None)?;
        let user = User {
            id,
            email: new.email.clone(),
            name: new.name.clone(),
            language: new.language.clone(),
            role: new.role,
            modules: Default::default(),
            has_password: new.password.is_some(),
            created_at: self.now,
            updated_at: self.now,
        };
        self.emit(Change::UserCreated { user, password: new.password.clone() });
        Ok(id)
    }

    fn update_user(&mut self, update: &UserUpdate) -> Result<UserId, ModelError> {
        let Some(user_id) = update.user_id else {
            return Err(ModelError::invalid("update_user.user_id", "is required"));
        };
        self.require_user(user_id)?;
        let is_self = self.actor == Some(user_id);
        if update.role.is_some() && is_self {
            return Err(ModelError::FailedPrecondition("nobody can change their own role".into()));
        }
        let needs_owner = update.email.is_some() || update.role.is_some() || update.modules.is_some() || !is_self;
        if needs_owner {
            self.require_owner("change other users, roles, emails or modules")?;
        }
        if is_self && update.password.is_some() && !update.current_password_verified {
            return Err(ModelError::denied(
                "`update_user.current_password` must be given and match to change your own password",
            ));
        }
        if let Some(email) = &update.email {
            self.require_email_free(email, Some(user_id))?;
        }
        let patch = UserPatch {
            email: update.email.clone(),
            name: update.name.clone(),
            language: update.language.clone(),
            role: update.role,
            modules: update.modules,
            password_changed: update.password.is_some(),
            password: update.password.clone(),
        };
        self.emit(Change::UserUpdated { user_id, patch, updated_at: self.now });
        Ok(user_id)
    }

    fn delete_user(&mut self, user_id: UserId) -> Result<(), ModelError> {
        self.require_owner("delete users")?;
        self.require_user(user_id)?;
        if self.actor == Some(user_id) {
            return Err(ModelError::FailedPrecondition("nobody can delete their own account".into()));
        }
        let Some(entry) = self.index.users.get(&user_id).cloned() else { return Ok(()) };
        for group_id in entry.groups.iter() {
            self.emit(Change::MemberRemoved { group_id, user_id });
        }
        for target in entry.grants.targets().collect::<Vec<_>>() {
            let grant = Grant { subject: Subject::User(user_id), target, level: Level::NoAccess };
            self.emit(Change::GrantSet { grant });
        }
        if !entry.reports.is_empty() {
            // Reports pass to the deleting owner, or else to the oldest other owner.
            let heir = self
                .actor
                .or_else(|| self.index.owners.iter().map(|(_, owner)| *owner).find(|owner| *owner != user_id));
            let Some(heir) = heir else {
                return Err(ModelError::FailedPrecondition(format!(
                    "user `{user_id}` has reports and no other owner exists to inherit them"
                )));
            };
            for report_id in entry.reports.iter() {
                self.emit(Change::ReportUpdated { report_id, name: None, visibility: None, author: Some(heir) });
            }
        }
        self.emit(Change::UserDeleted { user_id });
        Ok(())
    }

    fn create_site(&mut self, new: &NewSite) -> Result<SiteId, ModelError> {
        self.require_owner("create sites")?;
        let id = SiteId(Self::new_id(new.id.map(|id| id.0)));
        if self.index.sites.contains_key(&id) {
            return Err(ModelError::AlreadyExists { what: format!("site `{id}`") });
        }
        self.emit(Change::SiteCreated { site: Site { id, name: new.name.clone(), created_at: self.now } });
        Ok(id)
    }

    fn update_site(&mut self, site_id: SiteId, name: Option<&str>) -> Result<(), ModelError> {
        self.require_site(site_id)?;
        if let Some(actor) = self.actor
            && self.index.site_level(actor, site_id) < Level::Edit
        {
            return Err(ModelError::denied(format!("renaming site `{site_id}` needs EDIT on it")));
        }
        if let Some(name) = name {
            self.emit(Change::SiteUpdated { site_id, name: name.to_string() });
        }
        Ok(())
    }

    fn delete_site(&mut self, site_id: SiteId) -> Result<(), ModelError> {
        self.require_owner("delete sites")?;
        self.require_site(site_id)?;
        let Some(entry) = self.index.sites.get(&site_id).cloned() else { return Ok(()) };
        for subject in entry.grantees.iter() {
            let grant = Grant { subject, target: Target::Site(site_id), level: Level::NoAccess };
            self.emit(Change::GrantSet { grant });
        }
        for report_id in entry.reports.iter() {
            self.emit(Change::ReportDeleted { report_id });
        }
        self.emit(Change::SiteDeleted { site_id });
        Ok(())
    }

    fn create_group(&mut self, new: &NewGroup) -> Result<GroupId, ModelError> {
        self.require_owner("create groups")?;
        let id = GroupId(Self::new_id(new.id.map(|id| id.0)));
        if self.index.groups.contains_key(&id) {
            return Err(ModelError::AlreadyExists { what: format!("group `{id}`") });
        }
        self.require_group_name_free(&new.name, None)?;
        if let Some(external_id) = &new.external_id {
            self.require_external_id_free(external_id, None)?;
        }
        let group = Group {
            id,
            name: new.name.clone(),
            description: new.description.clone(),
            external_id: new.external_id.clone(),
            created_at: self.now,
        };
        self.emit(Change::GroupCreated { group });
        Ok(id)
    }

    fn update_group(
        &mut self,
        group_id: GroupId,
        name: &Option<String>,
        description: &Option<String>,
        external_id: &Option<Option<String>>,
    ) -> Result<(), ModelError> {
        self.require_owner("change groups")?;
        self.require_group(group_id)?;
        if let Some(name) = name {
            self.require_group_name_free(name, Some(group_id))?;
        }
        if let Some(Some(external_id)) = external_id {
            self.require_external_id_free(external_id, Some(group_id))?;
        }
        self.emit(Change::GroupUpdated {
            group_id,
            name: name.clone(),
            description: description.clone(),
            external_id: external_id.clone(),
        });
        Ok(())
    }

    fn delete_group(&mut self, group_id: GroupId) -> Result<(), ModelError> {
        self.require_owner("delete groups")?;
        self.require_group(group_id)?;
        let Some(entry) = self.index.groups.get(&group_id).cloned() else { return Ok(()) };
        for user_id in entry.members.iter() {
            self.emit(Change::MemberRemoved { group_id, user_id });
        }
        for target in entry.grants.targets().collect::<Vec<_>>() {
            let grant = Grant { subject: Subject::Group(group_id), target, level: Level::NoAccess };
            self.emit(Change::GrantSet { grant });
        }
        self.emit(Change::GroupDeleted { group_id });
        Ok(())
    }

    fn change_members(&mut self, group_id: GroupId, user_ids: &[UserId], add: bool) -> Result<(), ModelError> {
        self.require_owner("change group membership")?;
        self.require_group(group_id)?;
        for &user_id in user_ids {
            self.require_user(user_id)?;
            let is_member = self.index.groups.get(&group_id).is_some_and(|g| g.members.contains(&user_id));
            match (add, is_member) {
                (true, false) => self.emit(Change::MemberAdded { group_id, user_id }),
                (false, true) => self.emit(Change::MemberRemoved { group_id, user_id }),
                _ => {}
            }
        }
        Ok(())
    }

    fn set_grant(&mut self, grant: &Grant) -> Result<(), ModelError> {
        let current = match grant.subject {
            Subject::User(id) => {
                self.require_user(id)?;
                self.index.users.get(&id).map(|u| u.grants.level_on_target(grant.target))
            }
            Subject::Group(id) => {
                self.require_group(id)?;
                self.index.groups.get(&id).map(|g| g.grants.level_on_target(grant.target))
            }
        };
        if let Target::Site(site_id) = grant.target {
            self.require_site(site_id)?;
        }
        self.authorize_grant(grant)?;
        if current != Some(grant.level) {
            self.emit(Change::GrantSet { grant: *grant });
        }
        Ok(())
    }

    /// Owners may set any level for anyone. A user with MANAGE on a site may
    /// set levels on that site for groups and for non-owner users other than
    /// themselves.
    fn authorize_grant(&self, grant: &Grant) -> Result<(), ModelError> {
        let Some(actor) = self.actor else { return Ok(()) };
        if self.index.is_owner(actor) {
            return Ok(());
        }
        let Target::Site(site_id) = grant.target else {
            return Err(ModelError::denied("only owners may grant on all sites"));
        };
        if self.index.site_level(actor, site_id) < Level::Manage {
            return Err(ModelError::denied(format!("setting levels on site `{site_id}` needs MANAGE on it")));
        }
        match grant.subject {
            Subject::User(user_id) if user_id == actor => Err(ModelError::denied("nobody can change their own level")),
            Subject::User(user_id) if self.index.is_owner(user_id) => {
                Err(ModelError::denied("only owners may change an owner's levels"))
            }
            Subject::User(_) | Subject::Group(_) => Ok(()),
        }
    }

    fn create_report(&mut self, new: &NewReport, field: &str) -> Result<ReportId, ModelError> {
        let id = ReportId(Self::new_id(new.id.map(|id| id.0)));
        if self.index.report(id).is_some() {
            return Err(ModelError::AlreadyExists { what: format!("report `{id}`") });
        }
        self.require_site(new.site_id)?;
        let Some(author) = new.author.or(self.actor) else {
            return Err(ModelError::invalid(
                format!("{field}.author_user_id"),
                "is required when the batch has no `actor_user_id`",
            ));
        };
        self.require_user(author)?;
        if let Some(actor) = self.actor
            && actor != author
            && !self.index.is_owner(actor)
        {
            return Err(ModelError::denied("only owners may create reports for another author"));
        }
        if self.index.site_level(author, new.site_id) < Level::View {
            return Err(ModelError::denied(format!("author `{author}` has no VIEW on site `{}`", new.site_id)));
        }
        let report = Report {
            id,
            site_id: new.site_id,
            author,
            name: new.name.clone(),
            visibility: new.visibility,
            created_at: self.now,
        };
        self.emit(Change::ReportCreated { report });
        Ok(id)
    }

    /// The report exists and the actor (if any) may do `action` on it.
    fn authorize_report(&self, report_id: ReportId, action: Action) -> Result<(), ModelError> {
        if self.index.report(report_id).is_none() {
            return Err(ModelError::not_found("report", report_id));
        }
        match self.actor {
            Some(actor) if !self.index.decide(actor, Resource::Report(report_id), action).allowed => {
                Err(ModelError::denied(format!("not allowed to {action:?} report `{report_id}`").to_lowercase()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NewUser, Role};

    fn owner(index: &Index) -> (Index, UserId) {
        let new = NewUser {
            id: None,
            email: "owner@example.com".into(),
            name: "Owner".into(),
            password: None,
            language: "en".into(),
            role: Role::Owner,
        };
        let plan = index.plan(None, &[Mutation::CreateUser(new)], Timestamp(1)).unwrap();
        let id = plan.ids[0].parse().map(UserId).unwrap();
        (plan.index, id)
    }

    #[test]
    fn a_failed_mutation_names_its_position_and_changes_nothing() {
        let (index, owner) = owner(&Index::default());
        let site = NewSite { id: None, name: "s".into() };
        let missing = SiteId(Uuid::now_v7());
        let batch = [Mutation::CreateSite(site), Mutation::DeleteSite(missing)];
        let err = index.plan(Some(owner), &batch, Timestamp(2)).unwrap_err();
        assert!(err.to_string().contains("mutations[1]"), "{err}");
        assert_eq!(index.sites.len(), 0);
    }

    #[test]
    fn the_last_owner_cannot_be_demoted() {
        let (index, owner_id) = owner(&Index::default());
        let update = UserUpdate { user_id: Some(owner_id), role: Some(Role::User), ..Default::default() };
        let err = index.plan(None, &[Mutation::UpdateUser(update)], Timestamp(2)).unwrap_err();
        assert!(matches!(err, ModelError::FailedPrecondition(_)), "{err}");
    }
}
