use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use warden::config::{Cli, Command};
use warden::server::Application;
use warden::store::Store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
    }
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
