//! The decision table: what `site_level` needs, laid out so that a decision
//! costs one cache miss, then one more, instead of seven (BENCHMARKS.md §C).
//!
//! The index's maps stay the truth, ordered for paging and explanations; this
//! table is derived from them, kept in step by [`Index::apply`] and rebuilt
//! whole by [`DecisionTable::build`]. It gives users, sites and groups dense
//! `u32` handles, and answers from three flat tables:
//!
//! 1. the user's slot (handle, owner, the best all-sites level of the user
//!    and their groups, group handles) and the site's slot (handle, its
//!    groups' grants) are looked up at once, so that their misses overlap;
//! 2. the groups' grants on the site are read off the two slots; only the
//!    user's own grant on the site takes one more probe, keyed by
//!    (user handle, site handle).
//!
//! Handles are never reused while the table lives. When a kind runs out, the
//! table is rebuilt from the maps, which numbers the live entries afresh.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::flat::{FlatTable, Slot, Spot, hash_uuid, mix, prefetch};
use super::{Index, UserEntry};
use crate::model::{GroupId, Level, Role, SiteId, Subject, UserId};

/// Site handles share a word with a user handle and a level, hence 29 bits.
const SITE_BITS: u32 = 29;

/// A build inserts users and their grants in batches of this many grants
/// (see [`FlatTable::extend`]).
const BUILD_BATCH: usize = 1 << 18;

#[derive(Clone, Debug)]
pub(super) struct DecisionTable {
    users: FlatTable<UserSlot>,
    sites: FlatTable<SiteSlot>,
    /// Group handles, for writes: decisions find groups in the two slots.
    groups: FlatTable<GroupSlot>,
    /// Users' site grants, one word each.
    user_levels: FlatTable<LevelSlot>,
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
    /// Handles start at 1: 0 marks an empty slot.
    const FIRST: Handles = Handles { user: 1, site: 1, group: 1 };
    const LIMITS: Handles = Handles { user: u32::MAX, site: 1 << SITE_BITS, group: u32::MAX };
}

/// An empty table, as an empty index has: it gives handles out from the first.
impl Default for DecisionTable {
    fn default() -> Self {
        DecisionTable {
            users: FlatTable::default(),
            sites: FlatTable::default(),
            groups: FlatTable::default(),
            user_levels: FlatTable::default(),
            next: Handles::FIRST,
            limits: Handles::LIMITS,
        }
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
    /// The best all-sites level of the user and of their groups (`Manage`
    /// for owners): a group's wildcard is copied to its members, so that a
    /// decision does not look groups up.
    wildcard: Level,
    groups: SmallList<u32, 2>,
}

const _: () = assert!(std::mem::size_of::<UserSlot>() == 40);
const _: () = assert!(std::mem::size_of::<SmallList<u32, 2>>() == 16);
const _: () = assert!(std::mem::size_of::<SiteSlot>() == 56);

impl Slot for UserSlot {
    type Key = UserId;
    const EMPTY: Self = UserSlot {
        id: UserId(uuid::Uuid::nil()),
        handle: 0,
        owner: false,
        wildcard: Level::NoAccess,
        groups: SmallList::EMPTY,
    };
    fn key(&self) -> Option<UserId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: UserId) -> u64 {
        hash_uuid(key.0)
    }
}

/// What a decision needs to know of a site: its handle and the grants of
/// groups on it (two on average), ordered by group handle.
#[derive(Clone, Debug)]
struct SiteSlot {
    id: SiteId,
    /// 0 in an empty slot.
    handle: u32,
    groups: SmallList<(u32, Level), 4>,
}

impl Slot for SiteSlot {
    type Key = SiteId;
    const EMPTY: Self = SiteSlot { id: SiteId(uuid::Uuid::nil()), handle: 0, groups: SmallList::EMPTY };
    fn key(&self) -> Option<SiteId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: SiteId) -> u64 {
        hash_uuid(key.0)
    }
}

#[derive(Clone, Copy, Debug)]
struct GroupSlot {
    id: GroupId,
    /// 0 in an empty slot.
    handle: u32,
}

impl Slot for GroupSlot {
    type Key = GroupId;
    const EMPTY: Self = GroupSlot { id: GroupId(uuid::Uuid::nil()), handle: 0 };
    fn key(&self) -> Option<GroupId> {
        (self.handle != 0).then_some(self.id)
    }
    fn hash(key: GroupId) -> u64 {
        hash_uuid(key.0)
    }
}

/// A short list kept in its slot, or a longer one behind a pointer: most
/// users are in at most two groups, most sites have at most four group
/// grants, so most decisions never leave the two slots.
///
/// An inline list ends at its first [`ListItem::NONE`], so that it needs no
/// length: then the inline items fit beside the pointer's non-null niche,
/// and a list of two handles takes 16 bytes, as the pointer alone does (a
/// user's slot stays 40 bytes). The pointer is fat, so that a decision can
/// start loading a spilled list's items without reading anything first.
#[derive(Clone, Debug)]
enum SmallList<T, const N: usize> {
    Inline([T; N]),
    Spilled(Arc<[T]>),
}

/// What a [`SmallList`] holds: handles, which are never 0, so that a 0
/// handle can mark the end of an inline list.
trait ListItem: Copy + PartialEq {
    const NONE: Self;
}

impl ListItem for u32 {
    const NONE: Self = 0;
}

impl ListItem for (u32, Level) {
    const NONE: Self = (0, Level::NoAccess);
}

impl<T: ListItem, const N: usize> SmallList<T, N> {
    const EMPTY: Self = SmallList::Inline([T::NONE; N]);

    fn new(items: Vec<T>) -> Self {
        if items.len() > N {
            return SmallList::Spilled(items.into());
        }
        let mut inline = [T::NONE; N];
        inline[..items.len()].copy_from_slice(&items);
        SmallList::Inline(inline)
    }

    #[inline]
    fn as_slice(&self) -> &[T] {
        match self {
            SmallList::Inline(items) => &items[..items.iter().position(|item| *item == T::NONE).unwrap_or(N)],
            SmallList::Spilled(items) => items,
        }
    }

    /// Starts loading the items of a spilled list (an inline one is loaded
    /// with its slot, which is loaded again: cheaper than a branch that
    /// mispredicts whenever spilled and inline lists mix).
    #[inline]
    fn prefetch(&self) {
        let items: *const T = match self {
            SmallList::Inline(items) => items.as_ptr(),
            SmallList::Spilled(items) => items.as_ptr(),
        };
        prefetch(items);
    }
}

/// The best level that `grants` (a site's) give to any of `groups` (a
/// user's). Two lists kept in their slots, as most are, are compared item
/// by item without a branch: whether and where a user's group holds a grant
/// on a site is nothing a predictor can guess (BENCHMARKS.md §G).
#[inline]
fn groups_level(groups: &SmallList<u32, 2>, grants: &SmallList<(u32, Level), 4>) -> Level {
    match (groups, grants) {
        // Unused places hold handle 0, which matches only unused places,
        // and these grant `NoAccess`.
        (SmallList::Inline(groups), SmallList::Inline(grants)) => {
            // Levels as numbers, so that a miss multiplies a grant by 0
            // where a `match` or an `if` would branch.
            let mut best = 0;
            for group in groups {
                for &(holder, granted) in grants {
                    best = best.max(granted as u64 * u64::from(holder == *group));
                }
            }
            level_of(best)
        }
        _ => {
            let grants = grants.as_slice();
            let granted = groups.as_slice().iter().filter_map(|group| {
                grants.binary_search_by_key(group, |&(holder, _)| holder).ok().map(|at| grants[at].1)
            });
            granted.max().unwrap_or(Level::NoAccess)
        }
    }
}

/// One user's grant on one site in one word: user handle (32 bits), site
/// handle (29 bits), level (3 bits). A grant is never `NoAccess`, so 0 is
/// the empty slot.
#[derive(Clone, Copy, Debug)]
struct LevelSlot(u64);

impl LevelSlot {
    fn new(user: u32, site: u32, level: Level) -> Self {
        LevelSlot(pair(user, site) << 3 | level as u64)
    }

    fn level(self) -> Level {
        level_of(self.0 & 0b111)
    }

    fn holders(self) -> (u32, u32) {
        let key = self.0 >> 3;
        ((key >> SITE_BITS) as u32, (key & ((1 << SITE_BITS) - 1)) as u32)
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

/// The level whose number (`Level as u64`) is `rank`.
#[inline]
fn level_of(rank: u64) -> Level {
    match rank {
        1 => Level::View,
        2 => Level::Edit,
        3 => Level::EditPublish,
        4 => Level::Manage,
        _ => Level::NoAccess,
    }
}

fn pair(user: u32, site: u32) -> u64 {
    u64::from(user) << SITE_BITS | u64::from(site)
}

/// Where a check's user and site slots are: found a few checks ahead of
/// the decision, and loading (see [`Index::decide_all`]).
///
/// [`Index::decide_all`]: super::Index::decide_all
#[derive(Clone, Copy)]
pub(super) struct Located<'a> {
    user: Spot<'a, UserSlot>,
    site: Spot<'a, SiteSlot>,
}

impl Located<'_> {
    /// Starts loading both slots.
    pub(super) fn prefetch(&self) {
        self.user.prefetch();
        self.site.prefetch();
    }
}

/// The two slots a decision on a site starts from, and where the user's
/// own grant on the site is. [`Index::decide_all`] reads them a few checks
/// ahead, starts loading what they lead to, and decides from them when the
/// check's turn comes.
///
/// [`Index::decide_all`]: super::Index::decide_all
#[derive(Clone, Copy)]
pub(super) struct SlotPair<'a> {
    user: &'a UserSlot,
    site: &'a SiteSlot,
    grant: Spot<'a, LevelSlot>,
}

impl SlotPair<'_> {
    /// Whether these are the slots of `user` and `site`.
    pub(super) fn are_of(&self, user: UserId, site: SiteId) -> bool {
        self.user.id == user && self.site.id == site
    }

    /// The level `slots` give; `NoAccess` without them (an unknown user or site).
    #[inline]
    pub(super) fn level(slots: Option<Self>) -> Level {
        let Some(SlotPair { user, site, grant }) = slots else { return Level::NoAccess };
        let mut level = user.wildcard;
        if level == Level::Manage {
            return level;
        }
        level = level.max(groups_level(&user.groups, &site.groups));
        match grant.get() {
            Some(grant) => level.max(grant.level()),
            None => level,
        }
    }

    /// Starts loading what [`SlotPair::level`] reads beyond the slots: the
    /// user's own grant on the site, and the group lists too long to be
    /// kept in the slots.
    pub(super) fn prefetch(&self) {
        self.grant.prefetch();
        self.user.groups.prefetch();
        self.site.groups.prefetch();
    }
}

impl DecisionTable {
    /// The effective level of `user` on `site`, as DESIGN §1 defines it.
    #[inline]
    pub(super) fn site_level(&self, user: UserId, site: SiteId) -> Level {
        SlotPair::level(self.slots(self.locate(user, site)))
    }

    /// Where the slots of `user` and `site` are.
    #[inline]
    pub(super) fn locate(&self, user: UserId, site: SiteId) -> Located<'_> {
        Located { user: self.users.spot(user), site: self.sites.spot(site) }
    }

    /// The slots `located` finds; `None` when the user or the site does not exist.
    #[inline]
    pub(super) fn slots<'a>(&'a self, located: Located<'a>) -> Option<SlotPair<'a>> {
        // Both lookups depend on the request alone, so their misses overlap.
        match (located.user.get(), located.site.get()) {
            (Some(user), Some(site)) => {
                Some(SlotPair { user, site, grant: self.user_levels.spot(pair(user.handle, site.handle)) })
            }
            _ => None,
        }
    }

    pub(super) fn is_owner(&self, user: UserId) -> bool {
        self.users.get(user).is_some_and(|slot| slot.owner)
    }

    /// Starts loading the slot of `user` (see [`Spot::prefetch`]).
    pub(super) fn prefetch_user(&self, user: UserId) {
        self.users.spot(user).prefetch();
    }

    /// The table of `index`'s maps, with handles numbered afresh.
    pub(super) fn build(index: &Index) -> DecisionTable {
        let mut table = DecisionTable {
            users: FlatTable::with_capacity(index.users.len()),
            sites: FlatTable::with_capacity(index.sites.len()),
            groups: FlatTable::with_capacity(index.groups.len()),
            // Sized by the sites' grantees (100k sites rather than 1M users
            // to visit); groups' grants make it a little generous.
            user_levels: FlatTable::with_capacity(index.sites.values().map(|site| site.grantees.len()).sum()),
            next: Handles::FIRST,
            limits: Handles::LIMITS,
        };
        // Fresh handles are dense, so only a model with 2^29 sites (far more
        // than memory holds) could run out here; the excess would be denied.
        for id in index.groups.keys() {
            let _ = table.add_group(*id);
        }
        for (id, site) in index.sites.iter() {
            let Ok(handle) = take(&mut table.next.site, table.limits.site) else { continue };
            let groups = site.grantees.iter().filter_map(|grantee| match grantee {
                Subject::Group(group) => {
                    let level = index.groups.get(&group)?.grants.on_site(*id);
                    Some((table.groups.get(group)?.handle, level))
                }
                Subject::User(_) => None,
            });
            let mut groups: Vec<(u32, Level)> = groups.collect();
            groups.sort_unstable();
            table.sites.insert(SiteSlot { id: *id, handle, groups: SmallList::new(groups) });
        }
        let (mut users, mut grants) = (Vec::new(), Vec::with_capacity(BUILD_BATCH));
        for (id, user) in index.users.iter() {
            let Ok(handle) = take(&mut table.next.user, table.limits.user) else { continue };
            users.push(table.user_slot(*id, handle, user, index.groups_wildcard(user)));
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
        self.sites.insert(SiteSlot { id, handle, groups: SmallList::EMPTY });
        Ok(())
    }

    /// Forgets a site; its grants went before it.
    pub(super) fn remove_site(&mut self, id: SiteId) {
        self.sites.remove(id);
    }

    pub(super) fn add_group(&mut self, id: GroupId) -> Result<(), OutOfHandles> {
        let handle = take(&mut self.next.group, self.limits.group)?;
        self.groups.insert(GroupSlot { id, handle });
        Ok(())
    }

    /// Forgets a group; its grants and memberships went before it.
    pub(super) fn remove_group(&mut self, id: GroupId) {
        self.groups.remove(id);
    }

    /// Writes the slot of user `id` from its index entry and the best
    /// all-sites level of its groups. A new user gets a handle.
    pub(super) fn set_user(
        &mut self,
        id: UserId,
        entry: &UserEntry,
        groups_wildcard: Level,
    ) -> Result<(), OutOfHandles> {
        let handle = match self.users.get(id) {
            Some(slot) => slot.handle,
            None => take(&mut self.next.user, self.limits.user)?,
        };
        self.users.insert(self.user_slot(id, handle, entry, groups_wildcard));
        Ok(())
    }

    fn user_slot(&self, id: UserId, handle: u32, entry: &UserEntry, groups_wildcard: Level) -> UserSlot {
        let owner = entry.role == Role::Owner;
        let groups = entry.groups.iter().filter_map(|group| self.groups.get(group).map(|slot| slot.handle)).collect();
        UserSlot {
            id,
            handle,
            owner,
            wildcard: if owner { Level::Manage } else { entry.grants.all_sites.max(groups_wildcard) },
            groups: SmallList::new(groups),
        }
    }

    pub(super) fn remove_user(&mut self, id: UserId) {
        self.users.remove(id);
    }

    /// Records one site grant (all-sites levels live in user slots: see
    /// [`DecisionTable::set_user`]).
    pub(super) fn set_site_grant(&mut self, subject: Subject, site: SiteId, level: Level) {
        let Some(site) = self.sites.get(site) else { return };
        match subject {
            Subject::User(user) => {
                let Some(user) = self.users.get(user) else { return };
                match level {
                    Level::NoAccess => {
                        self.user_levels.remove(pair(user.handle, site.handle));
                    }
                    level => self.user_levels.insert(LevelSlot::new(user.handle, site.handle, level)),
                }
            }
            Subject::Group(group) => {
                let Some(group) = self.groups.get(group).map(|slot| slot.handle) else { return };
                let mut grants: Vec<(u32, Level)> =
                    site.groups.as_slice().iter().copied().filter(|&(holder, _)| holder != group).collect();
                if level != Level::NoAccess {
                    grants.push((group, level));
                    grants.sort_unstable();
                }
                self.sites.insert(SiteSlot { groups: SmallList::new(grants), ..site.clone() });
            }
        }
    }

    /// What the table says, in ids rather than handles: two tables that say
    /// the same are equal, whatever handles their history gave out.
    fn facts(&self) -> Facts {
        let groups: HashMap<u32, GroupId> = self.groups.iter().map(|slot| (slot.handle, slot.id)).collect();
        let sites: HashMap<u32, SiteId> = self.sites.iter().map(|slot| (slot.handle, slot.id)).collect();
        let users: HashMap<u32, UserId> = self.users.iter().map(|slot| (slot.handle, slot.id)).collect();
        Facts {
            users: (self.users.iter())
                .map(|slot| {
                    let group_ids = slot.groups.as_slice().iter().map(|g| groups.get(g).copied()).collect();
                    (slot.id, (slot.owner, slot.wildcard, group_ids))
                })
                .collect(),
            sites: (self.sites.iter())
                .map(|slot| {
                    let grants = slot.groups.as_slice().iter().map(|(g, level)| (groups.get(g).copied(), *level));
                    (slot.id, grants.collect())
                })
                .collect(),
            groups: groups.values().copied().collect(),
            user_grants: (self.user_levels.iter())
                .map(|slot| {
                    let (user, site) = slot.holders();
                    (users.get(&user).copied(), sites.get(&site).copied(), slot.level())
                })
                .collect(),
        }
    }
}

impl PartialEq for DecisionTable {
    fn eq(&self, other: &Self) -> bool {
        self.facts() == other.facts()
    }
}

/// A table's content in ids (`None`: a handle that names nothing, a bug).
#[derive(Debug, PartialEq)]
struct Facts {
    users: BTreeMap<UserId, (bool, Level, BTreeSet<Option<GroupId>>)>,
    sites: BTreeMap<SiteId, BTreeSet<(Option<GroupId>, Level)>>,
    groups: BTreeSet<GroupId>,
    user_grants: BTreeSet<(Option<UserId>, Option<SiteId>, Level)>,
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
    use crate::model::{Change, Grant, Role, Target, UserPatch};

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
        // LookupSites computes levels from the entries at hand: the same answers.
        for user in snapshot.users.iter().step_by(7) {
            let (page, _) = index.lookup_sites(user.id, Level::View, None, usize::MAX);
            for access in page {
                assert_eq!(access.level, index.site_level(user.id, access.site), "{} on {}", user.id, access.site);
            }
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
        let unwildcard = snapshot.groups.iter().step_by(14).map(|group| Change::GrantSet {
            grant: Grant { subject: Subject::Group(group.id), target: Target::AllSites, level: Level::NoAccess },
        });
        let leave_later = (snapshot.memberships.iter().skip(1).step_by(5))
            .map(|&(group_id, user_id)| Change::MemberRemoved { group_id, user_id });
        let join_later = (snapshot.memberships.iter().step_by(10))
            .map(|&(group_id, user_id)| Change::MemberAdded { group_id, user_id });
        let changes = revoke.chain(leave).chain(promote).chain(wildcards).chain(unwildcard);
        changes.chain(leave_later).chain(join_later).collect()
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
