//! What the benchmarks share: the dataset seed and the proto form of a sampled check.

use warden::model::{Action, Check, Resource};
use warden::pb;

/// Every benchmark and `warden import` default to this seed, so that a load
/// generator regenerating a dataset names the users a server imported.
pub const SEED: u64 = 42;

pub fn check_request(sample: &Check) -> pb::CheckRequest {
    let kind = match sample.resource {
        Resource::Site(site) => pb::resource::Kind::SiteId(site.to_string()),
        Resource::Report(report) => pb::resource::Kind::ReportId(report.to_string()),
        Resource::Instance => pb::resource::Kind::Instance(pb::Instance {}),
    };
    let action = match sample.action {
        Action::View => pb::Action::View,
        Action::Edit => pb::Action::Edit,
        Action::Publish => pb::Action::Publish,
        Action::Manage => pb::Action::Manage,
        Action::Delete => pb::Action::Delete,
    };
    pb::CheckRequest {
        user_id: sample.user.to_string(),
        resource: Some(pb::Resource { kind: Some(kind) }),
        action: action as i32,
        at_least_revision: String::new(),
    }
}
