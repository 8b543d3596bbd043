//! The checks of what the key directory proves. Each takes the
//! directory's pinned keys ([`DirectoryKeys`]): the root-signing key (no
//! root counts unless it signed it) and the VRF key (lookups and
//! histories are checked against it).

use accord_domain::AccountId;
use accord_messenger_wire::{
    root_message, DeviceList, KtAudit, KtHistory, KtKeys, KtLookup, SignedRoot,
};
use akd::{AkdLabel, HistoryParams, HistoryVerificationParams};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use protobuf::Message;

type Config = akd::WhatsAppV1Configuration;

/// Why a key-transparency check failed. The messages name epochs and
/// account ids only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KtError {
    #[error("the directory's keys are malformed: {0}")]
    BadKeys(String),
    #[error(
        "the directory's keys are not the ones pinned: the messenger changed its key directory"
    )]
    KeysChanged,
    #[error("epoch {0}: the root's signature does not verify")]
    BadSignature(u64),
    #[error("malformed proof or root: {0}")]
    Malformed(String),
    #[error("the proof does not verify: {0}")]
    Proof(String),
    #[error("the directory holds no such device list: {0}")]
    Value(String),
    #[error("epoch {epoch} went back: already saw epoch {seen}")]
    Rollback { epoch: u64, seen: u64 },
    #[error("fork: the root of epoch {0} is not the one seen before (the history was rewritten)")]
    Fork(u64),
}

impl KtError {
    pub fn code(&self) -> &'static str {
        match self {
            KtError::BadKeys(_) => "kt_bad_keys",
            KtError::KeysChanged => "kt_keys_changed",
            KtError::BadSignature(_) => "kt_bad_signature",
            KtError::Malformed(_) => "kt_malformed",
            KtError::Proof(_) => "kt_proof",
            KtError::Value(_) => "kt_value",
            KtError::Rollback { .. } => "kt_rollback",
            KtError::Fork(_) => "kt_fork",
        }
    }
}

/// The directory's public keys, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryKeys {
    vrf: [u8; 32],
    signing: VerifyingKey,
    wire: KtKeys,
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], KtError> {
    hex::decode(s)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KtError::Malformed(format!("{what} is not 32 bytes of hex")))
}

impl DirectoryKeys {
    pub fn from_wire(k: &KtKeys) -> Result<Self, KtError> {
        let vrf = hex32(&k.vrf_public_key, "vrf_public_key")
            .map_err(|e| KtError::BadKeys(e.to_string()))?;
        let signing = VerifyingKey::from_bytes(
            &hex32(&k.signing_key, "signing_key").map_err(|e| KtError::BadKeys(e.to_string()))?,
        )
        .map_err(|_| KtError::BadKeys("signing_key is not an ed25519 key".into()))?;
        Ok(DirectoryKeys {
            vrf,
            signing,
            wire: k.clone(),
        })
    }

    pub fn wire(&self) -> &KtKeys {
        &self.wire
    }

    /// Checks the root's signature; gives its epoch and hash.
    pub fn verify_root(&self, root: &SignedRoot) -> Result<(u64, [u8; 32]), KtError> {
        let hash = hex32(&root.root_hash, "root_hash")?;
        let sig: [u8; 64] = hex::decode(&root.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| KtError::Malformed("signature is not 64 bytes of hex".into()))?;
        self.signing
            .verify(
                &root_message(root.epoch, &hash),
                &Signature::from_bytes(&sig),
            )
            .map_err(|_| KtError::BadSignature(root.epoch))?;
        Ok((root.epoch, hash))
    }
}

/// A device list the directory proved for an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    pub account: AccountId,
    /// The epoch of the root the proof was checked against.
    pub epoch: u64,
    /// The epoch this value was published in.
    pub since_epoch: u64,
    pub devices: DeviceList,
}

fn proof_bytes(b64: &str) -> Result<Vec<u8>, KtError> {
    STANDARD
        .decode(b64)
        .map_err(|_| KtError::Malformed("proof is not base64".into()))
}

fn label(account: AccountId) -> AkdLabel {
    AkdLabel(account.0.as_bytes().to_vec())
}

fn device_list(bytes: &[u8]) -> Result<DeviceList, KtError> {
    DeviceList::decode(bytes).map_err(|e| KtError::Value(e.to_string()))
}

/// Checks a lookup: the root is signed, and the proof shows `account`'s
/// value at it. Gives the proven device list.
pub fn verify_lookup(
    keys: &DirectoryKeys,
    account: AccountId,
    lookup: &KtLookup,
) -> Result<Proven, KtError> {
    let (epoch, root) = keys.verify_root(&lookup.root)?;
    verify_lookup_under(keys, account, epoch, root, lookup)
}

/// [`verify_lookup`] against a root whose signature the caller checked
/// already (`epoch` and `root` from [`DirectoryKeys::verify_root`] of
/// `lookup.root`): a sender that checks many lookups under one root
/// checks its signature once.
pub fn verify_lookup_under(
    keys: &DirectoryKeys,
    account: AccountId,
    epoch: u64,
    root: [u8; 32],
    lookup: &KtLookup,
) -> Result<Proven, KtError> {
    let proto =
        akd::proto::specs::types::LookupProof::parse_from_bytes(&proof_bytes(&lookup.proof)?)
            .map_err(|e| KtError::Malformed(format!("lookup proof: {e}")))?;
    let proof = akd::LookupProof::try_from(&proto)
        .map_err(|e| KtError::Malformed(format!("lookup proof: {e:?}")))?;
    let result =
        akd::client::lookup_verify::<Config>(&keys.vrf, root, epoch, label(account), proof)
            .map_err(|e| KtError::Proof(e.to_string()))?;
    Ok(Proven {
        account,
        epoch,
        since_epoch: result.epoch,
        devices: device_list(&result.value.0)?,
    })
}

/// Checks a history: the root is signed, and the proof shows every value
/// `account` had up to it. Gives them newest first, with the epoch each
/// was published in.
pub fn verify_history(
    keys: &DirectoryKeys,
    account: AccountId,
    history: &KtHistory,
) -> Result<(u64, Vec<(u64, DeviceList)>), KtError> {
    let (epoch, root) = keys.verify_root(&history.root)?;
    let proto =
        akd::proto::specs::types::HistoryProof::parse_from_bytes(&proof_bytes(&history.proof)?)
            .map_err(|e| KtError::Malformed(format!("history proof: {e}")))?;
    let proof = akd::HistoryProof::try_from(&proto)
        .map_err(|e| KtError::Malformed(format!("history proof: {e:?}")))?;
    let results = akd::client::key_history_verify::<Config>(
        &keys.vrf,
        root,
        epoch,
        label(account),
        proof,
        HistoryVerificationParams::Default {
            history_params: HistoryParams::Complete,
        },
    )
    .map_err(|e| KtError::Proof(e.to_string()))?;
    let values = results
        .into_iter()
        .map(|r| Ok((r.epoch, device_list(&r.value.0)?)))
        .collect::<Result<Vec<_>, KtError>>()?;
    Ok((epoch, values))
}

/// Checks that the directory only grew from `roots[0]` to the last of
/// `roots` (consecutive epochs `audit.from..=audit.to`, each already
/// checked by [`DirectoryKeys::verify_root`]).
pub async fn verify_audit(roots: &[(u64, [u8; 32])], audit: &KtAudit) -> Result<(), KtError> {
    let expected: Vec<u64> = (audit.from..=audit.to).collect();
    let epochs: Vec<u64> = roots.iter().map(|(e, _)| *e).collect();
    if audit.from >= audit.to || epochs != expected {
        return Err(KtError::Malformed(format!(
            "the audit covers epochs {}..={} but the roots given are others",
            audit.from, audit.to
        )));
    }
    let proto =
        akd::proto::specs::types::AppendOnlyProof::parse_from_bytes(&proof_bytes(&audit.proof)?)
            .map_err(|e| KtError::Malformed(format!("append-only proof: {e}")))?;
    let proof = akd::AppendOnlyProof::try_from(&proto)
        .map_err(|e| KtError::Malformed(format!("append-only proof: {e:?}")))?;
    if proof.epochs != (audit.from..audit.to).collect::<Vec<u64>>() {
        return Err(KtError::Proof(format!(
            "the append-only proof is not for epochs {}..={}",
            audit.from, audit.to
        )));
    }
    akd::auditor::audit_verify::<Config>(roots.iter().map(|(_, h)| *h).collect(), proof)
        .await
        .map_err(|e| KtError::Proof(e.to_string()))
}
