//! `accord audit keys`: anyone (no account needed) checks the messenger's
//! key directory from its published roots: every root signed by the
//! directory's key, no root seen before changed, and append-only proofs
//! between the epochs (`accord_client::kt::Auditor`). The roots seen are
//! kept in a state file, so each run goes on from the last and a history
//! rewritten in between is caught.

use crate::error::{CliError, CliResult};
use accord_client::kt::audit::AuditError;
use accord_client::kt::Auditor;
use accord_client::Client;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Verify the key directory's signed roots and the append-only proofs
    /// between its epochs. Exit 0 when the history holds, 1 when it was
    /// forked or rewritten (or a proof fails), 2 for bad input.
    Keys {
        /// Base URL of the messenger.
        #[arg(long, env = "ACCORD_SERVER", default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Where this auditor keeps the roots it has seen (JSON, public
        /// data), created on first run.
        #[arg(long, default_value = "./accord-kt-audit.json")]
        state: PathBuf,
    },
}

pub async fn run(c: AuditCmd) -> CliResult {
    match c {
        AuditCmd::Keys { server, state } => {
            let client = Client::new(&server);
            let mut auditor = Auditor::open(&state).map_err(audit_error)?;
            let before = auditor.audited_to();
            let r = auditor.run(&client).await.map_err(audit_error)?;
            match r.proven {
                Some((from, to)) => println!(
                    "key directory audit passed: {} signed roots checked, append-only from epoch {from} to {to}",
                    r.roots_checked
                ),
                None => println!(
                    "key directory audit passed: {} signed roots checked, nothing new since epoch {before}",
                    r.roots_checked
                ),
            }
            Ok(())
        }
    }
}

fn audit_error(e: AuditError) -> CliError {
    match e {
        AuditError::Failed(k) => CliError::Tampered(format!("key directory: {k}")),
        AuditError::Client(c) => CliError::Api(c),
        AuditError::State(p, m) => CliError::Input(format!("audit state {}: {m}", p.display())),
        other => CliError::Internal(anyhow::anyhow!("{other}")),
    }
}
