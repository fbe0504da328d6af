//! Command line and configuration: every flag also comes from its `WARDEN_*`
//! environment variable (flags win).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::dataset::DatasetSize;

#[derive(Debug, Parser)]
#[command(name = "warden", version, about = "Permission decisions for web analytics, over gRPC")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Applies the schema and serves gRPC until SIGTERM or SIGINT.
    Serve(Config),
    /// Applies the schema and exits.
    Migrate(StorageConfig),
    /// Generates a deterministic benchmark dataset and loads it into an empty
    /// database in one transaction (see BENCHMARKS.md).
    Import(ImportConfig),
}

/// Everything `warden serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to serve gRPC on (port 0 picks a free one).
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub storage: StorageConfig,
    /// How many revisions the changelog keeps for Watch; older watchers must resync.
    #[arg(long, env = "WARDEN_CHANGELOG_RETENTION", default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub changelog_retention: u64,
    /// Once the index is loaded, back it with transparent huge pages (Linux;
    /// 7–14 % off a decision on a large index, see src/huge_pages.rs).
    #[arg(long, env = "WARDEN_HUGE_PAGES", default_value_t = true, action = clap::ArgAction::Set)]
    pub huge_pages: bool,
}

/// Everything `warden import` needs.
#[derive(Debug, Clone, Args)]
pub struct ImportConfig {
    /// Dataset size: S (10k users, ~100k grants), M (100k users, ~1M grants) or XL (1M users, ~10M grants).
    #[arg(long, env = "WARDEN_IMPORT_SIZE", default_value = "S")]
    pub size: DatasetSize,
    /// Seed of the generator: the same size and seed give the same dataset on every machine.
    #[arg(long, env = "WARDEN_IMPORT_SEED", default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub storage: StorageConfig,
}

/// Where the model is stored.
#[derive(Debug, Clone, Args)]
pub struct StorageConfig {
    /// Directory of the embedded SQLite database, used when no database URL is given.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    pub data_dir: PathBuf,
    /// `postgres://user:password@host/db` or `sqlite://path?mode=rwc`; default: SQLite in the data directory.
    #[arg(long, env = "WARDEN_DATABASE_URL")]
    pub database_url: Option<DatabaseUrl>,
}

impl StorageConfig {
    /// The URL to connect to; creates the data directory for the embedded default.
    pub fn resolve_url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.database_url {
            return Ok(url.0.clone());
        }
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data directory `{}`", self.data_dir.display()))?;
        Ok(format!("sqlite://{}?mode=rwc", self.data_dir.join("warden.db").display()))
    }
}

/// A database URL; it may hold a password, so it never prints whole.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split(':').next().unwrap_or_default();
        write!(f, "DatabaseUrl({scheme}://..)")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw.split(':').next() {
            Some("postgres" | "postgresql" | "sqlite") => Ok(DatabaseUrl(raw.to_string())),
            _ => Err("must start with postgres://, postgresql:// or sqlite:".to_string()),
        }
    }
}
