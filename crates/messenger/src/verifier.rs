//! How verification codes reach a phone: `accord-verifier`'s, shared
//! with the partner.

pub use accord_verifier::*;
