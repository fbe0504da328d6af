//! Model check: thousands of random mutation batches against a running
//! warden, each replayed on the naive reference model in `reference.rs`.
//!
//! - Every batch must be accepted by warden exactly when the model accepts it;
//!   a refused batch changes nothing in either.
//! - After every batch a random sample of checks (unknown ids included) must
//!   answer `allowed` and `effective_level` as the model does.
//! - At checkpoints every check of the small universe is compared, and the
//!   live index must equal one rebuilt from storage.
//! - At the same checkpoints (and after each restart) the read side beyond
//!   yes/no is compared too: LookupSites for every user and LookupUsers for
//!   every site (unknown ids included), each walked to its end in small random
//!   pages, and Explain for a random sample of (user, site) and (user, report)
//!   pairs. At a case's end and after a restart the lookups are asked at every
//!   least level; at the checkpoints in between, at one random least level per
//!   user and site (a quarter of the walks, to keep a run under a minute).
//! - Once per case the server restarts and must answer the same from storage alone.
//!
//! Ids come from a small fixed universe so that batches collide: they create
//! what exists, delete what does not, and grant to what was just deleted.
//! Mutations are drawn as [`Pick`]s ("an existing site", "a free group slot",
//! "any user slot") and resolved against the model just before sending, so
//! most batches are valid and the rest are refused for a reason worth testing.
//! Each case starts from a small world: the owner `u0` and a few users, sites and groups.
//!
//! Runs are reproducible: the seed is printed and in every failure message;
//! `WARDEN_MODEL_SEED=<seed>` replays a run and `WARDEN_MODEL_CASES=<n>` runs
//! more cases. A failure prints the batch history of its case and the model's state.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};
use tonic::Code;
use warden::index::Index;
use warden::pb::mutation::Op;
use warden::pb::resource::Kind as Resource;
use warden::pb::set_grant::Target;
use warden::pb::subject::Kind as Subject;
use warden::pb::{self, Action, Level, ReportVisibility, Role};
use warden::store::Store;

use crate::backend_tests;
use crate::helpers::{
    ALL_ACTIONS, TestApp, create_group, create_report, create_site, create_user, delete_group, delete_report,
    delete_site, delete_user, instance, lookup_sites_request, lookup_users_request, rename_site, set_grant, set_role,
};
use crate::reference::Reference;

backend_tests!(random_batches_agree_with_the_reference_model);

const DEFAULT_CASES: usize = 25;
const BATCHES_PER_CASE: usize = 80;
const SAMPLED_CHECKS_PER_BATCH: usize = 24;
/// Every this many batches: every check of the universe, and the live index
/// against one rebuilt from storage.
const CHECKPOINT_EVERY: usize = 20;
/// The least levels the lookup sweeps ask for.
const LOOKUP_MIN_LEVELS: [Level; 4] = [Level::View, Level::Edit, Level::EditPublish, Level::Manage];
/// Lookups are walked in pages of 1 to this many entries (drawn per walk), so
/// that paging is exercised on a universe of a few users and sites.
const MAX_LOOKUP_PAGE_SIZE: u64 = 4;
/// A walk that has not ended after this many pages is a failure (no loop forever).
const MAX_LOOKUP_PAGES: usize = 64;
/// Explain calls per sweep, for (user, site) pairs and again for (user, report) pairs.
const SAMPLED_EXPLAINS_PER_SWEEP: usize = 8;

const SEED_ENV: &str = "WARDEN_MODEL_SEED";
const CASES_ENV: &str = "WARDEN_MODEL_CASES";

/// Drives every case on one server: reset to the starting world, send each
/// batch and compare, restart once, and compare everything at checkpoints.
async fn random_batches_agree_with_the_reference_model(mut app: TestApp) {
    let started = Instant::now();
    let seed = std::env::var(SEED_ENV)
        .map(|seed| seed.parse().expect("WARDEN_MODEL_SEED is a u64"))
        .unwrap_or_else(|_| uuid::Uuid::new_v4().as_u64_pair().0);
    let cases = std::env::var(CASES_ENV).map_or(DEFAULT_CASES, |n| n.parse().expect("WARDEN_MODEL_CASES is a number"));
    let backend = app.database_url().split(':').next().unwrap_or_default().to_string();
    eprintln!("model check on {backend}: seed {seed} (replay with {SEED_ENV}={seed})");

    let mut run = ModelCheck {
        backend,
        seed,
        case: 0,
        reference: Reference::default(),
        history: Vec::new(),
        revision: String::new(),
        store: None,
        stats: Stats::default(),
        rng: SplitMix64(seed),
    };
    for (number, case) in generate_cases(seed, cases).iter().enumerate() {
        run.start_case(&mut app, number, case).await;
        for (position, plan) in case.batches.iter().enumerate() {
            let batch = plan.resolve(&run.reference);
            run.send(&mut app, &batch).await;
            run.compare_checks(&mut app, &plan.checks).await;
            if position == case.restart_after {
                app = app.restart().await;
                run.stats.restarts += 1;
                run.history.push("-- server restarted".to_string());
                run.compare_everything(&mut app, Sweep::Full).await;
            }
            let case_end = position + 1 == case.batches.len();
            if (position + 1) % CHECKPOINT_EVERY == 0 || case_end {
                run.compare_index_with_rebuilt(&app).await;
                run.compare_everything(&mut app, if case_end { Sweep::Full } else { Sweep::Sampled }).await;
            }
        }
    }

    let stats = &run.stats;
    let covered: Vec<String> = stats.mutations_accepted.iter().map(|(what, n)| format!("{what} {n}")).collect();
    eprintln!(
        "model check on {}: {cases} cases, {} batches accepted, {} refused, {} checks, {} lookup walks in {} pages, {} explains (lookups took {:.1?}), {} index rebuilds, {} restarts in {:.1?}\n  accepted mutations: {}",
        run.backend,
        stats.batches_accepted,
        stats.batches_refused,
        stats.checks,
        stats.lookup_walks,
        stats.lookup_pages,
        stats.explains,
        stats.lookup_time,
        stats.index_rebuilds,
        stats.restarts,
        started.elapsed(),
        covered.join(", "),
    );
}

#[derive(Default)]
struct Stats {
    batches_accepted: usize,
    batches_refused: usize,
    /// Accepted mutations by kind and actor: shows what the run covered.
    mutations_accepted: BTreeMap<String, usize>,
    checks: usize,
    /// LookupSites and LookupUsers walked to their end, and the pages they took.
    lookup_walks: usize,
    lookup_pages: usize,
    explains: usize,
    /// Time spent in the lookup sweeps.
    lookup_time: std::time::Duration,
    index_rebuilds: usize,
    restarts: usize,
}

/// The state of a run: the model, what was sent in the current case, and
/// where the server stands.
struct ModelCheck {
    /// `sqlite` or `postgres`.
    backend: String,
    seed: u64,
    case: usize,
    reference: Reference,
    /// The batches of the current case and their outcomes, for failure messages.
    history: Vec<String>,
    /// The revision of the last accepted batch; checks wait for it.
    revision: String,
    /// A second connection to the server's storage, for rebuilding the index.
    store: Option<Store>,
    stats: Stats,
    /// Draws lookup page sizes and Explain samples; seeded, so runs replay.
    rng: SplitMix64,
}

impl ModelCheck {
    /// Brings server and model to the case's starting world: `u0` the owner
    /// and the case's starting users, sites and groups, with no grants.
    async fn start_case(&mut self, app: &mut TestApp, number: usize, case: &Case) {
        self.case = number;
        self.history.clear();
        self.send(app, &reset_batch(&self.reference)).await;
        assert_eq!(self.reference.user_ids().collect::<Vec<_>>(), [root()], "the reset leaves only u0");
        self.send(app, &populate_batch(case)).await;
    }

    /// Sends one batch and replays it on the model: both must accept it or both refuse it.
    async fn send(&mut self, app: &mut TestApp, batch: &Batch) {
        let actor = batch.actor.as_deref();
        let actor_kind = match actor {
            None => "tooling",
            Some(actor) if self.reference.is_owner(actor) => "owner",
            Some(_) => "user",
        };
        let response = app.mutate(actor, batch.mutations.clone()).await;
        let verdict = self.reference.apply(actor, &batch.mutations);

        let described: Vec<String> = batch.mutations.iter().map(describe).collect();
        let actor = actor.map_or_else(|| "tooling".to_string(), label);
        let entry = format!("#{} {actor}: {}", self.history.len(), described.join("; "));
        match (response, verdict) {
            (Ok(response), Ok(())) => {
                self.history.push(format!("{entry}\n      → accepted at revision {}", response.revision));
                self.check_returned_ids(&batch.mutations, &response.ids);
                self.revision = response.revision;
                self.stats.batches_accepted += 1;
                for mutation in &batch.mutations {
                    let key = format!("{} by {actor_kind}", kind_of(mutation));
                    *self.stats.mutations_accepted.entry(key).or_default() += 1;
                }
            }
            (Err(status), Err(refusal))
                if !matches!(status.code(), Code::Internal | Code::Unknown | Code::Unavailable) =>
            {
                self.history.push(format!(
                    "{entry}\n      → refused: {:?} {} (model: {:?} {})",
                    status.code(),
                    status.message(),
                    refusal.code,
                    refusal.reason
                ));
                self.stats.batches_refused += 1;
            }
            (Err(status), Err(_)) => {
                self.fail(format!("{entry}\n      → warden failed: {:?} {}", status.code(), status.message()))
            }
            (Ok(response), Err(refusal)) => self.fail(format!(
                "{entry}\n      → warden ACCEPTED it at revision {}, but the model refuses it: {:?} {}",
                response.revision, refusal.code, refusal.reason
            )),
            (Err(status), Ok(())) => self.fail(format!(
                "{entry}\n      → warden REFUSED it ({:?} {}), but the model accepts it",
                status.code(),
                status.message()
            )),
        }
    }

    /// `ids[i]` is the id of the object mutation i created.
    fn check_returned_ids(&self, mutations: &[Op], ids: &[String]) {
        if ids.len() != mutations.len() {
            self.fail(format!("{} ids returned for {} mutations: {ids:?}", ids.len(), mutations.len()));
        }
        for (index, (mutation, returned)) in mutations.iter().zip(ids).enumerate() {
            let created = match mutation {
                Op::CreateUser(m) => &m.id,
                Op::CreateSite(m) => &m.id,
                Op::CreateGroup(m) => &m.id,
                Op::CreateReport(m) => &m.id,
                _ => continue,
            };
            if returned != created {
                self.fail(format!("ids[{index}] is `{returned}`, not the created `{created}`"));
            }
        }
    }

    /// Asks warden all `checks` in one batch and compares each answer with the model's.
    async fn compare_checks(&mut self, app: &mut TestApp, checks: &[pb::CheckRequest]) {
        let request = pb::CheckBatchRequest { checks: checks.to_vec(), at_least_revision: self.revision.clone() };
        let results = match app.check.check_batch(request).await {
            Ok(response) => response.into_inner().results,
            Err(status) => self.fail(format!("CheckBatch failed: {status:?}")),
        };
        if results.len() != checks.len() {
            self.fail(format!("CheckBatch answered {} of {} checks", results.len(), checks.len()));
        }
        let mut mismatches = Vec::new();
        for (check, result) in checks.iter().zip(&results) {
            let resource = check.resource.as_ref().and_then(|r| r.kind.as_ref()).expect("checks name a resource");
            let action = Action::try_from(check.action).expect("checks name an action");
            let allowed = self.reference.allowed(&check.user_id, resource, action);
            let level = self.reference.answered_level(&check.user_id, resource);
            let answered_level = Level::try_from(result.effective_level);
            if result.allowed != allowed || answered_level != Ok(level) {
                mismatches.push(format!(
                    "  {} {action:?} {}: warden says allowed={} level={:?}, the model allowed={allowed} level={level:?}",
                    label(&check.user_id),
                    describe_resource(resource),
                    result.allowed,
                    answered_level.unwrap_or(Level::Unspecified),
                ));
            }
        }
        self.stats.checks += checks.len();
        if !mismatches.is_empty() {
            self.fail(format!(
                "{} checks answer otherwise than the model:\n{}",
                mismatches.len(),
                mismatches.join("\n")
            ));
        }
    }

    /// The sweep of a checkpoint: every check of the universe, then the lookups.
    async fn compare_everything(&mut self, app: &mut TestApp, sweep: Sweep) {
        self.compare_checks(app, &every_check()).await;
        self.compare_lookups(app, sweep).await;
    }

    /// The least levels one user's or site's lookups are asked at in a sweep.
    fn min_levels(&mut self, sweep: Sweep) -> Vec<Level> {
        match sweep {
            Sweep::Full => LOOKUP_MIN_LEVELS.to_vec(),
            Sweep::Sampled => vec![LOOKUP_MIN_LEVELS[self.rng.below(LOOKUP_MIN_LEVELS.len() as u64) as usize]],
        }
    }

    /// LookupSites for every user and LookupUsers for every site of the
    /// universe (unknown ones included), all pages concatenated, and Explain
    /// on a sample of pairs: each must answer exactly what the model does.
    /// Every divergence is listed before failing.
    async fn compare_lookups(&mut self, app: &mut TestApp, sweep: Sweep) {
        let started = Instant::now();
        let mut mismatches = Vec::new();
        for user in slots(Kind::User) {
            for min_level in self.min_levels(sweep) {
                let page_size = self.page_size();
                let answered = self.walk_lookup_sites(app, &user, min_level, page_size).await;
                let expected = self.reference.lookup_sites(&user, min_level);
                if answered != expected {
                    mismatches.push(diverged(
                        format!("LookupSites({}, min {min_level:?}, page size {page_size})", label(&user)),
                        &answered.iter().map(describe_site_access).collect::<Vec<_>>(),
                        &expected.iter().map(describe_site_access).collect::<Vec<_>>(),
                    ));
                }
            }
        }
        for site in slots(Kind::Site) {
            for min_level in self.min_levels(sweep) {
                let page_size = self.page_size();
                let answered = self.walk_lookup_users(app, &site, min_level, page_size).await;
                let expected = self.reference.lookup_users(&site, min_level);
                if answered != expected {
                    mismatches.push(diverged(
                        format!("LookupUsers({}, min {min_level:?}, page size {page_size})", label(&site)),
                        &answered.iter().map(describe_user_access).collect::<Vec<_>>(),
                        &expected.iter().map(describe_user_access).collect::<Vec<_>>(),
                    ));
                }
            }
        }
        let users = slots(Kind::User).count() as u64;
        for kind in [Kind::Site, Kind::Report] {
            for _ in 0..SAMPLED_EXPLAINS_PER_SWEEP {
                let user = Kind::User.id(self.rng.below(users) as u8);
                let slot = self.rng.below(u64::from(kind.count()) + 1) as u8;
                let resource = match kind {
                    Kind::Report => Resource::ReportId(Kind::Report.id(slot)),
                    _ => Resource::SiteId(Kind::Site.id(slot)),
                };
                let answered = self.explain(app, &user, &resource).await;
                let expected = self.reference.explain(&user, &resource);
                if answered != expected {
                    mismatches.push(diverged(
                        format!("Explain({}, {})", label(&user), describe_explained(&resource)),
                        &describe_explanation(&answered),
                        &describe_explanation(&expected),
                    ));
                }
            }
        }
        self.stats.lookup_time += started.elapsed();
        if !mismatches.is_empty() {
            self.fail(format!(
                "{} lookups answer otherwise than the model:\n{}",
                mismatches.len(),
                mismatches.join("\n")
            ));
        }
    }

    /// A page size for one walk: 1 to `MAX_LOOKUP_PAGE_SIZE`.
    fn page_size(&mut self) -> i32 {
        1 + self.rng.below(MAX_LOOKUP_PAGE_SIZE) as i32
    }

    /// Every site `user` reaches at `min_level` or more, the pages of
    /// `page_size` concatenated. A failed call, an oversized page or a walk
    /// that does not end fails the test.
    async fn walk_lookup_sites(
        &mut self,
        app: &mut TestApp,
        user: &str,
        min_level: Level,
        page_size: i32,
    ) -> Vec<pb::SiteAccess> {
        let what = format!("LookupSites({}, min {min_level:?}, page size {page_size})", label(user));
        let (mut sites, mut token) = (Vec::new(), String::new());
        for page_number in 0..MAX_LOOKUP_PAGES {
            let request = pb::LookupSitesRequest {
                at_least_revision: self.revision.clone(),
                ..lookup_sites_request(user, min_level, page_size, &token)
            };
            let page = match app.check.lookup_sites(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => self.fail(format!("{what} failed on page {page_number}: {status:?}")),
            };
            self.stats.lookup_pages += 1;
            if page.sites.len() > page_size as usize {
                let shown: Vec<String> = page.sites.iter().map(describe_site_access).collect();
                self.fail(format!("{what}: page {page_number} has {} sites: [{}]", page.sites.len(), shown.join(", ")));
            }
            sites.extend(page.sites);
            if page.next_page_token.is_empty() {
                self.stats.lookup_walks += 1;
                return sites;
            }
            token = page.next_page_token;
        }
        self.fail(format!("{what}: still a next page after {MAX_LOOKUP_PAGES} pages"))
    }

    /// Every user who reaches `site` at `min_level` or more, with their paths,
    /// the pages of `page_size` concatenated; fails like `walk_lookup_sites`.
    async fn walk_lookup_users(
        &mut self,
        app: &mut TestApp,
        site: &str,
        min_level: Level,
        page_size: i32,
    ) -> Vec<pb::UserAccess> {
        let what = format!("LookupUsers({}, min {min_level:?}, page size {page_size})", label(site));
        let (mut users, mut token) = (Vec::new(), String::new());
        for page_number in 0..MAX_LOOKUP_PAGES {
            let request = pb::LookupUsersRequest {
                at_least_revision: self.revision.clone(),
                ..lookup_users_request(site, min_level, page_size, &token)
            };
            let page = match app.check.lookup_users(request).await {
                Ok(response) => response.into_inner(),
                Err(status) => self.fail(format!("{what} failed on page {page_number}: {status:?}")),
            };
            self.stats.lookup_pages += 1;
            if page.users.len() > page_size as usize {
                let shown: Vec<String> = page.users.iter().map(describe_user_access).collect();
                self.fail(format!("{what}: page {page_number} has {} users: [{}]", page.users.len(), shown.join("; ")));
            }
            users.extend(page.users);
            if page.next_page_token.is_empty() {
                self.stats.lookup_walks += 1;
                return users;
            }
            token = page.next_page_token;
        }
        self.fail(format!("{what}: still a next page after {MAX_LOOKUP_PAGES} pages"))
    }

    /// Explain, made comparable with the model's: the revision cleared and
    /// the free-text reason, once seen to be there, cleared too.
    async fn explain(&mut self, app: &mut TestApp, user: &str, resource: &Resource) -> pb::ExplainResponse {
        let request = pb::ExplainRequest {
            user_id: user.to_string(),
            resource: Some(pb::Resource { kind: Some(resource.clone()) }),
            at_least_revision: self.revision.clone(),
        };
        let what = format!("Explain({}, {})", label(user), describe_explained(resource));
        let mut answer = match app.check.explain(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => self.fail(format!("{what} failed: {status:?}")),
        };
        self.stats.explains += 1;
        answer.revision.clear();
        if let Some(report) = &mut answer.report {
            if report.reason.trim().is_empty() {
                self.fail(format!("{what}: the report access gives no reason: {report:?}"));
            }
            report.reason.clear();
        }
        answer
    }

    /// The index warden built by applying batches must equal the one built
    /// from storage alone.
    async fn compare_index_with_rebuilt(&mut self, app: &TestApp) {
        if self.store.is_none() {
            let store = Store::connect(&app.database_url()).await.expect("connect to the app's storage");
            self.store = Some(store);
        }
        let store = self.store.as_ref().expect("connected above");
        let snapshot = store.load_snapshot().await.expect("load a snapshot");
        let rebuilt = Index::from_snapshot(&snapshot);
        let live = app.engine.index().expect("the index is loaded");
        self.stats.index_rebuilds += 1;
        if *live != rebuilt {
            self.fail(format!(
                "the live index differs from the index rebuilt from storage\n  live:    {live:?}\n  rebuilt: {rebuilt:?}"
            ));
        }
    }

    /// Fails the test with everything needed to understand and replay the divergence.
    fn fail(&self, what: String) -> ! {
        panic!(
            "model check diverged on {backend} (seed {seed}, case {case}; replay with {SEED_ENV}={seed})\n\
             {what}\n\nbatches of case {case} (#0 resets to one owner, u0; #1 creates the starting world):\n  {history}\n\n\
             model state:\n{state}",
            backend = self.backend,
            seed = self.seed,
            case = self.case,
            history = self.history.join("\n  "),
            state = self.reference.summary(label),
        )
    }
}

/// How much of the lookups a sweep asks.
#[derive(Clone, Copy, Debug)]
enum Sweep {
    /// Every user and site at every least level.
    Full,
    /// Every user and site at one random least level each.
    Sampled,
}

/// A small seeded generator (SplitMix64) for the sweeps' page sizes and samples.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// The universe: a few fixed ids of each kind. Slot `count` of each kind
// (`u8`, `s6`, `g4`, `r6`) is never created: it is the unknown id of checks.

#[derive(Clone, Copy, Debug)]
enum Kind {
    User = 1,
    Site = 2,
    Group = 3,
    Report = 4,
}

impl Kind {
    const LABELS: [&str; 5] = ["", "u", "s", "g", "r"];

    /// How many ids of this kind batches use.
    fn count(self) -> u8 {
        match self {
            Kind::User => 8,
            Kind::Site => 6,
            Kind::Group => 4,
            Kind::Report => 6,
        }
    }

    /// The fixed UUID of a slot; `label` turns it back into `u3`, `s1`, ...
    fn id(self, slot: u8) -> String {
        format!("{:08x}-0000-4000-8000-{slot:012x}", self as u8)
    }

    /// The id no batch ever creates.
    fn unknown_id(self) -> String {
        self.id(self.count())
    }

    fn exists(self, reference: &Reference, id: &str) -> bool {
        match self {
            Kind::User => reference.has_user(id),
            Kind::Site => reference.has_site(id),
            Kind::Group => reference.has_group(id),
            Kind::Report => reference.has_report(id),
        }
    }
}

fn label(id: &str) -> String {
    let parts: Vec<&str> = id.split('-').collect();
    let kind = parts.first().and_then(|p| usize::from_str_radix(p, 16).ok());
    let slot = parts.last().and_then(|p| u64::from_str_radix(p, 16).ok());
    match (kind, slot) {
        (Some(kind @ 1..=4), Some(slot)) if parts.len() == 5 => format!("{}{slot}", Kind::LABELS[kind]),
        _ => format!("`{id}`"),
    }
}

/// The owner every case starts from.
fn root() -> String {
    Kind::User.id(0)
}

/// The email of a user slot; `shout` upper-cases it, which is the same
/// email: emails are unique case-insensitively.
fn email(user_id: &str, shout: bool) -> String {
    let email = format!("{}@example.com", label(user_id));
    if shout { email.to_uppercase() } else { email }
}

/// The name of a group slot; like emails, names are unique case-insensitively.
fn group_name(group_id: &str, shout: bool) -> String {
    let name = format!("group {}", label(group_id));
    if shout { name.to_uppercase() } else { name }
}

// What a case is made of: batches of mutations named by picks, resolved
// against the model just before they are sent.

/// Names an object of some kind.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// The n-th (cyclically) of the objects that exist; any slot when none does.
    Existing(usize),
    /// The n-th (cyclically) of the slots that are free; any slot when none is.
    Free(usize),
    /// A slot, whether it exists or not.
    Any(u8),
    /// For sites: the n-th of the sites the actor may set levels on (has
    /// MANAGE on); the n-th existing site when there is none.
    ManagedByActor(usize),
}

impl Pick {
    fn resolve(self, kind: Kind, reference: &Reference, actor: Option<&str>) -> String {
        let slots_where = |keep: &dyn Fn(&str) -> bool| -> Vec<u8> {
            (0..kind.count()).filter(|slot| keep(&kind.id(*slot))).collect()
        };
        let exists = |id: &str| kind.exists(reference, id);
        let (candidates, n) = match self {
            Pick::Existing(n) => (slots_where(&exists), n),
            Pick::Free(n) => (slots_where(&|id| !exists(id)), n),
            Pick::Any(slot) => (Vec::new(), usize::from(slot)),
            Pick::ManagedByActor(n) => {
                let managed =
                    |id: &str| actor.is_none_or(|actor| reference.effective_level(actor, id) == Level::Manage);
                let managed = slots_where(&|id| exists(id) && managed(id));
                (if managed.is_empty() { slots_where(&exists) } else { managed }, n)
            }
        };
        let slot = match candidates.len() {
            0 => (n % usize::from(kind.count())) as u8,
            len => candidates[n % len],
        };
        kind.id(slot)
    }
}

/// On whose behalf a batch is sent.
#[derive(Clone, Copy, Debug)]
enum ActorPick {
    /// No actor: the trusted admin tooling.
    Tooling,
    /// The n-th owner.
    Owner(usize),
    /// The n-th non-owner with MANAGE on some site (any user when there is none).
    Manager(usize),
    /// The n-th existing user, owner or not.
    User(usize),
    /// A user who does not exist.
    Unknown,
}

/// One mutation, its objects still to be picked.
#[derive(Clone, Debug)]
enum MutationPlan {
    CreateUser {
        user: Pick,
        email_of: Option<Pick>,
        shout: bool,
        role: Role,
    },
    DeleteUser(Pick),
    SetRole(Pick, Role),
    CreateSite(Pick),
    RenameSite(Pick),
    DeleteSite(Pick),
    CreateGroup {
        group: Pick,
        name_of: Option<Pick>,
        shout: bool,
    },
    DeleteGroup(Pick),
    AddMembers(Pick, Vec<Pick>),
    RemoveMembers(Pick, Vec<Pick>),
    /// `site: None` is the all-sites wildcard.
    Grant {
        subject: SubjectPick,
        site: Option<Pick>,
        level: Level,
    },
    /// `author: None` leaves the author to default to the actor.
    CreateReport {
        report: Pick,
        site: Pick,
        author: Option<Pick>,
        visibility: ReportVisibility,
    },
    SetVisibility(Pick, ReportVisibility),
    DeleteReport(Pick),
}

#[derive(Clone, Copy, Debug)]
enum SubjectPick {
    User(Pick),
    Group(Pick),
}

impl MutationPlan {
    fn resolve(&self, reference: &Reference, actor: Option<&str>) -> Op {
        let user = |pick: &Pick| pick.resolve(Kind::User, reference, actor);
        let site = |pick: &Pick| pick.resolve(Kind::Site, reference, actor);
        let group = |pick: &Pick| pick.resolve(Kind::Group, reference, actor);
        let report = |pick: &Pick| pick.resolve(Kind::Report, reference, actor);
        match self {
            MutationPlan::CreateUser { user: pick, email_of, shout, role } => {
                let id = user(pick);
                let email = email(&email_of.as_ref().map_or_else(|| id.clone(), user), *shout);
                create_user(&id, &email, *role)
            }
            MutationPlan::DeleteUser(pick) => delete_user(&user(pick)),
            MutationPlan::SetRole(pick, role) => set_role(&user(pick), *role),
            MutationPlan::CreateSite(pick) => create_site(&site(pick), "a site"),
            MutationPlan::RenameSite(pick) => rename_site(&site(pick), "renamed"),
            MutationPlan::DeleteSite(pick) => delete_site(&site(pick)),
            MutationPlan::CreateGroup { group: pick, name_of, shout } => {
                let id = group(pick);
                create_group(&id, &group_name(&name_of.as_ref().map_or_else(|| id.clone(), group), *shout))
            }
            MutationPlan::DeleteGroup(pick) => delete_group(&group(pick)),
            MutationPlan::AddMembers(pick, users) => Op::AddGroupMembers(pb::AddGroupMembers {
                group_id: group(pick),
                user_ids: users.iter().map(user).collect(),
            }),
            MutationPlan::RemoveMembers(pick, users) => Op::RemoveGroupMembers(pb::RemoveGroupMembers {
                group_id: group(pick),
                user_ids: users.iter().map(user).collect(),
            }),
            MutationPlan::Grant { subject, site: target, level } => {
                let subject = match subject {
                    SubjectPick::User(pick) => Subject::UserId(user(pick)),
                    SubjectPick::Group(pick) => Subject::GroupId(group(pick)),
                };
                let target = target.as_ref().map_or(Target::AllSites(true), |pick| Target::SiteId(site(pick)));
                set_grant(subject, target, *level)
            }
            MutationPlan::CreateReport { report: pick, site: site_pick, author, visibility } => {
                let author = author.as_ref().map(user).unwrap_or_default();
                create_report(&report(pick), &site(site_pick), &author, *visibility)
            }
            MutationPlan::SetVisibility(pick, visibility) => Op::UpdateReport(pb::UpdateReport {
                report_id: report(pick),
                visibility: Some(*visibility as i32),
                ..Default::default()
            }),
            MutationPlan::DeleteReport(pick) => delete_report(&report(pick)),
        }
    }
}

impl ActorPick {
    fn resolve(self, reference: &Reference) -> Option<String> {
        let users_where = |keep: &dyn Fn(&str) -> bool| -> Vec<String> {
            reference.user_ids().filter(|user| keep(user)).map(str::to_string).collect()
        };
        let nth = |users: Vec<String>, n: usize| users.get(n % users.len().max(1)).cloned();
        match self {
            ActorPick::Tooling => None,
            ActorPick::Owner(n) => nth(users_where(&|user| reference.is_owner(user)), n).or_else(|| Some(root())),
            ActorPick::Manager(n) => {
                let manages_a_site = |user: &str| {
                    !reference.is_owner(user)
                        && reference.site_ids().any(|site| reference.effective_level(user, site) == Level::Manage)
                };
                nth(users_where(&manages_a_site), n).or_else(|| ActorPick::User(n).resolve(reference))
            }
            ActorPick::User(n) => nth(users_where(&|_| true), n).or_else(|| Some(root())),
            ActorPick::Unknown => Some(Kind::User.unknown_id()),
        }
    }
}

/// A batch as drawn: who sends it, its mutations, and the checks asked after it.
#[derive(Clone, Debug)]
struct BatchPlan {
    actor: ActorPick,
    mutations: Vec<MutationPlan>,
    checks: Vec<pb::CheckRequest>,
}

/// A batch as sent.
struct Batch {
    /// `None`: the trusted admin tooling.
    actor: Option<String>,
    mutations: Vec<Op>,
}

#[derive(Clone, Debug)]
struct Case {
    /// The roles of the users the case starts with, besides `u0`.
    starting_users: Vec<Role>,
    /// How many sites and groups the case starts with.
    starting_sites: u8,
    starting_groups: u8,
    batches: Vec<BatchPlan>,
    /// The server restarts after this batch.
    restart_after: usize,
}

impl BatchPlan {
    /// Picks the batch's objects. Each mutation picks on the state its
    /// predecessors leave (as if each were accepted alone), so that a batch
    /// may create a user and then grant to them.
    fn resolve(&self, reference: &Reference) -> Batch {
        let actor = self.actor.resolve(reference);
        let mut scratch = reference.clone();
        let mut mutations = Vec::new();
        for plan in &self.mutations {
            let mutation = plan.resolve(&scratch, actor.as_deref());
            let _ = scratch.apply(actor.as_deref(), std::slice::from_ref(&mutation));
            mutations.push(mutation);
        }
        Batch { actor, mutations }
    }
}

// Strategies.

/// Usually an object that exists, sometimes any slot.
fn existing() -> impl Strategy<Value = Pick> {
    prop_oneof![9 => any::<usize>().prop_map(Pick::Existing), 1 => any::<u8>().prop_map(Pick::Any)]
}

/// Usually a free slot, sometimes any slot (maybe taken: ALREADY_EXISTS).
fn fresh() -> impl Strategy<Value = Pick> {
    prop_oneof![6 => any::<usize>().prop_map(Pick::Free), 1 => any::<u8>().prop_map(Pick::Any)]
}

fn a_level() -> impl Strategy<Value = Level> {
    prop_oneof![
        4 => Just(Level::NoAccess),
        4 => Just(Level::View),
        2 => Just(Level::Edit),
        2 => Just(Level::EditPublish),
        3 => Just(Level::Manage),
        // Malformed: the batch must be refused.
        1 => Just(Level::Unspecified),
    ]
}

fn a_visibility() -> impl Strategy<Value = ReportVisibility> {
    prop_oneof![Just(ReportVisibility::AuthorOnly), Just(ReportVisibility::AllUsers)]
}

/// Another object's email or name now and then: taken if it exists.
fn maybe_borrowed() -> impl Strategy<Value = Option<Pick>> {
    prop_oneof![9 => Just(None), 1 => existing().prop_map(Some)]
}

/// A grant to an existing user or group on `site` (None: all sites).
fn a_grant(site: impl Strategy<Value = Option<Pick>>) -> impl Strategy<Value = MutationPlan> {
    let subject =
        prop_oneof![2 => existing().prop_map(SubjectPick::User), 1 => existing().prop_map(SubjectPick::Group)];
    (subject, site, a_level()).prop_map(|(subject, site, level)| MutationPlan::Grant { subject, site, level })
}

/// A new report on an existing site; `author` None leaves it to the actor.
fn a_new_report(author: impl Strategy<Value = Option<Pick>>) -> impl Strategy<Value = MutationPlan> {
    let visibility = prop_oneof![1 => Just(ReportVisibility::Unspecified), 4 => a_visibility()];
    (fresh(), existing(), author, visibility)
        .prop_map(|(report, site, author, visibility)| MutationPlan::CreateReport { report, site, author, visibility })
}

fn a_visibility_change() -> impl Strategy<Value = MutationPlan> {
    (existing(), a_visibility()).prop_map(|(report, visibility)| MutationPlan::SetVisibility(report, visibility))
}

/// Any mutation, in proportions that keep the universe about half full.
fn a_mutation() -> impl Strategy<Value = MutationPlan> {
    let new_user_role = prop_oneof![1 => Just(Role::Unspecified), 4 => Just(Role::User), 2 => Just(Role::Owner)];
    let role = prop_oneof![Just(Role::User), Just(Role::Owner)];
    let members = || (existing(), vec(existing(), 1..=3));
    let grant_site = prop_oneof![
        2 => existing().prop_map(Some),
        1 => any::<usize>().prop_map(|n| Some(Pick::ManagedByActor(n))),
        1 => Just(None),
    ];
    prop_oneof![
        4 => (fresh(), maybe_borrowed(), any::<bool>(), new_user_role)
            .prop_map(|(user, email_of, shout, role)| MutationPlan::CreateUser { user, email_of, shout, role }),
        1 => existing().prop_map(MutationPlan::DeleteUser),
        2 => (existing(), role).prop_map(|(user, role)| MutationPlan::SetRole(user, role)),
        4 => fresh().prop_map(MutationPlan::CreateSite),
        1 => existing().prop_map(MutationPlan::RenameSite),
        1 => existing().prop_map(MutationPlan::DeleteSite),
        3 => (fresh(), maybe_borrowed(), any::<bool>())
            .prop_map(|(group, name_of, shout)| MutationPlan::CreateGroup { group, name_of, shout }),
        1 => existing().prop_map(MutationPlan::DeleteGroup),
        4 => members().prop_map(|(group, users)| MutationPlan::AddMembers(group, users)),
        1 => members().prop_map(|(group, users)| MutationPlan::RemoveMembers(group, users)),
        12 => a_grant(grant_site),
        5 => a_new_report(prop_oneof![1 => Just(None), 2 => existing().prop_map(Some)]),
        2 => a_visibility_change(),
        1 => existing().prop_map(MutationPlan::DeleteReport),
    ]
}

/// What a user who is not an owner may try: set levels on sites they
/// manage, write and change reports, rename sites, and now and then anything.
fn a_delegated_mutation() -> impl Strategy<Value = MutationPlan> {
    let managed_site = any::<usize>().prop_map(|n| Some(Pick::ManagedByActor(n)));
    prop_oneof![
        6 => a_grant(managed_site),
        3 => a_new_report(prop_oneof![3 => Just(None), 1 => existing().prop_map(Some)]),
        2 => a_visibility_change(),
        1 => existing().prop_map(MutationPlan::DeleteReport),
        1 => existing().prop_map(MutationPlan::RenameSite),
        1 => a_mutation(),
    ]
}

/// One or two mutations mostly, three to five sometimes.
fn some_mutations<S: Strategy<Value = MutationPlan>>(mutation: fn() -> S) -> impl Strategy<Value = Vec<MutationPlan>> {
    prop_oneof![3 => vec(mutation(), 1..=2), 1 => vec(mutation(), 3..=5)]
}

/// A batch of the trusted tooling, an owner or anybody, or of a user who
/// manages a site acting within their rights (mostly).
fn a_batch() -> impl Strategy<Value = BatchPlan> {
    let administrative = (
        prop_oneof![
            6 => Just(ActorPick::Tooling),
            8 => any::<usize>().prop_map(ActorPick::Owner),
            3 => any::<usize>().prop_map(ActorPick::User),
            1 => Just(ActorPick::Unknown),
        ],
        some_mutations(a_mutation),
    );
    let delegated = (
        prop_oneof![3 => any::<usize>().prop_map(ActorPick::Manager), 1 => any::<usize>().prop_map(ActorPick::User)],
        some_mutations(a_delegated_mutation),
    );
    let actor_and_mutations = prop_oneof![3 => administrative, 1 => delegated];
    (actor_and_mutations, vec(a_check(), SAMPLED_CHECKS_PER_BATCH)).prop_map(|((actor, mutations), checks)| BatchPlan {
        actor,
        mutations,
        checks,
    })
}

/// A check on any user, site or report of the universe, unknown ones included.
fn a_check() -> impl Strategy<Value = pb::CheckRequest> {
    let resource = prop_oneof![
        3 => (0..=Kind::Site.count()).prop_map(|slot| Resource::SiteId(Kind::Site.id(slot))),
        2 => (0..=Kind::Report.count()).prop_map(|slot| Resource::ReportId(Kind::Report.id(slot))),
        1 => Just(instance()),
    ];
    let user = (0..=Kind::User.count()).prop_map(|slot| Kind::User.id(slot));
    (user, resource, prop::sample::select(ALL_ACTIONS.to_vec()))
        .prop_map(|(user, resource, action)| check_request(&user, resource, action))
}

fn a_case() -> impl Strategy<Value = Case> {
    let starting_users =
        vec(prop_oneof![4 => Just(Role::User), 1 => Just(Role::Owner)], 1..Kind::User.count() as usize);
    let starting_sites = 1..=Kind::Site.count() / 2;
    let starting_groups = 0..=Kind::Group.count() / 2;
    (starting_users, starting_sites, starting_groups, vec(a_batch(), BATCHES_PER_CASE), 0..BATCHES_PER_CASE).prop_map(
        |(starting_users, starting_sites, starting_groups, batches, restart_after)| Case {
            starting_users,
            starting_sites,
            starting_groups,
            batches,
            restart_after,
        },
    )
}

/// Draws every case up front from a seeded runner: the run is a function of the seed.
fn generate_cases(seed: u64, count: usize) -> Vec<Case> {
    let config = Config { rng_seed: RngSeed::Fixed(seed), rng_algorithm: RngAlgorithm::ChaCha, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let strategy = a_case();
    (0..count).map(|_| strategy.new_tree(&mut runner).expect("generate a case").current()).collect()
}

// Checks.

fn check_request(user: &str, resource: Resource, action: Action) -> pb::CheckRequest {
    pb::CheckRequest {
        user_id: user.to_string(),
        resource: Some(pb::Resource { kind: Some(resource) }),
        action: action as i32,
        at_least_revision: String::new(),
    }
}

/// Every id of a kind in the universe, the unknown one last.
fn slots(kind: Kind) -> impl Iterator<Item = String> {
    (0..=kind.count()).map(move |slot| kind.id(slot))
}

/// Every check of the universe: each user (and the unknown one) × each site,
/// report (and the unknown ones) and the instance × each action.
fn every_check() -> Vec<pb::CheckRequest> {
    let resources: Vec<Resource> = slots(Kind::Site)
        .map(Resource::SiteId)
        .chain(slots(Kind::Report).map(Resource::ReportId))
        .chain([instance()])
        .collect();
    let mut checks = Vec::new();
    for user in slots(Kind::User) {
        for resource in &resources {
            for action in ALL_ACTIONS {
                checks.push(check_request(&user, resource.clone(), action));
            }
        }
    }
    checks
}

// Starting a case.

/// The tooling batch that starts each case: `u0` the only owner, with no
/// grants, and nothing else. It goes through the model like any batch.
fn reset_batch(reference: &Reference) -> Batch {
    let root = root();
    let mut mutations = Vec::new();
    if !reference.has_user(&root) {
        // Slot emails may be taken by other users; this one never is.
        mutations.push(create_user(&root, "root@example.com", Role::Owner));
    } else if !reference.is_owner(&root) {
        mutations.push(set_role(&root, Role::Owner));
    }
    mutations.push(set_grant(Subject::UserId(root.clone()), Target::AllSites(true), Level::NoAccess));
    mutations.extend(reference.report_ids().map(delete_report));
    mutations.extend(reference.site_ids().map(delete_site));
    mutations.extend(reference.group_ids().map(delete_group));
    mutations.extend(reference.user_ids().filter(|user| *user != root).map(delete_user));
    Batch { actor: None, mutations }
}

/// The tooling batch that creates the world a case starts with.
fn populate_batch(case: &Case) -> Batch {
    let users = case.starting_users.iter().zip(1..).map(|(role, slot)| {
        let id = Kind::User.id(slot);
        create_user(&id, &email(&id, false), *role)
    });
    let sites = (0..case.starting_sites).map(|slot| create_site(&Kind::Site.id(slot), "a site"));
    let groups = (0..case.starting_groups).map(|slot| {
        let id = Kind::Group.id(slot);
        create_group(&id, &group_name(&id, false))
    });
    Batch { actor: None, mutations: users.chain(sites).chain(groups).collect() }
}

// Reporting.

/// The proto name of a mutation, for the coverage statistics.
fn kind_of(mutation: &Op) -> &'static str {
    match mutation {
        Op::CreateUser(_) => "create_user",
        Op::UpdateUser(_) => "update_user",
        Op::DeleteUser(_) => "delete_user",
        Op::CreateSite(_) => "create_site",
        Op::UpdateSite(_) => "update_site",
        Op::DeleteSite(_) => "delete_site",
        Op::CreateGroup(_) => "create_group",
        Op::UpdateGroup(_) => "update_group",
        Op::DeleteGroup(_) => "delete_group",
        Op::AddGroupMembers(_) => "add_group_members",
        Op::RemoveGroupMembers(_) => "remove_group_members",
        Op::SetGrant(_) => "set_grant",
        Op::CreateReport(_) => "create_report",
        Op::UpdateReport(_) => "update_report",
        Op::DeleteReport(_) => "delete_report",
    }
}

/// One mutation in a few words, ids as labels.
fn describe(mutation: &Op) -> String {
    let labels = |ids: &[String]| ids.iter().map(|id| label(id)).collect::<Vec<_>>().join(", ");
    let role = |role: i32| Role::try_from(role).map_or_else(|_| format!("role {role}"), |r| format!("{r:?}"));
    match mutation {
        Op::CreateUser(m) => format!("create user {} <{}> {}", label(&m.id), m.email, role(m.role)),
        Op::UpdateUser(m) => format!("set {} role {}", label(&m.user_id), m.role.map_or("unchanged".into(), role)),
        Op::DeleteUser(m) => format!("delete user {}", label(&m.user_id)),
        Op::CreateSite(m) => format!("create site {}", label(&m.id)),
        Op::UpdateSite(m) => format!("rename site {}", label(&m.site_id)),
        Op::DeleteSite(m) => format!("delete site {}", label(&m.site_id)),
        Op::CreateGroup(m) => format!("create group {} `{}`", label(&m.id), m.name),
        Op::UpdateGroup(m) => format!("update group {}", label(&m.group_id)),
        Op::DeleteGroup(m) => format!("delete group {}", label(&m.group_id)),
        Op::AddGroupMembers(m) => format!("add [{}] to {}", labels(&m.user_ids), label(&m.group_id)),
        Op::RemoveGroupMembers(m) => format!("remove [{}] from {}", labels(&m.user_ids), label(&m.group_id)),
        Op::SetGrant(m) => {
            let subject = match m.subject.as_ref().and_then(|s| s.kind.as_ref()) {
                Some(Subject::UserId(id) | Subject::GroupId(id)) => label(id),
                None => "nobody".into(),
            };
            let target = match &m.target {
                Some(Target::SiteId(site)) => label(site),
                Some(Target::AllSites(_)) => "all sites".into(),
                None => "nowhere".into(),
            };
            let level = Level::try_from(m.level).map_or_else(|_| format!("level {}", m.level), |l| format!("{l:?}"));
            format!("grant {subject} {level} on {target}")
        }
        Op::CreateReport(m) => {
            let author = if m.author_user_id.is_empty() { "the actor".into() } else { label(&m.author_user_id) };
            let visibility = ReportVisibility::try_from(m.visibility).unwrap_or_default();
            format!("create report {} on {} by {author} {visibility:?}", label(&m.id), label(&m.site_id))
        }
        Op::UpdateReport(m) => {
            let visibility = m.visibility.map_or("unchanged".into(), |v| {
                ReportVisibility::try_from(v).map_or_else(|_| format!("visibility {v}"), |v| format!("{v:?}"))
            });
            format!("set report {} visibility {visibility}", label(&m.report_id))
        }
        Op::DeleteReport(m) => format!("delete report {}", label(&m.report_id)),
    }
}

fn describe_resource(resource: &Resource) -> String {
    match resource {
        Resource::SiteId(id) | Resource::ReportId(id) => label(id),
        Resource::Instance(_) => "the instance".into(),
    }
}

// Describing lookups and explanations, ids as labels.

fn describe_level(level: i32) -> String {
    Level::try_from(level).map_or_else(|_| format!("level {level}"), |l| format!("{l:?}"))
}

fn describe_site_access(access: &pb::SiteAccess) -> String {
    format!("{} {}", label(&access.site_id), describe_level(access.level))
}

/// `Group g1 "group g1" EDIT wins`.
fn describe_path(path: &pb::AccessPath) -> String {
    let kind = pb::PathKind::try_from(path.kind).map_or_else(|_| format!("kind {}", path.kind), |k| format!("{k:?}"));
    let mut out = kind;
    if !path.group_id.is_empty() || !path.group_name.is_empty() {
        let _ = write!(out, " {} {:?}", label(&path.group_id), path.group_name);
    }
    let _ = write!(out, " {}", describe_level(path.level));
    if path.wins {
        out.push_str(" wins");
    }
    out
}

fn describe_paths(paths: &[pb::AccessPath]) -> String {
    format!("[{}]", paths.iter().map(describe_path).collect::<Vec<_>>().join(", "))
}

fn describe_user_access(access: &pb::UserAccess) -> String {
    format!("{} {} {}", label(&access.user_id), describe_level(access.level), describe_paths(&access.paths))
}

fn describe_explained(resource: &Resource) -> String {
    match resource {
        Resource::SiteId(id) => format!("site {}", label(id)),
        Resource::ReportId(id) => format!("report {}", label(id)),
        Resource::Instance(_) => "the instance".into(),
    }
}

/// An Explain answer in a few lines (revision and reason left out).
fn describe_explanation(answer: &pb::ExplainResponse) -> Vec<String> {
    let site = if answer.site_id.is_empty() { "none".into() } else { label(&answer.site_id) };
    let mut lines = vec![
        format!("level {}", describe_level(answer.effective_level)),
        format!("site {site}"),
        format!("paths {}", describe_paths(&answer.paths)),
    ];
    lines.push(match &answer.report {
        None => "report access: none".into(),
        Some(r) => format!("report access: view {} edit {} delete {}", r.can_view, r.can_edit, r.can_delete),
    });
    lines
}

/// Both sides of a divergence, entry by entry: `≠` marks an entry the other
/// side does not have; equal entries in another order are said so.
fn diverged(what: String, warden: &[String], model: &[String]) -> String {
    let side = |entries: &[String], other: &[String]| -> String {
        if entries.is_empty() {
            return "      (nothing)".into();
        }
        let lines = entries.iter().map(|entry| {
            let mark = if other.contains(entry) { ' ' } else { '≠' };
            format!("    {mark} {entry}")
        });
        lines.collect::<Vec<_>>().join("\n")
    };
    let (mut sorted_warden, mut sorted_model) = (warden.to_vec(), model.to_vec());
    sorted_warden.sort();
    sorted_model.sort();
    let note = if sorted_warden == sorted_model { " (the same entries in another order)" } else { "" };
    format!("  {what} diverged{note}:\n    warden:\n{}\n    model:\n{}", side(warden, model), side(model, warden))
}
