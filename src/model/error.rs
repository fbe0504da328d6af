use thiserror::Error;

/// Why a request or a mutation batch was refused. Each variant maps to one
/// gRPC status code; messages name the field and say what to fix.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    /// A malformed field.
    #[error("`{field}`: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A referenced object does not exist.
    #[error("{context}{kind} `{id}` not found")]
    NotFound { kind: &'static str, id: String, context: String },
    /// A unique value is taken.
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// The actor may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// The model's state forbids it (last owner, self-delete, stale revision).
    #[error("{0}")]
    FailedPrecondition(String),
}

impl ModelError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ModelError::InvalidArgument { field: field.into(), reason: reason.into() }
    }

    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        ModelError::NotFound { kind, id: id.to_string(), context: String::new() }
    }

    pub fn denied(reason: impl Into<String>) -> Self {
        ModelError::PermissionDenied(reason.into())
    }

    /// Places a malformed field inside `parent` (`resource` → `checks[3].resource`).
    pub fn within(self, parent: &str) -> Self {
        match self {
            ModelError::InvalidArgument { field, reason } => {
                ModelError::InvalidArgument { field: format!("{parent}.{field}"), reason }
            }
            other => other,
        }
    }

    /// Prefixes the message with the position of the mutation in its batch,
    /// so that the caller knows which one failed.
    pub fn in_mutation(self, index: usize) -> Self {
        let at = format!("mutations[{index}]");
        match self {
            ModelError::InvalidArgument { field, reason } => {
                ModelError::InvalidArgument { field: format!("{at}.{field}"), reason }
            }
            ModelError::NotFound { kind, id, .. } => ModelError::NotFound { kind, id, context: format!("{at}: ") },
            ModelError::AlreadyExists { what } => ModelError::AlreadyExists { what: format!("{at}: {what}") },
            ModelError::PermissionDenied(m) => ModelError::PermissionDenied(format!("{at}: {m}")),
            ModelError::FailedPrecondition(m) => ModelError::FailedPrecondition(format!("{at}: {m}")),
        }
    }
}
