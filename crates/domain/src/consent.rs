//! The consent state machine.
//!
//! A user's consent is a fold over [`ConsentEvent`]s. Commands
//! ([`ConsentCommand`]) are decided against the current state, the policy
//! history and the time, and give the events to append to the ledger, or a
//! [`ConsentError`] that names the rule that refused them. Nothing here
//! reads a clock or a database: `now` is passed in.
//!
//! ## Rules (decisions recorded here and in ARCHITECTURE.md)
//!
//! - A user accepts a policy version as a whole; acceptance of version `v`
//!   starts a fresh set of purpose states: nothing granted under an older
//!   version carries over (non-inheritance).
//! - Until the user accepts a newer version, what they granted under the
//!   version they accepted stays in force, but only until the newer
//!   version's `accept_by`. After that deadline nothing is shared for a
//!   user who has not accepted, and the user is restricted.
//! - `strict`: purposes are separate and off unless granted; grant and
//!   withdraw are open at any time; refusing restricts nothing.
//! - `whatsapp-2016`: the sharing box is ticked unless the user unticks it,
//!   and covers every purpose of the policy at once. Opt-out is possible
//!   until `accepted + 30 days`; later it is refused with
//!   `opt_out_window_closed`. A user who opted out may opt back in (a
//!   grant also covers every purpose at once).
//! - Withdrawal needs no acceptance of the latest version: taking consent
//!   back is never harder than giving it. A restricted user may withdraw
//!   under every profile, even past a `whatsapp-2016` opt-out window.

use crate::policy::{ConsentProfile, PolicyHistory, PolicyVersion, Purpose, OPT_OUT_WINDOW_DAYS};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How a consent decision was expressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConsentChannel {
    /// The registration form (acceptance is part of registering).
    Registration,
    /// The screen that presents a new policy version.
    AcceptanceScreen,
    /// The privacy centre, any time after acceptance.
    PrivacyCentre,
}

impl ConsentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentChannel::Registration => "registration",
            ConsentChannel::AcceptanceScreen => "acceptance_screen",
            ConsentChannel::PrivacyCentre => "privacy_centre",
        }
    }
}

/// A fact about one user's consent, as appended to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsentEvent {
    Registered {
        at: Timestamp,
    },
    PolicyAccepted {
        version: u32,
        text_sha256: String,
        profile: ConsentProfile,
        at: Timestamp,
        channel: ConsentChannel,
    },
    Granted {
        purpose: Purpose,
        version: u32,
        at: Timestamp,
        channel: ConsentChannel,
        /// True when the grant came from a box that was ticked in advance
        /// and left ticked (`whatsapp-2016`): implied, not explicit, consent.
        pre_ticked: bool,
    },
    Refused {
        purpose: Purpose,
        version: u32,
        at: Timestamp,
        channel: ConsentChannel,
    },
    Withdrawn {
        purpose: Purpose,
        version: u32,
        at: Timestamp,
        channel: ConsentChannel,
    },
    AccountDeleted {
        at: Timestamp,
    },
}

impl ConsentEvent {
    pub fn at(&self) -> Timestamp {
        match self {
            ConsentEvent::Registered { at }
            | ConsentEvent::PolicyAccepted { at, .. }
            | ConsentEvent::Granted { at, .. }
            | ConsentEvent::Refused { at, .. }
            | ConsentEvent::Withdrawn { at, .. }
            | ConsentEvent::AccountDeleted { at } => *at,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            ConsentEvent::Registered { .. } => "registered",
            ConsentEvent::PolicyAccepted { .. } => "policy_accepted",
            ConsentEvent::Granted { .. } => "granted",
            ConsentEvent::Refused { .. } => "refused",
            ConsentEvent::Withdrawn { .. } => "withdrawn",
            ConsentEvent::AccountDeleted { .. } => "account_deleted",
        }
    }
}

/// Where an account is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Lifecycle {
    #[default]
    Unregistered,
    Active {
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        registered_at: Timestamp,
    },
    Deleted {
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        at: Timestamp,
    },
}

/// The policy version a user accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    pub version: u32,
    pub text_sha256: String,
    pub profile: ConsentProfile,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Timestamp,
    /// End of the opt-out window (`whatsapp-2016`); `None` when it never
    /// closes (`strict`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub opt_out_until: Option<Timestamp>,
}

/// One purpose under the accepted version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PurposeState {
    Granted {
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        at: Timestamp,
        channel: ConsentChannel,
        pre_ticked: bool,
    },
    Refused {
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        at: Timestamp,
        channel: ConsentChannel,
    },
    Withdrawn {
        #[cfg_attr(feature = "openapi", schema(value_type = i64))]
        at: Timestamp,
        channel: ConsentChannel,
    },
}

/// One user's consent, as folded from their events.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConsentState {
    pub lifecycle: Lifecycle,
    pub accepted: Option<Accepted>,
    /// Purpose states under `accepted.version` only.
    pub purposes: BTreeMap<Purpose, PurposeState>,
}

/// What a user may do with the messenger right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "access", rename_all = "snake_case")]
pub enum Access {
    Full,
    /// The deadline of `version` passed without acceptance: only reading
    /// and accepting the policy, export and deletion remain.
    Restricted {
        version: u32,
        accept_by: Timestamp,
    },
    Deleted,
    Unregistered,
}

/// The user's choice on the acceptance screen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SharingChoice {
    /// The sharing box. `None` means "left as presented": ticked under
    /// `whatsapp-2016`, and nothing granted under `strict`.
    pub share: Option<bool>,
    /// `strict` only: the purposes granted one by one.
    pub grants: BTreeSet<Purpose>,
}

/// What a user (or the system on their behalf) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsentCommand {
    /// Create the account; `accept` is required when a policy is in force.
    Register {
        accept: Option<(u32, SharingChoice)>,
    },
    Accept {
        version: u32,
        choice: SharingChoice,
        channel: ConsentChannel,
    },
    Grant {
        purpose: Purpose,
        channel: ConsentChannel,
    },
    Withdraw {
        purpose: Purpose,
        channel: ConsentChannel,
    },
    Delete,
}

/// Why a command was refused. Each variant has a stable code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsentError {
    #[error("the account does not exist or was deleted")]
    NoAccount,
    #[error("the account already exists")]
    AlreadyRegistered,
    #[error("policy version {0} was never published")]
    UnknownPolicyVersion(u32),
    #[error("policy version {given} is superseded; the current version is {current}")]
    PolicyVersionSuperseded { given: u32, current: u32 },
    #[error("no policy has been published yet")]
    NoPolicy,
    #[error("policy version {0} is already accepted")]
    AlreadyAccepted(u32),
    #[error("the current policy (version {0}) must be accepted first")]
    PolicyAcceptanceRequired(u32),
    #[error("purpose `{0}` is not asked for by the accepted policy")]
    PurposeNotInPolicy(Purpose),
    #[error("the opt-out window closed at {}", .0.to_rfc3339())]
    OptOutWindowClosed(Timestamp),
    #[error("`grants` lists purposes one by one, which the `whatsapp-2016` profile does not offer; use `share`")]
    GrantsNotOffered,
}

impl ConsentError {
    /// Stable machine-readable code for APIs and the CLI.
    pub fn code(&self) -> &'static str {
        match self {
            ConsentError::NoAccount => "account_not_found",
            ConsentError::AlreadyRegistered => "already_registered",
            ConsentError::UnknownPolicyVersion(_) => "unknown_policy_version",
            ConsentError::PolicyVersionSuperseded { .. } => "policy_version_superseded",
            ConsentError::NoPolicy => "no_policy",
            ConsentError::AlreadyAccepted(_) => "already_accepted",
            ConsentError::PolicyAcceptanceRequired(_) => "policy_acceptance_required",
            ConsentError::PurposeNotInPolicy(_) => "purpose_not_in_policy",
            ConsentError::OptOutWindowClosed(_) => "opt_out_window_closed",
            ConsentError::GrantsNotOffered => "grants_not_offered",
        }
    }
}

impl ConsentState {
    /// Folds events, in order, into a state.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a ConsentEvent>) -> Self {
        let mut s = ConsentState::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    /// Applies one event. Events are facts: they are applied as recorded.
    pub fn apply(&mut self, event: &ConsentEvent) {
        match event {
            ConsentEvent::Registered { at } => {
                self.lifecycle = Lifecycle::Active { registered_at: *at };
            }
            ConsentEvent::PolicyAccepted {
                version,
                text_sha256,
                profile,
                at,
                ..
            } => {
                self.accepted = Some(Accepted {
                    version: *version,
                    text_sha256: text_sha256.clone(),
                    profile: *profile,
                    at: *at,
                    opt_out_until: match profile {
                        ConsentProfile::Strict => None,
                        ConsentProfile::Whatsapp2016 => Some(at.plus_days(OPT_OUT_WINDOW_DAYS)),
                    },
                });
                // Non-inheritance: a new acceptance starts from nothing.
                self.purposes.clear();
            }
            ConsentEvent::Granted {
                purpose,
                at,
                channel,
                pre_ticked,
                ..
            } => {
                self.purposes.insert(
                    *purpose,
                    PurposeState::Granted {
                        at: *at,
                        channel: *channel,
                        pre_ticked: *pre_ticked,
                    },
                );
            }
            ConsentEvent::Refused {
                purpose,
                at,
                channel,
                ..
            } => {
                self.purposes.insert(
                    *purpose,
                    PurposeState::Refused {
                        at: *at,
                        channel: *channel,
                    },
                );
            }
            ConsentEvent::Withdrawn {
                purpose,
                at,
                channel,
                ..
            } => {
                self.purposes.insert(
                    *purpose,
                    PurposeState::Withdrawn {
                        at: *at,
                        channel: *channel,
                    },
                );
            }
            ConsentEvent::AccountDeleted { at } => {
                self.lifecycle = Lifecycle::Deleted { at: *at };
                self.accepted = None;
                self.purposes.clear();
            }
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Active { .. })
    }

    /// What the user may do at `now`.
    pub fn access(&self, policies: &PolicyHistory, now: Timestamp) -> Access {
        match self.lifecycle {
            Lifecycle::Unregistered => return Access::Unregistered,
            Lifecycle::Deleted { .. } => return Access::Deleted,
            Lifecycle::Active { .. } => {}
        }
        match policies.current_at(now) {
            Some(current)
                if self.accepted_version() != Some(current.version) && now >= current.accept_by =>
            {
                Access::Restricted {
                    version: current.version,
                    accept_by: current.accept_by,
                }
            }
            _ => Access::Full,
        }
    }

    pub fn accepted_version(&self) -> Option<u32> {
        self.accepted.as_ref().map(|a| a.version)
    }

    /// The newest policy the user still has to accept, if any.
    pub fn pending_policy<'p>(
        &self,
        policies: &'p PolicyHistory,
        now: Timestamp,
    ) -> Option<&'p PolicyVersion> {
        policies
            .current_at(now)
            .filter(|c| self.accepted_version() != Some(c.version))
    }

    /// Is there an active grant for `purpose` at `now`? Unknown means deny.
    /// This is the only question the coordination feed may ask.
    pub fn is_granted(&self, purpose: Purpose, policies: &PolicyHistory, now: Timestamp) -> bool {
        if !self.is_active() {
            return false;
        }
        let Some(acc) = &self.accepted else {
            return false;
        };
        if !matches!(
            self.purposes.get(&purpose),
            Some(PurposeState::Granted { .. })
        ) {
            return false;
        }
        let Some(accepted_policy) = policies.get(acc.version) else {
            return false;
        };
        if !accepted_policy.purposes.contains(&purpose) || accepted_policy.published_at > now {
            return false;
        }
        match policies.current_at(now) {
            Some(current) if current.version == acc.version => true,
            // A newer version is in force: the old grant lasts until its deadline.
            Some(current) => now < current.accept_by,
            None => false,
        }
    }

    /// The purposes with an active grant at `now`.
    pub fn granted_purposes(&self, policies: &PolicyHistory, now: Timestamp) -> BTreeSet<Purpose> {
        Purpose::ALL
            .into_iter()
            .filter(|p| self.is_granted(*p, policies, now))
            .collect()
    }

    /// Decides a command. On success, the events to append (possibly none,
    /// when the command changes nothing); on refusal, the rule that refused.
    pub fn decide(
        &self,
        cmd: &ConsentCommand,
        policies: &PolicyHistory,
        now: Timestamp,
    ) -> Result<Vec<ConsentEvent>, ConsentError> {
        match cmd {
            ConsentCommand::Register { accept } => {
                if self.lifecycle != Lifecycle::Unregistered {
                    return Err(ConsentError::AlreadyRegistered);
                }
                let mut events = vec![ConsentEvent::Registered { at: now }];
                match (policies.current_at(now), accept) {
                    (None, _) => {}
                    (Some(current), None) => {
                        return Err(ConsentError::PolicyAcceptanceRequired(current.version))
                    }
                    (Some(_), Some((version, choice))) => {
                        let policy = check_acceptable(policies, *version, now)?;
                        events.extend(acceptance_events(
                            policy,
                            choice,
                            ConsentChannel::Registration,
                            now,
                        )?);
                    }
                }
                Ok(events)
            }
            ConsentCommand::Accept {
                version,
                choice,
                channel,
            } => {
                self.require_active()?;
                let policy = check_acceptable(policies, *version, now)?;
                if self.accepted_version() == Some(*version) {
                    return Err(ConsentError::AlreadyAccepted(*version));
                }
                acceptance_events(policy, choice, *channel, now)
            }
            ConsentCommand::Grant { purpose, channel } => {
                self.require_active()?;
                let current = policies.current_at(now).ok_or(ConsentError::NoPolicy)?;
                let acc = self
                    .accepted
                    .as_ref()
                    .filter(|a| a.version == current.version)
                    .ok_or(ConsentError::PolicyAcceptanceRequired(current.version))?;
                if !current.purposes.contains(purpose) {
                    return Err(ConsentError::PurposeNotInPolicy(*purpose));
                }
                let targets: Vec<Purpose> = match acc.profile {
                    ConsentProfile::Strict => vec![*purpose],
                    ConsentProfile::Whatsapp2016 => current.purposes.iter().copied().collect(),
                };
                Ok(targets
                    .into_iter()
                    .filter(|p| !matches!(self.purposes.get(p), Some(PurposeState::Granted { .. })))
                    .map(|p| ConsentEvent::Granted {
                        purpose: p,
                        version: acc.version,
                        at: now,
                        channel: *channel,
                        pre_ticked: false,
                    })
                    .collect())
            }
            ConsentCommand::Withdraw { purpose, channel } => {
                self.require_active()?;
                let Some(acc) = &self.accepted else {
                    // Nothing was ever granted: withdrawing changes nothing.
                    return Ok(vec![]);
                };
                let policy = policies
                    .get(acc.version)
                    .ok_or(ConsentError::UnknownPolicyVersion(acc.version))?;
                if !policy.purposes.contains(purpose) {
                    return Err(ConsentError::PurposeNotInPolicy(*purpose));
                }
                let targets: Vec<Purpose> = match acc.profile {
                    ConsentProfile::Strict => vec![*purpose],
                    ConsentProfile::Whatsapp2016 => {
                        // The window binds a user whose acceptance is in
                        // force. A restricted user (a newer version's
                        // deadline passed without acceptance) may always
                        // withdraw: withdrawal is never blocked (DESIGN's
                        // invariant; issue #14 wins over the profile here).
                        let restricted =
                            matches!(self.access(policies, now), Access::Restricted { .. });
                        if let Some(until) = acc.opt_out_until {
                            if now >= until && !restricted {
                                return Err(ConsentError::OptOutWindowClosed(until));
                            }
                        }
                        policy.purposes.iter().copied().collect()
                    }
                };
                Ok(targets
                    .into_iter()
                    .filter(|p| matches!(self.purposes.get(p), Some(PurposeState::Granted { .. })))
                    .map(|p| ConsentEvent::Withdrawn {
                        purpose: p,
                        version: acc.version,
                        at: now,
                        channel: *channel,
                    })
                    .collect())
            }
            ConsentCommand::Delete => {
                self.require_active()?;
                Ok(vec![ConsentEvent::AccountDeleted { at: now }])
            }
        }
    }

    fn require_active(&self) -> Result<(), ConsentError> {
        if self.is_active() {
            Ok(())
        } else {
            Err(ConsentError::NoAccount)
        }
    }
}

fn check_acceptable(
    policies: &PolicyHistory,
    version: u32,
    now: Timestamp,
) -> Result<&PolicyVersion, ConsentError> {
    let policy = policies
        .get(version)
        .filter(|p| p.published_at <= now)
        .ok_or(ConsentError::UnknownPolicyVersion(version))?;
    let current = policies.current_at(now).ok_or(ConsentError::NoPolicy)?;
    if current.version != version {
        return Err(ConsentError::PolicyVersionSuperseded {
            given: version,
            current: current.version,
        });
    }
    Ok(policy)
}

fn acceptance_events(
    policy: &PolicyVersion,
    choice: &SharingChoice,
    channel: ConsentChannel,
    now: Timestamp,
) -> Result<Vec<ConsentEvent>, ConsentError> {
    let mut events = vec![ConsentEvent::PolicyAccepted {
        version: policy.version,
        text_sha256: policy.text_sha256.clone(),
        profile: policy.profile,
        at: now,
        channel,
    }];
    let (granted, pre_ticked): (BTreeSet<Purpose>, bool) = match policy.profile {
        ConsentProfile::Whatsapp2016 => {
            if !choice.grants.is_empty() {
                return Err(ConsentError::GrantsNotOffered);
            }
            match choice.share {
                None | Some(true) => (policy.purposes.clone(), true),
                Some(false) => (BTreeSet::new(), false),
            }
        }
        ConsentProfile::Strict => {
            if let Some(p) = choice.grants.iter().find(|p| !policy.purposes.contains(p)) {
                return Err(ConsentError::PurposeNotInPolicy(*p));
            }
            match choice.share {
                Some(true) => (policy.purposes.clone(), false),
                Some(false) => (BTreeSet::new(), false),
                None => (choice.grants.clone(), false),
            }
        }
    };
    for p in &policy.purposes {
        events.push(if granted.contains(p) {
            ConsentEvent::Granted {
                purpose: *p,
                version: policy.version,
                at: now,
                channel,
                pre_ticked,
            }
        } else {
            ConsentEvent::Refused {
                purpose: *p,
                version: policy.version,
                at: now,
                channel,
            }
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests;
