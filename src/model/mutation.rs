use super::{Grant, GroupId, Modules, PasswordHash, ReportId, Role, SiteId, UserId, Visibility};

/// One validated mutation of a `Mutate` batch: every field is well-formed;
/// whether it is allowed and consistent is judged against the index.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    CreateUser(NewUser),
    UpdateUser(UserUpdate),
    DeleteUser(UserId),
    CreateSite(NewSite),
    UpdateSite {
        site_id: SiteId,
        name: Option<String>,
    },
    DeleteSite(SiteId),
    CreateGroup(NewGroup),
    UpdateGroup {
        group_id: GroupId,
        name: Option<String>,
        description: Option<String>,
        external_id: Option<Option<String>>,
    },
    DeleteGroup(GroupId),
    AddGroupMembers {
        group_id: GroupId,
        user_ids: Vec<UserId>,
    },
    RemoveGroupMembers {
        group_id: GroupId,
        user_ids: Vec<UserId>,
    },
    SetGrant(Grant),
    CreateReport(NewReport),
    UpdateReport {
        report_id: ReportId,
        name: Option<String>,
        visibility: Option<Visibility>,
    },
    DeleteReport(ReportId),
}

/// A user to create. The password, if any, is already hashed.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub id: Option<UserId>,
    pub email: String,
    pub name: String,
    pub password: Option<PasswordHash>,
    pub language: String,
    pub role: Role,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct UserUpdate {
    pub user_id: Option<UserId>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub role: Option<Role>,
    pub modules: Option<Modules>,
    pub password: Option<PasswordHash>,
    /// Whether the request carried the user's current password and it
    /// matched. Users changing their own password must give it.
    pub current_password_verified: bool,
}

/// A site to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSite {
    pub id: Option<SiteId>,
    pub name: String,
}

/// A group to create.
#[derive(Clone, Debug, PartialEq)]
pub struct NewGroup {
    pub id: Option<GroupId>,
    pub name: String,
    pub description: String,
    pub external_id: Option<String>,
}

/// A report to create. Without an author, the actor is the author.
#[derive(Clone, Debug, PartialEq)]
pub struct NewReport {
    pub id: Option<ReportId>,
    pub site_id: SiteId,
    pub author: Option<UserId>,
    pub name: String,
    pub visibility: Visibility,
}

impl Mutation {
    /// The proto field name of this mutation, for error messages.
    pub fn field_name(&self) -> &'static str {
        match self {
            Mutation::CreateUser(_) => "create_user",
            Mutation::UpdateUser(_) => "update_user",
            Mutation::DeleteUser(_) => "delete_user",
            Mutation::CreateSite(_) => "create_site",
            Mutation::UpdateSite { .. } => "update_site",
            Mutation::DeleteSite(_) => "delete_site",
            Mutation::CreateGroup(_) => "create_group",
            Mutation::UpdateGroup { .. } => "update_group",
            Mutation::DeleteGroup(_) => "delete_group",
            Mutation::AddGroupMembers { .. } => "add_group_members",
            Mutation::RemoveGroupMembers { .. } => "remove_group_members",
            Mutation::SetGrant(_) => "set_grant",
            Mutation::CreateReport(_) => "create_report",
            Mutation::UpdateReport { .. } => "update_report",
            Mutation::DeleteReport(_) => "delete_report",
        }
    }
}
