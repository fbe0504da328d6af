//! The service over time: restarts, refused batches, retries, stale
//! expected revisions, paging, health and reflection (replicas: `replicas`).

use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use warden::pb::mutation::Op;
use warden::pb::{self, Level, ReportVisibility, Role};

use crate::helpers::*;

/// A model with something of everything, changed over several batches:
/// deletions, renames, revocations, a promotion and inherited reports.
struct World {
    /// Every owner, including the promoted one.
    owners: Vec<String>,
    /// Owners first; then users, one of them deleted; then an id nobody has.
    users: Vec<String>,
    /// Sites, one of them deleted, then an id no site has; reports alike;
    /// then the instance.
    resources: Vec<pb::resource::Kind>,
    /// A user's email and password, for VerifyPassword.
    login: (String, String),
    alice: String,
    carol: String,
    shop: String,
    blog: String,
}

async fn build_world(app: &mut TestApp) -> World {
    let [owner, heir] = [new_id(), new_id()];
    let [alice, bob, carol, dave, erin] = [new_id(), new_id(), new_id(), new_id(), new_id()];
    let [shop, blog, docs, gone] = [new_id(), new_id(), new_id(), new_id()];
    let [editors, readers, disbanded] = [new_id(), new_id(), new_id()];
    let [private, shared, lost, inherited] = [new_id(), new_id(), new_id(), new_id()];
    let password = "Correct1horse".to_string();

    app.apply(None, vec![create_user(&owner, &email_of(&owner), Role::Owner)]).await;
    app.apply(None, vec![create_user(&heir, &email_of(&heir), Role::Owner)]).await;
    app.apply(
        None,
        vec![
            create_user_with_password(&alice, &email_of(&alice), &password),
            create_user(&bob, &email_of(&bob), Role::User),
            create_user(&carol, &email_of(&carol), Role::User),
            create_user(&dave, &email_of(&dave), Role::User),
            create_user(&erin, &email_of(&erin), Role::User),
            create_site(&shop, "shop"),
            create_site(&blog, "blog"),
            create_site(&docs, "docs"),
            create_site(&gone, "gone"),
            Op::CreateGroup(pb::CreateGroup {
                id: editors.clone(),
                name: "Editors".into(),
                description: "edit the docs".into(),
                external_id: "idp-editors".into(),
            }),
            create_group(&readers, "readers"),
            create_group(&disbanded, "disbanded"),
            add_members(&editors, &[&alice, &bob]),
            add_members(&readers, &[&carol, &erin]),
            add_members(&disbanded, &[&dave]),
            grant_user(&alice, &shop, Level::View),
            grant_user(&bob, &blog, Level::Manage),
            grant_user_all_sites(&carol, Level::Edit),
            grant_user(&dave, &gone, Level::Edit),
            grant_user(&erin, &docs, Level::View),
            grant_group(&editors, &docs, Level::EditPublish),
            grant_group_all_sites(&readers, Level::View),
            grant_group(&disbanded, &shop, Level::Manage),
        ],
    )
    .await;
    app.apply(Some(&alice), vec![create_report(&private, &shop, &alice, ReportVisibility::AuthorOnly)]).await;
    app.apply(Some(&bob), vec![create_report(&shared, &blog, &bob, ReportVisibility::AllUsers)]).await;
    app.apply(
        None,
        vec![
            create_report(&lost, &gone, &dave, ReportVisibility::AllUsers),
            create_report(&inherited, &docs, &erin, ReportVisibility::AuthorOnly),
        ],
    )
    .await;
    app.apply(Some(&bob), vec![grant_user(&alice, &blog, Level::Edit), rename_report(&shared, "shared, renamed")])
        .await;
    app.apply(
        Some(&owner),
        vec![
            delete_group(&disbanded),
            delete_site(&gone),
            rename_site(&shop, "Shop"),
            remove_members(&editors, &[&bob]),
            grant_user(&bob, &blog, Level::View),
            set_role(&dave, Role::Owner),
            delete_user(&erin),
            set_modules(&carol, pb::Modules { analytics: true, ..Default::default() }),
        ],
    )
    .await;

    let unknown = new_id();
    let site_ids = [&shop, &blog, &docs, &gone, &unknown];
    let report_ids = [&private, &shared, &lost, &inherited, &unknown];
    let resources = site_ids
        .into_iter()
        .map(|id| site_resource(id))
        .chain(report_ids.into_iter().map(|id| pb::resource::Kind::ReportId(id.clone())))
        .chain([instance()])
        .collect();
    World {
        owners: vec![owner.clone(), heir.clone(), dave.clone()],
        users: vec![owner, heir, alice.clone(), bob, carol.clone(), dave, erin, unknown],
        resources,
        login: (email_of(&alice), password),
        alice,
        carol,
        shop,
        blog,
    }
}

/// Every action of every user of the world on every resource of it.
fn every_check(world: &World) -> pb::CheckBatchRequest {
    let mut checks = Vec::new();
    for user in &world.users {
        for resource in &world.resources {
            for action in ALL_ACTIONS {
                checks.push(pb::CheckRequest {
                    user_id: user.clone(),
                    resource: Some(pb::Resource { kind: Some(resource.clone()) }),
                    action: action as i32,
                    at_least_revision: String::new(),
                });
            }
        }
    }
    pb::CheckBatchRequest { checks, at_least_revision: String::new() }
}

async fn a_restarted_server_gives_every_answer_it_gave_before(app: TestApp) {
    let mut app = app;
    let world = build_world(&mut app).await;
    let answers_before = app.check.check_batch(every_check(&world)).await.unwrap().into_inner();
    let observed_before = app.observe().await;
    let index_before = app.engine.index().expect("index loaded");
    let results = &answers_before.results;
    assert!(results.iter().any(|r| r.allowed) && results.iter().any(|r| !r.allowed), "a world of all-yes or all-no");

    let mut app = app.restart().await;

    let answers_after = app.check.check_batch(every_check(&world)).await.unwrap().into_inner();
    assert_eq!(answers_after, answers_before);
    assert_eq!(app.observe().await, observed_before);
    assert!(app.password_valid(&world.login.0, &world.login.1).await);
    let index_after = app.engine.index().expect("index loaded");
    assert!(*index_after == *index_before, "the index rebuilt from storage differs from the one built by increments");
}

async fn a_batch_whose_last_mutation_is_refused_leaves_storage_and_index_as_they_were(mut app: TestApp) {
    let world = build_world(&mut app).await;
    let (owner, alice, carol) = (world.owners[0].clone(), world.alice.clone(), world.carol.clone());
    let (shop, blog) = (world.shop.clone(), world.blog.clone());
    let fresh = new_id();
    let mut demote_every_owner: Vec<Op> = vec![create_site(&fresh, "fresh"), grant_user(&alice, &fresh, Level::Edit)];
    demote_every_owner.extend(world.owners.iter().map(|o| set_role(o, Role::User)));
    let cascades_then = |bad: Op| vec![delete_site(&shop), delete_user(&alice), rename_site(&blog, "renamed"), bad];

    let refused_batches = [
        (None, cascades_then(create_user(&new_id(), "not-an-email", Role::User)), Code::InvalidArgument),
        (Some(&owner), cascades_then(grant_user(&carol, &new_id(), Level::View)), Code::NotFound),
        (None, cascades_then(create_group(&new_id(), "EDITORS")), Code::AlreadyExists),
        (Some(&owner), cascades_then(delete_user(&owner)), Code::FailedPrecondition),
        (None, demote_every_owner, Code::FailedPrecondition),
        (
            Some(&carol),
            vec![rename_site(&blog, "by carol"), create_site(&new_id(), "by carol")],
            Code::PermissionDenied,
        ),
    ];
    for (actor, batch, code) in refused_batches {
        let index_before = app.engine.index().expect("index loaded");
        let observed_before = app.observe().await;

        let status = app.refuse(actor.map(String::as_str), batch).await;
        assert_eq!(status.code(), code, "{status:?}");

        let index_after = app.engine.index().expect("index loaded");
        assert!(*index_after == *index_before, "a refused batch changed the index ({status:?})");
        assert_eq!(app.observe().await, observed_before, "a refused batch changed storage ({status:?})");
    }
}

async fn a_retried_mutate_with_the_same_idempotency_key_answers_alike_and_creates_nothing_twice(app: TestApp) {
    let mut app = app;
    // No caller-chosen ids: a second execution would create a second site.
    let request = pb::MutateRequest {
        mutations: [create_user("", "ann@example.com", Role::User), create_site("", "shop")]
            .into_iter()
            .map(|op| pb::Mutation { op: Some(op) })
            .collect(),
        idempotency_key: "create-ann-and-shop".into(),
        ..Default::default()
    };
    let first = app.admin.mutate(request.clone()).await.unwrap().into_inner();
    let observed = app.observe().await;
    assert_eq!((observed.users.len(), observed.sites.len()), (1, 1));

    let retried = app.admin.mutate(request.clone()).await.unwrap().into_inner();
    assert_eq!(retried, first);
    assert_eq!(app.observe().await, observed);

    let mut app = app.restart().await;
    let retried_after_restart = app.admin.mutate(request).await.unwrap().into_inner();
    assert_eq!(retried_after_restart, first);
    assert_eq!(app.observe().await, observed);
}

async fn an_idempotency_key_is_kept_as_long_as_the_changelog_keeps_its_revision(app: TestApp) {
    let mut app = app.restart_with_retention(3).await;
    let request = pb::MutateRequest {
        mutations: vec![pb::Mutation { op: Some(create_site("", "shop")) }],
        idempotency_key: "create-shop".into(),
        ..Default::default()
    };
    let first = app.admin.mutate(request.clone()).await.unwrap().into_inner();
    for i in 0..2 {
        app.apply(None, vec![create_site(&new_id(), &format!("site {i}"))]).await;
    }
    let retried = app.admin.mutate(request.clone()).await.unwrap().into_inner();
    assert_eq!(retried, first, "the key's revision is still in the changelog");

    // Enough batches to prune the key's revision: the key goes with it.
    for i in 2..8 {
        app.apply(None, vec![create_site(&new_id(), &format!("site {i}"))]).await;
    }
    let late = app.admin.mutate(request).await.unwrap().into_inner();
    assert_ne!(late.revision, first.revision, "a retry after the retention is a new batch");
    let shops = app.observe().await.sites.iter().filter(|site| site.name == "shop").count();
    assert_eq!(shops, 2);
}

async fn a_stale_expected_revision_is_failed_precondition_and_changes_nothing(mut app: TestApp) {
    let _site = app.new_site().await;
    let read_at = app.revision().await;
    let create_site_expecting = |revision: &str| pb::MutateRequest {
        mutations: vec![pb::Mutation { op: Some(create_site(&new_id(), "expected")) }],
        expected_revision: revision.to_string(),
        ..Default::default()
    };

    app.admin.mutate(create_site_expecting(&read_at)).await.expect("the expected revision is the latest");
    let observed = app.observe().await;

    let status = app.admin.mutate(create_site_expecting(&read_at)).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(app.observe().await, observed);
}

async fn list_users_pages_through_seven_users_two_at_a_time_each_exactly_once(mut app: TestApp) {
    let ids: Vec<String> = (0..7).map(|_| new_id()).collect();
    app.apply(None, ids.iter().map(|id| create_user(id, &email_of(id), Role::User)).collect()).await;

    let mut pages: Vec<Vec<String>> = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListUsersRequest { search: String::new(), page_size: 2, page_token };
        let page = app.admin.list_users(request).await.unwrap().into_inner();
        assert!(page.users.len() <= 2, "a page of {}", page.users.len());
        pages.push(page.users.into_iter().map(|user| user.email).collect());
        assert!(pages.len() <= 7, "paging does not end");
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }

    let mut every_email: Vec<String> = ids.iter().map(|id| email_of(id)).collect();
    every_email.sort();
    assert_eq!(pages.concat(), every_email, "each user exactly once, by email");
    assert_eq!(pages.len(), 4);
}

async fn list_users_searches_email_and_name_prefixes_case_insensitively(mut app: TestApp) {
    let named = |email: &str, name: &str| {
        Op::CreateUser(pb::CreateUser { email: email.into(), name: name.into(), ..Default::default() })
    };
    app.apply(
        None,
        vec![
            named("ann@example.com", "Ann Smith"),
            named("Annika@Corp.org", "Annika Berg"),
            named("bob@example.com", "Bob Anders"),
            named("x-17@example.com", "Carol Jones"),
        ],
    )
    .await;

    assert_eq!(search(&mut app, "ANN").await, ["ann@example.com", "Annika@Corp.org"]);
    assert_eq!(search(&mut app, "bob a").await, ["bob@example.com"], "by a name prefix with a space");
    assert_eq!(search(&mut app, "cAr").await, ["x-17@example.com"], "by name only");
    assert_eq!(search(&mut app, "X-1").await, ["x-17@example.com"], "by email only");
    assert_eq!(search(&mut app, "anders").await, Vec::<String>::new(), "not a prefix");
    assert_eq!(search(&mut app, "example.com").await, Vec::<String>::new(), "not a prefix");
    assert_eq!(search(&mut app, "x_1").await, Vec::<String>::new(), "`_` is no wildcard");
    assert_eq!(search(&mut app, "%").await, Vec::<String>::new(), "`%` is no wildcard");
    assert_eq!(search(&mut app, "").await.len(), 4);
}

async fn list_users_pages_through_search_results_each_exactly_once(mut app: TestApp) {
    let team: Vec<String> = (1..=7).map(|n| format!("team-{n}@example.com")).collect();
    let mut batch: Vec<Op> = team.iter().map(|email| create_user("", email, Role::User)).collect();
    batch.push(create_user("", "adam@example.com", Role::User));
    batch.push(create_user("", "zoe@example.com", Role::User));
    app.apply(None, batch).await;

    let mut found = Vec::new();
    let mut page_token = String::new();
    for _ in 0..7 {
        let request = pb::ListUsersRequest { search: "TEAM-".into(), page_size: 2, page_token };
        let page = app.admin.list_users(request).await.unwrap().into_inner();
        found.extend(page.users.into_iter().map(|user| user.email));
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert!(page_token.is_empty(), "paging does not end");
    assert_eq!(found, team);
}

/// The emails of the users ListUsers finds for `text`.
async fn search(app: &mut TestApp, text: &str) -> Vec<String> {
    let request = pb::ListUsersRequest { search: text.into(), page_size: 100, page_token: String::new() };
    let page = app.admin.list_users(request).await.unwrap().into_inner();
    page.users.into_iter().map(|user| user.email).collect()
}

async fn health_reports_serving_once_started(mut app: TestApp) {
    for service in ["", "warden.v1.CheckService", "warden.v1.AdminService"] {
        let request = HealthCheckRequest { service: service.into() };
        let response = app.health.check(request).await.unwrap().into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "service `{service}`");
    }
}

async fn reflection_lists_the_services_on_v1_and_v1alpha(app: TestApp) {
    let channel = Channel::from_shared(format!("http://{}", app.addr)).unwrap().connect().await.unwrap();
    let listed = [("v1", list_services_v1(channel.clone()).await), ("v1alpha", list_services_v1alpha(channel).await)];

    for (version, services) in listed {
        for expected in ["warden.v1.CheckService", "warden.v1.AdminService", "grpc.health.v1.Health"] {
            assert!(services.iter().any(|s| s == expected), "{version} lacks {expected}: {services:?}");
        }
    }
}

async fn list_services_v1(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(channel);
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().expect("a reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("not a list of services: {other:?}"),
    }
}

async fn list_services_v1alpha(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut client = ServerReflectionClient::new(channel);
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let response = responses.message().await.unwrap().expect("a reflection response");
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("not a list of services: {other:?}"),
    }
}

/// Makes the database itself refuse to store a site named `explode`, so a
/// batch fails inside storage after some of its rows were already written.
pub async fn inject_storage_fault(app: &TestApp) {
    use sea_orm::{ConnectionTrait, Database, DbBackend};
    let db = Database::connect(app.database_url()).await.expect("connect to the app's database");
    let statements: &[&str] = match db.get_database_backend() {
        DbBackend::Sqlite => &["CREATE TRIGGER explode BEFORE INSERT ON sites WHEN NEW.name = 'explode' \
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END"],
        _ => &[
            "CREATE FUNCTION explode() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.name = 'explode' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER explode BEFORE INSERT ON sites FOR EACH ROW EXECUTE FUNCTION explode()",
        ],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.expect("install the fault");
    }
    db.close().await.expect("close");
}

async fn a_storage_fault_in_the_middle_of_a_commit_changes_neither_storage_nor_index(mut app: TestApp) {
    let owner = app.new_owner().await;
    let site = app.new_site().await;
    let user = app.new_user().await;
    inject_storage_fault(&app).await;
    let before = app.observe().await;
    let index_before = app.engine.index().expect("index loaded");

    let doomed = vec![
        grant_user(&user, &site, Level::Edit),
        create_site(&new_id(), "written before the fault"),
        create_site(&new_id(), "explode"),
    ];
    let status = app.mutate(Some(&owner), doomed).await.expect_err("storage refuses the batch");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(!status.message().contains("injected"), "internal causes stay in the log: {status:?}");

    assert_eq!(app.observe().await, before, "storage holds nothing of the batch");
    assert_eq!(*app.engine.index().expect("index loaded"), *index_before, "the index holds nothing of it");
    assert!(!app.can(&user, pb::Action::Edit, &site).await);

    // The next batch commits at the next revision: the failed one used none.
    let next = app.apply(Some(&owner), vec![grant_user(&user, &site, Level::Edit)]).await;
    assert_eq!(next.revision.parse::<u64>().unwrap(), before.revision.parse::<u64>().unwrap() + 1);
    assert!(app.can(&user, pb::Action::Edit, &site).await);
    let mut app = app.restart().await;
    assert!(app.can(&user, pb::Action::Edit, &site).await, "the committed batch survives a restart");
}

async fn list_answers_carry_a_revision_at_least_the_last_write(mut app: TestApp) {
    let owner = app.new_owner().await;
    let site = app.new_site().await;
    let written = app.apply(None, vec![grant_user(&owner, &site, Level::View)]).await.revision;
    let written: u64 = written.parse().unwrap();
    let users = app.admin.list_users(pb::ListUsersRequest::default()).await.unwrap().into_inner();
    let sites = app.admin.list_sites(pb::ListSitesRequest::default()).await.unwrap().into_inner();
    let grants = pb::ListGrantsRequest {
        filter: Some(pb::list_grants_request::Filter::SiteId(site.clone())),
        ..Default::default()
    };
    let grants = app.admin.list_grants(grants).await.unwrap().into_inner();
    for revision in [users.revision, sites.revision, grants.revision] {
        assert!(revision.parse::<u64>().unwrap() >= written, "{revision} < {written}");
    }
    assert_eq!(grants.grants.len(), 1, "the grant of that revision is in the answer");
}

crate::backend_tests!(
    a_restarted_server_gives_every_answer_it_gave_before,
    a_batch_whose_last_mutation_is_refused_leaves_storage_and_index_as_they_were,
    a_retried_mutate_with_the_same_idempotency_key_answers_alike_and_creates_nothing_twice,
    an_idempotency_key_is_kept_as_long_as_the_changelog_keeps_its_revision,
    a_stale_expected_revision_is_failed_precondition_and_changes_nothing,
    list_users_pages_through_seven_users_two_at_a_time_each_exactly_once,
    list_users_searches_email_and_name_prefixes_case_insensitively,
    list_users_pages_through_search_results_each_exactly_once,
    health_reports_serving_once_started,
    reflection_lists_the_services_on_v1_and_v1alpha,
    a_storage_fault_in_the_middle_of_a_commit_changes_neither_storage_nor_index,
    list_answers_carry_a_revision_at_least_the_last_write,
);

/// README's first command, as a process of its own: `warden serve` restarts
/// itself in place with deeper malloc thread caches (src/malloc.rs), once,
/// and then serves on its embedded default.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_binary_restarts_itself_once_with_deep_malloc_caches_and_serves() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let data_dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir.path())
        .env_remove("GLIBC_TUNABLES")
        .env_remove("WARDEN_MALLOC_TUNED")
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(server.stdout.take().unwrap());
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.contains("serving gRPC")
                && let Some(addr) = line.split("addr=").nth(1)
            {
                let _ = addr_tx.send(addr.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let addr = addr_rx.recv_timeout(std::time::Duration::from_secs(30)).expect("the binary never served");

    // (glibc parses GLIBC_TUNABLES in place: its `:` may read as a NUL here.)
    let environment = std::fs::read(format!("/proc/{}/environ", server.id())).unwrap();
    let environment = String::from_utf8_lossy(&environment).replace('\0', "\n");
    assert!(environment.contains("GLIBC_TUNABLES=glibc.malloc.tcache_count=4096"), "not restarted: {environment}");
    assert!(environment.contains("glibc.malloc.tcache_max=128"), "{environment}");
    assert!(environment.lines().any(|line| line == "WARDEN_MALLOC_TUNED=1"), "{environment}");

    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap(),
    );
    let mut status = ServingStatus::NotServing;
    for _ in 0..300 {
        let request = HealthCheckRequest { service: "warden.v1.CheckService".into() };
        status = health.check(request).await.unwrap().into_inner().status();
        if status == ServingStatus::Serving {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(status, ServingStatus::Serving);
    assert!(data_dir.path().join("warden.db").exists());
}
