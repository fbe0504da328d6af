use serde::{Deserialize, Serialize};

use super::{
    Grant, Group, GroupId, Modules, PasswordHash, Report, ReportId, Role, Site, SiteId, Timestamp, User, UserId,
    Visibility,
};

/// One committed fact. A `Mutate` batch becomes a list of changes; storage
/// writes them in one transaction and appends them to the changelog, and the
/// index applies them in order. Cascades are explicit: deleting a user is
/// preceded by the removal of each of their grants and memberships.
///
/// Password hashes are carried to storage but never serialized, so the
/// changelog (and anything streaming it) never holds one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Change {
    UserCreated {
        user: User,
        #[serde(skip)]
        password: Option<PasswordHash>,
    },
    UserUpdated {
        user_id: UserId,
        patch: UserPatch,
        updated_at: Timestamp,
    },
    UserDeleted {
        user_id: UserId,
    },
    SiteCreated {
        site: Site,
    },
    SiteUpdated {
        site_id: SiteId,
        name: String,
    },
    SiteDeleted {
        site_id: SiteId,
    },
    GroupCreated {
        group: Group,
    },
    GroupUpdated {
        group_id: GroupId,
        name: Option<String>,
        description: Option<String>,
        /// `Some(None)` clears the external id.
        external_id: Option<Option<String>>,
    },
    GroupDeleted {
        group_id: GroupId,
    },
    MemberAdded {
        group_id: GroupId,
        user_id: UserId,
    },
    MemberRemoved {
        group_id: GroupId,
        user_id: UserId,
    },
    /// Sets a grant; at `Level::NoAccess` it removes the grant.
    GrantSet {
        grant: Grant,
    },
    ReportCreated {
        report: Report,
    },
    ReportUpdated {
        report_id: ReportId,
        name: Option<String>,
        visibility: Option<Visibility>,
        /// A new author: reports of a deleted user pass to an owner.
        author: Option<UserId>,
    },
    ReportDeleted {
        report_id: ReportId,
    },
}

/// The fields of a user that an update changes; `None` leaves one as it is.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct UserPatch {
    pub email: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub role: Option<Role>,
    pub modules: Option<Modules>,
    /// Whether the password was set; the hash itself is never serialized.
    pub password_changed: bool,
    #[serde(skip)]
    pub password: Option<PasswordHash>,
}
