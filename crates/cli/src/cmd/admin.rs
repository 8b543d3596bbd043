use super::{print_json, AdminArgs};
use crate::error::{CliError, CliResult};
use accord_client::Client;
use accord_domain::{AccountId, Purpose, Timestamp};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum Admin {
    /// Publish a new policy version (users get 30 days to accept it).
    PublishPolicy {
        #[command(flatten)]
        conn: AdminArgs,
        /// File with the policy text.
        #[arg(long)]
        text_file: PathBuf,
        /// Purpose asked for (repeat): ads, product.
        #[arg(long = "purpose", required = true)]
        purposes: Vec<String>,
        /// strict or whatsapp-2016 (default: the server's --profile).
        #[arg(long)]
        profile: Option<String>,
    },
    /// List published policy versions.
    Policies {
        #[command(flatten)]
        conn: AdminArgs,
    },
    /// Print ledger entries.
    Ledger {
        #[command(flatten)]
        conn: AdminArgs,
        /// One ledger shard (0 to 15; policy publications are in 0), paged
        /// with --after and --limit; without it, every entry of every shard.
        #[arg(long)]
        shard: Option<u16>,
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Ask the server to verify the ledger's hash chain.
    VerifyLedger {
        #[command(flatten)]
        conn: AdminArgs,
    },
    /// An account's consent at an instant, rebuilt from the ledger alone.
    ConsentAt {
        #[command(flatten)]
        conn: AdminArgs,
        #[arg(long)]
        account: String,
        /// RFC 3339 UTC (2026-11-29T12:00:00Z) or Unix milliseconds; default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// The coordination feed: lag, pending and failing deliveries, holdings.
    Feed {
        #[command(flatten)]
        conn: AdminArgs,
    },
    /// Every business, its quality and tier.
    Businesses {
        #[command(flatten)]
        conn: AdminArgs,
    },
    /// Mark a business verified (users see its name and badge), or with
    /// --undo not.
    VerifyBusiness {
        #[command(flatten)]
        conn: AdminArgs,
        business: String,
        #[arg(long)]
        undo: bool,
    },
    /// Revoke a business (its API keys stop working), or with --undo
    /// reinstate it.
    RevokeBusiness {
        #[command(flatten)]
        conn: AdminArgs,
        business: String,
        #[arg(long)]
        undo: bool,
    },
    /// Business templates by review state (default: pending).
    Templates {
        #[command(flatten)]
        conn: AdminArgs,
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve, reject, pause or resume a template.
    ReviewTemplate {
        #[command(flatten)]
        conn: AdminArgs,
        id: uuid::Uuid,
        /// approve, reject, pause or resume.
        #[arg(long)]
        decision: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Show or advance the simulated clock (server started with --simulated-clock).
    Clock {
        #[command(flatten)]
        conn: AdminArgs,
        #[arg(long, default_value_t = 0)]
        advance_days: i64,
        #[arg(long, default_value_t = 0)]
        advance_hours: i64,
    },
}

fn client(conn: &AdminArgs) -> CliResult<Client> {
    let token = match &conn.admin_token {
        Some(t) => t.clone(),
        None => std::fs::read_to_string(conn.data_dir.join("admin.token"))
            .map(|t| t.trim().to_owned())
            .map_err(|_| {
                CliError::Input(format!(
                    "no admin token: pass --admin-token or run where {} exists",
                    conn.data_dir.join("admin.token").display()
                ))
            })?,
    };
    Ok(Client::new(&conn.server).with_token(token))
}

pub fn parse_purposes(raw: &[String]) -> CliResult<Vec<Purpose>> {
    raw.iter()
        .map(|p| {
            p.parse::<Purpose>()
                .map_err(|e| CliError::Input(format!("{p:?}: {e}")))
        })
        .collect()
}

pub fn parse_time(raw: &str) -> CliResult<Timestamp> {
    Timestamp::parse(raw).ok_or_else(|| {
        CliError::Input(format!(
            "{raw:?} is not RFC 3339 UTC (…Z) or Unix milliseconds"
        ))
    })
}

/// Sets a business's `verified` or `revoked` flag; gives its id.
async fn set_business_flag(
    conn: &AdminArgs,
    business: &str,
    flag: &str,
    value: bool,
) -> CliResult<AccountId> {
    let id = AccountId::parse(business)
        .ok_or_else(|| CliError::Input("the business is its account id (a UUID)".into()))?;
    client(conn)?
        .request_raw(
            reqwest::Method::PUT,
            &format!("/v1/admin/businesses/{id}/{flag}"),
            Some(&serde_json::json!({ "value": value })),
        )
        .await?;
    Ok(id)
}

pub async fn run(a: Admin) -> CliResult {
    match a {
        Admin::PublishPolicy {
            conn,
            text_file,
            purposes,
            profile,
        } => {
            let text = std::fs::read_to_string(&text_file).map_err(|e| {
                CliError::Input(format!("cannot read {}: {e}", text_file.display()))
            })?;
            let purposes = parse_purposes(&purposes)?;
            let p = client(&conn)?
                .publish_policy(&text, &purposes, profile.as_deref())
                .await?;
            println!(
                "published policy version {} ({}; purposes {:?}; sha256 {}); accept by {}",
                p.version,
                p.profile,
                p.purposes.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                p.text_sha256,
                p.accept_by.to_rfc3339()
            );
        }
        Admin::Policies { conn } => print_json(&client(&conn)?.policies().await?),
        Admin::Ledger {
            conn,
            shard,
            after,
            limit,
        } => match shard {
            Some(shard) => print_json(&client(&conn)?.ledger(shard, after, limit).await?),
            None => print_json(&client(&conn)?.ledger_all().await?),
        },
        Admin::VerifyLedger { conn } => {
            let r = client(&conn)?
                .verify_ledger()
                .await
                .map_err(|e| match e.code() {
                    Some("ledger_tampered") => CliError::Tampered(e.to_string()),
                    _ => e.into(),
                })?;
            println!(
                "ledger intact: {} entries in {} shards",
                r.entries,
                r.shards.len()
            );
            super::print_shards(&r.shards);
        }
        Admin::ConsentAt { conn, account, at } => {
            let id = AccountId::parse(&account)
                .ok_or_else(|| CliError::Input("--account must be a UUID".into()))?;
            let c = client(&conn)?;
            let at = match at {
                Some(t) => parse_time(&t)?,
                None => c
                    .clock()
                    .await
                    .map(|v| v.now)
                    .unwrap_or_else(|_| accord_domain::Clock::now(&accord_domain::SystemClock)),
            };
            let v = c.admin_consent_at(id, at).await?;
            println!(
                "consent of {} at {} (from the ledger alone):",
                id,
                at.to_rfc3339()
            );
            println!(
                "  granted: {:?}",
                v.granted_now.iter().map(|p| p.as_str()).collect::<Vec<_>>()
            );
            println!("  access:  {:?}", v.access);
            print_json(&v.state);
        }
        Admin::Feed { conn } => {
            let v = client(&conn)?
                .request_raw(reqwest::Method::GET, "/v1/admin/feed", None)
                .await?;
            let st = &v["stats"];
            let alert = if v["overdue"] == true {
                "  ALERT: unconfirmed past the 24 h deletion deadline"
            } else {
                ""
            };
            println!("lag: {} s{alert}", v["lag_s"]);
            println!(
                "pending events: {} (accounts: {}, failing: {}, max attempts: {})",
                st["pending_events"],
                st["pending_accounts"],
                st["failing_accounts"],
                st["max_attempts"]
            );
            println!("accounts held by the partner: {}", st["held_accounts"]);
        }
        Admin::Businesses { conn } => {
            let list: Vec<accord_messenger_wire::BusinessStatus> = client(&conn)?
                .request(reqwest::Method::GET, "/v1/admin/businesses", None)
                .await?;
            for b in list {
                println!(
                    "{} {:?} verified={} revoked={} quality={} tier={} — {}",
                    b.business,
                    b.display_name,
                    b.verified,
                    b.revoked,
                    b.quality.as_str(),
                    b.tier,
                    b.quality_reason
                );
            }
        }
        Admin::VerifyBusiness {
            conn,
            business,
            undo,
        } => {
            let id = set_business_flag(&conn, &business, "verified", !undo).await?;
            println!(
                "business {id} {}",
                if undo { "unverified" } else { "verified" }
            );
        }
        Admin::RevokeBusiness {
            conn,
            business,
            undo,
        } => {
            let id = set_business_flag(&conn, &business, "revoked", !undo).await?;
            println!(
                "business {id} {}",
                if undo { "reinstated" } else { "revoked" }
            );
        }
        Admin::Templates { conn, status } => {
            let list: Vec<accord_messenger_wire::TemplateView> = client(&conn)?
                .request(
                    reqwest::Method::GET,
                    &format!("/v1/admin/templates?status={status}"),
                    None,
                )
                .await?;
            for t in list {
                println!(
                    "{} {} {} {} v{} {} {:?}",
                    t.id, t.business, t.name, t.language, t.version, t.category, t.body
                );
            }
        }
        Admin::ReviewTemplate {
            conn,
            id,
            decision,
            reason,
        } => {
            let t: accord_messenger_wire::TemplateView = client(&conn)?
                .request(
                    reqwest::Method::POST,
                    &format!("/v1/admin/templates/{id}/review"),
                    Some(&serde_json::json!({ "decision": decision, "reason": reason })),
                )
                .await?;
            println!(
                "template {} {} v{}: {}",
                t.name, t.language, t.version, t.status
            );
        }
        Admin::Clock {
            conn,
            advance_days,
            advance_hours,
        } => {
            let c = client(&conn)?;
            let v = if advance_days == 0 && advance_hours == 0 {
                c.clock().await?
            } else {
                c.advance_clock(advance_days, advance_hours, 0).await?
            };
            println!("server time: {}", v.now_rfc3339);
        }
    }
    Ok(())
}
