//! The consent ledger as a transparency log, on this node: one Merkle
//! tree per shard in memory (`accord_domain::transparency::ShardTree`),
//! caught up from the database before every use, and the checkpoint
//! signer.
//!
//! Every node keeps its own trees and catches up by reading the entries
//! after what it has, so nodes over one database agree without talking.
//! Catching up also checks each new entry's chain link and hash against
//! what the node already holds: a database rewritten under a running node
//! is refused (and logged) instead of signed.
//!
//! The signing key is kept outside the database ([`SignerSource`]): in
//! `accord serve`, the file `messenger.log.key` (0600) in the data
//! directory, or a file named by `--log-key-file`.

use crate::service::ServiceError;
use accord_domain::ledger::{entry_hash, ChainError, GENESIS};
use accord_domain::transparency::{
    Consistency, Inclusion, LogKey, LogSigner, ShardTree, SignedCheckpoint, SHARDS,
};
use accord_domain::Clock;
use accord_storage::MessengerStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Where the checkpoint signing key comes from.
#[derive(Clone, Debug)]
pub enum SignerSource {
    /// A file holding the 32-byte seed as hex, created (0600) on first use.
    File(PathBuf),
    /// A fresh key for this process only (tests, benches).
    Ephemeral,
    /// This seed (tests and the demo, which give the partner the public half).
    Seed([u8; 32]),
}

impl SignerSource {
    pub fn load(&self) -> std::io::Result<LogSigner> {
        match self {
            SignerSource::Ephemeral => Ok(LogSigner::from_seed(&random_seed())),
            SignerSource::Seed(seed) => Ok(LogSigner::from_seed(seed)),
            SignerSource::File(p) => load_or_create(p),
        }
    }
}

fn random_seed() -> [u8; 32] {
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    seed
}

fn load_or_create(path: &Path) -> std::io::Result<LogSigner> {
    let bad = |why: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {why}", path.display()),
        )
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let seed: [u8; 32] = hex::decode(text.trim())
                .map_err(|_| bad("not hex"))?
                .try_into()
                .map_err(|_| bad("not 32 bytes"))?;
            Ok(LogSigner::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = random_seed();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            use std::io::Write;
            let mut f = opts.open(path)?;
            f.write_all(hex::encode(seed).as_bytes())?;
            f.sync_all()?;
            Ok(LogSigner::from_seed(&seed))
        }
        Err(e) => Err(e),
    }
}

#[derive(Debug, Default)]
struct Shard {
    tree: ShardTree,
    /// The newest checkpoint this node signed of this shard.
    signed: Option<SignedCheckpoint>,
}

/// The log's trees and signer on this node.
#[derive(Debug)]
pub struct ConsentLog {
    store: Arc<dyn MessengerStore>,
    clock: Arc<dyn Clock>,
    signer: LogSigner,
    shards: Vec<Mutex<Shard>>,
    /// Checkpoints this node signed since it started.
    signed: std::sync::atomic::AtomicU64,
}

/// Entries read per page when catching up.
const PAGE: u32 = 1000;

impl ConsentLog {
    pub fn new(store: Arc<dyn MessengerStore>, clock: Arc<dyn Clock>, signer: LogSigner) -> Self {
        ConsentLog {
            store,
            clock,
            signer,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            signed: Default::default(),
        }
    }

    /// How many checkpoints this node has signed since it started.
    pub fn signed_count(&self) -> u64 {
        self.signed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signs `message` with the log key; the message's first line must
    /// be an origin of its own (`accord business template v1`), so that
    /// it cannot pass for a checkpoint.
    pub fn sign_message(&self, message: &[u8]) -> String {
        self.signer.sign_message(message)
    }

    /// The key checkpoints are verified against.
    pub fn public_key(&self) -> LogKey {
        self.signer.public()
    }

    fn shard(&self, shard: u16) -> Result<&Mutex<Shard>, ServiceError> {
        self.shards
            .get(shard as usize)
            .ok_or_else(|| ServiceError::BadRequest(format!("shard must be below {SHARDS}")))
    }

    /// Catches `s` up with the database, checking every new entry.
    async fn catch_up(&self, shard: u16, s: &mut Shard) -> Result<(), ServiceError> {
        loop {
            let page = self.store.ledger_page(shard, s.tree.len(), PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            for e in &page {
                let prev = s.tree.last().unwrap_or(GENESIS);
                let fits = e.seq == s.tree.len() + 1
                    && e.prev_hash == prev
                    && entry_hash(&e.prev_hash, e.seq, e.at, e.account, &e.kind, &e.payload)
                        == e.hash;
                if !fits {
                    tracing::error!(
                        shard,
                        seq = e.seq,
                        "the ledger in the database does not extend what this node has logged: refusing to sign"
                    );
                    return Err(ServiceError::LedgerTampered(ChainError::BrokenLink {
                        seq: e.seq,
                    }));
                }
                s.tree.push(e.hash);
            }
        }
    }

    /// A checkpoint of `shard` at its current size, signed now unless
    /// this node already signed that size (then that one).
    pub async fn checkpoint(&self, shard: u16) -> Result<SignedCheckpoint, ServiceError> {
        let mut s = self.shard(shard)?.lock().await;
        self.catch_up(shard, &mut s).await?;
        self.sign_current(shard, &mut s).await
    }

    async fn sign_current(
        &self,
        shard: u16,
        s: &mut Shard,
    ) -> Result<SignedCheckpoint, ServiceError> {
        if let Some(c) = &s.signed {
            if c.checkpoint.size == s.tree.len() {
                return Ok(c.clone());
            }
        }
        let c = self.signer.sign(s.tree.checkpoint(shard, self.clock.now()));
        self.store.put_checkpoint(&c).await?;
        self.signed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        s.signed = Some(c.clone());
        Ok(c)
    }

    /// Signs a checkpoint of every shard that grew since this node last
    /// signed it (the background loop runs this at least once a minute).
    /// Returns how many it signed.
    pub async fn sign_grown(&self) -> Result<usize, ServiceError> {
        let mut n = 0;
        for shard in 0..SHARDS {
            let mut s = self.shards[shard as usize].lock().await;
            self.catch_up(shard, &mut s).await?;
            let grown = s
                .signed
                .as_ref()
                .map_or(!s.tree.is_empty(), |c| c.checkpoint.size != s.tree.len());
            if grown {
                self.sign_current(shard, &mut s).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The newest checkpoint of every shard, signed now where needed.
    pub async fn checkpoints(&self) -> Result<Vec<SignedCheckpoint>, ServiceError> {
        let mut out = Vec::with_capacity(SHARDS as usize);
        for shard in 0..SHARDS {
            out.push(self.checkpoint(shard).await?);
        }
        Ok(out)
    }

    /// Inclusion proofs of `seqs` of `shard`, all against one checkpoint
    /// at the shard's current size.
    pub async fn prove(
        &self,
        shard: u16,
        seqs: &[u64],
    ) -> Result<(SignedCheckpoint, Vec<Inclusion>), ServiceError> {
        let mut s = self.shard(shard)?.lock().await;
        self.catch_up(shard, &mut s).await?;
        let c = self.sign_current(shard, &mut s).await?;
        let proofs = seqs
            .iter()
            .map(|&seq| {
                s.tree.prove_inclusion(shard, seq).ok_or_else(|| {
                    ServiceError::BadRequest(format!("shard {shard} has no entry {seq}"))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((c, proofs))
    }

    /// A consistency proof of `shard` between sizes `from` and `to`
    /// (`to` at most the current size).
    pub async fn consistency(
        &self,
        shard: u16,
        from: u64,
        to: u64,
    ) -> Result<Consistency, ServiceError> {
        let mut s = self.shard(shard)?.lock().await;
        self.catch_up(shard, &mut s).await?;
        let len = s.tree.len();
        if from > to || to > len {
            return Err(ServiceError::BadRequest(format!(
                "need from <= to <= {len} (shard {shard}'s size)"
            )));
        }
        let proof = if to == len {
            s.tree.prove_consistency(shard, from)
        } else {
            s.tree
                .prefix(to)
                .and_then(|t| t.prove_consistency(shard, from))
        };
        Ok(proof.expect("sizes checked above"))
    }
}
