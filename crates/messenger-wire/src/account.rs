//! Registration by phone number, number change, policy acceptance, and
//! the caller's consent and account.

use accord_domain::consent::{Access, ConsentState, SharingChoice};
use accord_domain::{AccountId, DeviceId, DeviceInfo, Purpose, Timestamp};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// `POST /v1/registrations`: send a verification code to a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StartRegistration {
    /// International (`+62 812-3456-7890`) or national with `region`.
    pub phone: String,
    /// ISO 3166-1 alpha-2 region for national formats, e.g. `ID`.
    #[serde(default)]
    pub region: Option<String>,
}

/// A started registration (also the answer to `POST /v1/me/number`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegistrationStarted {
    pub registration_id: Uuid,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub expires_at: Timestamp,
    /// Only when the server runs with the dev verifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_code: Option<String>,
}

/// The user's choice on the acceptance screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AcceptChoice {
    /// The sharing box. Omitted: left as presented (ticked under
    /// `whatsapp-2016`, nothing granted under `strict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<bool>,
    /// `strict` only: purposes granted one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<Purpose>,
}

impl From<AcceptChoice> for SharingChoice {
    fn from(c: AcceptChoice) -> Self {
        SharingChoice {
            share: c.share,
            grants: c.grants.into_iter().collect(),
        }
    }
}

/// Acceptance of a policy version at registration: the version and the
/// choice, side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Acceptance {
    pub version: u32,
    #[serde(flatten)]
    pub choice: AcceptChoice,
}

/// `POST /v1/registrations/{registration_id}/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VerifyRegistration {
    pub code: String,
    pub device: DeviceInfo,
    /// Required for a new account when a policy is in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Acceptance>,
}

/// A verified registration: the device's bearer token, shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Registered {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_id: DeviceId,
    pub token: String,
    /// False when the number already had an account and this adds a device.
    pub new_account: bool,
    /// This device's own key-service token (contact discovery), shown once;
    /// only when the messenger has a key service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyd_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyd_url: Option<String>,
}

/// `POST /v1/me/number`: the new number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewNumber {
    pub phone: String,
    #[serde(default)]
    pub region: Option<String>,
}

/// `POST /v1/me/number/{registration_id}/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NumberCode {
    pub code: String,
}

/// A user's consent, as shown to them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentView {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Timestamp,
    pub state: ConsentState,
    /// Purposes with an active grant at `at`: what may be shared.
    pub granted_now: Vec<Purpose>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub access: Access,
    /// A newer policy the user has not accepted yet (`null` when none).
    pub pending_policy: Option<u32>,
}

/// `GET /v1/me`: the caller's account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub account_id: AccountId,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub device_id: DeviceId,
    /// How many devices the account has.
    pub devices: u32,
    pub consent: ConsentView,
}

/// `?at=` of the consent history endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AtQuery {
    /// RFC 3339 UTC instant (`2026-11-29T12:00:00Z`) or Unix milliseconds.
    pub at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_acceptance_is_the_version_beside_the_choice() {
        let a = Acceptance {
            version: 3,
            choice: AcceptChoice {
                share: Some(false),
                grants: vec![],
            },
        };
        let v = serde_json::to_value(&a).unwrap();
        assert_eq!(v, json!({"version": 3, "share": false}));
        let back: Acceptance = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn requests_refuse_unknown_fields_and_optional_answers_default() {
        assert!(
            serde_json::from_value::<StartRegistration>(json!({"phone": "+1", "x": 1})).is_err()
        );
        let r: RegistrationStarted = serde_json::from_value(json!({
            "registration_id": Uuid::nil(),
            "expires_at": 5,
        }))
        .unwrap();
        assert_eq!(r.dev_code, None);
        assert!(!serde_json::to_value(&r)
            .unwrap()
            .as_object()
            .unwrap()
            .contains_key("dev_code"));
    }
}
