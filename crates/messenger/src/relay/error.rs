//! Why a relay operation failed.

use accord_domain::DeviceId;
use accord_e2e::WireError;
use accord_storage::StoreError;

/// Why a relay operation failed. The HTTP layer maps each to a status and
/// a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error("{0}")]
    Wire(#[from] WireError),
    #[error("the signature does not verify")]
    InvalidSignature,
    #[error("the keys are not this device's")]
    DeviceMismatch,
    #[error("other keys are already registered for this device")]
    DeviceKeysExist,
    #[error("this device has not uploaded its identity keys")]
    NoDeviceKeys,
    #[error("{0}")]
    BadRequest(String),
    #[error("no such account")]
    NotFound,
    #[error("the device list is stale")]
    StaleDevices {
        missing: Vec<DeviceId>,
        extra: Vec<DeviceId>,
    },
    #[error("too many requests; try again later")]
    RateLimited { retry_after_s: u64 },
    #[error("the relay is shutting down")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    KeyDirectory(#[from] crate::kt::KtError),
}
