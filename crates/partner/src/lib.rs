//! # accord-partner
//!
//! The partner service (P in `shared/DESIGN.md`): the social/ads side.
//! It receives the coordination feed from the messenger, authenticated by
//! HMAC, and stores what it receives by `coordination` pseudonym and
//! purpose; it never receives or stores a phone number.
//!
//! - [`service`]: [`PartnerService`]: applying feed events (idempotent,
//!   ordered per pseudonym, deletions confirmed), purpose-checked reads
//!   (refused and counted when the purpose was not granted), partner
//!   users, linking, friend suggestions.
//! - [`http`]: the axum router: `POST /v1/feed/ingest` (HMAC),
//!   `/v1/partner/*` for partner users, `/v1/admin/partner/*` for the
//!   operator.
//! - [`audience`]: custom audiences: advertisers, uploads of customer-list
//!   pseudonyms matched whole ([`matching`]), differentially private
//!   counts ([`dp`]), campaigns and the ad endpoint.
//! - [`startup`]: the composition root, [`Application::build`].
//! - [`web`]: the advertiser console (`/advertiser`), released figures only.
//! - [`verifier`]: the partner's own sign-up codes (dev, webhook).
//!
//! **Not an open pseudonym oracle.** A partner user exists only after
//! verifying a phone number (one user per number), sign-ups are limited
//! per client address, per number and in all per rolling day, and each
//! user's blinded evaluations are charged to its own rolling-day quota
//! before they are forwarded; the partner's key-service quota is sized
//! from its user count and alerts at 80%.
//!
//! The key service is reached through `accord-keyd-client` only (the
//! `Oprf` trait and the wire types of `POST /v1/oprf/coordination/evaluate`),
//! never the key service's server crate: an `Oprf` is injected with
//! [`PartnerService::with_oprf`].
//!
//! **Architecture invariant:** every read of messenger-derived data names
//! its purpose, and is refused unless the pseudonym is held for it.

pub mod audience;
pub mod dp;
pub mod eligible;
pub mod http;
pub mod matching;
pub mod service;
pub mod startup;
pub mod verifier;
pub mod web;

pub use http::{router, serve, AppState};
pub use service::{KeydBudget, KeydQuota, PartnerConfig, PartnerError, PartnerService};
pub use startup::{Application, Settings};
