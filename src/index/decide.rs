//! Decisions: the rules of DESIGN §1 read off the index.

use super::flat::Spot;
use super::table::{Located, SlotPair};
use super::{Index, ReportEntry};
#[cfg(test)]
use crate::model::Role;
use crate::model::{Action, Check, Level, Resource, SiteId, UserId, Visibility};

/// How many checks ahead [`Index::decide_all`] starts loading a check's
/// slots, and how many ahead it reads them and starts loading the user's
/// grant: far enough that each memory round trip ends before the next step
/// needs its line, near enough that the lines are still cached then
/// (BENCHMARKS.md §E).
const SLOTS_AHEAD: usize = 16;
const GRANTS_AHEAD: usize = 8;
/// How many checks ahead a report check, whose report was located
/// [`SLOTS_AHEAD`] checks ahead, reads it and locates its site's slot.
const REPORT_SITES_AHEAD: usize = 12;

/// A check some steps ahead of its turn in [`Index::decide_all`]: where
/// its first lines are, loading.
#[derive(Clone, Copy)]
enum Ahead<'a> {
    Site(Located<'a>),
    Report(Spot<'a, Option<ReportEntry>>),
    /// Nothing more to locate: an instance check (it reads the user's slot
    /// only), or a report that does not exist.
    Nothing,
}

/// The answer to one check. A denial is a value, not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The user's effective level on the site (a report's site; for the
    /// instance, `Manage` for owners and `NoAccess` otherwise).
    pub level: Level,
}

impl Index {
    /// Decides whether `user` may do `action` on `resource`. Unknown users,
    /// sites and reports are denied.
    pub fn decide(&self, user: UserId, resource: Resource, action: Action) -> Decision {
        self.decide_with(&Check { user, resource, action }, |site| self.site_level(user, site))
    }

    /// Decides `checks` in order, as [`Index::decide`] would one by one.
    ///
    /// On an index larger than the CPU caches a decision mostly waits for
    /// memory, twice: for the user's and the site's slots, then for the
    /// user's grant, whose place the slots give. Here the two waits of a
    /// check start early, in a pipeline: [`SLOTS_AHEAD`] checks ahead its
    /// slots are located and start loading; [`GRANTS_AHEAD`] checks ahead
    /// they are read (cached by then) and the grant starts loading; at its
    /// turn the check is decided from lines already cached. The waits of
    /// many checks overlap instead of adding up, and each key is hashed once.
    /// A report check has one wait more: its report is located first, and
    /// read [`REPORT_SITES_AHEAD`] checks ahead to locate its site's slot.
    pub fn decide_all<'a>(&'a self, checks: &'a [Check]) -> impl Iterator<Item = Decision> + 'a {
        // The checks located, by position modulo SLOTS_AHEAD; the slots found
        // for the next GRANTS_AHEAD checks, by position modulo GRANTS_AHEAD.
        let mut located = [Ahead::Nothing; SLOTS_AHEAD];
        for (at, check) in checks.iter().enumerate().take(SLOTS_AHEAD) {
            located[at] = self.locate(check);
        }
        let mut found = [None; GRANTS_AHEAD];
        for (at, check) in checks.iter().enumerate().take(GRANTS_AHEAD) {
            found[at] = self.find_slots(check, located[at]);
        }
        checks.iter().enumerate().map(move |(at, check)| {
            if let Some(ahead) = checks.get(at + SLOTS_AHEAD) {
                located[at % SLOTS_AHEAD] = self.locate(ahead);
            }
            if let Some(ahead) = checks.get(at + REPORT_SITES_AHEAD) {
                let place = &mut located[(at + REPORT_SITES_AHEAD) % SLOTS_AHEAD];
                if let Ahead::Report(report) = *place {
                    *place = self.locate_report_site(ahead, report);
                }
            }
            let slots = match checks.get(at + GRANTS_AHEAD) {
                Some(ahead) => {
                    let slots = self.find_slots(ahead, located[(at + GRANTS_AHEAD) % SLOTS_AHEAD]);
                    std::mem::replace(&mut found[at % GRANTS_AHEAD], slots)
                }
                None => found[at % GRANTS_AHEAD],
            };
            self.decide_with(check, |site| {
                debug_assert!(slots.is_none_or(|slots| slots.are_of(check.user, site)));
                SlotPair::level(slots)
            })
        })
    }

    /// Locates what a decision of `check` reads first, the user's slot and
    /// the site's or the report's, and starts loading it.
    fn locate(&self, check: &Check) -> Ahead<'_> {
        match check.resource {
            Resource::Site(site) => {
                let located = self.table.locate(check.user, site);
                located.prefetch();
                Ahead::Site(located)
            }
            Resource::Report(report) => {
                self.table.prefetch_user(check.user);
                let report = self.reports.spot(report);
                report.prefetch();
                Ahead::Report(report)
            }
            Resource::Instance => {
                self.table.prefetch_user(check.user);
                Ahead::Nothing
            }
        }
    }

    /// Reads the report of a report check (loaded by now) and locates the
    /// slots of the user and the report's site, as for a site check.
    fn locate_report_site<'a>(&'a self, check: &Check, report: Spot<'a, Option<ReportEntry>>) -> Ahead<'a> {
        let Some(report) = report.get().copied().flatten() else { return Ahead::Nothing };
        let located = self.table.locate(check.user, report.site);
        located.prefetch();
        Ahead::Site(located)
    }

    /// The slots a decision of `check` reads its level from, once it has
    /// started loading what they lead to (the user's grant, long group
    /// lists). `None` when the decision needs no level, or the user, site
    /// or report does not exist.
    fn find_slots<'a>(&'a self, check: &Check, ahead: Ahead<'a>) -> Option<SlotPair<'a>> {
        let ahead = match ahead {
            // Among the first checks of a batch, a report's site is located now.
            Ahead::Report(report) => self.locate_report_site(check, report),
            ahead => ahead,
        };
        let Ahead::Site(located) = ahead else { return None };
        let slots = self.table.slots(located);
        if let Some(slots) = slots {
            slots.prefetch();
        }
        slots
    }

    /// The rules of DESIGN §1 for `check`, where `site_level` gives the
    /// user's effective level on a site (called at most once: on the site
    /// checked, or on the report's site).
    fn decide_with(&self, check: &Check, site_level: impl FnOnce(SiteId) -> Level) -> Decision {
        let Check { user, resource, action } = *check;
        match resource {
            Resource::Instance => {
                let owner = self.is_owner(user);
                Decision { allowed: owner, level: if owner { Level::Manage } else { Level::NoAccess } }
            }
            Resource::Site(site) => {
                let level = site_level(site);
                let allowed = match action.least_site_level() {
                    Some(least) => level >= least,
                    // Deleting a site is owner-only (and the site must exist).
                    None => self.is_owner(user) && self.sites.contains_key(&site),
                };
                Decision { allowed, level }
            }
            Resource::Report(report_id) => {
                let Some(report) = self.report(report_id) else {
                    return Decision { allowed: false, level: Level::NoAccess };
                };
                let level = site_level(report.site);
                // The author keeps rights over a report only while they can view its site.
                let is_author = report.author == user && level >= Level::View;
                let is_owner = self.is_owner(user);
                let allowed = match (report.visibility, action) {
                    (_, Action::Publish | Action::Manage) => false,
                    (Visibility::AuthorOnly, Action::View | Action::Edit) => is_author,
                    (Visibility::AuthorOnly, Action::Delete) => is_author || is_owner,
                    (Visibility::AllUsers, Action::View) => level >= Level::View,
                    (Visibility::AllUsers, Action::Edit | Action::Delete) => {
                        is_author || is_owner || level >= Level::Edit
                    }
                };
                Decision { allowed, level }
            }
        }
    }

    /// The effective level of `user` on `site`: `Manage` for owners, else the
    /// highest of the user's and their groups' site and all-sites grants.
    /// `NoAccess` when the user or the site does not exist.
    pub fn site_level(&self, user: UserId, site: SiteId) -> Level {
        self.table.site_level(user, site)
    }

    pub fn is_owner(&self, user: UserId) -> bool {
        self.table.is_owner(user)
    }

    /// [`Index::site_level`] read off the maps instead of the decision
    /// table: the reference the table is tested against.
    #[cfg(test)]
    pub(super) fn site_level_from_maps(&self, user: UserId, site: SiteId) -> Level {
        let Some(entry) = self.users.get(&user) else { return Level::NoAccess };
        if !self.sites.contains_key(&site) {
            return Level::NoAccess;
        }
        let wildcard = if entry.role == Role::Owner { Level::Manage } else { entry.grants.all_sites };
        let mut level = wildcard.max(entry.grants.on_site(site));
        for group in entry.groups.iter().filter_map(|id| self.groups.get(&id)) {
            level = level.max(group.grants.on_site(site)).max(group.grants.all_sites);
        }
        level
    }
}

#[cfg(test)]
mod tests {
    use crate::dataset::{Dataset, Shape};
    use crate::index::Index;
    use crate::model::{Action, Check, ReportId, Resource, SiteId, UserId};

    /// Checks loaded ahead are decided as they are one by one, in order;
    /// unknown users, sites and reports included.
    #[test]
    fn decide_all_answers_as_decide_does_in_order() {
        let dataset = Dataset::generate(Shape::with_users(3_000), 21);
        let index = Index::from_snapshot(&dataset.snapshot);
        let mut checks = dataset.sample_checks(5_000, 2);
        let unknown = || uuid::Uuid::new_v4();
        checks.insert(3, Check { user: UserId(unknown()), resource: checks[0].resource, action: Action::View });
        checks.insert(
            7,
            Check { user: checks[0].user, resource: Resource::Site(SiteId(unknown())), action: Action::View },
        );
        checks.push(Check {
            user: checks[1].user,
            resource: Resource::Report(ReportId(unknown())),
            action: Action::View,
        });
        let one_by_one: Vec<_> = checks.iter().map(|c| index.decide(c.user, c.resource, c.action)).collect();
        assert!(one_by_one.iter().any(|d| d.allowed) && one_by_one.iter().any(|d| !d.allowed));
        assert_eq!(index.decide_all(&checks).collect::<Vec<_>>(), one_by_one);
        for len in [3, 12, 13, 17, 20] {
            assert_eq!(index.decide_all(&checks[..len]).collect::<Vec<_>>(), one_by_one[..len], "{len} checks");
        }
        assert_eq!(index.decide_all(&[]).count(), 0);
    }
}
