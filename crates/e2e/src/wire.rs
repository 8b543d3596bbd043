//! Wire types shared by the messenger server and its clients.
//!
//! Everything here is JSON with strict decoding: structs are JSON objects
//! only (never serde's array form), unknown fields are refused,
//! every string, list and body has a cap, and every key, signature and
//! ciphertext is parsed into a typed value on the way in, so a value of one
//! of these types is well-formed by construction. The `decode_*` functions
//! check the body size before parsing and answer bad input with a
//! [`WireError`], never a panic.
//!
//! Signatures are over explicit canonical byte strings (see
//! [`DeviceKeys::canonical_bytes`] and [`SignedOneTimeKey::canonical_bytes`]),
//! never over re-serialised JSON.

use std::collections::BTreeSet;
use std::fmt;

use accord_domain::{AccountId, DeviceId, Timestamp};
use serde::de::{self, DeserializeOwned, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use vodozemac::{base64_decode, base64_encode};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};

/// Largest Olm ciphertext, in bytes (decoded, not base64), one envelope may
/// carry.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;
/// Most envelopes (recipient devices) one send request may carry.
pub const MAX_ENVELOPES: usize = 100;
/// Most one-time keys one upload may carry.
pub const MAX_ONE_TIME_KEYS_PER_UPLOAD: usize = 100;
/// Most envelope ids one ack frame may carry.
pub const MAX_ACK_IDS: usize = 1_000;
/// Longest client message id, in bytes.
pub const MAX_CLIENT_MESSAGE_ID_LEN: usize = 64;
/// Longest one-time key id, in bytes (vodozemac's ids are 11 characters).
pub const MAX_KEY_ID_LEN: usize = 32;
/// Longest error code in an error frame, in bytes.
pub const MAX_ERROR_CODE_LEN: usize = 64;
/// Longest message in an error frame, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 512;

/// Length of the unpadded base64 text of `n` bytes.
const fn base64_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

/// Room for the JSON around one envelope's base64 ciphertext.
const ENVELOPE_OVERHEAD: usize = 512;
/// Largest JSON body of one [`Envelope`].
pub const MAX_ENVELOPE_JSON_BYTES: usize = base64_len(MAX_ENVELOPE_BYTES) + ENVELOPE_OVERHEAD;
/// Largest JSON body of one [`SendRequest`] (every envelope at its cap).
pub const MAX_SEND_REQUEST_BYTES: usize = MAX_ENVELOPES * MAX_ENVELOPE_JSON_BYTES + 1_024;
/// Largest JSON body of [`DeviceKeys`] or of one [`SignedOneTimeKey`].
pub const MAX_KEY_JSON_BYTES: usize = 4 * 1_024;
/// Largest JSON body of a list of one-time keys.
pub const MAX_ONE_TIME_KEYS_JSON_BYTES: usize = MAX_ONE_TIME_KEYS_PER_UPLOAD * 512 + 1_024;
/// Largest [`ClientFrame`] text.
pub const MAX_CLIENT_FRAME_BYTES: usize = MAX_ACK_IDS * 24 + 1_024;
/// Largest [`ServerFrame`] text.
pub const MAX_SERVER_FRAME_BYTES: usize = MAX_ENVELOPE_JSON_BYTES + 1_024;

/// The serde message of an oversized ciphertext, recognised by
/// [`WireError::from_json`] so that it keeps its own variant and code.
const CIPHERTEXT_TOO_LARGE: &str = "ciphertext_too_large:";

/// Longest detail kept from a JSON parser's message.
const MAX_DETAIL_LEN: usize = 200;

/// Why bytes were refused. Messages never carry key material or plaintext
/// (only public keys and ciphertext ever pass through here), and parser
/// details are cut short.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("the body is empty")]
    Empty,
    #[error("the body is {actual} bytes, the limit is {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("invalid field: {0}")]
    Invalid(String),
    #[error("`{field}` must not be empty")]
    EmptyList { field: &'static str },
    #[error("`{field}` has {actual} items, the limit is {limit}")]
    TooMany {
        field: &'static str,
        limit: usize,
        actual: usize,
    },
    #[error("a ciphertext is larger than the limit of {limit} bytes")]
    CiphertextTooLarge { limit: usize },
    #[error("two envelopes are addressed to the same device")]
    DuplicateRecipient,
    #[error("`{field}` has a repeated item")]
    Duplicate { field: &'static str },
    #[error("the signature does not verify")]
    BadSignature,
}

impl WireError {
    /// A stable, machine-readable code, for HTTP error bodies and error
    /// frames.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::Empty => "empty_body",
            // The codes every service answers for a body over its limit and
            // for JSON that does not parse (`accord-http`).
            WireError::TooLarge { .. } => "payload_too_large",
            WireError::CiphertextTooLarge { .. } => "ciphertext_too_large",
            WireError::Malformed(_) => "invalid_json",
            WireError::Invalid(_) => "invalid_field",
            WireError::EmptyList { .. } => "empty_list",
            WireError::TooMany { .. } => "too_many_items",
            WireError::DuplicateRecipient => "duplicate_recipient",
            WireError::Duplicate { .. } => "duplicate_item",
            WireError::BadSignature => "bad_signature",
        }
    }

    fn from_json(err: serde_json::Error) -> Self {
        use serde_json::error::Category;
        let detail = sanitize(&err.to_string());
        if detail.starts_with(CIPHERTEXT_TOO_LARGE) {
            return WireError::CiphertextTooLarge {
                limit: MAX_ENVELOPE_BYTES,
            };
        }
        match err.classify() {
            Category::Data => WireError::Invalid(detail),
            Category::Syntax | Category::Eof | Category::Io => WireError::Malformed(detail),
        }
    }
}

/// Keeps a parser message printable and short.
fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_LEN)
        .collect();
    if s.chars().count() > MAX_DETAIL_LEN {
        out.push('…');
    }
    out
}

/// Size check, then strict JSON parse.
fn parse<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, WireError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(WireError::Empty);
    }
    if bytes.len() > limit {
        return Err(WireError::TooLarge {
            limit,
            actual: bytes.len(),
        });
    }
    serde_json::from_slice(bytes).map_err(WireError::from_json)
}

/// Deserialises `T` from a JSON object only. serde's derive also accepts a
/// struct as an array of its fields (and an internally tagged enum as an
/// array starting with its tag); strict decoding refuses that second form.
pub(crate) struct ObjectOnly<T>(pub(crate) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

/// Declares a wire struct: the struct with its derives, plus a
/// `Deserialize` that takes a JSON object only and refuses unknown fields
/// (through a private mirror of the fields).
macro_rules! object_struct {
    (
        $(#[$m:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fm:meta])* $fvis:vis $f:ident : $t:ty ),* $(,)?
        }
    ) => {
        $(#[$m])*
        $vis struct $name { $( $(#[$fm])* $fvis $f: $t ),* }

        const _: () = {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Fields { $( $(#[$fm])* $f: $t ),* }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    let ObjectOnly(Fields { $($f),* }) = ObjectOnly::deserialize(d)?;
                    Ok($name { $($f),* })
                }
            }
        };
    };
}

// ---------------------------------------------------------------------------
// Leaf types
// ---------------------------------------------------------------------------

/// Serde for vodozemac keys and signatures as unpadded base64 strings.
mod b64 {
    use super::*;

    pub mod curve25519 {
        use super::*;
        pub fn serialize<S: Serializer>(k: &Curve25519PublicKey, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&k.to_base64())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Curve25519PublicKey, D::Error> {
            let s = String::deserialize(d)?;
            Curve25519PublicKey::from_base64(&s)
                .map_err(|_| de::Error::custom("not a base64 curve25519 public key"))
        }
    }

    pub mod ed25519 {
        use super::*;
        pub fn serialize<S: Serializer>(k: &Ed25519PublicKey, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&k.to_base64())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ed25519PublicKey, D::Error> {
            let s = String::deserialize(d)?;
            Ed25519PublicKey::from_base64(&s)
                .map_err(|_| de::Error::custom("not a base64 ed25519 public key"))
        }
    }

    pub mod signature {
        use super::*;
        pub fn serialize<S: Serializer>(k: &Ed25519Signature, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_str(&k.to_base64())
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ed25519Signature, D::Error> {
            let s = String::deserialize(d)?;
            Ed25519Signature::from_base64(&s)
                .map_err(|_| de::Error::custom("not a base64 ed25519 signature"))
        }
    }
}

/// Implements `Serialize` as a string and `Deserialize` through `parse`.
macro_rules! string_newtype_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                $ty::parse(&s).map_err(de::Error::custom)
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The sender's id for one logical message, chosen by the client; sending is
/// idempotent per (sender device, client message id). 1 to
/// [`MAX_CLIENT_MESSAGE_ID_LEN`] bytes of `[A-Za-z0-9._:-]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub fn parse(s: &str) -> Result<Self, WireError> {
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
        if s.is_empty() || s.len() > MAX_CLIENT_MESSAGE_ID_LEN || !s.bytes().all(ok_char) {
            return Err(WireError::Invalid(format!(
                "client_message_id must be 1 to {MAX_CLIENT_MESSAGE_ID_LEN} characters of [A-Za-z0-9._:-]"
            )));
        }
        Ok(ClientMessageId(s.to_owned()))
    }

    /// A fresh random (UUIDv4) id.
    pub fn random() -> Self {
        ClientMessageId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(ClientMessageId);

/// The id of a one-time or fallback key, as vodozemac gives it (base64 of a
/// counter). 1 to [`MAX_KEY_ID_LEN`] bytes of the base64 alphabet.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OneTimeKeyId(String);

impl OneTimeKeyId {
    pub fn parse(s: &str) -> Result<Self, WireError> {
        let ok_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/');
        if s.is_empty() || s.len() > MAX_KEY_ID_LEN || !s.bytes().all(ok_char) {
            return Err(WireError::Invalid(format!(
                "key_id must be 1 to {MAX_KEY_ID_LEN} base64 characters"
            )));
        }
        Ok(OneTimeKeyId(s.to_owned()))
    }

    /// vodozemac's id: base64 of a `u64`, always 11 valid characters.
    pub(crate) fn from_vodozemac(id: vodozemac::KeyId) -> Self {
        OneTimeKeyId(id.to_base64())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
string_newtype_serde!(OneTimeKeyId);

/// Server-assigned id of an envelope in a device's mailbox; increasing in
/// delivery order within one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvelopeId(pub u64);

/// Olm message type, `0` (pre-key) or `1` (normal) on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OlmMessageType {
    /// Carries what the recipient needs to create the session.
    PreKey,
    /// A message of an established session.
    Normal,
}

impl OlmMessageType {
    pub fn as_u8(self) -> u8 {
        match self {
            OlmMessageType::PreKey => 0,
            OlmMessageType::Normal => 1,
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(OlmMessageType::PreKey),
            1 => Some(OlmMessageType::Normal),
            _ => None,
        }
    }
}

impl Serialize for OlmMessageType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for OlmMessageType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u8::deserialize(d)?;
        OlmMessageType::from_u8(v)
            .ok_or_else(|| de::Error::custom("message_type must be 0 (pre-key) or 1 (normal)"))
    }
}

/// An Olm ciphertext: 1 to [`MAX_ENVELOPE_BYTES`] bytes, base64 (unpadded)
/// on the wire. The server stores and relays it without looking inside.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Ciphertext(Vec<u8>);

impl Ciphertext {
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, WireError> {
        if bytes.is_empty() {
            return Err(WireError::Invalid("ciphertext must not be empty".into()));
        }
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(WireError::CiphertextTooLarge {
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(Ciphertext(bytes))
    }

    pub fn from_base64(s: &str) -> Result<Self, WireError> {
        if s.len() > base64_len(MAX_ENVELOPE_BYTES) + 2 {
            return Err(WireError::CiphertextTooLarge {
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let bytes =
            base64_decode(s).map_err(|_| WireError::Invalid("ciphertext is not base64".into()))?;
        Ciphertext::from_bytes(bytes)
    }

    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a ciphertext has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Ciphertext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ciphertext({} bytes)", self.0.len())
    }
}

impl Serialize for Ciphertext {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Ciphertext {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ciphertext::from_base64(&s).map_err(|e| match e {
            WireError::CiphertextTooLarge { limit } => de::Error::custom(format_args!(
                "{CIPHERTEXT_TOO_LARGE} the limit is {limit} bytes"
            )),
            other => de::Error::custom(other),
        })
    }
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

const DEVICE_KEYS_CONTEXT: &[u8] = b"accord-e2e:device-keys:v1\0";
const ONE_TIME_KEY_CONTEXT: &[u8] = b"accord-e2e:one-time-key:v1\0";

object_struct! {
    /// A device's identity keys, self-signed by its ed25519 key.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct DeviceKeys {
        pub device_id: DeviceId,
        #[serde(with = "b64::curve25519")]
        pub curve25519: Curve25519PublicKey,
        #[serde(with = "b64::ed25519")]
        pub ed25519: Ed25519PublicKey,
        #[serde(with = "b64::signature")]
        pub signature: Ed25519Signature,
    }
}

impl DeviceKeys {
    /// The bytes the device signs, fixed-length and domain-separated:
    ///
    /// ```text
    /// "accord-e2e:device-keys:v1" 0x00 | device_id (16 bytes, UUID) | curve25519 (32 bytes)
    /// ```
    pub fn canonical_bytes(device_id: DeviceId, curve25519: &Curve25519PublicKey) -> Vec<u8> {
        let mut out = Vec::with_capacity(DEVICE_KEYS_CONTEXT.len() + 16 + 32);
        out.extend_from_slice(DEVICE_KEYS_CONTEXT);
        out.extend_from_slice(device_id.0.as_bytes());
        out.extend_from_slice(curve25519.as_bytes());
        out
    }

    /// Checks the self-signature with the ed25519 key it carries.
    pub fn verify(&self) -> Result<(), WireError> {
        let msg = Self::canonical_bytes(self.device_id, &self.curve25519);
        self.ed25519
            .verify(&msg, &self.signature)
            .map_err(|_| WireError::BadSignature)
    }
}

object_struct! {
    /// A one-time (or fallback) curve25519 key, signed by its device's ed25519
    /// key.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct SignedOneTimeKey {
        pub key_id: OneTimeKeyId,
        #[serde(with = "b64::curve25519")]
        pub key: Curve25519PublicKey,
        #[serde(with = "b64::signature")]
        pub signature: Ed25519Signature,
        pub fallback: bool,
    }
}

impl SignedOneTimeKey {
    /// The bytes the device signs, domain-separated and length-prefixed:
    ///
    /// ```text
    /// "accord-e2e:one-time-key:v1" 0x00 | device_id (16 bytes, UUID)
    ///   | fallback (0x00 or 0x01) | len(key_id) (1 byte) | key_id (ASCII) | key (32 bytes)
    /// ```
    pub fn canonical_bytes(
        device_id: DeviceId,
        key_id: &OneTimeKeyId,
        key: &Curve25519PublicKey,
        fallback: bool,
    ) -> Vec<u8> {
        let id = key_id.as_str().as_bytes();
        let mut out = Vec::with_capacity(ONE_TIME_KEY_CONTEXT.len() + 16 + 2 + id.len() + 32);
        out.extend_from_slice(ONE_TIME_KEY_CONTEXT);
        out.extend_from_slice(device_id.0.as_bytes());
        out.push(u8::from(fallback));
        // OneTimeKeyId::parse caps the length at MAX_KEY_ID_LEN (< 256).
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(key.as_bytes());
        out
    }

    /// Checks the signature of `device_id`'s ed25519 key over this key.
    pub fn verify(
        &self,
        device_id: DeviceId,
        device_ed25519: &Ed25519PublicKey,
    ) -> Result<(), WireError> {
        let msg = Self::canonical_bytes(device_id, &self.key_id, &self.key, self.fallback);
        device_ed25519
            .verify(&msg, &self.signature)
            .map_err(|_| WireError::BadSignature)
    }
}

// ---------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------

object_struct! {
    /// One Olm message for one recipient device.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct Envelope {
        pub recipient_device: DeviceId,
        pub message_type: OlmMessageType,
        pub ciphertext: Ciphertext,
    }
}

object_struct! {
    /// What the messenger knows of a business message, and the
    /// recipient's client is told: its category and, unless it is a
    /// free-form `service` message, its template. Never its content.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct BusinessMeta {
        pub category: accord_domain::business::Category,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub template: Option<TemplateRef>,
    }
}

object_struct! {
    /// An approved template, by name, language and version.
    #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
    pub struct TemplateRef {
        pub name: String,
        pub language: String,
        pub version: u32,
    }
}

/// One logical message: one envelope per recipient device, 1 to
/// [`MAX_ENVELOPES`], no device twice. Fields are private so that a value is
/// valid by construction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SendRequestUnchecked")]
pub struct SendRequest {
    client_message_id: ClientMessageId,
    envelopes: Vec<Envelope>,
}

object_struct! {
    struct SendRequestUnchecked {
        client_message_id: ClientMessageId,
        envelopes: Vec<Envelope>,
    }
}

impl TryFrom<SendRequestUnchecked> for SendRequest {
    type Error = WireError;
    fn try_from(raw: SendRequestUnchecked) -> Result<Self, WireError> {
        SendRequest::new(raw.client_message_id, raw.envelopes)
    }
}

impl SendRequest {
    pub fn new(
        client_message_id: ClientMessageId,
        envelopes: Vec<Envelope>,
    ) -> Result<Self, WireError> {
        check_list_len("envelopes", envelopes.len(), MAX_ENVELOPES)?;
        let mut seen = BTreeSet::new();
        if !envelopes.iter().all(|e| seen.insert(e.recipient_device)) {
            return Err(WireError::DuplicateRecipient);
        }
        Ok(SendRequest {
            client_message_id,
            envelopes,
        })
    }

    pub fn client_message_id(&self) -> &ClientMessageId {
        &self.client_message_id
    }

    pub fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    pub fn into_parts(self) -> (ClientMessageId, Vec<Envelope>) {
        (self.client_message_id, self.envelopes)
    }
}

fn check_list_len(field: &'static str, len: usize, limit: usize) -> Result<(), WireError> {
    if len == 0 {
        return Err(WireError::EmptyList { field });
    }
    if len > limit {
        return Err(WireError::TooMany {
            field,
            limit,
            actual: len,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// WebSocket frames
// ---------------------------------------------------------------------------

/// What a client sends on its WebSocket. Tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[serde(try_from = "ObjectOnly<ClientFrameUnchecked>")]
pub enum ClientFrame {
    /// These items are stored on the device: the server drops an
    /// envelope's ciphertext and marks it acked (it stays as the delivered
    /// record until expiry), and deletes an acked receipt.
    /// 1 to [`MAX_ACK_IDS`] distinct ids.
    Ack {
        envelope_ids: Vec<EnvelopeId>,
    },
    Ping,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrameUnchecked {
    Ack { envelope_ids: Vec<EnvelopeId> },
    // A struct variant, so that unknown fields are refused here too.
    Ping {},
}

impl TryFrom<ObjectOnly<ClientFrameUnchecked>> for ClientFrame {
    type Error = WireError;
    fn try_from(ObjectOnly(raw): ObjectOnly<ClientFrameUnchecked>) -> Result<Self, WireError> {
        Ok(match raw {
            ClientFrameUnchecked::Ack { envelope_ids } => {
                check_list_len("envelope_ids", envelope_ids.len(), MAX_ACK_IDS)?;
                let mut seen = BTreeSet::new();
                if !envelope_ids.iter().all(|id| seen.insert(*id)) {
                    return Err(WireError::Duplicate {
                        field: "envelope_ids",
                    });
                }
                ClientFrame::Ack { envelope_ids }
            }
            ClientFrameUnchecked::Ping {} => ClientFrame::Ping,
        })
    }
}

object_struct! {
    /// An envelope as it is delivered from a mailbox.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize)]
    pub struct DeliveredEnvelope {
        pub id: EnvelopeId,
        pub sender_account: AccountId,
        pub sender_device: DeviceId,
        pub server_ts: Timestamp,
        pub message_type: OlmMessageType,
        pub ciphertext: Ciphertext,
        /// Set on a business's message: the template (or free-form
        /// service) and category the business API admitted it as. The
        /// recipient's client renders the approved, signed template with
        /// the parameters from the plaintext, and shows a message that
        /// does not fit as unverified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub business: Option<BusinessMeta>,
    }
}

/// What the server sends on a device's WebSocket. Tagged by `"type"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[serde(try_from = "ObjectOnly<ServerFrameUnchecked>")]
pub enum ServerFrame {
    /// A queued or new envelope: `{"type":"envelope","id":..,"sender_account":..,
    /// "sender_device":..,"server_ts":..,"message_type":..,"ciphertext":..}`.
    Envelope(DeliveredEnvelope),
    /// A server delivery receipt: `recipient_device` acked the envelope of
    /// `client_message_id`. Queued durably like envelopes: the client acks
    /// it by `id`.
    Receipt {
        id: EnvelopeId,
        client_message_id: ClientMessageId,
        recipient_device: DeviceId,
        delivered_at: Timestamp,
    },
    /// Answer to a ping, sent once every ack the client sent before the
    /// ping has committed: after a pong, a new connection never gets the
    /// acked items again.
    Pong,
    /// `code` is 1 to [`MAX_ERROR_CODE_LEN`] bytes of `[a-z0-9_]`; `message`
    /// at most [`MAX_ERROR_MESSAGE_LEN`] bytes.
    Error { code: String, message: String },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ServerFrameUnchecked {
    Envelope(DeliveredEnvelope),
    Receipt {
        id: EnvelopeId,
        client_message_id: ClientMessageId,
        recipient_device: DeviceId,
        delivered_at: Timestamp,
    },
    Pong {},
    Error {
        code: String,
        message: String,
    },
}

impl TryFrom<ObjectOnly<ServerFrameUnchecked>> for ServerFrame {
    type Error = WireError;
    fn try_from(ObjectOnly(raw): ObjectOnly<ServerFrameUnchecked>) -> Result<Self, WireError> {
        use ServerFrameUnchecked as U;
        Ok(match raw {
            U::Envelope(delivered) => ServerFrame::Envelope(delivered),
            U::Receipt {
                id,
                client_message_id,
                recipient_device,
                delivered_at,
            } => ServerFrame::Receipt {
                id,
                client_message_id,
                recipient_device,
                delivered_at,
            },
            U::Pong {} => ServerFrame::Pong,
            U::Error { code, message } => ServerFrame::error(code, message)?,
        })
    }
}

impl ServerFrame {
    /// An error frame, checked like a decoded one.
    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Result<Self, WireError> {
        let (code, message) = (code.into(), message.into());
        let code_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
        if code.is_empty() || code.len() > MAX_ERROR_CODE_LEN || !code.bytes().all(code_ok) {
            return Err(WireError::Invalid(format!(
                "error code must be 1 to {MAX_ERROR_CODE_LEN} characters of [a-z0-9_]"
            )));
        }
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            return Err(WireError::Invalid(format!(
                "error message is longer than {MAX_ERROR_MESSAGE_LEN} bytes"
            )));
        }
        Ok(ServerFrame::Error { code, message })
    }

    /// The error frame for a [`WireError`] (its stable code and message).
    pub fn from_wire_error(err: &WireError) -> Self {
        let mut message = err.to_string();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut cut = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        ServerFrame::Error {
            code: err.code().to_owned(),
            message,
        }
    }
}

// ---------------------------------------------------------------------------
// Decoders
// ---------------------------------------------------------------------------

/// Decodes [`DeviceKeys`]. The signature is not checked: call
/// [`DeviceKeys::verify`].
pub fn decode_device_keys(bytes: &[u8]) -> Result<DeviceKeys, WireError> {
    parse(bytes, MAX_KEY_JSON_BYTES)
}

/// Decodes one [`SignedOneTimeKey`]. The signature is not checked.
pub fn decode_one_time_key(bytes: &[u8]) -> Result<SignedOneTimeKey, WireError> {
    parse(bytes, MAX_KEY_JSON_BYTES)
}

/// Decodes a JSON array of 1 to [`MAX_ONE_TIME_KEYS_PER_UPLOAD`]
/// [`SignedOneTimeKey`]s with distinct ids. Signatures are not checked.
pub fn decode_one_time_keys(bytes: &[u8]) -> Result<Vec<SignedOneTimeKey>, WireError> {
    let keys: Vec<SignedOneTimeKey> = parse(bytes, MAX_ONE_TIME_KEYS_JSON_BYTES)?;
    check_list_len("one_time_keys", keys.len(), MAX_ONE_TIME_KEYS_PER_UPLOAD)?;
    let mut seen = BTreeSet::new();
    if !keys.iter().all(|k| seen.insert(&k.key_id)) {
        return Err(WireError::Duplicate {
            field: "one_time_keys",
        });
    }
    Ok(keys)
}

/// Decodes one [`Envelope`].
pub fn decode_envelope(bytes: &[u8]) -> Result<Envelope, WireError> {
    parse(bytes, MAX_ENVELOPE_JSON_BYTES)
}

/// Decodes a [`SendRequest`], with the specific error for a bad envelope
/// list.
pub fn decode_send_request(bytes: &[u8]) -> Result<SendRequest, WireError> {
    let raw: SendRequestUnchecked = parse(bytes, MAX_SEND_REQUEST_BYTES)?;
    SendRequest::try_from(raw)
}

/// Decodes a [`ClientFrame`] (a WebSocket text or binary message).
pub fn decode_client_frame(bytes: &[u8]) -> Result<ClientFrame, WireError> {
    let raw: ObjectOnly<ClientFrameUnchecked> = parse(bytes, MAX_CLIENT_FRAME_BYTES)?;
    ClientFrame::try_from(raw)
}

/// Decodes a [`ServerFrame`].
pub fn decode_server_frame(bytes: &[u8]) -> Result<ServerFrame, WireError> {
    let raw: ObjectOnly<ServerFrameUnchecked> = parse(bytes, MAX_SERVER_FRAME_BYTES)?;
    ServerFrame::try_from(raw)
}

mod sealed {
    pub trait Sealed {}
}

/// The types of this module that go on the wire as a whole body or frame.
pub trait WireType: Serialize + sealed::Sealed {}

macro_rules! wire_type {
    ($($ty:ty),*) => {$(
        impl sealed::Sealed for $ty {}
        impl WireType for $ty {}
    )*};
}
wire_type!(
    DeviceKeys,
    SignedOneTimeKey,
    Vec<SignedOneTimeKey>,
    Envelope,
    SendRequest,
    ClientFrame,
    ServerFrame,
    DeliveredEnvelope
);

/// Encodes a wire value as JSON bytes.
pub fn encode<T: WireType>(value: &T) -> Vec<u8> {
    // Every wire type serialises to JSON without failing: no maps and no
    // custom serialiser that can error.
    serde_json::to_vec(value).expect("wire types always serialise to JSON")
}
