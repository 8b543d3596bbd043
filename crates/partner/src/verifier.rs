//! How the partner's sign-up codes reach a phone: `accord-verifier`'s,
//! shared with the messenger. The partner sends its own codes, under its
//! own name; the number is handed to the verifier and then forgotten.

pub use accord_verifier::*;
