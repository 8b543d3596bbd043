//! Device information: what the messenger knows of a device, and what it
//! shares with the partner for consenting users.
//!
//! Validated where it enters ([`DeviceInfo::validated`]): at the
//! messenger's registration and again at the partner when it applies a
//! feed batch, so that neither stores what is not device information.
//!
//! - `os`: one of [`KNOWN_OS`] (case-insensitive, stored lowercase).
//! - `os_version`, `app_version`: 1 to 32 of `A-Z a-z 0-9 . _ - +`,
//!   starting with a letter or digit (`15`, `17.4.1`, `UP1A.231005.007`).
//! - `model`: 1 to 64 letters, digits, spaces and `- _ . , ( ) + / ' &`.
//! - `locale`: a BCP 47 shape, `ll[-Xxxx][-RR...]`, at most 35 characters.
//! - `carrier`: MCC+MNC, 5 or 6 digits.
//! - No field may hold a person's identifier: a field, or a run of it,
//!   that parses as a phone number valid in **any** region (through
//!   [`PhoneNumber::parse`]), or a word that parses as an e-mail address,
//!   is refused as [`DeviceInfoError::ContainsIdentifier`]
//!   (`device_info_contains_identifier`).

use crate::identity::{Email, PhoneNumber};
use serde::{Deserialize, Serialize};

/// The operating systems a device may name.
pub const KNOWN_OS: [&str; 4] = ["android", "ios", "web", "desktop"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceInfoError {
    #[error("device info field `{0}` is required")]
    Missing(&'static str),
    #[error("device info field `{0}` is too long (max {1} characters)")]
    TooLong(&'static str, usize),
    #[error("device info field `{0}` has control characters")]
    BadCharacters(&'static str),
    #[error("carrier code must be MCC+MNC, 5 or 6 digits")]
    BadCarrier,
    #[error("os must be one of android, ios, web, desktop")]
    UnknownOs,
    #[error("device info field `{0}` does not have its format")]
    BadFormat(&'static str),
    #[error("device info field `{0}` holds a phone number or an e-mail address")]
    ContainsIdentifier(&'static str),
}

impl DeviceInfoError {
    /// The stable error code of the HTTP answers.
    pub fn code(&self) -> &'static str {
        match self {
            DeviceInfoError::ContainsIdentifier(_) => "device_info_contains_identifier",
            _ => "invalid_device_info",
        }
    }
}

/// OS, model and other phone characteristics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// e.g. `android`, `ios`.
    pub os: String,
    pub os_version: String,
    /// e.g. `Pixel 8`.
    pub model: String,
    pub app_version: String,
    /// BCP 47 tag, e.g. `id-ID`.
    pub locale: String,
    /// MCC+MNC of the SIM's carrier, e.g. `51010`.
    #[serde(default)]
    pub carrier: Option<String>,
}

impl DeviceInfo {
    /// Checks and trims every field (see the module docs).
    pub fn validated(mut self) -> Result<Self, DeviceInfoError> {
        fn field(v: &mut String, name: &'static str, max: usize) -> Result<(), DeviceInfoError> {
            *v = v.trim().to_owned();
            if v.is_empty() {
                return Err(DeviceInfoError::Missing(name));
            }
            if v.chars().count() > max {
                return Err(DeviceInfoError::TooLong(name, max));
            }
            if v.chars().any(char::is_control) {
                return Err(DeviceInfoError::BadCharacters(name));
            }
            if holds_identifier(v) {
                return Err(DeviceInfoError::ContainsIdentifier(name));
            }
            Ok(())
        }
        fn format(
            v: &str,
            name: &'static str,
            ok: impl Fn(char) -> bool,
        ) -> Result<(), DeviceInfoError> {
            let first_ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
            if first_ok && v.chars().all(ok) {
                Ok(())
            } else {
                Err(DeviceInfoError::BadFormat(name))
            }
        }
        let version = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+');
        field(&mut self.os, "os", 32)?;
        self.os = self.os.to_ascii_lowercase();
        if !KNOWN_OS.contains(&self.os.as_str()) {
            return Err(DeviceInfoError::UnknownOs);
        }
        field(&mut self.os_version, "os_version", 32)?;
        format(&self.os_version, "os_version", version)?;
        field(&mut self.model, "model", 64)?;
        format(&self.model, "model", |c| {
            c.is_alphanumeric()
                || matches!(
                    c,
                    ' ' | '-' | '_' | '.' | ',' | '(' | ')' | '+' | '/' | '\'' | '&'
                )
        })?;
        field(&mut self.app_version, "app_version", 32)?;
        format(&self.app_version, "app_version", version)?;
        field(&mut self.locale, "locale", 35)?;
        if !is_locale(&self.locale) {
            return Err(DeviceInfoError::BadFormat("locale"));
        }
        if let Some(c) = &mut self.carrier {
            *c = c.trim().to_owned();
            if c.is_empty() {
                self.carrier = None;
            } else if !(5..=6).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DeviceInfoError::BadCarrier);
            }
        }
        Ok(self)
    }
}

/// `ll` or `lll`, then subtags of 1 to 8 letters or digits (BCP 47's shape).
fn is_locale(s: &str) -> bool {
    let mut parts = s.split(['-', '_']);
    let lang = parts.next().unwrap_or_default();
    (2..=3).contains(&lang.len())
        && lang.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Whether `v` holds an e-mail address (a word that parses as one) or a
/// phone number: the whole value, or a run of digits and the separators
/// people write numbers with (`+ - ( ) space`) holding at least 7 digits
/// (or with dots, at least 10),
/// that parses as a number valid in any region.
pub fn holds_identifier(v: &str) -> bool {
    if v.contains('@')
        && v.split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '<' | '>' | '(' | ')'))
            .any(|w| Email::parse(w).is_ok())
    {
        return true;
    }
    // Runs of digits and separators; with dots too (`0812.3456.7890`)
    // only from 10 digits on, so that versions (`10.0.19045`) pass.
    let runs = |dots: bool| {
        let mut out: Vec<String> = Vec::new();
        let mut run = String::new();
        for c in v.chars().chain(std::iter::once('#')) {
            if c.is_ascii_digit() || matches!(c, '+' | '-' | '(' | ')' | ' ') || (dots && c == '.')
            {
                run.push(c);
            } else {
                out.push(std::mem::take(&mut run));
            }
        }
        out
    };
    let digits = |r: &str| r.bytes().filter(u8::is_ascii_digit).count();
    runs(false)
        .into_iter()
        .filter(|r| digits(r) >= 7)
        .chain(runs(true).into_iter().filter(|r| digits(r) >= 10))
        .map(|r| {
            r.trim_matches(|c: char| !c.is_ascii_digit() && c != '+')
                .to_owned()
        })
        .any(|r| is_phone_anywhere(&r))
}

/// Whether `raw` is a valid number internationally or in any region.
fn is_phone_anywhere(raw: &str) -> bool {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if PhoneNumber::parse(&format!("+{digits}"), None).is_ok() {
        return true;
    }
    phonenumber::metadata::DATABASE
        .iter()
        .filter_map(|m| {
            let id = m.id();
            (id.len() == 2).then_some(id)
        })
        .any(|region| PhoneNumber::parse(raw, Some(region)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> DeviceInfo {
        DeviceInfo {
            os: " android ".into(),
            os_version: "15".into(),
            model: "Pixel 8".into(),
            app_version: "2.26.1".into(),
            locale: "id-ID".into(),
            carrier: Some("51010".into()),
        }
    }

    #[test]
    fn trims_and_checks() {
        assert_eq!(info().validated().unwrap().os, "android");
        let mut bad = info();
        bad.carrier = Some("telkomsel".into());
        assert_eq!(bad.validated(), Err(DeviceInfoError::BadCarrier));
        let mut empty = info();
        empty.model = "  ".into();
        assert_eq!(empty.validated(), Err(DeviceInfoError::Missing("model")));
    }

    #[test]
    fn real_device_info_passes() {
        for (os, version, model) in [
            ("Android", "15", "Pixel 8"),
            ("ios", "17.4.1", "iPhone15,2"),
            ("android", "UP1A.231005.007", "SM-S918B"),
            ("desktop", "10.0.19045", "Dell XPS 13 (9310)"),
            ("web", "unknown", "Firefox 128"),
            ("android", "14", "Redmi Note 12 Pro+ 5G"),
        ] {
            let d = DeviceInfo {
                os: os.into(),
                os_version: version.into(),
                model: model.into(),
                ..info()
            };
            let v = d.validated().unwrap_or_else(|e| panic!("{model}: {e}"));
            assert_eq!(v.os, os.to_ascii_lowercase());
        }
    }

    #[test]
    fn unknown_os_bad_formats_and_lengths_are_refused() {
        let with = |f: fn(&mut DeviceInfo)| {
            let mut d = info();
            f(&mut d);
            d.validated()
        };
        assert_eq!(
            with(|d| d.os = "linux".into()),
            Err(DeviceInfoError::UnknownOs)
        );
        assert_eq!(
            with(|d| d.os_version = "15; rm".into()),
            Err(DeviceInfoError::BadFormat("os_version"))
        );
        assert_eq!(
            with(|d| d.app_version = "v 2".into()),
            Err(DeviceInfoError::BadFormat("app_version"))
        );
        assert_eq!(
            with(|d| d.model = "<script>".into()),
            Err(DeviceInfoError::BadFormat("model"))
        );
        assert_eq!(
            with(|d| d.locale = "indonesian please".into()),
            Err(DeviceInfoError::BadFormat("locale"))
        );
        assert_eq!(
            with(|d| d.model = "x".repeat(65)),
            Err(DeviceInfoError::TooLong("model", 64))
        );
        assert_eq!(with(|d| d.locale = "en".into()).unwrap().locale, "en");
        assert_eq!(
            with(|d| d.os = "linux".into()).unwrap_err().code(),
            "invalid_device_info"
        );
    }

    type Setter = fn(&mut DeviceInfo, &str);

    #[test]
    fn phone_numbers_and_email_addresses_are_refused_in_any_field() {
        let cases: [(&'static str, Setter); 4] = [
            ("model", |d, v| d.model = v.into()),
            ("os_version", |d, v| d.os_version = v.into()),
            ("app_version", |d, v| d.app_version = v.into()),
            ("model", |d, v| d.model = format!("Pixel {v}")),
        ];
        for number in [
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "+49 30 901820",
            "(202) 555-0143",
            "+1-202-555-0143",
        ] {
            for (name, set) in &cases {
                let mut d = info();
                set(&mut d, number);
                let e = d.validated().unwrap_err();
                if e != DeviceInfoError::BadFormat(name) {
                    assert_eq!(e, DeviceInfoError::ContainsIdentifier(name), "{number}");
                    assert_eq!(e.code(), "device_info_contains_identifier");
                }
            }
            // Every field the partner shows in clear, with a number it can hold.
            let mut d = info();
            d.model = number.into();
            assert_eq!(
                d.validated(),
                Err(DeviceInfoError::ContainsIdentifier("model")),
                "{number}"
            );
        }
        let mut d = info();
        d.model = "alice@example.com".into();
        assert_eq!(
            d.validated(),
            Err(DeviceInfoError::ContainsIdentifier("model"))
        );
        let mut d = info();
        d.locale = "bob@example.org".into();
        assert_eq!(
            d.validated(),
            Err(DeviceInfoError::ContainsIdentifier("locale"))
        );
        let mut d = info();
        d.os_version = "6281234567890".into();
        assert_eq!(
            d.validated().unwrap_err().code(),
            "device_info_contains_identifier"
        );
    }
}
