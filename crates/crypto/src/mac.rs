//! Authenticating the coordination feed: HMAC-SHA256 over a timestamp
//! and the exact body, with a freshness window against replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header names.
pub const SIGNATURE_HEADER: &str = "x-accord-signature";
pub const TIMESTAMP_HEADER: &str = "x-accord-timestamp";
/// Requests older or newer than this are refused.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

fn mac(secret: &[u8], timestamp_ms: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"accord-feed-v1\0");
    m.update(timestamp_ms.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// `v1=<hex>` for the signature header.
pub fn sign(secret: &[u8], timestamp_ms: i64, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(secret, timestamp_ms, body).finalize().into_bytes())
    )
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("missing or malformed signature")]
    Malformed,
    #[error("the request is too old or from the future")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a signature header in constant time, and the freshness window.
pub fn verify(
    secret: &[u8],
    timestamp_ms: i64,
    now_ms: i64,
    body: &[u8],
    header: &str,
) -> Result<(), MacError> {
    let tag = header
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(MacError::Malformed)?;
    if (now_ms - timestamp_ms).abs() > MAX_SKEW_MS {
        return Err(MacError::Stale);
    }
    mac(secret, timestamp_ms, body)
        .verify_slice(&tag)
        .map_err(|_| MacError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_changes() {
        let s = b"secret";
        let h = sign(s, 1000, b"body");
        assert_eq!(verify(s, 1000, 1000, b"body", &h), Ok(()));
        assert_eq!(verify(s, 1000, 1000, b"bodY", &h), Err(MacError::Mismatch));
        assert_eq!(
            verify(b"other", 1000, 1000, b"body", &h),
            Err(MacError::Mismatch)
        );
        assert_eq!(verify(s, 1001, 1001, b"body", &h), Err(MacError::Mismatch));
        assert_eq!(
            verify(s, 1000, 1000 + MAX_SKEW_MS + 1, b"body", &h),
            Err(MacError::Stale)
        );
        assert_eq!(
            verify(s, 1000, 1000, b"body", "v1=zz"),
            Err(MacError::Malformed)
        );
    }
}
