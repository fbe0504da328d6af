//! Replicas sharing one database (DESIGN §3): each applies what the others
//! commit, reads that carry a revision see it, and writes sent to a replica
//! that is behind are judged on everything committed before them.

use warden::dataset::{Dataset, Shape};
use warden::pb::{self, Level};
use warden::store::Store;

use crate::helpers::*;

/// The level of `user` on `site` as `app` answers a check that must see
/// `revision` at least.
async fn level_at(app: &mut TestApp, user: &str, site: &str, revision: &str) -> Level {
    let response = app.check_at(user, site_resource(site), pb::Action::View, revision).await;
    Level::try_from(response.effective_level).expect("a known level")
}

async fn a_grant_and_its_revoke_on_one_replica_are_seen_by_checks_on_another_that_carry_their_revisions(
    mut app: TestApp,
) {
    let site = app.new_site().await;
    let [user, member] = [app.new_user().await, app.new_user().await];
    let group = app.new_group().await;
    let mut replica = app.spawn_replica().await;

    let granted =
        app.apply(None, vec![grant_user(&user, &site, Level::Edit), add_members(&group, &[&member])]).await.revision;
    let group_granted = app.apply(None, vec![grant_group(&group, &site, Level::Manage)]).await.revision;
    assert_eq!(level_at(&mut replica, &user, &site, &granted).await, Level::Edit);
    assert_eq!(level_at(&mut replica, &member, &site, &group_granted).await, Level::Manage);

    let revoked = app
        .apply(None, vec![grant_user(&user, &site, Level::NoAccess), remove_members(&group, &[&member])])
        .await
        .revision;
    assert_eq!(level_at(&mut replica, &user, &site, &revoked).await, Level::NoAccess);
    assert_eq!(level_at(&mut replica, &member, &site, &revoked).await, Level::NoAccess);
    replica.assert_index_equals_storage().await;
}

async fn a_replica_applies_what_another_commits_without_being_asked(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let mut replica = app.spawn_replica().await;
    let mut revisions = replica.engine.subscribe_revisions();

    // Nothing asks the replica for this revision: it must find it by itself
    // (a PostgreSQL notification, or its poll of SQLite).
    let committed = revision_number(&app.apply(None, vec![grant_user(&user, &site, Level::View)]).await.revision);
    let reached = tokio::time::timeout(STREAM_SAFETY_NET, revisions.wait_for(|at| *at >= committed)).await;
    assert!(reached.is_ok(), "the replica did not apply revision {committed} within {STREAM_SAFETY_NET:?}");
    assert_eq!(replica.level(&user, &site).await, Level::View, "a check without a revision sees it");
}

async fn writes_sent_to_a_replica_that_is_behind_are_judged_on_what_others_committed(mut app: TestApp) {
    let owner = app.new_owner().await;
    let site = app.new_site().await;
    let [first, second] = [app.new_user().await, app.new_user().await];
    let mut replica = app.spawn_replica().await;

    // The replica's writer waits while the other server commits, so the
    // batch below is queued behind it: whether the replica's follower or its
    // committer applies the other's batch first, the batch is judged after it.
    let paused = replica.engine.pause_writes().await;
    let before = replica.engine.published_revision();
    let committed = app.apply(Some(&owner), vec![grant_user(&first, &site, Level::Manage)]).await.revision;
    let sent = {
        let mut admin = replica.admin.clone();
        let request = pb::MutateRequest {
            mutations: [grant_user(&first, &site, Level::View), grant_user(&second, &site, Level::Edit)]
                .into_iter()
                .map(|op| pb::Mutation { op: Some(op) })
                .collect(),
            actor_user_id: owner.clone(),
            // Judged after the other's batch, whatever the replica had applied when it was sent.
            expected_revision: committed.clone(),
            ..Default::default()
        };
        tokio::spawn(async move { admin.mutate(request).await })
    };
    let mut queued = replica.engine.subscribe_queued_writes();
    queued.wait_for(|queued| *queued == 1).await.expect("the batch is queued");
    assert_eq!(replica.engine.published_revision(), before, "held back until its writer is free");
    drop(paused);

    let written = sent.await.expect("sent").expect("judged on the other's batch and committed").into_inner();
    assert_eq!(revision_number(&written.revision), revision_number(&committed) + 1);
    assert_eq!(replica.level(&first, &site).await, Level::View);
    assert_eq!(level_at(&mut app, &second, &site, &written.revision).await, Level::Edit);
    replica.assert_index_equals_storage().await;
    app.assert_index_equals_storage().await;
}

async fn a_replica_behind_a_pruned_changelog_rebuilds_its_index_from_storage(app: TestApp) {
    let mut app = app.restart_with_retention(2).await;
    let site = app.new_site().await;
    let users: Vec<String> = vec![app.new_user().await, app.new_user().await, app.new_user().await];
    let mut replica = app.spawn_replica().await;

    // Held back while the changelog is pruned past its index.
    let paused = replica.engine.pause_writes().await;
    let mut last = String::new();
    for (user, level) in users.iter().zip([Level::View, Level::Edit, Level::Manage]) {
        app.apply(None, vec![grant_user(user, &site, level)]).await;
        last = app.apply(None, vec![rename_site(&site, user)]).await.revision;
    }
    let oldest = app.engine.store().oldest_retained_revision().await.expect("read").expect("some");
    assert!(oldest > replica.engine.published_revision() + 1, "the changelog no longer reaches the replica");
    drop(paused);

    assert_eq!(level_at(&mut replica, &users[0], &site, &last).await, Level::View);
    assert_eq!(replica.level(&users[2], &site).await, Level::Manage);
    replica.assert_index_equals_storage().await;
}

async fn a_server_on_an_empty_database_picks_up_a_bulk_import_into_it(mut app: TestApp) {
    let dataset = Dataset::generate(Shape::with_users(300), 5);
    let store = Store::connect(&app.database_url()).await.expect("connect to the app's storage");
    let imported = store.import_dataset(&dataset.snapshot, |_| {}).await.expect("import");

    // The import's changelog entry holds none of its rows: the server rebuilds.
    let owner = dataset.snapshot.users.iter().find(|user| user.role == warden::model::Role::Owner).expect("an owner");
    let owner_id = owner.id.0.to_string();
    let answer = app.check_at(&owner_id, instance(), pb::Action::Manage, &imported.to_string()).await;
    assert!(answer.allowed, "the imported owner");
    app.assert_index_equals_storage().await;
}

async fn postgresql_notifies_every_commit_with_its_revision(mut app: TestApp) {
    let Some(mut listener) = app.engine.store().listen_for_commits().await.expect("listen") else {
        assert!(app.database_url().starts_with("sqlite:"), "only SQLite cannot notify; replicas on it poll");
        return;
    };
    for _ in 0..2 {
        let committed = app.apply(None, vec![create_site(&new_id(), "shop")]).await.revision;
        let heard =
            tokio::time::timeout(STREAM_SAFETY_NET, listener.next()).await.expect("heard within the safety net");
        assert_eq!(heard.expect("a revision"), revision_number(&committed));
    }
}

crate::backend_tests!(
    a_grant_and_its_revoke_on_one_replica_are_seen_by_checks_on_another_that_carry_their_revisions,
    a_replica_applies_what_another_commits_without_being_asked,
    writes_sent_to_a_replica_that_is_behind_are_judged_on_what_others_committed,
    a_replica_behind_a_pruned_changelog_rebuilds_its_index_from_storage,
    a_server_on_an_empty_database_picks_up_a_bulk_import_into_it,
    postgresql_notifies_every_commit_with_its_revision,
);
