use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert;
use crate::engine::Engine;
use crate::index::Decision;
use crate::model::{SiteId, UserId};
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

fn answer(Decision { allowed, level }: Decision, revision: &str) -> pb::CheckResponse {
    pb::CheckResponse { allowed, effective_level: convert::level_to_pb(level) as i32, revision: revision.to_owned() }
}

#[tonic::async_trait]
impl pb::check_service_server::CheckService for CheckApi {
    async fn check(&self, request: Request<pb::CheckRequest>) -> Result<Response<pb::CheckResponse>, Status> {
        let query = convert::check_query(request.into_inner())?;
        let index = self.engine.index_at_least(query.at_least_revision).await?;
        let decision = index.decide(query.check.user, query.check.resource, query.check.action);
        Ok(Response::new(answer(decision, &index.revision().to_string())))
    }

    async fn check_batch(
        &self,
        request: Request<pb::CheckBatchRequest>,
    ) -> Result<Response<pb::CheckBatchResponse>, Status> {
        let (checks, at_least_revision) = convert::check_batch(request.into_inner())?;
        let index = self.engine.index_at_least(at_least_revision).await?;
        let revision = index.revision().to_string();
        let results = index.decide_all(&checks).map(|decision| answer(decision, &revision)).collect();
        Ok(Response::new(pb::CheckBatchResponse { results, revision }))
    }

    async fn lookup_sites(
        &self,
        request: Request<pb::LookupSitesRequest>,
    ) -> Result<Response<pb::LookupSitesResponse>, Status> {
        let request = request.into_inner();
        let user = UserId(convert::uuid("user_id", &request.user_id)?);
        let min_level = convert::min_level("min_level", request.min_level)?;
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::id_page_token("page_token", &request.page_token)?.map(SiteId);
        let at_least = convert::revision("at_least_revision", &request.at_least_revision)?;
        let index = self.engine.index_at_least(at_least).await?;
        let (sites, more) = index.lookup_sites(user, min_level, after, limit as usize);
        Ok(Response::new(pb::LookupSitesResponse {
            next_page_token: convert::id_next_page_token(sites.last().map(|s| s.site.0), more),
            sites: sites.iter().map(convert::site_access_to_pb).collect(),
            revision: index.revision().to_string(),
        }))
    }

    async fn lookup_users(
        &self,
        request: Request<pb::LookupUsersRequest>,
    ) -> Result<Response<pb::LookupUsersResponse>, Status> {
        let request = request.into_inner();
        let site = SiteId(convert::uuid("site_id", &request.site_id)?);
        let min_level = convert::min_level("min_level", request.min_level)?;
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::id_page_token("page_token", &request.page_token)?.map(UserId);
        let at_least = convert::revision("at_least_revision", &request.at_least_revision)?;
        let index = self.engine.index_at_least(at_least).await?;
        let (users, more) = index.lookup_users(site, min_level, after, limit as usize);
        Ok(Response::new(pb::LookupUsersResponse {
            next_page_token: convert::id_next_page_token(users.last().map(|u| u.user.0), more),
            users: users.into_iter().map(convert::user_access_to_pb).collect(),
            revision: index.revision().to_string(),
        }))
    }

    async fn explain(&self, request: Request<pb::ExplainRequest>) -> Result<Response<pb::ExplainResponse>, Status> {
        let request = request.into_inner();
        let user = UserId(convert::uuid("user_id", &request.user_id)?);
        let resource = convert::resource("resource", request.resource)?;
        let at_least = convert::revision("at_least_revision", &request.at_least_revision)?;
        let index = self.engine.index_at_least(at_least).await?;
        let explanation = index.explain(user, resource);
        Ok(Response::new(convert::explanation_to_pb(explanation, index.revision())))
    }
}
