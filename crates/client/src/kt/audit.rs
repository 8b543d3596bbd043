//! Auditing the key directory from its published roots: what `accord
//! audit keys` runs, and what anyone can run without an account.
//!
//! An [`Auditor`] keeps what it saw in a state file (public data only: the
//! directory's keys and every signed root, as JSON). Each run fetches the
//! signed roots, and refuses when
//! - a root's signature does not verify under the pinned root key, or the
//!   keys changed;
//! - a root it saw before has changed (the history was rewritten, or this
//!   auditor is shown another fork than before), or the latest epoch went
//!   back;
//! - an append-only proof between consecutive audited epochs fails
//!   (`akd::auditor::audit_verify`): an entry was changed or removed
//!   rather than appended.
//!
//! A messenger that shows two consistent but different histories to two
//! parties (a split view) passes each one's audit alone: only auditors
//! who compare their roots with each other, or with the roots users'
//! devices saw, find it (see ARCHITECTURE.md, key transparency).

use std::path::{Path, PathBuf};

use accord_messenger_wire::{KtAudit, KtKeys, KtRoots, SignedRoot, MAX_AUDIT_EPOCHS};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::verify::{verify_audit, DirectoryKeys, KtError};
use crate::{Client, ClientError};

/// What an auditor remembers between runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AuditState {
    keys: Option<KtKeys>,
    /// Every root seen, epoch 1 first.
    roots: Vec<SignedRoot>,
    /// Epochs up to this one are proven append-only.
    audited_to: u64,
}

/// Why an audit could not be run or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The directory's history does not hold: the audit fails.
    #[error("key directory audit failed: {0}")]
    Failed(#[from] KtError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("audit state {0}: {1}")]
    State(PathBuf, String),
}

/// What a passing audit covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditReport {
    /// The newest epoch, now audited.
    pub latest_epoch: u64,
    /// Epochs whose append-only proof this run checked (`from..=to`);
    /// `None` when nothing new was published.
    pub proven: Option<(u64, u64)>,
    /// Roots checked this run (signature and agreement with those seen).
    pub roots_checked: usize,
}

/// An auditor bound to its state file.
#[derive(Debug)]
pub struct Auditor {
    path: PathBuf,
    state: AuditState,
}

impl Auditor {
    /// Opens the state at `path` (a fresh auditor when there is none).
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| AuditError::State(path.to_owned(), e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => AuditState::default(),
            Err(e) => return Err(AuditError::State(path.to_owned(), e.to_string())),
        };
        Ok(Auditor {
            path: path.to_owned(),
            state,
        })
    }

    /// The newest epoch this auditor has proven append-only.
    pub fn audited_to(&self) -> u64 {
        self.state.audited_to
    }

    fn save(&self) -> Result<(), AuditError> {
        let json = serde_json::to_vec_pretty(&self.state).expect("the audit state serialises");
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| AuditError::State(self.path.clone(), e.to_string()))
    }

    /// Fetches every signed root (no account needed).
    async fn fetch_roots(client: &Client) -> Result<(KtKeys, Vec<SignedRoot>, u64), AuditError> {
        let mut roots: Vec<SignedRoot> = Vec::new();
        loop {
            let page: KtRoots = client
                .request(
                    Method::GET,
                    &format!("/v1/kt/roots?from={}", roots.len() + 1),
                    None,
                )
                .await?;
            let done = page.roots.is_empty()
                || roots.len() + page.roots.len() >= page.latest_epoch as usize;
            roots.extend(page.roots);
            if done {
                return Ok((page.keys, roots, page.latest_epoch));
            }
        }
    }

    /// Runs one audit against the messenger at `client`: every root
    /// checked, and append-only proofs from the last audited epoch to the
    /// newest. The state is saved only when the audit passes.
    pub async fn run(&mut self, client: &Client) -> Result<AuditReport, AuditError> {
        let (keys, roots, latest) = Self::fetch_roots(client).await?;
        let pinned = match &self.state.keys {
            Some(k) if *k != keys => return Err(KtError::KeysChanged.into()),
            Some(k) => DirectoryKeys::from_wire(k)?,
            None => DirectoryKeys::from_wire(&keys)?,
        };
        let seen = self.state.roots.len() as u64;
        if latest < seen || (roots.len() as u64) != latest {
            return Err(KtError::Rollback {
                epoch: latest,
                seen,
            }
            .into());
        }
        let mut checked = Vec::with_capacity(roots.len());
        for (i, r) in roots.iter().enumerate() {
            if r.epoch != i as u64 + 1 {
                return Err(KtError::Malformed(format!(
                    "root {} is labelled epoch {}",
                    i + 1,
                    r.epoch
                ))
                .into());
            }
            checked.push(pinned.verify_root(r)?);
            if let Some(old) = self.state.roots.get(i) {
                if old.root_hash != r.root_hash {
                    return Err(KtError::Fork(r.epoch).into());
                }
            }
        }
        let start = self.state.audited_to.max(1);
        let mut proven = None;
        let mut from = start;
        while from < latest {
            let to = (from + MAX_AUDIT_EPOCHS).min(latest);
            let audit: KtAudit = client
                .request(
                    Method::GET,
                    &format!("/v1/kt/audit?from={from}&to={to}"),
                    None,
                )
                .await?;
            if audit.from != from || audit.to != to {
                return Err(KtError::Malformed("the audit answers another range".into()).into());
            }
            let range = &checked[(from - 1) as usize..to as usize];
            verify_audit(range, &audit).await?;
            proven = Some((start, to));
            from = to;
        }
        self.state = AuditState {
            keys: Some(pinned.wire().clone()),
            roots,
            audited_to: latest,
        };
        self.save()?;
        Ok(AuditReport {
            latest_epoch: latest,
            proven,
            roots_checked: checked.len(),
        })
    }
}
