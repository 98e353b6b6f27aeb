//! The store's one error type and its mapping onto the code table.

use imagegate_core::{AppError, ErrorCode};

/// Anything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or is unreachable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Object storage failed or is unreachable.
    #[error("object store: {0}")]
    Objects(#[from] object_store::Error),
    /// A stored value could not be decoded (a bug or a hand-edited row).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// An idempotency key was reused with a different body.
    #[error("{0}")]
    Conflict(String),
    /// Bad configuration (URL, bucket).
    #[error("configuration: {0}")]
    Config(String),
    /// A ledger hold found too few credits; carries the balance and the price.
    #[error(transparent)]
    InsufficientCredits(#[from] crate::ledger::InsufficientCredits),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => AppError::not_found(format!("{what} not found")),
            StoreError::Conflict(msg) => AppError::new(ErrorCode::Conflict, msg),
            StoreError::InsufficientCredits(e) => AppError::new(ErrorCode::InsufficientCredits, e.to_string()),
            other => AppError::internal(other.to_string()),
        }
    }
}
