//! The in-memory grant index: everything a decision needs, versioned by
//! revision. Pure and synchronous: built from stored rows, changed only by
//! applying committed [`Change`]s, never doing I/O.
//!
//! The maps are persistent (imbl), and so are the flat tables decisions read
//! ([`table`], on [`flat`]): cloning an index is O(1) and a clone that
//! is changed shares everything it did not touch. A write plans its batch on
//! a clone ([`plan`]) while readers keep using the published index; once the
//! batch is committed the clone is published whole, so a reader sees either
//! all of a batch or none of it.

mod build;
mod decide;
mod flat;
mod lookup;
mod plan;
mod sorted;
mod table;

use std::sync::Arc;

use imbl::shared_ptr::DefaultSharedPtr;
use rustc_hash::FxBuildHasher;

pub use build::IndexBuilder;
pub use decide::Decision;
use flat::{FlatTable, Slot, hash_uuid};
pub use lookup::{AccessPath, Explanation, PathKind, ReportAccess, SiteAccess, UserAccess};
pub use plan::Plan;
use sorted::{SmallOrdMap, SmallOrdSet};
use table::DecisionTable;

use crate::model::{
    Change, Grant, GroupId, Level, ReportId, Revision, Role, SiteId, Subject, Target, Timestamp, UserId, Visibility,
    validate,
};

type Map<K, V> = imbl::GenericHashMap<K, V, FxBuildHasher, DefaultSharedPtr>;
type Set<A> = imbl::GenericHashSet<A, FxBuildHasher, DefaultSharedPtr>;

/// The decision state at one revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Index {
    revision: Revision,
    users: Map<UserId, Arc<UserEntry>>,
    /// Lower-cased email → user: emails are unique case-insensitively.
    user_by_email: Map<Arc<str>, UserId>,
    /// Owners, oldest first: counts them and names the heir of a deleted user's reports.
    owners: imbl::OrdSet<(Timestamp, UserId)>,
    sites: Map<SiteId, Arc<SiteEntry>>,
    /// Every site, ordered by id: pages of "all sites" for owners and wildcards.
    site_order: imbl::OrdSet<SiteId>,
    /// Holders of an all-sites grant (their levels live with them).
    all_sites_users: imbl::OrdSet<UserId>,
    all_sites_groups: Set<GroupId>,
    groups: Map<GroupId, Arc<GroupEntry>>,
    /// Lower-cased group name → group: names are unique case-insensitively.
    group_by_name: Map<Arc<str>, GroupId>,
    group_by_external_id: Map<Arc<str>, GroupId>,
    reports: FlatTable<Option<ReportEntry>>,
    /// What decisions read: the maps above, laid out for speed. Derived from
    /// them and kept in step with them by [`Index::apply`].
    table: DecisionTable,
}

#[derive(Clone, Debug, PartialEq)]
struct UserEntry {
    role: Role,
    created_at: Timestamp,
    email_key: Arc<str>,
    groups: SmallOrdSet<GroupId>,
    grants: Grants,
    /// Reports this user authored (or inherited).
    reports: SmallOrdSet<ReportId>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct SiteEntry {
    /// Subjects holding a grant on this site (their levels live with them),
    /// ordered so that lookups can page through users by id.
    grantees: SmallOrdSet<Subject>,
    reports: SmallOrdSet<ReportId>,
}

#[derive(Clone, Debug, PartialEq)]
struct GroupEntry {
    /// The name as shown (lookups and explanations name the group).
    name: Arc<str>,
    name_key: Arc<str>,
    external_id: Option<Arc<str>>,
    /// Ordered so that lookups can page through members by id.
    members: SmallOrdSet<UserId>,
    grants: Grants,
}

/// The grants of one subject.
#[derive(Clone, Debug, Default, PartialEq)]
struct Grants {
    /// Ordered so that lookups can page through a subject's sites by id.
    sites: SmallOrdMap<SiteId, Level>,
    /// The all-sites wildcard; `NoAccess` when there is none.
    all_sites: Level,
}

impl Grants {
    /// The level granted on `site` itself (not through the wildcard).
    fn on_site(&self, site: SiteId) -> Level {
        self.sites.get(&site).unwrap_or_default()
    }

    fn level_on_target(&self, target: Target) -> Level {
        match target {
            Target::Site(site) => self.on_site(site),
            Target::AllSites => self.all_sites,
        }
    }

    /// The sites granted, in id order, from `from` on.
    fn sites_from(&self, from: std::ops::Bound<SiteId>) -> impl Iterator<Item = SiteId> + '_ {
        self.sites.range_from(from).map(|(site, _)| site)
    }

    /// Every grant held, all-sites first, for cascades.
    fn targets(&self) -> impl Iterator<Item = Target> + '_ {
        let all = (self.all_sites != Level::NoAccess).then_some(Target::AllSites);
        all.into_iter().chain(self.sites.keys().map(Target::Site))
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ReportEntry {
    id: ReportId,
    site: SiteId,
    author: UserId,
    visibility: Visibility,
}

/// A report decision finds its report in one probe, as users and sites.
impl Slot for Option<ReportEntry> {
    type Key = ReportId;
    const EMPTY: Self = None;
    fn key(&self) -> Option<ReportId> {
        self.map(|report| report.id)
    }
    fn hash(key: ReportId) -> u64 {
        hash_uuid(key.0)
    }
}

impl Index {
    /// The revision of the last batch applied.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    fn report(&self, id: ReportId) -> Option<ReportEntry> {
        self.reports.get(id).copied().flatten()
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Applies one committed batch and moves to its revision.
    pub fn apply_batch(&mut self, revision: Revision, changes: &[Change]) {
        for change in changes {
            self.apply(change);
        }
        self.revision = revision;
    }

    /// Applies one change. INVARIANT: changes come from [`Index::plan`] (or a
    /// changelog it wrote), so every id they name exists, and cascades
    /// (grants, memberships, reports) were emitted before the deletion.
    fn apply(&mut self, change: &Change) {
        self.apply_to_maps(change);
        self.apply_to_table(change);
    }

    /// Brings the decision table in step with the maps after `change`.
    fn apply_to_table(&mut self, change: &Change) {
        match change {
            Change::UserCreated { user, .. } => self.sync_user(user.id),
            Change::UserUpdated { user_id, patch, .. } if patch.role.is_some() => self.sync_user(*user_id),
            Change::UserDeleted { user_id } => self.table.remove_user(*user_id),
            Change::SiteCreated { site } => self.table.add_site(site.id),
            Change::SiteDeleted { site_id } => self.table.remove_site(*site_id),
            Change::GroupCreated { group } => self.table.add_group(group.id),
            Change::GroupDeleted { group_id } => self.table.remove_group(*group_id),
            Change::MemberAdded { user_id, .. } | Change::MemberRemoved { user_id, .. } => self.sync_user(*user_id),
            Change::GrantSet { grant } => match (grant.subject, grant.target) {
                (Subject::User(user_id), Target::AllSites) => self.sync_user(user_id),
                (Subject::Group(group_id), Target::AllSites) => {
                    // Members carry their groups' wildcards in their slots.
                    let Some(group) = self.groups.get(&group_id).cloned() else { return };
                    for member in group.members.iter() {
                        self.sync_user(member);
                    }
                }
                (subject, Target::Site(site_id)) => self.table.set_site_grant(subject, site_id, grant.level),
            },
            _ => {}
        }
    }

    fn sync_user(&mut self, id: UserId) {
        if let Some(entry) = self.users.get(&id) {
            self.table.set_user(id, entry, self.groups_wildcard(entry));
        }
    }

    /// The best all-sites level that `user`'s groups hold.
    fn groups_wildcard(&self, user: &UserEntry) -> Level {
        let holders = user.groups.iter().filter(|group| self.all_sites_groups.contains(group));
        holders
            .filter_map(|group| self.groups.get(&group))
            .map(|group| group.grants.all_sites)
            .max()
            .unwrap_or_default()
    }

    fn apply_to_maps(&mut self, change: &Change) {
        match change {
            Change::UserCreated { user, .. } => {
                self.insert_user(user.id, &validate::email_key(&user.email), user.role, user.created_at);
            }
            Change::UserUpdated { user_id, patch, .. } => {
                let Some(entry) = self.users.get_mut(user_id) else { return };
                let entry = Arc::make_mut(entry);
                if let Some(email) = &patch.email {
                    let key: Arc<str> = validate::email_key(email).into();
                    self.user_by_email.remove(&entry.email_key);
                    self.user_by_email.insert(key.clone(), *user_id);
                    entry.email_key = key;
                }
                if let Some(role) = patch.role {
                    entry.role = role;
                    match role {
                        Role::Owner => self.owners.insert((entry.created_at, *user_id)),
                        Role::User => self.owners.remove(&(entry.created_at, *user_id)),
                    };
                }
            }
            Change::UserDeleted { user_id } => {
                if let Some(entry) = self.users.remove(user_id) {
                    self.user_by_email.remove(&entry.email_key);
                    self.all_sites_users.remove(user_id);
                    self.owners.remove(&(entry.created_at, *user_id));
                }
            }
            Change::SiteCreated { site } => self.insert_site(site.id),
            Change::SiteUpdated { .. } => {}
            Change::SiteDeleted { site_id } => {
                self.sites.remove(site_id);
                self.site_order.remove(site_id);
            }
            Change::GroupCreated { group } => {
                self.insert_group(group.id, &group.name, group.external_id.as_deref());
            }
            Change::GroupUpdated { group_id, name, external_id, .. } => {
                let Some(entry) = self.groups.get_mut(group_id) else { return };
                let entry = Arc::make_mut(entry);
                if let Some(name) = name {
                    let key: Arc<str> = validate::group_name_key(name).into();
                    self.group_by_name.remove(&entry.name_key);
                    self.group_by_name.insert(key.clone(), *group_id);
                    entry.name_key = key;
                    entry.name = name.as_str().into();
                }
                if let Some(external_id) = external_id {
                    if let Some(old) = entry.external_id.take() {
                        self.group_by_external_id.remove(&old);
                    }
                    if let Some(new) = external_id {
                        let new: Arc<str> = new.as_str().into();
                        self.group_by_external_id.insert(new.clone(), *group_id);
                        entry.external_id = Some(new);
                    }
                }
            }
            Change::GroupDeleted { group_id } => {
                if let Some(entry) = self.groups.remove(group_id) {
                    self.group_by_name.remove(&entry.name_key);
                    self.all_sites_groups.remove(group_id);
                    if let Some(external_id) = &entry.external_id {
                        self.group_by_external_id.remove(external_id);
                    }
                }
            }
            Change::MemberAdded { group_id, user_id } => self.add_member(*group_id, *user_id),
            Change::MemberRemoved { group_id, user_id } => {
                if let Some(group) = self.groups.get_mut(group_id) {
                    Arc::make_mut(group).members.remove(user_id);
                }
                if let Some(user) = self.users.get_mut(user_id) {
                    Arc::make_mut(user).groups.remove(group_id);
                }
            }
            Change::GrantSet { grant } => self.set_grant(grant),
            Change::ReportCreated { report } => {
                self.insert_report(report.id, report.site_id, report.author, report.visibility);
            }
            Change::ReportUpdated { report_id, visibility, author, .. } => {
                let Some(report) = self.report(*report_id) else { return };
                self.reports.insert(Some(ReportEntry {
                    visibility: visibility.unwrap_or(report.visibility),
                    author: author.unwrap_or(report.author),
                    ..report
                }));
                if let Some(author) = author {
                    if let Some(user) = self.users.get_mut(&report.author) {
                        Arc::make_mut(user).reports.remove(report_id);
                    }
                    if let Some(user) = self.users.get_mut(author) {
                        Arc::make_mut(user).reports.insert(*report_id);
                    }
                }
            }
            Change::ReportDeleted { report_id } => {
                if let Some(Some(report)) = self.reports.remove(*report_id) {
                    if let Some(site) = self.sites.get_mut(&report.site) {
                        Arc::make_mut(site).reports.remove(report_id);
                    }
                    if let Some(user) = self.users.get_mut(&report.author) {
                        Arc::make_mut(user).reports.remove(report_id);
                    }
                }
            }
        }
    }

    fn insert_user(&mut self, id: UserId, email_key: &str, role: Role, created_at: Timestamp) {
        let email_key: Arc<str> = email_key.into();
        self.user_by_email.insert(email_key.clone(), id);
        if role == Role::Owner {
            self.owners.insert((created_at, id));
        }
        let entry = UserEntry {
            role,
            created_at,
            email_key,
            groups: SmallOrdSet::default(),
            grants: Grants::default(),
            reports: SmallOrdSet::default(),
        };
        self.users.insert(id, Arc::new(entry));
    }

    fn insert_site(&mut self, id: SiteId) {
        self.sites.insert(id, Arc::default());
        self.site_order.insert(id);
    }

    fn insert_group(&mut self, id: GroupId, name: &str, external_id: Option<&str>) {
        let name_key: Arc<str> = validate::group_name_key(name).into();
        let external_id: Option<Arc<str>> = external_id.map(Into::into);
        self.group_by_name.insert(name_key.clone(), id);
        if let Some(external_id) = &external_id {
            self.group_by_external_id.insert(external_id.clone(), id);
        }
        let entry = GroupEntry {
            name: name.into(),
            name_key,
            external_id,
            members: SmallOrdSet::default(),
            grants: Grants::default(),
        };
        self.groups.insert(id, Arc::new(entry));
    }

    fn add_member(&mut self, group_id: GroupId, user_id: UserId) {
        if let Some(group) = self.groups.get_mut(&group_id) {
            Arc::make_mut(group).members.insert(user_id);
        }
        if let Some(user) = self.users.get_mut(&user_id) {
            Arc::make_mut(user).groups.insert(group_id);
        }
    }

    fn set_grant(&mut self, grant: &Grant) {
        let grants = match grant.subject {
            Subject::User(id) => self.users.get_mut(&id).map(|u| &mut Arc::make_mut(u).grants),
            Subject::Group(id) => self.groups.get_mut(&id).map(|g| &mut Arc::make_mut(g).grants),
        };
        let Some(grants) = grants else { return };
        match grant.target {
            Target::AllSites => {
                grants.all_sites = grant.level;
                let holds = grant.level != Level::NoAccess;
                match (grant.subject, holds) {
                    (Subject::User(id), true) => {
                        self.all_sites_users.insert(id);
                    }
                    (Subject::User(id), false) => {
                        self.all_sites_users.remove(&id);
                    }
                    (Subject::Group(id), true) => {
                        self.all_sites_groups.insert(id);
                    }
                    (Subject::Group(id), false) => {
                        self.all_sites_groups.remove(&id);
                    }
                }
            }
            Target::Site(site_id) => {
                let removed = grant.level == Level::NoAccess;
                if removed {
                    grants.sites.remove(&site_id);
                } else {
                    grants.sites.insert(site_id, grant.level);
                }
                if let Some(site) = self.sites.get_mut(&site_id) {
                    let grantees = &mut Arc::make_mut(site).grantees;
                    if removed {
                        grantees.remove(&grant.subject);
                    } else {
                        grantees.insert(grant.subject);
                    }
                }
            }
        }
    }

    fn insert_report(&mut self, id: ReportId, site: SiteId, author: UserId, visibility: Visibility) {
        self.reports.insert(Some(ReportEntry { id, site, author, visibility }));
        if let Some(entry) = self.sites.get_mut(&site) {
            Arc::make_mut(entry).reports.insert(id);
        }
        if let Some(entry) = self.users.get_mut(&author) {
            Arc::make_mut(entry).reports.insert(id);
        }
    }
}
