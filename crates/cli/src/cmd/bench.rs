use crate::error::{CliError, CliResult};
use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Single-core blind_evaluate cost against the batch endpoint's
    /// end-to-end throughput over loopback HTTP on all cores; prints
    /// `name: value` lines, the last one `ratio: X.XX`. Build with
    /// --release for meaningful figures.
    Oprf {
        /// Seconds the HTTP clients keep posting.
        #[arg(long, default_value_t = 4)]
        seconds: u64,
    },
}

pub async fn run(b: BenchCmd) -> CliResult {
    match b {
        BenchCmd::Oprf { seconds } => {
            if cfg!(debug_assertions) {
                eprintln!("warning: debug build; run `cargo run --release -- bench oprf` for real figures");
            }
            let opts = accord_keyd::BenchOptions {
                duration: std::time::Duration::from_secs(seconds.clamp(1, 60)),
                ..Default::default()
            };
            let report = accord_keyd::bench_oprf(opts)
                .await
                .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
            print!("{report}");
        }
    }
    Ok(())
}
