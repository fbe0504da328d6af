//! The read side beyond yes/no: which sites a user reaches, which users reach
//! a site, and why. Every answer is read off one index revision; pages are
//! ordered by id and resume strictly after the last id of the previous page.

use std::ops::Bound;

use itertools::Itertools;

use super::Index;
use crate::model::{Action, GroupId, Level, ReportId, Resource, Role, SiteId, Subject, UserId, Visibility};

/// A site a user reaches, with their effective level on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteAccess {
    pub site: SiteId,
    pub level: Level,
}

/// A user who reaches a site, with the effective level and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAccess {
    pub user: UserId,
    pub level: Level,
    pub paths: Vec<AccessPath>,
}

/// Where a level comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    Owner,
    Direct,
    AllSites,
    Group(GroupId),
    GroupAllSites(GroupId),
}

/// One way a user reaches a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPath {
    pub kind: PathKind,
    pub level: Level,
    /// The group's display name, for group paths.
    pub group_name: Option<String>,
    /// Whether this path gives the effective level. Exactly one path wins:
    /// the first of the highest, in the order owner, direct, all-sites, group
    /// site grants, group all-sites grants (groups by id).
    pub wins: bool,
}

/// Every path from a user to a site, and the effective level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    pub site: Option<SiteId>,
    pub level: Level,
    pub paths: Vec<AccessPath>,
    /// For a report: what the user may do with it and why.
    pub report: Option<ReportAccess>,
}

/// What a user may do with a report, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportAccess {
    pub can_view: bool,
    pub can_edit: bool,
    pub can_delete: bool,
    pub reason: String,
}

impl Index {
    /// Sites where `user` has at least `min_level`, ordered by id, after
    /// `after`, at most `limit`; the flag tells whether more follow.
    pub fn lookup_sites(
        &self,
        user: UserId,
        min_level: Level,
        after: Option<SiteId>,
        limit: usize,
    ) -> (Vec<SiteAccess>, bool) {
        let Some(entry) = self.users.get(&user) else { return (Vec::new(), false) };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let groups: Vec<_> = entry.groups.iter().filter_map(|g| self.groups.get(&g)).collect();
        let wildcard = groups.iter().map(|g| g.grants.all_sites).fold(entry.grants.all_sites, Level::max);
        let candidates: Box<dyn Iterator<Item = SiteId>> = if entry.role == Role::Owner || wildcard >= min_level {
            // Every site qualifies.
            Box::new(self.site_order.range((from, Bound::Unbounded)).copied())
        } else {
            let grants = std::iter::once(&entry.grants).chain(groups.iter().map(|g| &g.grants));
            Box::new(grants.map(|grants| grants.sites_from(from)).kmerge().dedup())
        };
        // The level of each candidate from the entries at hand (every
        // candidate exists): the same rule as `site_level`, without its
        // lookups of the user and of each site, which would miss the cache
        // on every site of a page.
        let base = if entry.role == Role::Owner { Level::Manage } else { wildcard };
        let level_on =
            |site| groups.iter().map(|g| g.grants.on_site(site)).fold(base.max(entry.grants.on_site(site)), Level::max);
        let mut qualifying = candidates
            .map(|site| SiteAccess { site, level: level_on(site) })
            .filter(|access| access.level >= min_level);
        let page: Vec<_> = qualifying.by_ref().take(limit).collect();
        let more = qualifying.next().is_some();
        (page, more)
    }

    /// Users with at least `min_level` on `site`, ordered by id, after
    /// `after`, at most `limit`, each with the paths of their level; the flag
    /// tells whether more follow.
    pub fn lookup_users(
        &self,
        site: SiteId,
        min_level: Level,
        after: Option<UserId>,
        limit: usize,
    ) -> (Vec<UserAccess>, bool) {
        let Some(site_entry) = self.sites.get(&site) else { return (Vec::new(), false) };
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let owners: Vec<UserId> =
            self.owners.iter().map(|(_, id)| *id).filter(|id| after < Some(*id)).sorted().collect();
        let direct = site_entry.grantees.iter().filter_map(|s| match s {
            Subject::User(id) if after < Some(id) => Some(id),
            _ => None,
        });
        let granted_groups = site_entry.grantees.iter().filter_map(|s| match s {
            Subject::Group(id) => Some(id),
            Subject::User(_) => None,
        });
        let groups: Vec<GroupId> = granted_groups.chain(self.all_sites_groups.iter().copied()).unique().collect();
        let members = groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .map(|g| Box::new(g.members.range_from(from)) as Box<dyn Iterator<Item = UserId>>);
        let sources: Vec<Box<dyn Iterator<Item = UserId>>> = vec![
            Box::new(owners.into_iter()),
            Box::new(direct),
            Box::new(self.all_sites_users.range((from, Bound::Unbounded)).copied()),
        ];
        let mut qualifying = sources
            .into_iter()
            .chain(members)
            .kmerge()
            .dedup()
            .map(|user| {
                let (level, paths) = self.paths(user, site);
                UserAccess { user, level, paths }
            })
            .filter(|access| access.level >= min_level);
        let page: Vec<_> = qualifying.by_ref().take(limit).collect();
        let more = qualifying.next().is_some();
        (page, more)
    }

    /// Why `user` has the level they have on a site, or may or may not use a report.
    pub fn explain(&self, user: UserId, resource: Resource) -> Explanation {
        match resource {
            Resource::Site(site) => {
                let (level, paths) = self.paths(user, site);
                let site = self.sites.contains_key(&site).then_some(site);
                Explanation { site, level, paths, report: None }
            }
            Resource::Report(report) => self.explain_report(user, report),
            Resource::Instance => {
                let owner = self.is_owner(user);
                let paths = owner
                    .then_some(AccessPath { kind: PathKind::Owner, level: Level::Manage, group_name: None, wins: true })
                    .into_iter()
                    .collect();
                Explanation {
                    site: None,
                    level: if owner { Level::Manage } else { Level::NoAccess },
                    paths,
                    report: None,
                }
            }
        }
    }

    fn explain_report(&self, user: UserId, report_id: ReportId) -> Explanation {
        let Some(report) = self.report(report_id) else {
            return Explanation { site: None, level: Level::NoAccess, paths: Vec::new(), report: None };
        };
        let (level, paths) = self.paths(user, report.site);
        let allowed = |action| self.decide(user, Resource::Report(report_id), action).allowed;
        let is_author = report.author == user;
        let reason = match (report.visibility, is_author) {
            (_, true) if level < Level::View => "the user wrote this report but no longer has VIEW on its site".into(),
            (Visibility::AuthorOnly, true) => "author-only report, and the user is its author".into(),
            (Visibility::AuthorOnly, false) if self.is_owner(user) => {
                "author-only report: private to its author; owners may only delete it".into()
            }
            (Visibility::AuthorOnly, false) => "author-only report: private to its author".into(),
            (Visibility::AllUsers, _) if level >= Level::Edit => {
                format!("shared report; the user has {level:?} on its site (EDIT or more edits and deletes)")
            }
            (Visibility::AllUsers, _) if level >= Level::View => "shared report; the user has VIEW on its site".into(),
            (Visibility::AllUsers, _) => "shared report, but the user has no VIEW on its site".into(),
        };
        let access = ReportAccess {
            can_view: allowed(Action::View),
            can_edit: allowed(Action::Edit),
            can_delete: allowed(Action::Delete),
            reason,
        };
        Explanation { site: Some(report.site), level, paths, report: Some(access) }
    }

    /// Every path from `user` to `site` and the effective level; the first
    /// path at the effective level wins.
    fn paths(&self, user: UserId, site: SiteId) -> (Level, Vec<AccessPath>) {
        let (Some(entry), true) = (self.users.get(&user), self.sites.contains_key(&site)) else {
            return (Level::NoAccess, Vec::new());
        };
        let path = |kind, level, group_name: Option<&str>| AccessPath {
            kind,
            level,
            group_name: group_name.map(str::to_string),
            wins: false,
        };
        let mut paths = Vec::new();
        if entry.role == Role::Owner {
            paths.push(path(PathKind::Owner, Level::Manage, None));
        }
        if let Some(level) = entry.grants.sites.get(&site) {
            paths.push(path(PathKind::Direct, level, None));
        }
        if entry.grants.all_sites > Level::NoAccess {
            paths.push(path(PathKind::AllSites, entry.grants.all_sites, None));
        }
        // Group paths in a stable order: site grants before all-sites grants,
        // each by group id (a user's groups are kept sorted), so every call
        // and every replica answers alike.
        let groups: Vec<_> =
            entry.groups.iter().filter_map(|id| self.groups.get(&id).map(|group| (id, group))).collect();
        for (id, group) in &groups {
            if let Some(level) = group.grants.sites.get(&site) {
                paths.push(path(PathKind::Group(*id), level, Some(&group.name)));
            }
        }
        for (id, group) in &groups {
            if group.grants.all_sites > Level::NoAccess {
                paths.push(path(PathKind::GroupAllSites(*id), group.grants.all_sites, Some(&group.name)));
            }
        }
        let level = paths.iter().map(|p| p.level).max().unwrap_or_default();
        if let Some(winner) = paths.iter_mut().find(|p| p.level == level) {
            winner.wins = true;
        }
        (level, paths)
    }
}
