//! `accord`: the binary is glue. Each command lives in `cmd/`; the load
//! generators of `accord bench oprf`, `relay` and `consent` in `bench/`;
//! this file parses arguments, sets up
//! logging and maps failures to exit codes: 0 success, 2 usage or input
//! error (one clear line), 1 internal failure (and a tampered ledger).

mod bench;
mod cmd;
mod error;
mod session;
mod upload;
mod ws;

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: the relay allocates and
/// frees small buffers on every frame and statement, and under load
/// glibc's malloc and free were a fifth of the CPU (`perf` on `accord
/// bench relay`); with mimalloc the bench gave 7–17% more envelopes/s in
/// interleaved runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    reset_sigpipe();
    let cli = match cmd::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let quiet = matches!(cli.command, cmd::Command::Demo(_) | cmd::Command::Bench(_));
    init_tracing(cli.log_json, quiet);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(cmd::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_tracing(json: bool, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if quiet {
        "warn"
    } else {
        "warn,accord=info,accord_messenger=info"
    };
    let filter = EnvFilter::try_from_env("ACCORD_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// `accord ... | head` must end quietly, not panic on a closed pipe: take
/// the default SIGPIPE action back (Rust ignores it by default).
fn reset_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread starts;
    // setting a signal disposition has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
