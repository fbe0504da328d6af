//! The model's rules (DESIGN §1 and the API's fine points), one test each,
//! through the real gRPC API.

use tonic::Code;
use warden::pb::list_grants_request::Filter;
use warden::pb::mutation::Op;
use warden::pb::{self, Action, Level, ReportVisibility, Role};

use crate::helpers::*;

// --- Owners and levels -------------------------------------------------------

async fn owner_may_do_everything_on_every_site_including_sites_created_later(mut app: TestApp) {
    let owner = app.new_owner().await;
    let existing = app.new_site().await;
    assert_eq!(app.allowed_on_site(&owner, &existing).await, ALL_ACTIONS);
    assert_eq!(app.level(&owner, &existing).await, Level::Manage);

    let later = app.new_site().await;
    assert_eq!(app.allowed_on_site(&owner, &later).await, ALL_ACTIONS);
    assert_eq!(app.level(&owner, &later).await, Level::Manage);
}

async fn a_new_user_has_no_access_to_any_site(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;

    assert_eq!(app.allowed_on_site(&user, &site).await, NO_ACTIONS);
    assert_eq!(app.level(&user, &site).await, Level::NoAccess);
    assert!(!app.check(&user, instance(), Action::View).await.allowed);
}

async fn each_level_allows_exactly_its_actions_and_never_deleting_the_site(mut app: TestApp) {
    let site = app.new_site().await;
    let table = [
        (Level::View, vec![Action::View]),
        (Level::Edit, vec![Action::View, Action::Edit]),
        (Level::EditPublish, vec![Action::View, Action::Edit, Action::Publish]),
        (Level::Manage, vec![Action::View, Action::Edit, Action::Publish, Action::Manage]),
    ];
    for (level, actions) in table {
        let user = app.new_user().await;
        app.apply(None, vec![grant_user(&user, &site, level)]).await;
        assert_eq!(app.allowed_on_site(&user, &site).await, actions, "at {level:?}");
        assert_eq!(app.level(&user, &site).await, level);
    }
}

async fn deleting_a_site_is_for_owners_only(mut app: TestApp) {
    let owner = app.new_owner().await;
    let manager = app.new_user().await;
    let site = app.new_site().await;
    app.apply(None, vec![grant_user(&manager, &site, Level::Manage)]).await;

    assert!(!app.can(&manager, Action::Delete, &site).await);
    assert!(app.can(&owner, Action::Delete, &site).await);
    let status = app.refuse(Some(&manager), vec![delete_site(&site)]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    app.apply(Some(&owner), vec![delete_site(&site)]).await;
    assert_eq!(app.get_site(&site).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.level(&manager, &site).await, Level::NoAccess);
}

async fn instance_actions_are_for_owners_only(mut app: TestApp) {
    let owner = app.new_owner().await;
    let manager_of_everything = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&manager_of_everything, Level::Manage)]).await;

    for action in ALL_ACTIONS {
        let by_owner = app.check(&owner, instance(), action).await;
        assert!(by_owner.allowed, "owner {action:?} on the instance");
        assert_eq!(by_owner.effective_level, Level::Manage as i32);

        let by_manager = app.check(&manager_of_everything, instance(), action).await;
        assert!(!by_manager.allowed, "non-owner {action:?} on the instance");
        assert_eq!(by_manager.effective_level, Level::NoAccess as i32);
    }
}

// --- Grants ------------------------------------------------------------------

async fn all_sites_grant_covers_sites_created_later(mut app: TestApp) {
    let earlier = app.new_site().await;
    let user = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&user, Level::Edit)]).await;

    let later = app.new_site().await;
    assert_eq!(app.level(&user, &earlier).await, Level::Edit);
    assert_eq!(app.level(&user, &later).await, Level::Edit);
}

async fn group_site_grant_reaches_members_until_they_are_removed(mut app: TestApp) {
    let site = app.new_site().await;
    let (member, outsider) = (app.new_user().await, app.new_user().await);
    let group = new_id();
    app.apply(
        None,
        vec![
            create_group(&group, "analysts"),
            add_members(&group, &[&member]),
            grant_group(&group, &site, Level::Edit),
        ],
    )
    .await;
    assert_eq!(app.level(&member, &site).await, Level::Edit);
    assert_eq!(app.level(&outsider, &site).await, Level::NoAccess);

    app.apply(None, vec![remove_members(&group, &[&member])]).await;
    assert_eq!(app.level(&member, &site).await, Level::NoAccess);
}

async fn group_all_sites_grant_reaches_members_on_later_sites_until_the_group_is_deleted(mut app: TestApp) {
    let earlier = app.new_site().await;
    let member = app.new_user().await;
    let group = app.new_group().await;
    app.apply(None, vec![add_members(&group, &[&member]), grant_group_all_sites(&group, Level::View)]).await;
    let later = app.new_site().await;
    assert_eq!(app.level(&member, &earlier).await, Level::View);
    assert_eq!(app.level(&member, &later).await, Level::View);

    app.apply(None, vec![delete_group(&group)]).await;
    assert_eq!(app.level(&member, &earlier).await, Level::NoAccess);
    assert_eq!(app.level(&member, &later).await, Level::NoAccess);
    assert_eq!(app.get_group(&group).await.unwrap_err().code(), Code::NotFound);
}

async fn deleting_a_group_removes_only_what_it_granted(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let group = app.new_group().await;
    app.apply(
        None,
        vec![
            add_members(&group, &[&user]),
            grant_group(&group, &site, Level::Manage),
            grant_user(&user, &site, Level::View),
        ],
    )
    .await;
    assert_eq!(app.level(&user, &site).await, Level::Manage);

    app.apply(None, vec![delete_group(&group)]).await;
    assert_eq!(app.level(&user, &site).await, Level::View);
    let direct = app.grants(Filter::UserId(user.clone())).await;
    assert_eq!(direct, vec![user_site_grant(&user, &site, Level::View)]);
}

async fn the_highest_of_direct_all_sites_and_group_grants_wins(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let (publishers, readers) = (new_id(), new_id());
    app.apply(
        None,
        vec![
            create_group(&publishers, "publishers"),
            create_group(&readers, "readers"),
            add_members(&publishers, &[&user]),
            add_members(&readers, &[&user]),
            grant_user(&user, &site, Level::View),
            grant_user_all_sites(&user, Level::Edit),
            grant_group(&publishers, &site, Level::EditPublish),
            grant_group_all_sites(&readers, Level::View),
        ],
    )
    .await;
    assert_eq!(app.level(&user, &site).await, Level::EditPublish);

    app.apply(None, vec![remove_members(&publishers, &[&user])]).await;
    assert_eq!(app.level(&user, &site).await, Level::Edit, "the user's own all-sites EDIT is next highest");

    app.apply(None, vec![grant_user_all_sites(&user, Level::NoAccess)]).await;
    assert_eq!(app.level(&user, &site).await, Level::View);

    app.apply(None, vec![grant_group_all_sites(&readers, Level::Manage)]).await;
    assert_eq!(app.level(&user, &site).await, Level::Manage, "a group's higher level wins over the user's own");
}

async fn setting_no_access_removes_the_grant(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let group = app.new_group().await;
    app.apply(
        None,
        vec![
            add_members(&group, &[&user]),
            grant_user(&user, &site, Level::Edit),
            grant_user_all_sites(&user, Level::View),
            grant_group(&group, &site, Level::Manage),
        ],
    )
    .await;
    assert_eq!(app.grants(Filter::UserId(user.clone())).await.len(), 2);

    app.apply(
        None,
        vec![
            grant_user(&user, &site, Level::NoAccess),
            grant_user_all_sites(&user, Level::NoAccess),
            grant_group(&group, &site, Level::NoAccess),
        ],
    )
    .await;
    assert_eq!(app.level(&user, &site).await, Level::NoAccess);
    assert_eq!(app.grants(Filter::UserId(user.clone())).await, Vec::<pb::Grant>::new());
    assert_eq!(app.grants(Filter::GroupId(group.clone())).await, Vec::<pb::Grant>::new());
    assert_eq!(app.grants(Filter::SiteId(site.clone())).await, Vec::<pb::Grant>::new());
}

// --- Owner-only administration -----------------------------------------------

async fn only_owners_create_or_delete_sites_users_and_groups(mut app: TestApp) {
    let owner = app.new_owner().await;
    let (site, other_user, group) = (app.new_site().await, app.new_user().await, app.new_group().await);
    let manager_of_everything = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&manager_of_everything, Level::Manage)]).await;
    let new_user = new_id();
    let attempts = vec![
        create_site(&new_id(), "new site"),
        delete_site(&site),
        create_user(&new_user, &email_of(&new_user), Role::User),
        delete_user(&other_user),
        create_group(&new_id(), "new group"),
        delete_group(&group),
    ];

    for op in attempts.clone() {
        let status = app.refuse(Some(&manager_of_everything), vec![op.clone()]).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{op:?}: {status:?}");
    }
    app.apply(Some(&owner), attempts).await;
}

async fn only_owners_change_roles_modules_and_group_membership(mut app: TestApp) {
    let owner = app.new_owner().await;
    let (member, other) = (app.new_user().await, app.new_user().await);
    let group = app.new_group().await;
    app.apply(None, vec![add_members(&group, &[&member])]).await;
    let manager_of_everything = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&manager_of_everything, Level::Manage)]).await;
    let no_modules = pb::Modules::default();
    let attempts = vec![
        set_role(&other, Role::Owner),
        set_modules(&other, no_modules),
        set_modules(&manager_of_everything, no_modules),
        add_members(&group, &[&other]),
        remove_members(&group, &[&member]),
    ];

    for op in attempts.clone() {
        let status = app.refuse(Some(&manager_of_everything), vec![op.clone()]).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{op:?}: {status:?}");
    }
    app.apply(Some(&owner), attempts).await;
    assert_eq!(app.role(&other).await, Role::Owner);
    assert_eq!(app.get_user(&other).await.unwrap().modules, Some(no_modules));
    assert_eq!(app.members(&group).await, vec![other]);
}

async fn the_last_owner_can_be_neither_deleted_nor_demoted(mut app: TestApp) {
    let owner = app.new_owner().await;

    let status = app.refuse(None, vec![delete_user(&owner)]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = app.refuse(None, vec![set_role(&owner, Role::User)]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(app.role(&owner).await, Role::Owner);

    let _second_owner = app.new_owner().await;
    app.apply(None, vec![set_role(&owner, Role::User)]).await;
    assert_eq!(app.role(&owner).await, Role::User);
}

async fn demoting_one_owner_and_promoting_another_in_one_batch_works_in_either_order(mut app: TestApp) {
    let (a, b) = (app.new_owner().await, app.new_user().await);

    app.apply(None, vec![set_role(&a, Role::User), set_role(&b, Role::Owner)]).await;
    assert_eq!((app.role(&a).await, app.role(&b).await), (Role::User, Role::Owner));

    app.apply(None, vec![set_role(&a, Role::Owner), set_role(&b, Role::User)]).await;
    assert_eq!((app.role(&a).await, app.role(&b).await), (Role::Owner, Role::User));
    assert!(app.check(&a, instance(), Action::Manage).await.allowed);
    assert!(!app.check(&b, instance(), Action::Manage).await.allowed);
}

async fn nobody_deletes_their_own_account_or_changes_their_own_role(mut app: TestApp) {
    let owner = app.new_owner().await;
    let _another_owner = app.new_owner().await; // so that the last-owner rule is not what refuses

    let status = app.refuse(Some(&owner), vec![delete_user(&owner)]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let status = app.refuse(Some(&owner), vec![set_role(&owner, Role::User)]).await;
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(app.role(&owner).await, Role::Owner);

    let user = app.new_user().await;
    let status = app.refuse(Some(&user), vec![set_role(&user, Role::Owner)]).await;
    assert!(matches!(status.code(), Code::FailedPrecondition | Code::PermissionDenied), "{status:?}");
    assert_eq!(app.role(&user).await, Role::User);
}

// --- Who may change a grant --------------------------------------------------

async fn a_manager_sets_levels_on_their_site_for_users_and_groups(mut app: TestApp) {
    let site = app.new_site().await;
    let (manager, user) = (app.new_user().await, app.new_user().await);
    let group = app.new_group().await;
    app.apply(None, vec![grant_user(&manager, &site, Level::Manage)]).await;

    app.apply(Some(&manager), vec![grant_user(&user, &site, Level::Edit), grant_group(&group, &site, Level::View)])
        .await;
    assert_eq!(app.level(&user, &site).await, Level::Edit);
    assert_eq!(app.grants(Filter::GroupId(group.clone())).await, vec![group_site_grant(&group, &site, Level::View)]);

    app.apply(Some(&manager), vec![grant_user(&user, &site, Level::Manage)]).await;
    assert_eq!(app.level(&user, &site).await, Level::Manage, "up to MANAGE");

    app.apply(Some(&manager), vec![grant_user(&user, &site, Level::NoAccess)]).await;
    assert_eq!(app.level(&user, &site).await, Level::NoAccess);
}

async fn a_manager_may_not_set_levels_elsewhere_on_all_sites_on_themselves_or_for_owners(mut app: TestApp) {
    let owner = app.new_owner().await;
    let (site, other_site) = (app.new_site().await, app.new_site().await);
    let (manager, user) = (app.new_user().await, app.new_user().await);
    let group = app.new_group().await;
    app.apply(None, vec![grant_user(&manager, &site, Level::Manage), grant_user(&manager, &other_site, Level::Edit)])
        .await;

    let attempts = [
        grant_user(&user, &other_site, Level::View),
        grant_group(&group, &other_site, Level::View),
        grant_user_all_sites(&user, Level::View),
        grant_group_all_sites(&group, Level::View),
        grant_user(&manager, &site, Level::EditPublish),
        grant_user(&manager, &other_site, Level::Manage),
        grant_user(&owner, &site, Level::View),
    ];
    for op in attempts {
        let status = app.refuse(Some(&manager), vec![op.clone()]).await;
        assert_eq!(status.code(), Code::PermissionDenied, "{op:?}: {status:?}");
    }
    assert_eq!(app.level(&user, &other_site).await, Level::NoAccess);
    assert_eq!(app.level(&manager, &site).await, Level::Manage);
    assert_eq!(app.level(&manager, &other_site).await, Level::Edit);
    assert_eq!(app.grants(Filter::GroupId(group)).await, Vec::<pb::Grant>::new());
    assert_eq!(app.grants(Filter::UserId(owner)).await, Vec::<pb::Grant>::new());
}

// --- Reports -----------------------------------------------------------------

/// A site with an owner and users at each interesting distance from it.
struct ReportCast {
    site: String,
    owner: String,
    /// VIEW on the site; writes the reports.
    author: String,
    /// VIEW on the site.
    viewer: String,
    /// EDIT on the site.
    editor: String,
    /// No access.
    stranger: String,
}

async fn report_cast(app: &mut TestApp) -> ReportCast {
    let cast = ReportCast {
        site: app.new_site().await,
        owner: app.new_owner().await,
        author: app.new_user().await,
        viewer: app.new_user().await,
        editor: app.new_user().await,
        stranger: app.new_user().await,
    };
    app.apply(
        None,
        vec![
            grant_user(&cast.author, &cast.site, Level::View),
            grant_user(&cast.viewer, &cast.site, Level::View),
            grant_user(&cast.editor, &cast.site, Level::Edit),
        ],
    )
    .await;
    cast
}

/// The author writes a report with this visibility on the cast's site.
async fn write_report(app: &mut TestApp, cast: &ReportCast, visibility: ReportVisibility) -> String {
    let report = new_id();
    app.apply(Some(&cast.author), vec![create_report(&report, &cast.site, &cast.author, visibility)]).await;
    report
}

async fn an_author_only_report_is_private_to_its_author_and_owners_may_only_delete_it(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    assert_eq!(app.allowed_on_report(&cast.author, &report).await, [Action::View, Action::Edit, Action::Delete]);
    assert_eq!(app.allowed_on_report(&cast.owner, &report).await, [Action::Delete]);
    assert_eq!(app.allowed_on_report(&cast.editor, &report).await, NO_ACTIONS);
    assert_eq!(app.allowed_on_report(&cast.viewer, &report).await, NO_ACTIONS);

    let status = app.refuse(Some(&cast.owner), vec![rename_report(&report, "peeked")]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = app.refuse(Some(&cast.editor), vec![delete_report(&report)]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    app.apply(Some(&cast.owner), vec![delete_report(&report)]).await;
    assert_eq!(app.get_report(&report).await.unwrap_err().code(), Code::NotFound);
}

async fn an_author_may_edit_and_delete_their_own_report(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    app.apply(Some(&cast.author), vec![rename_report(&report, "renamed by its author")]).await;
    assert_eq!(app.get_report(&report).await.unwrap().name, "renamed by its author");
    app.apply(Some(&cast.author), vec![delete_report(&report)]).await;
    assert_eq!(app.get_report(&report).await.unwrap_err().code(), Code::NotFound);
}

async fn a_report_author_keeps_rights_only_while_they_can_view_the_site(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let private = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;
    let shared = write_report(&mut app, &cast, ReportVisibility::AllUsers).await;

    app.apply(None, vec![grant_user(&cast.author, &cast.site, Level::NoAccess)]).await;
    assert_eq!(app.allowed_on_report(&cast.author, &private).await, NO_ACTIONS);
    assert_eq!(app.allowed_on_report(&cast.author, &shared).await, NO_ACTIONS);
    let status = app.refuse(Some(&cast.author), vec![rename_report(&private, "still mine?")]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    app.apply(None, vec![grant_user(&cast.author, &cast.site, Level::View)]).await;
    assert_eq!(app.allowed_on_report(&cast.author, &private).await, [Action::View, Action::Edit, Action::Delete]);
}

async fn an_all_users_report_is_seen_with_view_and_changed_by_its_author_owners_and_editors(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AllUsers).await;
    let everything = [Action::View, Action::Edit, Action::Delete];

    assert_eq!(app.allowed_on_report(&cast.author, &report).await, everything);
    assert_eq!(app.allowed_on_report(&cast.owner, &report).await, everything);
    assert_eq!(app.allowed_on_report(&cast.editor, &report).await, everything);
    assert_eq!(app.allowed_on_report(&cast.viewer, &report).await, [Action::View]);
    assert_eq!(app.allowed_on_report(&cast.stranger, &report).await, NO_ACTIONS);

    let status = app.refuse(Some(&cast.viewer), vec![rename_report(&report, "by a viewer")]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    app.apply(Some(&cast.editor), vec![rename_report(&report, "by an editor")]).await;
    assert_eq!(app.get_report(&report).await.unwrap().name, "by an editor");
    app.apply(Some(&cast.editor), vec![delete_report(&report)]).await;
    assert_eq!(app.get_report(&report).await.unwrap_err().code(), Code::NotFound);
}

async fn publishing_or_managing_a_report_is_never_allowed(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AllUsers).await;
    let manager = app.new_user().await;
    app.apply(None, vec![grant_user(&manager, &cast.site, Level::Manage)]).await;

    for user in [&cast.owner, &cast.author, &manager] {
        assert!(!app.can_report(user, Action::Publish, &report).await);
        assert!(!app.can_report(user, Action::Manage, &report).await);
    }
}

async fn a_report_check_returns_the_effective_level_on_the_reports_site(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;
    let report_level = |response: pb::CheckResponse| Level::try_from(response.effective_level).unwrap();

    let cases = [
        (&cast.owner, Level::Manage),
        (&cast.editor, Level::Edit),
        (&cast.viewer, Level::View),
        (&cast.stranger, Level::NoAccess),
    ];
    for (user, level) in cases {
        let response = app.check(user, pb::resource::Kind::ReportId(report.clone()), Action::View).await;
        assert_eq!(report_level(response), level);
    }
}

// --- Deleting users ----------------------------------------------------------

async fn deleting_a_user_removes_their_grants_and_memberships(mut app: TestApp) {
    let owner = app.new_owner().await;
    let (site, user, group) = (app.new_site().await, app.new_user().await, app.new_group().await);
    app.apply(
        None,
        vec![
            add_members(&group, &[&user]),
            grant_user(&user, &site, Level::Edit),
            grant_user_all_sites(&user, Level::View),
        ],
    )
    .await;

    app.apply(Some(&owner), vec![delete_user(&user)]).await;
    assert_eq!(app.get_user(&user).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.members(&group).await, Vec::<String>::new());
    assert_eq!(app.grants(Filter::SiteId(site.clone())).await, Vec::<pb::Grant>::new());
    assert_eq!(app.grants(Filter::UserId(user.clone())).await, Vec::<pb::Grant>::new());
    assert_eq!(app.level(&user, &site).await, Level::NoAccess);

    // A user created again with the same id starts from nothing.
    app.apply(None, vec![create_user(&user, "returning@example.com", Role::User)]).await;
    assert_eq!(app.level(&user, &site).await, Level::NoAccess);
    assert_eq!(app.members(&group).await, Vec::<String>::new());
}

async fn a_deleted_users_reports_pass_to_the_owner_who_deleted_them(mut app: TestApp) {
    let cast = report_cast(&mut app).await; // its owner is older than the one deleting
    let deleting_owner = app.new_owner().await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    app.apply(Some(&deleting_owner), vec![delete_user(&cast.author)]).await;
    assert_eq!(app.get_report(&report).await.unwrap().author_user_id, deleting_owner);
    assert!(app.can_report(&deleting_owner, Action::View, &report).await, "the heir is the new author");
}

async fn without_an_actor_a_deleted_users_reports_pass_to_the_oldest_owner(mut app: TestApp) {
    let oldest_owner = app.new_owner().await;
    let cast = report_cast(&mut app).await; // its owner is younger
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    app.apply(None, vec![delete_user(&cast.author)]).await;
    assert_eq!(app.get_report(&report).await.unwrap().author_user_id, oldest_owner);
    assert!(!app.can_report(&cast.owner, Action::View, &report).await);
}

// --- Renaming sites, users changing themselves --------------------------------

async fn a_site_is_renamed_by_owners_and_editors_but_not_by_viewers(mut app: TestApp) {
    let owner = app.new_owner().await;
    let site = app.new_site().await;
    let (editor, viewer) = (app.new_user().await, app.new_user().await);
    app.apply(None, vec![grant_user(&editor, &site, Level::Edit), grant_user(&viewer, &site, Level::View)]).await;

    app.apply(Some(&owner), vec![rename_site(&site, "by the owner")]).await;
    assert_eq!(app.get_site(&site).await.unwrap().name, "by the owner");
    app.apply(Some(&editor), vec![rename_site(&site, "by an editor")]).await;
    assert_eq!(app.get_site(&site).await.unwrap().name, "by an editor");

    let status = app.refuse(Some(&viewer), vec![rename_site(&site, "by a viewer")]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(app.get_site(&site).await.unwrap().name, "by an editor");
}

async fn users_change_their_own_name_and_language_but_not_another_users(mut app: TestApp) {
    let (user, other) = (app.new_user().await, app.new_user().await);

    let own = pb::UpdateUser { name: Some("New Name".into()), language: Some("de-at".into()), ..user_update(&user) };
    app.apply(Some(&user), vec![Op::UpdateUser(own)]).await;
    let stored = app.get_user(&user).await.unwrap();
    assert_eq!((stored.name.as_str(), stored.language.as_str()), ("New Name", "de-AT"));

    let theirs = pb::UpdateUser { name: Some("Renamed By Someone".into()), ..user_update(&other) };
    let status = app.refuse(Some(&user), vec![Op::UpdateUser(theirs)]).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_ne!(app.get_user(&other).await.unwrap().name, "Renamed By Someone");
}

async fn users_change_their_own_password_only_with_the_current_one(mut app: TestApp) {
    let user = new_id();
    let email = email_of(&user);
    app.apply(None, vec![create_user_with_password(&user, &email, "Original1password")]).await;
    assert!(app.password_valid(&email, "Original1password").await);

    for current in [None, Some("Wrong1password")] {
        let status = app.refuse(Some(&user), vec![change_password(&user, current, "Attempted1password")]).await;
        assert_eq!(status.code(), Code::PermissionDenied, "current password {current:?}: {status:?}");
    }
    assert!(!app.password_valid(&email, "Attempted1password").await);

    app.apply(Some(&user), vec![change_password(&user, Some("Original1password"), "Replaced2password")]).await;
    assert!(app.password_valid(&email, "Replaced2password").await);
    assert!(!app.password_valid(&email, "Original1password").await);
}

// --- Unknown ids -------------------------------------------------------------

async fn checks_about_unknown_users_sites_or_reports_answer_false_not_an_error(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&user, Level::Manage)]).await;

    let unknown_user = app.check(&new_id(), site_resource(&site), Action::View).await;
    assert_eq!((unknown_user.allowed, unknown_user.effective_level), (false, Level::NoAccess as i32));
    let unknown_site = app.check(&user, site_resource(&new_id()), Action::View).await;
    assert_eq!((unknown_site.allowed, unknown_site.effective_level), (false, Level::NoAccess as i32));
    assert_eq!(app.allowed_on_report(&user, &new_id()).await, NO_ACTIONS);
}

async fn an_owner_on_a_site_that_does_not_exist_is_denied(mut app: TestApp) {
    let owner = app.new_owner().await;
    assert_eq!(app.allowed_on_site(&owner, &new_id()).await, NO_ACTIONS);

    let deleted = app.new_site().await;
    app.apply(None, vec![delete_site(&deleted)]).await;
    assert_eq!(app.allowed_on_site(&owner, &deleted).await, NO_ACTIONS);
}

async fn getting_an_unknown_id_is_not_found(mut app: TestApp) {
    let unknown = new_id();
    assert_eq!(app.get_user(&unknown).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.get_site(&unknown).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.get_group(&unknown).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.get_report(&unknown).await.unwrap_err().code(), Code::NotFound);
}

// --- Ids and uniqueness ------------------------------------------------------

async fn caller_chosen_ids_are_kept_and_ids_answer_each_mutation_in_order(mut app: TestApp) {
    let (user, site, group, report) = (new_id(), new_id(), new_id(), new_id());
    let response = app
        .apply(
            None,
            vec![
                create_user(&user, &email_of(&user), Role::User),
                create_site(&site, "caller's site"),
                create_group(&group, "caller's group"),
                add_members(&group, &[&user]),
                grant_user(&user, &site, Level::View),
                create_report(&report, &site, &user, ReportVisibility::AllUsers),
                rename_site(&site, "renamed"),
            ],
        )
        .await;

    let expected = [user.as_str(), site.as_str(), group.as_str(), "", "", report.as_str(), site.as_str()];
    assert_eq!(response.ids, expected);
    assert_eq!(app.get_user(&user).await.unwrap().id, user);
    assert_eq!(app.get_site(&site).await.unwrap().id, site);
    assert_eq!(app.get_group(&group).await.unwrap().id, group);
    assert_eq!(app.get_report(&report).await.unwrap().id, report);
}

async fn a_create_without_an_id_answers_the_id_it_chose(mut app: TestApp) {
    let response =
        app.apply(None, vec![create_user("", "chosen@example.com", Role::User), create_site("", "chosen")]).await;

    let [user, site] = <[String; 2]>::try_from(response.ids).unwrap();
    assert!(uuid::Uuid::parse_str(&user).is_ok() && uuid::Uuid::parse_str(&site).is_ok(), "{user} {site}");
    assert_eq!(app.get_user(&user).await.unwrap().email, "chosen@example.com");
    assert_eq!(app.get_site(&site).await.unwrap().name, "chosen");
}

async fn creating_with_an_id_that_exists_is_already_exists(mut app: TestApp) {
    let (user, site, group, report) = (new_id(), new_id(), new_id(), new_id());
    app.apply(
        None,
        vec![
            create_user(&user, &email_of(&user), Role::User),
            create_site(&site, "site"),
            create_group(&group, "group"),
            grant_user(&user, &site, Level::View),
            create_report(&report, &site, &user, ReportVisibility::AuthorOnly),
        ],
    )
    .await;

    let again = [
        create_user(&user, "someone-else@example.com", Role::User),
        create_site(&site, "another site"),
        create_group(&group, "another group"),
        create_report(&report, &site, &user, ReportVisibility::AllUsers),
    ];
    for op in again {
        let status = app.refuse(None, vec![op.clone()]).await;
        assert_eq!(status.code(), Code::AlreadyExists, "{op:?}: {status:?}");
    }
    assert_eq!(app.get_site(&site).await.unwrap().name, "site");
}

async fn emails_are_unique_case_insensitively(mut app: TestApp) {
    let (first, second) = (new_id(), new_id());
    app.apply(
        None,
        vec![create_user(&first, "Ann@Example.com", Role::User), create_user(&second, "bob@example.com", Role::User)],
    )
    .await;

    let status = app.refuse(None, vec![create_user(&new_id(), "ann@EXAMPLE.COM", Role::User)]).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let take_anns = pb::UpdateUser { email: Some("ANN@example.com".into()), ..user_update(&second) };
    let status = app.refuse(None, vec![Op::UpdateUser(take_anns)]).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
}

async fn group_names_are_unique_case_insensitively_and_external_ids_are_unique(mut app: TestApp) {
    let with_external_id = |name: &str, external_id: &str| {
        Op::CreateGroup(pb::CreateGroup {
            id: new_id(),
            name: name.into(),
            external_id: external_id.into(),
            ..Default::default()
        })
    };
    app.apply(None, vec![with_external_id("Analysts", "idp-1")]).await;

    let status = app.refuse(None, vec![with_external_id("analysts", "")]).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    let status = app.refuse(None, vec![with_external_id("Marketing", "idp-1")]).await;
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");
    app.apply(None, vec![with_external_id("Marketing", "idp-2"), with_external_id("Sales", "")]).await;
}

async fn a_deleted_users_email_and_a_deleted_groups_name_are_free_again(mut app: TestApp) {
    let (user, group) = (new_id(), new_id());
    app.apply(None, vec![create_user(&user, "ann@example.com", Role::User), create_group(&group, "Analysts")]).await;

    let (returning_user, returning_group) = (new_id(), new_id());
    app.apply(
        None,
        vec![
            delete_user(&user),
            create_user(&returning_user, "ANN@example.com", Role::User),
            delete_group(&group),
            create_group(&returning_group, "analysts"),
        ],
    )
    .await;
    assert_eq!(app.get_user(&returning_user).await.unwrap().email, "ANN@example.com");
    assert_eq!(app.get_group(&returning_group).await.unwrap().name, "analysts");
}

// --- Revisions ---------------------------------------------------------------

async fn every_mutate_gets_a_higher_revision_and_checks_report_the_latest(mut app: TestApp) {
    let mut previous = revision_number(&app.revision().await);
    for _ in 0..3 {
        let written = app.apply(None, vec![create_site(&new_id(), "one more")]).await;
        let written = revision_number(&written.revision);
        assert!(written > previous, "{written} follows {previous}");
        assert_eq!(revision_number(&app.revision().await), written);
        previous = written;
    }
}

async fn a_check_at_least_at_the_latest_write_sees_it(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let check_at = |revision: String| view_check_at(&user, &site, revision);

    let granted = app.apply(None, vec![grant_user(&user, &site, Level::View)]).await.revision;
    let answer = app.check.check(check_at(granted.clone())).await.unwrap().into_inner();
    assert!(answer.allowed);
    assert!(revision_number(&answer.revision) >= revision_number(&granted));

    let revoked = app.apply(None, vec![grant_user(&user, &site, Level::NoAccess)]).await.revision;
    let answer = app.check.check(check_at(revoked)).await.unwrap().into_inner();
    assert!(!answer.allowed, "revoke, then check never says yes");
}

/// A batch answers at the newest revision that it or any of its checks
/// names: a check carried into a batch keeps its "revoke, then check".
async fn a_check_batch_honours_the_revision_each_check_carries(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let check_at = |revision: String| view_check_at(&user, &site, revision);
    let batch = |checks| pb::CheckBatchRequest { checks, at_least_revision: String::new() };

    let granted = app.apply(None, vec![grant_user(&user, &site, Level::View)]).await.revision;
    let answer = app.check.check_batch(batch(vec![check_at(String::new()), check_at(granted.clone())])).await;
    let answer = answer.unwrap().into_inner();
    assert!(answer.results.iter().all(|result| result.allowed));
    assert_eq!(answer.revision, granted);

    // A revision this server has not reached: the batch waits for it, then
    // says so, rather than answer from an older index.
    let unreached = (revision_number(&granted) + 1_000).to_string();
    let status = app.check.check_batch(batch(vec![check_at(String::new()), check_at(unreached)])).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
}

/// May `user` view `site`, at least at `revision`?
fn view_check_at(user: &str, site: &str, revision: String) -> pb::CheckRequest {
    pb::CheckRequest {
        user_id: user.to_string(),
        resource: Some(pb::Resource { kind: Some(site_resource(site)) }),
        action: Action::View as i32,
        at_least_revision: revision,
    }
}

/// Revisions are opaque to callers, but this server's are decimal numbers.
fn revision_number(revision: &str) -> u64 {
    revision.parse().unwrap_or_else(|_| panic!("revision `{revision}` is a number"))
}

fn user_site_grant(user: &str, site: &str, level: Level) -> pb::Grant {
    pb::Grant {
        subject: Some(pb::Subject { kind: Some(pb::subject::Kind::UserId(user.to_string())) }),
        target: Some(pb::grant::Target::SiteId(site.to_string())),
        level: level as i32,
    }
}

fn group_site_grant(group: &str, site: &str, level: Level) -> pb::Grant {
    pb::Grant {
        subject: Some(pb::Subject { kind: Some(pb::subject::Kind::GroupId(group.to_string())) }),
        target: Some(pb::grant::Target::SiteId(site.to_string())),
        level: level as i32,
    }
}

crate::backend_tests!(
    owner_may_do_everything_on_every_site_including_sites_created_later,
    a_new_user_has_no_access_to_any_site,
    each_level_allows_exactly_its_actions_and_never_deleting_the_site,
    deleting_a_site_is_for_owners_only,
    instance_actions_are_for_owners_only,
    all_sites_grant_covers_sites_created_later,
    group_site_grant_reaches_members_until_they_are_removed,
    group_all_sites_grant_reaches_members_on_later_sites_until_the_group_is_deleted,
    deleting_a_group_removes_only_what_it_granted,
    the_highest_of_direct_all_sites_and_group_grants_wins,
    setting_no_access_removes_the_grant,
    only_owners_create_or_delete_sites_users_and_groups,
    only_owners_change_roles_modules_and_group_membership,
    the_last_owner_can_be_neither_deleted_nor_demoted,
    demoting_one_owner_and_promoting_another_in_one_batch_works_in_either_order,
    nobody_deletes_their_own_account_or_changes_their_own_role,
    a_manager_sets_levels_on_their_site_for_users_and_groups,
    a_manager_may_not_set_levels_elsewhere_on_all_sites_on_themselves_or_for_owners,
    an_author_only_report_is_private_to_its_author_and_owners_may_only_delete_it,
    an_author_may_edit_and_delete_their_own_report,
    a_report_author_keeps_rights_only_while_they_can_view_the_site,
    an_all_users_report_is_seen_with_view_and_changed_by_its_author_owners_and_editors,
    publishing_or_managing_a_report_is_never_allowed,
    a_report_check_returns_the_effective_level_on_the_reports_site,
    deleting_a_user_removes_their_grants_and_memberships,
    a_deleted_users_reports_pass_to_the_owner_who_deleted_them,
    without_an_actor_a_deleted_users_reports_pass_to_the_oldest_owner,
    a_site_is_renamed_by_owners_and_editors_but_not_by_viewers,
    users_change_their_own_name_and_language_but_not_another_users,
    users_change_their_own_password_only_with_the_current_one,
    checks_about_unknown_users_sites_or_reports_answer_false_not_an_error,
    an_owner_on_a_site_that_does_not_exist_is_denied,
    getting_an_unknown_id_is_not_found,
    caller_chosen_ids_are_kept_and_ids_answer_each_mutation_in_order,
    a_create_without_an_id_answers_the_id_it_chose,
    creating_with_an_id_that_exists_is_already_exists,
    emails_are_unique_case_insensitively,
    group_names_are_unique_case_insensitively_and_external_ids_are_unique,
    a_deleted_users_email_and_a_deleted_groups_name_are_free_again,
    every_mutate_gets_a_higher_revision_and_checks_report_the_latest,
    a_check_at_least_at_the_latest_write_sees_it,
    a_check_batch_honours_the_revision_each_check_carries,
);
