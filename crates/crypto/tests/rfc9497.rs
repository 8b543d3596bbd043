//! RFC 9497 conformance of `accord_crypto::oprf`, run through the wrapper.
//!
//! Vectors: RFC 9497 Appendix A.1.1 ("ristretto255-SHA512", OPRF mode),
//! test vectors 1 and 2, <https://www.rfc-editor.org/rfc/rfc9497#appendix-A>,
//! as also reproduced in voprf 0.5.0 `src/tests/cfrg_vectors.rs`.
//!
//! The deterministic blind: `voprf`'s `deterministic_blind_unchecked` sits
//! behind its `danger` feature, which this crate does not enable. Instead
//! the published blind goes through the ordinary blinding path,
//! [`oprf::blind_with_rng`], fed by an RNG that replays it. ristretto255
//! samples a scalar from 64 RNG bytes reduced mod l (curve25519-dalek
//! `Scalar::random`), so `blind || 0^32` yields exactly `blind` (which is
//! already < l). Should that sampling ever change, the BlindedElement
//! checks below fail loudly rather than pass vacuously.

use accord_crypto::oprf::{
    self, BlindedElementBytes, EvaluatedElementBytes, OprfError, OprfSecretKey,
};
use rand::{CryptoRng, RngCore};

const SEED: &str = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
const KEY_INFO: &str = "74657374206b6579";
const SK_SM: &str = "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e";

struct Vector {
    input: &'static str,
    blind: &'static str,
    blinded_element: &'static str,
    evaluation_element: &'static str,
    output: &'static str,
}

const VECTORS: [Vector; 2] = [
    // A.1.1.1. Test Vector 1, Batch Size 1
    Vector {
        input: "00",
        blind: "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        blinded_element: "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        evaluation_element: "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        output: "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3\
                 ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    },
    // A.1.1.2. Test Vector 2, Batch Size 1
    Vector {
        input: "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        blind: "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        blinded_element: "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        evaluation_element: "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        output: "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4\
                 f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    },
];

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).expect("hex literal")
}

fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().expect("32-byte hex literal")
}

/// Replays a fixed scalar as the "random" 64 bytes a scalar is sampled from.
struct ReplayBlind {
    bytes: Vec<u8>,
}

impl ReplayBlind {
    fn new(blind: [u8; 32]) -> Self {
        let mut bytes = blind.to_vec();
        bytes.extend_from_slice(&[0u8; 32]);
        ReplayBlind { bytes }
    }
}

impl RngCore for ReplayBlind {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("only fill_bytes is used")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("only fill_bytes is used")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(dest.len() <= self.bytes.len(), "replay RNG exhausted");
        let rest = self.bytes.split_off(dest.len());
        dest.copy_from_slice(&self.bytes);
        self.bytes = rest;
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

// Test-only: deterministic by design, to reproduce the published blind.
impl CryptoRng for ReplayBlind {}

fn rfc_key() -> OprfSecretKey {
    OprfSecretKey::derive_from_seed(&h(SEED), &h(KEY_INFO)).expect("DeriveKeyPair")
}

#[test]
fn derive_key_pair_matches_sk_sm() {
    assert_eq!(*rfc_key().to_bytes(), h32(SK_SM));
    // And the published skSm loads directly.
    let direct = OprfSecretKey::from_bytes(&h(SK_SM)).unwrap();
    assert_eq!(*direct.to_bytes(), h32(SK_SM));
}

#[test]
fn oprf_ristretto255_sha512_vectors() {
    let key = rfc_key();
    for (i, v) in VECTORS.iter().enumerate() {
        let input = h(v.input);
        let (blinding, blinded) =
            oprf::blind_with_rng(&input, &mut ReplayBlind::new(h32(v.blind))).unwrap();
        assert_eq!(
            blinded,
            BlindedElementBytes(h32(v.blinded_element)),
            "vector {i}: BlindedElement"
        );

        let evaluated = oprf::evaluate_batch(&key, &[blinded]).unwrap();
        assert_eq!(
            evaluated,
            vec![EvaluatedElementBytes(h32(v.evaluation_element))],
            "vector {i}: EvaluationElement"
        );

        let out = oprf::finalize(blinding, &input, &evaluated[0]).unwrap();
        assert_eq!(out.as_output().to_vec(), h(v.output), "vector {i}: Output");
        assert_eq!(out.pseudonym32().to_vec(), h(v.output)[..32].to_vec());

        // The server's direct evaluation gives the same Output.
        assert_eq!(
            oprf::evaluate_full(&key, &input).unwrap(),
            out,
            "vector {i}: Evaluate"
        );
    }
}

#[test]
fn both_vectors_as_one_batch() {
    let key = rfc_key();
    let blinded: Vec<_> = VECTORS
        .iter()
        .map(|v| BlindedElementBytes(h32(v.blinded_element)))
        .collect();
    let expected: Vec<_> = VECTORS
        .iter()
        .map(|v| EvaluatedElementBytes(h32(v.evaluation_element)))
        .collect();
    assert_eq!(oprf::evaluate_batch(&key, &blinded).unwrap(), expected);

    // Validated once, evaluated whole and element by element.
    let batch = oprf::validate_batch(&blinded).unwrap();
    assert_eq!(oprf::evaluate_validated(&key, &batch, 0..2), expected);
    let one_by_one: Vec<_> = (0..2)
        .flat_map(|i| oprf::evaluate_validated(&key, &batch, i..i + 1))
        .collect();
    assert_eq!(one_by_one, expected);
}

#[test]
fn invalid_elements_are_refused_by_index_and_nothing_is_evaluated() {
    // `evaluate_batch` returns a `Result`, so a refused batch yields no
    // evaluations at all; these checks pin which index is named.
    let key = rfc_key();
    let good = BlindedElementBytes(h32(VECTORS[0].blinded_element));
    let not_an_encoding = BlindedElementBytes([0xff; 32]);
    let identity = BlindedElementBytes([0x00; 32]);

    assert_eq!(
        oprf::evaluate_batch(&key, &[good, good, not_an_encoding, good]),
        Err(OprfError::InvalidElement { index: 2 })
    );
    assert_eq!(
        oprf::evaluate_batch(&key, &[good, identity]),
        Err(OprfError::InvalidElement { index: 1 })
    );
    assert_eq!(
        oprf::evaluate_batch(&key, &[identity]),
        Err(OprfError::InvalidElement { index: 0 })
    );
    // Validation alone names the same indices.
    assert_eq!(
        oprf::validate_batch(&[good, good, not_an_encoding, good]).unwrap_err(),
        OprfError::InvalidElement { index: 2 }
    );
    assert_eq!(
        oprf::validate_batch(&[good, identity]).unwrap_err(),
        OprfError::InvalidElement { index: 1 }
    );
    // The first bad index is reported even when a later one is also bad.
    assert_eq!(
        oprf::evaluate_batch(&key, &[good, not_an_encoding, identity]),
        Err(OprfError::InvalidElement { index: 1 })
    );
    // A non-canonical encoding (the field prime p = 2^255 - 19) is refused.
    let mut p = [0xff; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    assert_eq!(
        oprf::evaluate_batch(&key, &[BlindedElementBytes(p)]),
        Err(OprfError::InvalidElement { index: 0 })
    );
    // Clients refuse a bad evaluated element too.
    let (b, _) = oprf::blind(b"x").unwrap();
    assert_eq!(
        oprf::finalize(b, b"x", &EvaluatedElementBytes([0x00; 32])),
        Err(OprfError::InvalidElement { index: 0 })
    );
    // The error text carries nothing but the index.
    assert_eq!(
        OprfError::InvalidElement { index: 2 }.to_string(),
        "element 2 is not a valid non-identity ristretto255 element"
    );
}
