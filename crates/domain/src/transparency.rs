//! The consent ledger as a transparency log (RFC 6962/9162 style).
//!
//! The ledger is **sharded by account**: every account's entries are in
//! one of [`SHARDS`] shards ([`shard_of`]), policy publications in shard 0
//! ([`POLICY_SHARD`]). Each shard is its own hash chain (as before, per
//! shard) *and* its own append-only Merkle tree, whose leaves are the
//! entries' chain hashes in `seq` order (leaf index = `seq - 1`). The tree
//! is `ct-merkle`'s RFC 6962 tree over SHA-256; nothing here hashes tree
//! nodes by hand.
//!
//! The messenger signs a [`Checkpoint`] (shard, tree size, root, time) per
//! shard with an ed25519 key kept outside its database ([`LogKey`] is the
//! public half). Signed checkpoints leave the database's reach: the
//! partner keeps every one a feed batch carries, receipts carry them to
//! users, and anyone can save one to a file. A rewrite or truncation of
//! the database then contradicts a checkpoint held elsewhere, even when
//! the chain and its heads were recomputed to match: the root of the
//! rewritten log's first `size` leaves differs from the signed root.
//!
//! Proofs are the crate's: an inclusion proof shows an entry (by its
//! chain hash, recomputed from its contents) is leaf `seq - 1` of the tree
//! a checkpoint signs; a consistency proof shows one checkpoint's tree is
//! a prefix of another's. Both are `ceil(log2(n))` hashes at most.

use crate::ids::AccountId;
use crate::ledger::{entry_hash, Hash, LedgerEntry};
use crate::time::Timestamp;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How many shards the consent log has. Fixed for a database's life (the
/// shard of an account must never move); the migration creates them.
pub const SHARDS: u16 = 16;

/// Where policy publications (entries of no account) go. Shard 0 also
/// holds the whole ledger from before sharding (messenger migration 0008).
pub const POLICY_SHARD: u16 = 0;

/// The name a checkpoint signs, so that a signature over one log's
/// checkpoint is never valid for another kind of message.
pub const LOG_ORIGIN: &str = "accord consent log v1";

/// The shard of an account: a hash of its random id, so shards fill
/// evenly whatever the ids look like.
pub fn shard_of(account: AccountId) -> u16 {
    let d = Sha256::new()
        .chain_update(b"accord-ledger-shard\0")
        .chain_update(account.0.as_bytes())
        .finalize();
    u16::from_be_bytes([d[0], d[1]]) % SHARDS
}

/// The shard of an entry about `account` (`None`: a policy publication).
pub fn shard_of_record(account: Option<AccountId>) -> u16 {
    account.map_or(POLICY_SHARD, shard_of)
}

/// What a checkpoint says: shard `shard` had `size` entries whose tree
/// root was `root`, at `at`.
/// (No `deny_unknown_fields`: it is flattened into [`SignedCheckpoint`],
/// whose signature field it must let through.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkpoint {
    pub shard: u16,
    pub size: u64,
    /// The RFC 6962 root, 32 bytes as lowercase hex.
    pub root: String,
    /// When it was signed, milliseconds since the Unix epoch.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub at: Timestamp,
}

impl Checkpoint {
    /// The exact bytes that are signed: a small text in the manner of a
    /// signed note (origin line first), so it can be read and re-derived
    /// by anyone.
    pub fn signed_message(&self) -> Vec<u8> {
        format!(
            "{LOG_ORIGIN}\nshard {}\n{}\n{}\n{}\n",
            self.shard, self.size, self.root, self.at.0
        )
        .into_bytes()
    }

    fn root_hash(&self) -> Result<RootHash<Sha256>, ProofError> {
        let bytes = parse_hash(&self.root).ok_or(ProofError::Malformed("checkpoint root"))?;
        Ok(RootHash::new(bytes.into(), self.size))
    }
}

/// A checkpoint with the messenger's signature over
/// [`Checkpoint::signed_message`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignedCheckpoint {
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// ed25519 signature, 64 bytes as lowercase hex.
    pub signature: String,
}

/// The public key that checkpoints are verified against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogKey(VerifyingKey);

impl LogKey {
    /// Parses 32 bytes of lowercase or uppercase hex.
    pub fn from_hex(s: &str) -> Result<Self, ProofError> {
        let b = parse_hash(s.trim()).ok_or(ProofError::Malformed("log key"))?;
        VerifyingKey::from_bytes(&b)
            .map(LogKey)
            .map_err(|_| ProofError::Malformed("log key"))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Checks a signature (64 bytes as hex) over `message`, which must
    /// begin with an origin line of its own (`accord business template
    /// v1`): the key signs checkpoints and business templates, and the
    /// first line keeps one from passing for the other.
    pub fn verify_message(&self, message: &[u8], signature: &str) -> Result<(), ProofError> {
        let sig = hex::decode(signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(ProofError::Malformed("signature"))?;
        self.0
            .verify(message, &sig)
            .map_err(|_| ProofError::Malformed("signature (it does not verify)"))
    }

    /// Checks the signature of `c`.
    pub fn verify(&self, c: &SignedCheckpoint) -> Result<(), ProofError> {
        let sig = hex::decode(&c.signature)
            .ok()
            .and_then(|b| Signature::from_slice(&b).ok())
            .ok_or(ProofError::Malformed("checkpoint signature"))?;
        self.0
            .verify(&c.checkpoint.signed_message(), &sig)
            .map_err(|_| ProofError::BadSignature {
                shard: c.checkpoint.shard,
                size: c.checkpoint.size,
            })
    }
}

/// The private half, held by the messenger outside its database.
pub struct LogSigner(SigningKey);

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSigner({})", self.public().to_hex())
    }
}

impl LogSigner {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        LogSigner(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> LogKey {
        LogKey(self.0.verifying_key())
    }

    /// Signs `message` (see [`LogKey::verify_message`]); 64 bytes as hex.
    pub fn sign_message(&self, message: &[u8]) -> String {
        hex::encode(self.0.sign(message).to_bytes())
    }

    pub fn sign(&self, checkpoint: Checkpoint) -> SignedCheckpoint {
        let sig = self.0.sign(&checkpoint.signed_message());
        SignedCheckpoint {
            checkpoint,
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// Why a proof or a checkpoint does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    #[error("{0} is malformed")]
    Malformed(&'static str),
    #[error("the signature of the checkpoint of shard {shard} at size {size} does not verify against the log key")]
    BadSignature { shard: u16, size: u64 },
    #[error(
        "entry {seq} of shard {shard} is not in the tree that the checkpoint of size {size} signs"
    )]
    NotIncluded { shard: u16, seq: u64, size: u64 },
    #[error(
        "the checkpoint of shard {shard} at size {old} is not a prefix of the one at size {new}"
    )]
    Inconsistent { shard: u16, old: u64, new: u64 },
    #[error("the proof is for shard {proof} but the checkpoint is of shard {checkpoint}")]
    WrongShard { proof: u16, checkpoint: u16 },
}

/// An inclusion proof of entry `seq` (leaf `seq - 1`) of `shard`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Inclusion {
    pub shard: u16,
    pub seq: u64,
    /// The tree size the proof is against.
    pub size: u64,
    /// Sibling hashes, leaf to root, lowercase hex.
    pub path: Vec<String>,
}

impl Inclusion {
    /// Checks that `entry` (its hash recomputed from its contents) is in
    /// the tree `checkpoint` signs. The checkpoint's signature is the
    /// caller's to check ([`LogKey::verify`]).
    pub fn verify(&self, entry: &LedgerEntry, checkpoint: &Checkpoint) -> Result<(), ProofError> {
        if self.shard != checkpoint.shard {
            return Err(ProofError::WrongShard {
                proof: self.shard,
                checkpoint: checkpoint.shard,
            });
        }
        let not_included = ProofError::NotIncluded {
            shard: self.shard,
            seq: entry.seq,
            size: checkpoint.size,
        };
        if entry.seq != self.seq || self.size != checkpoint.size || entry.seq == 0 {
            return Err(not_included);
        }
        let leaf = entry_hash(
            &entry.prev_hash,
            entry.seq,
            entry.at,
            entry.account,
            &entry.kind,
            &entry.payload,
        );
        let proof = InclusionProof::<Sha256>::from_bytes(join_hashes(&self.path)?);
        checkpoint
            .root_hash()?
            .verify_inclusion(&leaf, entry.seq - 1, &proof)
            .map_err(|_| not_included)
    }
}

/// A consistency proof between two sizes of one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Consistency {
    pub shard: u16,
    pub from: u64,
    pub to: u64,
    pub path: Vec<String>,
}

impl Consistency {
    /// Checks that `old`'s tree is a prefix of `new`'s.
    pub fn verify(&self, old: &Checkpoint, new: &Checkpoint) -> Result<(), ProofError> {
        let bad = ProofError::Inconsistent {
            shard: new.shard,
            old: old.size,
            new: new.size,
        };
        if old.shard != new.shard || self.shard != new.shard {
            return Err(ProofError::WrongShard {
                proof: self.shard,
                checkpoint: new.shard,
            });
        }
        if self.from != old.size || self.to != new.size || old.size > new.size {
            return Err(bad);
        }
        if old.size == new.size {
            return if old.root == new.root && self.path.is_empty() {
                Ok(())
            } else {
                Err(bad)
            };
        }
        if old.size == 0 {
            // The empty tree is a prefix of every tree.
            return Ok(());
        }
        let proof = ConsistencyProof::<Sha256>::try_from_bytes(join_hashes(&self.path)?)
            .map_err(|_| ProofError::Malformed("consistency proof"))?;
        new.root_hash()?
            .verify_consistency(&old.root_hash()?, &proof)
            .map_err(|_| bad)
    }
}

/// One shard's Merkle tree, in memory (32 bytes a leaf and about as much
/// again in inner nodes: 64 MB a million entries).
#[derive(Clone, Debug, Default)]
pub struct ShardTree {
    tree: MemoryBackedTree<Sha256, [u8; 32]>,
}

impl ShardTree {
    pub fn len(&self) -> u64 {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The chain hash of the last entry, if any.
    pub fn last(&self) -> Option<Hash> {
        self.tree.items().last().copied()
    }

    /// Appends the next entry's chain hash.
    pub fn push(&mut self, entry_hash: Hash) {
        self.tree.push(entry_hash);
    }

    /// The root at the current size, lowercase hex.
    pub fn root(&self) -> String {
        hex::encode(self.tree.root().as_bytes())
    }

    pub fn checkpoint(&self, shard: u16, at: Timestamp) -> Checkpoint {
        Checkpoint {
            shard,
            size: self.len(),
            root: self.root(),
            at,
        }
    }

    /// The inclusion proof of entry `seq` against the current size.
    pub fn prove_inclusion(&self, shard: u16, seq: u64) -> Option<Inclusion> {
        if seq == 0 || seq > self.len() {
            return None;
        }
        let p = self.tree.prove_inclusion((seq - 1) as usize);
        Some(Inclusion {
            shard,
            seq,
            size: self.len(),
            path: split_hashes(p.as_bytes()),
        })
    }

    /// The tree of the first `size` leaves (for proofs against an older
    /// size: O(size) hashing).
    pub fn prefix(&self, size: u64) -> Option<ShardTree> {
        if size > self.len() {
            return None;
        }
        let mut t = ShardTree::default();
        for h in &self.tree.items()[..size as usize] {
            t.push(*h);
        }
        Some(t)
    }

    /// The consistency proof from `from` to the current size.
    pub fn prove_consistency(&self, shard: u16, from: u64) -> Option<Consistency> {
        let to = self.len();
        if from > to {
            return None;
        }
        let path = if from == 0 || from == to {
            vec![]
        } else {
            split_hashes(self.tree.prove_consistency((to - from) as usize).as_bytes())
        };
        Some(Consistency {
            shard,
            from,
            to,
            path,
        })
    }
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    hex::decode(s).ok()?.try_into().ok()
}

fn join_hashes(path: &[String]) -> Result<Vec<u8>, ProofError> {
    let mut out = Vec::with_capacity(path.len() * 32);
    for h in path {
        out.extend_from_slice(&parse_hash(h).ok_or(ProofError::Malformed("proof hash"))?);
    }
    Ok(out)
}

fn split_hashes(bytes: &[u8]) -> Vec<String> {
    bytes.chunks(32).map(hex::encode).collect()
}

/// What checking a chain of one shard against outside checkpoints found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    #[error("shard {shard} has {found} entries, but a checkpoint signed at {at} says it had {size}: entries at its end were removed")]
    Truncated {
        shard: u16,
        size: u64,
        found: u64,
        at: i64,
    },
    #[error("shard {shard}'s first {size} entries do not have the root of the checkpoint signed at {at}: an entry at or before #{size} was rewritten{}", after.map(|a| format!(" (entries up to #{a} match an earlier checkpoint)")).unwrap_or_default())]
    Rewritten {
        shard: u16,
        size: u64,
        at: i64,
        after: Option<u64>,
    },
    #[error(transparent)]
    Proof(#[from] ProofError),
}

/// Checks the leaves of one shard (chain hashes in `seq` order) against
/// signed checkpoints of that shard, each of whose signature is checked
/// first. Returns how many checkpoints held.
pub fn check_against_checkpoints(
    key: &LogKey,
    shard: u16,
    leaves: &[Hash],
    checkpoints: &[SignedCheckpoint],
) -> Result<usize, WitnessError> {
    let mut cps: Vec<&SignedCheckpoint> = checkpoints
        .iter()
        .filter(|c| c.checkpoint.shard == shard)
        .collect();
    for c in &cps {
        key.verify(c)?;
    }
    cps.sort_by_key(|c| c.checkpoint.size);
    let mut tree = ShardTree::default();
    let mut held = 0;
    let mut last_ok = None;
    for c in cps {
        let cp = &c.checkpoint;
        if cp.size > leaves.len() as u64 {
            return Err(WitnessError::Truncated {
                shard,
                size: cp.size,
                found: leaves.len() as u64,
                at: cp.at.0,
            });
        }
        while tree.len() < cp.size {
            tree.push(leaves[tree.len() as usize]);
        }
        if tree.root() != cp.root {
            return Err(WitnessError::Rewritten {
                shard,
                size: cp.size,
                at: cp.at.0,
                after: last_ok,
            });
        }
        last_ok = Some(cp.size);
        held += 1;
    }
    Ok(held)
}

/// A log of a test's own, signed with a key whose seed the test holds:
/// to build feed citations as the messenger would (or must not).
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;
    use crate::consent::{ConsentChannel, ConsentEvent};
    use crate::coordination::Citation;
    use crate::ledger::{LedgerRecord, GENESIS};
    use crate::policy::Purpose;

    pub struct TestLog {
        pub signer: LogSigner,
        pub tree: ShardTree,
        pub shard: u16,
        pub account: AccountId,
        pub entries: Vec<LedgerEntry>,
    }

    impl TestLog {
        pub fn new(seed: [u8; 32], shard: u16) -> Self {
            TestLog {
                signer: LogSigner::from_seed(&seed),
                tree: ShardTree::default(),
                shard,
                account: AccountId::random(),
                entries: Vec::new(),
            }
        }

        /// The checkpoint at the current size, signed.
        pub fn checkpoint(&self) -> SignedCheckpoint {
            self.signer
                .sign(self.tree.checkpoint(self.shard, Timestamp(1)))
        }

        /// Appends `event` of the log's account.
        pub fn append(&mut self, event: ConsentEvent) -> LedgerEntry {
            let prev = self.entries.last().map_or(GENESIS, |e| e.hash);
            let e = LedgerRecord::consent(self.account, event).seal(self.tree.len() + 1, prev);
            self.tree.push(e.hash);
            self.entries.push(e.clone());
            e
        }

        /// Cites `entry` for `purpose`, proven at the current size.
        pub fn cite(&self, purpose: Purpose, entry: &LedgerEntry) -> Citation {
            Citation {
                purpose,
                entry: entry.clone(),
                inclusion: self
                    .tree
                    .prove_inclusion(self.shard, entry.seq)
                    .expect("an entry of this log"),
            }
        }

        /// Grants of `purposes`, each cited, all against the checkpoint
        /// returned.
        pub fn grants(&mut self, purposes: &[Purpose]) -> (Vec<Citation>, SignedCheckpoint) {
            let entries: Vec<_> = purposes.iter().map(|&p| self.append(granted(p))).collect();
            let cites = purposes
                .iter()
                .zip(&entries)
                .map(|(&p, e)| self.cite(p, e))
                .collect();
            (cites, self.checkpoint())
        }
    }

    /// A grant of `purpose` under policy 1.
    pub fn granted(purpose: Purpose) -> ConsentEvent {
        ConsentEvent::Granted {
            purpose,
            version: 1,
            at: Timestamp(1),
            channel: ConsentChannel::PrivacyCentre,
            pre_ticked: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::ConsentEvent;
    use crate::ledger::{LedgerRecord, GENESIS};

    fn signer() -> LogSigner {
        LogSigner::from_seed(&[7; 32])
    }

    fn entries(n: u64) -> Vec<LedgerEntry> {
        let acct = AccountId::random();
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let e = LedgerRecord::consent(
                    acct,
                    ConsentEvent::Registered {
                        at: Timestamp(seq as i64),
                    },
                )
                .seal(seq, prev);
                prev = e.hash;
                e
            })
            .collect()
    }

    fn tree(es: &[LedgerEntry]) -> ShardTree {
        let mut t = ShardTree::default();
        es.iter().for_each(|e| t.push(e.hash));
        t
    }

    #[test]
    fn every_entry_proves_against_a_signed_checkpoint_in_at_most_log2_hashes() {
        for n in [1u64, 2, 3, 7, 8, 33, 100] {
            let es = entries(n);
            let t = tree(&es);
            let cp = signer().sign(t.checkpoint(3, Timestamp(5)));
            signer().public().verify(&cp).unwrap();
            for e in &es {
                let p = t.prove_inclusion(3, e.seq).unwrap();
                assert!(p.path.len() as f64 <= (n as f64).log2().ceil());
                p.verify(e, &cp.checkpoint).unwrap();
                // Another entry's contents do not prove at this index.
                let mut forged = e.clone();
                forged.payload = forged.payload.replace("registered", "account_deleted");
                assert!(p.verify(&forged, &cp.checkpoint).is_err());
            }
        }
    }

    #[test]
    fn a_changed_checkpoint_or_key_fails_the_signature() {
        let t = tree(&entries(4));
        let mut cp = signer().sign(t.checkpoint(0, Timestamp(1)));
        cp.checkpoint.size = 3;
        assert!(matches!(
            signer().public().verify(&cp),
            Err(ProofError::BadSignature { .. })
        ));
        let cp = signer().sign(t.checkpoint(0, Timestamp(1)));
        let other = LogSigner::from_seed(&[8; 32]).public();
        assert!(other.verify(&cp).is_err());
    }

    #[test]
    fn consistency_holds_for_appends_and_fails_for_rewrites() {
        let es = entries(20);
        let full = tree(&es);
        for from in 0..=20u64 {
            let old = full.prefix(from).unwrap().checkpoint(1, Timestamp(1));
            let new = full.checkpoint(1, Timestamp(2));
            let p = full.prove_consistency(1, from).unwrap();
            p.verify(&old, &new).unwrap();
        }
        // A rewrite of entry 5 with everything after re-chained.
        let mut rewritten = entries(20);
        rewritten[..4].clone_from_slice(&es[..4]);
        let mut prev = es[3].hash;
        for e in rewritten.iter_mut().skip(4) {
            *e = LedgerRecord::consent(
                e.account.unwrap(),
                ConsentEvent::Registered { at: Timestamp(99) },
            )
            .seal(e.seq, prev);
            prev = e.hash;
        }
        let forged = tree(&rewritten);
        let old = full.prefix(10).unwrap().checkpoint(1, Timestamp(1));
        let p = forged.prove_consistency(1, 10).unwrap();
        assert!(p.verify(&old, &forged.checkpoint(1, Timestamp(2))).is_err());
    }

    #[test]
    fn checkpoints_catch_truncation_and_rewrite_but_not_honest_appends() {
        let s = signer();
        let es = entries(30);
        let leaves: Vec<Hash> = es.iter().map(|e| e.hash).collect();
        let t = tree(&es);
        let cps = vec![
            s.sign(t.prefix(10).unwrap().checkpoint(2, Timestamp(1))),
            s.sign(t.prefix(25).unwrap().checkpoint(2, Timestamp(2))),
        ];
        assert_eq!(
            check_against_checkpoints(&s.public(), 2, &leaves, &cps),
            Ok(2)
        );
        // Truncated to 20: the checkpoint at 25 is contradicted.
        assert!(matches!(
            check_against_checkpoints(&s.public(), 2, &leaves[..20], &cps),
            Err(WitnessError::Truncated {
                size: 25,
                found: 20,
                ..
            })
        ));
        // Entry 15 replaced: the checkpoint at 10 holds, 25 does not.
        let mut bad = leaves.clone();
        bad[14][0] ^= 1;
        assert!(matches!(
            check_against_checkpoints(&s.public(), 2, &bad, &cps),
            Err(WitnessError::Rewritten {
                size: 25,
                after: Some(10),
                ..
            })
        ));
        // A forged checkpoint is refused before anything else.
        let forged = LogSigner::from_seed(&[1; 32]).sign(t.checkpoint(2, Timestamp(3)));
        assert!(matches!(
            check_against_checkpoints(&s.public(), 2, &leaves, &[forged]),
            Err(WitnessError::Proof(ProofError::BadSignature { .. }))
        ));
    }

    #[test]
    fn shards_spread_accounts() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..500 {
            let s = shard_of(AccountId::random());
            assert!(s < SHARDS);
            seen.insert(s);
        }
        assert_eq!(seen.len(), SHARDS as usize);
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let t = tree(&entries(5));
        let cp = t.checkpoint(0, Timestamp(1));
        let e = &entries(5)[2];
        let mut p = t.prove_inclusion(0, 3).unwrap();
        p.path.push("zz".into());
        assert!(p.verify(e, &cp).is_err());
        let bad = Checkpoint {
            root: "x".into(),
            ..cp.clone()
        };
        assert!(t.prove_inclusion(0, 3).unwrap().verify(e, &bad).is_err());
        assert!(LogKey::from_hex("abc").is_err());
        assert!(t.prove_inclusion(0, 0).is_none());
        assert!(t.prove_inclusion(0, 6).is_none());
        let c = Consistency {
            shard: 0,
            from: 3,
            to: 5,
            path: vec!["00".repeat(32); 40],
        };
        assert!(c
            .verify(&t.prefix(3).unwrap().checkpoint(0, Timestamp(0)), &cp)
            .is_err());
    }
}
