use thiserror::Error;

/// What can go wrong in a store. Backend errors keep their cause for the
/// logs; callers map them to "internal error" and never show them.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness or optimistic-concurrency check failed.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// Stored data that does not parse: a bug or tampering.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A write handed to a group commit that failed as a whole (the
    /// cause is in the log of the writer).
    #[error("the write failed: {0}")]
    WriteFailed(String),
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// Memory for what was read could not be had (the partner's eligible
    /// index maps its tables from the kernel).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
