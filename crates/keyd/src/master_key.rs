//! The master key that seals the OPRF keys at rest.
//!
//! By default it lives next to the database, in
//! `<data-dir>/keyd.master.key`: 64 hex digits, created with mode 0600 on
//! first start. An operator who keeps it elsewhere (a secret manager, a
//! mounted secret) passes it explicitly instead. Either way it is never
//! logged, never returned, and never written into the database, so a copy
//! of the database alone reveals no OPRF key.

use crate::error::KeydError;
use accord_crypto::sealed::{MasterKey, MASTER_KEY_LEN};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// The file name inside the data directory.
pub const MASTER_KEY_FILE: &str = "keyd.master.key";

/// Reads `<dir>/keyd.master.key`, creating the directory and a fresh key
/// (mode 0600) if there is none. Refuses a file that others may read.
pub fn load_or_create_master_key(dir: &Path) -> Result<MasterKey, KeydError> {
    let path = dir.join(MASTER_KEY_FILE);
    match read_key_file(&path) {
        Ok(key) => return Ok(key),
        Err(ReadError::Missing) => {}
        Err(ReadError::Bad(e)) => return Err(e),
    }
    fs::create_dir_all(dir).map_err(|e| io_error("cannot create the data directory", &e))?;
    let key = MasterKey::generate();
    let text = Zeroizing::new(format!("{}\n", hex::encode(*key.to_bytes())));
    // Written to a private temporary file, then linked into place, so a
    // concurrent starter never reads a half-written key and never replaces
    // one that another starter created first.
    let mut tmp = tempfile::Builder::new()
        .prefix(".keyd.master.key.")
        .tempfile_in(dir)
        .map_err(|e| io_error("cannot create the master key file", &e))?;
    restrict(tmp.as_file())?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_error("cannot write the master key file", &e))?;
    match fs::hard_link(tmp.path(), &path) {
        Ok(()) => {
            tracing::info!(file = %path.display(), "created a new key service master key");
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match read_key_file(&path) {
            Ok(key) => Ok(key),
            Err(ReadError::Missing) => Err(KeydError::MasterKey("master key file vanished".into())),
            Err(ReadError::Bad(e)) => Err(e),
        },
        Err(e) => Err(io_error("cannot create the master key file", &e)),
    }
}

/// Parses a master key from its file format (64 hex digits, surrounding
/// whitespace ignored).
pub fn parse_master_key(text: &str) -> Result<MasterKey, KeydError> {
    let hex_text = text.trim();
    if hex_text.len() != 2 * MASTER_KEY_LEN {
        return Err(KeydError::MasterKey(format!(
            "expected {} hex digits",
            2 * MASTER_KEY_LEN
        )));
    }
    let bytes =
        Zeroizing::new(hex::decode(hex_text).map_err(|_| KeydError::MasterKey("not hex".into()))?);
    MasterKey::from_bytes(&bytes).map_err(|e| KeydError::MasterKey(e.to_string()))
}

enum ReadError {
    Missing,
    Bad(KeydError),
}

fn read_key_file(path: &Path) -> Result<MasterKey, ReadError> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(e) => {
            return Err(ReadError::Bad(io_error(
                "cannot open the master key file",
                &e,
            )))
        }
    };
    check_private(&file).map_err(ReadError::Bad)?;
    let mut text = Zeroizing::new(String::new());
    Read::by_ref(&mut file)
        .take(1024)
        .read_to_string(&mut text)
        .map_err(|e| ReadError::Bad(io_error("cannot read the master key file", &e)))?;
    parse_master_key(&text)
        .map_err(|e| ReadError::Bad(KeydError::MasterKey(format!("{}: {e}", path.display()))))
}

fn io_error(what: &str, e: &io::Error) -> KeydError {
    KeydError::MasterKey(format!("{what}: {e}"))
}

#[cfg(unix)]
fn restrict(file: &fs::File) -> Result<(), KeydError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_error("cannot restrict the master key file", &e))
}

#[cfg(not(unix))]
fn restrict(_: &fs::File) -> Result<(), KeydError> {
    Ok(())
}

#[cfg(unix)]
fn check_private(file: &fs::File) -> Result<(), KeydError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| io_error("cannot stat the master key file", &e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeydError::MasterKey(format!(
            "the master key file is accessible to other users (mode {:o}); run `chmod 600` on it",
            mode & 0o777
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &fs::File) -> Result<(), KeydError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data");
        let a = load_or_create_master_key(&sub).unwrap();
        let b = load_or_create_master_key(&sub).unwrap();
        assert_eq!(*a.to_bytes(), *b.to_bytes());
        let path = sub.join(MASTER_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            let err = load_or_create_master_key(&sub).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{err}");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(&sub).unwrap().count(), 1);
        fs::write(&path, "not a key").unwrap();
        let err = load_or_create_master_key(&sub).unwrap_err().to_string();
        assert!(err.contains("hex digits"), "{err}");
    }

    #[test]
    fn parse_accepts_hex_only_and_errors_carry_no_key() {
        let hex_key = "ab".repeat(32);
        assert_eq!(
            *parse_master_key(&format!(" {hex_key}\n"))
                .unwrap()
                .to_bytes(),
            [0xab; 32]
        );
        let bad = format!("{}zz", &hex_key[..62]);
        let err = parse_master_key(&bad).unwrap_err().to_string();
        assert!(!err.contains(&hex_key[..62]));
        assert!(parse_master_key(&hex_key[..60]).is_err());
    }
}
