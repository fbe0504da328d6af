//! In-process benchmarks of the grant index on generated datasets (DESIGN §5):
//!
//! - `decide/<size>/{mixed,allowed,denied}`: one decision, `Index::decide`,
//!   on the sampled checks, the allowed ones or the denied ones;
//!   `.../{site,report,instance}`: the checks on one kind of resource;
//! - `decide_all/<size>/mixed_100`: the sampled checks a hundred at a time
//!   through `Index::decide_all`, as CheckBatch decides them (time per batch);
//! - `check/<size>/handler` and `check_batch/<size>/100`: the CheckService
//!   handlers (proto parsing, decisions, proto answers) without the transport;
//! - `lookup_sites/<size>/{agency_first_1000,typical_user}`: `Index::lookup_sites`;
//! - `build/<size>`: `Index::from_snapshot`, the CPU part of a cold start;
//! - `mutate/<size>/{single_grant,batch_100k_grants}`: `Engine::mutate` (judge,
//!   commit to a SQLite file, publish) without the transport, whose default
//!   4 MiB message limit a 100k-grant batch exceeds.
//!
//! - `memory/pointer_chase_256MiB`: one dependent read from a random place in
//!   256 MiB, the machine's cost of a cache and TLB miss: the floor under a
//!   decision on an index larger than the caches; `..._huge_pages`: the same
//!   on transparent huge pages, where the TLB miss is mostly gone.
//!
//! `cargo bench --bench index` runs S and M; `WARDEN_BENCH_SIZES=S,M,XL` adds XL
//! (several GB of memory and minutes of set-up). Filter as usual:
//! `cargo bench --bench index -- decide/M`.

#![allow(clippy::expect_used, reason = "a benchmark that cannot set itself up should stop loudly")]

mod common;

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use tonic::Request;
use warden::dataset::{Dataset, DatasetSize};
use warden::engine::{Engine, MutateCommand};
use warden::huge_pages;
use warden::index::Index;
use warden::model::{Check, Grant, Level, Mutation, Resource, Subject, Target};
use warden::pb;
use warden::pb::check_service_server::CheckService;
use warden::service::CheckApi;
use warden::store::Store;

/// Distinct checks cycled through by the decision benchmarks: more than the
/// CPU caches hold, so that the index is read as a busy server reads it.
const SAMPLES: usize = 1 << 16;
const BATCH: usize = 100;

/// One size's data, built on first use so that a filtered run builds only what it measures.
struct Fixture {
    size: DatasetSize,
    dataset: OnceCell<Dataset>,
    index: OnceCell<Index>,
    samples: OnceCell<Vec<Check>>,
    api: OnceCell<(tokio::runtime::Runtime, CheckApi)>,
}

impl Fixture {
    fn new(size: DatasetSize) -> Fixture {
        Fixture {
            size,
            dataset: OnceCell::new(),
            index: OnceCell::new(),
            samples: OnceCell::new(),
            api: OnceCell::new(),
        }
    }

    fn dataset(&self) -> &Dataset {
        self.dataset.get_or_init(|| {
            let started = Instant::now();
            let dataset = Dataset::generate(self.size.shape(), common::SEED);
            let (site_grants, all_sites_grants) = dataset.grant_counts();
            let snapshot = &dataset.snapshot;
            eprintln!(
                "dataset {}: {} users, {} sites, {} groups, {} memberships, {} site grants, {} all-sites grants, {} reports (generated in {:.1?})",
                self.size,
                snapshot.users.len(),
                snapshot.sites.len(),
                snapshot.groups.len(),
                snapshot.memberships.len(),
                site_grants,
                all_sites_grants,
                snapshot.reports.len(),
                started.elapsed()
            );
            dataset
        })
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let index = Index::from_snapshot(&self.dataset().snapshot);
            // As the server does once its index is loaded.
            huge_pages::advise_heap().expect("reading /proc/self/maps");
            index
        })
    }

    fn samples(&self) -> &[Check] {
        self.samples.get_or_init(|| self.dataset().sample_checks(SAMPLES, 1))
    }

    /// The CheckService handler over an engine loaded from an in-memory SQLite
    /// store holding the dataset.
    fn api(&self) -> &(tokio::runtime::Runtime, CheckApi) {
        self.api.get_or_init(|| {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let api = runtime.block_on(async {
                let store = Store::connect("sqlite::memory:").await.expect("store");
                store.migrate().await.expect("migrate");
                store.import_dataset(&self.dataset().snapshot, |_| {}).await.expect("import");
                let engine = Arc::new(Engine::new(store, 1_000));
                engine.load().await.expect("load");
                huge_pages::advise_heap().expect("reading /proc/self/maps");
                CheckApi::new(engine)
            });
            (runtime, api)
        })
    }
}

fn bench_decide(criterion: &mut Criterion, fixture: &Fixture) {
    let mut group = criterion.benchmark_group(format!("decide/{}", fixture.size));
    group.throughput(Throughput::Elements(1));
    for kind in ["mixed", "allowed", "denied", "site", "report", "instance"] {
        let chosen = OnceCell::new();
        group.bench_function(kind, |b| {
            let index = fixture.index();
            let samples: &Vec<Check> = chosen.get_or_init(|| {
                let want_allowed = kind == "allowed";
                let keep = |s: &&Check| match kind {
                    "mixed" => true,
                    "site" => matches!(s.resource, Resource::Site(_)),
                    "report" => matches!(s.resource, Resource::Report(_)),
                    "instance" => s.resource == Resource::Instance,
                    _ => index.decide(s.user, s.resource, s.action).allowed == want_allowed,
                };
                fixture.samples().iter().filter(keep).copied().collect()
            });
            let mut next = 0;
            b.iter(|| {
                let sample = &samples[next];
                next = if next + 1 == samples.len() { 0 } else { next + 1 };
                black_box(index.decide(black_box(sample.user), sample.resource, sample.action))
            });
        });
    }
    group.finish();

    // The same checks through `Index::decide_all`, a CheckBatch's worth at a
    // time: the time per decision when upcoming checks' lines load ahead.
    let mut group = criterion.benchmark_group(format!("decide_all/{}", fixture.size));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(format!("mixed_{BATCH}"), |b| {
        let (index, samples) = (fixture.index(), fixture.samples());
        let mut next = 0;
        b.iter(|| {
            let batch = &samples[next..next + BATCH];
            next = if next + 2 * BATCH > samples.len() { 0 } else { next + BATCH };
            index.decide_all(black_box(batch)).for_each(|decision| {
                black_box(decision);
            });
        });
    });
    group.finish();
}

fn bench_handlers(criterion: &mut Criterion, fixture: &Fixture) {
    let mut group = criterion.benchmark_group(format!("check/{}", fixture.size));
    group.throughput(Throughput::Elements(1));
    let requests = OnceCell::new();
    group.bench_function("handler", |b| {
        let (runtime, api) = fixture.api();
        let requests: &Vec<pb::CheckRequest> =
            requests.get_or_init(|| fixture.samples().iter().map(common::check_request).collect());
        let mut next = 0;
        b.iter_batched(
            || {
                next = (next + 1) % requests.len();
                requests[next].clone()
            },
            |request| runtime.block_on(api.check(Request::new(request))).expect("check"),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let mut group = criterion.benchmark_group(format!("check_batch/{}", fixture.size));
    group.throughput(Throughput::Elements(BATCH as u64));
    let batches = OnceCell::new();
    group.bench_function(BATCH.to_string(), |b| {
        let (runtime, api) = fixture.api();
        let batches: &Vec<pb::CheckBatchRequest> = batches.get_or_init(|| {
            let batch = |chunk: &[Check]| pb::CheckBatchRequest {
                checks: chunk.iter().map(common::check_request).collect(),
                at_least_revision: String::new(),
            };
            fixture.samples().chunks(BATCH).map(batch).collect()
        });
        let mut next = 0;
        b.iter_batched(
            || {
                next = (next + 1) % batches.len();
                batches[next].clone()
            },
            |request| runtime.block_on(api.check_batch(Request::new(request))).expect("check batch"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn bench_lookup_sites(criterion: &mut Criterion, fixture: &Fixture) {
    let mut group = criterion.benchmark_group(format!("lookup_sites/{}", fixture.size));
    group.bench_function("agency_first_1000", |b| {
        let index = fixture.index();
        let agency = fixture.dataset().agency_users[0];
        let (page, _) = index.lookup_sites(agency, Level::View, None, 1_000);
        assert_eq!(page.len(), 1_000.min(fixture.dataset().shape.agency_sites as usize));
        b.iter(|| black_box(index.lookup_sites(black_box(agency), Level::View, None, 1_000)));
    });
    group.bench_function("typical_user", |b| {
        let index = fixture.index();
        let users: Vec<_> = fixture.samples().iter().map(|s| s.user).take(1_024).collect();
        let mut next = 0;
        b.iter(|| {
            next = (next + 1) % users.len();
            black_box(index.lookup_sites(users[next], Level::View, None, 100))
        });
    });
    group.finish();
}

fn bench_build(criterion: &mut Criterion, fixture: &Fixture) {
    let mut group = criterion.benchmark_group("build");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    group.bench_function(fixture.size.to_string(), |b| {
        let snapshot = &fixture.dataset().snapshot;
        b.iter_with_large_drop(|| Index::from_snapshot(black_box(snapshot)));
    });
    group.finish();
}

/// Grants of non-owner users on sites, `count` distinct (user, site) pairs from `start`.
fn grant_mutations(dataset: &Dataset, start: usize, count: usize, level: Level) -> Vec<Mutation> {
    let users = &dataset.snapshot.users[dataset.shape.owners as usize..];
    let sites = &dataset.snapshot.sites;
    (start..start + count)
        .map(|n| {
            let (user, site) = (&users[n % users.len()], &sites[(n / users.len()) % sites.len()]);
            Mutation::SetGrant(Grant { subject: Subject::User(user.id), target: Target::Site(site.id), level })
        })
        .collect()
}

fn bench_mutate(criterion: &mut Criterion, fixture: &Fixture) {
    let engine = OnceCell::new();
    let setup = || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("warden.db").display());
        let engine = runtime.block_on(async {
            let store = Store::connect(&url).await.expect("store");
            store.migrate().await.expect("migrate");
            store.import_dataset(&fixture.dataset().snapshot, |_| {}).await.expect("import");
            let engine = Engine::new(store, 1_000_000);
            engine.load().await.expect("load");
            engine
        });
        (runtime, engine, dir)
    };
    let mut group = criterion.benchmark_group(format!("mutate/{}", fixture.size));
    group.throughput(Throughput::Elements(1));
    let mut round = 0;
    group.bench_function("single_grant", |b| {
        let (runtime, engine, _dir) = engine.get_or_init(setup);
        b.iter_batched(
            || {
                round += 1;
                let level = if round % 2 == 0 { Level::View } else { Level::Edit };
                MutateCommand {
                    mutations: grant_mutations(fixture.dataset(), round % 50_000, 1, level),
                    ..Default::default()
                }
            },
            |command| runtime.block_on(engine.mutate(command)).expect("mutate"),
            BatchSize::SmallInput,
        );
    });
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("batch_100k_grants", |b| {
        let (runtime, engine, _dir) = engine.get_or_init(setup);
        b.iter_batched(
            || {
                round += 1;
                // Alternating levels, so that every batch changes every row.
                let level = if round % 2 == 0 { Level::View } else { Level::Edit };
                MutateCommand { mutations: grant_mutations(fixture.dataset(), 0, 100_000, level), ..Default::default() }
            },
            |command| runtime.block_on(engine.mutate(command)).expect("mutate"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Follows a random cycle through 256 MiB of slots: every read depends on
/// the one before and misses the caches, as a decision's lookups on an XL
/// index do. Once on 4 KiB pages (every read also misses the TLB) and once
/// after [`huge_pages::advise_heap`], as the server's index is.
fn bench_memory_latency(criterion: &mut Criterion) {
    const SLOTS: usize = 256 << 20 >> 3;
    let mut group = criterion.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));
    // Sattolo's shuffle: a single cycle through every slot.
    let mut next: Vec<u64> = (0..SLOTS as u64).collect();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for i in (1..SLOTS).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = (state % i as u64) as usize;
        next.swap(i, j);
    }
    let mut chase = |name: &str, next: &[u64]| {
        group.bench_function(name, |b| {
            let mut at = 0_u64;
            b.iter(|| {
                at = next[at as usize];
                black_box(at)
            });
        });
    };
    chase("pointer_chase_256MiB", &next);
    huge_pages::advise_heap().expect("reading /proc/self/maps");
    chase("pointer_chase_256MiB_huge_pages", &next);
    group.finish();
}

/// The sizes named in `WARDEN_BENCH_SIZES` (comma-separated: `S,M,XL`); S and M by default.
fn sizes_from_env() -> Vec<DatasetSize> {
    let raw = std::env::var("WARDEN_BENCH_SIZES").unwrap_or_else(|_| "S,M".to_owned());
    raw.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench_memory_latency(&mut criterion);
    for size in sizes_from_env() {
        let fixture = Fixture::new(size);
        bench_decide(&mut criterion, &fixture);
        bench_lookup_sites(&mut criterion, &fixture);
        bench_handlers(&mut criterion, &fixture);
        bench_build(&mut criterion, &fixture);
        bench_mutate(&mut criterion, &fixture);
    }
    criterion.final_summary();
}
