//! The key directory's two secrets, each in a file of its own under the
//! key directory (by default the data directory): 64 hex digits, created
//! with mode 0600 on first start, never logged, never in the database.
//!
//! - the VRF key: it maps account ids to the directory's labels, so an
//!   auditor learns nothing from them; it must never change, or every
//!   label would move;
//! - the root key (ed25519): it signs each epoch's root.

use super::KtError;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

pub const VRF_KEY_FILE: &str = "messenger.kt-vrf.key";
pub const ROOT_KEY_FILE: &str = "messenger.kt-root.key";

type Secret = Zeroizing<[u8; 32]>;

/// Reads both keys, creating the missing ones.
pub(super) fn load_or_create(dir: &Path) -> Result<(Secret, Secret), KtError> {
    fs::create_dir_all(dir).map_err(|e| err("cannot create the key directory", &e))?;
    Ok((
        one(&dir.join(VRF_KEY_FILE))?,
        one(&dir.join(ROOT_KEY_FILE))?,
    ))
}

fn err(what: &str, e: &io::Error) -> KtError {
    KtError::Keys(format!("{what}: {e}"))
}

fn one(path: &Path) -> Result<Secret, KtError> {
    match read(path) {
        Ok(k) => return Ok(k),
        Err(None) => {}
        Err(Some(e)) => return Err(e),
    }
    let mut key = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key[..]);
    let text = Zeroizing::new(format!("{}\n", hex::encode(key.as_ref())));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => {
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| err("cannot write a key directory key", &e))?;
            tracing::info!(file = %path.display(), "created a key directory key");
            Ok(key)
        }
        // Another starter made it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path).map_err(|e| {
            e.unwrap_or_else(|| KtError::Keys("a key directory key file vanished".into()))
        }),
        Err(e) => Err(err("cannot create a key directory key", &e)),
    }
}

/// `Err(None)`: there is no file.
fn read(path: &Path) -> Result<Secret, Option<KtError>> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(err("cannot open a key directory key", &e))),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file
            .metadata()
            .map_err(|e| Some(err("cannot read a key directory key", &e)))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(Some(KtError::Keys(format!(
                "{} may be read by others (mode {:o}); make it 0600",
                path.display(),
                mode & 0o777
            ))));
        }
    }
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)
        .map_err(|e| Some(err("cannot read a key directory key", &e)))?;
    let bytes = Zeroizing::new(
        hex::decode(text.trim())
            .map_err(|_| Some(KtError::Keys(format!("{} is not hex", path.display()))))?,
    );
    let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
        Some(KtError::Keys(format!(
            "{} must hold 64 hex digits",
            path.display()
        )))
    })?;
    Ok(Zeroizing::new(key))
}
