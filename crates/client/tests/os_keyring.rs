//! [`KeySource::OsKeyring`] against a real OS keyring: on Linux the
//! freedesktop Secret Service of the D-Bus session bus. `scripts/test` runs
//! the suite under `scripts/with-keyring` (a private session bus with an
//! unlocked gnome-keyring-daemon). Without a reachable keyring this test
//! fails, unless `ACCORD_SKIP_KEYRING_TESTS=1` says to skip it.
//!
//! The entries it makes are under a service name of its own, removed at
//! the end.

use std::path::Path;

use accord_client::messaging::{Device, KeySource, MessagingError};
use accord_domain::{AccountId, DeviceId};

fn skipped() -> bool {
    let skip = std::env::var("ACCORD_SKIP_KEYRING_TESTS").is_ok_and(|v| v == "1");
    if skip {
        eprintln!("ACCORD_SKIP_KEYRING_TESTS=1: the OS keyring test is skipped");
    }
    skip
}

/// Removes the test's keyring entries, even when an assertion fails.
struct Cleanup(Vec<(String, String)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (service, user) in &self.0 {
            if let Ok(e) = keyring::Entry::new(service, user) {
                let _ = e.delete_credential();
            }
        }
    }
}

fn key_source_error(r: Result<Device, MessagingError>) -> String {
    match r {
        Err(MessagingError::KeySource(m)) => m,
        other => panic!("expected a key source error, got {other:?}"),
    }
}

fn open(path: &Path, service: &str, user: &str) -> Result<Device, MessagingError> {
    Device::open(
        path,
        &KeySource::OsKeyring {
            service: service.into(),
            user: user.into(),
        },
    )
}

#[test]
fn state_sealed_under_a_key_in_the_os_keyring() {
    if skipped() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let service = format!("accord-test-{}", uuid::Uuid::new_v4());
    let (account, device) = (AccountId::random(), DeviceId::random());
    let user = device.to_string();
    let _cleanup = Cleanup(vec![(service.clone(), user.clone())]);
    let source = KeySource::OsKeyring {
        service: service.clone(),
        user: user.clone(),
    };

    // A new state: a random key goes into the keyring, the state file
    // names the entry only.
    let created = Device::open_or_create(&path, &source, account, device).unwrap_or_else(|e| {
        panic!(
            "cannot create a device state with the OS keyring: {e}\n\
             Run the tests under scripts/with-keyring (a private Secret Service), \
             or set ACCORD_SKIP_KEYRING_TESTS=1 to skip this test."
        )
    });
    assert_eq!(created.device_id(), device);
    drop(created);
    let entry = keyring::Entry::new(&service, &user).unwrap();
    let stored = entry.get_password().expect("the key is in the keyring");
    assert_eq!(stored.len(), 43, "base64 of 32 bytes, unpadded");
    let state = std::fs::read_to_string(&path).unwrap();
    let kdf: serde_json::Value =
        serde_json::from_str::<serde_json::Value>(&state).unwrap()["kdf"].clone();
    assert_eq!(
        kdf,
        serde_json::json!({"kind": "os_keyring", "service": service, "user": user})
    );
    assert!(!state.contains(&stored), "the key is not in the state file");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|f| f.starts_with("state.json")),
        "no key file beside the state: {files:?}"
    );

    // Reopened with the key read back from the keyring, twice.
    for _ in 0..2 {
        let d = Device::open_or_create(&path, &source, account, device).unwrap();
        assert_eq!((d.account_id(), d.device_id()), (account, device));
    }

    // Another entry (another device's user) does not open this state, and
    // says which entry the state needs.
    let other = DeviceId::random().to_string();
    let e = key_source_error(open(&path, &service, &other));
    assert!(e.contains(&user) && e.contains(&other), "{e}");
    // Another kind of key source is a mismatch.
    assert!(matches!(
        Device::open(&path, &KeySource::KeyFile(dir.path().join("key"))),
        Err(MessagingError::KeySourceMismatch(_))
    ));

    // Another key under the same entry is a wrong key; a value that is not
    // a key is refused without being shown.
    entry
        .set_password("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .unwrap();
    assert!(matches!(
        open(&path, &service, &user),
        Err(MessagingError::WrongKey)
    ));
    entry.set_password("not a key, surely").unwrap();
    let e = key_source_error(open(&path, &service, &user));
    assert!(
        e.contains("does not hold a key") && !e.contains("surely"),
        "{e}"
    );
    entry.set_password(&stored).unwrap();
    open(&path, &service, &user).unwrap();

    // The entry deleted: a clear error that names it, never the key.
    entry.delete_credential().unwrap();
    let e = key_source_error(open(&path, &service, &user));
    assert!(e.contains("has no entry") && e.contains(&user), "{e}");
    assert!(!e.contains(&stored), "{e}");
    // The state is untouched: putting the key back opens it again.
    entry.set_password(&stored).unwrap();
    open(&path, &service, &user).unwrap();
    entry.delete_credential().unwrap();

    // No keyring service at all (an unreachable session bus): a clear
    // error too, and no state is written. This test binary runs only this
    // test, so changing the environment here touches no other test.
    #[cfg(target_os = "linux")]
    {
        let bus = std::env::var_os("DBUS_SESSION_BUS_ADDRESS");
        std::env::set_var(
            "DBUS_SESSION_BUS_ADDRESS",
            format!("unix:path={}", dir.path().join("no-bus").display()),
        );
        let path2 = dir.path().join("state2.json");
        let r = Device::create(&path2, &source, account, device);
        match bus {
            Some(b) => std::env::set_var("DBUS_SESSION_BUS_ADDRESS", b),
            None => std::env::remove_var("DBUS_SESSION_BUS_ADDRESS"),
        }
        let e = key_source_error(r);
        assert!(e.contains("cannot reach the OS keyring"), "{e}");
        assert!(!path2.exists());
    }
}
