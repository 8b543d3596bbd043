//! The standing index of the eligible set (see [`crate::matching`]): the
//! partner's users and held pseudonyms with ad consent, by pseudonym
//! prefix, in memory, kept current from the database.
//!
//! **Freshness.** Triggers mark a partition when one of its eligible
//! entries changes (migration `0006`). [`EligibleIndex::refresh`] takes
//! the marks and reads those partitions again; it runs before every
//! upload batch is probed, so a batch sees every change committed before
//! it arrived, except one that commits while the refresh reads (its mark
//! is taken next time) or a refresh longer than [`REFRESH_WAIT`] (the
//! batch goes ahead with the index as it is). That lag is a matter of
//! freshness only: the store keeps a matched row only if its member is
//! eligible when the batch commits, and the change that ends eligibility
//! deletes the person's staged rows and memberships in its own
//! transaction. The marks are per partition: a feed that touches every
//! partition between two batches makes the index re-read all of it (a
//! minute for 10,000,000 entries on SQLite), in the background; marks per
//! key would make that proportional to the changes (not built).
//!
//! **Start.** A fresh partner reads every partition once, in the
//! background, on its first batch; batches meanwhile get 503
//! `warming_up` with a `Retry-After`. A failed read forgets that the index
//! was built, so the next refresh reads everything again (the marks it
//! had taken are lost with the read).

use crate::matching::{EligiblePartition, PARTITIONS};
use accord_storage::audience::AudienceStore;
use accord_storage::StoreError;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What the index holds and what refreshing it cost (operator metrics,
/// the bench).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct IndexStats {
    pub ready: bool,
    pub entries: u64,
    /// Bytes of its tables, about.
    pub bytes: u64,
    /// Partitions read since start (a full build is 256).
    pub partitions_read: u64,
}

/// The eligible set, one partition a pseudonym's first byte.
#[derive(Debug)]
pub struct EligibleIndex {
    parts: Vec<RwLock<Arc<EligiblePartition>>>,
    /// Held by the one refresh at a time; `true` once every partition was
    /// read.
    built: tokio::sync::Mutex<bool>,
    ready: AtomicBool,
    entries: AtomicU64,
    bytes: AtomicU64,
    partitions_read: AtomicU64,
}

impl Default for EligibleIndex {
    fn default() -> Self {
        EligibleIndex {
            parts: (0..PARTITIONS)
                .map(|_| RwLock::new(Arc::default()))
                .collect(),
            built: tokio::sync::Mutex::new(false),
            ready: AtomicBool::new(false),
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            partitions_read: AtomicU64::new(0),
        }
    }
}

/// How long a batch waits for the index's refresh before it is probed
/// against the index as it is.
pub const REFRESH_WAIT: Duration = Duration::from_secs(1);
/// How long a batch waits for the first build before it is answered
/// `warming_up`.
pub const BUILD_WAIT: Duration = Duration::from_secs(2);

/// The index is being built; ask again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmingUp {
    pub retry_after: Duration,
}

impl EligibleIndex {
    /// Whether every partition was read once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Reads the partitions marked changed, or all of them the first
    /// time; returns how many it read.
    pub async fn refresh(&self, store: &dyn AudienceStore) -> Result<usize, StoreError> {
        let mut built = self.built.lock().await;
        let dirty = store.take_dirty().await?;
        let parts: Vec<u8> = if *built {
            dirty
        } else {
            (0..PARTITIONS).map(|p| p as u8).collect()
        };
        if parts.is_empty() {
            return Ok(0);
        }
        let started = Instant::now();
        let full = parts.len() == PARTITIONS;
        let mut read = 0u64;
        for (i, p) in parts.iter().enumerate() {
            let entries = match store.eligible_partition(*p).await {
                Ok(e) => e,
                Err(e) => {
                    // The marks taken are gone: read everything next time.
                    *built = false;
                    self.ready.store(false, Ordering::Release);
                    return Err(e);
                }
            };
            read += entries.len() as u64;
            let mut part = EligiblePartition::with_capacity(entries.len());
            for (k, m) in entries {
                part.insert(k, m);
            }
            *self.parts[usize::from(*p)]
                .write()
                .unwrap_or_else(|e| e.into_inner()) = Arc::new(part);
            if full && (i + 1) % 32 == 0 {
                tracing::info!(
                    partitions = i + 1,
                    of = PARTITIONS,
                    entries = read,
                    "building the eligible index"
                );
            }
        }
        let (mut entries, mut bytes) = (0u64, 0u64);
        for part in &self.parts {
            let part = part.read().unwrap_or_else(|e| e.into_inner());
            entries += part.len() as u64;
            bytes += part.heap_bytes() as u64;
        }
        self.entries.store(entries, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.partitions_read
            .fetch_add(parts.len() as u64, Ordering::Relaxed);
        if !*built {
            *built = true;
            self.ready.store(true, Ordering::Release);
            tracing::info!(
                entries,
                ms = started.elapsed().as_millis() as u64,
                "eligible index built"
            );
        }
        Ok(parts.len())
    }

    /// Refreshes before a probe. A built index waits for its refresh up
    /// to [`REFRESH_WAIT`] and then lets the probe use it as it is (the
    /// refresh goes on: a feed that changed many partitions never holds
    /// a batch for long). An index not built yet starts its build in the
    /// background (once) and answers [`WarmingUp`] unless the build
    /// ends within [`BUILD_WAIT`] (a small partner).
    pub async fn ensure_current(
        self: &Arc<Self>,
        store: &Arc<dyn AudienceStore>,
    ) -> Result<Result<(), WarmingUp>, StoreError> {
        let ready = self.is_ready();
        let warming = Err(WarmingUp {
            retry_after: Duration::from_secs(5),
        });
        if !ready && self.built.try_lock().is_err() {
            // A build is under way.
            return Ok(warming);
        }
        let (me, store) = (Arc::clone(self), Arc::clone(store));
        let refresh = tokio::spawn(async move {
            let r = me.refresh(&*store).await;
            if let Err(e) = &r {
                tracing::error!(error = %e, "the eligible index could not be refreshed");
            }
            r
        });
        let wait = if ready { REFRESH_WAIT } else { BUILD_WAIT };
        match tokio::time::timeout(wait, refresh).await {
            Ok(Ok(r)) => r.map(|_| Ok(())),
            Ok(Err(_)) => Err(StoreError::Corrupt(
                "the eligible index's refresh stopped".into(),
            )),
            Err(_) if ready => Ok(Ok(())),
            Err(_) => Ok(warming),
        }
    }

    /// Every partition as it is now (for one batch's probes).
    pub fn snapshot(&self) -> Vec<Arc<EligiblePartition>> {
        self.parts
            .iter()
            .map(|p| Arc::clone(&p.read().unwrap_or_else(|e| e.into_inner())))
            .collect()
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            ready: self.is_ready(),
            entries: self.entries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            partitions_read: self.partitions_read.load(Ordering::Relaxed),
        }
    }
}
