//! Secrets encrypted at rest under a master key.
//!
//! XChaCha20-Poly1305 (`chacha20poly1305`), with a random 24-byte nonce per
//! message, so nonces never need to be tracked. A sealed blob is
//! `nonce (24 bytes) || ciphertext || tag (16 bytes)`. The associated data
//! names what the blob is (for example an OPRF key's purpose and version);
//! it is not stored, and opening under different associated data fails.

use std::fmt;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a [`MasterKey`].
pub const MASTER_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// The bytes [`MasterKey::seal`] adds to a plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a sealed blob could not be opened, or a key not loaded. Carries no
/// key material and no plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    #[error("master key must be {MASTER_KEY_LEN} bytes")]
    InvalidKey,
    #[error("sealed data is too short")]
    Truncated,
    /// Wrong key, wrong associated data, or tampered data.
    #[error("sealed data failed authentication")]
    Unauthentic,
}

/// The 32-byte key that seals other secrets. Zeroised on drop; `Debug`
/// prints nothing secret; not `Clone`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; MASTER_KEY_LEN]);

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; MASTER_KEY_LEN];
        rand::rngs::OsRng.fill_bytes(&mut k);
        MasterKey(k)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let k: [u8; MASTER_KEY_LEN] = bytes.try_into().map_err(|_| SealError::InvalidKey)?;
        Ok(MasterKey(k))
    }

    /// The key's bytes, for writing it to its own secret store.
    pub fn to_bytes(&self) -> Zeroizing<[u8; MASTER_KEY_LEN]> {
        Zeroizing::new(self.0)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Encrypts and authenticates `plaintext`, binding `aad`.
    ///
    /// # Panics
    /// Only if `plaintext` exceeds XChaCha20-Poly1305's limit (~256 GiB).
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("plaintext within the AEAD length limit");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Authenticates and decrypts a blob made by [`MasterKey::seal`] with
    /// the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if sealed.len() < SEAL_OVERHEAD {
            return Err(SealError::Truncated);
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError::Unauthentic)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"accord-test\0thing\0v1";

    #[test]
    fn round_trip() {
        let k = MasterKey::generate();
        let pt = b"a secret worth keeping";
        let sealed = k.seal(pt, AAD);
        assert_eq!(sealed.len(), pt.len() + SEAL_OVERHEAD);
        assert_eq!(k.open(&sealed, AAD).unwrap().as_slice(), pt);
        assert_eq!(k.open(&k.seal(b"", AAD), AAD).unwrap().as_slice(), b"");
        // Fresh nonce every time.
        assert_ne!(k.seal(pt, AAD), sealed);
        // Loading the key from its bytes gives the same key.
        let k2 = MasterKey::from_bytes(&*k.to_bytes()).unwrap();
        assert_eq!(k2.open(&sealed, AAD).unwrap().as_slice(), pt);
    }

    #[test]
    fn wrong_aad_fails() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"pt", AAD);
        assert_eq!(
            k.open(&sealed, b"other").unwrap_err(),
            SealError::Unauthentic
        );
        assert_eq!(k.open(&sealed, b"").unwrap_err(), SealError::Unauthentic);
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = MasterKey::generate().seal(b"pt", AAD);
        assert_eq!(
            MasterKey::generate().open(&sealed, AAD).unwrap_err(),
            SealError::Unauthentic
        );
    }

    #[test]
    fn every_tampered_byte_fails() {
        let k = MasterKey::generate();
        let sealed = k.seal(b"sixteen byte msg", AAD);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 0x01;
            assert_eq!(
                k.open(&t, AAD).unwrap_err(),
                SealError::Unauthentic,
                "byte {i}"
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(k.open(&longer, AAD).unwrap_err(), SealError::Unauthentic);
        assert_eq!(
            k.open(&sealed[..SEAL_OVERHEAD - 1], AAD).unwrap_err(),
            SealError::Truncated
        );
    }

    #[test]
    fn keys_are_validated_and_hidden() {
        assert_eq!(
            MasterKey::from_bytes(&[0u8; 31]).unwrap_err(),
            SealError::InvalidKey
        );
        assert_eq!(
            MasterKey::from_bytes(&[0u8; 33]).unwrap_err(),
            SealError::InvalidKey
        );
        let k = MasterKey::from_bytes(&[0xab; 32]).unwrap();
        let dbg = format!("{k:?}");
        assert_eq!(dbg, "MasterKey(<redacted>)");
        assert!(!dbg.to_lowercase().contains("abab"));
    }
}
