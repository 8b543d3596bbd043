//! RFC 9497 OPRF, base mode (mode `0x00`), ciphersuite ristretto255-SHA512,
//! composed from the `voprf` crate. Nothing here is hand-rolled: this module
//! only fixes the ciphersuite, gives the wire values fixed-size types, and
//! validates whole batches before any work is done.
//!
//! The three parties:
//!
//! - the **client** (a device, the business tool, the partner) calls
//!   [`blind`] / [`blind_many`], sends the [`BlindedElementBytes`] to the key
//!   service, and turns the answer into a [`PseudonymBytes`] with
//!   [`finalize`] / [`finalize_many`];
//! - the **key service** holds an [`OprfSecretKey`] per [`OprfPurpose`] and
//!   [`KeyVersion`] and answers with [`evaluate_batch`] (or, to check a
//!   whole batch before committing to the work, [`validate_batch`] then
//!   [`evaluate_validated`], which decodes each element once), seeing only
//!   blinded elements;
//! - the **messenger**, trusted with its own users' numbers, computes the
//!   same values in process with [`evaluate_full`].
//!
//! A pseudonym is the first 32 bytes of the 64-byte RFC 9497 output
//! ([`PseudonymBytes::pseudonym32`]). Inputs are built by [`input_for_phone`]
//! and [`input_for_email`], which prefix a domain tag so that a phone number
//! and an email can never map to the same input.
//!
//! Wire encoding: every 32-byte element serialises as unpadded URL-safe
//! base64 (RFC 4648 §5, 43 characters), the same alphabet as bearer tokens.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use voprf::{BlindedElement, EvaluationElement, OprfClient, OprfServer, Ristretto255};
use zeroize::{Zeroize, Zeroizing};

use crate::sealed::{MasterKey, SealError};
use accord_domain::{Email, PhoneNumber};

type Suite = Ristretto255;

/// The RFC 9497 ciphersuite identifier. The protocol variant is always the
/// base mode, OPRF (mode [`MODE`]); no verifiable or partially-oblivious
/// mode is offered.
pub const SUITE: &str = "ristretto255-SHA512";
/// The RFC 9497 mode identifier of the base OPRF mode.
pub const MODE: u8 = 0x00;
/// The most elements [`evaluate_batch`] accepts in one call. Clients chunk
/// larger lists by this size.
pub const MAX_BATCH: usize = 10_000;
/// Length of an encoded ristretto255 element.
pub const ELEMENT_LEN: usize = 32;
/// Length of the RFC 9497 output (SHA-512).
pub const OUTPUT_LEN: usize = 64;
/// Length of a pseudonym: the prefix of the output that Accord stores.
pub const PSEUDONYM_LEN: usize = 32;

/// Everything that can go wrong in this module. No variant carries key
/// material, an input, or an element.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OprfError {
    /// Element `index` of a batch (0 for single calls) is not a valid
    /// ristretto255 encoding, or is the identity.
    #[error("element {index} is not a valid non-identity ristretto255 element")]
    InvalidElement { index: usize },
    /// Input `index` (0 for single calls) is empty or longer than 65535
    /// bytes. RFC 9497 permits an empty input; Accord refuses it, since
    /// every real input carries a domain tag and an empty one is a bug.
    #[error("input {index} is empty or too long")]
    InvalidInput { index: usize },
    #[error("empty batch")]
    EmptyBatch,
    #[error("batch larger than {max} elements")]
    BatchTooLarge { max: usize },
    /// The batch helpers were given lists of different lengths.
    #[error("batch length mismatch: expected {expected}, got {got}")]
    LengthMismatch { expected: usize, got: usize },
    /// Key bytes are not a canonical, non-zero scalar (or a seed was refused).
    #[error("invalid OPRF key")]
    InvalidKey,
    /// A sealed key could not be opened.
    #[error("sealed OPRF key: {0}")]
    Sealed(#[from] SealError),
    #[error("internal OPRF error")]
    Internal,
}

// ---------------------------------------------------------------------------
// Purposes and versions
// ---------------------------------------------------------------------------

/// What an OPRF key is for. Each purpose has its own key, so pseudonyms of
/// one purpose cannot be joined with another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OprfPurpose {
    /// Pseudonyms shared between messenger and partner (coordination feed,
    /// custom audiences, friend suggestions).
    Coordination,
    /// Contact discovery on the messenger.
    Contacts,
}

impl OprfPurpose {
    pub const ALL: [OprfPurpose; 2] = [OprfPurpose::Coordination, OprfPurpose::Contacts];

    pub fn as_str(self) -> &'static str {
        match self {
            OprfPurpose::Coordination => "coordination",
            OprfPurpose::Contacts => "contacts",
        }
    }
}

impl fmt::Display for OprfPurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The string named no [`OprfPurpose`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown OPRF purpose (expected one of: coordination, contacts)")]
pub struct UnknownPurpose;

impl FromStr for OprfPurpose {
    type Err = UnknownPurpose;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OprfPurpose::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or(UnknownPurpose)
    }
}

/// The version of a purpose's key; rotation adds a new version.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct KeyVersion(pub u32);

impl KeyVersion {
    /// The version after this one, or `None` on overflow.
    pub fn next(self) -> Option<KeyVersion> {
        self.0.checked_add(1).map(KeyVersion)
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A server's OPRF secret key (a ristretto255 scalar). Zeroised on drop
/// (by `voprf`'s `ZeroizeOnDrop`); `Debug` prints nothing secret; not
/// `Clone`: share it behind an `Arc`.
pub struct OprfSecretKey(OprfServer<Suite>);

impl OprfSecretKey {
    /// A fresh key: a random seed through RFC 9497 `DeriveKeyPair`.
    pub fn generate() -> Self {
        // Only fails if the derivation loop exhausts its counter, which has
        // probability ~2^-2000 for ristretto255.
        OprfSecretKey(OprfServer::new(&mut OsRng).expect("DeriveKeyPair from a random seed"))
    }

    /// Loads a key from its 32-byte little-endian encoding. Rejects wrong
    /// lengths, non-canonical scalars and zero.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OprfError> {
        OprfServer::new_with_key(bytes)
            .map(OprfSecretKey)
            .map_err(|_| OprfError::InvalidKey)
    }

    /// RFC 9497 `DeriveKeyPair(seed, info)`. Used by the RFC test vectors
    /// and for deterministic keys in tests.
    pub fn derive_from_seed(seed: &[u8], info: &[u8]) -> Result<Self, OprfError> {
        OprfServer::new_from_seed(seed, info)
            .map(OprfSecretKey)
            .map_err(|_| OprfError::InvalidKey)
    }

    /// The key's encoding. Only for sealing at rest; prefer
    /// [`OprfSecretKey::seal`].
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut ser = self.0.serialize();
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&ser);
        ser.as_mut_slice().zeroize();
        out
    }

    /// Seals the key under `master`, bound (as associated data) to its
    /// purpose and version, so a sealed key cannot be swapped in for
    /// another purpose or version.
    pub fn seal(&self, master: &MasterKey, purpose: OprfPurpose, version: KeyVersion) -> Vec<u8> {
        master.seal(&*self.to_bytes(), &sealing_aad(purpose, version))
    }

    /// Opens a key sealed by [`OprfSecretKey::seal`] with the same purpose
    /// and version.
    pub fn open(
        master: &MasterKey,
        sealed: &[u8],
        purpose: OprfPurpose,
        version: KeyVersion,
    ) -> Result<Self, OprfError> {
        let bytes = master.open(sealed, &sealing_aad(purpose, version))?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for OprfSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OprfSecretKey(<redacted>)")
    }
}

fn sealing_aad(purpose: OprfPurpose, version: KeyVersion) -> Vec<u8> {
    format!(
        "accord-oprf-key-v1\0{SUITE}\0{}\0{}",
        purpose.as_str(),
        version.0
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// Wire values
// ---------------------------------------------------------------------------

/// Serde for `[u8; 32]` as unpadded URL-safe base64; decoding demands
/// exactly 32 bytes.
mod b64_32 {
    use super::*;
    use serde::de::Error as _;

    pub fn encode(bytes: &[u8; 32]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(s: &str) -> Option<[u8; 32]> {
        // 32 bytes are 43 characters; refuse anything longer before decoding.
        if s.len() != 43 {
            return None;
        }
        URL_SAFE_NO_PAD.decode(s).ok()?.try_into().ok()
    }

    pub fn serialize<S: serde::Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&s).ok_or_else(|| D::Error::custom("expected 32 bytes as unpadded URL-safe base64"))
    }
}

macro_rules! element_bytes {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(#[serde(with = "b64_32")] pub [u8; 32]);

        impl $name {
            /// Unpadded URL-safe base64, as in JSON.
            pub fn to_base64(&self) -> String {
                b64_32::encode(&self.0)
            }
            /// Parses unpadded URL-safe base64 of exactly 32 bytes. Says
            /// nothing about whether the bytes are a valid element.
            pub fn from_base64(s: &str) -> Option<Self> {
                b64_32::decode(s).map($name)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_base64())
            }
        }
    };
}

element_bytes!(
    /// A blinded element, client → key service. Blinded elements reveal
    /// nothing about the input, so `Debug` prints them.
    BlindedElementBytes
);
element_bytes!(
    /// An evaluated element, key service → client.
    EvaluatedElementBytes
);

/// The 64-byte RFC 9497 OPRF output for one input. Accord's pseudonym is
/// its first 32 bytes ([`PseudonymBytes::pseudonym32`]); the full output is
/// kept so the truncation happens in exactly one place. `Debug` does not
/// print it (a pseudonym is still personal data).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PseudonymBytes([u8; OUTPUT_LEN]);

impl PseudonymBytes {
    /// The pseudonym: the first 32 bytes of the RFC 9497 output.
    pub fn pseudonym32(&self) -> [u8; PSEUDONYM_LEN] {
        let mut out = [0u8; PSEUDONYM_LEN];
        out.copy_from_slice(&self.0[..PSEUDONYM_LEN]);
        out
    }
    /// The full 64-byte RFC 9497 output.
    pub fn as_output(&self) -> &[u8; OUTPUT_LEN] {
        &self.0
    }
}

impl From<PseudonymBytes> for [u8; OUTPUT_LEN] {
    fn from(p: PseudonymBytes) -> Self {
        p.0
    }
}

impl fmt::Debug for PseudonymBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymBytes(<redacted>)")
    }
}

fn output_to_pseudonym(out: &[u8]) -> Result<PseudonymBytes, OprfError> {
    out.try_into()
        .map(PseudonymBytes)
        .map_err(|_| OprfError::Internal)
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// OPRF input for a phone number: `b"phone:"` followed by its E.164 form.
pub fn input_for_phone(p: &PhoneNumber) -> Vec<u8> {
    tagged(b"phone:", p.e164())
}

/// OPRF input for an email: `b"email:"` followed by the (already trimmed and
/// lowercased) address.
pub fn input_for_email(e: &Email) -> Vec<u8> {
    tagged(b"email:", e.as_str())
}

fn tagged(tag: &[u8], value: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(tag.len() + value.len());
    v.extend_from_slice(tag);
    v.extend_from_slice(value.as_bytes());
    v
}

// ---------------------------------------------------------------------------
// Server side
// ---------------------------------------------------------------------------

/// A batch of blinded elements that passed [`validate_batch`]: between 1
/// and [`MAX_BATCH`] elements, each decoded once by `voprf` into a valid,
/// non-identity ristretto255 element. Only validation (or
/// [`ValidatedBatch::concat`] of validated parts) builds one, so holding a
/// `ValidatedBatch` proves the whole batch is acceptable and evaluating it
/// cannot fail. `Debug` prints only the length.
pub struct ValidatedBatch {
    elements: Vec<BlindedElement<Suite>>,
}

impl ValidatedBatch {
    /// The number of elements (at least 1).
    pub fn len(&self) -> usize {
        self.elements.len()
    }

    /// Always `false`: an empty batch does not validate. Present for API
    /// symmetry with [`ValidatedBatch::len`].
    pub fn is_empty(&self) -> bool {
        self.elements.is_empty()
    }

    /// Joins batches validated separately (e.g. contiguous chunks validated
    /// in parallel), in order. The result obeys the same size limits as
    /// [`validate_batch`].
    pub fn concat<I>(parts: I) -> Result<ValidatedBatch, OprfError>
    where
        I: IntoIterator<Item = ValidatedBatch>,
    {
        let mut elements = Vec::new();
        for part in parts {
            if elements.len() + part.len() > MAX_BATCH {
                return Err(OprfError::BatchTooLarge { max: MAX_BATCH });
            }
            if elements.is_empty() {
                elements = part.elements;
            } else {
                elements.extend(part.elements);
            }
        }
        if elements.is_empty() {
            return Err(OprfError::EmptyBatch);
        }
        Ok(ValidatedBatch { elements })
    }
}

impl fmt::Debug for ValidatedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedBatch")
            .field("len", &self.len())
            .finish()
    }
}

/// Checks and decodes a batch of blinded elements, once: the batch must
/// hold between 1 and [`MAX_BATCH`] elements, and every element must be a
/// valid ristretto255 encoding other than the identity (`voprf`'s
/// `BlindedElement::deserialize`). On failure the error names the first bad
/// index and nothing is kept. Cheap to call on chunks of a larger request
/// and join with [`ValidatedBatch::concat`].
pub fn validate_batch(elements: &[BlindedElementBytes]) -> Result<ValidatedBatch, OprfError> {
    if elements.is_empty() {
        return Err(OprfError::EmptyBatch);
    }
    if elements.len() > MAX_BATCH {
        return Err(OprfError::BatchTooLarge { max: MAX_BATCH });
    }
    let elements = elements
        .iter()
        .enumerate()
        .map(|(index, b)| {
            BlindedElement::<Suite>::deserialize(&b.0)
                .map_err(|_| OprfError::InvalidElement { index })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ValidatedBatch { elements })
}

/// RFC 9497 `BlindEvaluate` of the elements `range` of a validated batch,
/// in order. Infallible: the elements were checked by [`validate_batch`].
/// Disjoint ranges may be evaluated in parallel on a shared batch; the
/// whole batch is `0..batch.len()`.
///
/// # Panics
///
/// If `range` is out of bounds, as slice indexing does.
pub fn evaluate_validated(
    key: &OprfSecretKey,
    batch: &ValidatedBatch,
    range: Range<usize>,
) -> Vec<EvaluatedElementBytes> {
    batch.elements[range]
        .iter()
        .map(|b| EvaluatedElementBytes(key.0.blind_evaluate(b).serialize().into()))
        .collect()
}

/// Evaluates a batch of blinded elements (RFC 9497 `BlindEvaluate`):
/// [`validate_batch`] then [`evaluate_validated`] of the whole batch.
///
/// Every element is decoded and checked first (a valid ristretto255
/// encoding, not the identity); if any fails, the error names the first
/// bad index and nothing is evaluated. Batches must hold between 1 and
/// [`MAX_BATCH`] elements. Cheap to call on chunks of a larger request.
pub fn evaluate_batch(
    key: &OprfSecretKey,
    blinded: &[BlindedElementBytes],
) -> Result<Vec<EvaluatedElementBytes>, OprfError> {
    let batch = validate_batch(blinded)?;
    Ok(evaluate_validated(key, &batch, 0..batch.len()))
}

/// The un-blinded PRF on the server (RFC 9497 `Evaluate`), for the trusted
/// in-process path: equal to what a client obtains through [`blind`],
/// [`evaluate_batch`] and [`finalize`] for the same input and key.
pub fn evaluate_full(key: &OprfSecretKey, input: &[u8]) -> Result<PseudonymBytes, OprfError> {
    if input.is_empty() {
        return Err(OprfError::InvalidInput { index: 0 });
    }
    let out = key
        .0
        .evaluate(input)
        .map_err(|_| OprfError::InvalidInput { index: 0 })?;
    output_to_pseudonym(&out)
}

fn element_bytes(ser: &[u8]) -> Result<[u8; 32], OprfError> {
    ser.try_into().map_err(|_| OprfError::Internal)
}

/// Average wall-clock nanoseconds of one server evaluation (decode, check,
/// `BlindEvaluate`, encode) over `iterations` calls with a fresh key. For
/// `accord bench oprf`; not a test and not a substitute for the criterion
/// benches.
pub fn measure_blind_evaluate_ns(iterations: u32) -> f64 {
    let iterations = iterations.max(1);
    let key = OprfSecretKey::generate();
    let (_blinding, element) = blind(b"accord-bench-input").expect("non-empty input");
    let batch = [element];
    let start = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(
            evaluate_batch(&key, std::hint::black_box(&batch)).expect("valid element"),
        );
    }
    start.elapsed().as_nanos() as f64 / f64::from(iterations)
}

// ---------------------------------------------------------------------------
// Client side
// ---------------------------------------------------------------------------

/// The client's secret state between [`blind`] and [`finalize`] (the blind
/// scalar). Zeroised on drop; not `Clone`, so it is finalized at most once;
/// `Debug` prints nothing secret.
pub struct Blinding(OprfClient<Suite>);

impl fmt::Debug for Blinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Blinding(<redacted>)")
    }
}

/// Blinds `input` with a fresh random scalar from the OS (RFC 9497 `Blind`).
pub fn blind(input: &[u8]) -> Result<(Blinding, BlindedElementBytes), OprfError> {
    blind_with_rng(input, &mut OsRng)
}

/// [`blind`] with a caller-supplied cryptographic RNG. The RFC 9497 test
/// vectors use this with an RNG that replays the published blind.
pub fn blind_with_rng<R: RngCore + CryptoRng>(
    input: &[u8],
    rng: &mut R,
) -> Result<(Blinding, BlindedElementBytes), OprfError> {
    blind_at(0, input, rng)
}

fn blind_at<R: RngCore + CryptoRng>(
    index: usize,
    input: &[u8],
    rng: &mut R,
) -> Result<(Blinding, BlindedElementBytes), OprfError> {
    if input.is_empty() {
        return Err(OprfError::InvalidInput { index });
    }
    let r =
        OprfClient::<Suite>::blind(input, rng).map_err(|_| OprfError::InvalidInput { index })?;
    let bytes = element_bytes(&r.message.serialize())?;
    Ok((Blinding(r.state), BlindedElementBytes(bytes)))
}

/// Blinds every input. No batch limit applies here; callers chunk the
/// elements by [`MAX_BATCH`] for [`evaluate_batch`].
pub fn blind_many<I: AsRef<[u8]>>(
    inputs: &[I],
) -> Result<(Vec<Blinding>, Vec<BlindedElementBytes>), OprfError> {
    let mut blindings = Vec::with_capacity(inputs.len());
    let mut elements = Vec::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        let (b, e) = blind_at(index, input.as_ref(), &mut OsRng)?;
        blindings.push(b);
        elements.push(e);
    }
    Ok((blindings, elements))
}

/// Unblinds the key service's answer for `input` (RFC 9497 `Finalize`).
/// `input` must be the one given to [`blind`].
pub fn finalize(
    b: Blinding,
    input: &[u8],
    evaluated: &EvaluatedElementBytes,
) -> Result<PseudonymBytes, OprfError> {
    finalize_at(0, &b, input, evaluated)
}

fn finalize_at(
    index: usize,
    b: &Blinding,
    input: &[u8],
    evaluated: &EvaluatedElementBytes,
) -> Result<PseudonymBytes, OprfError> {
    if input.is_empty() {
        return Err(OprfError::InvalidInput { index });
    }
    let element = EvaluationElement::<Suite>::deserialize(&evaluated.0)
        .map_err(|_| OprfError::InvalidElement { index })?;
    let out =
        b.0.finalize(input, &element)
            .map_err(|_| OprfError::InvalidInput { index })?;
    output_to_pseudonym(&out)
}

/// [`finalize`] for a batch, in order. All three lists must have the same
/// length; every evaluated element is validated before any is unblinded.
pub fn finalize_many<I: AsRef<[u8]>>(
    blindings: Vec<Blinding>,
    inputs: &[I],
    evaluated: &[EvaluatedElementBytes],
) -> Result<Vec<PseudonymBytes>, OprfError> {
    let expected = blindings.len();
    for got in [inputs.len(), evaluated.len()] {
        if got != expected {
            return Err(OprfError::LengthMismatch { expected, got });
        }
    }
    if let Some(index) = evaluated
        .iter()
        .position(|e| EvaluationElement::<Suite>::deserialize(&e.0).is_err())
    {
        return Err(OprfError::InvalidElement { index });
    }
    blindings
        .iter()
        .zip(inputs)
        .zip(evaluated)
        .enumerate()
        .map(|(index, ((b, input), e))| finalize_at(index, b, input.as_ref(), e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use voprf::CipherSuite;

    #[test]
    fn suite_matches_voprf() {
        assert_eq!(SUITE, <Suite as CipherSuite>::ID);
    }

    #[test]
    fn purposes_round_trip() {
        for p in OprfPurpose::ALL {
            assert_eq!(p.as_str().parse::<OprfPurpose>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
            assert_eq!(serde_json::from_str::<OprfPurpose>(&json).unwrap(), p);
        }
        assert!("Coordination".parse::<OprfPurpose>().is_err());
        assert_eq!(serde_json::to_string(&KeyVersion(7)).unwrap(), "7");
        assert!(KeyVersion(1) < KeyVersion(2));
        assert_eq!(KeyVersion(u32::MAX).next(), None);
    }

    #[test]
    fn key_bytes_round_trip_and_invalid_keys_are_refused() {
        let k = OprfSecretKey::generate();
        let k2 = OprfSecretKey::from_bytes(&*k.to_bytes()).unwrap();
        let x = b"phone:+15551234567";
        assert_eq!(
            evaluate_full(&k, x).unwrap(),
            evaluate_full(&k2, x).unwrap()
        );

        assert_eq!(
            OprfSecretKey::from_bytes(&[0u8; 32]).unwrap_err(),
            OprfError::InvalidKey
        );
        assert_eq!(
            OprfSecretKey::from_bytes(&[0xffu8; 32]).unwrap_err(),
            OprfError::InvalidKey
        );
        assert_eq!(
            OprfSecretKey::from_bytes(&[1u8; 31]).unwrap_err(),
            OprfError::InvalidKey
        );
        assert_eq!(
            OprfSecretKey::from_bytes(&[]).unwrap_err(),
            OprfError::InvalidKey
        );
    }

    #[test]
    fn debug_prints_no_secrets() {
        let k = OprfSecretKey::generate();
        let hex_key = hex::encode(*k.to_bytes());
        let b64_key = URL_SAFE_NO_PAD.encode(*k.to_bytes());
        let dbg = format!("{k:?}");
        assert!(!dbg.contains(&hex_key) && !dbg.contains(&b64_key));
        assert_eq!(dbg, "OprfSecretKey(<redacted>)");
        let (b, _) = blind(b"x").unwrap();
        assert_eq!(format!("{b:?}"), "Blinding(<redacted>)");
        let p = evaluate_full(&k, b"x").unwrap();
        assert!(!format!("{p:?}").contains(&hex::encode(p.pseudonym32())));
    }

    #[test]
    fn sealed_key_is_bound_to_purpose_and_version() {
        let master = MasterKey::generate();
        let k = OprfSecretKey::generate();
        let sealed = k.seal(&master, OprfPurpose::Coordination, KeyVersion(3));
        let opened =
            OprfSecretKey::open(&master, &sealed, OprfPurpose::Coordination, KeyVersion(3))
                .unwrap();
        assert_eq!(*opened.to_bytes(), *k.to_bytes());
        assert!(matches!(
            OprfSecretKey::open(&master, &sealed, OprfPurpose::Contacts, KeyVersion(3)),
            Err(OprfError::Sealed(_))
        ));
        assert!(matches!(
            OprfSecretKey::open(&master, &sealed, OprfPurpose::Coordination, KeyVersion(4)),
            Err(OprfError::Sealed(_))
        ));
        assert!(matches!(
            OprfSecretKey::open(
                &MasterKey::generate(),
                &sealed,
                OprfPurpose::Coordination,
                KeyVersion(3)
            ),
            Err(OprfError::Sealed(_))
        ));
    }

    #[test]
    fn element_bytes_travel_as_unpadded_url_safe_base64() {
        let (_, e) = blind(b"email:a@example.com").unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json.len(), 43 + 2);
        assert!(!json.contains('=') && !json.contains('+') && !json.contains('/'));
        assert_eq!(
            serde_json::from_str::<BlindedElementBytes>(&json).unwrap(),
            e
        );
        assert_eq!(BlindedElementBytes::from_base64(&e.to_base64()), Some(e));
        // 31 and 33 bytes, padding, and the standard alphabet are refused.
        for bad in [
            URL_SAFE_NO_PAD.encode([1u8; 31]),
            URL_SAFE_NO_PAD.encode([1u8; 33]),
            format!("{}=", e.to_base64()),
            base64::engine::general_purpose::STANDARD.encode([0xfbu8; 32]),
        ] {
            assert!(serde_json::from_str::<EvaluatedElementBytes>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn batch_limits() {
        let k = OprfSecretKey::generate();
        assert_eq!(evaluate_batch(&k, &[]), Err(OprfError::EmptyBatch));
        let (_, e) = blind(b"x").unwrap();
        let too_many = vec![e; MAX_BATCH + 1];
        assert_eq!(
            evaluate_batch(&k, &too_many),
            Err(OprfError::BatchTooLarge { max: MAX_BATCH })
        );
    }

    #[test]
    fn empty_input_is_refused_everywhere() {
        let k = OprfSecretKey::generate();
        assert!(matches!(
            blind(b""),
            Err(OprfError::InvalidInput { index: 0 })
        ));
        assert!(matches!(
            blind_many(&[b"a".as_slice(), b"".as_slice()]),
            Err(OprfError::InvalidInput { index: 1 })
        ));
        assert_eq!(
            evaluate_full(&k, b""),
            Err(OprfError::InvalidInput { index: 0 })
        );
    }

    #[test]
    fn phone_and_email_inputs_are_domain_separated() {
        let p = PhoneNumber::parse("+44 20 7946 0018", None).unwrap();
        let e = Email::parse(" Someone@Example.COM ").unwrap();
        assert_eq!(input_for_phone(&p), b"phone:+442079460018".to_vec());
        assert_eq!(input_for_email(&e), b"email:someone@example.com".to_vec());
    }

    #[test]
    fn finalize_many_checks_lengths_and_elements() {
        let k = OprfSecretKey::generate();
        let inputs = [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()];
        let (bs, es) = blind_many(&inputs).unwrap();
        let mut evaluated = evaluate_batch(&k, &es).unwrap();
        evaluated[1] = EvaluatedElementBytes([0u8; 32]);
        assert_eq!(
            finalize_many(bs, &inputs, &evaluated),
            Err(OprfError::InvalidElement { index: 1 })
        );
        let (bs, _) = blind_many(&inputs).unwrap();
        assert_eq!(
            finalize_many(bs, &inputs[..2], &evaluated),
            Err(OprfError::LengthMismatch {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn different_keys_and_inputs_give_different_pseudonyms() {
        let (k1, k2) = (OprfSecretKey::generate(), OprfSecretKey::generate());
        let a = evaluate_full(&k1, b"phone:+15550000001").unwrap();
        assert_ne!(a, evaluate_full(&k2, b"phone:+15550000001").unwrap());
        assert_ne!(a, evaluate_full(&k1, b"phone:+15550000002").unwrap());
        assert_eq!(a.pseudonym32(), a.as_output()[..32]);
    }

    #[test]
    fn measure_reports_a_positive_duration() {
        let ns = measure_blind_evaluate_ns(3);
        assert!(ns.is_finite() && ns > 0.0);
        assert!(measure_blind_evaluate_ns(0) > 0.0);
    }

    #[test]
    fn validate_batch_limits_and_first_bad_index() {
        assert_eq!(validate_batch(&[]).unwrap_err(), OprfError::EmptyBatch);
        let (_, e) = blind(b"x").unwrap();
        assert_eq!(
            validate_batch(&vec![e; MAX_BATCH + 1]).unwrap_err(),
            OprfError::BatchTooLarge { max: MAX_BATCH }
        );
        assert_eq!(
            validate_batch(&vec![e; MAX_BATCH]).unwrap().len(),
            MAX_BATCH
        );
        let identity = BlindedElementBytes([0; 32]);
        let not_an_encoding = BlindedElementBytes([0xff; 32]);
        let mut high_bit = e;
        high_bit.0[31] ^= 0x80;
        for bad in [identity, not_an_encoding, high_bit] {
            for (len, at) in [(1, 0), (5, 0), (5, 3), (5, 4)] {
                let mut batch = vec![e; len];
                batch[at] = bad;
                let want = OprfError::InvalidElement { index: at };
                assert_eq!(validate_batch(&batch).unwrap_err(), want);
                assert_eq!(
                    evaluate_batch(&OprfSecretKey::generate(), &batch),
                    Err(want)
                );
            }
        }
        // The first bad index wins.
        assert_eq!(
            validate_batch(&[e, not_an_encoding, e, identity]).unwrap_err(),
            OprfError::InvalidElement { index: 1 }
        );
    }

    #[test]
    fn concat_keeps_order_and_limits() {
        let k = OprfSecretKey::generate();
        let (_, es) = blind_many(&[b"a", b"b", b"c"]).unwrap();
        let parts = [&es[..1], &es[1..]].map(|p| validate_batch(p).unwrap());
        let joined = ValidatedBatch::concat(parts).unwrap();
        assert_eq!(joined.len(), 3);
        assert!(!joined.is_empty());
        assert_eq!(format!("{joined:?}"), "ValidatedBatch { len: 3 }");
        assert_eq!(
            evaluate_validated(&k, &joined, 0..3),
            evaluate_batch(&k, &es).unwrap()
        );
        assert_eq!(
            ValidatedBatch::concat([]).unwrap_err(),
            OprfError::EmptyBatch
        );
        let half = MAX_BATCH / 2 + 1;
        let big = || validate_batch(&vec![es[0]; half]).unwrap();
        assert_eq!(
            ValidatedBatch::concat([big(), big()]).unwrap_err(),
            OprfError::BatchTooLarge { max: MAX_BATCH }
        );
    }

    #[test]
    #[should_panic]
    fn evaluate_validated_panics_out_of_range() {
        let (_, e) = blind(b"x").unwrap();
        let batch = validate_batch(&[e]).unwrap();
        evaluate_validated(&OprfSecretKey::generate(), &batch, 0..2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// The oblivious path and the trusted in-process path agree.
        #[test]
        fn blinded_round_trip_equals_direct_evaluation(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..80), 1..4)
        ) {
            let k = OprfSecretKey::generate();
            let (bs, es) = blind_many(&inputs).unwrap();
            let evaluated = evaluate_batch(&k, &es).unwrap();
            let via_client = finalize_many(bs, &inputs, &evaluated).unwrap();
            for (input, out) in inputs.iter().zip(&via_client) {
                prop_assert_eq!(out, &evaluate_full(&k, input).unwrap());
            }
            let (b, e) = blind(&inputs[0]).unwrap();
            let single = finalize(b, &inputs[0], &evaluate_batch(&k, &[e]).unwrap()[0]).unwrap();
            prop_assert_eq!(single, evaluate_full(&k, &inputs[0]).unwrap());
        }

        /// Validating once (whole, or in chunks joined by `concat`) and
        /// evaluating in chunks gives exactly `evaluate_batch`'s answer, and
        /// finalizes to `evaluate_full`.
        #[test]
        fn validated_path_equals_evaluate_batch_and_evaluate_full(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..80), 1..24),
            split in any::<prop::sample::Index>(),
            chunk in 1usize..8,
        ) {
            let k = OprfSecretKey::generate();
            let (bs, es) = blind_many(&inputs).unwrap();
            let expected = evaluate_batch(&k, &es).unwrap();

            let whole = validate_batch(&es).unwrap();
            prop_assert_eq!(whole.len(), es.len());
            prop_assert_eq!(&evaluate_validated(&k, &whole, 0..whole.len()), &expected);

            let at = split.index(es.len() + 1);
            let parts: Vec<_> = [&es[..at], &es[at..]]
                .into_iter()
                .filter(|p| !p.is_empty())
                .map(|p| validate_batch(p).unwrap())
                .collect();
            let joined = ValidatedBatch::concat(parts).unwrap();
            let mut chunked = Vec::new();
            for start in (0..joined.len()).step_by(chunk) {
                let end = (start + chunk).min(joined.len());
                chunked.extend(evaluate_validated(&k, &joined, start..end));
            }
            prop_assert_eq!(&chunked, &expected);

            let via_client = finalize_many(bs, &inputs, &chunked).unwrap();
            for (input, out) in inputs.iter().zip(&via_client) {
                prop_assert_eq!(out, &evaluate_full(&k, input).unwrap());
            }
        }

        /// A single bad element anywhere is named by its index, by both
        /// paths.
        #[test]
        fn invalid_element_is_named_by_index(
            len in 1usize..24,
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![
                Just([0u8; 32]),
                Just([0xffu8; 32]),
                any::<[u8; 32]>().prop_filter("invalid", |b| BlindedElement::<Suite>::deserialize(b).is_err()),
            ],
        ) {
            let (_, e) = blind(b"phone:+15551234567").unwrap();
            let mut batch = vec![e; len];
            let at = at.index(len);
            batch[at] = BlindedElementBytes(bad);
            let want = OprfError::InvalidElement { index: at };
            prop_assert_eq!(validate_batch(&batch).unwrap_err(), want.clone());
            prop_assert_eq!(evaluate_batch(&OprfSecretKey::generate(), &batch), Err(want));
        }
    }
}
