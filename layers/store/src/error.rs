//! Why a store operation was refused, and the answer a caller gets for it.

use http::StatusCode;
use tower_openai_core::ErrorResponse;

/// Why a store operation was refused. Nothing was changed when one is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The input is not valid (400 `invalid_body`).
    #[error("{0}")]
    Invalid(String),
    /// A group named does not exist (400 `unknown_group`).
    #[error("unknown group: {0}")]
    UnknownGroup(String),
    /// The first user must be an admin (400 `admin_required`).
    #[error("the first user must be an admin")]
    AdminRequired,
    /// No such user, group, key or record (404 `not_found`).
    #[error("{0} not found")]
    NotFound(String),
    /// The id is taken (409 `conflict`).
    #[error("{0} already exists")]
    Conflict(String),
    /// The change would leave no admin (409 `last_admin`).
    #[error("the last admin cannot be removed or demoted")]
    LastAdmin,
    /// The database could not be reached or failed (503 `identity_store_unavailable`).
    #[error("the identity store is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    #[cfg_attr(not(feature = "sql"), allow(dead_code))] // the SQL store's writes
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid(message.into())
    }

    /// The OpenAI-shaped answer: the message names what is wrong, never a secret or the
    /// database's own message (which is logged).
    pub fn to_response(&self) -> ErrorResponse {
        let (status, code) = match self {
            StoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            StoreError::UnknownGroup(_) => (StatusCode::BAD_REQUEST, "unknown_group"),
            StoreError::AdminRequired => (StatusCode::BAD_REQUEST, "admin_required"),
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            StoreError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            StoreError::LastAdmin => (StatusCode::CONFLICT, "last_admin"),
            StoreError::Unavailable(e) => {
                tracing::error!(error = %e, "identity store unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity_store_unavailable",
                )
            }
        };
        ErrorResponse::new(status, self.to_string()).with_code(code)
    }
}

#[cfg(feature = "sql")]
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(Box::new(e))
    }
}
