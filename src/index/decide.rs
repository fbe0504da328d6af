//! Decisions: the rules of DESIGN §1 read off the index.

use super::Index;
use crate::model::{Action, Level, Resource, Role, SiteId, UserId, Visibility};

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
                let Some(report) = self.reports.get(&report_id) else {
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
        let Some(entry) = self.users.get(&user) else { return Level::NoAccess };
        // A site grant names an existing site (a site's grants are dropped
        // before the site), so the site map is asked only when the level
        // comes from ownership or a wildcard: one lookup fewer on the hot path.
        let wildcard = if entry.role == Role::Owner { Level::Manage } else { entry.grants.all_sites };
        let (mut on_site, mut wildcard) = (entry.grants.on_site(site), wildcard);
        for group_id in entry.groups.iter() {
            if on_site.max(wildcard) == Level::Manage {
                break;
            }
            if let Some(group) = self.groups.get(&group_id) {
                on_site = on_site.max(group.grants.on_site(site));
                wildcard = wildcard.max(group.grants.all_sites);
            }
        }
        if wildcard > on_site && self.sites.contains_key(&site) { wildcard } else { on_site }
    }

    pub fn is_owner(&self, user: UserId) -> bool {
        self.users.get(&user).is_some_and(|u| u.role == Role::Owner)
    }
}
