//! A pseudonym's value, as it is stored and sent: [`PseudonymId`].
//!
//! A pseudonym is `OPRF_k(input)` truncated to 32 bytes, under one
//! purpose's key at one key version. Only the key-service client makes
//! one (`accord_keyd_client::Pseudonym`, bytes and key version, from the
//! OPRF's finalize path); from there its 32 bytes travel on as a
//! [`PseudonymId`]: into the messenger's `pseudonyms` table and
//! `partner_holdings`, onto the coordination feed (as lowercase hex), into
//! the partner's records, links and contact edges, and back out of each.
//!
//! The key version does not travel with it: where it matters it is
//! already a column or field of its own (the messenger's pseudonyms per
//! version, a holding's and a feed event's `key_version`), and where a
//! pseudonym arrives from a partner user's client (its own, its contacts)
//! none is given.
//!
//! It lives here, in the pure crate, because storage and every service
//! need it and storage must not depend on the key-service client.

use crate::coordination::ReconcileBucket;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// How many bytes a pseudonym has.
pub const PSEUDONYM_LEN: usize = 32;

/// A contact-discovery prefix bucket: the pseudonyms whose first two
/// bytes (big-endian) are this number. (Not a token bucket of a rate
/// limit, nor a reconciliation bucket of the coordination feed.)
pub type PrefixBucket = u16;

/// The 32 bytes of a pseudonym, without its key version.
///
/// Personal data: no `Display`, and `Debug` prints `PseudonymId(<redacted>)`.
/// Code that needs the value asks for it ([`as_bytes`](Self::as_bytes),
/// [`to_hex`](Self::to_hex)). On the wire (serde) it is 64 lowercase hex
/// digits; any case is accepted when read. Ordered as its bytes are.
///
/// [`from_bytes`](Self::from_bytes) and [`from_hex`](Self::from_hex) take
/// bytes that already are a pseudonym: read back from storage, from a
/// verified feed, or given by a client that computed it through the key
/// service. New pseudonyms come out of the OPRF only
/// (`accord_keyd_client::Pseudonym::id`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PseudonymId([u8; PSEUDONYM_LEN]);

impl PseudonymId {
    pub const fn from_bytes(bytes: [u8; PSEUDONYM_LEN]) -> Self {
        PseudonymId(bytes)
    }

    /// From a byte slice of exactly [`PSEUDONYM_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(PseudonymId)
    }

    /// From 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        Self::from_slice(&hex::decode(s).ok()?)
    }

    pub const fn as_bytes(&self) -> &[u8; PSEUDONYM_LEN] {
        &self.0
    }

    /// 64 lowercase hex digits, as on the wire.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Its contact-discovery prefix bucket: the first two bytes,
    /// big-endian.
    pub const fn prefix16(&self) -> PrefixBucket {
        u16::from_be_bytes([self.0[0], self.0[1]])
    }

    /// Its reconciliation bucket on the coordination feed: the first byte.
    pub const fn reconcile_bucket(&self) -> ReconcileBucket {
        self.0[0]
    }
}

impl fmt::Debug for PseudonymId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymId(<redacted>)")
    }
}

impl Serialize for PseudonymId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PseudonymId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PseudonymId::from_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("pseudonym must be 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_redacted_debug() {
        let mut b = [0u8; 32];
        b[0] = 0xAB;
        b[1] = 0x01;
        b[31] = 0xFF;
        let p = PseudonymId::from_bytes(b);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, format!("\"{}\"", hex::encode(b)));
        assert_eq!(serde_json::from_str::<PseudonymId>(&json).unwrap(), p);
        assert_eq!(
            serde_json::from_str::<PseudonymId>(&json.to_uppercase()).unwrap(),
            p
        );
        assert_eq!(PseudonymId::from_hex(&p.to_hex()), Some(p));
        assert_eq!(format!("{p:?}"), "PseudonymId(<redacted>)");
        assert_eq!(p.prefix16(), 0xAB01);
        assert_eq!(p.reconcile_bucket(), 0xAB);
        assert_eq!(p.as_bytes(), &b);
    }

    #[test]
    fn refuses_what_is_not_32_bytes_of_hex() {
        for bad in ["", "ab", &"0".repeat(63), &"0".repeat(66), &"g".repeat(64)] {
            assert_eq!(PseudonymId::from_hex(bad), None, "{bad}");
            assert!(serde_json::from_str::<PseudonymId>(&format!("\"{bad}\"")).is_err());
        }
        assert!(serde_json::from_str::<PseudonymId>("42").is_err());
        assert_eq!(PseudonymId::from_slice(&[0; 31]), None);
    }

    #[test]
    fn orders_as_its_bytes() {
        let a = PseudonymId::from_bytes([1; 32]);
        let mut b = [1; 32];
        b[31] = 2;
        assert!(a < PseudonymId::from_bytes(b));
    }
}
