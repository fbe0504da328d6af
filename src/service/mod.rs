//! gRPC handlers: parse the request (INVALID_ARGUMENT naming the field), ask
//! the engine or the store, translate the answer. Nothing else lives here.

mod admin;
mod check;
pub mod convert;
pub mod password;
mod watch;

pub use admin::AdminApi;
pub use check::CheckApi;
pub use watch::WatchApi;

use tonic::Status;
use tracing::{error, warn};

use crate::engine::EngineError;
use crate::model::ModelError;
use crate::store::StoreError;

impl From<ModelError> for Status {
    fn from(error: ModelError) -> Status {
        let message = error.to_string();
        match error {
            ModelError::InvalidArgument { .. } => Status::invalid_argument(message),
            ModelError::NotFound { .. } => Status::not_found(message),
            ModelError::AlreadyExists { .. } => Status::already_exists(message),
            ModelError::PermissionDenied(_) => Status::permission_denied(message),
            ModelError::FailedPrecondition(_) => Status::failed_precondition(message),
        }
    }
}

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Status {
        match error {
            StoreError::Unavailable(cause) => {
                warn!(%cause, "storage unavailable");
                Status::unavailable("storage is unavailable; nothing was changed, retry later")
            }
            StoreError::Stale { .. } => {
                Status::aborted("the model changed while the batch was judged; nothing was changed, retry it")
            }
            StoreError::BadCursor(_) => Status::invalid_argument("`page_token`: is not a token from an earlier page"),
            StoreError::Internal(cause) => {
                error!(%cause, "storage error");
                Status::internal("internal error")
            }
        }
    }
}

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Status {
        match error {
            EngineError::Model(error) => error.into(),
            EngineError::Store(error) => error.into(),
            EngineError::NotReady | EngineError::RevisionNotReached { .. } => Status::unavailable(error.to_string()),
        }
    }
}
