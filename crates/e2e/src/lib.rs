//! # accord-e2e
//!
//! The end-to-end messaging core that Accord's clients and its messenger
//! server share, with no I/O: no async runtime, no database, no HTTP. The
//! server uses only the wire half (strict decoders, signature checks on key
//! upload, size caps); clients use the [`E2eMachine`], a state machine in the
//! manner of matrix-rust-sdk's `OlmMachine` that takes a peer's keys or a
//! delivered envelope in and gives an envelope, keys to upload or a
//! plaintext out. All cryptography is vodozemac's Olm (X3DH-style session
//! set-up, double ratchet, ed25519 signatures) and XChaCha20-Poly1305 for
//! state at rest; nothing is hand-rolled. Plaintext and private keys exist
//! only inside the machine: what leaves it is an Olm ciphertext or a sealed
//! pickle, and no `Debug` or error message prints a key or a message body.
//!
//! - [`wire`]: the JSON wire types ([`DeviceKeys`], [`SignedOneTimeKey`],
//!   [`Envelope`], [`SendRequest`], [`ClientFrame`], [`ServerFrame`]), their
//!   canonical signed byte strings and `verify()` methods, and the
//!   `decode_*` functions that refuse bad bytes with a [`WireError`] (stable
//!   `code()`), never a panic.
//! - [`payload`]: [`Plaintext`], what is inside a ciphertext (a text or a
//!   read receipt), padded so the server cannot tell the two apart.
//! - [`machine`]: [`E2eMachine`], the account, sessions per peer device,
//!   key generation and signing, encrypt and decrypt, pickling.
//! - [`pickle`]: the sealed format of a pickled machine, and [`PickleError`].
//!
//! **Architecture Invariant:** this crate depends on no runtime, store or
//! transport; it cannot log, and it never holds plaintext outside a buffer
//! that is wiped on drop or handed to the caller.

pub mod machine;
pub mod payload;
pub mod pickle;
pub mod wire;

/// The vodozemac this crate is built on, so callers name the same key types.
pub use vodozemac;
pub use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

pub use machine::{E2eError, E2eMachine, PeerDevice, MAX_SESSIONS_PER_DEVICE};
pub use payload::{PayloadError, Plaintext, PlaintextKind};
pub use pickle::PickleError;
pub use wire::{
    decode_client_frame, decode_device_keys, decode_envelope, decode_one_time_key,
    decode_one_time_keys, decode_send_request, decode_server_frame, encode, BusinessMeta,
    Ciphertext, ClientFrame, ClientMessageId, DeliveredEnvelope, DeviceKeys, Envelope, EnvelopeId,
    OlmMessageType, OneTimeKeyId, SendRequest, ServerFrame, SignedOneTimeKey, TemplateRef,
    WireError, WireType, MAX_ACK_IDS, MAX_ENVELOPES, MAX_ENVELOPE_BYTES,
};

/// Length of `value`'s JSON, counted without allocating, so that a buffer
/// holding secrets can be sized once and never reallocate.
pub(crate) fn json_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // A failing serialisation is caught by the real write that follows.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}
