//! The service's errors. No variant carries key material, an element or
//! a token.

use accord_crypto::oprf::{KeyVersion, OprfError, OprfPurpose};
use accord_domain::keyd::QuotaExceeded;
use accord_storage::StoreError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeydError {
    #[error("empty batch")]
    EmptyBatch,
    #[error("batch larger than {max} elements")]
    BatchTooLarge { max: usize },
    /// Element `index` is not a valid, non-identity ristretto255 encoding.
    #[error("element {index} is not a valid non-identity ristretto255 element")]
    InvalidElement { index: usize },
    #[error("{purpose} has no key version {version}")]
    UnknownKeyVersion {
        purpose: OprfPurpose,
        version: KeyVersion,
    },
    /// The client's quota for this purpose is 0.
    #[error("this client may not evaluate under {purpose}")]
    PurposeNotAllowed { purpose: OprfPurpose },
    #[error(transparent)]
    QuotaExceeded(QuotaExceeded),
    #[error("unknown client")]
    UnknownClient,
    #[error("invalid client name: {0}")]
    InvalidName(&'static str),
    /// The master key file is missing, malformed, or readable by others; or
    /// the master key does not open the stored keys.
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("OPRF failure: {0}")]
    Crypto(OprfError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}
