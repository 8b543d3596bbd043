use super::DataArgs;
use crate::error::{CliError, CliResult};
use accord_domain::receipt::ConsentReceipt;
use accord_domain::transparency::{LogKey, SignedCheckpoint};
use accord_messenger::service::{verify_ledger, LedgerVerifyError};
use accord_messenger::transparency::SignerSource;
use accord_storage::{Db, MessengerStore, SqlMessengerStore};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum Ledger {
    /// Check the consent ledger in the database directly: every shard's
    /// hash chain against its head, then every shard's Merkle tree against
    /// signed checkpoints held outside the database (files, the partner's
    /// witness, users' receipts). Exit 0 if everything holds; 1 naming the
    /// first bad entry or the contradicted checkpoint, even when the head
    /// rows were rewritten to match. The server may be running or not.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A signed checkpoint, or a JSON array of them (as
    /// `GET /v1/transparency/checkpoints` returns), saved earlier. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Vec<PathBuf>,
    /// A consent receipt a user kept (`accord consent receipt`):
    /// its checkpoints, and its entries, which must be in the ledger as
    /// they were. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub receipt: Vec<PathBuf>,
    /// Also check against every checkpoint the partner kept from the feed.
    #[arg(long, value_enum)]
    pub witness: Vec<Witness>,
    /// The partner's base URL, for `--witness partner`.
    #[arg(
        long,
        env = "ACCORD_PARTNER_URL",
        default_value = "http://127.0.0.1:8082"
    )]
    pub partner_url: String,
    /// The partner's admin token (default: <data-dir>/admin.token).
    #[arg(long, env = "ACCORD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The messenger's log key (hex). Default: the public half of
    /// <data-dir>/messenger.log.key, when it is there.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Witness {
    Partner,
}

pub async fn run(l: Ledger) -> CliResult {
    match l {
        Ledger::Verify(a) => verify(a).await,
    }
}

async fn verify(a: VerifyArgs) -> CliResult {
    let d = &a.data;
    if d.database_url.is_none() && !d.data_dir.join("messenger.db").exists() {
        return Err(CliError::Input(format!(
            "no messenger database in {} (pass --data-dir or --database-url)",
            d.data_dir.display()
        )));
    }
    let mut checkpoints: Vec<SignedCheckpoint> = Vec::new();
    for f in &a.checkpoint {
        checkpoints.extend(read_checkpoints(f)?);
    }
    let mut receipts = Vec::new();
    for f in &a.receipt {
        let r: ConsentReceipt = read_json(f, "a consent receipt")?;
        checkpoints.extend(r.ledger.checkpoints.iter().cloned());
        receipts.push((f.clone(), r));
    }
    if a.witness.contains(&Witness::Partner) {
        let got = partner_checkpoints(&a).await?;
        eprintln!(
            "accord: the partner kept {} checkpoints of the log",
            got.len()
        );
        checkpoints.extend(got);
    }
    let key = log_key(&a)?;
    if key.is_none() && !checkpoints.is_empty() {
        return Err(CliError::Input(
            "checkpoints need the messenger's log key: pass --key (GET /v1/transparency/key)"
                .into(),
        ));
    }
    let db = Db::open_service(&d.location(), "messenger").await?;
    let store = SqlMessengerStore::new(db).await?;
    let report = match verify_ledger(&store, &checkpoints, key.as_ref()).await {
        Ok(r) => r,
        Err(LedgerVerifyError::Chain { shard, error }) => {
            return Err(CliError::Tampered(match error.seq() {
                Some(seq) => format!("shard {shard}: first bad entry is #{seq}: {error}"),
                None => format!("shard {shard}: {error}"),
            }))
        }
        Err(LedgerVerifyError::Witness(e)) => {
            return Err(CliError::Tampered(format!(
                "a checkpoint held outside the database is contradicted: {e}"
            )))
        }
        Err(LedgerVerifyError::Store(e)) => {
            return Err(CliError::Tampered(format!("an entry cannot be read: {e}")))
        }
        Err(e) => return Err(CliError::Input(e.to_string())),
    };
    // A receipt's own entries name exactly what was changed.
    for (file, r) in &receipts {
        for p in &r.ledger.entries {
            let shard = p.inclusion.shard;
            let now = store
                .ledger_page(shard, p.entry.seq.saturating_sub(1), 1)
                .await?
                .into_iter()
                .next();
            if now.as_ref() != Some(&p.entry) {
                return Err(CliError::Tampered(format!(
                    "entry #{} of shard {shard} is not as the receipt {} proves it was ({})",
                    p.entry.seq,
                    file.display(),
                    if now.is_none() {
                        "it is gone"
                    } else {
                        "it was changed"
                    }
                )));
            }
        }
    }
    println!(
        "ledger intact: {} entries in {} shards",
        report.entries,
        report.shards.len()
    );
    super::print_shards(&report.shards);
    if checkpoints.is_empty() {
        println!("checked against no outside checkpoint: a rewrite of the whole database would pass (give --checkpoint, --receipt or --witness partner)");
    } else {
        println!(
            "consistent with {} signed checkpoints held outside the database",
            report.checkpoints_checked
        );
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(f: &PathBuf, what: &str) -> CliResult<T> {
    let text =
        std::fs::read_to_string(f).map_err(|e| CliError::Input(format!("{}: {e}", f.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::Input(format!("{} is not {what}: {e}", f.display())))
}

fn read_checkpoints(f: &PathBuf) -> CliResult<Vec<SignedCheckpoint>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(SignedCheckpoint),
        Many(Vec<SignedCheckpoint>),
    }
    Ok(
        match read_json::<OneOrMany>(f, "a signed checkpoint or a list of them")? {
            OneOrMany::One(c) => vec![c],
            OneOrMany::Many(v) => v,
        },
    )
}

fn log_key(a: &VerifyArgs) -> CliResult<Option<LogKey>> {
    if let Some(k) = &a.key {
        return LogKey::from_hex(k)
            .map(Some)
            .map_err(|e| CliError::Input(format!("--key: {e}")));
    }
    let file = a.data.data_dir.join("messenger.log.key");
    if !file.exists() {
        return Ok(None);
    }
    SignerSource::File(file)
        .load()
        .map(|s| Some(s.public()))
        .map_err(|e| CliError::Input(format!("the log key file: {e}")))
}

async fn partner_checkpoints(a: &VerifyArgs) -> CliResult<Vec<SignedCheckpoint>> {
    let token = match &a.admin_token {
        Some(t) => t.clone(),
        None => super::serve::admin_token_in(&a.data.data_dir)?,
    };
    let url = format!(
        "{}/v1/admin/partner/checkpoints",
        a.partner_url.trim_end_matches('/')
    );
    let resp = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| CliError::Input(format!("the partner at {}: {e}", a.partner_url)))?;
    if !resp.status().is_success() {
        return Err(CliError::Input(format!(
            "the partner answered {} for its checkpoints",
            resp.status()
        )));
    }
    resp.json()
        .await
        .map_err(|e| CliError::Input(format!("the partner's checkpoints: {e}")))
}
