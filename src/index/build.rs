//! Building the index from stored rows in one pass.
//!
//! Applying ten million stored grants one by one would find and copy-on-write
//! an entry per row. Instead the rows are gathered as they are read: one
//! plain entry per user, group and site, kept in a vector and found through
//! a map of positions. Once the last row is in, each entry's collections are
//! sorted once and the entry is inserted into the persistent maps once. The
//! rows are not kept: a cold start never holds the whole snapshot in memory.
//!
//! The result equals the index that applying the same rows as changes builds
//! (tested below; the model check compares a live index with a rebuilt one).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::flat::prefetch;
use super::{DecisionTable, Grants, GroupEntry, Index, ReportEntry, SiteEntry, SmallOrdMap, SmallOrdSet, UserEntry};
use crate::model::{
    Grant, Group, GroupId, Level, Report, ReportId, Revision, Role, Site, SiteId, Subject, Target, Timestamp, User,
    UserId, validate,
};
use crate::store::{Rows, Snapshot};

/// How many rows ahead [`Entries::load_ahead`] starts loading the entry a
/// row will push onto, and how many ahead (the entry cached by then) the
/// end of the list it pushes onto.
const ENTRIES_AHEAD: usize = 16;
const LIST_ENDS_AHEAD: usize = 8;
/// Rows whose entries are found in one pass, before the rows are added
/// (a snapshot read whole comes as one slice of ten million grants at XL).
const ROWS_AT_ONCE: usize = 4096;

/// Builds an index from stored rows, fed a chunk at a time in the order of
/// [`Rows`]: users, sites and groups before the rows that name them. A row
/// that names a missing user, site or group is skipped where applying it as a
/// change would skip it (storage's foreign keys leave none).
#[derive(Default)]
pub struct IndexBuilder {
    index: Index,
    users: Entries<UserId, GatheredUser>,
    groups: Entries<GroupId, GatheredGroup>,
    sites: Entries<SiteId, GatheredSite>,
    /// The holder of the last grant added. Grants come in key order, grouped
    /// by subject, so most find their holder here without a hash lookup.
    last_holder: Option<(Subject, usize)>,
}

struct GatheredUser {
    role: Role,
    created_at: Timestamp,
    email_key: Arc<str>,
    groups: Vec<GroupId>,
    grants: GatheredGrants,
    reports: Vec<ReportId>,
}

struct GatheredGroup {
    name: Arc<str>,
    name_key: Arc<str>,
    external_id: Option<Arc<str>>,
    members: Vec<UserId>,
    grants: GatheredGrants,
}

#[derive(Default)]
struct GatheredSite {
    grantees: Vec<Subject>,
    reports: Vec<ReportId>,
}

#[derive(Default)]
struct GatheredGrants {
    sites: Vec<(SiteId, Level)>,
    all_sites: Level,
}

impl GatheredGrants {
    fn add(&mut self, target: Target, level: Level) {
        match target {
            Target::AllSites => self.all_sites = level,
            Target::Site(site) => self.sites.push((site, level)),
        }
    }

    fn finish(self) -> Grants {
        Grants { sites: SmallOrdMap::from_sorted(sorted(self.sites)), all_sites: self.all_sites }
    }
}

/// Entries in arrival order, found by id.
struct Entries<K, V> {
    positions: FxHashMap<K, usize>,
    entries: Vec<(K, V)>,
}

impl<K, V> Default for Entries<K, V> {
    fn default() -> Self {
        Entries { positions: FxHashMap::default(), entries: Vec::new() }
    }
}

impl<K: Copy + Eq + std::hash::Hash, V> Entries<K, V> {
    fn reserve(&mut self, additional: usize) {
        self.positions.reserve(additional);
        self.entries.reserve(additional);
    }

    /// Adds the entry of `id`, replacing an earlier one.
    fn insert(&mut self, id: K, entry: V) {
        match self.positions.get(&id) {
            Some(&at) => self.entries[at] = (id, entry),
            None => {
                self.positions.insert(id, self.entries.len());
                self.entries.push((id, entry));
            }
        }
    }

    fn position(&self, id: &K) -> Option<usize> {
        self.positions.get(id).copied()
    }

    fn get_mut(&mut self, id: &K) -> Option<&mut V> {
        let at = self.position(id)?;
        Some(&mut self.entries[at].1)
    }

    /// For row `at` of a chunk whose rows push onto the `list` of the
    /// entries at `places`: starts loading the entry of a row a few ahead,
    /// and the end of the list of a row nearer. On an index larger than
    /// the caches each push would otherwise wait for memory twice.
    #[inline]
    fn load_ahead<T>(&self, places: &[Option<usize>], at: usize, list: impl Fn(&V) -> &Vec<T>) {
        if let Some(&Some(ahead)) = places.get(at + ENTRIES_AHEAD) {
            prefetch(list(&self.entries[ahead].1));
        }
        if let Some(&Some(ahead)) = places.get(at + LIST_ENDS_AHEAD) {
            let list = list(&self.entries[ahead].1);
            prefetch(list.as_ptr().wrapping_add(list.len()));
        }
    }
}

/// `items` sorted and without duplicates (storage has none; sorting is near
/// free on rows that arrive in key order).
fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort_unstable();
    items.dedup();
    items.shrink_to_fit();
    items
}

fn sorted_set<T: Ord + Copy>(items: Vec<T>) -> SmallOrdSet<T> {
    SmallOrdSet::from_sorted(sorted(items))
}

impl IndexBuilder {
    /// Adds a chunk of rows.
    pub fn add(&mut self, rows: &Rows) {
        match rows {
            Rows::Users(users) => self.users(users),
            Rows::Sites(sites) => self.sites(sites),
            Rows::Groups(groups) => self.groups(groups),
            Rows::Memberships(memberships) => self.memberships(memberships),
            Rows::Grants(grants) => self.grants(grants),
            Rows::Reports(reports) => self.reports(reports),
        }
    }

    fn users(&mut self, users: &[User]) {
        self.users.reserve(users.len());
        for user in users {
            let email_key: Arc<str> = validate::email_key(&user.email).into();
            self.index.user_by_email.insert(email_key.clone(), user.id);
            if user.role == Role::Owner {
                self.index.owners.insert((user.created_at, user.id));
            }
            let gathered = GatheredUser {
                role: user.role,
                created_at: user.created_at,
                email_key,
                groups: Vec::new(),
                grants: GatheredGrants::default(),
                reports: Vec::new(),
            };
            self.users.insert(user.id, gathered);
        }
    }

    fn sites(&mut self, sites: &[Site]) {
        self.sites.reserve(sites.len());
        for site in sites {
            self.index.site_order.insert(site.id);
            self.sites.insert(site.id, GatheredSite::default());
        }
    }

    fn groups(&mut self, groups: &[Group]) {
        self.groups.reserve(groups.len());
        for group in groups {
            let name_key: Arc<str> = validate::group_name_key(&group.name).into();
            let external_id: Option<Arc<str>> = group.external_id.as_deref().map(Into::into);
            self.index.group_by_name.insert(name_key.clone(), group.id);
            if let Some(external_id) = &external_id {
                self.index.group_by_external_id.insert(external_id.clone(), group.id);
            }
            let gathered = GatheredGroup {
                name: group.name.as_str().into(),
                name_key,
                external_id,
                members: Vec::new(),
                grants: GatheredGrants::default(),
            };
            self.groups.insert(group.id, gathered);
        }
    }

    /// Memberships come grouped by group, each naming a user at random: the
    /// users are found first and loaded ahead, as the grants' sites are.
    fn memberships(&mut self, memberships: &[(GroupId, UserId)]) {
        for memberships in memberships.chunks(ROWS_AT_ONCE) {
            let users: Vec<Option<usize>> = memberships.iter().map(|(_, user)| self.users.position(user)).collect();
            for (at, &(group_id, user_id)) in memberships.iter().enumerate() {
                self.users.load_ahead(&users, at, |user| &user.groups);
                if let Some(group) = self.groups.get_mut(&group_id) {
                    group.members.push(user_id);
                }
                if let Some(user) = users[at] {
                    self.users.entries[user].1.groups.push(group_id);
                }
            }
        }
    }

    /// Grants come grouped by holder, so a holder's list grows in cache; but
    /// each names a site at random, and at XL pushing onto the site's
    /// grantee list waited for memory three times (the site's place, its
    /// entry, the list's end). So the chunk's sites are found first, in a
    /// pass whose lookups overlap, and each site's entry and list end start
    /// loading a few grants ahead of their push (BENCHMARKS.md §H).
    fn grants(&mut self, grants: &[Grant]) {
        for grants in grants.chunks(ROWS_AT_ONCE) {
            self.grants_at_once(grants);
        }
    }

    /// [`IndexBuilder::grants`] for at most [`ROWS_AT_ONCE`] grants.
    fn grants_at_once(&mut self, grants: &[Grant]) {
        let sites: Vec<Option<usize>> = grants
            .iter()
            .map(|grant| match grant.target {
                Target::Site(site) => self.sites.position(&site),
                Target::AllSites => None,
            })
            .collect();
        for (at, grant) in grants.iter().enumerate() {
            self.sites.load_ahead(&sites, at, |site| &site.grantees);
            if grant.level == Level::NoAccess {
                continue;
            }
            let Some(holder) = self.holder(grant.subject) else { continue };
            let holder = match grant.subject {
                Subject::User(_) => &mut self.users.entries[holder].1.grants,
                Subject::Group(_) => &mut self.groups.entries[holder].1.grants,
            };
            holder.add(grant.target, grant.level);
            if let Some(site) = sites[at] {
                self.sites.entries[site].1.grantees.push(grant.subject);
            }
        }
    }

    /// The position of `subject`'s entry, if it exists.
    fn holder(&mut self, subject: Subject) -> Option<usize> {
        if let Some((last, at)) = self.last_holder
            && last == subject
        {
            return Some(at);
        }
        let at = match subject {
            Subject::User(id) => self.users.position(&id),
            Subject::Group(id) => self.groups.position(&id),
        }?;
        self.last_holder = Some((subject, at));
        Some(at)
    }

    fn reports(&mut self, reports: &[Report]) {
        for report in reports {
            if let Some(site) = self.sites.get_mut(&report.site_id) {
                site.reports.push(report.id);
            }
            if let Some(author) = self.users.get_mut(&report.author) {
                author.reports.push(report.id);
            }
            let entry = ReportEntry {
                id: report.id,
                site: report.site_id,
                author: report.author,
                visibility: report.visibility,
            };
            self.index.reports.insert(Some(entry));
        }
    }

    /// The index of every row added, at `revision`.
    pub fn finish(self, revision: Revision) -> Index {
        let IndexBuilder { mut index, users, groups, sites, last_holder: _ } = self;
        // Done with finding entries by id: free that memory before the decision table is built.
        drop((users.positions, groups.positions, sites.positions));
        index.revision = revision;
        for (id, user) in users.entries {
            if user.grants.all_sites != Level::NoAccess {
                index.all_sites_users.insert(id);
            }
            let entry = UserEntry {
                role: user.role,
                created_at: user.created_at,
                email_key: user.email_key,
                groups: sorted_set(user.groups),
                grants: user.grants.finish(),
                reports: sorted_set(user.reports),
            };
            index.users.insert(id, Arc::new(entry));
        }
        for (id, group) in groups.entries {
            if group.grants.all_sites != Level::NoAccess {
                index.all_sites_groups.insert(id);
            }
            let entry = GroupEntry {
                name: group.name,
                name_key: group.name_key,
                external_id: group.external_id,
                members: sorted_set(group.members),
                grants: group.grants.finish(),
            };
            index.groups.insert(id, Arc::new(entry));
        }
        for (id, site) in sites.entries {
            let entry = SiteEntry { grantees: sorted_set(site.grantees), reports: sorted_set(site.reports) };
            index.sites.insert(id, Arc::new(entry));
        }
        index.table = DecisionTable::build(&index);
        index
    }
}

impl Index {
    /// Builds the index from a whole snapshot (see [`IndexBuilder`]).
    pub fn from_snapshot(snapshot: &Snapshot) -> Index {
        let mut builder = IndexBuilder::default();
        builder.users(&snapshot.users);
        builder.sites(&snapshot.sites);
        builder.groups(&snapshot.groups);
        builder.memberships(&snapshot.memberships);
        builder.grants(&snapshot.grants);
        builder.reports(&snapshot.reports);
        builder.finish(snapshot.revision)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::dataset::{Dataset, Shape};
    use crate::model::Change;

    /// The rows of `snapshot` as the changes that would have created them.
    pub(in crate::index) fn as_changes(snapshot: &Snapshot) -> Vec<Change> {
        let users = snapshot.users.iter().map(|user| Change::UserCreated { user: user.clone(), password: None });
        let sites = snapshot.sites.iter().map(|site| Change::SiteCreated { site: site.clone() });
        let groups = snapshot.groups.iter().map(|group| Change::GroupCreated { group: group.clone() });
        let members = snapshot.memberships.iter().map(|&(group_id, user_id)| Change::MemberAdded { group_id, user_id });
        let grants = snapshot.grants.iter().map(|grant| Change::GrantSet { grant: *grant });
        let reports = snapshot.reports.iter().map(|report| Change::ReportCreated { report: report.clone() });
        users.chain(sites).chain(groups).chain(members).chain(grants).chain(reports).collect()
    }

    /// A dataset whose agency users and big groups hold more grants than a
    /// vector keeps, so both shapes of every collection are built.
    #[test]
    fn building_from_rows_equals_applying_them_as_changes() {
        let dataset = Dataset::generate(Shape::with_users(3_000), 7);
        let built = Index::from_snapshot(&dataset.snapshot);
        let mut applied = Index::default();
        applied.apply_batch(dataset.snapshot.revision, &as_changes(&dataset.snapshot));
        assert!(built == applied, "the index built from rows differs from the one built by changes");

        let agency = built.users.get(&dataset.agency_users[0]).expect("agency user");
        assert!(matches!(agency.grants.sites, SmallOrdMap::Many(_)), "the agency user's grants should be a B-tree");
        assert!(built.users.values().any(|user| matches!(user.grants.sites, SmallOrdMap::Few(_))));
    }

    /// Rows in any order within their table, in chunks of any size, as a
    /// store streams them, build the same index as the whole snapshot.
    #[test]
    fn building_from_scrambled_chunks_equals_building_from_the_snapshot() {
        /// Odd positions backwards, then even ones: no subject's grants stay together.
        fn scrambled<T: Clone>(rows: &[T]) -> Vec<T> {
            let odd = rows.iter().skip(1).step_by(2).rev();
            odd.chain(rows.iter().step_by(2)).cloned().collect()
        }
        fn chunks<T: Clone>(rows: &[T], wrap: fn(Vec<T>) -> Rows) -> Vec<Rows> {
            scrambled(rows).chunks(97).map(|chunk| wrap(chunk.to_vec())).collect()
        }
        let dataset = Dataset::generate(Shape::with_users(3_000), 11);
        let snapshot = &dataset.snapshot;
        let mut builder = IndexBuilder::default();
        let all = [
            chunks(&snapshot.users, Rows::Users),
            chunks(&snapshot.sites, Rows::Sites),
            chunks(&snapshot.groups, Rows::Groups),
            chunks(&snapshot.memberships, Rows::Memberships),
            chunks(&snapshot.grants, Rows::Grants),
            chunks(&snapshot.reports, Rows::Reports),
        ];
        for rows in all.iter().flatten() {
            builder.add(rows);
        }
        let streamed = builder.finish(snapshot.revision);
        assert!(streamed == Index::from_snapshot(snapshot), "the streamed index differs from the whole one");
        assert_eq!(streamed.user_count(), snapshot.users.len());
    }
}
