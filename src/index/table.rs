//! The decision table: what `site_level` needs, laid out so that a decision
//! costs two cache misses in a row instead of seven (BENCHMARKS.md §C).
//!
//! The index's maps stay the truth, ordered for paging and explanations; this
//! table is derived from them, kept in step by [`Index::apply`] and rebuilt
//! whole by [`DecisionTable::build`]. It gives users, sites and groups dense
//! `u32` handles, so that a grant is one word in a flat table keyed by
//! (subject handle, site handle):
//!
//! 1. the user's slot (handle, owner, all-sites level, group handles) and the
//!    site's handle are found at once, each in one flat-table probe;
//! 2. then the user's grant on the site, and their groups' grants, each one
//!    more probe; the group grants are few enough to stay in the caches.
//!
//! Handles are never reused while the table lives. When a kind runs out, the
//! table is rebuilt from the maps, which numbers the live entries afresh.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::flat::{FlatTable, Slot, hash_uuid, mix};
use super::{Grants, Index, UserEntry};
use crate::model::{GroupId, Level, Role, SiteId, Subject, Target, UserId};

/// Site handles share a word with a subject handle and a level, hence 29 bits.
const SITE_BITS: u32 = 29;

/// A build inserts users and their grants in batches of this many grants
/// (see [`FlatTable::extend`]).
const BUILD_BATCH: usize = 1 << 20;

/// The site handle that stands for "all sites" in a group's grants.
const ALL_SITES: u32 = 0;

#[derive(Clone, Debug, Default)]
pub(super) struct DecisionTable {
    users: FlatTable<UserSlot>,
    sites: FlatTable<HandleSlot<SiteId>>,
    groups: FlatTable<HandleSlot<GroupId>>,
    /// Users' site grants.
    user_levels: FlatTable<LevelSlot>,
    /// Groups' site and all-sites grants: ~2 % of the grants, so mostly cached.
    group_levels: FlatTable<LevelSlot>,
    next: Handles,
    limits: Handles,
}

/// A handle per kind: the next to give out, or the first not to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Handles {
    pub(super) user: u32,
    pub(super) site: u32,
    pub(super) group: u32,
}

impl Handles {
    /// Handles start at 1: 0 marks an empty slot (and "all sites").
    const FIRST: Handles = Handles { user: 1, site: 1, group: 1 };
    const LIMITS: Handles = Handles { user: u32::MAX, site: 1 << SITE_BITS, group: u32::MAX };
}

impl Default for Handles {
    fn default() -> Self {
        Handles::FIRST
    }
}

/// A handle kind ran out: the caller rebuilds the table from the maps.
#[derive(Debug)]
pub(super) struct OutOfHandles;

/// What a decision needs to know of a user, in one slot.
#[derive(Clone, Debug)]
struct UserSlot {
    id: UserId,
    /// 0 in an empty slot.
    handle: u32,
    owner: bool,
    /// The user's own all-sites level (`Manage` for owners).
    wildcard: Level,
    groups: GroupHandles,
}

const _: () = assert!(std::mem::size_of::<UserSlot>() == 40);

/// A user's groups: most users are in at most two, kept in the slot (which
/// then fits in 40 bytes).
#[derive(Clone, Debug)]
enum GroupHandles {
    Inline { len: u8, handles: [u32; 2] },
    Spilled(Arc<Vec<u32>>),
}

impl GroupHandles {
    const NONE: GroupHandles = GroupHandles::Inline { len: 0, handles: [0; 2] };

    fn from_vec(handles: Vec<u32>) -> Self {
        match *handles.as_slice() {
            [] => Self::NONE,
            [a] => GroupHandles::Inline { len: 1, handles: [a, 0] },
            [a, b] => GroupHandles::Inline { len: 2, handles: [a, b] },
            _ => GroupHandles::Spilled(Arc::new(handles)),
        }
    }

    fn as_slice(&self) -> &[u32] {
        match self {
            GroupHandles::Inline { len, handles } => &handles[..usize::from(*len)],
            GroupHandles::Spilled(handles) => handles,
        }
    }
}

impl Slot for UserSlot {
    type Key = UserId;
    const EMPTY: Self = UserSlot {
        id: UserId(uuid::Uuid::nil()),
        handle: 0,
        owner: false,
        wildcard: Level::NoAccess,
        groups: GroupHandles::NONE,
    };
    fn key(&self) -> Option<UserId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: UserId) -> u64 {
        hash_uuid(key.0)
    }
}

/// An id and its handle.
#[derive(Clone, Copy, Debug)]
struct HandleSlot<Id> {
    id: Id,
    /// 0 in an empty slot.
    handle: u32,
}

impl Slot for HandleSlot<SiteId> {
    type Key = SiteId;
    const EMPTY: Self = HandleSlot { id: SiteId(uuid::Uuid::nil()), handle: 0 };
    fn key(&self) -> Option<SiteId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: SiteId) -> u64 {
        hash_uuid(key.0)
    }
}

impl Slot for HandleSlot<GroupId> {
    type Key = GroupId;
    const EMPTY: Self = HandleSlot { id: GroupId(uuid::Uuid::nil()), handle: 0 };
    fn key(&self) -> Option<GroupId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: GroupId) -> u64 {
        hash_uuid(key.0)
    }
}

/// One grant in one word: subject handle (32 bits), site handle (29 bits),
/// level (3 bits). A grant is never `NoAccess`, so 0 is the empty slot.
#[derive(Clone, Copy, Debug)]
struct LevelSlot(u64);

impl LevelSlot {
    fn new(subject: u32, site: u32, level: Level) -> Self {
        LevelSlot(pair(subject, site) << 3 | level as u64)
    }

    fn level(self) -> Level {
        match self.0 & 0b111 {
            1 => Level::View,
            2 => Level::Edit,
            3 => Level::EditPublish,
            4 => Level::Manage,
            _ => Level::NoAccess,
        }
    }
}

impl Slot for LevelSlot {
    type Key = u64;
    const EMPTY: Self = LevelSlot(0);
    fn key(&self) -> Option<u64> {
        (self.0 != 0).then_some(self.0 >> 3)
    }
    fn hash(key: u64) -> u64 {
        mix(key)
    }
}

fn pair(subject: u32, site: u32) -> u64 {
    u64::from(subject) << SITE_BITS | u64::from(site)
}

impl DecisionTable {
    /// The effective level of `user` on `site`, as DESIGN §1 defines it.
    #[inline]
    pub(super) fn site_level(&self, user: UserId, site: SiteId) -> Level {
        // Both lookups depend on the request alone, so their misses overlap.
        let (Some(user), Some(site)) = (self.users.get(user), self.sites.get(site)) else { return Level::NoAccess };
        let mut level = user.wildcard;
        if level == Level::Manage {
            return level;
        }
        if let Some(grant) = self.user_levels.get(pair(user.handle, site.handle)) {
            level = level.max(grant.level());
        }
        for &group in user.groups.as_slice() {
            for target in [site.handle, ALL_SITES] {
                if let Some(grant) = self.group_levels.get(pair(group, target)) {
                    level = level.max(grant.level());
                }
            }
        }
        level
    }

    pub(super) fn is_owner(&self, user: UserId) -> bool {
        self.users.get(user).is_some_and(|slot| slot.owner)
    }

    /// The table of `index`'s maps, with handles numbered afresh.
    pub(super) fn build(index: &Index) -> DecisionTable {
        let site_grants = |grants: &Grants| grants.sites.len();
        let mut table = DecisionTable {
            users: FlatTable::with_capacity(index.users.len()),
            sites: FlatTable::with_capacity(index.sites.len()),
            groups: FlatTable::with_capacity(index.groups.len()),
            user_levels: FlatTable::with_capacity(index.users.values().map(|u| site_grants(&u.grants)).sum()),
            group_levels: FlatTable::with_capacity(index.groups.values().map(|g| site_grants(&g.grants) + 1).sum()),
            next: Handles::FIRST,
            limits: Handles::LIMITS,
        };
        // Fresh handles are dense, so only a model with 2^29 sites (far more
        // than memory holds) could run out here; the excess would be denied.
        for site in index.sites.keys() {
            let _ = table.add_site(*site);
        }
        for (id, group) in index.groups.iter() {
            if table.add_group(*id).is_ok() {
                table.set_grants(Subject::Group(*id), &group.grants);
            }
        }
        let (mut users, mut grants) = (Vec::with_capacity(BUILD_BATCH), Vec::with_capacity(BUILD_BATCH));
        for (id, user) in index.users.iter() {
            let Ok(handle) = take(&mut table.next.user, table.limits.user) else { continue };
            users.push(table.user_slot(*id, handle, user));
            for (site, level) in user.grants.sites.iter() {
                if let Some(site) = table.sites.get(site) {
                    grants.push(LevelSlot::new(handle, site.handle, level));
                }
            }
            if grants.len() >= BUILD_BATCH {
                table.users.extend(&mut users);
                table.user_levels.extend(&mut grants);
            }
        }
        table.users.extend(&mut users);
        table.user_levels.extend(&mut grants);
        table
    }

    /// An empty table that runs out of handles at `limits`: tests reach the rebuild with it.
    #[cfg(test)]
    pub(super) fn with_limits(limits: Handles) -> DecisionTable {
        DecisionTable { limits, ..DecisionTable::default() }
    }

    pub(super) fn add_site(&mut self, id: SiteId) -> Result<(), OutOfHandles> {
        let handle = take(&mut self.next.site, self.limits.site)?;
        self.sites.insert(HandleSlot { id, handle });
        Ok(())
    }

    /// Forgets a site; its grants went before it.
    pub(super) fn remove_site(&mut self, id: SiteId) {
        self.sites.remove(id);
    }

    pub(super) fn add_group(&mut self, id: GroupId) -> Result<(), OutOfHandles> {
        let handle = take(&mut self.next.group, self.limits.group)?;
        self.groups.insert(HandleSlot { id, handle });
        Ok(())
    }

    /// Forgets a group; its grants and memberships went before it.
    pub(super) fn remove_group(&mut self, id: GroupId) {
        self.groups.remove(id);
    }

    /// Writes the slot of user `id` from its index entry: role, all-sites
    /// level, groups. A new user gets a handle.
    pub(super) fn set_user(&mut self, id: UserId, entry: &UserEntry) -> Result<(), OutOfHandles> {
        let handle = match self.users.get(id) {
            Some(slot) => slot.handle,
            None => take(&mut self.next.user, self.limits.user)?,
        };
        self.users.insert(self.user_slot(id, handle, entry));
        Ok(())
    }

    fn user_slot(&self, id: UserId, handle: u32, entry: &UserEntry) -> UserSlot {
        let owner = entry.role == Role::Owner;
        let groups = entry.groups.iter().filter_map(|group| self.groups.get(group).map(|slot| slot.handle)).collect();
        UserSlot {
            id,
            handle,
            owner,
            wildcard: if owner { Level::Manage } else { entry.grants.all_sites },
            groups: GroupHandles::from_vec(groups),
        }
    }

    pub(super) fn remove_user(&mut self, id: UserId) {
        self.users.remove(id);
    }

    /// Records one grant of a group, or one site grant of a user (a user's
    /// all-sites level lives in their slot: see [`DecisionTable::set_user`]).
    pub(super) fn set_grant(&mut self, subject: Subject, target: Target, level: Level) {
        if let (Subject::User(_), Target::AllSites) = (subject, target) {
            return;
        }
        let site = match target {
            Target::AllSites => ALL_SITES,
            Target::Site(site) => match self.sites.get(site) {
                Some(slot) => slot.handle,
                None => return,
            },
        };
        let (table, holder) = match subject {
            Subject::User(user) => (&mut self.user_levels, self.users.get(user).map(|slot| slot.handle)),
            Subject::Group(group) => (&mut self.group_levels, self.groups.get(group).map(|slot| slot.handle)),
        };
        let Some(holder) = holder else { return };
        if level == Level::NoAccess {
            table.remove(pair(holder, site));
        } else {
            table.insert(LevelSlot::new(holder, site, level));
        }
    }

    fn set_grants(&mut self, subject: Subject, grants: &Grants) {
        self.set_grant(subject, Target::AllSites, grants.all_sites);
        for (site, level) in grants.sites.iter() {
            self.set_grant(subject, Target::Site(site), level);
        }
    }

    /// What the table says, in ids rather than handles: two tables that say
    /// the same are equal, whatever handles their history gave out.
    fn facts(&self) -> Facts {
        let sites: HashMap<u32, SiteId> = self.sites.iter().map(|slot| (slot.handle, slot.id)).collect();
        let groups: HashMap<u32, GroupId> = self.groups.iter().map(|slot| (slot.handle, slot.id)).collect();
        let site_name = |handle: u32| if handle == ALL_SITES { None } else { sites.get(&handle).copied() };
        let mut users = BTreeMap::new();
        let mut user_by_handle = HashMap::new();
        for slot in self.users.iter() {
            let group_ids = slot.groups.as_slice().iter().map(|g| groups.get(g).copied()).collect();
            users.insert(slot.id, (slot.owner, slot.wildcard, group_ids));
            user_by_handle.insert(slot.handle, slot.id);
        }
        let grants = |table: &FlatTable<LevelSlot>, subject: &dyn Fn(u32) -> Option<Subject>| {
            table
                .iter()
                .map(|slot| {
                    let key = slot.0 >> 3;
                    let (holder, site) = ((key >> SITE_BITS) as u32, (key & ((1 << SITE_BITS) - 1)) as u32);
                    (subject(holder), site_name(site), slot.level())
                })
                .collect::<BTreeSet<_>>()
        };
        Facts {
            users,
            sites: sites.values().copied().collect(),
            groups: groups.values().copied().collect(),
            user_grants: grants(&self.user_levels, &|h| user_by_handle.get(&h).copied().map(Subject::User)),
            group_grants: grants(&self.group_levels, &|h| groups.get(&h).copied().map(Subject::Group)),
        }
    }
}

impl PartialEq for DecisionTable {
    fn eq(&self, other: &Self) -> bool {
        self.facts() == other.facts()
    }
}

#[derive(Debug, PartialEq)]
struct Facts {
    users: BTreeMap<UserId, (bool, Level, BTreeSet<Option<GroupId>>)>,
    sites: BTreeSet<SiteId>,
    groups: BTreeSet<GroupId>,
    user_grants: BTreeSet<(Option<Subject>, Option<SiteId>, Level)>,
    group_grants: BTreeSet<(Option<Subject>, Option<SiteId>, Level)>,
}

/// The next handle of a kind.
fn take(next: &mut u32, limit: u32) -> Result<u32, OutOfHandles> {
    if *next >= limit {
        return Err(OutOfHandles);
    }
    *next += 1;
    Ok(*next - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Shape};
    use crate::index::build::tests::as_changes;
    use crate::model::{Change, Grant, Role, UserPatch};

    /// Every user against every tenth site, and every granted pair: the
    /// table's answer is the maps' answer.
    fn assert_table_answers_as_the_maps_do(index: &Index, dataset: &Dataset) {
        let snapshot = &dataset.snapshot;
        let mut pairs: Vec<(UserId, SiteId)> = snapshot
            .users
            .iter()
            .flat_map(|user| snapshot.sites.iter().step_by(10).map(move |site| (user.id, site.id)))
            .collect();
        for grant in &snapshot.grants {
            if let (Target::Site(site), Subject::User(user)) = (grant.target, grant.subject) {
                pairs.push((user, site));
            }
        }
        for (user, _) in snapshot.memberships.iter().map(|&(_, user)| (user, ())) {
            pairs.extend(snapshot.sites.iter().take(50).map(|site| (user, site.id)));
        }
        let unknown = SiteId(uuid::Uuid::new_v4());
        pairs.push((snapshot.users[0].id, unknown));
        pairs.push((UserId(uuid::Uuid::new_v4()), snapshot.sites[0].id));
        for (user, site) in pairs {
            assert_eq!(index.site_level(user, site), index.site_level_from_maps(user, site), "{user} on {site}");
            assert_eq!(index.is_owner(user), index.users.get(&user).is_some_and(|u| u.role == Role::Owner));
        }
    }

    /// Revokes a third of the grants and a fifth of the memberships, makes
    /// owners of some users and gives some users and groups all sites.
    fn changes_after_import(dataset: &Dataset) -> Vec<Change> {
        let snapshot = &dataset.snapshot;
        let revoke = snapshot
            .grants
            .iter()
            .step_by(3)
            .map(|grant| Change::GrantSet { grant: Grant { level: Level::NoAccess, ..*grant } });
        let leave = snapshot
            .memberships
            .iter()
            .step_by(5)
            .map(|&(group_id, user_id)| Change::MemberRemoved { group_id, user_id });
        let promote = snapshot.users.iter().step_by(97).map(|user| Change::UserUpdated {
            user_id: user.id,
            patch: UserPatch { role: Some(Role::Owner), ..UserPatch::default() },
            updated_at: user.created_at,
        });
        let everything =
            |subject| Change::GrantSet { grant: Grant { subject, target: Target::AllSites, level: Level::Edit } };
        let wildcards = (snapshot.users.iter().step_by(89).map(|user| everything(Subject::User(user.id))))
            .chain(snapshot.groups.iter().step_by(7).map(|group| everything(Subject::Group(group.id))));
        revoke.chain(leave).chain(promote).chain(wildcards).collect()
    }

    #[test]
    fn the_table_answers_as_the_maps_do_after_a_build_and_after_changes() {
        let dataset = Dataset::generate(Shape::with_users(2_000), 5);
        let mut index = Index::from_snapshot(&dataset.snapshot);
        assert_table_answers_as_the_maps_do(&index, &dataset);

        index.apply_batch(1, &changes_after_import(&dataset));
        assert_table_answers_as_the_maps_do(&index, &dataset);
        let rebuilt = DecisionTable::build(&index);
        assert_eq!(index.table.facts(), rebuilt.facts(), "increments and a rebuild disagree");
    }

    /// A table that runs out of handles mid-batch is rebuilt from the maps
    /// and goes on answering as they do.
    #[test]
    fn running_out_of_handles_rebuilds_the_table() {
        let dataset = Dataset::generate(Shape::with_users(2_000), 9);
        let limits = Handles { user: 300, site: 40, group: 5 };
        let mut index = Index { table: DecisionTable::with_limits(limits), ..Index::default() };
        index.apply_batch(0, &as_changes(&dataset.snapshot));
        assert_ne!(index.table.limits, limits, "the table never ran out");
        assert!(index == Index::from_snapshot(&dataset.snapshot));
        assert_table_answers_as_the_maps_do(&index, &dataset);
    }

    #[test]
    fn facts_tell_tables_apart() {
        let dataset = Dataset::generate(Shape::with_users(500), 3);
        let index = Index::from_snapshot(&dataset.snapshot);
        let mut changed = index.clone();
        let grant = dataset.snapshot.grants.last().copied().expect("a grant");
        changed.apply_batch(1, &[Change::GrantSet { grant: Grant { level: Level::NoAccess, ..grant } }]);
        assert!(index.table != changed.table);
        assert!(index.table == DecisionTable::build(&index));
    }
}
