use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use tracing_subscriber::EnvFilter;
use warden::config::{Cli, Command, ImportConfig};
use warden::dataset::Dataset;
use warden::server::Application;
use warden::store::Store;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads (src/malloc.rs).
    warden::malloc::restart_with_deep_thread_caches();
    warden::malloc::use_one_arena();
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    match Cli::parse().command {
        Command::Serve(config) => {
            let app = Application::build(&config).await?;
            app.run_until_stopped(shutdown_signal()).await
        }
        Command::Migrate(storage) => {
            let store = Store::connect(&storage.resolve_url()?).await.context("connecting to storage")?;
            store.migrate().await.context("applying migrations")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Import(config) => import(config).await,
    }
}

/// Generates the dataset and imports it, with progress on the terminal.
async fn import(config: ImportConfig) -> anyhow::Result<()> {
    let store = Store::connect(&config.storage.resolve_url()?).await.context("connecting to storage")?;
    store.migrate().await.context("applying migrations")?;
    let (size, seed) = (config.size, config.seed);
    let spinner = ProgressBar::new_spinner().with_message(format!("generating dataset {size} with seed {seed}"));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let dataset = tokio::task::spawn_blocking(move || Dataset::generate(size.shape(), seed)).await?;
    spinner.finish_and_clear();

    let style = ProgressStyle::with_template("{msg:>11} [{bar:40}] {human_pos}/{human_len} rows {per_sec} eta {eta}")?;
    let bar = ProgressBar::new(0).with_style(style.progress_chars("=> "));
    let started = Instant::now();
    let revision = store
        .import_dataset(&dataset.snapshot, |progress| {
            bar.set_length(progress.rows_total);
            bar.set_position(progress.rows_done);
            bar.set_message(progress.table);
        })
        .await?;
    bar.finish_and_clear();
    let snapshot = &dataset.snapshot;
    tracing::info!(
        %size,
        seed,
        revision,
        users = snapshot.users.len(),
        sites = snapshot.sites.len(),
        groups = snapshot.groups.len(),
        memberships = snapshot.memberships.len(),
        grants = snapshot.grants.len(),
        reports = snapshot.reports.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "import done"
    );
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
