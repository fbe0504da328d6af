//! Start-up and shutdown: `Application::build` connects, migrates and binds;
//! `run_until_stopped` loads the index behind a NOT_SERVING health status,
//! serves until the shutdown future resolves, and meanwhile keeps the index
//! in step with what other replicas commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::engine::Engine;
use crate::pb::admin_service_server::AdminServiceServer;
use crate::pb::check_service_server::CheckServiceServer;
use crate::pb::watch_service_server::WatchServiceServer;
use crate::service::{AdminApi, CheckApi, WatchApi};
use crate::store::Store;

/// How long in-flight calls get after health turns NOT_SERVING.
const DRAIN: Duration = Duration::from_millis(500);
/// How long shutdown waits for open calls and streams before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Pause between attempts to load the index while storage is unreachable.
const LOAD_RETRY: Duration = Duration::from_secs(2);

/// Largest request AdminService accepts: a Mutate of 100,000 mutations is
/// about 8 MiB, twice tonic's default limit of 4 MiB.
const MAX_MUTATE_MESSAGE: usize = 64 * 1024 * 1024;

/// Health is reported for the whole server ("") and for each warden service.
const HEALTH_SERVICES: [&str; 4] = ["", "warden.v1.CheckService", "warden.v1.AdminService", "warden.v1.WatchService"];

/// A bound, migrated, not yet serving warden.
pub struct Application {
    incoming: TcpIncoming,
    local_addr: SocketAddr,
    engine: Arc<Engine>,
    huge_pages: bool,
}

impl Application {
    /// Connects to storage, applies migrations and binds the listen address.
    pub async fn build(config: &Config) -> anyhow::Result<Application> {
        let url = config.storage.resolve_url()?;
        let store = Store::connect(&url).await.context("connecting to storage")?;
        store.migrate().await.context("applying migrations")?;
        // Nagle's algorithm would add ~40 ms to every small response.
        let incoming = TcpIncoming::bind(config.listen)
            .map_err(|e| anyhow::anyhow!("binding `{}`: {e}", config.listen))?
            .with_nodelay(Some(true));
        let local_addr = incoming.local_addr().context("reading the bound address")?;
        let engine = Arc::new(Engine::new(store, config.changelog_retention));
        Ok(Application { incoming, local_addr, engine, huge_pages: config.huge_pages })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The engine, for in-process inspection (tests compare its index with
    /// one rebuilt from storage).
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    /// Serves until `shutdown` resolves, then turns NOT_SERVING, drains and stops.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::NotServing).await;
        // Dropped when serving ends, which stops the task.
        let mut index_task = tokio::task::JoinSet::new();
        index_task.spawn(keep_index(self.engine.clone(), health.clone(), self.huge_pages));

        // The same public services on both reflection versions (many grpcurl builds speak only v1alpha).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .include_reflection_service(false)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel();
        let drain_health = health.clone();
        let graceful = async move {
            shutdown.await;
            info!("shutting down");
            set_health(&drain_health, ServingStatus::NotServing).await;
            let _ = stopping_tx.send(());
            tokio::time::sleep(DRAIN).await;
        };

        info!(addr = %self.local_addr, "serving gRPC");
        let server = Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(CheckServiceServer::new(CheckApi::new(self.engine.clone())))
            .add_service(
                AdminServiceServer::new(AdminApi::new(self.engine.clone()))
                    .max_decoding_message_size(MAX_MUTATE_MESSAGE),
            )
            .add_service(WatchServiceServer::new(WatchApi::new(self.engine.clone())))
            .serve_with_incoming_shutdown(self.incoming, graceful);
        tokio::pin!(server);

        tokio::select! {
            served = &mut server => served?,
            _ = stopping_rx => {
                // Health watches and other long streams never end by themselves.
                match tokio::time::timeout(DRAIN + SHUTDOWN_GRACE, &mut server).await {
                    Ok(served) => served?,
                    Err(_) => warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "open calls did not finish; closing them"),
                }
            }
        }
        info!("stopped");
        Ok(())
    }
}

/// Loads the index, retrying while storage is unreachable, then reports
/// SERVING, moves the index onto huge pages if asked, and follows what
/// other processes commit to the same storage.
async fn keep_index(engine: Arc<Engine>, health: HealthReporter, huge_pages: bool) {
    loop {
        match engine.load().await {
            Ok(()) => break,
            Err(cause) => {
                error!(%cause, retry_in_s = LOAD_RETRY.as_secs(), "loading the index failed");
                tokio::time::sleep(LOAD_RETRY).await;
            }
        }
    }
    set_health(&health, ServingStatus::Serving).await;
    // Following starts at once; advising huge pages takes seconds at XL.
    tokio::join!(advise_huge_pages(huge_pages), engine.follow_storage());
}

/// Moves the heap onto huge pages if asked (see [`crate::huge_pages`]).
async fn advise_huge_pages(huge_pages: bool) {
    if !huge_pages {
        return;
    }
    let started = Instant::now();
    match tokio::task::spawn_blocking(crate::huge_pages::advise_heap).await {
        Ok(Ok(advised)) => info!(
            regions = advised.regions,
            mib = advised.bytes >> 20,
            not_collapsed = advised.not_collapsed,
            elapsed_ms = started.elapsed().as_millis(),
            "heap advised to use huge pages"
        ),
        Ok(Err(cause)) => warn!(%cause, "advising huge pages failed"),
        Err(cause) => warn!(%cause, "advising huge pages panicked"),
    }
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    for service in HEALTH_SERVICES {
        health.set_service_status(service, status).await;
    }
}
