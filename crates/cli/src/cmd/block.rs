//! `accord block` / `accord unblock`: messages from a blocked account are
//! accepted by the server but never delivered to this account, and the
//! sender gets no delivery receipt, so the block is not revealed.

use super::msg::parse_recipient;
use super::SessionArgs;
use crate::error::CliResult;
use crate::session::Session;
use accord_client::messaging::Recipient;
use accord_client::wire::{ClaimRequest, Claimed};
use accord_client::Client;
use accord_domain::AccountId;
use reqwest::Method;

#[derive(clap::Args, Debug)]
pub struct BlockArgs {
    #[command(flatten)]
    pub s: SessionArgs,
    /// The user: a phone number (international, or national with --region)
    /// or an account id.
    pub who: String,
    /// ISO 3166-1 alpha-2 region for a national number, e.g. ID.
    #[arg(long)]
    pub region: Option<String>,
}

/// The account of `who`. A phone number is resolved through the key
/// directory (the only lookup by number the messenger offers).
async fn resolve(client: &Client, a: &BlockArgs) -> CliResult<AccountId> {
    Ok(match parse_recipient(&a.who, a.region.as_deref())? {
        Recipient::Account(id) => id,
        Recipient::Phone(p) => {
            let c: Claimed = client
                .request(
                    Method::POST,
                    "/v1/keys/claim",
                    Some(&serde_json::json!(ClaimRequest::phone(p.e164()))),
                )
                .await?;
            c.account_id
        }
    })
}

pub async fn block(a: BlockArgs) -> CliResult {
    let client = Session::load(&a.s.path())?.client();
    let account = resolve(&client, &a).await?;
    client
        .request_raw(Method::POST, &format!("/v1/blocks/{account}"), None)
        .await?;
    println!("blocked {account}");
    Ok(())
}

pub async fn unblock(a: BlockArgs) -> CliResult {
    let client = Session::load(&a.s.path())?.client();
    let account = resolve(&client, &a).await?;
    client
        .request_raw(Method::DELETE, &format!("/v1/blocks/{account}"), None)
        .await?;
    println!("unblocked {account}");
    Ok(())
}
