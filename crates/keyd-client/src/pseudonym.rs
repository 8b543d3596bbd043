//! The pseudonym: what an identifier becomes under a purpose's OPRF key.

use accord_crypto::oprf::{KeyVersion, PseudonymBytes, PSEUDONYM_LEN};
use accord_domain::PseudonymId;
use std::fmt;

/// `OPRF_k(input)` truncated to 32 bytes (see
/// [`PseudonymBytes::pseudonym32`]), with the [`KeyVersion`] of `k`.
///
/// There is no public constructor: a `Pseudonym` only comes out of the
/// OPRF finalize path ([`Oprf::pseudonyms`](crate::Oprf::pseudonyms)), so
/// nothing can pass a plain hash off as one. `Debug` prints the version
/// only: a pseudonym is still personal data.
///
/// Lives in `accord-keyd-client`, next to the only code that makes one;
/// `accord-domain` cannot hold it while the OPRF types are
/// `accord-crypto`'s, which depends on `accord-domain`. What is stored and
/// sent is its value alone, [`PseudonymId`] ([`Pseudonym::id`]), with the
/// key version beside it where it matters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym {
    bytes: [u8; PSEUDONYM_LEN],
    key_version: KeyVersion,
}

impl Pseudonym {
    /// Only from a finalized OPRF output.
    pub(crate) fn from_output(out: &PseudonymBytes, key_version: KeyVersion) -> Self {
        Pseudonym {
            bytes: out.pseudonym32(),
            key_version,
        }
    }

    pub fn as_bytes(&self) -> &[u8; PSEUDONYM_LEN] {
        &self.bytes
    }

    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }

    /// Its value, as stored and sent (without the key version).
    pub fn id(&self) -> PseudonymId {
        PseudonymId::from_bytes(self.bytes)
    }
}

impl From<Pseudonym> for PseudonymId {
    fn from(p: Pseudonym) -> Self {
        p.id()
    }
}

impl From<&Pseudonym> for PseudonymId {
    fn from(p: &Pseudonym) -> Self {
        p.id()
    }
}

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pseudonym(v{}, <redacted>)", self.key_version)
    }
}
