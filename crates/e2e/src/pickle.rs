//! The sealed format of a pickled [`E2eMachine`](crate::E2eMachine).
//!
//! ```text
//! "ACCE2EP1" (8 bytes: magic and format version) | nonce (24 bytes) | XChaCha20-Poly1305(JSON) + tag (16 bytes)
//! ```
//!
//! The magic is the associated data, so a changed header fails like a wrong
//! key. The JSON (vodozemac's account and session pickles) exists only in a
//! buffer that is wiped on drop; only the sealed bytes leave this module.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"ACCE2EP1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a pickle could not be opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    #[error("not an Accord E2E pickle (bad header or too short)")]
    Format,
    #[error("the pickle does not open with this key (wrong key or altered bytes)")]
    WrongKeyOrCorrupt,
    #[error("the pickle opened but its content is not a machine state")]
    Content,
}

impl PickleError {
    /// A stable, machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PickleError::Format => "pickle_format",
            PickleError::WrongKeyOrCorrupt => "pickle_key_or_corrupt",
            PickleError::Content => "pickle_content",
        }
    }
}

/// Seals `plaintext` under `key` with a fresh random nonce.
pub(crate) fn seal(plaintext: &[u8], key: &[u8; 32]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: MAGIC,
            },
        )
        // Only fails for messages longer than XChaCha20's 256 GiB limit.
        .expect("XChaCha20-Poly1305 encrypts any in-memory buffer");
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens what [`seal`] made, into a buffer wiped on drop.
pub(crate) fn open(bytes: &[u8], key: &[u8; 32]) -> Result<Zeroizing<Vec<u8>>, PickleError> {
    if bytes.len() < MAGIC.len() + NONCE_LEN + TAG_LEN || !bytes.starts_with(MAGIC) {
        return Err(PickleError::Format);
    }
    let (nonce, sealed) = bytes[MAGIC.len()..].split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: MAGIC,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| PickleError::WrongKeyOrCorrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper_detection() {
        let key = [7u8; 32];
        let sealed = seal(b"state", &key);
        assert_eq!(&open(&sealed, &key).unwrap()[..], b"state");
        assert_eq!(
            open(&sealed, &[8u8; 32]).unwrap_err(),
            PickleError::WrongKeyOrCorrupt
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(open(&bad, &key).is_err(), "flipped byte {i} still opened");
        }
        assert_eq!(open(&sealed[..20], &key).unwrap_err(), PickleError::Format);
        // Two seals of the same state differ (fresh nonce).
        assert_ne!(seal(b"state", &key), sealed);
    }
}
