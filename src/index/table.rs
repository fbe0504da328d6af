//! The decision table: what `site_level` needs, laid out so that a decision
//! waits for memory once instead of seven times in a row (BENCHMARKS.md §C,
//! §I).
//!
//! The index's maps stay the truth, ordered for paging and explanations; this
//! table is derived from them, kept in step by [`Index::apply`] and rebuilt
//! whole by [`DecisionTable::build`]. It gives users, sites and groups `u32`
//! handles (see [`Handles`]), and answers from three flat tables, looked up
//! at once so that their cache misses overlap:
//!
//! 1. the user's slot: handle, owner, the best all-sites level of the user
//!    and their groups, group handles;
//! 2. the site's slot: handle, its groups' grants, which give the groups'
//!    level with the user's slot;
//! 3. the user's own grant on the site, keyed by (user handle, site handle).
//!    Its place is known before the slots arrive, because a handle is
//!    nearly always the one its id suggests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use super::flat::{FlatTable, Slot, Spot, hash_uuid, mix, prefetch};
use super::{Index, UserEntry};
use crate::model::{GroupId, Level, Role, SiteId, Subject, UserId};

/// Site handles share a word with a user handle and a level, hence 29 bits.
const SITE_BITS: u32 = 29;
const SITE_HANDLES: u32 = (1 << SITE_BITS) - 1;

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
    user_handles: Handles,
    site_handles: Handles,
    group_handles: Handles,
}

/// An empty table, as an empty index has.
impl Default for DecisionTable {
    fn default() -> Self {
        DecisionTable::with_capacity(0, 0, 0, 0)
    }
}

/// The handles of one kind of entry. An entry gets the handle its id
/// suggests (a hash of the id) unless another entry holds that one, and
/// then the next free one after it. So a decision can tell where the
/// user's grant on a site most likely is from the check's ids alone, and
/// start loading it together with the two slots instead of after them
/// (BENCHMARKS.md §I). It reads the grant where the slots' handles say:
/// a wrong guess costs time, never a wrong answer. At XL about one user or
/// site in 10,000 holds a handle other than its suggested one.
///
/// A handle is free again once its entry is gone: the entry's grants and
/// memberships went before it (see [`Index::apply`]), so nothing names it.
#[derive(Clone, Debug)]
struct Handles {
    held: FlatTable<Held>,
    /// The handles there are, `1..=space`, as a bit mask (0 marks an empty slot).
    space: u32,
    /// The bits of an id's hash a suggestion keeps: all of `space`, except
    /// in tests that make suggestions collide.
    suggestion_bits: u32,
}

impl Handles {
    fn with_capacity(space: u32, entries: usize) -> Handles {
        Handles { held: FlatTable::with_capacity(entries), space, suggestion_bits: space }
    }

    /// The handle `id` suggests (0, no handle, for a few ids).
    #[inline]
    fn suggested(&self, id: Uuid) -> u32 {
        (hash_uuid(id) >> 32) as u32 & self.suggestion_bits
    }

    /// A handle for `id`: the suggested one if it is free, else the next free one.
    fn take(&mut self, id: Uuid) -> u32 {
        // Billions of users or groups, or half a billion sites, would not fit in memory anyway.
        assert!(self.held.len() < self.space as usize, "every handle of a kind is held");
        let mut handle = self.suggested(id);
        while handle == 0 || self.held.get(handle).is_some() {
            handle = handle.wrapping_add(1) & self.space;
        }
        self.held.insert(Held(handle));
        handle
    }

    fn release(&mut self, handle: u32) {
        self.held.remove(handle);
    }
}

/// A handle in use.
#[derive(Clone, Copy, Debug)]
struct Held(u32);

impl Slot for Held {
    type Key = u32;
    const EMPTY: Self = Held(0);
    fn key(&self) -> Option<u32> {
        (self.0 != 0).then_some(self.0)
    }
    fn hash(key: u32) -> u64 {
        mix(u64::from(key))
    }
}

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

/// How many grants ahead [`grant_words`] starts loading a grant's site
/// slot, and how many grants it takes at once.
const SITES_AHEAD: usize = 16;
const GRANTS_AT_ONCE: usize = 4096;

/// Takes the user grants (user handle, site, level) out of `grants`, and
/// puts their words in `words`. Each grant's site slot starts loading
/// [`SITES_AHEAD`] grants before it is read: a user's grants name random
/// sites, and the misses of many overlap instead of adding up.
fn grant_words(sites: &FlatTable<SiteSlot>, grants: &mut Vec<(u32, SiteId, Level)>, words: &mut Vec<LevelSlot>) {
    for (at, &(user, site, level)) in grants.iter().enumerate() {
        if let Some(&(_, ahead, _)) = grants.get(at + SITES_AHEAD) {
            sites.spot(ahead).prefetch();
        }
        if let Some(site) = sites.get(site) {
            words.push(LevelSlot::new(user, site.handle, level));
        }
    }
    grants.clear();
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
        let located = self.locate(user, site);
        located.prefetch();
        // The user's grant loads with the slots, from where their suggested
        // handles put it: nearly always where the slots will say it is.
        let suggested = pair(self.user_handles.suggested(user.0), self.site_handles.suggested(site.0));
        self.user_levels.spot(suggested).prefetch();
        SlotPair::level(self.slots(located))
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

    /// An empty table sized to hold so many entries of each kind without growing.
    fn with_capacity(users: usize, sites: usize, groups: usize, user_grants: usize) -> DecisionTable {
        DecisionTable {
            users: FlatTable::with_capacity(users),
            sites: FlatTable::with_capacity(sites),
            groups: FlatTable::with_capacity(groups),
            user_levels: FlatTable::with_capacity(user_grants),
            user_handles: Handles::with_capacity(u32::MAX, users),
            site_handles: Handles::with_capacity(SITE_HANDLES, sites),
            group_handles: Handles::with_capacity(u32::MAX, groups),
        }
    }

    /// The table of `index`'s maps.
    pub(super) fn build(index: &Index) -> DecisionTable {
        let mut table = DecisionTable::with_capacity(
            index.users.len(),
            index.sites.len(),
            index.groups.len(),
            // Sized by the sites' grantees (100k sites rather than 1M users
            // to visit); groups' grants make it a little generous.
            index.sites.values().map(|site| site.grantees.len()).sum(),
        );
        for id in index.groups.keys() {
            table.add_group(*id);
        }
        for (id, site) in index.sites.iter() {
            let handle = table.site_handles.take(id.0);
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
        let (mut users, mut words) = (Vec::new(), Vec::with_capacity(BUILD_BATCH));
        let mut grants = Vec::with_capacity(GRANTS_AT_ONCE);
        for (id, user) in index.users.iter() {
            let handle = table.user_handles.take(id.0);
            users.push(table.user_slot(*id, handle, user, index.groups_wildcard(user)));
            grants.extend(user.grants.sites.iter().map(|(site, level)| (handle, site, level)));
            if grants.len() >= GRANTS_AT_ONCE {
                grant_words(&table.sites, &mut grants, &mut words);
            }
            if words.len() >= BUILD_BATCH {
                table.users.extend(&mut users);
                table.user_levels.extend(&mut words);
            }
        }
        table.users.extend(&mut users);
        grant_words(&table.sites, &mut grants, &mut words);
        table.user_levels.extend(&mut words);
        table
    }

    /// An empty table whose ids all suggest one of 15 handles, so that
    /// nearly every entry holds another: tests reach the search for a free one.
    #[cfg(test)]
    pub(super) fn with_colliding_suggestions() -> DecisionTable {
        let mut table = DecisionTable::default();
        for handles in [&mut table.user_handles, &mut table.site_handles, &mut table.group_handles] {
            handles.suggestion_bits = 0xf;
        }
        table
    }

    pub(super) fn add_site(&mut self, id: SiteId) {
        let handle = self.site_handles.take(id.0);
        self.sites.insert(SiteSlot { id, handle, groups: SmallList::EMPTY });
    }

    /// Forgets a site; its grants went before it.
    pub(super) fn remove_site(&mut self, id: SiteId) {
        if let Some(slot) = self.sites.remove(id) {
            self.site_handles.release(slot.handle);
        }
    }

    pub(super) fn add_group(&mut self, id: GroupId) {
        let handle = self.group_handles.take(id.0);
        self.groups.insert(GroupSlot { id, handle });
    }

    /// Forgets a group; its grants and memberships went before it.
    pub(super) fn remove_group(&mut self, id: GroupId) {
        if let Some(slot) = self.groups.remove(id) {
            self.group_handles.release(slot.handle);
        }
    }

    /// Writes the slot of user `id` from its index entry and the best
    /// all-sites level of its groups. A new user gets a handle.
    pub(super) fn set_user(&mut self, id: UserId, entry: &UserEntry, groups_wildcard: Level) {
        let handle = match self.users.get(id) {
            Some(slot) => slot.handle,
            None => self.user_handles.take(id.0),
        };
        self.users.insert(self.user_slot(id, handle, entry, groups_wildcard));
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

    /// Forgets a user; their grants and memberships went before them.
    pub(super) fn remove_user(&mut self, id: UserId) {
        if let Some(slot) = self.users.remove(id) {
            self.user_handles.release(slot.handle);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::{Dataset, Shape};
    use crate::index::build::tests::as_changes;
    use crate::model::{Change, Grant, Mutation, Role, Target, Timestamp, UserPatch};

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

    /// Ids whose suggested handles are taken get free ones, handles freed by
    /// deletions are taken again, and the table answers as the maps do.
    #[test]
    fn suggestions_that_collide_get_the_next_free_handle() {
        let dataset = Dataset::generate(Shape::with_users(2_000), 9);
        let mut index = Index { table: DecisionTable::with_colliding_suggestions(), ..Index::default() };
        index.apply_batch(0, &as_changes(&dataset.snapshot));
        let table = &index.table;
        let suggested = |slot: &UserSlot| slot.handle == table.user_handles.suggested(slot.id.0);
        assert!(table.users.iter().filter(|slot| suggested(slot)).count() <= 15);
        assert!(index == Index::from_snapshot(&dataset.snapshot));
        assert_table_answers_as_the_maps_do(&index, &dataset);

        let snapshot = &dataset.snapshot;
        let users = snapshot.users.iter().skip(1).step_by(5).map(|user| Mutation::DeleteUser(user.id));
        let sites = snapshot.sites.iter().step_by(7).map(|site| Mutation::DeleteSite(site.id));
        let groups = snapshot.groups.iter().step_by(3).map(|group| Mutation::DeleteGroup(group.id));
        let deletions: Vec<Mutation> = users.chain(sites).chain(groups).collect();
        let plan = index.plan(None, &deletions, Timestamp(1)).expect("deletions");
        index.apply_batch(1, &plan.changes);
        let newcomers = Dataset::generate(Shape::with_users(500), 10);
        index.apply_batch(2, &as_changes(&newcomers.snapshot));
        assert_eq!(index.table.facts(), DecisionTable::build(&index).facts());
        assert_table_answers_as_the_maps_do(&index, &dataset);
        assert_table_answers_as_the_maps_do(&index, &newcomers);
    }

    /// At the sizes of the benchmarks nearly every handle is the suggested
    /// one, so that nearly every decision loads its grant with its slots.
    #[test]
    fn nearly_every_handle_is_the_suggested_one() {
        let dataset = Dataset::generate(Shape::with_users(20_000), 4);
        let table = Index::from_snapshot(&dataset.snapshot).table;
        let other = table.users.iter().filter(|slot| slot.handle != table.user_handles.suggested(slot.id.0)).count();
        assert!(other <= 5, "{other} of 20,000 users hold a handle other than their suggested one");
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
