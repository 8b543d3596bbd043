//! Key transparency's HTTP bodies, and the two byte strings that server
//! and client must agree on to the byte: the directory's value for an
//! account ([`DeviceList`]) and the message an epoch root's signature
//! covers ([`root_message`]).
//!
//! Proofs travel as base64 (standard, padded) of akd's protobuf encoding
//! (`akd_core::proto`); roots, keys and signatures as lower-case hex.
//! Decoding them is the client's job (it depends on akd), so this crate
//! stays free of cryptography.

use accord_domain::DeviceId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The directory's public keys: the VRF key that lookups are checked
/// against, and the ed25519 key that signs epoch roots. A client pins
/// both the first time it sees them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KtKeys {
    /// 32 bytes, hex.
    pub vrf_public_key: String,
    /// 32 bytes, hex.
    pub signing_key: String,
}

/// An epoch's root hash, signed by the messenger over [`root_message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedRoot {
    pub epoch: u64,
    /// 32 bytes, hex.
    pub root_hash: String,
    /// ed25519 signature, 64 bytes, hex.
    pub signature: String,
}

/// `GET /v1/kt/roots`: the keys and the signed roots from `from` on
/// (at most [`MAX_ROOTS_PER_PAGE`]), oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KtRoots {
    pub keys: KtKeys,
    /// The newest epoch (0: nothing published yet).
    pub latest_epoch: u64,
    pub roots: Vec<SignedRoot>,
}

/// `?from=` of `GET /v1/kt/roots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct RootsQuery {
    /// The first epoch wanted (default 1).
    pub from: Option<u64>,
}

/// `?from=&to=` of `GET /v1/kt/audit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AuditQuery {
    pub from: u64,
    pub to: u64,
}

/// Most roots one `GET /v1/kt/roots` answers.
pub const MAX_ROOTS_PER_PAGE: u64 = 1000;
/// Most epochs one `GET /v1/kt/audit` proves.
pub const MAX_AUDIT_EPOCHS: u64 = 64;

/// `GET /v1/kt/lookup/{account}` and the `kt` of a claim: the account's
/// current value with its proof at `root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KtLookup {
    pub root: SignedRoot,
    /// akd `LookupProof`, protobuf, base64.
    pub proof: String,
}

/// `GET /v1/kt/history/{account}`: every value the account had, with a
/// proof at `root`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KtHistory {
    pub root: SignedRoot,
    /// akd `HistoryProof`, protobuf, base64.
    pub proof: String,
}

/// `GET /v1/kt/audit?from=&to=`: that the directory only grew from epoch
/// `from` to `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KtAudit {
    pub from: u64,
    pub to: u64,
    /// akd `AppendOnlyProof`, protobuf, base64.
    pub proof: String,
}

/// The domain separator of a signed root.
pub const ROOT_CONTEXT: &[u8] = b"accord/kt/root/v1";

/// What the messenger signs for an epoch: the context, the epoch (8
/// bytes, big-endian) and the 32-byte root.
pub fn root_message(epoch: u64, root: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(ROOT_CONTEXT.len() + 8 + 32);
    m.extend_from_slice(ROOT_CONTEXT);
    m.extend_from_slice(&epoch.to_be_bytes());
    m.extend_from_slice(root);
    m
}

/// One device as the directory holds it: its id and public identity keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DirectoryDevice {
    pub device_id: DeviceId,
    pub ed25519: [u8; 32],
    pub curve25519: [u8; 32],
}

/// An account's value in the directory: its devices, sorted by id. The
/// empty list is the value of a deleted account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeviceList {
    devices: Vec<DirectoryDevice>,
}

/// The value's format version.
const VALUE_VERSION: u8 = 1;
const DEVICE_BYTES: usize = 16 + 32 + 32;

/// Why bytes are not a [`DeviceList`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceListError {
    #[error("unknown device-list format")]
    Version,
    #[error("device list has the wrong length")]
    Length,
    #[error("device list is not sorted or repeats a device")]
    Order,
}

impl DeviceList {
    /// Sorts by device id; a device named twice is kept once (the first).
    pub fn new(mut devices: Vec<DirectoryDevice>) -> Self {
        devices.sort();
        devices.dedup_by_key(|d| d.device_id);
        DeviceList { devices }
    }

    pub fn devices(&self) -> &[DirectoryDevice] {
        &self.devices
    }

    pub fn get(&self, device: DeviceId) -> Option<&DirectoryDevice> {
        self.devices.iter().find(|d| d.device_id == device)
    }

    /// `[version: 1][count: u16 BE]` then per device `[id: 16][ed25519: 32]
    /// [curve25519: 32]`, by ascending id.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(3 + self.devices.len() * DEVICE_BYTES);
        out.push(VALUE_VERSION);
        let n = u16::try_from(self.devices.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for d in self.devices.iter().take(usize::from(n)) {
            out.extend_from_slice(d.device_id.0.as_bytes());
            out.extend_from_slice(&d.ed25519);
            out.extend_from_slice(&d.curve25519);
        }
        out
    }

    /// The strict inverse of [`DeviceList::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DeviceListError> {
        let (&version, rest) = bytes.split_first().ok_or(DeviceListError::Length)?;
        if version != VALUE_VERSION {
            return Err(DeviceListError::Version);
        }
        if rest.len() < 2 {
            return Err(DeviceListError::Length);
        }
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let body = &rest[2..];
        if body.len() != n * DEVICE_BYTES {
            return Err(DeviceListError::Length);
        }
        let mut devices = Vec::with_capacity(n);
        for chunk in body.chunks_exact(DEVICE_BYTES) {
            let mut id = [0u8; 16];
            id.copy_from_slice(&chunk[..16]);
            let mut ed25519 = [0u8; 32];
            ed25519.copy_from_slice(&chunk[16..48]);
            let mut curve25519 = [0u8; 32];
            curve25519.copy_from_slice(&chunk[48..80]);
            devices.push(DirectoryDevice {
                device_id: DeviceId(Uuid::from_bytes(id)),
                ed25519,
                curve25519,
            });
        }
        if devices.windows(2).any(|w| w[0].device_id >= w[1].device_id) {
            return Err(DeviceListError::Order);
        }
        Ok(DeviceList { devices })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DirectoryDevice {
        DirectoryDevice {
            device_id: DeviceId(Uuid::from_bytes([n; 16])),
            ed25519: [n; 32],
            curve25519: [n.wrapping_add(1); 32],
        }
    }

    #[test]
    fn a_device_list_round_trips_sorted() {
        let list = DeviceList::new(vec![dev(3), dev(1), dev(2)]);
        let ids: Vec<u8> = list.devices().iter().map(|d| d.ed25519[0]).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(DeviceList::decode(&list.encode()).unwrap(), list);
        assert_eq!(
            DeviceList::decode(&DeviceList::default().encode()).unwrap(),
            DeviceList::default()
        );
    }

    #[test]
    fn bad_device_lists_are_refused() {
        let good = DeviceList::new(vec![dev(1), dev(2)]).encode();
        assert_eq!(DeviceList::decode(&[]), Err(DeviceListError::Length));
        assert_eq!(
            DeviceList::decode(&[2, 0, 0]),
            Err(DeviceListError::Version)
        );
        assert_eq!(
            DeviceList::decode(&good[..good.len() - 1]),
            Err(DeviceListError::Length)
        );
        // The two devices swapped: not sorted.
        let mut swapped = good[..3].to_vec();
        swapped.extend_from_slice(&good[3 + DEVICE_BYTES..]);
        swapped.extend_from_slice(&good[3..3 + DEVICE_BYTES]);
        assert_eq!(DeviceList::decode(&swapped), Err(DeviceListError::Order));
    }
}
