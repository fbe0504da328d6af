//! Decisions: the rules of DESIGN §1 read off the index.

use super::Index;
#[cfg(test)]
use crate::model::Role;
use crate::model::{Action, Level, Resource, SiteId, UserId, Visibility};

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
        match resource {
            Resource::Instance => {
                let owner = self.is_owner(user);
                Decision { allowed: owner, level: if owner { Level::Manage } else { Level::NoAccess } }
            }
            Resource::Site(site) => {
                let level = self.site_level(user, site);
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
                let level = self.site_level(user, report.site);
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
