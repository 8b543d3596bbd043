//! The standing index of the eligible set (see [`crate::matching`]): the
//! partner's users and held pseudonyms with ad consent, by pseudonym
//! prefix, in memory, kept current from the database.
//!
//! **Freshness.** Triggers mark a partition when one of its eligible
//! entries changes (migration `0006`). [`EligibleIndex::refresh`] takes
//! the marks and reads those partitions again. Taking the marks is a
//! database read, which on a loaded SQLite partner cost 1.4 ms a batch,
//! a third of the join's time, so a batch does not take them itself
//! unless it must:
//! - the partner store counts its own commits that may change the
//!   eligible set (`AudienceStore::eligible_writes`): when the count
//!   moved since marks were last taken, the batch refreshes the index
//!   before its probes, so a batch sees every change committed through
//!   this partner before it arrived;
//! - changes made by another process (another partner node on the same
//!   PostgreSQL, an operator's tool) leave no count here: while batches
//!   arrive, a poll takes the marks every [`POLL`], and a batch refreshes
//!   the index itself if the last refresh started more than [`MAX_LAG`]
//!   ago. The poll stops after [`IDLE`] without a batch.
//!
//! A batch waits at most [`REFRESH_WAIT`] for a refresh (one that reads
//! many partitions goes on in the background, and the batch is probed
//! against the index as it is). Any lag is a matter of freshness only:
//! the store keeps a matched row only if its member is eligible when the
//! batch commits, and the change that ends eligibility deletes the
//! person's staged rows and memberships in its own transaction. The
//! marks are per partition: a feed that touches every partition between
//! two refreshes makes the index re-read all of it (a minute for
//! 10,000,000 entries on SQLite), in the background; marks per key would
//! make that proportional to the changes (not built).
//!
//! **Start.** A fresh partner reads every partition once, in the
//! background, on its first batch; batches meanwhile get 503
//! `warming_up` with a `Retry-After`. A failed read forgets that the index
//! was built, so the next refresh reads everything again (the marks it
//! had taken are lost with the read).

use crate::matching::{build_together, EligiblePartition, PartitionSource, PARTITIONS, STRIPE};
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
    /// Refreshes since start (by batches and by the poll), and their time
    /// (taking the marks, reading the marked partitions).
    pub refreshes: u64,
    pub refresh_ns: u64,
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
    refreshes: AtomicU64,
    refresh_ns: AtomicU64,
    /// What the last refresh saw when it took the marks.
    checked: std::sync::Mutex<Option<Checked>>,
    /// When a batch last used the index (milliseconds since `epoch`), and
    /// whether the poll runs.
    epoch: Instant,
    last_used_ms: AtomicU64,
    polling: AtomicBool,
}

/// The store's count of its own eligible writes, and the time, when a
/// refresh took the marks: the index holds every change committed before.
#[derive(Clone, Copy, Debug)]
struct Checked {
    writes: u64,
    at: Instant,
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
            refreshes: AtomicU64::new(0),
            refresh_ns: AtomicU64::new(0),
            checked: std::sync::Mutex::new(None),
            epoch: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            polling: AtomicBool::new(false),
        }
    }
}

/// How long a batch waits for the index's refresh before it is probed
/// against the index as it is.
pub const REFRESH_WAIT: Duration = Duration::from_secs(1);
/// How long a batch waits for the first build before it is answered
/// `warming_up`.
pub const BUILD_WAIT: Duration = Duration::from_secs(2);
/// How often the poll takes the marks while batches arrive (for changes
/// made by other processes).
pub const POLL: Duration = Duration::from_millis(250);
/// A batch refreshes the index itself when the last refresh took the
/// marks longer ago than this (the poll has fallen behind).
pub const MAX_LAG: Duration = Duration::from_secs(1);
/// The poll stops after this long without a batch.
pub const IDLE: Duration = Duration::from_secs(60);

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
        let started = Instant::now();
        let checked = Checked {
            writes: store.eligible_writes(),
            at: started,
        };
        let read = self.read_marked(store, &mut built).await;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        self.refresh_ns
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if read.is_ok() {
            *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(checked);
        }
        read
    }

    /// Takes the marks and reads the marked partitions (all of them if
    /// the index is not `built`).
    async fn read_marked(
        &self,
        store: &dyn AudienceStore,
        built: &mut bool,
    ) -> Result<usize, StoreError> {
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
        let mut marked = [false; PARTITIONS];
        for p in &parts {
            marked[usize::from(*p)] = true;
        }
        if let Err(e) = self.rebuild_stripes(store, &marked, full).await {
            // The marks taken are gone: read everything next time.
            *built = false;
            self.ready.store(false, Ordering::Release);
            return Err(e);
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

    /// Builds again each stripe with a marked partition (a stripe's
    /// tables share a mapping): its marked partitions read from the store,
    /// the others copied.
    async fn rebuild_stripes(
        &self,
        store: &dyn AudienceStore,
        marked: &[bool; PARTITIONS],
        full: bool,
    ) -> Result<(), StoreError> {
        let mut read = 0u64;
        let mut done = 0;
        for stripe in 0..PARTITIONS / STRIPE {
            let range = stripe * STRIPE..(stripe + 1) * STRIPE;
            if !marked[range.clone()].contains(&true) {
                continue;
            }
            let mut sources = Vec::with_capacity(STRIPE);
            for p in range.clone() {
                sources.push(if marked[p] {
                    let entries = store.eligible_partition(p as u8).await?;
                    read += entries.len() as u64;
                    PartitionSource::Entries(entries)
                } else {
                    PartitionSource::Keep(Arc::clone(
                        &self.parts[p].read().unwrap_or_else(|e| e.into_inner()),
                    ))
                });
            }
            let tables = build_together(sources).map_err(|e| {
                StoreError::OutOfMemory(format!("the eligible index's tables: {e}"))
            })?;
            for (p, table) in range.zip(tables) {
                *self.parts[p].write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
            }
            done += 1;
            if full && done % 4 == 0 {
                tracing::info!(
                    partitions = done * STRIPE,
                    of = PARTITIONS,
                    entries = read,
                    "building the eligible index"
                );
            }
        }
        Ok(())
    }

    /// Whether the index holds every change committed through this
    /// process's store, and took the marks of others' less than
    /// [`MAX_LAG`] ago.
    fn is_current(&self, store: &dyn AudienceStore) -> bool {
        let checked = *self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked.is_some_and(|c| c.writes == store.eligible_writes() && c.at.elapsed() <= MAX_LAG)
    }

    /// Starts the poll unless it runs: every [`POLL`], while a batch came
    /// within [`IDLE`], it refreshes the index.
    fn poll(self: &Arc<Self>, store: &Arc<dyn AudienceStore>) {
        if self.polling.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, store) = (Arc::clone(self), Arc::clone(store));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                let used = Duration::from_millis(me.last_used_ms.load(Ordering::Relaxed));
                if me.epoch.elapsed().saturating_sub(used) > IDLE {
                    // A batch that came meanwhile refreshes for itself
                    // and starts the poll again.
                    me.polling.store(false, Ordering::Release);
                    return;
                }
                if let Err(e) = me.refresh(&*store).await {
                    tracing::error!(error = %e, "the eligible index could not be refreshed");
                }
            }
        });
    }

    /// Refreshes before a probe, unless the index is current (see the
    /// module docs), and keeps the poll going. A built index waits for
    /// its refresh up to [`REFRESH_WAIT`] and then lets the probe use it as it is (the
    /// refresh goes on: a feed that changed many partitions never holds
    /// a batch for long). An index not built yet starts its build in the
    /// background (once) and answers [`WarmingUp`] unless the build
    /// ends within [`BUILD_WAIT`] (a small partner).
    pub async fn ensure_current(
        self: &Arc<Self>,
        store: &Arc<dyn AudienceStore>,
    ) -> Result<Result<(), WarmingUp>, StoreError> {
        self.last_used_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let ready = self.is_ready();
        if ready {
            self.poll(store);
            if self.is_current(&**store) {
                return Ok(Ok(()));
            }
        }
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
            refreshes: self.refreshes.load(Ordering::Relaxed),
            refresh_ns: self.refresh_ns.load(Ordering::Relaxed),
        }
    }
}
