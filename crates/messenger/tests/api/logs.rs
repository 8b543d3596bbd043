//! Logs never contain phone numbers, codes or tokens.
//!
//! This test installs the process-wide subscriber (TRACE, into memory),
//! so it lives alone here; other tests running at the same time only add
//! lines to the buffer, and the assertions look for this test's secrets.

use crate::helpers::{assert_api_error, device_info, share, spawn_app, AppOptions};
use accord_domain::{ConsentProfile, Purpose};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

pub(crate) fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            // No timestamps: their digits could be mistaken for a code.
            .without_time()
            .with_writer(Capture(buf.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only global subscriber of this binary");
        buf
    })
    .clone()
}

/// Whether `code` occurs in `log` as a number of its own (not inside a
/// longer run of digits or hex, nor as the fraction of a duration).
fn contains_code(log: &str, code: &str) -> bool {
    log.match_indices(code).any(|(i, _)| {
        let before = log[..i].chars().next_back();
        let after = log[i + code.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[tokio::test(flavor = "current_thread")]
async fn logs_never_contain_numbers_codes_or_tokens() {
    let log = captured_log();
    let app = spawn_app(AppOptions::default()).await;
    let e164 = "+4930901820";
    let national = "030 901820";
    let national_digits = "30901820";
    let mut secrets: Vec<String> = vec![
        e164.into(),
        national.into(),
        national_digits.into(),
        app.admin_token.clone(),
    ];
    let mut codes = Vec::new();

    app.publish(
        ConsentProfile::Whatsapp2016,
        &[Purpose::Ads, Purpose::Product],
    )
    .await;
    let anon = app.anon();
    let started = anon.start_registration(national, Some("DE")).await.unwrap();
    let code = started.dev_code.unwrap();
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_api_error(
        anon.verify_registration(
            started.registration_id,
            wrong,
            &device_info(),
            Some((1, &share(None))),
        )
        .await,
        400,
        "wrong_code",
    );
    let first = anon
        .verify_registration(
            started.registration_id,
            &code,
            &device_info(),
            Some((1, &share(None))),
        )
        .await
        .unwrap();
    codes.push(code);
    let user = app.client_with(&first.token);
    secrets.push(first.token.clone());

    // A second device, through the international format.
    let started = anon.start_registration(e164, None).await.unwrap();
    let code = started.dev_code.unwrap();
    let second = anon
        .verify_registration(started.registration_id, &code, &device_info(), None)
        .await
        .unwrap();
    codes.push(code);
    secrets.push(second.token.clone());

    user.me().await.unwrap();
    user.withdraw(Purpose::Ads).await.unwrap();
    user.grant(Purpose::Product).await.unwrap();
    user.receipt().await.unwrap();
    user.consent_at(app.now().await).await.unwrap();
    let export = user.export().await.unwrap();
    assert_eq!(export["phone_number"], serde_json::json!(e164));
    app.admin.verify_ledger().await.unwrap();
    app.admin
        .admin_consent_at(first.account_id, app.now().await)
        .await
        .unwrap();
    app.client_with(&second.token)
        .delete_account()
        .await
        .unwrap();
    assert_api_error(user.me().await, 401, "unauthorized");

    let text =
        String::from_utf8_lossy(&log.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    assert!(
        text.contains("verification code issued"),
        "the server's own events were not captured"
    );
    assert!(text.contains("consent recorded"));
    assert!(
        text.contains(&first.account_id.to_string()),
        "account ids are logged, so the capture covers these requests"
    );
    for s in &secrets {
        assert!(
            !text.contains(s.as_str()),
            "the log contains a secret ({} characters)",
            s.len()
        );
    }
    for t in [&first.token, &second.token, &app.admin_token] {
        assert!(
            !text.contains(&t[4..]),
            "the log contains a token's random part"
        );
    }
    for c in &codes {
        assert!(
            !contains_code(&text, c),
            "the log contains a verification code"
        );
    }
}
