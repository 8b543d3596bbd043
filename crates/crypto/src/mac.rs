//! Authenticating the coordination feed: HMAC-SHA256 over the request
//! line (method and path), a timestamp, a nonce and the exact body.
//!
//! The timestamp bounds a request's life to a freshness window; the nonce
//! makes each request unique within it, so that the partner, which keeps
//! the nonces it has seen for the window, refuses a captured request
//! replayed verbatim; the method and path keep a signature for one
//! endpoint from being presented to another. A retry by the messenger is
//! a new request, with a new nonce and signature.

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::Sha256;

/// Header names.
pub const SIGNATURE_HEADER: &str = "x-accord-signature";
pub const TIMESTAMP_HEADER: &str = "x-accord-timestamp";
pub const NONCE_HEADER: &str = "x-accord-nonce";
/// Requests older or newer than this are refused; a nonce must be
/// remembered at least twice this long.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// What a signature covers.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path below the partner's base URL, e.g. `/v1/feed/ingest`.
    pub path: &'a str,
    pub timestamp_ms: i64,
    /// 16 to 64 lowercase hex digits ([`nonce`] makes 32).
    pub nonce: &'a str,
    pub body: &'a [u8],
}

/// A fresh random nonce: 16 bytes, hex.
pub fn nonce() -> String {
    let mut n = [0u8; 16];
    OsRng.fill_bytes(&mut n);
    hex::encode(n)
}

fn valid_nonce(n: &str) -> bool {
    (16..=64).contains(&n.len()) && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn mac(secret: &[u8], r: &SignedRequest<'_>) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    // Every field but the body has no newline (methods and paths are the
    // services' own constants, the nonce is hex), so the encoding is
    // unambiguous.
    m.update(b"accord-feed-v2\n");
    for field in [
        r.method.as_bytes(),
        r.path.as_bytes(),
        r.timestamp_ms.to_string().as_bytes(),
        r.nonce.as_bytes(),
    ] {
        m.update(field);
        m.update(b"\n");
    }
    m.update(r.body);
    m
}

/// `v2=<hex>` for the signature header.
pub fn sign(secret: &[u8], r: &SignedRequest<'_>) -> String {
    format!("v2={}", hex::encode(mac(secret, r).finalize().into_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    #[error("missing or malformed signature or nonce")]
    Malformed,
    #[error("the request is too old or from the future")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
    #[error("this request was received before (same nonce)")]
    Replayed,
}

/// Checks a signature header in constant time, the nonce's form and the
/// freshness window. Whether the nonce was seen before is the receiver's
/// to check ([`MacError::Replayed`]), after this succeeds.
pub fn verify(
    secret: &[u8],
    r: &SignedRequest<'_>,
    now_ms: i64,
    header: &str,
) -> Result<(), MacError> {
    let tag = header
        .strip_prefix("v2=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(MacError::Malformed)?;
    if !valid_nonce(r.nonce) {
        return Err(MacError::Malformed);
    }
    if (now_ms - r.timestamp_ms).abs() > MAX_SKEW_MS {
        return Err(MacError::Stale);
    }
    mac(secret, r)
        .verify_slice(&tag)
        .map_err(|_| MacError::Mismatch)
}

/// The header business webhooks carry: HMAC-SHA256 of the raw body
/// under the webhook's secret, as `sha256=<lowercase hex>` (the header
/// and format that receivers of the hosted business APIs' webhooks
/// already verify).
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// `sha256=<hex>` of `body` under `secret`.
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(body);
    format!("sha256={}", hex::encode(m.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret`, compared
/// in constant time.
pub fn verify_hub_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    m.update(body);
    m.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_signatures_verify_only_for_the_same_secret_and_body() {
        let h = hub_signature(b"secret", b"{\"a\":1}");
        assert!(h.starts_with("sha256=") && h.len() == 7 + 64);
        assert!(verify_hub_signature(b"secret", b"{\"a\":1}", &h));
        assert!(!verify_hub_signature(b"other", b"{\"a\":1}", &h));
        assert!(!verify_hub_signature(b"secret", b"{\"a\":2}", &h));
        assert!(!verify_hub_signature(b"secret", b"{\"a\":1}", "sha1=00"));
    }

    fn req<'a>(path: &'a str, ts: i64, nonce: &'a str, body: &'a [u8]) -> SignedRequest<'a> {
        SignedRequest {
            method: "POST",
            path,
            timestamp_ms: ts,
            nonce,
            body,
        }
    }

    #[test]
    fn signs_and_verifies_and_refuses_any_change() {
        let s = b"secret";
        let n = nonce();
        assert_eq!(n.len(), 32);
        let r = req("/v1/feed/ingest", 1000, &n, b"body");
        let h = sign(s, &r);
        assert_eq!(verify(s, &r, 1000, &h), Ok(()));
        let other = nonce();
        for changed in [
            req("/v1/feed/ingest", 1000, &n, b"bodY"),
            req("/v1/feed/reconcile/bucket", 1000, &n, b"body"),
            req("/v1/feed/ingest", 1001, &n, b"body"),
            req("/v1/feed/ingest", 1000, &other, b"body"),
            SignedRequest { method: "PUT", ..r },
        ] {
            assert_eq!(verify(s, &changed, 1001, &h), Err(MacError::Mismatch));
        }
        assert_eq!(verify(b"other", &r, 1000, &h), Err(MacError::Mismatch));
        assert_eq!(
            verify(s, &r, 1000 + MAX_SKEW_MS + 1, &h),
            Err(MacError::Stale)
        );
        assert_eq!(verify(s, &r, 1000, "v2=zz"), Err(MacError::Malformed));
        assert_eq!(
            verify(s, &r, 1000, &h.replace("v2=", "v1=")),
            Err(MacError::Malformed)
        );
        let bad = req("/v1/feed/ingest", 1000, "not\nhex", b"body");
        assert_eq!(
            verify(s, &bad, 1000, &sign(s, &bad)),
            Err(MacError::Malformed)
        );
    }
}
