//! Private contact discovery, client side.
//!
//! 1. Ask the messenger which `contacts` key version to use and where the
//!    key service is.
//! 2. Blind every contact's number, have the key service evaluate them
//!    under this device's own credential (and quota), finalize: the
//!    pseudonyms. The key service sees only blinded elements.
//! 3. For each distinct 16-bit prefix, download the messenger's prefix
//!    bucket of registered users' pseudonyms, and test membership locally. The
//!    messenger sees 16-bit prefixes, never a number or a pseudonym.

use crate::{Client, ClientError};
use accord_crypto::oprf::{KeyVersion, OprfPurpose};
use accord_domain::pseudonym::PrefixBucket;
use accord_domain::{PhoneNumber, PseudonymId};
use accord_keyd_client::{HttpOprf, Oprf, OprfClientError};
use accord_messenger_wire::{Bucket, DiscoveryConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Method;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(transparent)]
    Messenger(#[from] ClientError),
    #[error("the key service refused: {0}")]
    KeyService(#[from] OprfClientError),
    #[error("this device has no key-service credential (register again with a messenger that runs a key service)")]
    NoCredential,
    #[error("the messenger sent a malformed bucket")]
    BadBucket,
}

/// Which of `numbers` belong to registered users, in order.
/// `messenger` carries the device's messenger token; `keyd_token` is the
/// device's key-service credential from registration.
pub async fn discover(
    messenger: &Client,
    keyd_token: Option<&str>,
    numbers: &[PhoneNumber],
) -> Result<Vec<bool>, DiscoveryError> {
    if numbers.is_empty() {
        return Ok(Vec::new());
    }
    let token = keyd_token.ok_or(DiscoveryError::NoCredential)?;
    let cfg: DiscoveryConfig = messenger
        .request(Method::GET, "/v1/contacts/discovery", None)
        .await?;
    let oprf = HttpOprf::new(cfg.keyd_url, secrecy::SecretString::from(token.to_owned()));
    let version = KeyVersion(cfg.key_version);
    let ps = oprf
        .phone_pseudonyms(OprfPurpose::Contacts, Some(version), numbers)
        .await?;

    let ps: Vec<PseudonymId> = ps.iter().map(|p| p.id()).collect();
    let mut by_prefix: BTreeMap<PrefixBucket, Vec<usize>> = BTreeMap::new();
    for (i, p) in ps.iter().enumerate() {
        by_prefix.entry(p.prefix16()).or_default().push(i);
    }
    let mut found = vec![false; numbers.len()];
    for (prefix, idx) in by_prefix {
        let bucket: Bucket = messenger
            .request(
                Method::GET,
                &format!(
                    "/v1/contacts/buckets/{prefix:04x}?key_version={}",
                    version.0
                ),
                None,
            )
            .await?;
        let members: HashSet<PseudonymId> = bucket
            .pseudonyms
            .iter()
            .map(|s| {
                URL_SAFE_NO_PAD
                    .decode(s)
                    .ok()
                    .and_then(|v| PseudonymId::from_slice(&v))
                    .ok_or(DiscoveryError::BadBucket)
            })
            .collect::<Result<_, _>>()?;
        for i in idx {
            found[i] = members.contains(&ps[i]);
        }
    }
    Ok(found)
}
