//! A device's session on disk: which server, and its bearer token.
//! The file is created with mode 0600; the token is the device's secret.

use crate::error::{CliError, CliResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Serialize, Deserialize)]
pub struct Session {
    pub server: String,
    pub token: String,
    pub account_id: String,
    pub device_id: String,
    /// This device's key-service credential (contact discovery).
    #[serde(default)]
    pub keyd_token: Option<String>,
}

pub fn default_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".accord")
        .join("session.json")
}

impl Session {
    pub fn load(path: &Path) -> CliResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|_| {
            CliError::Input(format!(
                "no session at {}: run `accord register --phone ...` first (or pass --session)",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|e| {
            CliError::Input(format!("session file {} is not valid: {e}", path.display()))
        })
    }

    pub fn save(&self, path: &Path) -> CliResult {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| CliError::Internal(e.into()))?;
        }
        write_private(
            path,
            serde_json::to_string_pretty(self)
                .expect("session serialises")
                .as_bytes(),
        )
    }

    pub fn client(&self) -> accord_client::Client {
        accord_client::Client::new(&self.server).with_token(&self.token)
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> CliResult {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|e| CliError::Internal(e.into()))?;
    f.write_all(bytes).map_err(|e| CliError::Internal(e.into()))
}
