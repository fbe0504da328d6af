//! WatchService.Watch (DESIGN §2, watch.proto): the changelog as a stream of
//! committed batches, in revision order, resumable without gaps or repeats.
//!
//! Stream reads go through `next_batch`, whose timeout is only a safety net
//! against a hung test. "Nothing else arrived" is shown by the revision of
//! the next batch, never by waiting for silence.

use tonic::Code;
use warden::pb::change::Kind;
use warden::pb::mutation::Op;
use warden::pb::{self, Level, ReportVisibility, Role};

use crate::helpers::*;

async fn watching_from_revision_zero_streams_every_committed_batch_in_order_with_its_changes(mut app: TestApp) {
    let [owner, user, site, group, report] = [new_id(), new_id(), new_id(), new_id(), new_id()];
    let batches: Vec<(Option<&str>, Vec<Op>)> = vec![
        (None, vec![create_user(&owner, &email_of(&owner), Role::Owner)]),
        (
            None,
            vec![
                create_user(&user, &email_of(&user), Role::User),
                create_site(&site, "shop"),
                grant_user(&user, &site, Level::View),
            ],
        ),
        (
            None,
            vec![
                create_group(&group, "editors"),
                add_members(&group, &[&user]),
                grant_group_all_sites(&group, Level::Edit),
            ],
        ),
        (None, vec![rename_site(&site, "web shop")]),
        (Some(&user), vec![create_report(&report, &site, &user, ReportVisibility::AuthorOnly)]),
    ];
    let mut revisions = Vec::new();
    for (actor, ops) in batches {
        revisions.push(app.apply(actor, ops).await.revision);
    }

    let mut stream = app.watch_from("0").await.expect("watch from 0");
    let mut received = Vec::new();
    for _ in &revisions {
        received.push(next_batch(&mut stream).await);
    }

    let received_revisions: Vec<_> = received.iter().map(|batch| batch.revision.clone()).collect();
    assert_eq!(received_revisions, revisions, "every batch, in commit order, at the revision Mutate answered");
    assert_consecutive(&received_revisions);
    let kinds: Vec<Vec<&str>> = received.iter().map(|batch| kinds_of(batch)).collect();
    assert_eq!(
        kinds,
        vec![
            vec!["user_created"],
            vec!["user_created", "site_created", "grant_set"],
            vec!["group_created", "member_added", "grant_set"],
            vec!["site_updated"],
            vec!["report_created"],
        ]
    );
    let Some(Kind::UserCreated(created)) = &received[1].changes[0].kind else { unreachable!() };
    assert_eq!((created.id.as_str(), created.email.as_str()), (user.as_str(), email_of(&user).as_str()));
    assert_eq!(received[1].changes[2].kind, Some(Kind::GrantSet(user_site_grant(&user, &site, Level::View))));
    let Some(Kind::SiteUpdated(renamed)) = &received[3].changes[0].kind else { unreachable!() };
    assert_eq!((renamed.site_id.as_str(), renamed.name.as_str()), (site.as_str(), "web shop"));

    // The stream stays open: a user's deletion arrives as it commits, its
    // cascades spelled out before the deletion itself.
    let deleted = app.apply(Some(&owner), vec![delete_user(&user)]).await.revision;
    let batch = next_batch(&mut stream).await;
    assert_eq!(batch.revision, deleted);
    let (last, cascades) = batch.changes.split_last().expect("changes");
    assert_eq!(last.kind, Some(Kind::UserDeleted(user.clone())));
    let mut cascade_kinds: Vec<&str> = cascades.iter().map(kind_of).collect();
    cascade_kinds.sort();
    assert_eq!(cascade_kinds, ["grant_set", "member_removed", "report_updated"]);
    assert!(
        cascades.contains(&pb::Change { kind: Some(Kind::GrantSet(user_site_grant(&user, &site, Level::NoAccess))) })
    );
    assert!(cascades.contains(&pb::Change {
        kind: Some(Kind::MemberRemoved(pb::Membership { group_id: group.clone(), user_id: user.clone() }))
    }));
}

async fn watching_without_a_from_revision_streams_only_batches_committed_later(mut app: TestApp) {
    let owner = app.new_owner().await;
    let _before = app.new_site().await;

    let mut stream = app.watch_from("").await.expect("watch from now on");
    let site = new_id();
    let after = app.apply(None, vec![create_site(&site, "after")]).await.revision;
    let refused = app.refuse(None, vec![delete_user(&owner)]).await;
    assert_eq!(refused.code(), Code::FailedPrecondition, "the last owner stays: {refused:?}");
    let later = app.apply(None, vec![rename_site(&site, "later")]).await.revision;

    let first = next_batch(&mut stream).await;
    assert_eq!(first.revision, after, "the first batch is the first one committed after the watch began");
    assert_eq!(kinds_of(&first), ["site_created"]);
    let second = next_batch(&mut stream).await;
    assert_eq!(second.revision, later, "a refused batch leaves no trace in the stream");
    assert_consecutive(&[first.revision, second.revision]);
}

async fn watching_from_a_revision_not_yet_reached_waits_for_it_then_sends_the_batches_after_it(mut app: TestApp) {
    let _owner = app.new_owner().await;
    let head = revision_number(&app.revision().await);

    let mut stream = app.watch_from(&(head + 2).to_string()).await.expect("watch from a future revision");
    let mut written = Vec::new();
    for _ in 0..4 {
        written.push(revision_number(&app.apply(None, vec![create_site(&new_id(), "site")]).await.revision));
    }
    assert_eq!(written, [head + 1, head + 2, head + 3, head + 4]);

    let first = next_batch(&mut stream).await;
    assert_eq!(revision_number(&first.revision), head + 3, "from_revision is exclusive, even in the future");
    assert_eq!(revision_number(&next_batch(&mut stream).await.revision), head + 4);
}

async fn a_watcher_resuming_after_a_restart_from_its_last_revision_misses_nothing_and_sees_nothing_twice(
    mut app: TestApp,
) {
    let _owner = app.new_owner().await;
    let mut revisions = vec![app.revision().await];
    for i in 0..3 {
        revisions.push(app.apply(None, vec![create_site(&new_id(), &format!("before {i}"))]).await.revision);
    }

    let mut stream = app.watch_from(&revisions[0]).await.expect("watch");
    let first = next_batch(&mut stream).await;
    let last_seen = next_batch(&mut stream).await;
    assert_eq!([&first.revision, &last_seen.revision], [&revisions[1], &revisions[2]]);
    drop(stream);

    let site = new_id();
    revisions.push(app.apply(None, vec![create_site(&site, "while away")]).await.revision);
    revisions.push(app.apply(None, vec![rename_site(&site, "renamed while away")]).await.revision);
    let mut app = app.restart().await;
    revisions.push(app.apply(None, vec![delete_site(&site)]).await.revision);

    let mut resumed = app.watch_from(&last_seen.revision).await.expect("resume");
    let mut received = Vec::new();
    for _ in 3..revisions.len() {
        received.push(next_batch(&mut resumed).await);
    }
    let received_revisions: Vec<_> = received.iter().map(|batch| batch.revision.clone()).collect();
    assert_eq!(received_revisions, revisions[3..], "exactly the batches after the last one seen");
    let kinds: Vec<Vec<&str>> = received.iter().map(|batch| kinds_of(batch)).collect();
    assert_eq!(kinds, [vec!["site_created"], vec!["site_created"], vec!["site_updated"], vec!["site_deleted"]]);

    let next = app.apply(None, vec![create_site(&new_id(), "after resuming")]).await.revision;
    assert_eq!(next_batch(&mut resumed).await.revision, next, "nothing more was queued before it");
}

async fn watched_user_changes_tell_whether_a_password_is_set_and_never_carry_its_hash(mut app: TestApp) {
    let [with_password, invited] = [new_id(), new_id()];
    let password = "Correct1horsebattery";
    app.apply(None, vec![create_user_with_password(&with_password, &email_of(&with_password), password)]).await;
    app.apply(None, vec![create_user(&invited, &email_of(&invited), Role::User)]).await;
    app.apply(None, vec![change_password(&with_password, None, "Another2staplehorse")]).await;
    let mut app = app.restart().await; // read back from storage after a restart too

    let mut stream = app.watch_from("0").await.expect("watch");
    let batches = [next_batch(&mut stream).await, next_batch(&mut stream).await, next_batch(&mut stream).await];

    let Some(Kind::UserCreated(created)) = &batches[0].changes[0].kind else { panic!("{batches:?}") };
    assert_eq!(created.id, with_password);
    assert!(created.has_password, "{created:?}");
    let Some(Kind::UserCreated(created)) = &batches[1].changes[0].kind else { panic!("{batches:?}") };
    assert_eq!(created.id, invited);
    assert!(!created.has_password, "{created:?}");
    let Some(Kind::UserUpdated(updated)) = &batches[2].changes[0].kind else { panic!("{batches:?}") };
    assert_eq!(updated.user_id, with_password);
    assert!(updated.password_changed, "{updated:?}");

    let shown = format!("{batches:?}");
    assert!(!shown.contains("$argon2"), "a password hash was streamed: {shown}");
    assert!(!shown.contains("horse"), "a password was streamed: {shown}");
}

async fn watching_from_a_revision_the_changelog_no_longer_holds_is_out_of_range_and_says_to_resync(app: TestApp) {
    let mut app = app.restart_with_retention(3).await;
    let mut revisions = Vec::new();
    for i in 0..12 {
        revisions.push(app.apply(None, vec![create_site(&new_id(), &format!("site {i}"))]).await.revision);
    }

    for from in ["0", "1", revisions[2].as_str()] {
        let status = app.watch_refusal(from).await;
        assert_eq!(status.code(), Code::OutOfRange, "from {from}: {status:?}");
        assert!(status.message().contains("resync"), "from {from}: {status:?}");
    }

    let recent = &revisions[revisions.len() - 2];
    let mut stream = app.watch_from(recent).await.expect("a revision still held");
    assert_eq!(next_batch(&mut stream).await.revision, revisions[revisions.len() - 1]);
}

async fn a_malformed_from_revision_is_invalid_argument_naming_the_field(mut app: TestApp) {
    for malformed in ["latest", "-1", "1.5", " 3", "0x10"] {
        let status = app.watch_refusal(malformed).await;
        assert_eq!(status.code(), Code::InvalidArgument, "`{malformed}`: {status:?}");
        assert!(status.message().contains("from_revision"), "`{malformed}`: {status:?}");
    }
}

// --- Reading batches ---------------------------------------------------------

/// The change kind, named as in watch.proto.
fn kind_of(change: &pb::Change) -> &'static str {
    match &change.kind {
        Some(Kind::UserCreated(_)) => "user_created",
        Some(Kind::UserUpdated(_)) => "user_updated",
        Some(Kind::UserDeleted(_)) => "user_deleted",
        Some(Kind::SiteCreated(_)) => "site_created",
        Some(Kind::SiteUpdated(_)) => "site_updated",
        Some(Kind::SiteDeleted(_)) => "site_deleted",
        Some(Kind::GroupCreated(_)) => "group_created",
        Some(Kind::GroupUpdated(_)) => "group_updated",
        Some(Kind::GroupDeleted(_)) => "group_deleted",
        Some(Kind::MemberAdded(_)) => "member_added",
        Some(Kind::MemberRemoved(_)) => "member_removed",
        Some(Kind::GrantSet(_)) => "grant_set",
        Some(Kind::ReportCreated(_)) => "report_created",
        Some(Kind::ReportUpdated(_)) => "report_updated",
        Some(Kind::ReportDeleted(_)) => "report_deleted",
        None => "none",
    }
}

fn kinds_of(batch: &pb::WatchResponse) -> Vec<&'static str> {
    batch.changes.iter().map(kind_of).collect()
}

fn assert_consecutive(revisions: &[String]) {
    let numbers: Vec<u64> = revisions.iter().map(|r| revision_number(r)).collect();
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1), "consecutive revisions: {numbers:?}");
}

fn user_site_grant(user: &str, site: &str, level: Level) -> pb::Grant {
    pb::Grant {
        subject: Some(pb::Subject { kind: Some(pb::subject::Kind::UserId(user.to_string())) }),
        target: Some(pb::grant::Target::SiteId(site.to_string())),
        level: level as i32,
    }
}

crate::backend_tests!(
    watching_from_revision_zero_streams_every_committed_batch_in_order_with_its_changes,
    watching_without_a_from_revision_streams_only_batches_committed_later,
    watching_from_a_revision_not_yet_reached_waits_for_it_then_sends_the_batches_after_it,
    a_watcher_resuming_after_a_restart_from_its_last_revision_misses_nothing_and_sees_nothing_twice,
    watched_user_changes_tell_whether_a_password_is_set_and_never_carry_its_hash,
    watching_from_a_revision_the_changelog_no_longer_holds_is_out_of_range_and_says_to_resync,
    a_malformed_from_revision_is_invalid_argument_naming_the_field,
);
