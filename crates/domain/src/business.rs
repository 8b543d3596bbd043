//! Business messaging's rules, with no I/O: categories, template names,
//! bodies and their numbered parameters, rendering, the signed form of an
//! approved template, the quality rating, the messaging-limit tiers and
//! the stable refusal codes.
//!
//! The server never sees a message's content: an envelope names the
//! template (name, language, version) and its category; the plaintext
//! holds the parameters only. The recipient's client renders the body the
//! messenger approved and signed, with [`render`], and shows a message
//! whose template or parameters do not fit as unverified.

use crate::{AccountId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest template body, in characters (as the hosted APIs allow).
pub const MAX_BODY_CHARS: usize = 1_024;
/// Longest parameter, in characters.
pub const MAX_PARAM_CHARS: usize = 1_024;
/// Most parameters one template may take.
pub const MAX_PARAMS: usize = 32;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// The customer-service window: a free-form `service` message may go to
/// a user for this long after the user last wrote to the business.
pub const SERVICE_WINDOW_MS: i64 = 24 * 3_600_000;
/// The rolling window of the messaging-limit tiers.
pub const TIER_WINDOW_MS: i64 = 24 * 3_600_000;
/// The rolling window of the quality rating.
pub const QUALITY_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// What a business message is for. `Service` is the free-form reply
/// inside the customer-service window; the others are template
/// categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Utility,
    Authentication,
    Marketing,
    Service,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Utility,
        Category::Authentication,
        Category::Marketing,
        Category::Service,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Utility => "utility",
            Category::Authentication => "authentication",
            Category::Marketing => "marketing",
            Category::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Result<Self, BusinessError> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                BusinessError::Invalid(
                    "category must be utility, authentication, marketing or service".into(),
                )
            })
    }

    /// Whether a template may have this category (`service` is free-form
    /// only).
    pub fn is_template_category(self) -> bool {
        self != Category::Service
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a template is in its review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TemplateStatus {
    Pending,
    Approved,
    Rejected,
    Paused,
}

impl TemplateStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TemplateStatus::Pending => "pending",
            TemplateStatus::Approved => "approved",
            TemplateStatus::Rejected => "rejected",
            TemplateStatus::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Result<Self, BusinessError> {
        [
            TemplateStatus::Pending,
            TemplateStatus::Approved,
            TemplateStatus::Rejected,
            TemplateStatus::Paused,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| BusinessError::Invalid(format!("unknown template status {s:?}")))
    }
}

/// An operator's decision on a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Review {
    Approve,
    Reject,
    Pause,
    Resume,
}

impl Review {
    /// The status after this decision, or why it does not apply.
    pub fn apply(self, from: TemplateStatus) -> Result<TemplateStatus, BusinessError> {
        use TemplateStatus as S;
        match (self, from) {
            (Review::Approve, S::Pending | S::Rejected) => Ok(S::Approved),
            (Review::Reject, S::Pending | S::Approved | S::Paused) => Ok(S::Rejected),
            (Review::Pause, S::Approved) => Ok(S::Paused),
            (Review::Resume, S::Paused) => Ok(S::Approved),
            _ => Err(BusinessError::Invalid(format!(
                "a {} template cannot be {}",
                from.as_str(),
                match self {
                    Review::Approve => "approved",
                    Review::Reject => "rejected",
                    Review::Pause => "paused",
                    Review::Resume => "resumed",
                }
            ))),
        }
    }
}

/// Why a business input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusinessError {
    #[error("{0}")]
    Invalid(String),
}

/// A template name: 1 to 512 characters of `[a-z0-9_]`, as the hosted
/// APIs name them (`order_receipt`).
pub fn check_template_name(s: &str) -> Result<(), BusinessError> {
    let ok = !s.is_empty()
        && s.len() <= 512
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(BusinessError::Invalid(
            "a template name is 1 to 512 characters of a-z, 0-9 and _".into(),
        ))
    }
}

/// A language code: two or three lowercase letters, optionally `_` and a
/// two-letter region in capitals (`en`, `en_US`, `id`).
pub fn check_language(s: &str) -> Result<(), BusinessError> {
    let (lang, region) = match s.split_once('_') {
        Some((l, r)) => (l, Some(r)),
        None => (s, None),
    };
    let lang_ok = (2..=3).contains(&lang.len()) && lang.bytes().all(|b| b.is_ascii_lowercase());
    let region_ok =
        region.is_none_or(|r| r.len() == 2 && r.bytes().all(|b| b.is_ascii_uppercase()));
    if lang_ok && region_ok {
        Ok(())
    } else {
        Err(BusinessError::Invalid(
            "language must look like en, id or en_US".into(),
        ))
    }
}

/// A display name: 1 to [`MAX_DISPLAY_NAME_CHARS`] characters, no control
/// characters, trimmed. Any other text is allowed (pages escape it).
pub fn check_display_name(s: &str) -> Result<String, BusinessError> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > MAX_DISPLAY_NAME_CHARS || t.chars().any(char::is_control)
    {
        return Err(BusinessError::Invalid(format!(
            "a display name is 1 to {MAX_DISPLAY_NAME_CHARS} characters without control characters"
        )));
    }
    Ok(t.to_owned())
}

/// One piece of a template body.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    /// `{{n}}`, 1-based.
    Param(usize),
}

fn pieces(body: &str) -> Result<Vec<Piece<'_>>, BusinessError> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| BusinessError::Invalid("a {{ is not closed by }}".into()))?;
        let n: usize = after[..end]
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=MAX_PARAMS).contains(n))
            .ok_or_else(|| {
                BusinessError::Invalid(format!(
                    "a placeholder must be {{{{1}}}} to {{{{{MAX_PARAMS}}}}}"
                ))
            })?;
        out.push(Piece::Param(n));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Checks a template body and gives how many parameters it takes: the
/// placeholders are `{{1}}` to `{{n}}`, each number used at least once.
pub fn parse_body(body: &str) -> Result<usize, BusinessError> {
    if body.trim().is_empty() || body.chars().count() > MAX_BODY_CHARS {
        return Err(BusinessError::Invalid(format!(
            "a template body is 1 to {MAX_BODY_CHARS} characters"
        )));
    }
    let mut seen = [false; MAX_PARAMS + 1];
    let mut n = 0;
    for p in pieces(body)? {
        if let Piece::Param(i) = p {
            seen[i] = true;
            n = n.max(i);
        }
    }
    if (1..=n).any(|i| !seen[i]) {
        return Err(BusinessError::Invalid(format!(
            "placeholders must be numbered {{{{1}}}} to {{{{{n}}}}} without gaps"
        )));
    }
    Ok(n)
}

/// Why a message does not fit its template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the template takes {expected} parameters, the message has {got}")]
    ParamCount { expected: usize, got: usize },
    #[error("parameter {index} is longer than {MAX_PARAM_CHARS} characters")]
    ParamTooLong { index: usize },
    #[error("parameter {index} is empty or holds a line break, a tab or a control character")]
    ParamShape { index: usize },
    #[error("the template body is malformed")]
    Body,
}

impl RenderError {
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::ParamCount { .. } => "param_count",
            RenderError::ParamTooLong { .. } => "param_too_long",
            RenderError::ParamShape { .. } => "param_shape",
            RenderError::Body => "bad_template",
        }
    }
}

/// Checks parameters against a body's count and shape: each 1 to
/// [`MAX_PARAM_CHARS`] characters on one line, so that a parameter cannot
/// lay out a message of its own inside the approved one.
pub fn check_params(expected: usize, params: &[String]) -> Result<(), RenderError> {
    if params.len() != expected {
        return Err(RenderError::ParamCount {
            expected,
            got: params.len(),
        });
    }
    for (i, p) in params.iter().enumerate() {
        if p.chars().count() > MAX_PARAM_CHARS {
            return Err(RenderError::ParamTooLong { index: i + 1 });
        }
        if p.trim().is_empty() || p.chars().any(char::is_control) {
            return Err(RenderError::ParamShape { index: i + 1 });
        }
    }
    Ok(())
}

/// The approved body with its parameters in place.
pub fn render(body: &str, params: &[String]) -> Result<String, RenderError> {
    let expected = parse_body(body).map_err(|_| RenderError::Body)?;
    check_params(expected, params)?;
    let mut out = String::with_capacity(body.len() + params.iter().map(String::len).sum::<usize>());
    for p in pieces(body).map_err(|_| RenderError::Body)? {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Param(i) => out.push_str(&params[i - 1]),
        }
    }
    Ok(out)
}

/// What of an approved template the messenger signs, and a client checks
/// before it renders a message with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TemplateContent {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub business: AccountId,
    pub name: String,
    pub language: String,
    pub version: u32,
    pub category: Category,
    pub body: String,
}

/// The first line of every signed template: the signature cannot be taken
/// for a consent-log checkpoint (`accord consent log v1`) or anything else
/// the same key signs.
pub const TEMPLATE_ORIGIN: &str = "accord business template v1";

impl TemplateContent {
    /// The exact bytes that are signed: the origin line, then each field
    /// with its length in bytes in front, so no two contents share bytes.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut out = format!("{TEMPLATE_ORIGIN}\n").into_bytes();
        let version = self.version.to_string();
        for field in [
            self.business.to_string().as_str(),
            &self.name,
            &self.language,
            &version,
            self.category.as_str(),
            &self.body,
        ] {
            out.extend_from_slice(format!("{}:", field.len()).as_bytes());
            out.extend_from_slice(field.as_bytes());
            out.push(b'\n');
        }
        out
    }
}

/// A business's quality rating, from the blocks and reports it drew per
/// message delivered over [`QUALITY_WINDOW_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Green,
    Yellow,
    Red,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Green => "green",
            Quality::Yellow => "yellow",
            Quality::Red => "red",
        }
    }

    pub fn parse(s: &str) -> Result<Self, BusinessError> {
        match s {
            "green" => Ok(Quality::Green),
            "yellow" => Ok(Quality::Yellow),
            "red" => Ok(Quality::Red),
            _ => Err(BusinessError::Invalid(format!("unknown quality {s:?}"))),
        }
    }
}

/// The quality rating's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QualityRules {
    /// Below this many delivered messages plus signals, a business is
    /// green (too little to rate).
    pub min_sample: u64,
    /// Blocks and reports per delivered message at which it turns yellow.
    pub yellow_ratio: f64,
    /// ... and red.
    pub red_ratio: f64,
}

impl Default for QualityRules {
    fn default() -> Self {
        QualityRules {
            min_sample: 20,
            yellow_ratio: 0.03,
            red_ratio: 0.08,
        }
    }
}

impl QualityRules {
    /// The rating for `delivered` messages and `blocks` + `reports` over
    /// the window, with the reason in words.
    pub fn rate(&self, delivered: u64, blocks: u64, reports: u64) -> (Quality, String) {
        let signals = blocks + reports;
        let counts = format!(
            "{blocks} blocks and {reports} reports per {delivered} delivered messages in 7 days"
        );
        if delivered + signals < self.min_sample {
            return (Quality::Green, format!("{counts}: too few to rate"));
        }
        let ratio = signals as f64 / delivered.max(1) as f64;
        let pct = |r: f64| format!("{:.1}%", r * 100.0);
        if ratio >= self.red_ratio {
            (
                Quality::Red,
                format!(
                    "{counts} ({}, red from {})",
                    pct(ratio),
                    pct(self.red_ratio)
                ),
            )
        } else if ratio >= self.yellow_ratio {
            (
                Quality::Yellow,
                format!(
                    "{counts} ({}, yellow from {})",
                    pct(ratio),
                    pct(self.yellow_ratio)
                ),
            )
        } else {
            (Quality::Green, format!("{counts} ({})", pct(ratio)))
        }
    }
}

/// The messaging-limit tiers: unique users a business may start
/// conversations with per rolling 24 hours. `None` is unlimited.
pub const TIER_LIMITS: [Option<u64>; 5] =
    [Some(250), Some(2_000), Some(10_000), Some(100_000), None];

/// The tier ladder and when a business moves on it.
#[derive(Clone, Debug, PartialEq)]
pub struct TierRules {
    /// The limit of each tier, lowest first; the last may be `None`
    /// (unlimited).
    pub limits: Vec<Option<u64>>,
    /// A business moves up once it started conversations with at least
    /// this share of its limit over the last 7 days with quality not red.
    pub promote_share: f64,
    /// No two moves within this long.
    pub min_dwell_ms: i64,
}

impl Default for TierRules {
    fn default() -> Self {
        TierRules {
            limits: TIER_LIMITS.to_vec(),
            promote_share: 0.5,
            min_dwell_ms: 6 * 3_600_000,
        }
    }
}

/// A move on the tier ladder, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierMove {
    pub to: usize,
    pub reason: String,
}

impl TierRules {
    /// The limit of tier `tier` (the top tier beyond the ladder).
    pub fn limit(&self, tier: usize) -> Option<u64> {
        self.limits
            .get(tier.min(self.limits.len().saturating_sub(1)))
            .copied()
            .flatten()
    }

    pub fn label(&self, tier: usize) -> String {
        match self.limit(tier) {
            Some(l) => format!("{l} users / 24 h"),
            None => "unlimited".into(),
        }
    }

    /// Where a business on `tier` moves, if anywhere: up one after using
    /// at least [`promote_share`](Self::promote_share) of its limit in
    /// unique users over the last 7 days (`started_7d`) with quality not
    /// red; down one on red. Never twice within `min_dwell_ms`.
    pub fn evaluate(
        &self,
        tier: usize,
        quality: Quality,
        started_7d: u64,
        last_move: Timestamp,
        now: Timestamp,
    ) -> Option<TierMove> {
        if now.0 - last_move.0 < self.min_dwell_ms {
            return None;
        }
        if quality == Quality::Red {
            return (tier > 0).then(|| TierMove {
                to: tier - 1,
                reason: format!(
                    "quality is red: down from {} to {}",
                    self.label(tier),
                    self.label(tier - 1)
                ),
            });
        }
        let limit = self.limit(tier)?;
        let top = self.limits.len().saturating_sub(1);
        if tier >= top {
            return None;
        }
        let needed = (limit as f64 * self.promote_share).ceil() as u64;
        (started_7d >= needed).then(|| TierMove {
            to: tier + 1,
            reason: format!(
                "started conversations with {started_7d} users in 7 days (at least {needed}) with quality {}: up from {} to {}",
                quality.as_str(),
                self.label(tier),
                self.label(tier + 1)
            ),
        })
    }
}

/// Why a business message was refused, with its stable code. The
/// numbers are those of the hosted business APIs for the same failure,
/// where there is one, so that a business's error handling keeps working.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// A business-initiated message to a user who did not opt in to this
    /// business (or, for marketing, to its marketing).
    NotOptedIn,
    /// A free-form message outside the 24-hour customer-service window.
    OutsideServiceWindow,
    /// No approved template of that name, language and version.
    TemplateNotApproved,
    /// The template is paused by an operator.
    TemplatePaused,
    /// The business reached its tier's unique users per 24 hours.
    TierLimitReached,
    /// Quality is red: marketing templates are paused.
    QualityPaused,
    /// More messages per second than the business's limit.
    RateLimited,
    /// The user blocked the business.
    BlockedByUser,
    /// The user muted this category from this business.
    MutedByUser,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::NotOptedIn => "not_opted_in",
            Refusal::OutsideServiceWindow => "outside_service_window",
            Refusal::TemplateNotApproved => "template_not_approved",
            Refusal::TemplatePaused => "template_paused",
            Refusal::TierLimitReached => "tier_limit_reached",
            Refusal::QualityPaused => "quality_paused",
            Refusal::RateLimited => "rate_limited",
            Refusal::BlockedByUser => "blocked_by_user",
            Refusal::MutedByUser => "muted_by_user",
        }
    }

    /// The hosted APIs' number for the same failure.
    pub fn number(self) -> u32 {
        match self {
            Refusal::NotOptedIn => 131_050,
            Refusal::OutsideServiceWindow => 131_047,
            Refusal::TemplateNotApproved => 132_001,
            Refusal::TemplatePaused => 132_015,
            Refusal::TierLimitReached => 131_048,
            Refusal::QualityPaused => 131_049,
            Refusal::RateLimited => 130_429,
            Refusal::BlockedByUser => 131_026,
            Refusal::MutedByUser => 131_051,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Refusal::NotOptedIn => "the user has not opted in to messages (or marketing) from this business",
            Refusal::OutsideServiceWindow => "a free-form message is allowed only within 24 hours of the user's last message to the business; send an approved template",
            Refusal::TemplateNotApproved => "no approved template of this name, language and version",
            Refusal::TemplatePaused => "the template is paused",
            Refusal::TierLimitReached => "the business reached its messaging limit of unique users per 24 hours",
            Refusal::QualityPaused => "the business's quality is red: marketing templates are paused; utility and authentication keep flowing",
            Refusal::RateLimited => "more messages per second than the business's throughput limit",
            Refusal::BlockedByUser => "the user blocked this business",
            Refusal::MutedByUser => "the user muted this category from this business",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        use Refusal::*;
        [
            NotOptedIn,
            OutsideServiceWindow,
            TemplateNotApproved,
            TemplatePaused,
            TierLimitReached,
            QualityPaused,
            RateLimited,
            BlockedByUser,
            MutedByUser,
        ]
        .into_iter()
        .find(|r| r.code() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn bodies_number_their_placeholders_without_gaps() {
        assert_eq!(
            parse_body("Order {{1}} paid: {{2}}. Thanks, {{1}}!").unwrap(),
            2
        );
        assert_eq!(parse_body("No parameters").unwrap(), 0);
        assert!(parse_body("Gap {{1}} {{3}}").is_err());
        assert!(parse_body("Open {{1").is_err());
        assert!(parse_body("Zero {{0}}").is_err());
        assert!(parse_body("Word {{name}}").is_err());
        assert!(parse_body("   ").is_err());
        assert!(parse_body(&"x".repeat(MAX_BODY_CHARS + 1)).is_err());
    }

    #[test]
    fn rendering_checks_count_length_and_shape() {
        let body = "Order {{1}} total {{2}}";
        assert_eq!(
            render(body, &s(&["A-17", "Rp 50.000"])).unwrap(),
            "Order A-17 total Rp 50.000"
        );
        assert_eq!(
            render(body, &s(&["A-17"])).unwrap_err(),
            RenderError::ParamCount {
                expected: 2,
                got: 1
            }
        );
        let long = "x".repeat(MAX_PARAM_CHARS + 1);
        assert_eq!(
            render(body, &[long, "1".into()]).unwrap_err(),
            RenderError::ParamTooLong { index: 1 }
        );
        assert_eq!(
            render(body, &s(&["a", "1\n\nBIG SALE! Click here"])).unwrap_err(),
            RenderError::ParamShape { index: 2 }
        );
        assert_eq!(
            render(body, &s(&["a", " "])).unwrap_err(),
            RenderError::ParamShape { index: 2 }
        );
    }

    #[test]
    fn names_languages_and_display_names() {
        assert!(check_template_name("order_receipt").is_ok());
        assert!(check_template_name("Order").is_err());
        assert!(check_template_name("").is_err());
        for ok in ["en", "id", "en_US", "fil"] {
            assert!(check_language(ok).is_ok(), "{ok}");
        }
        for bad in ["EN", "en_us", "e", "english", "en-US"] {
            assert!(check_language(bad).is_err(), "{bad}");
        }
        assert_eq!(check_display_name("  Toko Sinar ").unwrap(), "Toko Sinar");
        assert!(check_display_name("a\u{7}b").is_err());
        assert!(check_display_name("").is_err());
        assert_eq!(
            check_display_name("<script>x</script>").unwrap(),
            "<script>x</script>"
        );
    }

    #[test]
    fn reviews_move_between_the_right_states() {
        use TemplateStatus as S;
        assert_eq!(Review::Approve.apply(S::Pending).unwrap(), S::Approved);
        assert_eq!(Review::Pause.apply(S::Approved).unwrap(), S::Paused);
        assert_eq!(Review::Resume.apply(S::Paused).unwrap(), S::Approved);
        assert_eq!(Review::Reject.apply(S::Approved).unwrap(), S::Rejected);
        assert!(Review::Pause.apply(S::Pending).is_err());
        assert!(Review::Resume.apply(S::Approved).is_err());
    }

    #[test]
    fn signed_messages_differ_when_any_field_does() {
        let a = TemplateContent {
            business: AccountId::random(),
            name: "order_receipt".into(),
            language: "en".into(),
            version: 1,
            category: Category::Utility,
            body: "Order {{1}}".into(),
        };
        let mut b = a.clone();
        b.category = Category::Marketing;
        assert_ne!(a.signed_message(), b.signed_message());
        let mut c = a.clone();
        c.name = "order_receipt\n5:hello".into();
        assert_ne!(a.signed_message(), c.signed_message());
        assert!(a
            .signed_message()
            .starts_with(b"accord business template v1\n"));
    }

    #[test]
    fn quality_follows_blocks_and_reports_per_delivery() {
        let r = QualityRules::default();
        assert_eq!(r.rate(5, 3, 0).0, Quality::Green, "too few to rate");
        assert_eq!(r.rate(1000, 10, 5).0, Quality::Green);
        assert_eq!(r.rate(1000, 30, 10).0, Quality::Yellow);
        assert_eq!(r.rate(100, 6, 4).0, Quality::Red);
        assert!(r.rate(100, 6, 4).1.contains("6 blocks and 4 reports"));
    }

    #[test]
    fn tiers_move_up_with_volume_and_down_on_red() {
        let r = TierRules::default();
        let t0 = Timestamp(0);
        let later = Timestamp(r.min_dwell_ms);
        assert_eq!(r.evaluate(0, Quality::Green, 124, t0, later), None);
        let up = r.evaluate(0, Quality::Green, 125, t0, later).unwrap();
        assert_eq!(up.to, 1);
        assert!(up.reason.contains("125 users"));
        assert_eq!(
            r.evaluate(0, Quality::Green, 125, t0, Timestamp(1)),
            None,
            "not twice within the dwell time"
        );
        assert_eq!(
            r.evaluate(2, Quality::Red, 10_000, t0, later).unwrap().to,
            1
        );
        assert_eq!(r.evaluate(0, Quality::Red, 0, t0, later), None);
        assert_eq!(r.evaluate(4, Quality::Green, 1_000_000, t0, later), None);
        assert_eq!(r.limit(4), None);
        assert_eq!(r.limit(1), Some(2_000));
    }

    #[test]
    fn refusal_codes_are_stable_and_parse_back() {
        for code in [
            "not_opted_in",
            "outside_service_window",
            "template_not_approved",
            "template_paused",
            "tier_limit_reached",
            "quality_paused",
            "rate_limited",
            "blocked_by_user",
            "muted_by_user",
        ] {
            assert_eq!(Refusal::parse(code).unwrap().code(), code);
        }
    }
}
