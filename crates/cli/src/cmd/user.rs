//! What a user does from a terminal, as their device would.

use super::admin::{parse_purposes, parse_time};
use super::msg::{cli_error, E2eArgs};
use super::{print_json, SessionArgs};
use crate::error::{CliError, CliResult};
use crate::session::Session;
use accord_client::{AcceptChoice, Client, ConsentView};
use accord_domain::{DeviceInfo, PhoneNumber, Purpose};
use clap::Subcommand;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// Phone number, international or national with --region.
    #[arg(long)]
    pub phone: String,
    /// ISO 3166-1 alpha-2 region for national formats, e.g. ID.
    #[arg(long)]
    pub region: Option<String>,
    /// Base URL of the messenger.
    #[arg(long, env = "ACCORD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Where to keep this device's session.
    #[arg(long, env = "ACCORD_SESSION")]
    pub session: Option<PathBuf>,
    /// Where this device's end-to-end state goes and what seals it (as for
    /// `accord msg`): its keys are published right after registering.
    #[command(flatten)]
    pub e2e: E2eArgs,
    /// The verification code (asked for on stdin if needed and not given).
    #[arg(long)]
    pub code: Option<String>,
    #[command(flatten)]
    pub choice: ChoiceArgs,
    /// android, ios, web or desktop.
    #[arg(long, default_value = "desktop")]
    pub os: String,
    #[arg(long, default_value = "unknown")]
    pub os_version: String,
    #[arg(long, default_value = "accord-cli")]
    pub model: String,
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub app_version: String,
    #[arg(long, default_value = "en-US")]
    pub locale: String,
    /// MCC+MNC of the SIM's carrier, e.g. 51010.
    #[arg(long)]
    pub carrier: Option<String>,
}

/// The acceptance screen's choices.
#[derive(clap::Args, Debug, Clone)]
pub struct ChoiceArgs {
    /// Tick the sharing box (all purposes).
    #[arg(long, conflicts_with = "no_share")]
    pub share: bool,
    /// Untick the sharing box.
    #[arg(long)]
    pub no_share: bool,
    /// Grant one purpose (strict profile; repeat): ads, product.
    #[arg(long = "grant")]
    pub grants: Vec<String>,
}

impl ChoiceArgs {
    fn choice(&self) -> CliResult<AcceptChoice> {
        Ok(AcceptChoice {
            share: if self.share {
                Some(true)
            } else if self.no_share {
                Some(false)
            } else {
                None
            },
            grants: parse_purposes(&self.grants)?,
        })
    }
}

pub async fn register(a: RegisterArgs) -> CliResult {
    // Check locally first: a clear error without a round trip.
    PhoneNumber::parse(&a.phone, a.region.as_deref())
        .map_err(|e| CliError::Input(e.to_string()))?;
    let info = DeviceInfo {
        os: a.os.clone(),
        os_version: a.os_version.clone(),
        model: a.model.clone(),
        app_version: a.app_version.clone(),
        locale: a.locale.clone(),
        carrier: a.carrier.clone(),
    }
    .validated()
    .map_err(|e| CliError::Input(e.to_string()))?;
    a.e2e.check()?;
    let path = a
        .session
        .clone()
        .unwrap_or_else(crate::session::default_path);
    // The new device's end-to-end state must not replace another's (its
    // sessions would be lost), nor be left half-made by a failed attempt:
    // refuse before anything is registered.
    let state = a.e2e.state_path(&path);
    if state.exists() {
        return Err(CliError::Input(format!(
            "the end-to-end state {} of a device registered before exists: pass another --session (or --state) for a new device, or, if its keys were not published, run `{}`",
            state.display(),
            a.e2e.keys_command(&path)
        )));
    }
    let client = Client::new(&a.server);
    let started = client
        .start_registration(&a.phone, a.region.as_deref())
        .await?;
    let code = match (a.code.clone(), started.dev_code.clone()) {
        (Some(c), _) => c,
        (None, Some(c)) => {
            eprintln!("(dev server: using the code it returned)");
            c
        }
        (None, None) => {
            eprint!("Enter the code sent to your phone: ");
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| CliError::Internal(e.into()))?;
            line.trim().to_owned()
        }
    };
    let policy = client.current_policy().await?;
    let choice = a.choice.choice()?;
    if let Some(p) = &policy {
        println!(
            "Policy version {} ({}), sha256 {}:",
            p.version, p.profile, p.text_sha256
        );
        println!("{}", indent(&p.text));
        println!(
            "By registering you accept it. Purposes asked: {:?}",
            p.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>()
        );
    }
    let r = client
        .verify_registration(
            started.registration_id,
            &code,
            &info,
            policy.as_ref().map(|p| (p.version, &choice)),
        )
        .await?;
    let session = Session {
        server: a.server.clone(),
        token: r.token.clone(),
        account_id: r.account_id.to_string(),
        device_id: r.device_id.to_string(),
        keyd_token: r.keyd_token.clone(),
    };
    session.save(&path)?;
    println!(
        "{} account {} device {}; session saved to {}",
        if r.new_account {
            "registered"
        } else {
            "added a device to"
        },
        r.account_id,
        r.device_id,
        path.display()
    );
    publish_keys(&a.e2e, &path, &session).await?;
    if r.new_account && policy.is_some() {
        show_consent(
            &Client::new(&a.server)
                .with_token(&r.token)
                .consent()
                .await?,
        );
    }
    Ok(())
}

/// Creates the new device's end-to-end state and publishes its identity,
/// one-time and fallback keys, so that it can be messaged at once. A
/// failure is reported with what to run to finish (`accord msg keys`
/// creates the state if it is missing and publishes what is not yet
/// published), and keeps its exit code: 2 when the user's input, key
/// source or state is at fault, 1 otherwise.
async fn publish_keys(e2e: &E2eArgs, path: &std::path::Path, session: &Session) -> CliResult {
    let published = async {
        let mut device = e2e.open_device(path, session)?;
        device.setup(&session.client()).await.map_err(cli_error)
    }
    .await;
    match published {
        Ok(count) => {
            println!(
                "end-to-end keys published: {} one-time keys, fallback key: {}",
                count.remaining,
                if count.has_fallback { "yes" } else { "no" }
            );
            Ok(())
        }
        Err(e) => {
            let message = format!(
                "registered, but this device's end-to-end keys were not published ({e}): nobody can message it until they are; run `{}` to publish them",
                e2e.keys_command(path)
            );
            Err(match e.exit_code() {
                2 => CliError::Input(message),
                _ => CliError::Internal(anyhow::anyhow!(message)),
            })
        }
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn purposes(p: &[Purpose]) -> String {
    if p.is_empty() {
        "nothing".into()
    } else {
        p.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
    }
}

pub fn show_consent(v: &ConsentView) {
    println!("shared with the partner now: {}", purposes(&v.granted_now));
    if let Some(a) = &v.state.accepted {
        println!(
            "accepted policy version {} ({}) at {}",
            a.version,
            a.profile,
            a.at.to_rfc3339()
        );
        match a.opt_out_until {
            Some(t) => println!("opt-out possible until {}", t.to_rfc3339()),
            None => println!("withdraw any time: accord consent withdraw <purpose>"),
        }
    }
    if let Some(v2) = v.pending_policy {
        println!("policy version {v2} awaits your acceptance: accord policy accept");
    }
}

#[derive(Subcommand, Debug)]
pub enum PolicyCmd {
    /// Show the policy in force.
    Show {
        #[command(flatten)]
        s: SessionArgs,
    },
    /// Accept the policy in force.
    Accept {
        #[command(flatten)]
        s: SessionArgs,
        #[command(flatten)]
        choice: ChoiceArgs,
    },
}

pub async fn policy(p: PolicyCmd) -> CliResult {
    match p {
        PolicyCmd::Show { s } => {
            let sess = Session::load(&s.path())?;
            match sess.client().current_policy().await? {
                Some(p) => {
                    println!(
                        "policy version {} ({}), published {}, accept by {}",
                        p.version,
                        p.profile,
                        p.published_at.to_rfc3339(),
                        p.accept_by.to_rfc3339()
                    );
                    println!("sha256 {}", p.text_sha256);
                    println!(
                        "purposes: {:?}",
                        p.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>()
                    );
                    println!("{}", indent(&p.text));
                }
                None => println!("no policy has been published"),
            }
        }
        PolicyCmd::Accept { s, choice } => {
            let c = Session::load(&s.path())?.client();
            let p = c
                .current_policy()
                .await?
                .ok_or_else(|| CliError::Input("no policy has been published".into()))?;
            let v = c.accept_policy(p.version, &choice.choice()?).await?;
            println!("accepted policy version {}", p.version);
            show_consent(&v);
        }
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ConsentCmd {
    /// What is shared now, and under which policy.
    Show {
        #[command(flatten)]
        s: SessionArgs,
    },
    /// Grant a purpose: ads or product.
    Grant {
        #[command(flatten)]
        s: SessionArgs,
        purpose: String,
    },
    /// Withdraw a purpose (opt out).
    Withdraw {
        #[command(flatten)]
        s: SessionArgs,
        purpose: String,
    },
    /// Your consent at a past instant, rebuilt from the ledger alone.
    At {
        #[command(flatten)]
        s: SessionArgs,
        /// RFC 3339 UTC or Unix milliseconds.
        at: String,
    },
    /// A consent receipt (Kantara Consent Receipt shape), as JSON, with
    /// your ledger entries' inclusion proofs and signed checkpoints. Keep
    /// it: it is also a witness against a later rewrite of the ledger.
    Receipt {
        #[command(flatten)]
        s: SessionArgs,
        /// Check a saved receipt offline instead (exit 1 if it does not hold).
        #[arg(long, value_name = "FILE")]
        verify: Option<std::path::PathBuf>,
        /// The messenger's log key (hex, `GET /v1/transparency/key`) to
        /// check against; without it, the key in the receipt is used and
        /// only its fingerprint is printed for you to compare.
        #[arg(long, requires = "verify")]
        key: Option<String>,
    },
}

fn purpose(raw: &str) -> CliResult<Purpose> {
    raw.parse()
        .map_err(|e| CliError::Input(format!("{raw:?}: {e}")))
}

pub async fn consent(c: ConsentCmd) -> CliResult {
    match c {
        ConsentCmd::Show { s } => {
            show_consent(&Session::load(&s.path())?.client().consent().await?)
        }
        ConsentCmd::Grant { s, purpose: p } => {
            let p = purpose(&p)?;
            show_consent(&Session::load(&s.path())?.client().grant(p).await?)
        }
        ConsentCmd::Withdraw { s, purpose: p } => {
            let p = purpose(&p)?;
            show_consent(&Session::load(&s.path())?.client().withdraw(p).await?)
        }
        ConsentCmd::At { s, at } => {
            let at = parse_time(&at)?;
            let v = Session::load(&s.path())?.client().consent_at(at).await?;
            println!("at {} (from the ledger):", at.to_rfc3339());
            show_consent(&v);
        }
        ConsentCmd::Receipt {
            verify: Some(file),
            key,
            ..
        } => verify_receipt(&file, key.as_deref())?,
        ConsentCmd::Receipt { s, .. } => {
            print_json(&Session::load(&s.path())?.client().receipt().await?)
        }
    }
    Ok(())
}

/// `accord consent receipt --verify FILE`: offline, against the log key.
fn verify_receipt(file: &std::path::Path, key: Option<&str>) -> CliResult {
    use accord_domain::receipt::ConsentReceipt;
    use accord_domain::transparency::LogKey;
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let receipt: ConsentReceipt = serde_json::from_str(&text).map_err(|e| {
        CliError::Input(format!("{} is not a consent receipt: {e}", file.display()))
    })?;
    let (key, pinned) = match key {
        Some(k) => (k.to_owned(), true),
        None => (receipt.ledger.log_key.clone(), false),
    };
    let key = LogKey::from_hex(&key).map_err(|e| CliError::Input(format!("--key: {e}")))?;
    let check = receipt
        .verify(&key)
        .map_err(|e| CliError::Tampered(format!("the receipt does not hold: {e}")))?;
    println!(
        "receipt verified: {} ledger entries proven against {} signed checkpoints; its consent follows from them",
        check.entries, check.checkpoints
    );
    if pinned {
        println!("log key: {} (pinned)", key.to_hex());
    } else {
        println!(
            "log key: {} (taken from the receipt: compare it with the messenger's published key)",
            key.to_hex()
        );
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum AccountCmd {
    /// Show this account.
    Show {
        #[command(flatten)]
        s: SessionArgs,
    },
    /// Export everything the messenger holds about you, as JSON.
    Export {
        #[command(flatten)]
        s: SessionArgs,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete your account (erases it; the ledger keeps a record of the deletion).
    Delete {
        #[command(flatten)]
        s: SessionArgs,
        /// Confirm.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn account(a: AccountCmd) -> CliResult {
    match a {
        AccountCmd::Show { s } => print_json(&Session::load(&s.path())?.client().me().await?),
        AccountCmd::Export { s, out } => {
            let v = Session::load(&s.path())?.client().export().await?;
            let text = serde_json::to_string_pretty(&v).expect("serialisable");
            match out {
                Some(p) => {
                    crate::session::write_private(&p, text.as_bytes())?;
                    println!("exported to {}", p.display());
                }
                None => println!("{text}"),
            }
        }
        AccountCmd::Delete { s, yes } => {
            if !yes {
                return Err(CliError::Input(
                    "this erases your account; pass --yes to confirm".into(),
                ));
            }
            let path = s.path();
            Session::load(&path)?.client().delete_account().await?;
            let _ = std::fs::remove_file(&path);
            println!("account deleted; session removed");
        }
    }
    Ok(())
}
