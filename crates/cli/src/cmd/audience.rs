//! `accord audience`: a business's customer lists, on its own machine.
//!
//! `check` reads and normalises a list exactly as the upload will
//! (`accord_domain::audience`), streaming, and prints the summary the
//! upload prints: rows, valid phones, valid emails, rejected; rejected
//! rows go to a rejects file with their line and reason (never their
//! content on the terminal). Nothing leaves the machine.
//!
//! `upload` does the same reading, then blinds every identifier, has the
//! key service evaluate it under the business's quota, shuffles and
//! uploads the pseudonyms to the partner, which matches them whole
//! (`crate::upload`). `advertiser` (the partner's operator), `create`,
//! `list`, `campaign` and `report` are the rest of an advertiser's work;
//! every figure the partner shows is differentially private.

use crate::error::{CliError, CliResult};
use crate::upload::{encode, UploadJob};
use accord_client::Client;
use accord_domain::audience::{Row, Summary};
use clap::Subcommand;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// The partner, as an advertiser.
#[derive(clap::Args, Debug, Clone)]
pub struct PartnerArgs {
    /// The partner's base URL.
    #[arg(
        long,
        env = "ACCORD_PARTNER_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    pub partner: String,
    /// The advertiser's token (from `accord audience advertiser`).
    #[arg(long, env = "ACCORD_ADVERTISER_TOKEN", hide_env_values = true)]
    pub token: String,
}

impl PartnerArgs {
    fn client(&self) -> Client {
        Client::new(&self.partner).with_token(self.token.clone())
    }
}

#[derive(Subcommand, Debug)]
pub enum AudienceCmd {
    /// Set up a business for audiences (the operator): registers it as an
    /// advertiser at the partner and as a `business` client of the key
    /// service, and prints both tokens once.
    Advertiser {
        #[arg(long)]
        name: String,
        #[arg(
            long,
            env = "ACCORD_PARTNER_URL",
            default_value = "http://127.0.0.1:8082"
        )]
        partner: String,
        #[arg(long, env = "ACCORD_KEYD_URL", default_value = "http://127.0.0.1:8081")]
        keyd: String,
        /// The business's daily key-service quota (default: the key
        /// service's default for businesses).
        #[arg(long)]
        keyd_quota: Option<u64>,
        /// The operator's admin token (both services').
        #[arg(long, env = "ACCORD_ADMIN_TOKEN", hide_env_values = true)]
        admin_token: String,
    },
    /// Create an (empty) audience.
    Create {
        #[command(flatten)]
        p: PartnerArgs,
        #[arg(long)]
        audience: String,
    },
    /// Your audiences and their last released (noised) sizes.
    List {
        #[command(flatten)]
        p: PartnerArgs,
    },
    /// Upload a customer list into an audience: normalised and
    /// pseudonymised here (through the key service, under your quota),
    /// shuffled, matched by the partner. Only pseudonyms leave this
    /// machine; you see only a noised size.
    Upload {
        #[command(flatten)]
        p: PartnerArgs,
        #[arg(long)]
        audience: String,
        /// The CSV file (header: phone, email, fn, ln, country).
        #[arg(long)]
        file: PathBuf,
        /// Default region (ISO 3166-1 alpha-2) for national numbers.
        #[arg(long)]
        region: Option<String>,
        /// Where rejected rows go (default: `<file>.rejects.csv`).
        #[arg(long)]
        rejects: Option<PathBuf>,
        /// The key service's base URL.
        #[arg(long, env = "ACCORD_KEYD_URL", default_value = "http://127.0.0.1:8081")]
        keyd: String,
        /// This business's key-service token.
        #[arg(long, env = "ACCORD_KEYD_TOKEN", hide_env_values = true)]
        keyd_token: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Start a campaign: an audience, a creative, a date range.
    Campaign {
        #[command(flatten)]
        p: PartnerArgs,
        #[arg(long)]
        audience: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        text: String,
        #[arg(long)]
        link: String,
        /// Days it runs, from now.
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
    /// Your campaigns' reach and impressions (noised; released anew at
    /// most hourly, until the budget is spent).
    Report {
        #[command(flatten)]
        p: PartnerArgs,
    },
    /// Read and normalise a customer list (CSV with a header: phone,
    /// email, fn, ln, country) and print what an upload would send:
    /// rows, valid phones, valid emails, rejected. Nothing leaves this
    /// machine.
    Check {
        /// The CSV file.
        #[arg(long)]
        file: PathBuf,
        /// Default region (ISO 3166-1 alpha-2) for national numbers in
        /// rows without a `country`.
        #[arg(long)]
        region: Option<String>,
        /// Where rejected rows go, with their reasons (default:
        /// `<file>.rejects.csv`).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
}

/// Progress on stderr every this many rows.
const PROGRESS_EVERY: u64 = 100_000;

fn print_size(v: &Value) {
    let name = v["name"].as_str().unwrap_or("?");
    println!("{name}: {}", shown(&v["size"]));
}

/// A released figure as words: "about 1200", "fewer than 100", or
/// "not released yet".
fn shown(v: &Value) -> String {
    match v["shown"].as_str() {
        Some("about") => format!("about {}", v["count"]),
        Some("fewer_than") => format!("fewer than {}", v["threshold"]),
        _ => "not released yet".to_owned(),
    }
}

pub async fn run(c: AudienceCmd) -> CliResult {
    match c {
        AudienceCmd::Advertiser {
            name,
            partner,
            keyd,
            keyd_quota,
            admin_token,
        } => {
            let mut quotas = serde_json::Map::new();
            if let Some(q) = keyd_quota {
                quotas.insert("coordination".into(), json!(q));
            }
            let k = Client::new(&keyd)
                .with_token(admin_token.clone())
                .request_raw(
                    Method::POST,
                    "/v1/admin/clients",
                    Some(&json!({ "name": name, "kind": "business", "quotas": quotas })),
                )
                .await?;
            let v = Client::new(&partner)
                .with_token(admin_token)
                .request_raw(
                    Method::POST,
                    "/v1/admin/advertisers",
                    Some(&json!({ "name": name })),
                )
                .await?;
            println!(
                "advertiser_id: {}",
                v["advertiser_id"].as_str().unwrap_or("")
            );
            println!("token: {}", v["token"].as_str().unwrap_or(""));
            println!("keyd_token: {}", k["token"].as_str().unwrap_or(""));
            Ok(())
        }
        AudienceCmd::Create { p, audience } => {
            let v = p
                .client()
                .request_raw(
                    Method::POST,
                    "/v1/audiences",
                    Some(&json!({ "name": audience })),
                )
                .await?;
            println!("created audience {}", v["name"].as_str().unwrap_or(""));
            Ok(())
        }
        AudienceCmd::List { p } => {
            let v = p
                .client()
                .request_raw(Method::GET, "/v1/audiences", None)
                .await?;
            for a in v.as_array().into_iter().flatten() {
                print_size(a);
            }
            Ok(())
        }
        AudienceCmd::Upload {
            p,
            audience,
            file,
            region,
            rejects,
            keyd,
            keyd_token,
            quiet,
        } => {
            let oprf = accord_keyd::HttpOprf::new(keyd, SecretString::from(keyd_token));
            let job = UploadJob {
                rejects: rejects.unwrap_or_else(|| rejects_beside(&file)),
                file,
                region,
                audience,
                partner: p.client(),
                oprf: Arc::new(oprf),
                progress: !quiet,
            };
            let r = crate::upload::run(job).await?;
            println!("rows: {}", r.summary.rows);
            println!("valid_phones: {}", r.summary.valid_phones);
            println!("valid_emails: {}", r.summary.valid_emails);
            println!("rejected: {}", r.summary.rejected);
            println!("uploaded_rows: {}", r.rows);
            print_size(&r.answer["audience"]);
            if r.answer["fresh"] == json!(false) {
                println!("(the size's privacy budget is spent: this is the last released figure)");
            }
            Ok(())
        }
        AudienceCmd::Campaign {
            p,
            audience,
            title,
            text,
            link,
            days,
        } => {
            let now = accord_domain::Clock::now(&accord_domain::SystemClock).0;
            let v = p
                .client()
                .request_raw(
                    Method::POST,
                    "/v1/campaigns",
                    Some(&json!({
                        "audience": audience, "title": title, "text": text, "link": link,
                        "starts_at": now, "ends_at": now + i64::from(days) * 86_400_000,
                    })),
                )
                .await?;
            println!("campaign_id: {}", v["campaign_id"].as_str().unwrap_or(""));
            Ok(())
        }
        AudienceCmd::Report { p } => {
            let client = p.client();
            let list = client
                .request_raw(Method::GET, "/v1/campaigns", None)
                .await?;
            for c in list.as_array().into_iter().flatten() {
                let id = c["campaign_id"].as_str().unwrap_or("");
                let v = client
                    .request_raw(Method::GET, &format!("/v1/campaigns/{}", encode(id)), None)
                    .await?;
                println!(
                    "{id} {:?} ({}): reach {}, impressions {}",
                    v["title"].as_str().unwrap_or(""),
                    v["audience"].as_str().unwrap_or(""),
                    shown(&v["reach"]),
                    shown(&v["impressions"])
                );
            }
            Ok(())
        }
        AudienceCmd::Check {
            file,
            region,
            rejects,
        } => {
            let summary = check(&file, region.as_deref(), rejects)?;
            println!("rows: {}", summary.rows);
            println!("valid_phones: {}", summary.valid_phones);
            println!("valid_emails: {}", summary.valid_emails);
            println!("rejected: {}", summary.rejected);
            Ok(())
        }
    }
}

fn rejects_beside(file: &std::path::Path) -> PathBuf {
    let mut p = file.to_path_buf().into_os_string();
    p.push(".rejects.csv");
    PathBuf::from(p)
}

fn check(file: &PathBuf, region: Option<&str>, rejects: Option<PathBuf>) -> CliResult<Summary> {
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", file.display())))?;
    let rejects_path = rejects.unwrap_or_else(|| rejects_beside(file));
    let (list, mut out) =
        crate::upload::open_list(file, std::io::BufReader::new(input), region, &rejects_path)?;
    let bad =
        |e: accord_domain::audience::ListError| CliError::Input(format!("{}: {e}", file.display()));
    let mut summary = Summary::default();
    for row in list {
        let row = row.map_err(bad)?;
        summary.add(&row);
        if let Row::Rejected(r) = &row {
            crate::upload::write_reject(&mut out, r)?;
        }
        if summary.rows.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("read {} rows", summary.rows);
        }
    }
    out.flush().map_err(|e| CliError::Internal(e.into()))?;
    crate::upload::say_rejected(&summary, &rejects_path);
    Ok(summary)
}
