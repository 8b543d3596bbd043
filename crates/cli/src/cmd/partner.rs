//! The partner service from its user's side. Phone numbers never leave
//! this machine: they are blinded here, evaluated through the partner's
//! blinded-evaluation proxy (the key service's protocol), finalized here,
//! and only the resulting pseudonyms are uploaded.

use crate::error::{CliError, CliResult};
use crate::session::write_private;
use accord_crypto::oprf::KeyVersion;
use accord_crypto::oprf::OprfPurpose;
use accord_domain::PhoneNumber;
use accord_domain::PseudonymId;
use accord_keyd::{HttpOprf, Oprf, OprfClientError};
use clap::Subcommand;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::PathBuf;

/// Numbers per evaluation request and per upload: what the partner
/// accepts in one evaluation (1,000 blinded elements).
const BATCH: usize = 1_000;

#[derive(clap::Args, Debug, Clone)]
pub struct PartnerSessionArgs {
    /// This partner user's session file.
    #[arg(long, env = "ACCORD_PARTNER_SESSION")]
    pub partner_session: Option<PathBuf>,
}

impl PartnerSessionArgs {
    fn path(&self) -> PathBuf {
        self.partner_session
            .clone()
            .unwrap_or_else(|| crate::session::default_path().with_file_name("partner.json"))
    }
}

#[derive(Serialize, Deserialize)]
struct PartnerSession {
    server: String,
    token: String,
    user_id: String,
}

impl PartnerSession {
    fn load(args: &PartnerSessionArgs) -> CliResult<Self> {
        let p = args.path();
        let text = std::fs::read_to_string(&p).map_err(|_| {
            CliError::Input(format!(
                "no partner session at {}: run `accord partner signup` first",
                p.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| CliError::Input(format!("{} is not valid: {e}", p.display())))
    }
    fn client(&self) -> accord_client::Client {
        accord_client::Client::new(&self.server).with_token(&self.token)
    }
    /// Pseudonyms of numbers, computed blind through the partner's proxy
    /// (one request: at most [`BATCH`] numbers), under `version` (the
    /// active one if `None`).
    async fn pseudonyms(
        &self,
        phones: &[PhoneNumber],
        version: Option<KeyVersion>,
    ) -> CliResult<(Vec<PseudonymId>, Option<KeyVersion>)> {
        let oprf = HttpOprf::new(
            self.server.clone(),
            secrecy::SecretString::from(self.token.clone()),
        );
        let ps = oprf
            .phone_pseudonyms(OprfPurpose::Coordination, version, phones)
            .await
            .map_err(|e| match e {
                OprfClientError::QuotaExceeded { retry_after_s } => CliError::Input(format!(
                    "your daily quota of evaluations at the partner is spent; retry in {retry_after_s} s"
                )),
                OprfClientError::Rejected { status: 429, code, message } if code == "quota_exceeded" => {
                    CliError::Input(format!("quota_exceeded: {message}"))
                }
                e => CliError::Input(format!("pseudonyms: {e}")),
            })?;
        let version = ps.first().map(|p| p.key_version());
        Ok((ps.iter().map(|p| p.id()).collect(), version))
    }
}

#[derive(Subcommand, Debug)]
pub enum PartnerCmd {
    /// Create a partner account with your phone number: the partner sends
    /// a code to it (a `--dev` server returns it), keeps the number only
    /// as a pseudonym, and links you to your messenger account if you
    /// granted `product` there. A number that already has a partner
    /// account signs in to it.
    Signup {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: String,
        #[arg(long)]
        region: Option<String>,
        /// The code sent to your phone (asked for on stdin if needed and not given).
        #[arg(long)]
        code: Option<String>,
        /// Base URL of the partner service.
        #[arg(
            long,
            env = "ACCORD_PARTNER_URL",
            default_value = "http://127.0.0.1:8082"
        )]
        server: String,
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// Your partner account: linked to the messenger or not, ad personalisation.
    Me {
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// Turn ad personalisation on or off.
    Ads {
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// Give the partner your email address, as a pseudonym (computed
    /// blind, like your number's): advertisers' customer lists can then
    /// match you by email too, if you allow ads. `--remove` takes it back.
    Email {
        #[arg(long, required_unless_present = "remove")]
        email: Option<String>,
        #[arg(long)]
        remove: bool,
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// The ads the partner shows you now (none without your ad consent).
    ShowAds {
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// Upload an address book (one number per line) as pseudonyms; the
    /// partner keeps only those that match someone.
    Contacts {
        #[arg(long)]
        file: PathBuf,
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
    /// People you may know.
    Suggestions {
        #[command(flatten)]
        s: PartnerSessionArgs,
    },
}

fn parse(raw: &str, region: Option<&str>) -> CliResult<PhoneNumber> {
    PhoneNumber::parse(raw, region).map_err(|e| CliError::Input(e.to_string()))
}

pub async fn run(c: PartnerCmd) -> CliResult {
    match c {
        PartnerCmd::Signup {
            name,
            phone,
            region,
            code,
            server,
            s,
        } => {
            let phone = parse(&phone, region.as_deref())?;
            let anon = accord_client::Client::new(&server);
            let started: Value = anon
                .request_raw(
                    Method::POST,
                    "/v1/partner/registrations",
                    Some(&json!({ "phone": phone.e164() })),
                )
                .await?;
            let code = match (code, started["dev_code"].as_str()) {
                (Some(c), _) => c,
                (None, Some(c)) => {
                    eprintln!("(dev server: using the code it returned)");
                    c.to_owned()
                }
                (None, None) => {
                    eprint!("Enter the code the partner sent to your phone: ");
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .map_err(|e| CliError::Internal(e.into()))?;
                    line.trim().to_owned()
                }
            };
            let id = started["registration_id"].as_str().unwrap_or_default();
            let created: Value = anon
                .request_raw(
                    Method::POST,
                    &format!("/v1/partner/registrations/{id}/verify"),
                    Some(&json!({ "code": code, "name": name })),
                )
                .await?;
            let sess = PartnerSession {
                server: server.clone(),
                token: created["token"].as_str().unwrap_or_default().to_owned(),
                user_id: created["user_id"].as_str().unwrap_or_default().to_owned(),
            };
            let path = s.path();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| CliError::Internal(e.into()))?;
            }
            write_private(
                &path,
                serde_json::to_string_pretty(&sess)
                    .expect("serialisable")
                    .as_bytes(),
            )?;
            let (ps, _) = sess.pseudonyms(&[phone], None).await?;
            sess.client()
                .request_raw(
                    Method::PUT,
                    "/v1/partner/me/phone",
                    Some(&json!({ "phone_pseudonym": ps[0] })),
                )
                .await?;
            let me = sess
                .client()
                .request_raw(Method::GET, "/v1/partner/me", None)
                .await?;
            println!(
                "partner account {} {}; linked to the messenger: {}; session in {}",
                sess.user_id,
                if created["new_user"] == json!(false) {
                    "signed in (the number already had one)"
                } else {
                    "created"
                },
                me["linked_to_messenger"],
                path.display()
            );
        }
        PartnerCmd::Me { s } => {
            let me = PartnerSession::load(&s)?
                .client()
                .request_raw(Method::GET, "/v1/partner/me", None)
                .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&me).expect("serialisable")
            );
        }
        PartnerCmd::Ads { on, off: _, s } => {
            PartnerSession::load(&s)?
                .client()
                .request_raw(
                    Method::PUT,
                    "/v1/partner/me/ads",
                    Some(&json!({ "enabled": on })),
                )
                .await?;
            println!("ad personalisation {}", if on { "on" } else { "off" });
        }
        PartnerCmd::Contacts { file, region, s } => {
            // Streamed: read, evaluate and upload one batch at a time, so
            // an address book of any size fits in memory and in what the
            // partner accepts per request.
            let f = std::fs::File::open(&file)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
            let sess = PartnerSession::load(&s)?;
            let (mut version, mut read, mut sent, mut kept) = (None, 0usize, 0u64, 0u64);
            let mut batch = Vec::with_capacity(BATCH);
            let mut lines = std::io::BufReader::new(f).lines().enumerate();
            loop {
                let next = lines.next();
                if let Some((i, line)) = &next {
                    let line = line.as_ref().map_err(|e| {
                        CliError::Input(format!("cannot read {}: {e}", file.display()))
                    })?;
                    let line = line.trim();
                    if !line.is_empty() && !line.starts_with('#') {
                        read += 1;
                        match PhoneNumber::parse(line, region.as_deref()) {
                            Ok(p) => batch.push(p),
                            Err(e) => eprintln!("line {}: skipped: {e}", i + 1),
                        }
                    }
                }
                if batch.len() == BATCH || (next.is_none() && !batch.is_empty()) {
                    let (ps, v) = sess.pseudonyms(&batch, version).await?;
                    version = version.or(v);
                    let r = sess
                        .client()
                        .request_raw(
                            Method::POST,
                            "/v1/partner/me/contacts",
                            Some(&json!({ "pseudonyms": ps })),
                        )
                        .await?;
                    sent += batch.len() as u64;
                    kept += r["kept"].as_u64().unwrap_or(0);
                    eprintln!("{sent} contacts uploaded ({read} lines read)");
                    batch.clear();
                }
                if next.is_none() {
                    break;
                }
            }
            println!(
                "uploaded {sent} contacts as pseudonyms; the partner kept {kept} that match someone"
            );
        }
        PartnerCmd::Email {
            email,
            remove: _,
            s,
        } => {
            let sess = PartnerSession::load(&s)?;
            let pseudonym = match &email {
                Some(e) => {
                    let e = accord_domain::Email::parse(e)
                        .map_err(|e| CliError::Input(format!("--email: {e}")))?;
                    let oprf = HttpOprf::new(
                        sess.server.clone(),
                        secrecy::SecretString::from(sess.token.clone()),
                    );
                    let ps = oprf
                        .pseudonyms(
                            OprfPurpose::Coordination,
                            None,
                            &[accord_crypto::oprf::input_for_email(&e)],
                        )
                        .await
                        .map_err(|e| CliError::Input(format!("pseudonym: {e}")))?;
                    ps.first().map(|p| p.id())
                }
                None => None,
            };
            sess.client()
                .request_raw(
                    Method::PUT,
                    "/v1/partner/me/email",
                    Some(&json!({ "email_pseudonym": pseudonym })),
                )
                .await?;
            println!(
                "{}",
                if pseudonym.is_some() {
                    "email set (the partner holds its pseudonym only)"
                } else {
                    "email removed"
                }
            );
        }
        PartnerCmd::ShowAds { s } => {
            let ads = PartnerSession::load(&s)?
                .client()
                .request_raw(Method::GET, "/v1/partner/ads", None)
                .await?;
            let list = ads.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no ads");
            }
            for a in list {
                println!(
                    "ad: {} | {} | {}",
                    a["title"].as_str().unwrap_or(""),
                    a["text"].as_str().unwrap_or(""),
                    a["link"].as_str().unwrap_or("")
                );
            }
        }
        PartnerCmd::Suggestions { s } => {
            let r = PartnerSession::load(&s)?
                .client()
                .request_raw(Method::GET, "/v1/partner/me/suggestions", None)
                .await?;
            let list = r["suggestions"].as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no suggestions");
            }
            for x in list {
                println!(
                    "{}\t{}",
                    x["user_id"].as_str().unwrap_or(""),
                    x["name"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
