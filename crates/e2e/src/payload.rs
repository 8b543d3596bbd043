//! What goes inside an Olm ciphertext: the application payload.
//!
//! Text messages and read receipts are both [`Plaintext`]s, serialised as
//! JSON and padded with spaces to a multiple of [`PADDING_BLOCK`] bytes before
//! encryption, so the server sees ciphertexts of the same shape and padded
//! size for both and cannot tell a read receipt from a short message.

use std::fmt;

use accord_domain::Timestamp;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::wire::{ClientMessageId, ObjectOnly};

/// Serialised payloads are padded to a multiple of this many bytes.
pub const PADDING_BLOCK: usize = 256;
/// Largest padded payload. With Olm's overhead the ciphertext stays under
/// [`MAX_ENVELOPE_BYTES`](crate::wire::MAX_ENVELOPE_BYTES).
pub const MAX_PLAINTEXT_BYTES: usize = 48 * 1024;
/// Most message ids one read receipt may acknowledge.
pub const MAX_RECEIPT_IDS: usize = 100;

/// One end-to-end message. `client_message_id` is the sender's id for it
/// (the same as in its [`SendRequest`](crate::wire::SendRequest)), which is
/// what a read receipt refers to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plaintext {
    pub client_message_id: ClientMessageId,
    pub sent_at: Timestamp,
    pub kind: PlaintextKind,
}

/// The kinds of end-to-end message. Tagged by `"type"`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PlaintextKind {
    Text {
        body: String,
    },
    /// The recipient has read these messages.
    ReadReceipt {
        client_message_ids: Vec<ClientMessageId>,
    },
    /// A business's template message: the parameters only. The body is
    /// the approved template the envelope names, which the recipient's
    /// client fetches signed and renders.
    Template {
        params: Vec<String>,
    },
}

/// Why a payload could not be built or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    #[error("the payload is {actual} bytes padded, the limit is {limit}")]
    TooLarge { limit: usize, actual: usize },
    #[error("a read receipt must name 1 to {MAX_RECEIPT_IDS} messages")]
    BadReceipt,
    /// The decrypted bytes are not a payload (no detail: it is plaintext).
    #[error("the decrypted payload is malformed")]
    Malformed,
}

impl Plaintext {
    pub fn text(client_message_id: ClientMessageId, sent_at: Timestamp, body: &str) -> Self {
        Plaintext {
            client_message_id,
            sent_at,
            kind: PlaintextKind::Text {
                body: body.to_owned(),
            },
        }
    }

    pub fn read_receipt(
        client_message_id: ClientMessageId,
        sent_at: Timestamp,
        read: Vec<ClientMessageId>,
    ) -> Self {
        Plaintext {
            client_message_id,
            sent_at,
            kind: PlaintextKind::ReadReceipt {
                client_message_ids: read,
            },
        }
    }

    fn check(&self) -> Result<(), PayloadError> {
        match &self.kind {
            PlaintextKind::ReadReceipt { client_message_ids }
                if client_message_ids.is_empty() || client_message_ids.len() > MAX_RECEIPT_IDS =>
            {
                Err(PayloadError::BadReceipt)
            }
            _ => Ok(()),
        }
    }

    /// JSON padded with spaces to a multiple of [`PADDING_BLOCK`], in a
    /// buffer that is wiped when dropped.
    pub(crate) fn to_padded_bytes(&self) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        self.check()?;
        let len = crate::json_len(self);
        let padded = len.div_ceil(PADDING_BLOCK).max(1) * PADDING_BLOCK;
        if padded > MAX_PLAINTEXT_BYTES {
            return Err(PayloadError::TooLarge {
                limit: MAX_PLAINTEXT_BYTES,
                actual: padded,
            });
        }
        let mut out = Zeroizing::new(Vec::with_capacity(padded));
        serde_json::to_writer(&mut *out, self).map_err(|_| PayloadError::Malformed)?;
        out.resize(padded, b' ');
        Ok(out)
    }

    /// Parses decrypted bytes (JSON, trailing padding allowed).
    pub(crate) fn from_padded_bytes(bytes: &[u8]) -> Result<Self, PayloadError> {
        if bytes.len() > MAX_PLAINTEXT_BYTES {
            return Err(PayloadError::TooLarge {
                limit: MAX_PLAINTEXT_BYTES,
                actual: bytes.len(),
            });
        }
        let ObjectOnly(p): ObjectOnly<Plaintext> =
            serde_json::from_slice(bytes).map_err(|_| PayloadError::Malformed)?;
        p.check()?;
        Ok(p)
    }
}

/// Never prints a message body.
impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plaintext")
            .field("client_message_id", &self.client_message_id)
            .field("sent_at", &self.sent_at)
            .field("kind", &self.kind)
            .finish()
    }
}

impl fmt::Debug for PlaintextKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlaintextKind::Text { body } => write!(f, "Text {{ body: <{} bytes> }}", body.len()),
            PlaintextKind::ReadReceipt { client_message_ids } => f
                .debug_struct("ReadReceipt")
                .field("client_message_ids", client_message_ids)
                .finish(),
            PlaintextKind::Template { params } => {
                write!(f, "Template {{ params: <{} values> }}", params.len())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientMessageId {
        ClientMessageId::parse(s).unwrap()
    }

    #[test]
    fn receipts_and_short_texts_pad_to_the_same_size() {
        let text = Plaintext::text(id("m-2"), Timestamp(1_700_000_000_000), "see you at 8?");
        let receipt =
            Plaintext::read_receipt(id("m-3"), Timestamp(1_700_000_000_001), vec![id("m-1")]);
        let a = text.to_padded_bytes().unwrap();
        let b = receipt.to_padded_bytes().unwrap();
        assert_eq!(a.len(), PADDING_BLOCK);
        assert_eq!(a.len(), b.len());
        assert_eq!(Plaintext::from_padded_bytes(&a).unwrap(), text);
        assert_eq!(Plaintext::from_padded_bytes(&b).unwrap(), receipt);
    }

    #[test]
    fn oversized_and_empty_payloads_are_refused() {
        let big = "x".repeat(MAX_PLAINTEXT_BYTES);
        let p = Plaintext::text(id("m"), Timestamp(0), &big);
        assert!(matches!(
            p.to_padded_bytes(),
            Err(PayloadError::TooLarge { .. })
        ));
        let empty = Plaintext::read_receipt(id("m"), Timestamp(0), vec![]);
        assert_eq!(
            empty.to_padded_bytes().unwrap_err(),
            PayloadError::BadReceipt
        );
        assert_eq!(
            Plaintext::from_padded_bytes(b"{\"nope\":1}").unwrap_err(),
            PayloadError::Malformed
        );
    }

    #[test]
    fn debug_never_prints_the_body() {
        let p = Plaintext::text(id("m"), Timestamp(0), "attack at dawn");
        assert!(!format!("{p:?}").contains("dawn"));
    }
}
