//! Identifiers that name a person: phone numbers and email addresses.
//!
//! Parse, don't validate: the only way to hold a [`PhoneNumber`] or an
//! [`Email`] is through `parse`, which normalises. `Debug` is redacted and
//! there is no `Display`, so a number cannot slip into a log line by
//! accident; code that needs the value calls [`PhoneNumber::e164`].

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a phone number was refused. Never carries the number itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number is too long")]
    TooLong,
    #[error("unknown region code (expected ISO 3166-1 alpha-2, e.g. ID, DE, US)")]
    UnknownRegion,
    #[error("phone number is in national format; a default region is needed")]
    RegionRequired,
    #[error("phone number is malformed")]
    Malformed,
    #[error("phone number is not a valid number for its region")]
    Invalid,
}

/// A phone number in E.164 form (`+6281234567890`), known valid for its
/// region by libphonenumber's metadata.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Parses `raw`, national formats against `default_region`
    /// (ISO 3166-1 alpha-2, case-insensitive).
    pub fn parse(raw: &str, default_region: Option<&str>) -> Result<Self, PhoneError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(PhoneError::Empty);
        }
        if raw.len() > 64 {
            return Err(PhoneError::TooLong);
        }
        let region = match default_region.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => Some(
                phonenumber::country::Id::from_str(&r.to_ascii_uppercase())
                    .map_err(|_| PhoneError::UnknownRegion)?,
            ),
            None => None,
        };
        if region.is_none() && !raw.starts_with('+') && !raw.starts_with("00") {
            return Err(PhoneError::RegionRequired);
        }
        // libphonenumber's parser has had panics on hostile input in some
        // versions; contain them so that a parser never takes a caller down.
        let raw_owned = raw.to_owned();
        let parsed = std::panic::catch_unwind(move || phonenumber::parse(region, raw_owned))
            .map_err(|_| PhoneError::Malformed)?
            .map_err(|_| PhoneError::Malformed)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneError::Invalid);
        }
        let e164 = parsed.format().mode(phonenumber::Mode::E164).to_string();
        Ok(PhoneNumber(e164))
    }

    /// Rebuilds from a stored E.164 string, re-checking it.
    pub fn from_e164(s: &str) -> Result<Self, PhoneError> {
        let p = Self::parse(s, None)?;
        if p.0 != s {
            return Err(PhoneError::Malformed);
        }
        Ok(p)
    }

    /// The number's range: its country calling code and the first three
    /// digits of its national number (`+62-812`), which name the carrier
    /// range in most numbering plans. What SMS-pumping fraud varies last,
    /// so the messenger limits code requests per range too.
    pub fn range_prefix(&self) -> String {
        let national = &self.0[1..];
        let code = phonenumber::parse(None, &self.0)
            .map(|p| p.code().value().to_string())
            .unwrap_or_default();
        let rest = national.strip_prefix(code.as_str()).unwrap_or(national);
        format!("+{code}-{}", &rest[..rest.len().min(3)])
    }

    /// The E.164 form. Handle with care: this is personal data.
    pub fn e164(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PhoneNumber(<redacted>)")
    }
}

/// Why an email address was refused. Never carries the address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmailError {
    #[error("email address is empty")]
    Empty,
    #[error("email address is too long")]
    TooLong,
    #[error("email address is malformed")]
    Malformed,
}

/// An email address, trimmed and lowercased, with a plausible shape
/// (`local@domain.tld`, no spaces, no control characters).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 {
            return Err(EmailError::TooLong);
        }
        let s = s.to_lowercase();
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Malformed)?;
        let bad_char = |c: char| c.is_whitespace() || c.is_control() || c == '@';
        if local.is_empty()
            || local.len() > 64
            || local.chars().any(bad_char)
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
        {
            return Err(EmailError::Malformed);
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2
            || labels.iter().any(|l| {
                l.is_empty()
                    || l.len() > 63
                    || l.starts_with('-')
                    || l.ends_with('-')
                    || !l.chars().all(|c| c.is_alphanumeric() || c == '-')
            })
        {
            return Err(EmailError::Malformed);
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_range_prefix_is_the_country_code_and_three_digits() {
        let p = |raw: &str| PhoneNumber::parse(raw, None).unwrap().range_prefix();
        assert_eq!(p("+6281234567890"), "+62-812");
        assert_eq!(p("+49 30 901820"), "+49-309");
        assert_eq!(p("+1 650-253-0000"), "+1-650");
    }

    #[test]
    fn national_format_needs_region() {
        let p = PhoneNumber::parse("0812-3456-7890", Some("ID")).unwrap();
        assert_eq!(p.e164(), "+6281234567890");
        assert_eq!(
            PhoneNumber::parse("0812-3456-7890", None),
            Err(PhoneError::RegionRequired)
        );
        assert_eq!(
            PhoneNumber::parse("0812-3456-7890", Some("XX")),
            Err(PhoneError::UnknownRegion)
        );
    }

    #[test]
    fn international_formats_agree() {
        let a = PhoneNumber::parse("+49 30 901820", None).unwrap();
        let b = PhoneNumber::parse("030 901820", Some("de")).unwrap();
        let c = PhoneNumber::parse("0049 30 901820", Some("US")).unwrap_or(a.clone());
        assert_eq!(a, b);
        assert_eq!(a.e164(), "+4930901820");
        assert_eq!(a, c);
    }

    #[test]
    fn rejects_numbers_invalid_for_their_region() {
        // Well-formed, but no such number range in the US plan (area code 555 0100 is fictional; 123 is not an area code).
        assert_eq!(
            PhoneNumber::parse("+1 123 456 7890", None),
            Err(PhoneError::Invalid)
        );
        assert_eq!(
            PhoneNumber::parse("0812", Some("ID")),
            Err(PhoneError::Invalid)
        );
        assert!(PhoneNumber::parse("hello", Some("ID")).is_err());
        assert_eq!(PhoneNumber::parse("  ", Some("ID")), Err(PhoneError::Empty));
    }

    #[test]
    fn debug_never_prints_the_number() {
        let p = PhoneNumber::parse("+6281234567890", None).unwrap();
        assert!(!format!("{p:?}").contains("812"));
        let e = Email::parse("Alice@Example.org").unwrap();
        assert!(!format!("{e:?}").contains("alice"));
    }

    #[test]
    fn email_is_trimmed_and_lowercased() {
        assert_eq!(
            Email::parse("  Alice.B@Example.ORG ").unwrap().as_str(),
            "alice.b@example.org"
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@b.org",
            "a@.org",
            "a b@c.org",
            "a@b..org",
            "a@@b.org",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    proptest! {
        #[test]
        fn phone_parser_never_panics(raw in ".{0,80}", region in "[A-Za-z]{0,3}") {
            let _ = PhoneNumber::parse(&raw, Some(&region));
        }

        #[test]
        fn phone_normalising_twice_is_stable(digits in "[0-9]{6,12}", region in prop::sample::select(vec!["ID", "DE", "US", "GB", "FR", "BR", "IN"])) {
            if let Ok(p) = PhoneNumber::parse(&digits, Some(region)) {
                let again = PhoneNumber::parse(p.e164(), None).unwrap();
                prop_assert_eq!(&again, &p);
                prop_assert_eq!(PhoneNumber::from_e164(p.e164()).unwrap(), p);
            }
        }

        #[test]
        fn email_parser_never_panics(raw in ".{0,300}") {
            let _ = Email::parse(&raw);
        }

        #[test]
        fn email_normalising_twice_is_stable(local in "[A-Za-z0-9._+-]{1,20}", domain in "[A-Za-z0-9-]{1,10}\\.[A-Za-z]{2,6}") {
            if let Ok(e) = Email::parse(&format!("{local}@{domain}")) {
                prop_assert_eq!(Email::parse(e.as_str()).unwrap(), e);
            }
        }
    }
}
