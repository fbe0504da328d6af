//! Building the index from storage in one pass.
//!
//! Applying ten million stored grants one by one would find and copy-on-write
//! an entry per row. Instead every entry is gathered whole in plain hash maps,
//! its collections sorted once, and each entry is inserted into the persistent
//! maps once. The result equals the index that applying the same rows as
//! changes builds (the model check compares a live index with a rebuilt one).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::{Grants, GroupEntry, Index, ReportEntry, SiteEntry, SmallOrdMap, SmallOrdSet, UserEntry};
use crate::model::{GroupId, Level, ReportId, Role, SiteId, Subject, Target, UserId, validate};
use crate::store::Snapshot;

/// The collections of an entry while it is gathered, sorted when done.
#[derive(Default)]
struct Gathered {
    sites: Vec<(SiteId, Level)>,
    all_sites: Level,
    groups: Vec<GroupId>,
    members: Vec<UserId>,
    reports: Vec<ReportId>,
    grantees: Vec<Subject>,
}

impl Gathered {
    fn grants(&mut self) -> Grants {
        Grants { sites: SmallOrdMap::from_sorted(sorted(&mut self.sites)), all_sites: self.all_sites }
    }
}

/// Takes `items` sorted and without duplicates (storage has none; sorting
/// is near free on rows that arrive in key order).
fn sorted<T: Ord>(items: &mut Vec<T>) -> Vec<T> {
    let mut items = std::mem::take(items);
    items.sort_unstable();
    items.dedup();
    items.shrink_to_fit();
    items
}

fn sorted_set<T: Ord + Copy>(items: &mut Vec<T>) -> SmallOrdSet<T> {
    SmallOrdSet::from_sorted(sorted(items))
}

impl Index {
    /// Builds the index from a storage snapshot. A row that names a missing
    /// user, site or group is skipped where applying it as a change would
    /// skip it (storage's foreign keys leave none).
    pub fn from_snapshot(snapshot: &Snapshot) -> Index {
        let mut index = Index { revision: snapshot.revision, ..Index::default() };
        let mut users: FxHashMap<UserId, Gathered> =
            snapshot.users.iter().map(|u| (u.id, Gathered::default())).collect();
        let mut groups: FxHashMap<GroupId, Gathered> =
            snapshot.groups.iter().map(|g| (g.id, Gathered::default())).collect();
        let mut sites: FxHashMap<SiteId, Gathered> =
            snapshot.sites.iter().map(|s| (s.id, Gathered::default())).collect();

        for &(group_id, user_id) in &snapshot.memberships {
            if let Some(group) = groups.get_mut(&group_id) {
                group.members.push(user_id);
            }
            if let Some(user) = users.get_mut(&user_id) {
                user.groups.push(group_id);
            }
        }
        for grant in &snapshot.grants {
            let holder = match grant.subject {
                Subject::User(id) => users.get_mut(&id),
                Subject::Group(id) => groups.get_mut(&id),
            };
            let Some(holder) = holder else { continue };
            if grant.level == Level::NoAccess {
                continue;
            }
            match grant.target {
                Target::AllSites => holder.all_sites = grant.level,
                Target::Site(site_id) => {
                    holder.sites.push((site_id, grant.level));
                    if let Some(site) = sites.get_mut(&site_id) {
                        site.grantees.push(grant.subject);
                    }
                }
            }
        }
        for report in &snapshot.reports {
            if let Some(site) = sites.get_mut(&report.site_id) {
                site.reports.push(report.id);
            }
            if let Some(author) = users.get_mut(&report.author) {
                author.reports.push(report.id);
            }
            let entry = ReportEntry { site: report.site_id, author: report.author, visibility: report.visibility };
            index.reports.insert(report.id, entry);
        }

        for user in &snapshot.users {
            let Some(mut gathered) = users.remove(&user.id) else { continue };
            let email_key: Arc<str> = validate::email_key(&user.email).into();
            index.user_by_email.insert(email_key.clone(), user.id);
            if user.role == Role::Owner {
                index.owners.insert((user.created_at, user.id));
            }
            if gathered.all_sites != Level::NoAccess {
                index.all_sites_users.insert(user.id);
            }
            let entry = UserEntry {
                role: user.role,
                created_at: user.created_at,
                email_key,
                groups: sorted_set(&mut gathered.groups),
                grants: gathered.grants(),
                reports: sorted_set(&mut gathered.reports),
            };
            index.users.insert(user.id, Arc::new(entry));
        }
        for group in &snapshot.groups {
            let Some(mut gathered) = groups.remove(&group.id) else { continue };
            let name_key: Arc<str> = validate::group_name_key(&group.name).into();
            let external_id: Option<Arc<str>> = group.external_id.as_deref().map(Into::into);
            index.group_by_name.insert(name_key.clone(), group.id);
            if let Some(external_id) = &external_id {
                index.group_by_external_id.insert(external_id.clone(), group.id);
            }
            if gathered.all_sites != Level::NoAccess {
                index.all_sites_groups.insert(group.id);
            }
            let entry = GroupEntry {
                name: group.name.as_str().into(),
                name_key,
                external_id,
                members: sorted_set(&mut gathered.members),
                grants: gathered.grants(),
            };
            index.groups.insert(group.id, Arc::new(entry));
        }
        for site in &snapshot.sites {
            let Some(mut gathered) = sites.remove(&site.id) else { continue };
            index.site_order.insert(site.id);
            let entry =
                SiteEntry { grantees: sorted_set(&mut gathered.grantees), reports: sorted_set(&mut gathered.reports) };
            index.sites.insert(site.id, Arc::new(entry));
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Shape};
    use crate::model::Change;

    /// The rows of `snapshot` as the changes that would have created them.
    fn as_changes(snapshot: &Snapshot) -> Vec<Change> {
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
}
