//! Runs [`accord_keyd::bench_oprf`] with its defaults until `accord bench
//! oprf` exists: `cargo run --release -p accord-keyd --example bench_oprf`.

#[tokio::main]
async fn main() {
    match accord_keyd::bench_oprf(accord_keyd::BenchOptions::default()).await {
        Ok(report) => println!("{report}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
