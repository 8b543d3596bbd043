//! `accord bench kt`: the key directory's costs, printed as `name: value`
//! lines. The directory is the messenger's own (`KeyDirectory` on a
//! SQLite database in a temporary directory, so publishing includes the
//! log's durable write); verification is the SDK's (`accord_client::kt`).
//!
//! - the time to publish one epoch of 1,000 and of `--large` (100,000)
//!   account changes (each a device list of one device);
//! - one lookup: the server's proof generation and the client's proof
//!   verification, averaged over `--lookups` random accounts;
//! - the size of a lookup, history and append-only proof;
//! - what a first message to a new peer pays for it: the proof rides in
//!   the claim's answer (no extra round trip), so the added time is one
//!   lookup plus one verification.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use accord_client::kt::verify::verify_lookup;
use accord_client::kt::DirectoryKeys;
use accord_domain::{AccountId, DeviceId, SystemClock};
use accord_messenger::kt::KeyDirectory;
use accord_messenger_wire::{DeviceList, DirectoryDevice};
use accord_storage::{Db, SqlKtStore};
use base64::Engine;

pub struct KtBenchOptions {
    pub large: usize,
    pub lookups: usize,
}

fn random_list() -> DeviceList {
    let mut ed25519 = [0u8; 32];
    let mut curve25519 = [0u8; 32];
    ed25519[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    curve25519[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    DeviceList::new(vec![DirectoryDevice {
        device_id: DeviceId::random(),
        ed25519,
        curve25519,
    }])
}

fn b64_len(s: &str) -> usize {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map(|b| b.len())
        .unwrap_or(0)
}

pub async fn bench_kt(opts: KtBenchOptions) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let db = Db::open_service(dir.path().to_str().unwrap_or("."), "messenger").await?;
    let store = Arc::new(SqlKtStore::new(db).await?);
    let kt = KeyDirectory::open(store, dir.path(), Arc::new(SystemClock)).await?;
    let mut out = String::new();
    let mut accounts = Vec::new();

    for (name, n) in [("1000", 1_000usize), ("large", opts.large)] {
        let batch: Vec<(AccountId, DeviceList)> = (0..n)
            .map(|_| (AccountId::random(), random_list()))
            .collect();
        accounts.extend(batch.iter().map(|(a, _)| *a));
        let t = Instant::now();
        kt.publish(batch).await?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let label = if name == "large" {
            format!("{n}")
        } else {
            name.to_owned()
        };
        writeln!(out, "publish_epoch_{label}_changes_ms: {ms:.1}")?;
        writeln!(
            out,
            "publish_epoch_{label}_changes_per_s: {:.0}",
            n as f64 / (ms / 1e3)
        )?;
    }
    writeln!(out, "directory_accounts: {}", accounts.len())?;

    let keys = DirectoryKeys::from_wire(kt.keys())?;
    let lookups = opts.lookups.max(1);
    let step = (accounts.len() / lookups).max(1);
    let picked: Vec<AccountId> = accounts
        .iter()
        .step_by(step)
        .take(lookups)
        .copied()
        .collect();
    let (mut server_s, mut client_s, mut proof_bytes) = (0f64, 0f64, 0usize);
    for a in &picked {
        let t = Instant::now();
        let l = kt.lookup(*a).await?;
        server_s += t.elapsed().as_secs_f64();
        proof_bytes += b64_len(&l.proof);
        let t = Instant::now();
        let proven = verify_lookup(&keys, *a, &l)?;
        client_s += t.elapsed().as_secs_f64();
        anyhow::ensure!(proven.devices.devices().len() == 1, "lookup value");
    }
    let n = picked.len() as f64;
    let lookup_ms = server_s / n * 1e3;
    let verify_ms = client_s / n * 1e3;
    writeln!(out, "lookup_server_ms: {lookup_ms:.3}")?;
    writeln!(out, "lookup_verify_client_ms: {verify_ms:.3}")?;
    writeln!(out, "lookup_proof_bytes: {:.0}", proof_bytes as f64 / n)?;
    let h = kt.history(picked[0]).await?;
    writeln!(
        out,
        "history_proof_bytes_one_version: {}",
        b64_len(&h.proof)
    )?;
    let audit = kt.audit(1, 2).await?;
    writeln!(
        out,
        "audit_proof_bytes_epoch_1_to_2: {}",
        b64_len(&audit.proof)
    )?;
    writeln!(out, "first_message_added_ms: {:.3}", lookup_ms + verify_ms)?;
    Ok(out)
}
