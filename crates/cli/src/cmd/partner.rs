//! The partner service from its user's side. Phone numbers never leave
//! this machine: they are blinded here, evaluated through the partner's
//! blinded-evaluation proxy (the key service's protocol), finalized here,
//! and only the resulting pseudonyms are uploaded.

use crate::error::{CliError, CliResult};
use crate::session::write_private;
use accord_crypto::oprf::OprfPurpose;
use accord_domain::coordination::pseudonym_hex;
use accord_domain::PhoneNumber;
use accord_keyd::{HttpOprf, Oprf};
use clap::Subcommand;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;

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
    /// Pseudonyms of numbers, computed blind through the partner's proxy.
    async fn pseudonyms(&self, phones: &[PhoneNumber]) -> CliResult<Vec<String>> {
        let oprf = HttpOprf::new(
            self.server.clone(),
            secrecy::SecretString::from(self.token.clone()),
        );
        let ps = oprf
            .phone_pseudonyms(OprfPurpose::Coordination, None, phones)
            .await
            .map_err(|e| CliError::Input(format!("pseudonyms: {e}")))?;
        Ok(ps.iter().map(|p| pseudonym_hex(p.as_bytes())).collect())
    }
}

#[derive(Subcommand, Debug)]
pub enum PartnerCmd {
    /// Create a partner account; with --phone, your number is kept only
    /// as a pseudonym (and linked to your messenger account if you granted
    /// `product` there).
    Signup {
        #[arg(long)]
        name: String,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        region: Option<String>,
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
            server,
            s,
        } => {
            let phone = phone.map(|p| parse(&p, region.as_deref())).transpose()?;
            let created: Value = accord_client::Client::new(&server)
                .request_raw(
                    Method::POST,
                    "/v1/partner/users",
                    Some(&json!({ "name": name })),
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
            if let Some(p) = phone {
                let ps = sess.pseudonyms(&[p]).await?;
                sess.client()
                    .request_raw(
                        Method::PUT,
                        "/v1/partner/me/phone",
                        Some(&json!({ "phone_pseudonym": ps[0] })),
                    )
                    .await?;
            }
            let me = sess
                .client()
                .request_raw(Method::GET, "/v1/partner/me", None)
                .await?;
            println!(
                "partner account {} created; linked to the messenger: {}; session in {}",
                sess.user_id,
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
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
            let mut phones = Vec::new();
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match PhoneNumber::parse(line, region.as_deref()) {
                    Ok(p) => phones.push(p),
                    Err(e) => eprintln!("line {}: skipped: {e}", i + 1),
                }
            }
            let sess = PartnerSession::load(&s)?;
            let ps = sess.pseudonyms(&phones).await?;
            let r = sess
                .client()
                .request_raw(
                    Method::POST,
                    "/v1/partner/me/contacts",
                    Some(&json!({ "pseudonyms": ps })),
                )
                .await?;
            println!(
                "uploaded {} contacts as pseudonyms; the partner kept {} that match someone",
                r["received"], r["kept"]
            );
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
