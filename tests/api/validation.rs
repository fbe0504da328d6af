//! Bad input: every malformed field is INVALID_ARGUMENT with a message that
//! names it; unknown actors are PERMISSION_DENIED and unknown objects
//! NOT_FOUND. A refused batch applies nothing, not even the good mutations
//! before the bad one.

use tonic::{Code, Status};
use warden::pb::mutation::Op;
use warden::pb::{self, Action, Level, Role};

use crate::helpers::*;

/// Sends `bad` as mutation 3 of a batch whose mutations 0–2 would create a
/// user and a site and grant between them; asserts the batch is refused and
/// that nothing of it is visible afterwards. Returns why it was refused.
async fn refused_last(app: &mut TestApp, bad: Op) -> Status {
    refused_last_mutation(app, pb::Mutation { op: Some(bad) }).await
}

async fn refused_last_mutation(app: &mut TestApp, bad: pb::Mutation) -> Status {
    refused(app, pb::MutateRequest { mutations: good_mutations_then(bad), ..Default::default() }).await
}

/// Sends `request`, asserts it is refused and changed nothing, and returns why.
async fn refused(app: &mut TestApp, request: pb::MutateRequest) -> Status {
    let before = app.observe().await;
    let status = app.admin.mutate(request).await.expect_err("the batch should be refused");
    assert_eq!(app.observe().await, before, "a refused batch changed something ({status:?})");
    status
}

fn good_mutations_then(bad: pb::Mutation) -> Vec<pb::Mutation> {
    let (user, site) = (new_id(), new_id());
    let good = [
        create_user(&user, &email_of(&user), Role::User),
        create_site(&site, "applied?"),
        grant_user(&user, &site, Level::View),
    ];
    good.into_iter().map(|op| pb::Mutation { op: Some(op) }).chain([bad]).collect()
}

#[track_caller]
fn assert_invalid(status: &Status, field: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "message `{}` should name `{field}`", status.message());
}

#[track_caller]
fn assert_not_found(status: &Status, id: &str) {
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let message = status.message();
    assert!(message.contains("mutations[3]") && message.contains(id), "message `{message}` should name `{id}`");
}

fn check_request(user: &str, resource: Option<pb::resource::Kind>, action: Action) -> pb::CheckRequest {
    pb::CheckRequest {
        user_id: user.to_string(),
        resource: resource.map(|kind| pb::Resource { kind: Some(kind) }),
        action: action as i32,
        at_least_revision: String::new(),
    }
}

async fn check_refused(app: &mut TestApp, request: pb::CheckRequest) -> Status {
    app.check.check(request).await.expect_err("the check should be refused")
}

// --- Fields of mutations -----------------------------------------------------

async fn a_malformed_email_is_invalid_argument_naming_the_field(mut app: TestApp) {
    for email in ["", "ann", "ann@", "@example.com", "ann@example", "a b@example.com", "ann@ex..com"] {
        let status = refused_last(&mut app, create_user(&new_id(), email, Role::User)).await;
        assert_invalid(&status, "mutations[3].create_user.email");
    }

    let user = app.new_user().await;
    let update = pb::UpdateUser { email: Some("not-an-email".into()), ..user_update(&user) };
    let status = refused_last(&mut app, Op::UpdateUser(update)).await;
    assert_invalid(&status, "mutations[3].update_user.email");
}

async fn a_password_breaking_the_policy_is_invalid_argument_and_never_echoed(mut app: TestApp) {
    let too_long = format!("Aa1{}", "x".repeat(126));
    let breaking = ["Short1Aa", "nouppercase123", "NOLOWERCASE123", "NoDigitsAtAllHere", too_long.as_str()];
    for password in breaking {
        let id = new_id();
        let status = refused_last(&mut app, create_user_with_password(&id, &email_of(&id), password)).await;
        assert_invalid(&status, "mutations[3].create_user.password");
        assert!(!status.message().contains(password), "the password was echoed: {}", status.message());
    }

    let user = app.new_user().await;
    let status = refused_last(&mut app, change_password(&user, None, "nouppercase123")).await;
    assert_invalid(&status, "mutations[3].update_user.password");
}

async fn an_unsupported_language_is_invalid_argument_naming_the_field(mut app: TestApp) {
    for language in ["xx", "klingon", "en-USA"] {
        let id = new_id();
        let create =
            pb::CreateUser { id: id.clone(), email: email_of(&id), language: language.into(), ..Default::default() };
        let status = refused_last(&mut app, Op::CreateUser(create)).await;
        assert_invalid(&status, "mutations[3].create_user.language");
    }

    let user = app.new_user().await;
    let update = pb::UpdateUser { language: Some("tlh".into()), ..user_update(&user) };
    let status = refused_last(&mut app, Op::UpdateUser(update)).await;
    assert_invalid(&status, "mutations[3].update_user.language");
}

async fn malformed_ids_in_a_mutation_are_invalid_argument_naming_the_field(mut app: TestApp) {
    let (user, site, group) = (app.new_user().await, app.new_site().await, app.new_group().await);
    let cases = [
        (create_user("not-a-uuid", "x@example.com", Role::User), "mutations[3].create_user.id"),
        (create_site("12345", "site"), "mutations[3].create_site.id"),
        (grant_user("not-a-uuid", &site, Level::View), "mutations[3].set_grant.subject.user_id"),
        (grant_group("not-a-uuid", &site, Level::View), "mutations[3].set_grant.subject.group_id"),
        (grant_user(&user, "not-a-uuid", Level::View), "mutations[3].set_grant.site_id"),
        (delete_user("not-a-uuid"), "mutations[3].delete_user.user_id"),
        (rename_site("not-a-uuid", "name"), "mutations[3].update_site.site_id"),
        (add_members(&group, &[&user, "not-a-uuid"]), "mutations[3].add_group_members.user_ids[1]"),
        (
            create_report(&new_id(), "not-a-uuid", &user, pb::ReportVisibility::AllUsers),
            "mutations[3].create_report.site_id",
        ),
        (delete_report("not-a-uuid"), "mutations[3].delete_report.report_id"),
    ];
    for (bad, field) in cases {
        let status = refused_last(&mut app, bad).await;
        assert_invalid(&status, field);
    }
}

async fn a_malformed_actor_is_invalid_argument(mut app: TestApp) {
    let request = pb::MutateRequest {
        mutations: good_mutations_then(pb::Mutation { op: Some(create_site(&new_id(), "fine")) }),
        actor_user_id: "not-a-uuid".into(),
        ..Default::default()
    };
    let status = refused(&mut app, request).await;
    assert_invalid(&status, "actor_user_id");
}

async fn an_unspecified_level_is_invalid_argument(mut app: TestApp) {
    let (user, site) = (app.new_user().await, app.new_site().await);
    let status = refused_last(&mut app, grant_user(&user, &site, Level::Unspecified)).await;
    assert_invalid(&status, "mutations[3].set_grant.level");

    let Op::SetGrant(mut unknown_level) = grant_user(&user, &site, Level::View) else { unreachable!() };
    unknown_level.level = 42;
    let status = refused_last(&mut app, Op::SetGrant(unknown_level)).await;
    assert_invalid(&status, "mutations[3].set_grant.level");
}

async fn a_grant_without_subject_or_target_is_invalid_argument(mut app: TestApp) {
    let (user, site) = (app.new_user().await, app.new_site().await);
    let Op::SetGrant(grant) = grant_user(&user, &site, Level::View) else { unreachable!() };

    let no_subject = pb::SetGrant { subject: None, ..grant.clone() };
    let status = refused_last(&mut app, Op::SetGrant(no_subject)).await;
    assert_invalid(&status, "mutations[3].set_grant.subject");

    let empty_subject = pb::SetGrant { subject: Some(pb::Subject { kind: None }), ..grant.clone() };
    let status = refused_last(&mut app, Op::SetGrant(empty_subject)).await;
    assert_invalid(&status, "mutations[3].set_grant.subject");

    let no_target = pb::SetGrant { target: None, ..grant };
    let status = refused_last(&mut app, Op::SetGrant(no_target)).await;
    assert_invalid(&status, "mutations[3].set_grant.target");
}

async fn an_empty_batch_is_invalid_argument(mut app: TestApp) {
    let status = refused(&mut app, pb::MutateRequest::default()).await;
    assert_invalid(&status, "mutations");
}

async fn a_mutation_without_an_operation_is_invalid_argument(mut app: TestApp) {
    let status = refused_last_mutation(&mut app, pb::Mutation { op: None }).await;
    assert_invalid(&status, "mutations[3]");
}

async fn a_malformed_expected_revision_is_invalid_argument(mut app: TestApp) {
    for revision in ["yesterday", "-1", "1.5"] {
        let request = pb::MutateRequest {
            mutations: good_mutations_then(pb::Mutation { op: Some(create_site(&new_id(), "fine")) }),
            expected_revision: revision.into(),
            ..Default::default()
        };
        let status = refused(&mut app, request).await;
        assert_invalid(&status, "expected_revision");
    }
}

// --- Who and what a mutation names -------------------------------------------

async fn an_unknown_actor_is_permission_denied(mut app: TestApp) {
    let _owner = app.new_owner().await;
    let request = pb::MutateRequest {
        mutations: good_mutations_then(pb::Mutation { op: Some(create_site(&new_id(), "fine")) }),
        actor_user_id: new_id(),
        ..Default::default()
    };
    let status = refused(&mut app, request).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("actor_user_id"), "{status:?}");
}

async fn naming_an_unknown_user_site_group_or_report_is_not_found(mut app: TestApp) {
    let (user, site, group) = (app.new_user().await, app.new_site().await, app.new_group().await);
    let unknown = new_id();
    let cases = [
        grant_user(&unknown, &site, Level::View),
        grant_user(&user, &unknown, Level::View),
        grant_group(&unknown, &site, Level::View),
        add_members(&unknown, &[&user]),
        add_members(&group, &[&user, &unknown]),
        remove_members(&group, &[&unknown]),
        delete_user(&unknown),
        set_role(&unknown, Role::Owner),
        rename_site(&unknown, "renamed"),
        delete_site(&unknown),
        delete_group(&unknown),
        create_report(&new_id(), &unknown, &user, pb::ReportVisibility::AllUsers),
        rename_report(&unknown, "renamed"),
        delete_report(&unknown),
    ];
    for bad in cases {
        let status = refused_last(&mut app, bad).await;
        assert_not_found(&status, &unknown);
    }
}

// --- Checks ------------------------------------------------------------------

async fn malformed_ids_in_a_check_are_invalid_argument_naming_the_field(mut app: TestApp) {
    let site = Some(site_resource(&new_id()));
    let status = check_refused(&mut app, check_request("not-a-uuid", site, Action::View)).await;
    assert_invalid(&status, "user_id");

    let bad_site = Some(site_resource("not-a-uuid"));
    let status = check_refused(&mut app, check_request(&new_id(), bad_site, Action::View)).await;
    assert_invalid(&status, "resource.site_id");

    let bad_report = Some(pb::resource::Kind::ReportId("not-a-uuid".into()));
    let status = check_refused(&mut app, check_request(&new_id(), bad_report, Action::View)).await;
    assert_invalid(&status, "resource.report_id");

    let good = check_request(&new_id(), Some(instance()), Action::View);
    let bad = check_request("", Some(instance()), Action::View);
    let batch = pb::CheckBatchRequest { checks: vec![good, bad], at_least_revision: String::new() };
    let status = app.check.check_batch(batch).await.expect_err("the batch should be refused");
    assert_invalid(&status, "checks[1].user_id");
}

async fn an_unspecified_action_is_invalid_argument(mut app: TestApp) {
    let status = check_refused(&mut app, check_request(&new_id(), Some(instance()), Action::Unspecified)).await;
    assert_invalid(&status, "action");

    let mut unknown_action = check_request(&new_id(), Some(instance()), Action::View);
    unknown_action.action = 42;
    let status = check_refused(&mut app, unknown_action).await;
    assert_invalid(&status, "action");

    let batch = pb::CheckBatchRequest {
        checks: vec![check_request(&new_id(), Some(instance()), Action::Unspecified)],
        at_least_revision: String::new(),
    };
    let status = app.check.check_batch(batch).await.expect_err("the batch should be refused");
    assert_invalid(&status, "checks[0].action");
}

async fn a_check_without_a_resource_is_invalid_argument(mut app: TestApp) {
    let status = check_refused(&mut app, check_request(&new_id(), None, Action::View)).await;
    assert_invalid(&status, "resource");

    let mut empty_resource = check_request(&new_id(), None, Action::View);
    empty_resource.resource = Some(pb::Resource { kind: None });
    let status = check_refused(&mut app, empty_resource).await;
    assert_invalid(&status, "resource");
}

async fn a_malformed_at_least_revision_is_invalid_argument(mut app: TestApp) {
    for revision in ["yesterday", "-1", "1.5"] {
        let mut check = check_request(&new_id(), Some(instance()), Action::View);
        check.at_least_revision = revision.into();
        let status = check_refused(&mut app, check).await;
        assert_invalid(&status, "at_least_revision");

        let batch = pb::CheckBatchRequest { checks: vec![], at_least_revision: revision.into() };
        let status = app.check.check_batch(batch).await.expect_err("the batch should be refused");
        assert_invalid(&status, "at_least_revision");
    }
}

async fn malformed_ids_in_reads_are_invalid_argument_naming_the_field(mut app: TestApp) {
    use pb::list_grants_request::Filter;
    let bad = "not-a-uuid";
    assert_invalid(&app.get_user(bad).await.unwrap_err(), "user_id");
    assert_invalid(&app.get_site(bad).await.unwrap_err(), "site_id");
    assert_invalid(&app.get_group(bad).await.unwrap_err(), "group_id");
    assert_invalid(&app.get_report(bad).await.unwrap_err(), "report_id");

    let members = pb::ListGroupMembersRequest { group_id: bad.into(), ..Default::default() };
    assert_invalid(&app.admin.list_group_members(members).await.unwrap_err(), "group_id");
    let reports = pb::ListReportsRequest { site_id: bad.into(), ..Default::default() };
    assert_invalid(&app.admin.list_reports(reports).await.unwrap_err(), "site_id");
    for (filter, field) in [
        (Filter::SiteId(bad.into()), "site_id"),
        (Filter::UserId(bad.into()), "user_id"),
        (Filter::GroupId(bad.into()), "group_id"),
    ] {
        let grants = pb::ListGrantsRequest { filter: Some(filter), ..Default::default() };
        assert_invalid(&app.admin.list_grants(grants).await.unwrap_err(), field);
    }
}

// --- Lists -------------------------------------------------------------------

async fn a_negative_page_size_is_invalid_argument(mut app: TestApp) {
    let group = app.new_group().await;
    let page_size = -1;
    let statuses = [
        app.admin.list_users(pb::ListUsersRequest { page_size, ..Default::default() }).await.unwrap_err(),
        app.admin.list_sites(pb::ListSitesRequest { page_size, ..Default::default() }).await.unwrap_err(),
        app.admin.list_groups(pb::ListGroupsRequest { page_size, ..Default::default() }).await.unwrap_err(),
        app.admin.list_reports(pb::ListReportsRequest { page_size, ..Default::default() }).await.unwrap_err(),
        app.admin
            .list_group_members(pb::ListGroupMembersRequest {
                group_id: group.clone(),
                page_size,
                ..Default::default()
            })
            .await
            .unwrap_err(),
        app.admin
            .list_grants(pb::ListGrantsRequest {
                filter: Some(pb::list_grants_request::Filter::GroupId(group)),
                page_size,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ];
    for status in statuses {
        assert_invalid(&status, "page_size");
    }
}

async fn a_garbage_page_token_is_invalid_argument(mut app: TestApp) {
    let group = app.new_group().await;
    for garbage in ["not a token!", "zz", "abc"] {
        let page_token = garbage.to_string();
        let statuses = [
            app.admin
                .list_users(pb::ListUsersRequest { page_token: page_token.clone(), ..Default::default() })
                .await
                .unwrap_err(),
            app.admin
                .list_sites(pb::ListSitesRequest { page_token: page_token.clone(), ..Default::default() })
                .await
                .unwrap_err(),
            app.admin
                .list_groups(pb::ListGroupsRequest { page_token: page_token.clone(), ..Default::default() })
                .await
                .unwrap_err(),
            app.admin
                .list_reports(pb::ListReportsRequest { page_token: page_token.clone(), ..Default::default() })
                .await
                .unwrap_err(),
            app.admin
                .list_group_members(pb::ListGroupMembersRequest {
                    group_id: group.clone(),
                    page_token: page_token.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        ];
        for status in statuses {
            assert_invalid(&status, "page_token");
        }
    }
}

crate::backend_tests!(
    a_malformed_email_is_invalid_argument_naming_the_field,
    a_password_breaking_the_policy_is_invalid_argument_and_never_echoed,
    an_unsupported_language_is_invalid_argument_naming_the_field,
    malformed_ids_in_a_mutation_are_invalid_argument_naming_the_field,
    a_malformed_actor_is_invalid_argument,
    an_unspecified_level_is_invalid_argument,
    a_grant_without_subject_or_target_is_invalid_argument,
    an_empty_batch_is_invalid_argument,
    a_mutation_without_an_operation_is_invalid_argument,
    a_malformed_expected_revision_is_invalid_argument,
    an_unknown_actor_is_permission_denied,
    naming_an_unknown_user_site_group_or_report_is_not_found,
    malformed_ids_in_a_check_are_invalid_argument_naming_the_field,
    an_unspecified_action_is_invalid_argument,
    a_check_without_a_resource_is_invalid_argument,
    a_malformed_at_least_revision_is_invalid_argument,
    malformed_ids_in_reads_are_invalid_argument_naming_the_field,
    a_negative_page_size_is_invalid_argument,
    a_garbage_page_token_is_invalid_argument,
);
