use crate::error::{CliError, CliResult};
use accord_domain::{Email, PhoneNumber};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum Normalize {
    /// Print a phone number in E.164 (`0812-3456-7890 --region ID` → `+6281234567890`).
    Phone {
        /// Default region (ISO 3166-1 alpha-2) for national formats.
        #[arg(long)]
        region: Option<String>,
        raw: String,
    },
    /// Print an email address trimmed and lowercased.
    Email { raw: String },
}

pub fn run(n: Normalize) -> CliResult {
    match n {
        Normalize::Phone { region, raw } => {
            let p = PhoneNumber::parse(&raw, region.as_deref())
                .map_err(|e| CliError::Input(e.to_string()))?;
            println!("{}", p.e164());
        }
        Normalize::Email { raw } => {
            let e = Email::parse(&raw).map_err(|e| CliError::Input(e.to_string()))?;
            println!("{}", e.as_str());
        }
    }
    Ok(())
}
