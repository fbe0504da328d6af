use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert;
use crate::engine::Engine;
use crate::model::Revision;
use crate::pb;

/// Changelog entries read per query while catching up.
const CATCH_UP_CHUNK: u64 = 256;
/// Batches buffered per watcher before the sender waits for the client.
const STREAM_BUFFER: usize = 64;

/// `warden.v1.WatchService`: the changelog as a stream.
pub struct WatchApi {
    engine: Arc<Engine>,
}

impl WatchApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        WatchApi { engine }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

fn out_of_range(from: Revision, oldest: Revision) -> Status {
    Status::out_of_range(format!(
        "revision {from} is older than the changelog holds (it starts after revision {}); \
         resync from a full read and watch from the revision that read returned",
        oldest.saturating_sub(1)
    ))
}

#[tonic::async_trait]
impl pb::watch_service_server::WatchService for WatchApi {
    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<pb::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        let from = convert::revision("from_revision", &request.get_ref().from_revision)?;
        let from = match from {
            Some(from) => from,
            None => self.engine.index()?.revision(),
        };
        if let Some(oldest) = self.engine.store().oldest_retained_revision().await?
            && from + 1 < oldest
        {
            return Err(out_of_range(from, oldest));
        }
        let (batch_tx, batch_rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(send_changes(self.engine.clone(), from, batch_tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(batch_rx))))
    }
}

/// Sends every batch after `last`, in order, then waits for new ones, until
/// the client goes away.
async fn send_changes(
    engine: Arc<Engine>,
    mut last: Revision,
    batch_tx: mpsc::Sender<Result<pb::WatchResponse, Status>>,
) {
    let mut revision_rx = engine.subscribe_revisions();
    loop {
        let batches = match engine.store().changes_since(last, CATCH_UP_CHUNK).await {
            Ok(batches) => batches,
            Err(error) => {
                let _ = batch_tx.send(Err(error.into())).await;
                return;
            }
        };
        if batches.is_empty() {
            tokio::select! {
                reached = revision_rx.wait_for(|applied| *applied > last) => if reached.is_err() { return },
                () = batch_tx.closed() => return,
            }
            continue;
        }
        for (revision, changes) in batches {
            if revision != last + 1 {
                // Pruned while this watcher lagged behind: it cannot resume gaplessly.
                let _ = batch_tx.send(Err(out_of_range(last, revision))).await;
                return;
            }
            let response = pb::WatchResponse {
                revision: revision.to_string(),
                changes: changes.into_iter().map(convert::change_to_pb).collect(),
            };
            if batch_tx.send(Ok(response)).await.is_err() {
                return;
            }
            last = revision;
        }
    }
}
