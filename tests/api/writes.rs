//! Group commit: concurrent Mutates judged one after another and committed
//! together, each with its own revision, each refused alone, all failing
//! together when storage fails.
//!
//! A group is formed deterministically: the test pauses the engine's writer,
//! sends the batches (one at a time when their order matters, waiting until
//! each is queued), and resumes; the writer then takes them all as one group.

use std::collections::BTreeSet;

use tokio::task::JoinHandle;
use tonic::{Code, Status};
use warden::pb::mutation::Op;
use warden::pb::{self, Level, Role};

use crate::helpers::*;
use crate::lifecycle::inject_storage_fault;

type Sent = JoinHandle<Result<pb::MutateResponse, Status>>;

fn request(actor: Option<&str>, ops: Vec<Op>) -> pb::MutateRequest {
    pb::MutateRequest {
        mutations: ops.into_iter().map(|op| pb::Mutation { op: Some(op) }).collect(),
        actor_user_id: actor.unwrap_or_default().to_string(),
        ..Default::default()
    }
}

/// Sends a Mutate without waiting for its answer.
fn send(app: &TestApp, request: pb::MutateRequest) -> Sent {
    let mut admin = app.admin.clone();
    tokio::spawn(async move { admin.mutate(request).await.map(|response| response.into_inner()) })
}

/// Waits until `count` batches are queued for the (paused) writer.
async fn queued(app: &TestApp, count: usize) {
    let mut queued_rx = app.engine.subscribe_queued_writes();
    queued_rx.wait_for(|queued| *queued == count).await.expect("the engine is running");
}

/// Sends the requests one after another, each queued before the next is
/// sent, so the group holds them in this order.
async fn send_in_order(app: &TestApp, requests: Vec<pb::MutateRequest>) -> Vec<Sent> {
    let mut sent = Vec::new();
    for request in requests {
        sent.push(send(app, request));
        queued(app, sent.len()).await;
    }
    sent
}

async fn answers(sent: Vec<Sent>) -> Vec<Result<pb::MutateResponse, Status>> {
    let mut answers = Vec::new();
    for handle in sent {
        answers.push(handle.await.expect("the request task"));
    }
    answers
}

fn revision_of(answer: &Result<pb::MutateResponse, Status>) -> u64 {
    match answer {
        Ok(response) => revision_number(&response.revision),
        Err(status) => panic!("the batch should have committed: {status:?}"),
    }
}

async fn many_concurrent_single_grants_commit_at_consecutive_revisions_and_survive_a_restart(mut app: TestApp) {
    let users: Vec<String> = (0..8).map(|_| new_id()).collect();
    let sites: Vec<String> = (0..6).map(|_| new_id()).collect();
    let mut setup: Vec<Op> = users.iter().map(|u| create_user(u, &email_of(u), Role::User)).collect();
    setup.extend(sites.iter().map(|s| create_site(s, "site")));
    let before = revision_number(&app.apply(None, setup).await.revision);
    let levels = [Level::View, Level::Edit, Level::EditPublish, Level::Manage];
    let grants: Vec<(&String, &String, Level)> = users
        .iter()
        .enumerate()
        .flat_map(|(u, user)| sites.iter().enumerate().map(move |(s, site)| (user, site, levels[(u + s) % 4])))
        .collect();

    // Half the grants sent all at once (they group however they arrive),
    // half while the writer is paused (one group).
    let (free, grouped) = grants.split_at(grants.len() / 2);
    let sent = free.iter().map(|(user, site, level)| send(&app, request(None, vec![grant_user(user, site, *level)])));
    let mut answered = answers(sent.collect()).await;
    let paused = app.engine.pause_writes().await;
    let sent: Vec<Sent> = grouped
        .iter()
        .map(|(user, site, level)| send(&app, request(None, vec![grant_user(user, site, *level)])))
        .collect();
    queued(&app, grouped.len()).await;
    drop(paused);
    answered.extend(answers(sent).await);

    let revisions: BTreeSet<u64> = answered.iter().map(revision_of).collect();
    let expected: BTreeSet<u64> = (before + 1..=before + grants.len() as u64).collect();
    assert_eq!(revisions, expected, "every batch has its own revision, without gaps");
    for (user, site, level) in &grants {
        assert_eq!(app.level(user, site).await, *level);
    }
    app.assert_index_equals_storage().await;

    let mut app = app.restart().await;
    for (user, site, level) in &grants {
        assert_eq!(app.level(user, site).await, *level, "the grant survives a restart");
    }
    assert_eq!(revision_number(&app.revision().await), before + grants.len() as u64);
}

async fn a_refused_batch_in_a_group_fails_alone_and_later_batches_see_earlier_ones(mut app: TestApp) {
    let owner = app.new_owner().await;
    let user = app.new_user().await;
    let site = app.new_site().await;
    let before = app.observe().await;
    let base = revision_number(&before.revision);
    let new_site = new_id();

    let paused = app.engine.pause_writes().await;
    let sent = send_in_order(
        &app,
        vec![
            request(Some(&owner), vec![create_site(&new_site, "new")]),
            // Judged on the index the first batch produced: the site exists.
            request(Some(&owner), vec![grant_user(&user, &new_site, Level::Edit)]),
            // Refused by the rules: the site id is taken (by the first batch).
            request(Some(&owner), vec![grant_user(&user, &site, Level::Manage), create_site(&new_site, "again")]),
            // Refused: a user may not grant.
            request(Some(&user), vec![grant_user(&user, &site, Level::Manage)]),
            request(Some(&owner), vec![grant_user(&user, &site, Level::View)]),
        ],
    )
    .await;
    drop(paused);
    let answers = answers(sent).await;

    assert_eq!(revision_of(&answers[0]), base + 1);
    assert_eq!(revision_of(&answers[1]), base + 2);
    assert_eq!(answers[2].as_ref().expect_err("a taken id").code(), Code::AlreadyExists);
    assert_eq!(answers[3].as_ref().expect_err("not allowed").code(), Code::PermissionDenied);
    assert_eq!(revision_of(&answers[4]), base + 3, "the refused batches took no revision");
    assert_eq!(app.level(&user, &new_site).await, Level::Edit);
    assert_eq!(app.level(&user, &site).await, Level::View, "nothing of the refused batches was written");
    assert_eq!(app.get_site(&new_site).await.expect("created").name, "new");
    assert_eq!(revision_number(&app.observe().await.revision), base + 3);
    app.assert_index_equals_storage().await;
}

async fn an_expected_revision_is_judged_against_the_revision_before_the_batch_in_its_group(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let base = revision_number(&app.revision().await);
    let expecting = |revision: u64, level: Level| pb::MutateRequest {
        expected_revision: revision.to_string(),
        ..request(None, vec![grant_user(&user, &site, level)])
    };

    let paused = app.engine.pause_writes().await;
    let sent = send_in_order(
        &app,
        vec![
            expecting(base, Level::View),
            // Read before the first batch of the group committed: stale.
            expecting(base, Level::Edit),
            expecting(base + 1, Level::Manage),
        ],
    )
    .await;
    drop(paused);
    let answers = answers(sent).await;

    assert_eq!(revision_of(&answers[0]), base + 1);
    assert_eq!(answers[1].as_ref().expect_err("stale").code(), Code::FailedPrecondition);
    assert_eq!(revision_of(&answers[2]), base + 2);
    assert_eq!(app.level(&user, &site).await, Level::Manage);
}

async fn a_storage_fault_during_a_group_commit_fails_every_batch_and_changes_nothing(mut app: TestApp) {
    let owner = app.new_owner().await;
    let user = app.new_user().await;
    let site = app.new_site().await;
    inject_storage_fault(&app).await;
    let before = app.observe().await;
    let index_before = app.engine.index().expect("index loaded");

    let paused = app.engine.pause_writes().await;
    let sent = send_in_order(
        &app,
        vec![
            request(Some(&owner), vec![grant_user(&user, &site, Level::Edit)]),
            request(Some(&owner), vec![create_site(&new_id(), "fine")]),
            // Refused by the rules: answered as such, whatever storage does.
            request(Some(&user), vec![create_site(&new_id(), "not allowed")]),
            request(Some(&owner), vec![create_site(&new_id(), "explode")]),
            request(Some(&owner), vec![grant_user(&owner, &site, Level::View)]),
        ],
    )
    .await;
    drop(paused);
    let answers = answers(sent).await;

    for (position, answer) in answers.iter().enumerate() {
        let status = answer.as_ref().expect_err("no batch of the group commits");
        let expected = if position == 2 { Code::PermissionDenied } else { Code::Internal };
        assert_eq!(status.code(), expected, "batch {position}: {status:?}");
    }
    assert_eq!(app.observe().await, before, "storage holds nothing of the group");
    assert!(*app.engine.index().expect("index loaded") == *index_before, "the index holds nothing of it");
    app.assert_index_equals_storage().await;

    // The next batch commits at the next revision: the failed group used none.
    let next = app.apply(Some(&owner), vec![grant_user(&user, &site, Level::Edit)]).await;
    assert_eq!(revision_number(&next.revision), revision_number(&before.revision) + 1);
    assert_eq!(app.level(&user, &site).await, Level::Edit);
}

async fn batches_with_one_idempotency_key_in_one_group_commit_once_and_answer_alike(mut app: TestApp) {
    // No caller-chosen ids: a second execution would create a second site.
    let keyed = |key: &str, name: &str| pb::MutateRequest {
        idempotency_key: key.to_string(),
        ..request(None, vec![create_site("", name)])
    };
    let committed_before = app.admin.mutate(keyed("earlier", "earlier")).await.expect("commits").into_inner();
    let base = revision_number(&committed_before.revision);

    let paused = app.engine.pause_writes().await;
    let sent = send_in_order(
        &app,
        vec![
            keyed("shop", "shop"),
            keyed("blog", "blog"),
            // A retry while the first is still queued: gets the first's answer.
            keyed("shop", "shop"),
            // A refused batch keeps no answer: the next one with its key is judged.
            pb::MutateRequest {
                idempotency_key: "refused".into(),
                ..request(None, vec![grant_user(&new_id(), &new_id(), Level::View)])
            },
            keyed("refused", "judged"),
        ],
    )
    .await;
    drop(paused);
    let answers = answers(sent).await;

    let shop = answers[0].as_ref().expect("commits");
    assert_eq!(revision_number(&shop.revision), base + 1);
    assert_eq!(revision_of(&answers[1]), base + 2);
    assert_eq!(answers[2].as_ref().expect("answered"), shop);
    assert_eq!(answers[3].as_ref().expect_err("an unknown user").code(), Code::NotFound);
    assert_eq!(revision_of(&answers[4]), base + 3);

    let names: Vec<String> = app.observe().await.sites.into_iter().map(|site| site.name).collect();
    assert_eq!(names.iter().filter(|name| *name == "shop").count(), 1, "{names:?}");
    assert_eq!(names.len(), 4, "{names:?}");
    // After the group, retries still get the stored answers.
    let retried = app.admin.mutate(keyed("shop", "shop")).await.expect("answered").into_inner();
    assert_eq!(&retried, shop);
    let retried = app.admin.mutate(keyed("earlier", "earlier")).await.expect("answered").into_inner();
    assert_eq!(retried, committed_before);
}

async fn a_group_sent_to_a_replica_that_is_behind_is_judged_after_what_others_committed(mut app: TestApp) {
    let site = app.new_site().await;
    let [first, second] = [app.new_user().await, app.new_user().await];
    let mut replica = app.spawn_replica().await;

    let paused = replica.engine.pause_writes().await;
    let batches = vec![
        request(None, vec![grant_user(&first, &site, Level::View)]),
        request(None, vec![grant_user(&second, &site, Level::Edit)]),
    ];
    let sent = send_in_order(&replica, batches).await;
    // The first server commits while the replica's group waits.
    let other = revision_number(&app.apply(None, vec![grant_user(&first, &site, Level::Manage)]).await.revision);
    drop(paused);
    let revisions: Vec<u64> = answers(sent).await.iter().map(revision_of).collect();
    assert_eq!(revisions, [other + 1, other + 2], "judged after the other's batch, in order");

    assert_eq!(replica.level(&first, &site).await, Level::View);
    assert_eq!(replica.level(&second, &site).await, Level::Edit);
    replica.assert_index_equals_storage().await;
}

crate::backend_tests!(
    many_concurrent_single_grants_commit_at_consecutive_revisions_and_survive_a_restart,
    a_refused_batch_in_a_group_fails_alone_and_later_batches_see_earlier_ones,
    an_expected_revision_is_judged_against_the_revision_before_the_batch_in_its_group,
    a_storage_fault_during_a_group_commit_fails_every_batch_and_changes_nothing,
    batches_with_one_idempotency_key_in_one_group_commit_once_and_answer_alike,
    a_group_sent_to_a_replica_that_is_behind_is_judged_after_what_others_committed,
);
