//! `accord msg`: end-to-end encrypted messages, sent and received as this
//! device's client would, through `accord_client::messaging`.
//!
//! The device's Olm state lives next to its session file
//! (`<session>.e2e.json`), sealed under a random key file
//! (`<session>.e2e.key`, mode 0600) unless `--passphrase-file` names a
//! passphrase to derive the key from, or `--os-keyring` keeps a random key
//! in the OS keyring (service `accord`, user the device id).

use super::SessionArgs;
use crate::error::{CliError, CliResult};
use crate::session::Session;
use accord_client::messaging::{
    ClientMessageId, Device, Event, KeySource, ListenEnd, ListenOptions, MessagingError,
    PlaintextKind, Recipient, Transport, MAX_RECEIPT_IDS,
};
use accord_client::Client;
use accord_domain::{AccountId, DeviceId, PhoneNumber};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// This device: its session, and where its end-to-end state and key are.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    #[command(flatten)]
    pub s: SessionArgs,
    #[command(flatten)]
    pub e2e: E2eArgs,
}

/// Where a device's end-to-end state is and what seals it: the same
/// options for `accord register` (which creates the state) and every
/// `accord msg` command (which opens it).
#[derive(clap::Args, Debug, Clone)]
pub struct E2eArgs {
    /// This device's end-to-end state file (default: `<session>.e2e.json`
    /// beside the session file).
    #[arg(long, env = "ACCORD_E2E_STATE")]
    pub state: Option<PathBuf>,
    /// Seal the state under a key derived (Argon2id) from the passphrase in
    /// this file.
    #[arg(long, env = "ACCORD_PASSPHRASE_FILE", conflicts_with = "key_file")]
    pub passphrase_file: Option<PathBuf>,
    /// Seal the state under the random key in this file, created with mode
    /// 0600 when the state is new (default: `<session>.e2e.key`).
    #[arg(long, env = "ACCORD_E2E_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Seal the state under a random key kept in the OS keyring (service
    /// `accord`, user the device id), stored there when the state is new:
    /// the macOS Keychain, the Windows Credential Manager, or the Secret
    /// Service (GNOME Keyring, KWallet) of the desktop session on Linux.
    /// Not with --passphrase-file or --key-file.
    // Checked in `check`, not with clap's `conflicts_with`: clap would count
    // `ACCORD_OS_KEYRING=0` as present and refuse `--key-file` beside it.
    #[arg(
        long,
        env = "ACCORD_OS_KEYRING",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub os_keyring: bool,
}

impl E2eArgs {
    /// Refuses options that cannot go together.
    pub fn check(&self) -> CliResult {
        if self.os_keyring && (self.passphrase_file.is_some() || self.key_file.is_some()) {
            return Err(CliError::Input(
                "--os-keyring (ACCORD_OS_KEYRING) cannot be used with --passphrase-file or --key-file (ACCORD_PASSPHRASE_FILE, ACCORD_E2E_KEY_FILE)".into(),
            ));
        }
        Ok(())
    }

    /// The state file of the device whose session is at `session_path`.
    pub fn state_path(&self, session_path: &Path) -> PathBuf {
        self.state
            .clone()
            .unwrap_or_else(|| session_path.with_extension("e2e.json"))
    }

    fn source(&self, session_path: &Path, device: DeviceId) -> KeySource {
        match (&self.passphrase_file, &self.key_file, self.os_keyring) {
            (Some(p), _, _) => KeySource::PassphraseFile(p.clone()),
            (None, Some(k), _) => KeySource::KeyFile(k.clone()),
            (None, None, true) => KeySource::OsKeyring {
                service: "accord".into(),
                user: device.to_string(),
            },
            (None, None, false) => KeySource::KeyFile(session_path.with_extension("e2e.key")),
        }
    }

    /// The device state of `session` (at `session_path`), created on first
    /// use. The caller has run [`E2eArgs::check`].
    pub fn open_device(&self, session_path: &Path, session: &Session) -> CliResult<Device> {
        let account = AccountId::parse(&session.account_id)
            .ok_or_else(|| CliError::Input("the session file has no valid account id".into()))?;
        let device = DeviceId::parse(&session.device_id)
            .ok_or_else(|| CliError::Input("the session file has no valid device id".into()))?;
        Device::open_or_create(
            &self.state_path(session_path),
            &self.source(session_path, device),
            account,
            device,
        )
        .map_err(cli_error)
    }

    /// The `accord msg keys` command line that opens this device's state
    /// with these options.
    pub fn keys_command(&self, session_path: &Path) -> String {
        let mut cmd = format!("accord msg keys --session {}", session_path.display());
        if let Some(s) = &self.state {
            cmd.push_str(&format!(" --state {}", s.display()));
        }
        if let Some(p) = &self.passphrase_file {
            cmd.push_str(&format!(" --passphrase-file {}", p.display()));
        }
        if let Some(k) = &self.key_file {
            cmd.push_str(&format!(" --key-file {}", k.display()));
        }
        if self.os_keyring {
            cmd.push_str(" --os-keyring");
        }
        cmd
    }
}

impl DeviceArgs {
    /// The session, its client, and the device state (created on first use).
    fn open(&self) -> CliResult<(Session, Client, Device)> {
        self.e2e.check()?;
        let session_path = self.s.path();
        let session = Session::load(&session_path)?;
        let d = self.e2e.open_device(&session_path, &session)?;
        let client = session.client();
        Ok((session, client, d))
    }
}

#[derive(Subcommand, Debug)]
pub enum MsgCmd {
    /// Send an end-to-end encrypted text to every device of a user, and a
    /// copy to this account's other devices. Prints the client message id
    /// and the number of devices.
    Send {
        #[command(flatten)]
        d: DeviceArgs,
        /// The recipient: a phone number (international, or national with
        /// --region) or an account id.
        #[arg(long)]
        to: String,
        /// ISO 3166-1 alpha-2 region for a national number, e.g. ID.
        #[arg(long)]
        region: Option<String>,
        /// The text.
        text: String,
    },
    /// Receive messages and receipts, one line each: `from <account>/<device>:
    /// <text>`, `read <ids> by <account>/<device>`, `delivered <id> to
    /// <device>`. Runs until interrupted, or until --count or --timeout-s.
    Listen {
        #[command(flatten)]
        d: DeviceArgs,
        /// Stop after this many messages and receipts (exit 1 if the timeout
        /// passes first).
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout_s: Option<u64>,
        /// Long-poll instead of the WebSocket.
        #[arg(long)]
        long_poll: bool,
        /// Once done, send each sender an end-to-end read receipt for the
        /// texts received.
        #[arg(long)]
        read_receipts: bool,
    },
    /// Publish this device's keys if needed, top up its one-time keys, and
    /// print how many the server holds. (`send` and `listen` do this too.)
    Keys {
        #[command(flatten)]
        d: DeviceArgs,
    },
    /// Print the safety number of this account and another (a fingerprint
    /// of both accounts' identity keys, as the key directory proves them),
    /// to compare aloud or side by side; --mark records the peer as
    /// verified: a later change of their keys blocks sending until
    /// accepted.
    Verify {
        #[command(flatten)]
        d: DeviceArgs,
        /// The peer: a phone number or an account id.
        #[arg(long = "with")]
        with: String,
        #[arg(long)]
        region: Option<String>,
        /// Mark the peer verified (after comparing the numbers).
        #[arg(long)]
        mark: bool,
    },
    /// Accept the new keys of a verified peer whose keys changed (sending
    /// to them is blocked until then); the peer is then unverified.
    Accept {
        #[command(flatten)]
        d: DeviceArgs,
        #[arg(long = "with")]
        with: String,
        #[arg(long)]
        region: Option<String>,
    },
    /// Audit this account in the key directory: warn about any device or
    /// key on it that this device did not publish or accept (`listen` and
    /// `keys` run this first). Exits 1 on a warning. --accept-device
    /// accepts another device of yours.
    Audit {
        #[command(flatten)]
        d: DeviceArgs,
        /// Accept this device id as one of yours.
        #[arg(long)]
        accept_device: Option<String>,
    },
}

/// A messaging failure as the CLI reports it (exit 2 for the user's input,
/// key or state; 1 otherwise).
pub fn cli_error(e: MessagingError) -> CliError {
    match e {
        MessagingError::Client(c) => CliError::Api(c),
        MessagingError::KeySourceMismatch(p) => CliError::Input(format!(
            "the state file {} was sealed with another kind of key: pass --passphrase-file, --key-file or --os-keyring as when it was made",
            p.display()
        )),
        e if e.is_input() => CliError::Input(e.to_string()),
        e => CliError::Internal(anyhow::anyhow!("{e}")),
    }
}

/// Audits this account in the key directory and warns, loudly, about
/// what this device did not publish or accept.
async fn audit_own(client: &Client, device: &mut Device) -> CliResult {
    let audit = device.audit_own(client).await.map_err(cli_error)?;
    if audit.warnings.is_empty() {
        eprintln!(
            "key directory: this account's {} device(s) are all yours (epoch {})",
            audit.devices, audit.epoch
        );
        return Ok(());
    }
    for w in &audit.warnings {
        eprintln!("WARNING: {w}");
    }
    Err(CliError::Tampered(format!(
        "the key directory shows {} device(s) or key(s) on this account that this device did not publish or accept (accept your own with `accord msg audit --accept-device <id>`)",
        audit.warnings.len()
    )))
}

/// `--with`: an account id, or a phone number (its account found by a
/// claim, as a send would).
async fn resolve(
    client: &Client,
    device: &mut Device,
    with: &str,
    region: Option<&str>,
) -> CliResult<AccountId> {
    match parse_recipient(with, region)? {
        Recipient::Account(a) => Ok(a),
        Recipient::Phone(p) => device.account_of(client, &p).await.map_err(cli_error),
    }
}

/// `--to`: an account id, or a phone number.
pub fn parse_recipient(to: &str, region: Option<&str>) -> CliResult<Recipient> {
    if let Some(a) = AccountId::parse(to) {
        return Ok(Recipient::Account(a));
    }
    PhoneNumber::parse(to, region)
        .map(Recipient::Phone)
        .map_err(|e| CliError::Input(e.to_string()))
}

pub async fn run(c: MsgCmd) -> CliResult {
    match c {
        MsgCmd::Send {
            d,
            to,
            region,
            text,
        } => {
            let to = parse_recipient(&to, region.as_deref())?;
            if text.is_empty() {
                return Err(CliError::Input("the text is empty".into()));
            }
            let (_, client, mut device) = d.open()?;
            let sent = device
                .send_text(&client, &to, &text)
                .await
                .map_err(cli_error)?;
            for a in &sent.key_changes {
                eprintln!("notice: the keys of {a} changed (a new or removed device); compare safety numbers with `accord msg verify --with {a}`");
            }
            println!(
                "sent {} to {} devices{}",
                sent.client_message_id,
                sent.devices,
                if sent.duplicate { " (duplicate)" } else { "" }
            );
            Ok(())
        }
        MsgCmd::Verify {
            d,
            with,
            region,
            mark,
        } => {
            let (_, client, mut device) = d.open()?;
            let peer = resolve(&client, &mut device, &with, region.as_deref()).await?;
            let n = device
                .safety_number(&client, peer)
                .await
                .map_err(cli_error)?;
            println!(
                "safety number with {peer} (key directory epoch {}):",
                n.epoch
            );
            for line in n.number.split(' ').collect::<Vec<_>>().chunks(4) {
                println!("  {}", line.join(" "));
            }
            if mark {
                device.mark_verified(&n).map_err(cli_error)?;
                println!("marked {peer} verified: a change of their keys now blocks sending until you accept it");
            } else {
                println!("compare it with theirs; if it matches, run again with --mark");
            }
            Ok(())
        }
        MsgCmd::Accept { d, with, region } => {
            let (_, client, mut device) = d.open()?;
            let peer = resolve(&client, &mut device, &with, region.as_deref()).await?;
            if device.accept_peer_change(peer).map_err(cli_error)? {
                println!("accepted the new keys of {peer}; they are unverified until you compare safety numbers again");
                Ok(())
            } else {
                Err(CliError::Input(format!(
                    "no unaccepted key change of {peer}"
                )))
            }
        }
        MsgCmd::Audit { d, accept_device } => {
            let (_, client, mut device) = d.open()?;
            if let Some(id) = accept_device {
                let id = DeviceId::parse(&id)
                    .ok_or_else(|| CliError::Input("--accept-device is not a device id".into()))?;
                device.accept_own_device(id).map_err(cli_error)?;
            }
            audit_own(&client, &mut device).await
        }
        MsgCmd::Keys { d } => {
            let (_, client, mut device) = d.open()?;
            let count = device.replenish(&client).await.map_err(cli_error)?;
            audit_own(&client, &mut device).await?;
            println!(
                "device {}: {} one-time keys on the server, fallback key: {}",
                device.device_id(),
                count.remaining,
                if count.has_fallback { "yes" } else { "no" }
            );
            Ok(())
        }
        MsgCmd::Listen {
            d,
            count,
            timeout_s,
            long_poll,
            read_receipts,
        } => {
            if count == Some(0) {
                return Err(CliError::Input("--count must be at least 1".into()));
            }
            let (_, client, mut device) = d.open()?;
            if device.is_published() {
                audit_own(&client, &mut device).await?;
            }
            let opts = ListenOptions {
                timeout: timeout_s.map(Duration::from_secs),
                transport: if long_poll {
                    Transport::LongPoll
                } else {
                    Transport::Auto
                },
            };
            let mut seen = 0usize;
            let mut to_acknowledge: BTreeMap<AccountId, Vec<ClientMessageId>> = BTreeMap::new();
            // Business messages are rendered (their signed template
            // fetched and checked) once the listen ends.
            let mut business = Vec::new();
            let end = device
                .listen(&client, opts, |event| {
                    if let Event::Message {
                        envelope_id,
                        from,
                        plaintext,
                        business: Some(meta),
                        ..
                    } = &event
                    {
                        business.push((
                            *envelope_id,
                            from.account,
                            meta.clone(),
                            plaintext.clone(),
                        ));
                        seen += 1;
                        return match count {
                            Some(n) if seen >= n => ControlFlow::Break(()),
                            _ => ControlFlow::Continue(()),
                        };
                    }
                    if print_event(&event) {
                        seen += 1;
                    }
                    if let Event::Message {
                        from, plaintext, ..
                    } = &event
                    {
                        if matches!(plaintext.kind, PlaintextKind::Text { .. }) {
                            to_acknowledge
                                .entry(from.account)
                                .or_default()
                                .push(plaintext.client_message_id.clone());
                        }
                    }
                    match count {
                        Some(n) if seen >= n => ControlFlow::Break(()),
                        _ => ControlFlow::Continue(()),
                    }
                })
                .await
                .map_err(cli_error)?;
            for (envelope, from, meta, plaintext) in business {
                let m = device
                    .render_business(&client, from, &meta, &plaintext)
                    .await
                    .map_err(cli_error)?;
                println!("envelope {}: {}", envelope.0, printable(&m.line()));
            }
            if read_receipts {
                let own = device.account_id();
                for (account, ids) in to_acknowledge {
                    if account == own {
                        continue;
                    }
                    for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                        let sent = device
                            .send_read_receipt(&client, account, chunk.to_vec())
                            .await
                            .map_err(cli_error)?;
                        eprintln!(
                            "read receipt {} sent to {} devices",
                            sent.client_message_id, sent.devices
                        );
                    }
                }
            }
            match (end, count) {
                (ListenEnd::TimedOut, Some(n)) if seen < n => {
                    Err(CliError::Internal(anyhow::anyhow!(
                        "timed out after {} s with {seen} of {n} messages and receipts",
                        timeout_s.unwrap_or(0)
                    )))
                }
                _ => Ok(()),
            }
        }
    }
}

/// A message body on one line, with control characters (newlines, terminal
/// escape sequences from a hostile sender) shown escaped.
fn printable(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Prints one event; returns whether it counts toward `--count`.
fn print_event(event: &Event) -> bool {
    match event {
        Event::Message {
            from, plaintext, ..
        } => match &plaintext.kind {
            PlaintextKind::Text { body } => {
                println!("from {}/{}: {}", from.account, from.device, printable(body));
                true
            }
            PlaintextKind::ReadReceipt { client_message_ids } => {
                let ids: Vec<&str> = client_message_ids.iter().map(|i| i.as_str()).collect();
                println!("read {} by {}/{}", ids.join(","), from.account, from.device);
                true
            }
            // Without the envelope's business metadata: not shown as a
            // business's message.
            PlaintextKind::Template { .. } => {
                eprintln!(
                    "a template message from {}/{} that no business sent: not shown",
                    from.account, from.device
                );
                false
            }
        },
        Event::Delivered {
            client_message_id,
            recipient_device,
            ..
        } => {
            println!("delivered {client_message_id} to {recipient_device}");
            true
        }
        Event::Undecryptable {
            envelope_id,
            from,
            code,
        } => {
            eprintln!(
                "envelope {} from {}/{} could not be decrypted ({code})",
                envelope_id.0, from.account, from.device
            );
            false
        }
        Event::ServerError { code, message } => {
            eprintln!("server: {message} ({code})");
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn bodies_print_on_one_line_without_terminal_escapes() {
        assert_eq!(printable("héllo 👋"), "héllo 👋");
        assert_eq!(printable("a\nb\x1b[2J"), "a\\nb\\u{1b}[2J");
    }
}
