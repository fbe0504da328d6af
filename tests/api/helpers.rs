//! The test harness: a real warden on `127.0.0.1:0` over real storage
//! (SQLite in a temporary directory, or a fresh PostgreSQL database), with
//! typed clients on one channel.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use warden::config::{Config, DatabaseUrl, StorageConfig};
use warden::engine::Engine;
use warden::pb::admin_service_client::AdminServiceClient;
use warden::pb::check_service_client::CheckServiceClient;
use warden::pb::watch_service_client::WatchServiceClient;
use warden::pb::{self, mutation::Op};
use warden::server::Application;

/// Set to a PostgreSQL URL (e.g. `postgres://postgres@127.0.0.1:5432/test`)
/// to run every backend test on PostgreSQL too; each test gets its own database.
pub const POSTGRES_ENV: &str = "WARDEN_TEST_POSTGRES_URL";

#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A running warden and clients connected to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub check: CheckServiceClient<Channel>,
    pub admin: AdminServiceClient<Channel>,
    pub watch: WatchServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    /// The running engine: tests compare its index with one rebuilt from storage.
    pub engine: Arc<Engine>,
    backend: Backend,
    shutdown_tx: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    /// Keeps the SQLite data directory alive as long as the app.
    _data_dir: Option<Arc<TempDir>>,
}

/// Starts warden on a fresh SQLite database in a temporary directory.
pub async fn spawn_sqlite() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temporary directory"));
    let backend = Backend::Sqlite(dir.path().to_path_buf());
    let mut app = start(backend).await;
    app._data_dir = Some(dir);
    app
}

/// Starts warden on a fresh PostgreSQL database, or `None` when
/// `WARDEN_TEST_POSTGRES_URL` is not set.
pub async fn spawn_postgres() -> Option<TestApp> {
    let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
        eprintln!("skipped on PostgreSQL: set {POSTGRES_ENV} to run");
        return None;
    };
    let name = format!("warden_test_{}", uuid::Uuid::new_v4().simple());
    create_database(&admin_url, &name).await;
    let (base, _) = admin_url.rsplit_once('/').expect("database URL ends in /<database>");
    Some(start(Backend::Postgres(format!("{base}/{name}"))).await)
}

async fn create_database(admin_url: &str, name: &str) {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(admin_url).await.expect("connect to the PostgreSQL admin database");
    db.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    db.close().await.expect("close admin connection");
}

async fn start(backend: Backend) -> TestApp {
    start_with_retention(backend, 1_000_000).await
}

async fn start_with_retention(backend: Backend, changelog_retention: u64) -> TestApp {
    let storage = match &backend {
        Backend::Sqlite(dir) => StorageConfig { data_dir: dir.clone(), database_url: None },
        Backend::Postgres(url) => {
            StorageConfig { data_dir: PathBuf::from("unused"), database_url: Some(DatabaseUrl(url.clone())) }
        }
    };
    // Huge pages as in production: every test server advises the test process's heap once loaded.
    let config =
        Config { listen: "127.0.0.1:0".parse().expect("address"), storage, changelog_retention, huge_pages: true };
    let app = Application::build(&config).await.expect("build application");
    let addr = app.local_addr();
    let engine = app.engine();
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = shutdown_rx.await;
    }));
    let channel =
        Channel::from_shared(format!("http://{addr}")).expect("endpoint").connect().await.expect("connect to warden");
    let mut app = TestApp {
        addr,
        check: CheckServiceClient::new(channel.clone()),
        admin: AdminServiceClient::new(channel.clone()),
        watch: WatchServiceClient::new(channel.clone()),
        health: HealthClient::new(channel),
        engine,
        backend,
        shutdown_tx: Some(shutdown_tx),
        server: Some(server),
        _data_dir: None,
    };
    app.wait_until_serving().await;
    app
}

impl TestApp {
    /// Waits (on the health watch stream, no sleeps) until the index is loaded.
    pub async fn wait_until_serving(&mut self) {
        let request = HealthCheckRequest { service: String::new() };
        let mut stream = self.health.watch(request).await.expect("health watch").into_inner();
        while let Some(status) = stream.message().await.expect("health stream") {
            if status.status == ServingStatus::Serving as i32 {
                return;
            }
        }
        panic!("health stream ended before SERVING");
    }

    /// The URL of this app's database, for opening a second `Store` on it.
    pub fn database_url(&self) -> String {
        match &self.backend {
            Backend::Sqlite(dir) => format!("sqlite://{}?mode=rwc", dir.join("warden.db").display()),
            Backend::Postgres(url) => url.clone(),
        }
    }

    /// Stops the server gracefully and starts a new one on the same storage:
    /// its index is rebuilt from storage alone.
    pub async fn restart(self) -> TestApp {
        self.restart_with_retention(1_000_000).await
    }

    /// Starts a second server on the same storage, as another replica would.
    pub async fn spawn_replica(&self) -> TestApp {
        let mut replica = start(self.backend.clone()).await;
        replica._data_dir = self._data_dir.clone();
        replica
    }

    /// Restarts on the same storage with a changelog that keeps only the
    /// last `changelog_retention` revisions.
    pub async fn restart_with_retention(mut self, changelog_retention: u64) -> TestApp {
        self.stop().await;
        let data_dir = self._data_dir.take();
        let mut app = start_with_retention(self.backend.clone(), changelog_retention).await;
        app._data_dir = data_dir;
        app
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// Asserts that the index this server built by increments equals one
    /// rebuilt from storage by a new server.
    pub async fn assert_index_equals_storage(&self) {
        let rebuilt = self.spawn_replica().await;
        assert!(
            *rebuilt.engine.index().expect("loaded") == *self.engine.index().expect("loaded"),
            "the index differs from one rebuilt from storage"
        );
    }

    /// Applies a batch on behalf of `actor` (None: the trusted tooling).
    pub async fn mutate(&mut self, actor: Option<&str>, ops: Vec<Op>) -> Result<pb::MutateResponse, Status> {
        let request = pb::MutateRequest {
            mutations: ops.into_iter().map(|op| pb::Mutation { op: Some(op) }).collect(),
            actor_user_id: actor.unwrap_or_default().to_string(),
            ..Default::default()
        };
        self.admin.mutate(request).await.map(|r| r.into_inner())
    }

    /// Like `mutate`, but the batch must succeed.
    pub async fn apply(&mut self, actor: Option<&str>, ops: Vec<Op>) -> pb::MutateResponse {
        match self.mutate(actor, ops).await {
            Ok(response) => response,
            Err(status) => panic!("mutate failed: {status:?}"),
        }
    }

    /// Asks whether `user` may do `action` on `resource`.
    pub async fn check(&mut self, user: &str, resource: pb::resource::Kind, action: pb::Action) -> pb::CheckResponse {
        self.check_at(user, resource, action, "").await
    }

    /// [`TestApp::check`] on an index at `at_least_revision` at least ("": any).
    pub async fn check_at(
        &mut self,
        user: &str,
        resource: pb::resource::Kind,
        action: pb::Action,
        at_least_revision: &str,
    ) -> pb::CheckResponse {
        let request = pb::CheckRequest {
            user_id: user.to_string(),
            resource: Some(pb::Resource { kind: Some(resource) }),
            action: action as i32,
            at_least_revision: at_least_revision.to_string(),
        };
        self.check.check(request).await.expect("check").into_inner()
    }

    /// Whether `user` may do `action` on `site`.
    pub async fn can(&mut self, user: &str, action: pb::Action, site: &str) -> bool {
        self.check(user, site_resource(site), action).await.allowed
    }

    /// Whether `user` may do `action` on `report`.
    pub async fn can_report(&mut self, user: &str, action: pb::Action, report: &str) -> bool {
        self.check(user, pb::resource::Kind::ReportId(report.to_string()), action).await.allowed
    }

    /// The user's effective level on the site.
    pub async fn level(&mut self, user: &str, site: &str) -> pb::Level {
        let response = self.check(user, site_resource(site), pb::Action::View).await;
        pb::Level::try_from(response.effective_level).expect("a known level")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown_tx.take() {
            let _ = tx.send(());
        }
    }
}

pub fn site_resource(site: &str) -> pb::resource::Kind {
    pb::resource::Kind::SiteId(site.to_string())
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

// Builders for the mutations tests use most; each takes the caller-chosen id.

pub fn create_user(id: &str, email: &str, role: pb::Role) -> Op {
    Op::CreateUser(pb::CreateUser {
        id: id.to_string(),
        email: email.to_string(),
        name: email.split('@').next().unwrap_or_default().to_string(),
        role: role as i32,
        ..Default::default()
    })
}

pub fn create_site(id: &str, name: &str) -> Op {
    Op::CreateSite(pb::CreateSite { id: id.to_string(), name: name.to_string() })
}

pub fn create_group(id: &str, name: &str) -> Op {
    Op::CreateGroup(pb::CreateGroup { id: id.to_string(), name: name.to_string(), ..Default::default() })
}

pub fn add_members(group: &str, users: &[&str]) -> Op {
    Op::AddGroupMembers(pb::AddGroupMembers {
        group_id: group.to_string(),
        user_ids: users.iter().map(|u| u.to_string()).collect(),
    })
}

pub fn remove_members(group: &str, users: &[&str]) -> Op {
    Op::RemoveGroupMembers(pb::RemoveGroupMembers {
        group_id: group.to_string(),
        user_ids: users.iter().map(|u| u.to_string()).collect(),
    })
}

pub fn grant_user(user: &str, site: &str, level: pb::Level) -> Op {
    set_grant(pb::subject::Kind::UserId(user.to_string()), pb::set_grant::Target::SiteId(site.to_string()), level)
}

pub fn grant_user_all_sites(user: &str, level: pb::Level) -> Op {
    set_grant(pb::subject::Kind::UserId(user.to_string()), pb::set_grant::Target::AllSites(true), level)
}

pub fn grant_group(group: &str, site: &str, level: pb::Level) -> Op {
    set_grant(pb::subject::Kind::GroupId(group.to_string()), pb::set_grant::Target::SiteId(site.to_string()), level)
}

pub fn grant_group_all_sites(group: &str, level: pb::Level) -> Op {
    set_grant(pb::subject::Kind::GroupId(group.to_string()), pb::set_grant::Target::AllSites(true), level)
}

pub fn set_grant(subject: pb::subject::Kind, target: pb::set_grant::Target, level: pb::Level) -> Op {
    Op::SetGrant(pb::SetGrant {
        subject: Some(pb::Subject { kind: Some(subject) }),
        target: Some(target),
        level: level as i32,
    })
}

pub fn create_report(id: &str, site: &str, author: &str, visibility: pb::ReportVisibility) -> Op {
    Op::CreateReport(pb::CreateReport {
        id: id.to_string(),
        site_id: site.to_string(),
        author_user_id: author.to_string(),
        name: format!("report {id}"),
        visibility: visibility as i32,
    })
}

pub fn delete_user(id: &str) -> Op {
    Op::DeleteUser(pb::DeleteUser { user_id: id.to_string() })
}

pub fn set_role(id: &str, role: pb::Role) -> Op {
    Op::UpdateUser(pb::UpdateUser { user_id: id.to_string(), role: Some(role as i32), ..Default::default() })
}

/// Defines each listed `async fn name(app: TestApp)` as a test on SQLite and
/// on PostgreSQL (the latter skipped unless `WARDEN_TEST_POSTGRES_URL` is set).
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::spawn_sqlite().await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn_postgres().await {
                        super::$name(app).await
                    }
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// More builders and conveniences, used by the rules, validation and lifecycle
// tests. Everything above is unchanged.

/// Every action, in proto order: `allowed_on_*` answers a subset of these, in this order.
pub const ALL_ACTIONS: [pb::Action; 5] =
    [pb::Action::View, pb::Action::Edit, pb::Action::Publish, pb::Action::Manage, pb::Action::Delete];

/// No action at all, to compare with `allowed_on_*`.
pub const NO_ACTIONS: [pb::Action; 0] = [];

/// A unique, valid email for a user id.
pub fn email_of(id: &str) -> String {
    format!("{id}@example.com")
}

/// The installation itself, as a check's resource.
pub fn instance() -> pb::resource::Kind {
    pb::resource::Kind::Instance(pb::Instance {})
}

pub fn create_user_with_password(id: &str, email: &str, password: &str) -> Op {
    Op::CreateUser(pb::CreateUser {
        id: id.to_string(),
        email: email.to_string(),
        name: "With Password".to_string(),
        password: password.to_string(),
        ..Default::default()
    })
}

/// An `UpdateUser` of `user` that changes nothing yet: fill in fields with `..user_update(id)`.
pub fn user_update(user: &str) -> pb::UpdateUser {
    pb::UpdateUser { user_id: user.to_string(), ..Default::default() }
}

pub fn change_password(user: &str, current: Option<&str>, new: &str) -> Op {
    Op::UpdateUser(pb::UpdateUser {
        password: Some(new.to_string()),
        current_password: current.map(str::to_string),
        ..user_update(user)
    })
}

pub fn set_modules(user: &str, modules: pb::Modules) -> Op {
    Op::UpdateUser(pb::UpdateUser { modules: Some(modules), ..user_update(user) })
}

pub fn rename_site(site: &str, name: &str) -> Op {
    Op::UpdateSite(pb::UpdateSite { site_id: site.to_string(), name: Some(name.to_string()) })
}

pub fn delete_site(site: &str) -> Op {
    Op::DeleteSite(pb::DeleteSite { site_id: site.to_string() })
}

pub fn delete_group(group: &str) -> Op {
    Op::DeleteGroup(pb::DeleteGroup { group_id: group.to_string() })
}

pub fn rename_report(report: &str, name: &str) -> Op {
    Op::UpdateReport(pb::UpdateReport { report_id: report.to_string(), name: Some(name.to_string()), visibility: None })
}

pub fn delete_report(report: &str) -> Op {
    Op::DeleteReport(pb::DeleteReport { report_id: report.to_string() })
}

/// Everything a client can read back through the admin API, and the revision:
/// two equal `Observed` mean nothing visible changed in between.
#[derive(Debug, PartialEq)]
pub struct Observed {
    pub revision: String,
    pub users: Vec<pb::User>,
    pub sites: Vec<pb::Site>,
    pub groups: Vec<pb::Group>,
    pub reports: Vec<pb::Report>,
    /// Each group's member ids, in the order of `groups`.
    pub members: Vec<Vec<String>>,
    /// The grants of each user, then of each group (all-sites grants included).
    pub grants: Vec<Vec<pb::Grant>>,
}

impl TestApp {
    /// Creates an owner through the trusted tooling.
    pub async fn new_owner(&mut self) -> String {
        let id = new_id();
        self.apply(None, vec![create_user(&id, &email_of(&id), pb::Role::Owner)]).await;
        id
    }

    /// Creates an ordinary user (no access anywhere) through the trusted tooling.
    pub async fn new_user(&mut self) -> String {
        let id = new_id();
        self.apply(None, vec![create_user(&id, &email_of(&id), pb::Role::User)]).await;
        id
    }

    /// Creates a site through the trusted tooling.
    pub async fn new_site(&mut self) -> String {
        let id = new_id();
        self.apply(None, vec![create_site(&id, &format!("site {id}"))]).await;
        id
    }

    /// Creates an empty group through the trusted tooling.
    pub async fn new_group(&mut self) -> String {
        let id = new_id();
        self.apply(None, vec![create_group(&id, &format!("group {id}"))]).await;
        id
    }

    /// Like `mutate`, but the batch must be refused: returns why.
    pub async fn refuse(&mut self, actor: Option<&str>, ops: Vec<Op>) -> Status {
        let shown = format!("{ops:?}");
        match self.mutate(actor, ops).await {
            Ok(response) => {
                panic!("batch was accepted at revision {} but should be refused: {shown}", response.revision)
            }
            Err(status) => status,
        }
    }

    /// The revision the server's decisions are at, as `Check` reports it.
    pub async fn revision(&mut self) -> String {
        self.check(&new_id(), instance(), pb::Action::View).await.revision
    }

    /// The actions `user` may do on `site`, in `ALL_ACTIONS` order.
    pub async fn allowed_on_site(&mut self, user: &str, site: &str) -> Vec<pb::Action> {
        let mut allowed = Vec::new();
        for action in ALL_ACTIONS {
            if self.can(user, action, site).await {
                allowed.push(action);
            }
        }
        allowed
    }

    /// The actions `user` may do on `report`, in `ALL_ACTIONS` order.
    pub async fn allowed_on_report(&mut self, user: &str, report: &str) -> Vec<pb::Action> {
        let mut allowed = Vec::new();
        for action in ALL_ACTIONS {
            if self.can_report(user, action, report).await {
                allowed.push(action);
            }
        }
        allowed
    }

    pub async fn get_user(&mut self, id: &str) -> Result<pb::User, Status> {
        self.admin.get_user(pb::GetUserRequest { user_id: id.to_string() }).await.map(|r| r.into_inner())
    }

    pub async fn get_site(&mut self, id: &str) -> Result<pb::Site, Status> {
        self.admin.get_site(pb::GetSiteRequest { site_id: id.to_string() }).await.map(|r| r.into_inner())
    }

    pub async fn get_group(&mut self, id: &str) -> Result<pb::Group, Status> {
        self.admin.get_group(pb::GetGroupRequest { group_id: id.to_string() }).await.map(|r| r.into_inner())
    }

    pub async fn get_report(&mut self, id: &str) -> Result<pb::Report, Status> {
        self.admin.get_report(pb::GetReportRequest { report_id: id.to_string() }).await.map(|r| r.into_inner())
    }

    /// The user's role as stored.
    pub async fn role(&mut self, user: &str) -> pb::Role {
        let user = self.get_user(user).await.expect("get user");
        pb::Role::try_from(user.role).expect("a known role")
    }

    /// All grants matching `filter` (one page: tests stay small).
    pub async fn grants(&mut self, filter: pb::list_grants_request::Filter) -> Vec<pb::Grant> {
        let request = pb::ListGrantsRequest { filter: Some(filter), page_size: 1000, page_token: String::new() };
        let page = self.admin.list_grants(request).await.expect("list grants").into_inner();
        assert!(page.next_page_token.is_empty(), "more than one page of grants");
        page.grants
    }

    /// The member ids of a group (one page: tests stay small).
    pub async fn members(&mut self, group: &str) -> Vec<String> {
        let request =
            pb::ListGroupMembersRequest { group_id: group.to_string(), page_size: 1000, ..Default::default() };
        let page = self.admin.list_group_members(request).await.expect("list group members").into_inner();
        assert!(page.next_page_token.is_empty(), "more than one page of members");
        page.user_ids
    }

    /// Whether VerifyPassword accepts this email and password.
    pub async fn password_valid(&mut self, email: &str, password: &str) -> bool {
        let request = pb::VerifyPasswordRequest { email: email.to_string(), password: password.to_string() };
        self.admin.verify_password(request).await.expect("verify password").into_inner().valid
    }

    /// Reads back everything through the admin API (one page of each list).
    pub async fn observe(&mut self) -> Observed {
        use pb::list_grants_request::Filter;
        let users = self.admin.list_users(pb::ListUsersRequest { page_size: 1000, ..Default::default() });
        let users = users.await.expect("list users").into_inner();
        let sites = self.admin.list_sites(pb::ListSitesRequest { page_size: 1000, ..Default::default() });
        let sites = sites.await.expect("list sites").into_inner();
        let groups = self.admin.list_groups(pb::ListGroupsRequest { page_size: 1000, ..Default::default() });
        let groups = groups.await.expect("list groups").into_inner();
        let reports = self.admin.list_reports(pb::ListReportsRequest { page_size: 1000, ..Default::default() });
        let reports = reports.await.expect("list reports").into_inner();
        let last_pages =
            [&users.next_page_token, &sites.next_page_token, &groups.next_page_token, &reports.next_page_token];
        assert!(last_pages.iter().all(|token| token.is_empty()), "more than one page to observe");

        let mut members = Vec::new();
        let mut grants = Vec::new();
        for group in &groups.groups {
            members.push(self.members(&group.id).await);
        }
        for user in &users.users {
            grants.push(self.grants(Filter::UserId(user.id.clone())).await);
        }
        for group in &groups.groups {
            grants.push(self.grants(Filter::GroupId(group.id.clone())).await);
        }
        Observed {
            revision: self.revision().await,
            users: users.users,
            sites: sites.sites,
            groups: groups.groups,
            reports: reports.reports,
            members,
            grants,
        }
    }
}

// ---------------------------------------------------------------------------
// Lookups, explanations and the changelog stream, used by the lookups and
// watch tests. Everything above is unchanged but for the `watch` client.

/// How long a stream read may take before the test gives up: a safety net
/// against a hung test, never a timing assertion (a healthy server answers
/// in milliseconds).
pub const STREAM_SAFETY_NET: std::time::Duration = std::time::Duration::from_secs(10);

/// Revisions are opaque to callers, but this server's are decimal numbers.
pub fn revision_number(revision: &str) -> u64 {
    revision.parse().unwrap_or_else(|_| panic!("revision `{revision}` is a number"))
}

/// A LookupSites request for one page.
pub fn lookup_sites_request(
    user: &str,
    min_level: pb::Level,
    page_size: i32,
    page_token: &str,
) -> pb::LookupSitesRequest {
    pb::LookupSitesRequest {
        user_id: user.to_string(),
        min_level: min_level as i32,
        page_size,
        page_token: page_token.to_string(),
        at_least_revision: String::new(),
    }
}

/// A LookupUsers request for one page.
pub fn lookup_users_request(
    site: &str,
    min_level: pb::Level,
    page_size: i32,
    page_token: &str,
) -> pb::LookupUsersRequest {
    pb::LookupUsersRequest {
        site_id: site.to_string(),
        min_level: min_level as i32,
        page_size,
        page_token: page_token.to_string(),
        at_least_revision: String::new(),
    }
}

impl TestApp {
    /// One page of the sites `user` reaches at `min_level` or more.
    pub async fn lookup_sites_page(
        &mut self,
        user: &str,
        min_level: pb::Level,
        page_size: i32,
        page_token: &str,
    ) -> pb::LookupSitesResponse {
        let request = lookup_sites_request(user, min_level, page_size, page_token);
        self.check.lookup_sites(request).await.expect("lookup sites").into_inner()
    }

    /// Every site `user` reaches at `min_level` or more, all pages walked.
    pub async fn lookup_sites(&mut self, user: &str, min_level: pb::Level) -> Vec<pb::SiteAccess> {
        let (mut sites, mut token) = (Vec::new(), String::new());
        loop {
            let page = self.lookup_sites_page(user, min_level, 0, &token).await;
            sites.extend(page.sites);
            if page.next_page_token.is_empty() {
                return sites;
            }
            token = page.next_page_token;
        }
    }

    /// The ids of the sites `user` reaches at `min_level` or more, in the order answered.
    pub async fn site_ids_reached(&mut self, user: &str, min_level: pb::Level) -> Vec<String> {
        self.lookup_sites(user, min_level).await.into_iter().map(|access| access.site_id).collect()
    }

    /// One page of the users who reach `site` at `min_level` or more.
    pub async fn lookup_users_page(
        &mut self,
        site: &str,
        min_level: pb::Level,
        page_size: i32,
        page_token: &str,
    ) -> pb::LookupUsersResponse {
        let request = lookup_users_request(site, min_level, page_size, page_token);
        self.check.lookup_users(request).await.expect("lookup users").into_inner()
    }

    /// Every user who reaches `site` at `min_level` or more, all pages walked.
    pub async fn lookup_users(&mut self, site: &str, min_level: pb::Level) -> Vec<pb::UserAccess> {
        let (mut users, mut token) = (Vec::new(), String::new());
        loop {
            let page = self.lookup_users_page(site, min_level, 0, &token).await;
            users.extend(page.users);
            if page.next_page_token.is_empty() {
                return users;
            }
            token = page.next_page_token;
        }
    }

    /// The ids of the users who reach `site` at `min_level` or more, in the order answered.
    pub async fn user_ids_reaching(&mut self, site: &str, min_level: pb::Level) -> Vec<String> {
        self.lookup_users(site, min_level).await.into_iter().map(|access| access.user_id).collect()
    }

    /// Why `user` has the access they have to `resource`.
    pub async fn explain(&mut self, user: &str, resource: pb::resource::Kind) -> pb::ExplainResponse {
        let request = pb::ExplainRequest {
            user_id: user.to_string(),
            resource: Some(pb::Resource { kind: Some(resource) }),
            at_least_revision: String::new(),
        };
        self.check.explain(request).await.expect("explain").into_inner()
    }

    /// Opens a watch stream from `from_revision` (exclusive; empty: from now on).
    pub async fn watch_from(&mut self, from_revision: &str) -> Result<tonic::Streaming<pb::WatchResponse>, Status> {
        let request = pb::WatchRequest { from_revision: from_revision.to_string() };
        self.watch.watch(request).await.map(|response| response.into_inner())
    }

    /// Why a watch from `from_revision` is refused, whether the refusal comes
    /// with the call or as the stream's first message.
    pub async fn watch_refusal(&mut self, from_revision: &str) -> Status {
        let mut stream = match self.watch_from(from_revision).await {
            Err(status) => return status,
            Ok(stream) => stream,
        };
        match tokio::time::timeout(STREAM_SAFETY_NET, stream.message()).await {
            Ok(Err(status)) => status,
            Ok(Ok(Some(batch))) => panic!("watch from `{from_revision}` sent a batch: {batch:?}"),
            Ok(Ok(None)) => panic!("watch from `{from_revision}` ended without an error"),
            Err(_) => {
                panic!("watch from `{from_revision}` neither failed nor sent anything within {STREAM_SAFETY_NET:?}")
            }
        }
    }
}

/// The next batch on a watch stream; panics if the stream fails, ends, or
/// sends nothing within the safety net.
pub async fn next_batch(stream: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    match tokio::time::timeout(STREAM_SAFETY_NET, stream.message()).await {
        Ok(Ok(Some(batch))) => batch,
        Ok(Ok(None)) => panic!("the watch stream ended"),
        Ok(Err(status)) => panic!("the watch stream failed: {status:?}"),
        Err(_) => panic!("no batch arrived within {STREAM_SAFETY_NET:?} (safety net)"),
    }
}
