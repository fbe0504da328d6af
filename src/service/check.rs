use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, CheckQuery};
use crate::engine::Engine;
use crate::index::{Decision, Index};
use crate::pb;

/// `warden.v1.CheckService`: decisions from the in-memory index.
pub struct CheckApi {
    engine: Arc<Engine>,
}

impl CheckApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        CheckApi { engine }
    }
}

fn answer(index: &Index, query: &CheckQuery) -> pb::CheckResponse {
    let Decision { allowed, level } = index.decide(query.user, query.resource, query.action);
    pb::CheckResponse {
        allowed,
        effective_level: convert::level_to_pb(level) as i32,
        revision: index.revision().to_string(),
    }
}

#[tonic::async_trait]
impl pb::check_service_server::CheckService for CheckApi {
    async fn check(&self, request: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        let query = convert::check_query("", request.into_inner())?;
        let index = self.engine.index_at_least(query.at_least_revision).await?;
        Ok(Response::new(answer(&index, &query)))
    }

    async fn check_batch(
        &self,
        request: Request<pb::CheckBatchRequest>,
    ) -> Result<Response<pb::CheckBatchResponse>, Status> {
        let (queries, at_least_revision) = convert::check_batch(request.into_inner())?;
        let index = self.engine.index_at_least(at_least_revision).await?;
        let results = queries.iter().map(|query| answer(&index, query)).collect();
        Ok(Response::new(pb::CheckBatchResponse { results, revision: index.revision().to_string() }))
    }
}
