//! Device information: what the messenger knows of a device, and what it
//! shares with the partner for consenting users.

use serde::{Deserialize, Serialize};

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
    /// Checks and trims every field.
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
            Ok(())
        }
        field(&mut self.os, "os", 32)?;
        field(&mut self.os_version, "os_version", 32)?;
        field(&mut self.model, "model", 64)?;
        field(&mut self.app_version, "app_version", 32)?;
        field(&mut self.locale, "locale", 35)?;
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
}
