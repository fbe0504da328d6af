//! The read side beyond yes/no (DESIGN §2, check.proto): LookupSites
//! ("which sites may this user see?"), LookupUsers (a site's Permissions
//! page) and Explain (every path to a level, and which one wins), through
//! the real gRPC API.

use std::collections::{BTreeMap, BTreeSet};

use tonic::Code;
use warden::pb::{self, Action, Level, PathKind, ReportVisibility};

use crate::helpers::*;

// --- LookupSites: who reaches what -------------------------------------------

async fn owners_reach_every_site_at_manage_including_sites_created_later(mut app: TestApp) {
    let owner = app.new_owner().await;
    let mut sites = vec![app.new_site().await, app.new_site().await];

    sites.push(app.new_site().await);
    sites.sort();
    let reached = app.lookup_sites(&owner, Level::View).await;
    let expected: Vec<_> = sites.iter().map(|site| site_access(site, Level::Manage)).collect();
    assert_eq!(reached, expected);
    assert_eq!(app.site_ids_reached(&owner, Level::Manage).await, sites);
}

async fn all_sites_grants_of_a_user_or_of_their_group_reach_every_site_including_later_ones(mut app: TestApp) {
    let earlier = app.new_site().await;
    let (everywhere, member) = (app.new_user().await, app.new_user().await);
    let group = app.new_group().await;
    app.apply(
        None,
        vec![
            grant_user_all_sites(&everywhere, Level::Edit),
            add_members(&group, &[&member]),
            grant_group_all_sites(&group, Level::View),
        ],
    )
    .await;

    let later = app.new_site().await;
    let both = sorted([earlier, later]);
    let at = |level| both.iter().map(|site| site_access(site, level)).collect::<Vec<_>>();
    assert_eq!(app.lookup_sites(&everywhere, Level::View).await, at(Level::Edit));
    assert_eq!(app.lookup_sites(&member, Level::View).await, at(Level::View));
}

async fn direct_and_group_grants_each_reach_their_site_at_the_highest_level(mut app: TestApp) {
    let [direct_only, group_only, through_both, elsewhere] =
        [app.new_site().await, app.new_site().await, app.new_site().await, app.new_site().await];
    let (user, neighbour) = (app.new_user().await, app.new_user().await);
    let group = app.new_group().await;
    app.apply(
        None,
        vec![
            add_members(&group, &[&user]),
            grant_user(&user, &direct_only, Level::Edit),
            grant_group(&group, &group_only, Level::View),
            grant_user(&user, &through_both, Level::View),
            grant_group(&group, &through_both, Level::Manage),
            grant_user(&neighbour, &elsewhere, Level::Manage),
        ],
    )
    .await;

    let mut expected = vec![
        site_access(&direct_only, Level::Edit),
        site_access(&group_only, Level::View),
        site_access(&through_both, Level::Manage),
    ];
    expected.sort_by(|a, b| a.site_id.cmp(&b.site_id));
    assert_eq!(app.lookup_sites(&user, Level::View).await, expected);
}

async fn min_level_keeps_the_sites_at_or_above_it_and_unspecified_means_view(mut app: TestApp) {
    let [viewed, edited, published, managed, elsewhere] =
        [app.new_site().await, app.new_site().await, app.new_site().await, app.new_site().await, app.new_site().await];
    let user = app.new_user().await;
    app.apply(
        None,
        vec![
            grant_user(&user, &viewed, Level::View),
            grant_user(&user, &edited, Level::Edit),
            grant_user(&user, &published, Level::EditPublish),
            grant_user(&user, &managed, Level::Manage),
        ],
    )
    .await;

    let all_four = sorted([viewed.clone(), edited.clone(), published.clone(), managed.clone()]);
    assert_eq!(app.site_ids_reached(&user, Level::View).await, all_four);
    assert_eq!(app.site_ids_reached(&user, Level::Unspecified).await, all_four);
    assert_eq!(app.site_ids_reached(&user, Level::Edit).await, sorted([edited, published.clone(), managed.clone()]));
    assert_eq!(app.site_ids_reached(&user, Level::EditPublish).await, sorted([published, managed.clone()]));
    assert_eq!(app.site_ids_reached(&user, Level::Manage).await, vec![managed.clone()]);

    // An all-sites grant below the minimum does not bring in every site.
    app.apply(None, vec![grant_user_all_sites(&user, Level::Edit)]).await;
    assert_eq!(app.site_ids_reached(&user, Level::Manage).await, vec![managed]);
    assert!(app.site_ids_reached(&user, Level::Edit).await.contains(&elsewhere));
}

async fn a_min_level_of_no_access_is_invalid_argument_naming_min_level(mut app: TestApp) {
    let (user, site) = (app.new_user().await, app.new_site().await);

    let sites = app.check.lookup_sites(lookup_sites_request(&user, Level::NoAccess, 0, "")).await.unwrap_err();
    assert_eq!(sites.code(), Code::InvalidArgument, "{sites:?}");
    assert!(sites.message().contains("min_level"), "{sites:?}");

    let users = app.check.lookup_users(lookup_users_request(&site, Level::NoAccess, 0, "")).await.unwrap_err();
    assert_eq!(users.code(), Code::InvalidArgument, "{users:?}");
    assert!(users.message().contains("min_level"), "{users:?}");
}

async fn sites_come_in_id_order_and_pages_of_three_return_each_site_exactly_once(mut app: TestApp) {
    let user = app.new_user().await;
    let mut sites = Vec::new();
    for _ in 0..10 {
        let site = app.new_site().await;
        app.apply(None, vec![grant_user(&user, &site, Level::View)]).await;
        sites.push(site);
    }
    let _not_reached = app.new_site().await;
    sites.sort();

    assert_eq!(app.site_ids_reached(&user, Level::View).await, sites, "one default page, in id order");
    let (mut walked, mut token) = (Vec::new(), String::new());
    for page_number in 1.. {
        let page = app.lookup_sites_page(&user, Level::View, 3, &token).await;
        assert!(!page.sites.is_empty() && page.sites.len() <= 3, "page {page_number}: {page:?}");
        walked.extend(page.sites.into_iter().map(|access| access.site_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(page_number < 10, "more pages than sites");
        token = page.next_page_token;
    }
    assert_eq!(walked, sites, "every site exactly once, in id order");
}

async fn an_unknown_user_reaches_no_site_and_that_is_not_an_error(mut app: TestApp) {
    let _owner = app.new_owner().await;
    let site = app.new_site().await;
    let nobody = new_id();
    let with_no_grants = app.new_user().await;

    let page = app.lookup_sites_page(&nobody, Level::View, 0, "").await;
    assert_eq!(page.sites, Vec::new());
    assert_eq!(page.next_page_token, "");
    assert_eq!(app.lookup_sites(&with_no_grants, Level::View).await, Vec::new());
    assert_eq!(app.lookup_users(&site, Level::Manage).await.len(), 1, "only the owner reaches the site");
}

async fn every_read_answer_carries_a_revision_at_least_the_last_write(mut app: TestApp) {
    let owner = app.new_owner().await;
    let site = app.new_site().await;
    let user = app.new_user().await;
    let written = app.apply(None, vec![grant_user(&user, &site, Level::Edit)]).await.revision;
    let written = revision_number(&written);

    let sites = app.lookup_sites_page(&user, Level::View, 0, "").await;
    assert!(revision_number(&sites.revision) >= written, "{sites:?} after revision {written}");
    let users = app.lookup_users_page(&site, Level::View, 0, "").await;
    assert!(revision_number(&users.revision) >= written, "{users:?} after revision {written}");
    let explained = app.explain(&user, site_resource(&site)).await;
    assert!(revision_number(&explained.revision) >= written, "{explained:?} after revision {written}");
    let unknown = app.lookup_sites_page(&new_id(), Level::View, 0, "").await;
    assert!(revision_number(&unknown.revision) >= written, "even an empty answer: {unknown:?}");

    let later = app.apply(None, vec![grant_user(&owner, &site, Level::View)]).await.revision;
    let sites = app.lookup_sites_page(&user, Level::View, 0, "").await;
    assert!(revision_number(&sites.revision) >= revision_number(&later), "{sites:?} after revision {later}");
}

/// How a site or user that qualifies at the start of a walk stops qualifying during it.
#[derive(Clone, Copy, Debug)]
enum Loss {
    OwnGrantRevoked,
    GroupGrantRevoked,
    Deleted,
}

const LOSSES: [Loss; 3] = [Loss::OwnGrantRevoked, Loss::GroupGrantRevoked, Loss::Deleted];

async fn paging_sites_while_grants_change_returns_each_site_that_qualified_throughout_exactly_once(mut app: TestApp) {
    let user = app.new_user().await;
    let group = app.new_group().await;
    let mut setup = vec![add_members(&group, &[&user])];
    // Sites the user reaches for the whole walk: through their own grant,
    // their group's, or both (one of the two is revoked during the walk).
    let (mut steady, mut through_both) = (BTreeSet::new(), Vec::new());
    for i in 0..12 {
        let site = new_id();
        setup.push(create_site(&site, &format!("steady {i}")));
        match i % 3 {
            0 => setup.push(grant_user(&user, &site, Level::View)),
            1 => setup.push(grant_group(&group, &site, Level::Edit)),
            _ => {
                setup.push(grant_user(&user, &site, Level::Edit));
                setup.push(grant_group(&group, &site, Level::View));
                through_both.push(site.clone());
            }
        }
        steady.insert(site);
    }
    // Sites the user reaches at the start and loses during the walk.
    let mut doomed = Vec::new();
    for (i, loss) in LOSSES.iter().cycle().take(6).enumerate() {
        let site = new_id();
        setup.push(create_site(&site, &format!("doomed {i}")));
        setup.push(match loss {
            Loss::GroupGrantRevoked => grant_group(&group, &site, Level::View),
            Loss::OwnGrantRevoked | Loss::Deleted => grant_user(&user, &site, Level::View),
        });
        doomed.push((site, *loss));
    }
    // Sites the user reaches only from some point during the walk.
    let mut late = Vec::new();
    for i in 0..6 {
        let site = new_id();
        setup.push(create_site(&site, &format!("late {i}")));
        late.push(site);
    }
    let mut ever_reached: BTreeSet<String> = steady.iter().chain(late.iter()).cloned().collect();
    ever_reached.extend(doomed.iter().map(|(site, _)| site.clone()));
    let mut last_write = revision_number(&app.apply(None, setup).await.revision);

    let (mut walked, mut token) = (Vec::new(), String::new());
    for step in 0.. {
        let page = app.lookup_sites_page(&user, Level::View, 3, &token).await;
        assert!(page.sites.len() <= 3, "{page:?}");
        assert!(revision_number(&page.revision) >= last_write, "page at {} after revision {last_write}", page.revision);
        walked.extend(page.sites.into_iter().map(|access| access.site_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(step < 100, "the walk does not end");
        token = page.next_page_token;

        // Between pages the world changes: one site is lost, one gained, a
        // brand-new site is granted, and a steady site loses one of its two paths.
        let mut changes = Vec::new();
        if let Some((site, loss)) = doomed.pop() {
            changes.push(match loss {
                Loss::OwnGrantRevoked => grant_user(&user, &site, Level::NoAccess),
                Loss::GroupGrantRevoked => grant_group(&group, &site, Level::NoAccess),
                Loss::Deleted => delete_site(&site),
            });
        }
        if let Some(site) = late.pop() {
            changes.push(grant_group(&group, &site, Level::Edit));
        }
        if step < 6 {
            let (granted, ungranted) = (new_id(), new_id());
            changes.push(create_site(&granted, &format!("new {step}")));
            changes.push(grant_user(&user, &granted, Level::View));
            changes.push(create_site(&ungranted, &format!("unreached {step}")));
            ever_reached.insert(granted);
        }
        if let Some(site) = through_both.pop() {
            changes.push(grant_user(&user, &site, Level::NoAccess));
        }
        if !changes.is_empty() {
            last_write = revision_number(&app.apply(None, changes).await.revision);
        }
    }

    assert!(walked.windows(2).all(|pair| pair[0] < pair[1]), "ids strictly increase over the walk: {walked:?}");
    let seen: BTreeSet<String> = walked.iter().cloned().collect();
    assert_eq!(seen.len(), walked.len(), "no site twice: {walked:?}");
    let missed: Vec<_> = steady.difference(&seen).collect();
    assert!(missed.is_empty(), "sites reached throughout but missed: {missed:?}");
    let strangers: Vec<_> = seen.difference(&ever_reached).collect();
    assert!(strangers.is_empty(), "sites the user never reached: {strangers:?}");
}

// --- LookupUsers: a site's Permissions page ----------------------------------

async fn lookup_users_lists_everyone_who_reaches_a_site_with_the_paths_of_their_level(mut app: TestApp) {
    let (site, elsewhere) = (app.new_site().await, app.new_site().await);
    let owner = app.new_owner().await;
    let [direct, everywhere, member, wide_member, mixed, outsider, neighbour] = [
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
    ];
    let (editors, readers) = (new_id(), new_id());
    app.apply(
        None,
        vec![
            create_group(&editors, "Editors"),
            create_group(&readers, "Readers"),
            add_members(&editors, &[&member, &mixed, &outsider]),
            add_members(&readers, &[&wide_member, &mixed]),
            grant_group(&editors, &site, Level::EditPublish),
            grant_group_all_sites(&readers, Level::View),
            grant_user(&direct, &site, Level::Edit),
            grant_user_all_sites(&everywhere, Level::View),
            grant_user(&mixed, &site, Level::View),
            grant_user_all_sites(&mixed, Level::Edit),
            grant_user(&neighbour, &elsewhere, Level::Manage),
            remove_members(&editors, &[&outsider]),
        ],
    )
    .await;
    let editors_path = |level, wins| group_path(PathKind::Group, level, &editors, "Editors", wins);
    let readers_path = |level, wins| group_path(PathKind::GroupAllSites, level, &readers, "Readers", wins);

    let expected = BTreeMap::from([
        (owner, (Level::Manage, vec![path(PathKind::Owner, Level::Manage, true)])),
        (direct, (Level::Edit, vec![path(PathKind::Direct, Level::Edit, true)])),
        (everywhere, (Level::View, vec![path(PathKind::AllSites, Level::View, true)])),
        (member, (Level::EditPublish, vec![editors_path(Level::EditPublish, true)])),
        (wide_member, (Level::View, vec![readers_path(Level::View, true)])),
        (
            mixed,
            (
                Level::EditPublish,
                vec![
                    path(PathKind::Direct, Level::View, false),
                    path(PathKind::AllSites, Level::Edit, false),
                    editors_path(Level::EditPublish, true),
                    readers_path(Level::View, false),
                ],
            ),
        ),
    ]);
    let users = app.lookup_users(&site, Level::View).await;
    let ids: Vec<_> = users.iter().map(|access| access.user_id.clone()).collect();
    assert_eq!(ids, expected.keys().cloned().collect::<Vec<_>>(), "everyone who reaches the site, in id order");
    for access in users {
        let (level, paths) = &expected[&access.user_id];
        assert_eq!(access.level, *level as i32, "level of {}", access.user_id);
        assert_eq!(in_kind_order(access.paths.clone()), *paths, "paths of {}", access.user_id);
        assert_eq!(access.paths.iter().filter(|p| p.wins).count(), 1, "one winner for {}", access.user_id);
    }
}

async fn lookup_users_min_level_keeps_the_users_at_or_above_it(mut app: TestApp) {
    let site = app.new_site().await;
    let owner = app.new_owner().await;
    let [viewer, editor, publisher, manager] =
        [app.new_user().await, app.new_user().await, app.new_user().await, app.new_user().await];
    let group = app.new_group().await;
    app.apply(
        None,
        vec![
            grant_user(&viewer, &site, Level::View),
            grant_user(&editor, &site, Level::View),
            grant_user_all_sites(&editor, Level::Edit),
            add_members(&group, &[&publisher]),
            grant_group(&group, &site, Level::EditPublish),
            grant_user(&manager, &site, Level::Manage),
        ],
    )
    .await;

    let everyone = sorted([owner.clone(), viewer, editor.clone(), publisher.clone(), manager.clone()]);
    assert_eq!(app.user_ids_reaching(&site, Level::View).await, everyone);
    assert_eq!(app.user_ids_reaching(&site, Level::Unspecified).await, everyone);
    let editors = sorted([owner.clone(), editor, publisher.clone(), manager.clone()]);
    assert_eq!(app.user_ids_reaching(&site, Level::Edit).await, editors);
    assert_eq!(
        app.user_ids_reaching(&site, Level::EditPublish).await,
        sorted([owner.clone(), publisher, manager.clone()])
    );
    assert_eq!(app.user_ids_reaching(&site, Level::Manage).await, sorted([owner, manager]));
}

async fn users_come_in_id_order_and_pages_of_three_return_each_user_exactly_once(mut app: TestApp) {
    let site = app.new_site().await;
    let group = app.new_group().await;
    let mut users = vec![app.new_owner().await];
    for i in 0..10 {
        let user = app.new_user().await;
        app.apply(
            None,
            vec![match i % 3 {
                0 => grant_user(&user, &site, Level::View),
                1 => grant_user_all_sites(&user, Level::Edit),
                _ => add_members(&group, &[&user]),
            }],
        )
        .await;
        users.push(user);
    }
    app.apply(None, vec![grant_group(&group, &site, Level::View)]).await;
    let _no_access = app.new_user().await;
    users.sort();

    assert_eq!(app.user_ids_reaching(&site, Level::View).await, users, "one default page, in id order");
    let (mut walked, mut token) = (Vec::new(), String::new());
    for page_number in 1.. {
        let page = app.lookup_users_page(&site, Level::View, 3, &token).await;
        assert!(!page.users.is_empty() && page.users.len() <= 3, "page {page_number}: {page:?}");
        walked.extend(page.users.into_iter().map(|access| access.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(page_number < 11, "more pages than users");
        token = page.next_page_token;
    }
    assert_eq!(walked, users, "every user exactly once, in id order");
}

async fn an_unknown_site_is_reached_by_nobody_not_even_owners_and_that_is_not_an_error(mut app: TestApp) {
    let _owner = app.new_owner().await;
    let user = app.new_user().await;
    app.apply(None, vec![grant_user_all_sites(&user, Level::Manage)]).await;

    let page = app.lookup_users_page(&new_id(), Level::View, 0, "").await;
    assert_eq!(page.users, Vec::new());
    assert_eq!(page.next_page_token, "");
}

async fn paging_users_while_grants_change_returns_each_user_who_qualified_throughout_exactly_once(mut app: TestApp) {
    let site = app.new_site().await;
    let (group, wide_group) = (app.new_group().await, app.new_group().await);
    let mut setup = vec![grant_group(&group, &site, Level::Edit), grant_group_all_sites(&wide_group, Level::View)];
    // Users who reach the site for the whole walk, in every way there is.
    let (mut steady, mut through_both) = (BTreeSet::new(), Vec::new());
    for i in 0..12 {
        let user = new_id();
        let role = if i % 5 == 0 { pb::Role::Owner } else { pb::Role::User };
        setup.push(create_user(&user, &email_of(&user), role));
        match i % 5 {
            0 => {} // an owner
            1 => setup.push(grant_user(&user, &site, Level::View)),
            2 => setup.push(grant_user_all_sites(&user, Level::View)),
            3 => setup.push(add_members(&group, &[&user])),
            _ => {
                setup.push(grant_user(&user, &site, Level::Manage));
                setup.push(add_members(&wide_group, &[&user]));
                through_both.push(user.clone());
            }
        }
        steady.insert(user);
    }
    // Users who reach the site at the start and lose it during the walk.
    let mut doomed = Vec::new();
    for loss in LOSSES.iter().cycle().take(6) {
        let user = new_id();
        setup.push(create_user(&user, &email_of(&user), pb::Role::User));
        setup.push(match loss {
            Loss::GroupGrantRevoked => add_members(&group, &[&user]),
            Loss::OwnGrantRevoked | Loss::Deleted => grant_user(&user, &site, Level::View),
        });
        doomed.push((user, *loss));
    }
    // Users who reach the site only from some point during the walk.
    let mut late = Vec::new();
    for _ in 0..6 {
        let user = new_id();
        setup.push(create_user(&user, &email_of(&user), pb::Role::User));
        late.push(user);
    }
    let mut ever_reaching: BTreeSet<String> = steady.iter().chain(late.iter()).cloned().collect();
    ever_reaching.extend(doomed.iter().map(|(user, _)| user.clone()));
    let mut last_write = revision_number(&app.apply(None, setup).await.revision);

    let (mut walked, mut token) = (Vec::new(), String::new());
    for step in 0.. {
        let page = app.lookup_users_page(&site, Level::View, 3, &token).await;
        assert!(page.users.len() <= 3, "{page:?}");
        assert!(revision_number(&page.revision) >= last_write, "page at {} after revision {last_write}", page.revision);
        walked.extend(page.users.into_iter().map(|access| access.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        assert!(step < 100, "the walk does not end");
        token = page.next_page_token;

        // Between pages: one user loses the site, one gains it, a new user
        // is granted it, and a steady user loses one of their two paths.
        let mut changes = Vec::new();
        if let Some((user, loss)) = doomed.pop() {
            changes.push(match loss {
                Loss::OwnGrantRevoked => grant_user(&user, &site, Level::NoAccess),
                Loss::GroupGrantRevoked => remove_members(&group, &[&user]),
                Loss::Deleted => delete_user(&user),
            });
        }
        if let Some(user) = late.pop() {
            changes.push(add_members(&wide_group, &[&user]));
        }
        if step < 6 {
            let (granted, ungranted) = (new_id(), new_id());
            changes.push(create_user(&granted, &email_of(&granted), pb::Role::User));
            changes.push(grant_user(&granted, &site, Level::Edit));
            changes.push(create_user(&ungranted, &email_of(&ungranted), pb::Role::User));
            ever_reaching.insert(granted);
        }
        if let Some(user) = through_both.pop() {
            changes.push(grant_user(&user, &site, Level::NoAccess));
        }
        if !changes.is_empty() {
            last_write = revision_number(&app.apply(None, changes).await.revision);
        }
    }

    assert!(walked.windows(2).all(|pair| pair[0] < pair[1]), "ids strictly increase over the walk: {walked:?}");
    let seen: BTreeSet<String> = walked.iter().cloned().collect();
    assert_eq!(seen.len(), walked.len(), "no user twice: {walked:?}");
    let missed: Vec<_> = steady.difference(&seen).collect();
    assert!(missed.is_empty(), "users who reached the site throughout but were missed: {missed:?}");
    let strangers: Vec<_> = seen.difference(&ever_reaching).collect();
    assert!(strangers.is_empty(), "users who never reached the site: {strangers:?}");
}

// --- Explain -----------------------------------------------------------------

async fn explain_lists_every_path_to_a_site_and_the_highest_one_wins(mut app: TestApp) {
    let site = app.new_site().await;
    let user = app.new_user().await;
    let (publishers, readers, admins) = (new_id(), new_id(), new_id());
    app.apply(
        None,
        vec![
            create_group(&publishers, "Publishers"),
            create_group(&readers, "Readers"),
            create_group(&admins, "Admins"),
            add_members(&publishers, &[&user]),
            add_members(&readers, &[&user]),
            grant_user(&user, &site, Level::View),
            grant_user_all_sites(&user, Level::Edit),
            grant_group(&publishers, &site, Level::EditPublish),
            grant_group_all_sites(&publishers, Level::View),
            grant_group_all_sites(&readers, Level::View),
            grant_group(&admins, &site, Level::Manage),
        ],
    )
    .await;

    let explained = app.explain(&user, site_resource(&site)).await;
    assert_eq!(explained.effective_level, Level::EditPublish as i32);
    assert_eq!(explained.site_id, site);
    assert_eq!(explained.report, None);
    assert_eq!(
        in_kind_order(explained.paths),
        vec![
            path(PathKind::Direct, Level::View, false),
            path(PathKind::AllSites, Level::Edit, false),
            group_path(PathKind::Group, Level::EditPublish, &publishers, "Publishers", true),
            group_path(PathKind::GroupAllSites, Level::View, &publishers, "Publishers", false),
            group_path(PathKind::GroupAllSites, Level::View, &readers, "Readers", false),
        ]
    );
    assert_eq!(app.level(&user, &site).await, Level::EditPublish, "Explain agrees with Check");

    // An owner's role is a path of its own, and it wins over any grant.
    app.apply(None, vec![set_role(&user, pb::Role::Owner)]).await;
    let explained = app.explain(&user, site_resource(&site)).await;
    assert_eq!(explained.effective_level, Level::Manage as i32);
    let paths = in_kind_order(explained.paths);
    assert_eq!(paths[0], path(PathKind::Owner, Level::Manage, true));
    assert_eq!(paths.len(), 6, "the grants are still listed: {paths:?}");
    assert_eq!(paths.iter().filter(|p| p.wins).count(), 1, "{paths:?}");
}

async fn among_paths_at_the_effective_level_the_first_in_kind_order_wins(mut app: TestApp) {
    let site = app.new_site().await;
    let [direct_and_all_sites, all_sites_and_group] = [app.new_user().await, app.new_user().await];
    let site_group = app.new_group().await;
    let mut setup = vec![
        grant_user(&direct_and_all_sites, &site, Level::Edit),
        grant_user_all_sites(&direct_and_all_sites, Level::Edit),
        grant_user_all_sites(&all_sites_and_group, Level::Edit),
        add_members(&site_group, &[&all_sites_and_group]),
        grant_group(&site_group, &site, Level::Edit),
    ];
    let mut expected = vec![(direct_and_all_sites, PathKind::Direct), (all_sites_and_group, PathKind::AllSites)];
    // Users in one group that reaches this site and in several groups that
    // reach every site, all at the same level: however groups are ordered,
    // GROUP comes before GROUP_ALL_SITES in the kind order. (Each user has
    // groups of their own, so that no one ordering of groups decides for all.)
    for user_number in 0..3 {
        let user = new_id();
        let own_site_group = new_id();
        setup.push(create_user(&user, &email_of(&user), pb::Role::User));
        setup.push(create_group(&own_site_group, &format!("site group {user_number}")));
        setup.push(add_members(&own_site_group, &[&user]));
        setup.push(grant_group(&own_site_group, &site, Level::Edit));
        for i in 0..8 {
            let wide = new_id();
            setup.push(create_group(&wide, &format!("wide {user_number}.{i}")));
            setup.push(add_members(&wide, &[&user]));
            setup.push(grant_group_all_sites(&wide, Level::Edit));
        }
        expected.push((user, PathKind::Group));
    }
    app.apply(None, setup).await;

    let listed: BTreeMap<String, Vec<pb::AccessPath>> =
        app.lookup_users(&site, Level::View).await.into_iter().map(|access| (access.user_id, access.paths)).collect();
    for (user, winner) in &expected {
        let explained = app.explain(user, site_resource(&site)).await;
        assert_eq!(explained.effective_level, Level::Edit as i32);
        for (answer, paths) in [("Explain", &explained.paths), ("LookupUsers", &listed[user])] {
            let winners: Vec<_> = paths.iter().filter(|p| p.wins).collect();
            assert_eq!(winners.len(), 1, "{answer}: exactly one winner: {paths:?}");
            assert_eq!(winners[0].kind, *winner as i32, "{answer}: the first path in kind order wins: {paths:?}");
        }
    }
}

async fn explaining_an_unknown_user_site_or_report_shows_no_paths_and_no_access(mut app: TestApp) {
    let owner = app.new_owner().await;
    let user = app.new_user().await;
    let site = app.new_site().await;
    app.apply(None, vec![grant_user_all_sites(&user, Level::Manage)]).await;
    let (unknown_user, unknown_site, unknown_report) = (new_id(), new_id(), new_id());

    for (who, resource) in [
        (&unknown_user, site_resource(&site)),
        (&user, site_resource(&unknown_site)),
        (&owner, site_resource(&unknown_site)),
        (&user, pb::resource::Kind::ReportId(unknown_report.clone())),
        (&owner, pb::resource::Kind::ReportId(unknown_report.clone())),
    ] {
        let explained = app.explain(who, resource.clone()).await;
        assert_eq!(explained.paths, Vec::new(), "{who} on {resource:?}");
        assert_eq!(explained.effective_level, Level::NoAccess as i32, "{who} on {resource:?}");
        let report = explained.report.unwrap_or_default();
        assert!(!report.can_view && !report.can_edit && !report.can_delete, "{who} on {resource:?}: {report:?}");
    }
}

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

async fn write_report(app: &mut TestApp, cast: &ReportCast, visibility: ReportVisibility) -> String {
    let report = new_id();
    app.apply(Some(&cast.author), vec![create_report(&report, &cast.site, &cast.author, visibility)]).await;
    report
}

/// What Explain says `user` may do with `report`, as (view, edit, delete),
/// after checking that it agrees with Check and gives a reason.
async fn explained_report_rights(app: &mut TestApp, user: &str, report: &str, site: &str) -> (bool, bool, bool) {
    let explained = app.explain(user, pb::resource::Kind::ReportId(report.to_string())).await;
    let access = explained.report.clone().unwrap_or_else(|| panic!("no report access for {user}: {explained:?}"));
    assert!(!access.reason.trim().is_empty(), "a reason for {user}: {explained:?}");
    assert_eq!(explained.site_id, site, "the report's site");
    assert_eq!(explained.effective_level, app.level(user, site).await as i32, "the level on the report's site");
    let checked = (
        app.can_report(user, Action::View, report).await,
        app.can_report(user, Action::Edit, report).await,
        app.can_report(user, Action::Delete, report).await,
    );
    let explained_rights = (access.can_view, access.can_edit, access.can_delete);
    assert_eq!(explained_rights, checked, "Explain agrees with Check for {user}: {}", access.reason);
    explained_rights
}

const ALL: (bool, bool, bool) = (true, true, true);
const VIEW_ONLY: (bool, bool, bool) = (true, false, false);
const DELETE_ONLY: (bool, bool, bool) = (false, false, true);
const NOTHING: (bool, bool, bool) = (false, false, false);

async fn explain_of_an_author_only_report_keeps_it_private_and_agrees_with_check(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    for (user, expected) in [
        (&cast.author, ALL),
        (&cast.owner, DELETE_ONLY),
        (&cast.editor, NOTHING),
        (&cast.viewer, NOTHING),
        (&cast.stranger, NOTHING),
    ] {
        assert_eq!(explained_report_rights(&mut app, user, &report, &cast.site).await, expected, "for {user}");
    }
}

async fn explain_of_an_all_users_report_follows_the_level_on_its_site_and_agrees_with_check(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AllUsers).await;

    for (user, expected) in [
        (&cast.author, ALL),
        (&cast.owner, ALL),
        (&cast.editor, ALL),
        (&cast.viewer, VIEW_ONLY),
        (&cast.stranger, NOTHING),
    ] {
        assert_eq!(explained_report_rights(&mut app, user, &report, &cast.site).await, expected, "for {user}");
    }
}

async fn explain_of_a_report_whose_author_lost_view_allows_the_author_nothing(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let private = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;
    let shared = write_report(&mut app, &cast, ReportVisibility::AllUsers).await;

    app.apply(None, vec![grant_user(&cast.author, &cast.site, Level::NoAccess)]).await;
    assert_eq!(explained_report_rights(&mut app, &cast.author, &private, &cast.site).await, NOTHING);
    assert_eq!(explained_report_rights(&mut app, &cast.author, &shared, &cast.site).await, NOTHING);
    let explained = app.explain(&cast.author, pb::resource::Kind::ReportId(private.clone())).await;
    assert_eq!(explained.paths, Vec::new(), "no path to the site any more");
}

async fn explain_tells_an_owner_they_may_only_delete_an_author_only_report(mut app: TestApp) {
    let cast = report_cast(&mut app).await;
    let report = write_report(&mut app, &cast, ReportVisibility::AuthorOnly).await;

    let explained = app.explain(&cast.owner, pb::resource::Kind::ReportId(report.clone())).await;
    assert_eq!(explained.effective_level, Level::Manage as i32, "the owner manages the report's site");
    assert_eq!(explained.paths, vec![path(PathKind::Owner, Level::Manage, true)]);
    let access = explained.report.expect("report access");
    assert_eq!((access.can_view, access.can_edit, access.can_delete), DELETE_ONLY, "{}", access.reason);
    assert!(!access.reason.trim().is_empty());
    assert_eq!(app.allowed_on_report(&cast.owner, &report).await, [Action::Delete], "Check agrees");
}

// --- Expected values ---------------------------------------------------------

fn site_access(site: &str, level: Level) -> pb::SiteAccess {
    pb::SiteAccess { site_id: site.to_string(), level: level as i32 }
}

fn path(kind: PathKind, level: Level, wins: bool) -> pb::AccessPath {
    pb::AccessPath { kind: kind as i32, level: level as i32, group_id: String::new(), group_name: String::new(), wins }
}

fn group_path(kind: PathKind, level: Level, group: &str, name: &str, wins: bool) -> pb::AccessPath {
    pb::AccessPath { group_id: group.to_string(), group_name: name.to_string(), ..path(kind, level, wins) }
}

/// Paths in kind order (then by group name): the answer's order among
/// groups is not part of the contract.
fn in_kind_order(mut paths: Vec<pb::AccessPath>) -> Vec<pb::AccessPath> {
    paths.sort_by(|a, b| (a.kind, &a.group_name).cmp(&(b.kind, &b.group_name)));
    paths
}

fn sorted<const N: usize>(ids: [String; N]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

crate::backend_tests!(
    owners_reach_every_site_at_manage_including_sites_created_later,
    all_sites_grants_of_a_user_or_of_their_group_reach_every_site_including_later_ones,
    direct_and_group_grants_each_reach_their_site_at_the_highest_level,
    min_level_keeps_the_sites_at_or_above_it_and_unspecified_means_view,
    a_min_level_of_no_access_is_invalid_argument_naming_min_level,
    sites_come_in_id_order_and_pages_of_three_return_each_site_exactly_once,
    an_unknown_user_reaches_no_site_and_that_is_not_an_error,
    every_read_answer_carries_a_revision_at_least_the_last_write,
    paging_sites_while_grants_change_returns_each_site_that_qualified_throughout_exactly_once,
    lookup_users_lists_everyone_who_reaches_a_site_with_the_paths_of_their_level,
    lookup_users_min_level_keeps_the_users_at_or_above_it,
    users_come_in_id_order_and_pages_of_three_return_each_user_exactly_once,
    an_unknown_site_is_reached_by_nobody_not_even_owners_and_that_is_not_an_error,
    paging_users_while_grants_change_returns_each_user_who_qualified_throughout_exactly_once,
    explain_lists_every_path_to_a_site_and_the_highest_one_wins,
    among_paths_at_the_effective_level_the_first_in_kind_order_wins,
    explaining_an_unknown_user_site_or_report_shows_no_paths_and_no_access,
    explain_of_an_author_only_report_keeps_it_private_and_agrees_with_check,
    explain_of_an_all_users_report_follows_the_level_on_its_site_and_agrees_with_check,
    explain_of_a_report_whose_author_lost_view_allows_the_author_nothing,
    explain_tells_an_owner_they_may_only_delete_an_author_only_report,
);
