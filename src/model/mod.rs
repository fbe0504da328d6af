//! The user-management model: ids, levels, records, mutations and the changes
//! they commit. Plain data with no I/O; the proto types never reach here.

mod change;
mod error;
mod mutation;
pub mod validate;

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use change::{Change, UserPatch};
pub use error::ModelError;
pub use mutation::{Mutation, NewGroup, NewReport, NewSite, NewUser, UserUpdate};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        /// The order of the UUID's bytes, compared as one big-endian number:
        /// the index's sorted sets compare ids on every decision, and two
        /// integer compares beat sixteen byte compares.
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.as_u128().cmp(&other.0.as_u128())
            }
        }

        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a user.
    UserId
);
id_type!(
    /// Identifies a website.
    SiteId
);
id_type!(
    /// Identifies a user group.
    GroupId
);
id_type!(
    /// Identifies a custom report.
    ReportId
);

/// A permission level on a site; ordered, so "at least" is `>=`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize)]
pub enum Level {
    #[default]
    NoAccess,
    View,
    Edit,
    EditPublish,
    Manage,
}

/// What a user asks to do.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum Action {
    View,
    Edit,
    Publish,
    Manage,
    Delete,
}

impl Action {
    /// The least site level that allows this action on a site, or `None` for
    /// actions no site level allows (deleting a site is for owners only).
    pub fn least_site_level(self) -> Option<Level> {
        // Read off a table, in the order `Action` declares its variants: a
        // `match` compiles to a jump on the action, which mispredicts in
        // about half of a mixed run of decisions (BENCHMARKS.md §G).
        const LEAST: [Option<Level>; 5] =
            [Some(Level::View), Some(Level::Edit), Some(Level::EditPublish), Some(Level::Manage), None];
        LEAST[self as usize]
    }
}

/// A user's installation-wide role.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum Role {
    #[default]
    User,
    Owner,
}

/// Who may see a custom report.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
pub enum Visibility {
    #[default]
    AuthorOnly,
    AllUsers,
}

/// What a check is about.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Resource {
    Site(SiteId),
    Report(ReportId),
    /// The installation itself: owner-only actions.
    Instance,
}

/// One question for the index: may `user` do `action` on `resource`?
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Check {
    pub user: UserId,
    pub resource: Resource,
    pub action: Action,
}

/// Who holds a grant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Subject {
    User(UserId),
    Group(GroupId),
}

/// Where a grant applies.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum Target {
    Site(SiteId),
    /// Every site, including sites created later.
    AllSites,
}

/// A subject's level on a target. A grant at `NoAccess` is a removal.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub subject: Subject,
    pub target: Target,
    pub level: Level,
}

/// Module switches of a user; all on for a new user.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Modules {
    pub analytics: bool,
    pub tag_manager: bool,
    pub consent_manager: bool,
    pub customer_data_platform: bool,
    pub administration: bool,
}

impl Default for Modules {
    fn default() -> Self {
        Modules {
            analytics: true,
            tag_manager: true,
            consent_manager: true,
            customer_data_platform: true,
            administration: true,
        }
    }
}

/// Microseconds since the Unix epoch, UTC. Stored as an integer so that a
/// round trip through any database is exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp(chrono::Utc::now().timestamp_micros())
    }

    /// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T20:36:49.123456Z`.
    pub fn to_rfc3339(self) -> String {
        chrono::DateTime::from_timestamp_micros(self.0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default()
    }
}

/// An argon2id hash in PHC string form. Never printed, never serialized into
/// the changelog.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

/// A user as stored.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: String,
    pub language: String,
    pub role: Role,
    pub modules: Modules,
    pub has_password: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A website as stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub created_at: Timestamp,
}

/// A user group as stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub name: String,
    pub description: String,
    pub external_id: Option<String>,
    pub created_at: Timestamp,
}

/// A custom report as stored.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Report {
    pub id: ReportId,
    pub site_id: SiteId,
    pub author: UserId,
    pub name: String,
    pub visibility: Visibility,
    pub created_at: Timestamp,
}

/// A revision of the model: the number of the last committed batch. Zero is
/// the empty model before any write.
pub type Revision = u64;

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages, cursors and sorted sets rely on ids ordering as stored UUIDs do.
    #[test]
    fn ids_order_like_their_uuids() {
        let mut uuids: Vec<Uuid> = [0_u128, 1, 255, 256, u64::MAX as u128, 1 << 64, 1 << 127, u128::MAX]
            .into_iter()
            .chain((0..64).map(|i| Uuid::new_v4().as_u128() >> i))
            .map(Uuid::from_u128)
            .collect();
        let mut ids: Vec<SiteId> = uuids.iter().map(|u| SiteId(*u)).collect();
        uuids.sort();
        ids.sort();
        assert!(ids.iter().map(|id| id.0).eq(uuids));
    }
}
