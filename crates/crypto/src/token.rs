//! Bearer tokens and verification codes.
//!
//! A token is 32 random bytes, shown once to the client as
//! `acc_<base64url>`; the server keeps only its SHA-256. A token has enough
//! entropy that an unsalted hash is safe to store. Verification codes are
//! short, so they are stored as an HMAC under a per-registration random
//! salt, compared in constant time, expire and allow few attempts.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::{rngs::OsRng, Rng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const TOKEN_PREFIX: &str = "acc_";

/// A freshly minted bearer token. `Debug` does not print it.
pub struct BearerToken(SecretString);

impl BearerToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        BearerToken(SecretString::from(format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(bytes)
        )))
    }
    /// The value to hand to the client, once.
    pub fn reveal(&self) -> &str {
        self.0.expose_secret()
    }
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.reveal())
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// What the server stores and looks tokens up by.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented token. Malformed tokens still hash (and then
    /// match nothing), so lookups take the same path for every input.
    pub fn of(presented: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"accord-token-v1\0");
        h.update(presented.as_bytes());
        TokenHash(h.finalize().into())
    }
    /// Whether `presented` has the shape of a token at all.
    pub fn well_formed(presented: &str) -> bool {
        presented
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .is_some_and(|b| b.len() == 32)
    }
}

/// A numeric verification code, as sent to the phone.
pub struct VerificationCode(SecretString);

impl VerificationCode {
    pub const DIGITS: usize = 6;

    pub fn generate() -> Self {
        let n: u32 = OsRng.gen_range(0..1_000_000);
        VerificationCode(SecretString::from(format!("{n:06}")))
    }
    pub fn reveal(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode(<redacted>)")
    }
}

/// A random salt for a verification attempt.
pub fn random_salt() -> [u8; 16] {
    let mut s = [0u8; 16];
    OsRng.fill_bytes(&mut s);
    s
}

/// HMAC-SHA256 of a code under a salt: what is stored instead of the code.
pub fn code_digest(salt: &[u8], code: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(code.trim().as_bytes());
    mac.finalize().into_bytes().into()
}

/// Constant-time comparison of a presented code against a stored digest.
pub fn code_matches(salt: &[u8], presented: &str, stored: &[u8]) -> bool {
    code_digest(salt, presented).ct_eq(stored).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_well_formed_and_hidden() {
        let a = BearerToken::generate();
        let b = BearerToken::generate();
        assert_ne!(a.reveal(), b.reveal());
        assert!(TokenHash::well_formed(a.reveal()));
        assert!(!TokenHash::well_formed("acc_short"));
        assert_eq!(a.hash(), TokenHash::of(a.reveal()));
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(&a.reveal()[4..]));
    }

    #[test]
    fn codes_match_only_themselves() {
        let salt = random_salt();
        let code = VerificationCode::generate();
        assert_eq!(code.reveal().len(), 6);
        let stored = code_digest(&salt, code.reveal());
        assert!(code_matches(&salt, code.reveal(), &stored));
        let wrong = if code.reveal() == "000000" {
            "000001"
        } else {
            "000000"
        };
        assert!(!code_matches(&salt, wrong, &stored));
        assert!(!code_matches(&random_salt(), code.reveal(), &stored));
    }
}
