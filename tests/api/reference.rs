//! A naive reference model of the rules in DESIGN §1 and its "Fine points",
//! written from the text alone (not from `src/index`): plain ordered maps,
//! linear scans, no caches, no cleverness. The model check replays every batch
//! it sends to warden on this model and expects the same decisions.
//!
//! Ids are kept as the strings sent over the API. The model understands the
//! mutations the model check sends; it panics on fields it does not model
//! (user emails changes, passwords, module switches, group external ids).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use tonic::Code;
use warden::pb::mutation::Op;
use warden::pb::resource::Kind as Resource;
use warden::pb::{self, Action, Level, ReportVisibility, Role};

/// Who holds a grant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Group(String),
}

/// Where a grant applies.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Site(String),
    /// Every site, present and future.
    AllSites,
}

#[derive(Clone, Debug)]
struct User {
    /// Emails are unique case-insensitively.
    email_key: String,
    role: Role,
    /// The number of the batch that created the user. A batch commits at one
    /// instant, so users created together are equally old.
    created_in_batch: u64,
}

#[derive(Clone, Debug)]
struct Group {
    /// The name as created: lookups and explanations show it.
    name: String,
    /// Group names are unique case-insensitively.
    name_key: String,
    members: BTreeSet<String>,
}

#[derive(Clone, Debug)]
struct Report {
    site: String,
    author: String,
    visibility: ReportVisibility,
}

/// Why the model refuses a batch, with the status code DESIGN asks for.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub code: Code,
    pub reason: String,
}

impl Refusal {
    fn new(code: Code, reason: impl Into<String>) -> Self {
        Refusal { code, reason: reason.into() }
    }

    fn in_mutation(self, index: usize) -> Self {
        Refusal { reason: format!("mutations[{index}]: {}", self.reason), ..self }
    }
}

type Verdict = Result<(), Refusal>;

fn not_found(kind: &str, id: &str) -> Refusal {
    Refusal::new(Code::NotFound, format!("{kind} `{id}` not found"))
}

fn denied(reason: impl Into<String>) -> Refusal {
    Refusal::new(Code::PermissionDenied, reason)
}

/// On whose behalf a mutation is judged.
enum Authority<'a> {
    /// No actor: the trusted admin tooling, bound only by the model's invariants.
    Tooling,
    Owner,
    User(&'a str),
}

/// The whole model state.
#[derive(Clone, Debug, Default)]
pub struct Reference {
    users: BTreeMap<String, User>,
    sites: BTreeSet<String>,
    groups: BTreeMap<String, Group>,
    /// A grant at `NoAccess` does not exist: setting it removes the entry.
    grants: BTreeMap<(Subject, Target), Level>,
    reports: BTreeMap<String, Report>,
    committed_batches: u64,
}

// Decisions.
impl Reference {
    pub fn is_owner(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.role == Role::Owner)
    }

    /// MANAGE for an owner; otherwise the highest of the user's own grant on
    /// the site, their all-sites grant, and the same two of every group they
    /// belong to. Unknown users and sites have no access.
    pub fn effective_level(&self, user: &str, site: &str) -> Level {
        if !self.users.contains_key(user) || !self.sites.contains(site) {
            return Level::NoAccess;
        }
        if self.is_owner(user) {
            return Level::Manage;
        }
        let mut subjects = vec![Subject::User(user.to_string())];
        for (group_id, group) in &self.groups {
            if group.members.contains(user) {
                subjects.push(Subject::Group(group_id.clone()));
            }
        }
        let mut level = Level::NoAccess;
        for subject in subjects {
            for target in [Target::Site(site.to_string()), Target::AllSites] {
                if let Some(granted) = self.grants.get(&(subject.clone(), target)) {
                    level = level.max(*granted);
                }
            }
        }
        level
    }

    /// Whether `user` may do `action` on `resource`.
    pub fn allowed(&self, user: &str, resource: &Resource, action: Action) -> bool {
        if !self.users.contains_key(user) {
            return false;
        }
        match resource {
            Resource::SiteId(site) => self.allowed_on_site(user, site, action),
            Resource::ReportId(report) => self.allowed_on_report(user, report, action),
            Resource::Instance(_) => self.is_owner(user),
        }
    }

    /// The level a check answers with: the level on the site, on the report's
    /// site, or for the instance MANAGE for owners and NO_ACCESS otherwise.
    pub fn answered_level(&self, user: &str, resource: &Resource) -> Level {
        match resource {
            Resource::SiteId(site) => self.effective_level(user, site),
            Resource::ReportId(report) => match self.reports.get(report) {
                Some(report) => self.effective_level(user, &report.site),
                None => Level::NoAccess,
            },
            Resource::Instance(_) if self.is_owner(user) => Level::Manage,
            Resource::Instance(_) => Level::NoAccess,
        }
    }

    fn allowed_on_site(&self, user: &str, site: &str, action: Action) -> bool {
        if !self.sites.contains(site) {
            return false;
        }
        let level = self.effective_level(user, site);
        match action {
            Action::View => level >= Level::View,
            Action::Edit => level >= Level::Edit,
            Action::Publish => level >= Level::EditPublish,
            Action::Manage => level >= Level::Manage,
            Action::Delete => self.is_owner(user),
            Action::Unspecified => false,
        }
    }

    fn allowed_on_report(&self, user: &str, report_id: &str, action: Action) -> bool {
        let Some(report) = self.reports.get(report_id) else { return false };
        let level = self.effective_level(user, &report.site);
        // The author keeps rights over a report only while they can view its site.
        let acting_author = report.author == user && level >= Level::View;
        let owner = self.is_owner(user);
        match (report.visibility, action) {
            (_, Action::Publish | Action::Manage | Action::Unspecified) => false,
            (ReportVisibility::AuthorOnly, Action::View | Action::Edit) => acting_author,
            (ReportVisibility::AuthorOnly, Action::Delete) => acting_author || owner,
            (ReportVisibility::AllUsers, Action::View) => level >= Level::View,
            (ReportVisibility::AllUsers, Action::Edit | Action::Delete) => {
                acting_author || owner || level >= Level::Edit
            }
            (ReportVisibility::Unspecified, _) => unreachable!("stored reports have a visibility"),
        }
    }

    fn owner_count(&self) -> usize {
        self.users.values().filter(|u| u.role == Role::Owner).count()
    }

    /// The oldest owner other than `except`: earliest batch first, and among
    /// users created in the same batch (equally old) the lowest id.
    fn oldest_owner_except(&self, except: &str) -> Option<String> {
        self.users
            .iter()
            .filter(|(id, user)| user.role == Role::Owner && id.as_str() != except)
            .min_by_key(|(id, user)| (user.created_in_batch, id.as_str()))
            .map(|(id, _)| id.clone())
    }
}

// Lookups and explanations (check.proto): plain scans over the whole model.
impl Reference {
    /// The sites where `user`'s effective level is at least `min_level`, by
    /// site id, each with that level. An unknown user reaches no site.
    pub fn lookup_sites(&self, user: &str, min_level: Level) -> Vec<pb::SiteAccess> {
        let mut sites = Vec::new();
        for site in &self.sites {
            let level = self.effective_level(user, site);
            if level >= min_level {
                sites.push(pb::SiteAccess { site_id: site.clone(), level: level as i32 });
            }
        }
        sites
    }

    /// The users whose effective level on `site` is at least `min_level`, by
    /// user id, each with that level and every path giving them a level
    /// there. An unknown site is reached by nobody.
    pub fn lookup_users(&self, site: &str, min_level: Level) -> Vec<pb::UserAccess> {
        let mut users = Vec::new();
        for user in self.users.keys() {
            let (level, paths) = self.paths(user, site);
            if level >= min_level {
                users.push(pb::UserAccess { user_id: user.clone(), level: level as i32, paths });
            }
        }
        users
    }

    /// Every path from `user` to `site`, in the order of `PathKind`: OWNER
    /// (MANAGE), DIRECT (the user's grant on the site), ALL_SITES (the
    /// user's all-sites grant), GROUP for each of the user's groups with a
    /// grant on the site, then GROUP_ALL_SITES for each of the user's groups
    /// with an all-sites grant, groups by id. The first path at the effective
    /// level wins. Unknown users and sites have no paths and no access.
    pub fn paths(&self, user: &str, site: &str) -> (Level, Vec<pb::AccessPath>) {
        if !self.users.contains_key(user) || !self.sites.contains(site) {
            return (Level::NoAccess, Vec::new());
        }
        let path = |kind: pb::PathKind, level: Level, group: Option<(&String, &Group)>| pb::AccessPath {
            kind: kind as i32,
            level: level as i32,
            group_id: group.map(|(id, _)| id.clone()).unwrap_or_default(),
            group_name: group.map(|(_, g)| g.name.clone()).unwrap_or_default(),
            wins: false,
        };
        let grant = |subject: Subject, target: Target| self.grants.get(&(subject, target)).copied();
        let on_site = || Target::Site(site.to_string());
        let me = || Subject::User(user.to_string());

        let mut paths = Vec::new();
        if self.is_owner(user) {
            paths.push(path(pb::PathKind::Owner, Level::Manage, None));
        }
        if let Some(level) = grant(me(), on_site()) {
            paths.push(path(pb::PathKind::Direct, level, None));
        }
        if let Some(level) = grant(me(), Target::AllSites) {
            paths.push(path(pb::PathKind::AllSites, level, None));
        }
        // `groups` is ordered by id.
        let my_groups: Vec<(&String, &Group)> = self.groups.iter().filter(|(_, g)| g.members.contains(user)).collect();
        for &(id, group) in &my_groups {
            if let Some(level) = grant(Subject::Group(id.clone()), on_site()) {
                paths.push(path(pb::PathKind::Group, level, Some((id, group))));
            }
        }
        for &(id, group) in &my_groups {
            if let Some(level) = grant(Subject::Group(id.clone()), Target::AllSites) {
                paths.push(path(pb::PathKind::GroupAllSites, level, Some((id, group))));
            }
        }

        let level = self.effective_level(user, site);
        let best = paths.iter().map(|p| p.level).max().unwrap_or(Level::NoAccess as i32);
        assert_eq!(best, level as i32, "the reference model's paths disagree with its own effective level");
        if let Some(winner) = paths.iter_mut().find(|p| p.level == level as i32) {
            winner.wins = true;
        }
        (level, paths)
    }

    /// What Explain answers (its `revision` left empty). For a site: the
    /// paths and level, and the site id when the site exists. For a report:
    /// the same on the report's site, and what the user may do with the
    /// report exactly as `allowed` decides it (the `reason` is free text and
    /// left empty). An unknown report has no paths, no site, no report access.
    ///
    /// `site_id` is "the site the paths lead to (for a report: its site);
    /// empty if none" (check.proto): the model reads "none" as "no such
    /// site", so an unknown *user* on a known site or report still gets the
    /// site id (with no paths and NO_ACCESS), as a known user without access does.
    pub fn explain(&self, user: &str, resource: &Resource) -> pb::ExplainResponse {
        let on_site = |site: &str| {
            let (level, paths) = self.paths(user, site);
            pb::ExplainResponse {
                effective_level: level as i32,
                paths,
                site_id: if self.sites.contains(site) { site.to_string() } else { String::new() },
                ..Default::default()
            }
        };
        match resource {
            Resource::SiteId(site) => on_site(site),
            Resource::ReportId(report_id) => {
                let Some(report) = self.reports.get(report_id) else {
                    return pb::ExplainResponse { effective_level: Level::NoAccess as i32, ..Default::default() };
                };
                let may = |action| self.allowed(user, resource, action);
                pb::ExplainResponse {
                    report: Some(pb::ReportAccess {
                        can_view: may(Action::View),
                        can_edit: may(Action::Edit),
                        can_delete: may(Action::Delete),
                        reason: String::new(),
                    }),
                    ..on_site(&report.site)
                }
            }
            Resource::Instance(_) => panic!("the model check does not explain the instance"),
        }
    }
}

// Reading the state, for the model check's bookkeeping.
impl Reference {
    pub fn has_user(&self, id: &str) -> bool {
        self.users.contains_key(id)
    }
    pub fn has_site(&self, id: &str) -> bool {
        self.sites.contains(id)
    }
    pub fn has_group(&self, id: &str) -> bool {
        self.groups.contains_key(id)
    }
    pub fn has_report(&self, id: &str) -> bool {
        self.reports.contains_key(id)
    }
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
    pub fn site_ids(&self) -> impl Iterator<Item = &str> {
        self.sites.iter().map(String::as_str)
    }
    pub fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
    pub fn report_ids(&self) -> impl Iterator<Item = &str> {
        self.reports.keys().map(String::as_str)
    }

    /// The state in a few lines, ids shown through `label`.
    pub fn summary(&self, label: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for (id, user) in &self.users {
            let _ = writeln!(out, "  user {} {:?} created in batch {}", label(id), user.role, user.created_in_batch);
        }
        let sites: Vec<String> = self.sites.iter().map(|s| label(s)).collect();
        let _ = writeln!(out, "  sites [{}]", sites.join(", "));
        for (id, group) in &self.groups {
            let members: Vec<String> = group.members.iter().map(|m| label(m)).collect();
            let _ = writeln!(out, "  group {} members [{}]", label(id), members.join(", "));
        }
        for ((subject, target), level) in &self.grants {
            let subject = match subject {
                Subject::User(id) | Subject::Group(id) => label(id),
            };
            let target = match target {
                Target::Site(site) => label(site),
                Target::AllSites => "all sites".to_string(),
            };
            let _ = writeln!(out, "  grant {subject} on {target}: {level:?}");
        }
        for (id, report) in &self.reports {
            let _ = writeln!(
                out,
                "  report {} on {} by {} {:?}",
                label(id),
                label(&report.site),
                label(&report.author),
                report.visibility
            );
        }
        out
    }
}

// Mutations.
impl Reference {
    /// Judges a batch the way DESIGN says warden must, and applies it when it
    /// is accepted. A refused batch leaves the model unchanged (all or nothing).
    ///
    /// Each mutation sees the effects of those before it; the last-owner rule
    /// is judged on the batch's end state.
    pub fn apply(&mut self, actor: Option<&str>, batch: &[Op]) -> Verdict {
        if let Some(actor) = actor
            && !self.users.contains_key(actor)
        {
            return Err(denied(format!("unknown actor `{actor}`")));
        }
        let mut next = self.clone();
        next.committed_batches += 1;
        for (index, op) in batch.iter().enumerate() {
            next.apply_one(actor, op).map_err(|refusal| refusal.in_mutation(index))?;
        }
        if self.owner_count() > 0 && next.owner_count() == 0 {
            return Err(Refusal::new(Code::FailedPrecondition, "the batch would leave no owner"));
        }
        *self = next;
        Ok(())
    }

    fn authority<'a>(&self, actor: Option<&'a str>) -> Authority<'a> {
        match actor {
            None => Authority::Tooling,
            Some(actor) if self.is_owner(actor) => Authority::Owner,
            Some(actor) => Authority::User(actor),
        }
    }

    /// Creating or deleting users, sites and groups, changing roles and
    /// managing membership are for owners only.
    fn require_owner(&self, actor: Option<&str>, what: &str) -> Verdict {
        match self.authority(actor) {
            Authority::Tooling | Authority::Owner => Ok(()),
            Authority::User(_) => Err(denied(format!("only owners may {what}"))),
        }
    }

    fn require_user(&self, id: &str) -> Verdict {
        if self.users.contains_key(id) { Ok(()) } else { Err(not_found("user", id)) }
    }

    fn require_site(&self, id: &str) -> Verdict {
        if self.sites.contains(id) { Ok(()) } else { Err(not_found("site", id)) }
    }

    fn require_group(&self, id: &str) -> Verdict {
        if self.groups.contains_key(id) { Ok(()) } else { Err(not_found("group", id)) }
    }

    fn apply_one(&mut self, actor: Option<&str>, op: &Op) -> Verdict {
        match op {
            Op::CreateUser(m) => self.create_user(actor, m),
            Op::UpdateUser(m) => self.update_user(actor, m),
            Op::DeleteUser(m) => self.delete_user(actor, &m.user_id),
            Op::CreateSite(m) => self.create_site(actor, &m.id),
            Op::UpdateSite(m) => self.update_site(actor, &m.site_id),
            Op::DeleteSite(m) => self.delete_site(actor, &m.site_id),
            Op::CreateGroup(m) => self.create_group(actor, m),
            Op::UpdateGroup(_) => panic!("the reference model does not model group updates"),
            Op::DeleteGroup(m) => self.delete_group(actor, &m.group_id),
            Op::AddGroupMembers(m) => self.change_members(actor, &m.group_id, &m.user_ids, true),
            Op::RemoveGroupMembers(m) => self.change_members(actor, &m.group_id, &m.user_ids, false),
            Op::SetGrant(m) => self.set_grant(actor, m),
            Op::CreateReport(m) => self.create_report(actor, m),
            Op::UpdateReport(m) => self.update_report(actor, m),
            Op::DeleteReport(m) => self.delete_report(actor, &m.report_id),
        }
    }

    fn create_user(&mut self, actor: Option<&str>, m: &pb::CreateUser) -> Verdict {
        assert!(!m.id.is_empty(), "the model check always chooses user ids");
        self.require_owner(actor, "create users")?;
        if self.users.contains_key(&m.id) {
            return Err(Refusal::new(Code::AlreadyExists, format!("user `{}`", m.id)));
        }
        let email_key = m.email.trim().to_lowercase();
        if self.users.values().any(|u| u.email_key == email_key) {
            return Err(Refusal::new(Code::AlreadyExists, format!("email `{}`", m.email)));
        }
        let role = match Role::try_from(m.role) {
            Ok(Role::Owner) => Role::Owner,
            Ok(Role::User | Role::Unspecified) => Role::User,
            Err(_) => return Err(Refusal::new(Code::InvalidArgument, "unknown role")),
        };
        let user = User { email_key, role, created_in_batch: self.committed_batches };
        self.users.insert(m.id.clone(), user);
        Ok(())
    }

    fn update_user(&mut self, actor: Option<&str>, m: &pb::UpdateUser) -> Verdict {
        let modeled = pb::UpdateUser { user_id: m.user_id.clone(), role: m.role, ..Default::default() };
        assert_eq!(*m, modeled, "the reference model only models role changes");
        let Some(role) = m.role else { return Ok(()) };
        self.require_owner(actor, "change roles")?;
        self.require_user(&m.user_id)?;
        if actor == Some(m.user_id.as_str()) {
            return Err(Refusal::new(Code::FailedPrecondition, "nobody can change their own role"));
        }
        let role = match Role::try_from(role) {
            Ok(role @ (Role::Owner | Role::User)) => role,
            _ => return Err(Refusal::new(Code::InvalidArgument, "`role` must be ROLE_USER or ROLE_OWNER")),
        };
        if let Some(user) = self.users.get_mut(&m.user_id) {
            user.role = role;
        }
        Ok(())
    }

    /// Removes the user's grants and memberships; their reports pass to the
    /// owner who deletes them, or without an actor to the oldest other owner.
    fn delete_user(&mut self, actor: Option<&str>, user_id: &str) -> Verdict {
        self.require_owner(actor, "delete users")?;
        self.require_user(user_id)?;
        if actor == Some(user_id) {
            return Err(Refusal::new(Code::FailedPrecondition, "nobody can delete their own account"));
        }
        let heir = match actor {
            Some(owner) => Some(owner.to_string()),
            None => self.oldest_owner_except(user_id),
        };
        let authored: Vec<String> =
            self.reports.iter().filter(|(_, r)| r.author == user_id).map(|(id, _)| id.clone()).collect();
        if !authored.is_empty() {
            let Some(heir) = heir else {
                return Err(Refusal::new(Code::FailedPrecondition, "no owner left to inherit the reports"));
            };
            for id in authored {
                if let Some(report) = self.reports.get_mut(&id) {
                    report.author = heir.clone();
                }
            }
        }
        self.grants.retain(|(subject, _), _| *subject != Subject::User(user_id.to_string()));
        for group in self.groups.values_mut() {
            group.members.remove(user_id);
        }
        self.users.remove(user_id);
        Ok(())
    }

    fn create_site(&mut self, actor: Option<&str>, id: &str) -> Verdict {
        assert!(!id.is_empty(), "the model check always chooses site ids");
        self.require_owner(actor, "create sites")?;
        if !self.sites.insert(id.to_string()) {
            return Err(Refusal::new(Code::AlreadyExists, format!("site `{id}`")));
        }
        Ok(())
    }

    /// Renaming: owners and users with EDIT on the site. Names are not modeled.
    fn update_site(&mut self, actor: Option<&str>, site_id: &str) -> Verdict {
        self.require_site(site_id)?;
        match self.authority(actor) {
            Authority::Tooling | Authority::Owner => Ok(()),
            Authority::User(user) if self.effective_level(user, site_id) >= Level::Edit => Ok(()),
            Authority::User(_) => Err(denied("renaming a site needs EDIT on it")),
        }
    }

    /// Removes the site with its grants and reports.
    fn delete_site(&mut self, actor: Option<&str>, site_id: &str) -> Verdict {
        self.require_owner(actor, "delete sites")?;
        self.require_site(site_id)?;
        self.grants.retain(|(_, target), _| *target != Target::Site(site_id.to_string()));
        self.reports.retain(|_, report| report.site != site_id);
        self.sites.remove(site_id);
        Ok(())
    }

    fn create_group(&mut self, actor: Option<&str>, m: &pb::CreateGroup) -> Verdict {
        assert!(!m.id.is_empty(), "the model check always chooses group ids");
        assert!(m.external_id.is_empty(), "the reference model does not model external ids");
        self.require_owner(actor, "create groups")?;
        if self.groups.contains_key(&m.id) {
            return Err(Refusal::new(Code::AlreadyExists, format!("group `{}`", m.id)));
        }
        let name_key = m.name.trim().to_lowercase();
        if self.groups.values().any(|g| g.name_key == name_key) {
            return Err(Refusal::new(Code::AlreadyExists, format!("group name `{}`", m.name)));
        }
        self.groups.insert(m.id.clone(), Group { name: m.name.clone(), name_key, members: BTreeSet::new() });
        Ok(())
    }

    /// Removes the group with its memberships and its grants, nothing else.
    fn delete_group(&mut self, actor: Option<&str>, group_id: &str) -> Verdict {
        self.require_owner(actor, "delete groups")?;
        self.require_group(group_id)?;
        self.grants.retain(|(subject, _), _| *subject != Subject::Group(group_id.to_string()));
        self.groups.remove(group_id);
        Ok(())
    }

    /// Adding a member twice and removing a non-member are harmless; naming a
    /// user who does not exist is not.
    fn change_members(&mut self, actor: Option<&str>, group_id: &str, user_ids: &[String], add: bool) -> Verdict {
        self.require_owner(actor, "manage group membership")?;
        self.require_group(group_id)?;
        for user_id in user_ids {
            self.require_user(user_id)?;
        }
        if let Some(group) = self.groups.get_mut(group_id) {
            for user_id in user_ids {
                if add {
                    group.members.insert(user_id.clone());
                } else {
                    group.members.remove(user_id);
                }
            }
        }
        Ok(())
    }

    /// Owners set any level for anyone. A user with MANAGE on a site sets
    /// levels on that site only, for groups and for non-owner users other than
    /// themselves. NO_ACCESS removes the grant.
    fn set_grant(&mut self, actor: Option<&str>, m: &pb::SetGrant) -> Verdict {
        let subject = match m.subject.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(pb::subject::Kind::UserId(id)) => {
                self.require_user(id)?;
                Subject::User(id.clone())
            }
            Some(pb::subject::Kind::GroupId(id)) => {
                self.require_group(id)?;
                Subject::Group(id.clone())
            }
            None => return Err(Refusal::new(Code::InvalidArgument, "`subject` is required")),
        };
        let target = match &m.target {
            Some(pb::set_grant::Target::SiteId(id)) => {
                self.require_site(id)?;
                Target::Site(id.clone())
            }
            Some(pb::set_grant::Target::AllSites(true)) => Target::AllSites,
            Some(pb::set_grant::Target::AllSites(false)) | None => {
                return Err(Refusal::new(Code::InvalidArgument, "`target` is required"));
            }
        };
        let level = match Level::try_from(m.level) {
            Ok(Level::Unspecified) | Err(_) => return Err(Refusal::new(Code::InvalidArgument, "`level` is required")),
            Ok(level) => level,
        };
        if let Authority::User(manager) = self.authority(actor) {
            let Target::Site(site) = &target else {
                return Err(denied("only owners may grant on all sites"));
            };
            if self.effective_level(manager, site) < Level::Manage {
                return Err(denied("setting levels on a site needs MANAGE on it"));
            }
            if let Subject::User(user) = &subject {
                if user == manager {
                    return Err(denied("nobody may set their own level"));
                }
                if self.is_owner(user) {
                    return Err(denied("only owners may set an owner's levels"));
                }
            }
        }
        if level == Level::NoAccess {
            self.grants.remove(&(subject, target));
        } else {
            self.grants.insert((subject, target), level);
        }
        Ok(())
    }

    /// The author (the actor by default) needs VIEW on the site; an actor who
    /// is not an owner may only author their own reports.
    fn create_report(&mut self, actor: Option<&str>, m: &pb::CreateReport) -> Verdict {
        assert!(!m.id.is_empty(), "the model check always chooses report ids");
        self.require_site(&m.site_id)?;
        let author = match (m.author_user_id.as_str(), actor) {
            ("", Some(actor)) => actor.to_string(),
            ("", None) => {
                return Err(Refusal::new(Code::InvalidArgument, "`author_user_id` is required without an actor"));
            }
            (author, _) => author.to_string(),
        };
        self.require_user(&author)?;
        if let Authority::User(user) = self.authority(actor)
            && user != author
        {
            return Err(denied("only owners may author reports for others"));
        }
        if self.reports.contains_key(&m.id) {
            return Err(Refusal::new(Code::AlreadyExists, format!("report `{}`", m.id)));
        }
        if self.effective_level(&author, &m.site_id) < Level::View {
            return Err(denied("the author needs VIEW on the site"));
        }
        let visibility = match ReportVisibility::try_from(m.visibility) {
            Ok(ReportVisibility::Unspecified) => ReportVisibility::AuthorOnly,
            Ok(visibility) => visibility,
            Err(_) => return Err(Refusal::new(Code::InvalidArgument, "unknown visibility")),
        };
        self.reports.insert(m.id.clone(), Report { site: m.site_id.clone(), author, visibility });
        Ok(())
    }

    /// Changing a report needs the right to EDIT it (tooling always may).
    fn update_report(&mut self, actor: Option<&str>, m: &pb::UpdateReport) -> Verdict {
        if !self.reports.contains_key(&m.report_id) {
            return Err(not_found("report", &m.report_id));
        }
        if let Some(actor) = actor
            && !self.allowed_on_report(actor, &m.report_id, Action::Edit)
        {
            return Err(denied("the actor may not edit this report"));
        }
        let visibility = match m.visibility.map(ReportVisibility::try_from) {
            None => None,
            Some(Ok(visibility @ (ReportVisibility::AuthorOnly | ReportVisibility::AllUsers))) => Some(visibility),
            Some(_) => return Err(Refusal::new(Code::InvalidArgument, "`visibility` must be set")),
        };
        if let (Some(report), Some(visibility)) = (self.reports.get_mut(&m.report_id), visibility) {
            report.visibility = visibility;
        }
        Ok(())
    }

    /// Deleting a report needs the right to DELETE it (tooling always may).
    fn delete_report(&mut self, actor: Option<&str>, report_id: &str) -> Verdict {
        if !self.reports.contains_key(report_id) {
            return Err(not_found("report", report_id));
        }
        if let Some(actor) = actor
            && !self.allowed_on_report(actor, report_id, Action::Delete)
        {
            return Err(denied("the actor may not delete this report"));
        }
        self.reports.remove(report_id);
        Ok(())
    }
}
