use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::convert::{self, StoredPasswords};
use super::password;
use crate::engine::{Engine, MutateCommand};
use crate::model::{GroupId, ModelError, ReportId, SiteId, UserId, validate};
use crate::pb;
use crate::store::GrantFilter;

/// `warden.v1.AdminService`: writes through the engine, reads from storage.
pub struct AdminApi {
    engine: Arc<Engine>,
}

impl AdminApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        AdminApi { engine }
    }

    /// Reads the stored hashes a batch needs to verify `current_password`s.
    async fn stored_passwords(&self, request: &pb::MutateRequest) -> Result<StoredPasswords, Status> {
        let mut stored = StoredPasswords::new();
        for user_id in convert::users_giving_current_password(request) {
            stored.insert(user_id, self.engine.store().password_of(user_id).await?);
        }
        Ok(stored)
    }
}

/// Runs CPU-heavy work (password hashing) off the async workers.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work).await.map_err(|_| Status::internal("internal error"))
}

fn found<T>(value: Option<T>, kind: &'static str, id: impl ToString) -> Result<Response<T>, Status> {
    value.map(Response::new).ok_or_else(|| ModelError::not_found(kind, id).into())
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for AdminApi {
    async fn mutate(&self, request: Request<pb::MutateRequest>) -> Result<Response<pb::MutateResponse>, Status> {
        let mut request = request.into_inner();
        let header = convert::mutate_header(&request)?;
        let stored_passwords = self.stored_passwords(&request).await?;
        let raw = std::mem::take(&mut request.mutations);
        let mutations = if convert::converts_quickly(&raw) {
            convert::mutations(raw, &stored_passwords)?
        } else {
            blocking(move || convert::mutations(raw, &stored_passwords)).await??
        };
        let command = MutateCommand {
            mutations,
            actor: header.actor,
            idempotency_key: header.idempotency_key,
            expected_revision: header.expected_revision,
        };
        let committed = self.engine.mutate(command).await?;
        Ok(Response::new(pb::MutateResponse { revision: committed.revision.to_string(), ids: committed.ids }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let id = UserId(convert::uuid("user_id", &request.get_ref().user_id)?);
        let user = self.engine.store().get_user(id).await?;
        found(user.map(convert::user_to_pb), "user", id)
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let request = request.into_inner();
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let search = request.search.trim().to_lowercase();
        let revision = self.engine.published_revision();
        let (users, next) = self.engine.store().list_users(&search, after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListUsersResponse {
            revision: revision.to_string(),
            users: users.into_iter().map(convert::user_to_pb).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn get_site(&self, request: Request<pb::GetSiteRequest>) -> Result<Response<pb::Site>, Status> {
        let id = SiteId(convert::uuid("site_id", &request.get_ref().site_id)?);
        let site = self.engine.store().get_site(id).await?;
        found(site.map(convert::site_to_pb), "site", id)
    }

    async fn list_sites(
        &self,
        request: Request<pb::ListSitesRequest>,
    ) -> Result<Response<pb::ListSitesResponse>, Status> {
        let request = request.into_inner();
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let revision = self.engine.published_revision();
        let (sites, next) = self.engine.store().list_sites(after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListSitesResponse {
            revision: revision.to_string(),
            sites: sites.into_iter().map(convert::site_to_pb).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn get_group(&self, request: Request<pb::GetGroupRequest>) -> Result<Response<pb::Group>, Status> {
        let id = GroupId(convert::uuid("group_id", &request.get_ref().group_id)?);
        let group = self.engine.store().get_group(id).await?;
        found(group.map(convert::group_to_pb), "group", id)
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let request = request.into_inner();
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let revision = self.engine.published_revision();
        let (groups, next) = self.engine.store().list_groups(after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListGroupsResponse {
            revision: revision.to_string(),
            groups: groups.into_iter().map(convert::group_to_pb).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let request = request.into_inner();
        let group = GroupId(convert::uuid("group_id", &request.group_id)?);
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let revision = self.engine.published_revision();
        let (members, next) = self.engine.store().list_group_members(group, after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListGroupMembersResponse {
            revision: revision.to_string(),
            user_ids: members.into_iter().map(|id| id.to_string()).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        use pb::list_grants_request::Filter;
        let request = request.into_inner();
        let filter = match &request.filter {
            Some(Filter::SiteId(id)) => GrantFilter::Site(SiteId(convert::uuid("site_id", id)?)),
            Some(Filter::UserId(id)) => GrantFilter::User(UserId(convert::uuid("user_id", id)?)),
            Some(Filter::GroupId(id)) => GrantFilter::Group(GroupId(convert::uuid("group_id", id)?)),
            None => return Err(ModelError::invalid("filter", "is required: site_id, user_id or group_id").into()),
        };
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let revision = self.engine.published_revision();
        let (grants, next) = self.engine.store().list_grants(filter, after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListGrantsResponse {
            revision: revision.to_string(),
            grants: grants.into_iter().map(convert::grant_to_pb).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn get_report(&self, request: Request<pb::GetReportRequest>) -> Result<Response<pb::Report>, Status> {
        let id = ReportId(convert::uuid("report_id", &request.get_ref().report_id)?);
        let report = self.engine.store().get_report(id).await?;
        found(report.map(convert::report_to_pb), "report", id)
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let request = request.into_inner();
        let site = match request.site_id.as_str() {
            "" => None,
            id => Some(SiteId(convert::uuid("site_id", id)?)),
        };
        let limit = convert::page_size("page_size", request.page_size)?;
        let after = convert::page_token("page_token", &request.page_token)?;
        let revision = self.engine.published_revision();
        let (reports, next) = self.engine.store().list_reports(site, after.as_deref(), limit).await?;
        Ok(Response::new(pb::ListReportsResponse {
            revision: revision.to_string(),
            reports: reports.into_iter().map(convert::report_to_pb).collect(),
            next_page_token: convert::next_page_token(next),
        }))
    }

    async fn verify_password(
        &self,
        request: Request<pb::VerifyPasswordRequest>,
    ) -> Result<Response<pb::VerifyPasswordResponse>, Status> {
        let request = request.into_inner();
        if request.email.trim().is_empty() {
            return Err(ModelError::invalid("email", "is required").into());
        }
        let email_key = validate::email_key(request.email.trim());
        let stored = self.engine.store().password_by_email(&email_key).await?;
        let Some((user_id, Some(hash))) = stored else {
            return Ok(Response::new(pb::VerifyPasswordResponse { valid: false, user_id: String::new() }));
        };
        let valid = blocking(move || password::verify(&request.password, &hash)).await?;
        Ok(Response::new(pb::VerifyPasswordResponse {
            valid,
            user_id: if valid { user_id.to_string() } else { String::new() },
        }))
    }
}
