use super::SessionArgs;
use crate::error::{CliError, CliResult};
use crate::session::Session;
use accord_client::discovery::{discover, DiscoveryError};
use accord_domain::PhoneNumber;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ContactsCmd {
    /// Read one number per line (national with --region, or international)
    /// and print which ones use the messenger. The messenger never sees the
    /// numbers; the key service sees them only blinded.
    Discover {
        #[command(flatten)]
        s: SessionArgs,
        /// The address book: one number per line; blank lines and lines
        /// starting with # are skipped.
        #[arg(long)]
        file: PathBuf,
        /// Default region (ISO 3166-1 alpha-2) for national numbers.
        #[arg(long)]
        region: Option<String>,
    },
}

pub async fn run(c: ContactsCmd) -> CliResult {
    match c {
        ContactsCmd::Discover { s, file, region } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", file.display())))?;
            let mut raw = Vec::new();
            let mut numbers = Vec::new();
            let mut skipped = 0;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                match PhoneNumber::parse(line, region.as_deref()) {
                    Ok(p) => {
                        raw.push(line.to_owned());
                        numbers.push(p);
                    }
                    Err(e) => {
                        skipped += 1;
                        eprintln!("line {}: skipped: {e}", i + 1);
                    }
                }
            }
            let sess = Session::load(&s.path())?;
            eprintln!("discovering {} contacts…", numbers.len());
            let found = discover(&sess.client(), sess.keyd_token.as_deref(), &numbers)
                .await
                .map_err(|e| match e {
                    DiscoveryError::Messenger(c) => CliError::Api(c),
                    DiscoveryError::KeyService(accord_keyd::OprfClientError::QuotaExceeded {
                        retry_after_s,
                    }) => CliError::Input(format!(
                        "daily contact-discovery quota reached; retry in {retry_after_s} s"
                    )),
                    other => CliError::Input(other.to_string()),
                })?;
            let mut n = 0;
            for ((r, p), f) in raw.iter().zip(&numbers).zip(&found) {
                if *f {
                    n += 1;
                    println!("{}\t{r}", p.e164());
                }
            }
            eprintln!(
                "{n} of {} contacts use the messenger ({skipped} lines skipped)",
                numbers.len()
            );
        }
    }
    Ok(())
}
