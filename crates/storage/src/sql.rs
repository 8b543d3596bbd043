//! Helpers the SQL stores share: how UUIDs are stored (hyphenated text),
//! how fixed-size byte and JSON columns are read back, and how a
//! uniqueness violation becomes [`StoreError::Conflict`] on either backend.

use crate::error::{Result, StoreError};
use accord_domain::PseudonymId;
use uuid::Uuid;

/// A UUID as stored: hyphenated lowercase text.
pub(crate) fn uuid_text(u: Uuid) -> String {
    u.hyphenated().to_string()
}

/// A stored UUID; `Corrupt` if the text is not one.
pub(crate) fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Corrupt("bad uuid".into()))
}

/// A 32-byte column (hashes, pseudonyms); `Corrupt("<what> is not 32
/// bytes")` otherwise.
pub(crate) fn bytes32(v: Vec<u8>, what: &str) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// A pseudonym column (32 bytes); `Corrupt("<what> is not 32 bytes")`
/// otherwise.
pub(crate) fn pseudonym(v: Vec<u8>, what: &str) -> Result<PseudonymId> {
    bytes32(v, what).map(PseudonymId::from_bytes)
}

/// A JSON text column; `Corrupt("<what>: <error>")` if it does not parse.
pub(crate) fn json<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Whether `e` is a uniqueness violation: as sqlx classifies it, or by
/// SQLite's message "UNIQUE constraint failed".
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

/// For `map_err`: a uniqueness violation becomes `Conflict(what)`, any
/// other error is passed on as is.
pub(crate) fn conflict_on_unique(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(what)
        } else {
            e.into()
        }
    }
}

/// A signed checkpoint of the consent log, from a row with the columns
/// `shard, size, root, at, signature` (the messenger's own checkpoints
/// and the partner's witnessed ones).
pub(crate) fn checkpoint_row(
    r: &sqlx::any::AnyRow,
) -> Result<accord_domain::transparency::SignedCheckpoint> {
    use sqlx::Row;
    Ok(accord_domain::transparency::SignedCheckpoint {
        checkpoint: accord_domain::transparency::Checkpoint {
            shard: r.try_get::<i64, _>("shard")? as u16,
            size: r.try_get::<i64, _>("size")? as u64,
            root: r.try_get("root")?,
            at: accord_domain::Timestamp(r.try_get("at")?),
        },
        signature: r.try_get("signature")?,
    })
}
