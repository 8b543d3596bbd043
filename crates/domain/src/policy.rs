//! Policy versions, the purposes they ask consent for, and consent profiles.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// Days a user has to accept a new policy version, and (under
/// `whatsapp-2016`) to opt out after accepting.
pub const ACCEPT_WINDOW_DAYS: i64 = 30;
pub const OPT_OUT_WINDOW_DAYS: i64 = 30;

/// What the partner may use a user's account information for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Targeted ads at the partner (custom audiences).
    Ads,
    /// Friend suggestions and account linking at the partner.
    Product,
}

impl Purpose {
    pub const ALL: [Purpose; 2] = [Purpose::Ads, Purpose::Product];
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Ads => "ads",
            Purpose::Product => "product",
        }
    }
    pub fn describe(self) -> &'static str {
        match self {
            Purpose::Ads => "targeted advertising at the partner service",
            Purpose::Product => "friend suggestions and account linking at the partner service",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Purpose {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ads" => Ok(Purpose::Ads),
            "product" => Ok(Purpose::Product),
            _ => Err(PolicyError::UnknownPurpose),
        }
    }
}

/// How consent is asked for and how it can be taken back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ConsentProfile {
    /// Purposes are separate and off unless granted; granting and
    /// withdrawing are possible at any time; refusing restricts nothing.
    #[default]
    #[serde(rename = "strict")]
    Strict,
    /// The system as described in 2016: a pre-ticked sharing box at
    /// acceptance covering every purpose at once, and an opt-out window of
    /// 30 days after acceptance.
    #[serde(rename = "whatsapp-2016")]
    Whatsapp2016,
}

impl ConsentProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentProfile::Strict => "strict",
            ConsentProfile::Whatsapp2016 => "whatsapp-2016",
        }
    }
}

impl fmt::Display for ConsentProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConsentProfile {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strict" => Ok(ConsentProfile::Strict),
            "whatsapp-2016" | "whatsapp2016" => Ok(ConsentProfile::Whatsapp2016),
            _ => Err(PolicyError::UnknownProfile),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("policy text is empty")]
    EmptyText,
    #[error("policy text is too long (max 1 MiB)")]
    TextTooLong,
    #[error("unknown purpose (expected `ads` or `product`)")]
    UnknownPurpose,
    #[error("unknown consent profile (expected `strict` or `whatsapp-2016`)")]
    UnknownProfile,
}

/// What an operator submits; becomes a [`PolicyVersion`] when published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDraft {
    pub text: String,
    pub purposes: BTreeSet<Purpose>,
    pub profile: ConsentProfile,
}

impl PolicyDraft {
    pub fn new(
        text: impl Into<String>,
        purposes: impl IntoIterator<Item = Purpose>,
        profile: ConsentProfile,
    ) -> Result<Self, PolicyError> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(PolicyError::EmptyText);
        }
        if text.len() > 1 << 20 {
            return Err(PolicyError::TextTooLong);
        }
        Ok(PolicyDraft {
            text,
            purposes: purposes.into_iter().collect(),
            profile,
        })
    }

    /// Publishes as `version` at `at`: fixes the text hash and the deadline.
    pub fn publish(self, version: u32, at: Timestamp) -> PolicyVersion {
        PolicyVersion {
            version,
            text_sha256: hex::encode(Sha256::digest(self.text.as_bytes())),
            text: self.text,
            purposes: self.purposes,
            profile: self.profile,
            published_at: at,
            accept_by: at.plus_days(ACCEPT_WINDOW_DAYS),
        }
    }
}

/// A published policy version. Immutable once published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PolicyVersion {
    pub version: u32,
    pub text: String,
    /// Lowercase hex SHA-256 of `text`'s UTF-8 bytes.
    pub text_sha256: String,
    pub purposes: BTreeSet<Purpose>,
    pub profile: ConsentProfile,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub published_at: Timestamp,
    /// `published_at + 30 days`: after this a user who has not accepted
    /// can only read and accept the policy, export, or delete.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub accept_by: Timestamp,
}

/// All versions published so far, oldest first. The consent rules need
/// the history, not only the latest version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyHistory {
    versions: Vec<PolicyVersion>,
}

impl PolicyHistory {
    pub fn new(mut versions: Vec<PolicyVersion>) -> Self {
        versions.sort_by_key(|p| p.version);
        PolicyHistory { versions }
    }
    pub fn push(&mut self, p: PolicyVersion) {
        self.versions.push(p);
        self.versions.sort_by_key(|p| p.version);
    }
    /// The version in force at `at`: the latest published at or before it.
    pub fn current_at(&self, at: Timestamp) -> Option<&PolicyVersion> {
        self.versions.iter().rev().find(|p| p.published_at <= at)
    }
    pub fn get(&self, version: u32) -> Option<&PolicyVersion> {
        self.versions.iter().find(|p| p.version == version)
    }
    pub fn latest(&self) -> Option<&PolicyVersion> {
        self.versions.last()
    }
    pub fn next_version(&self) -> u32 {
        self.latest().map_or(1, |p| p.version + 1)
    }
    pub fn versions(&self) -> &[PolicyVersion] {
        &self.versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_fixes_hash_and_deadline() {
        let p = PolicyDraft::new("abc", [Purpose::Ads], ConsentProfile::Strict)
            .unwrap()
            .publish(1, Timestamp(0));
        assert_eq!(
            p.text_sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(p.accept_by, Timestamp(0).plus_days(30));
        assert!(PolicyDraft::new("  ", [], ConsentProfile::Strict).is_err());
    }

    #[test]
    fn profile_names_round_trip() {
        for p in [ConsentProfile::Strict, ConsentProfile::Whatsapp2016] {
            assert_eq!(p.as_str().parse::<ConsentProfile>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.as_str()));
        }
    }
}
