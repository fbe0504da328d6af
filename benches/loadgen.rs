//! gRPC load generator for warden, with a no-op baseline served by the same
//! tonic stack.
//!
//! It regenerates the dataset the server imported (`--size`, `--seed`, the
//! defaults of `warden import`), draws realistic checks from it, and keeps
//! `--concurrency` calls in flight over `--connections` HTTP/2 connections for
//! `--warmup` + `--seconds` (and at most `--max-requests` calls). It prints
//! throughput, latency percentiles, and the CPU used by the server (`--server-pid`)
//! and by itself, so a report shows which side was the bottleneck.
//!
//! The baseline, `--rpc noop` / `noop-batch`, calls the same CheckService
//! methods with the same requests on a server whose handlers answer a constant
//! without an index: what tonic, HTTP/2 and prost cost alone. Without `--addr`
//! the load generator starts that server itself as a child process pinned by
//! `taskset -c <--noop-cpus>`, and stops it at the end; `serve-noop` runs it alone.
//!
//! ```sh
//! taskset -c 0 target/release/warden serve --data-dir /tmp/w-m &
//! taskset -c 1 cargo bench --bench loadgen -- --addr 127.0.0.1:50051 --size M \
//!     --rpc check --concurrency 16 --connections 2 --seconds 10 --server-pid $!
//! taskset -c 1 cargo bench --bench loadgen -- --size M --rpc noop --concurrency 16 --connections 2 --seconds 10
//! ```
//! (See BENCHMARKS.md for every run.)

#![allow(clippy::expect_used, reason = "a load generator that cannot set itself up should stop loudly")]

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use warden::dataset::{Dataset, DatasetSize};
use warden::pb;
use warden::pb::admin_service_client::AdminServiceClient;
use warden::pb::check_service_client::CheckServiceClient;
use warden::pb::check_service_server::{CheckService, CheckServiceServer};

#[derive(Parser)]
#[command(name = "loadgen", about = "gRPC load generator for warden", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: RunArgs,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true, global = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Sub {
    /// Serves the no-op CheckService (constant answers, no index) for a bounded time.
    ServeNoop {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Stops by itself after this long.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Address of warden (or of a `serve-noop`). Without it, `--rpc noop*`
    /// starts its own no-op server, and other calls only print a note and exit.
    #[arg(long)]
    addr: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "check")]
    rpc: Rpc,
    /// The dataset the server holds (as imported by `warden import`).
    #[arg(long, default_value = "S")]
    size: DatasetSize,
    #[arg(long, default_value_t = common::SEED)]
    seed: u64,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// HTTP/2 connections the calls share.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Measured time, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Unmeasured time first.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Checks per CheckBatch, or grants per `mutate-batch`.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Stops after this many calls even if time remains.
    #[arg(long, default_value_t = 100_000_000)]
    max_requests: u64,
    /// The server's process id, to report its CPU time and resident memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// CPUs (taskset list) for the no-op server this starts.
    #[arg(long, default_value = "0")]
    noop_cpus: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Rpc {
    /// CheckService.Check, one sampled check a call.
    Check,
    /// CheckService.CheckBatch with `--batch` checks a call.
    CheckBatch,
    /// Check on the no-op server.
    Noop,
    /// CheckBatch on the no-op server.
    NoopBatch,
    /// LookupSites, first page of 1,000, for the dataset's agency users (10k sites each).
    LookupSites,
    /// AdminService.Mutate with one SetGrant a call.
    MutateGrant,
    /// AdminService.Mutate with `--batch` SetGrants a call.
    MutateBatch,
}

impl Rpc {
    fn is_noop(self) -> bool {
        matches!(self, Rpc::Noop | Rpc::NoopBatch)
    }
}

/// Requests ready to send, cycled through by the workers.
enum Pool {
    Check(Vec<pb::CheckRequest>),
    CheckBatch(Vec<pb::CheckBatchRequest>),
    LookupSites(Vec<pb::LookupSitesRequest>),
    Mutate(Vec<pb::MutateRequest>),
}

impl Pool {
    fn len(&self) -> usize {
        match self {
            Pool::Check(requests) => requests.len(),
            Pool::CheckBatch(requests) => requests.len(),
            Pool::LookupSites(requests) => requests.len(),
            Pool::Mutate(requests) => requests.len(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Sub::ServeNoop { listen, seconds }) => serve_noop(listen, Duration::from_secs(seconds)).await,
        None if cli.run.addr.is_none() && !cli.run.rpc.is_noop() => {
            println!("loadgen: nothing to do without --addr (see `cargo bench --bench loadgen -- --help`)");
            Ok(())
        }
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dataset = Dataset::generate(args.size.shape(), args.seed);
    let pool = Arc::new(build_pool(&args, &dataset));
    eprintln!("dataset {} regenerated and {} requests prepared in {:.1?}", args.size, pool.len(), started.elapsed());
    drop(dataset);

    let mut noop_server = None;
    let (addr, server_pid) = match args.addr {
        Some(addr) => (addr, args.server_pid),
        None => {
            let (child, addr) = spawn_noop_server(&args)?;
            let pid = child.id();
            noop_server = Some(child);
            (addr, Some(pid))
        }
    };
    let outcome = drive(&args, addr, server_pid, pool).await;
    if let Some(mut child) = noop_server {
        // Only the child this process started.
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome
}

/// Sends the load and prints the report.
async fn drive(args: &RunArgs, addr: SocketAddr, server_pid: Option<u32>, pool: Arc<Pool>) -> anyhow::Result<()> {
    let mut channels = Vec::new();
    for _ in 0..args.connections.max(1) {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
        channels.push(endpoint.connect().await?);
    }
    if !args.rpc.is_noop() {
        wait_until_serving(channels[0].clone()).await?;
    }

    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    let deadline = warmup_end + Duration::from_secs_f64(args.seconds);
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..args.concurrency.max(1) {
        let channel = channels[worker % channels.len()].clone();
        let pool = pool.clone();
        let issued = issued.clone();
        let max_requests = args.max_requests;
        // Spread the workers over the pool so they do not send the same requests.
        let offset = worker * pool.len() / args.concurrency.max(1);
        workers.push(tokio::spawn(async move {
            work(channel, &pool, offset, warmup_end, deadline, &issued, max_requests).await
        }));
    }
    tokio::time::sleep_until(warmup_end.into()).await;
    let cpu_before = (server_pid.and_then(cpu_seconds), cpu_seconds(std::process::id()));
    let window_start = Instant::now();

    let mut total = Tally::new();
    for worker in workers {
        total.merge(worker.await?);
    }
    let window = total.last_done.map_or(Duration::ZERO, |done| done.saturating_duration_since(window_start));
    let cpu_after = (server_pid.and_then(cpu_seconds), cpu_seconds(std::process::id()));
    report(args, addr, &total, window, cpu_before, cpu_after, server_pid);
    Ok(())
}

/// What one worker (or all of them) saw in the measured window.
struct Tally {
    latency_ns: Histogram<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

impl Tally {
    fn new() -> Tally {
        let latency_ns = Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("histogram bounds");
        Tally { latency_ns, ok: 0, errors: 0, first_error: None, last_done: None }
    }

    fn merge(&mut self, other: Tally) {
        self.latency_ns.add(&other.latency_ns).expect("histograms of the same bounds");
        self.ok += other.ok;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.last_done = self.last_done.max(other.last_done);
    }
}

async fn work(
    channel: Channel,
    pool: &Pool,
    offset: usize,
    warmup_end: Instant,
    deadline: Instant,
    issued: &AtomicU64,
    max_requests: u64,
) -> Tally {
    let mut check = CheckServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20);
    let mut admin = AdminServiceClient::new(channel).max_encoding_message_size(256 << 20);
    let mut tally = Tally::new();
    let mut next = offset;
    loop {
        let sent = Instant::now();
        if sent >= deadline || issued.fetch_add(1, Ordering::Relaxed) >= max_requests {
            return tally;
        }
        next = (next + 1) % pool.len();
        let outcome: Result<(), Status> = match pool {
            Pool::Check(requests) => check.check(requests[next].clone()).await.map(drop),
            Pool::CheckBatch(requests) => check.check_batch(requests[next].clone()).await.map(drop),
            Pool::LookupSites(requests) => check.lookup_sites(requests[next].clone()).await.map(drop),
            Pool::Mutate(requests) => admin.mutate(requests[next].clone()).await.map(drop),
        };
        let done = Instant::now();
        if sent < warmup_end {
            continue;
        }
        tally.last_done = Some(done);
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                let _ = tally.latency_ns.record((done - sent).as_nanos() as u64);
            }
            Err(status) => {
                tally.errors += 1;
                tally.first_error.get_or_insert_with(|| format!("{:?}: {}", status.code(), status.message()));
            }
        }
    }
}

fn build_pool(args: &RunArgs, dataset: &Dataset) -> Pool {
    let snapshot = &dataset.snapshot;
    match args.rpc {
        Rpc::Check | Rpc::Noop => {
            Pool::Check(dataset.sample_checks(100_000, 1).iter().map(common::check_request).collect())
        }
        Rpc::CheckBatch | Rpc::NoopBatch => {
            let samples = dataset.sample_checks((args.batch * 1_000).clamp(10_000, 1_000_000), 1);
            let batch = |chunk: &[warden::model::Check]| pb::CheckBatchRequest {
                checks: chunk.iter().map(common::check_request).collect(),
                at_least_revision: String::new(),
            };
            Pool::CheckBatch(samples.chunks(args.batch.max(1)).map(batch).collect())
        }
        Rpc::LookupSites => Pool::LookupSites(
            dataset
                .agency_users
                .iter()
                .map(|user| pb::LookupSitesRequest {
                    user_id: user.to_string(),
                    min_level: pb::Level::View as i32,
                    page_size: 1_000,
                    ..Default::default()
                })
                .collect(),
        ),
        Rpc::MutateGrant | Rpc::MutateBatch => {
            // Non-owner users (owners come first) on sites, in an order that
            // keeps every (user, site) of a pass distinct. Single grants come
            // in four passes over the same pairs, one level each, so that
            // every call changes a grant even when the pool is cycled (a
            // SetGrant to the level a grant already has writes nothing).
            let users = &snapshot.users[dataset.shape.owners as usize..];
            let sites = &snapshot.sites;
            let levels = [pb::Level::View, pb::Level::Edit, pb::Level::EditPublish, pb::Level::Manage];
            let pair = |n: usize| {
                let user = &users[(n * 7_919) % users.len()];
                let site = &sites[(n / users.len() + n * 104_729) % sites.len()];
                (user.id.to_string(), site.id.to_string())
            };
            let requests: Vec<Vec<pb::Mutation>> = if args.rpc == Rpc::MutateGrant {
                const PAIRS: usize = 100_000;
                (0..levels.len() * PAIRS)
                    .map(|r| {
                        let (user, site) = pair(r % PAIRS);
                        vec![set_grant(user, site, levels[r / PAIRS])]
                    })
                    .collect()
            } else {
                let per_request = args.batch.max(1);
                (0..4)
                    .map(|r| {
                        (0..per_request)
                            .map(|j| {
                                let (user, site) = pair(r * per_request + j);
                                set_grant(user, site, levels[j % levels.len()])
                            })
                            .collect()
                    })
                    .collect()
            };
            Pool::Mutate(
                requests.into_iter().map(|mutations| pb::MutateRequest { mutations, ..Default::default() }).collect(),
            )
        }
    }
}

fn set_grant(user_id: String, site_id: String, level: pb::Level) -> pb::Mutation {
    pb::Mutation {
        op: Some(pb::mutation::Op::SetGrant(pb::SetGrant {
            subject: Some(pb::Subject { kind: Some(pb::subject::Kind::UserId(user_id)) }),
            level: level as i32,
            target: Some(pb::set_grant::Target::SiteId(site_id)),
        })),
    }
}

/// Waits (at most two minutes) until the server's health says SERVING.
async fn wait_until_serving(channel: Channel) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let mut health = HealthClient::new(channel);
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let status = health.check(HealthCheckRequest { service: String::new() }).await.map(|r| r.into_inner().status);
        if status.as_ref().is_ok_and(|s| *s == ServingStatus::Serving as i32) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < give_up, "the server is not SERVING after two minutes: {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[allow(clippy::too_many_arguments, reason = "a report of one run")]
fn report(
    args: &RunArgs,
    addr: SocketAddr,
    tally: &Tally,
    window: Duration,
    cpu_before: (Option<f64>, Option<f64>),
    cpu_after: (Option<f64>, Option<f64>),
    server_pid: Option<u32>,
) {
    let seconds = window.as_secs_f64().max(f64::EPSILON);
    let rps = tally.ok as f64 / seconds;
    let per_call = match args.rpc {
        Rpc::CheckBatch | Rpc::NoopBatch | Rpc::MutateBatch => args.batch as f64,
        _ => 1.0,
    };
    let us = |q: f64| tally.latency_ns.value_at_quantile(q) as f64 / 1_000.0;
    let cpu = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) => format!("{:.0}%", 100.0 * (after - before) / seconds),
        _ => "n/a".to_owned(),
    };
    let server_cpu = cpu(cpu_before.0, cpu_after.0);
    let client_cpu = cpu(cpu_before.1, cpu_after.1);
    let server_rss = server_pid.and_then(rss_mib).map_or("n/a".to_owned(), |mib| format!("{mib} MiB"));
    println!(
        "rpc {:?} at {addr}, dataset {}, concurrency {}, connections {}, measured {:.2} s after {:.0} s warm-up",
        args.rpc, args.size, args.concurrency, args.connections, seconds, args.warmup
    );
    println!("  {} ok, {} errors; {:.0} calls/s ({:.0} items/s)", tally.ok, tally.errors, rps, rps * per_call);
    println!(
        "  latency µs: p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}",
        us(0.50),
        us(0.90),
        us(0.99),
        us(0.999),
        tally.latency_ns.max() as f64 / 1_000.0
    );
    println!("  cpu: server {server_cpu} of a core (rss {server_rss}), load generator {client_cpu}");
    if let Some(error) = &tally.first_error {
        println!("  first error: {error}");
    }
    println!(
        "RESULT rpc={:?} size={} concurrency={} connections={} calls_per_s={:.0} items_per_s={:.0} p50_us={:.0} p90_us={:.0} p99_us={:.0} p999_us={:.0} errors={} server_cpu={} client_cpu={} server_rss={}",
        args.rpc,
        args.size,
        args.concurrency,
        args.connections,
        rps,
        rps * per_call,
        us(0.50),
        us(0.90),
        us(0.99),
        us(0.999),
        tally.errors,
        server_cpu,
        client_cpu,
        server_rss.replace(' ', "")
    );
}

/// CPU seconds (user + system) a process has used, from /proc (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

/// Resident memory of a process in MiB, from /proc (Linux).
fn rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// Starts `serve-noop` as a child pinned to `--noop-cpus` and reads its address.
fn spawn_noop_server(args: &RunArgs) -> anyhow::Result<(Child, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let lifetime = (args.warmup + args.seconds + 60.0).ceil() as u64;
    let mut child = Command::new("taskset")
        .args(["-c", &args.noop_cpus])
        .arg(exe)
        .args(["serve-noop", "--listen", "127.0.0.1:0", "--seconds", &lifetime.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting the no-op server with taskset: {e}"))?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout from the no-op server"))?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let addr = line.trim().strip_prefix("listening on ").unwrap_or_default().parse();
    match addr {
        Ok(addr) => Ok((child, addr)),
        Err(_) => {
            let _ = child.kill();
            anyhow::bail!("the no-op server said `{}` instead of its address", line.trim())
        }
    }
}

/// Serves the no-op CheckService until `lifetime` has passed.
async fn serve_noop(listen: SocketAddr, lifetime: Duration) -> anyhow::Result<()> {
    // As warden binds: without TCP_NODELAY every small response waits ~40 ms.
    let incoming =
        TcpIncoming::bind(listen).map_err(|e| anyhow::anyhow!("binding {listen}: {e}"))?.with_nodelay(Some(true));
    let addr = incoming.local_addr()?;
    println!("listening on {addr}");
    Server::builder()
        .add_service(CheckServiceServer::new(NoopCheck))
        .serve_with_incoming_shutdown(incoming, tokio::time::sleep(lifetime))
        .await?;
    Ok(())
}

/// A CheckService that answers without looking anything up: the transport's limit.
struct NoopCheck;

fn constant_answer() -> pb::CheckResponse {
    pb::CheckResponse { allowed: true, effective_level: pb::Level::View as i32, revision: "1".to_owned() }
}

#[tonic::async_trait]
impl CheckService for NoopCheck {
    async fn check(&self, _: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        Ok(Response::new(constant_answer()))
    }

    async fn check_batch(
        &self,
        request: Request<pb::CheckBatchRequest>,
    ) -> Result<Response<pb::CheckBatchResponse>, Status> {
        let results = vec![constant_answer(); request.get_ref().checks.len()];
        Ok(Response::new(pb::CheckBatchResponse { results, revision: "1".to_owned() }))
    }

    async fn lookup_sites(
        &self,
        _: Request<pb::LookupSitesRequest>,
    ) -> Result<Response<pb::LookupSitesResponse>, Status> {
        Err(Status::unimplemented("the no-op server answers Check and CheckBatch only"))
    }

    async fn lookup_users(
        &self,
        _: Request<pb::LookupUsersRequest>,
    ) -> Result<Response<pb::LookupUsersResponse>, Status> {
        Err(Status::unimplemented("the no-op server answers Check and CheckBatch only"))
    }

    async fn explain(&self, _: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        Err(Status::unimplemented("the no-op server answers Check and CheckBatch only"))
    }
}
