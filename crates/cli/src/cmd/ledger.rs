use super::DataArgs;
use crate::error::{CliError, CliResult};
use accord_messenger::service::{verify_ledger, ServiceError};
use accord_storage::{Db, SqlMessengerStore};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Ledger {
    /// Walk the hash chain; exit 0 if intact, 1 naming the first altered or
    /// missing entry otherwise. Reads the database directly; the server may
    /// be running or not.
    Verify(DataArgs),
}

pub async fn run(l: Ledger) -> CliResult {
    match l {
        Ledger::Verify(d) => {
            if d.database_url.is_none() && !d.data_dir.join("messenger.db").exists() {
                return Err(CliError::Input(format!(
                    "no messenger database in {} (pass --data-dir or --database-url)",
                    d.data_dir.display()
                )));
            }
            let db = Db::open_service(&d.location(), "messenger").await?;
            let store = SqlMessengerStore::new(db).await?;
            match verify_ledger(&store).await {
                Ok(r) => {
                    println!("ledger intact: {} entries, head {}", r.entries, r.head_hash);
                    Ok(())
                }
                Err(ServiceError::LedgerTampered(e)) => Err(CliError::Tampered(match e.seq() {
                    Some(seq) => format!("first bad entry is #{seq}: {e}"),
                    None => e.to_string(),
                })),
                Err(ServiceError::Store(e)) => {
                    Err(CliError::Tampered(format!("an entry cannot be read: {e}")))
                }
                Err(e) => Err(CliError::Internal(anyhow::anyhow!(e.to_string()))),
            }
        }
    }
}
