//! `accord audience`: a business's customer lists, on its own machine.
//!
//! `check` reads and normalises a list exactly as the upload will
//! (`accord_domain::audience`), streaming, and prints the summary the
//! upload prints: rows, valid phones, valid emails, rejected; rejected
//! rows go to a rejects file with their line and reason (never their
//! content on the terminal). Nothing leaves the machine. Blinding,
//! evaluation and upload to the partner come with the rest of custom
//! audiences.

use crate::error::{CliError, CliResult};
use accord_domain::audience::{CustomerList, Row, Summary};
use clap::Subcommand;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum AudienceCmd {
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

pub fn run(c: AudienceCmd) -> CliResult {
    match c {
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

fn check(file: &PathBuf, region: Option<&str>, rejects: Option<PathBuf>) -> CliResult<Summary> {
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", file.display())))?;
    let bad =
        |e: accord_domain::audience::ListError| CliError::Input(format!("{}: {e}", file.display()));
    let list = CustomerList::new(std::io::BufReader::new(input), region).map_err(bad)?;
    for name in &list.ignored {
        eprintln!("warning: column {name:?} is not used (phone, email, fn, ln, country are)");
    }
    let rejects_path = rejects.unwrap_or_else(|| {
        let mut p = file.clone().into_os_string();
        p.push(".rejects.csv");
        PathBuf::from(p)
    });
    // Written whole on every run (a header alone when nothing is
    // rejected), so that a file left by an earlier run never misleads.
    let f = std::fs::File::create(&rejects_path)
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", rejects_path.display())))?;
    let mut out = std::io::BufWriter::new(f);
    let io = |e: std::io::Error| CliError::Internal(e.into());
    writeln!(out, "line,reason").map_err(io)?;
    let mut summary = Summary::default();
    for row in list {
        let row = row.map_err(bad)?;
        summary.add(&row);
        if let Row::Rejected(r) = &row {
            writeln!(out, "{},\"{}\"", r.line, r.reason.replace('"', "\"\"")).map_err(io)?;
        }
        if summary.rows.is_multiple_of(PROGRESS_EVERY) {
            eprintln!("read {} rows", summary.rows);
        }
    }
    out.flush().map_err(io)?;
    if summary.rejected > 0 {
        eprintln!(
            "{} rejected rows, with their reasons, in {}",
            summary.rejected,
            rejects_path.display()
        );
    }
    Ok(summary)
}
