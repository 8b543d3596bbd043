//! Command-line definitions and dispatch; one module per command family.

mod admin;
mod audience;
mod audit;
mod bench;
mod block;
mod business;
mod business_agent;
mod contacts;
mod demo;
mod demo_audience;
mod ledger;
mod msg;
mod normalize;
mod partner;
mod serve;
mod user;

use crate::error::CliResult;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Accord: a messenger and its partner service sharing account
/// information only with consent, as keyed pseudonyms.
#[derive(Parser, Debug)]
#[command(name = "accord", version, about, propagate_version = true)]
pub struct Cli {
    /// Log as JSON lines (to stderr).
    #[arg(long, global = true, env = "ACCORD_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the operator's things are: data directory or database, admin token.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Data directory for the embedded SQLite databases (created on first start).
    #[arg(long, env = "ACCORD_DATA_DIR", default_value = "./accord-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL instead of SQLite, e.g. postgres://postgres@127.0.0.1:5432/accord
    /// (each service gets its own database, `<name>_<service>`).
    #[arg(long, env = "ACCORD_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl DataArgs {
    /// What `Db::open_service` takes.
    pub fn location(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| self.data_dir.display().to_string())
    }
}

/// How to reach a running server as the operator.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminArgs {
    /// Base URL of the server.
    #[arg(long, env = "ACCORD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The operator's admin token (default: read from <data-dir>/admin.token).
    #[arg(long, env = "ACCORD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Data directory holding admin.token.
    #[arg(long, env = "ACCORD_DATA_DIR", default_value = "./accord-data")]
    pub data_dir: PathBuf,
}

/// How to reach a running server as a device.
#[derive(clap::Args, Debug, Clone)]
pub struct SessionArgs {
    /// Session file of this device (server URL and bearer token).
    #[arg(long, env = "ACCORD_SESSION")]
    pub session: Option<PathBuf>,
}

impl SessionArgs {
    pub fn path(&self) -> PathBuf {
        self.session
            .clone()
            .unwrap_or_else(crate::session::default_path)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the services (embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Walk the whole consent story against a fresh in-process server and exit.
    Demo(demo::DemoArgs),
    /// Print the normalised form of a phone number or an email address.
    #[command(subcommand)]
    Normalize(normalize::Normalize),
    /// Check the consent ledger's hash chain in the database directly.
    #[command(subcommand)]
    Ledger(ledger::Ledger),
    /// Operator commands against a running server.
    #[command(subcommand)]
    Admin(admin::Admin),
    /// Register this device by phone number (creates or joins the account).
    Register(user::RegisterArgs),
    /// Read or accept the policy in force.
    #[command(subcommand)]
    Policy(user::PolicyCmd),
    /// The privacy centre: consent state, grants, withdrawals, history, receipt.
    #[command(subcommand)]
    Consent(user::ConsentCmd),
    /// This account: show, export, delete.
    #[command(subcommand)]
    Account(user::AccountCmd),
    /// Private contact discovery: which of your contacts use the messenger.
    #[command(subcommand)]
    Contacts(contacts::ContactsCmd),
    /// The partner (social) service as its user: sign up with a phone
    /// pseudonym, upload contacts, see suggestions.
    #[command(subcommand)]
    Partner(partner::PartnerCmd),
    /// Measure the hot paths and print `name: value` lines.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// End-to-end encrypted messages: send, listen, keys.
    #[command(subcommand)]
    Msg(msg::MsgCmd),
    /// Audit a messenger: `accord audit keys` checks its key directory's
    /// history from the published roots (no account needed).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Business messaging: for a business (register, keys, templates,
    /// status, webhooks, agent, send) and for a user (opt in, mute, block,
    /// report, list).
    #[command(subcommand)]
    Business(business::BusinessCmd),
    /// Custom audiences, on the business's machine: check a customer
    /// list as an upload would read it.
    #[command(subcommand)]
    Audience(audience::AudienceCmd),
    /// Block a user: their messages are no longer delivered to you.
    Block(block::BlockArgs),
    /// Unblock a user.
    Unblock(block::BlockArgs),
}

pub async fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Serve(a) => serve::run(a).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Normalize(n) => normalize::run(n),
        Command::Audience(a) => audience::run(a).await,
        Command::Ledger(l) => ledger::run(l).await,
        Command::Admin(a) => admin::run(a).await,
        Command::Register(a) => user::register(a).await,
        Command::Policy(p) => user::policy(p).await,
        Command::Consent(c) => user::consent(c).await,
        Command::Account(a) => user::account(a).await,
        Command::Contacts(c) => contacts::run(c).await,
        Command::Bench(b) => bench::run(b).await,
        Command::Partner(p) => partner::run(p).await,
        Command::Msg(m) => msg::run(m).await,
        Command::Audit(a) => audit::run(a).await,
        Command::Business(b) => business::run(b).await,
        Command::Block(a) => block::block(a).await,
        Command::Unblock(a) => block::unblock(a).await,
    }
}

/// Prints a JSON value, pretty.
pub fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).expect("serialisable"));
}

/// The lines of a verified ledger: every shard that has entries.
pub fn print_shards(shards: &[accord_messenger::service::ShardReport]) {
    for s in shards.iter().filter(|s| s.entries > 0) {
        println!(
            "  shard {:>2}: {:>7} entries, head {}, root {}",
            s.shard, s.entries, s.head_hash, s.root
        );
    }
}
