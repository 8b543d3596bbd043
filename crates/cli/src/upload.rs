//! A customer-list upload, on the business's machine (`accord audience
//! upload`, and `accord bench audience` through the same code).
//!
//! 1. **Read and pseudonymise.** A reader thread streams the CSV through
//!    `accord_domain::audience::CustomerList` (normalised; rejected rows
//!    go to the rejects file with their reason) and hands over chunks of
//!    about [`CHUNK_INPUTS`] identifiers; each chunk's identifiers (`phone:` / `email:`
//!    inputs) are blinded, evaluated by the key service under the
//!    business's quota and finalised ([`Oprf::pseudonyms`]), while the
//!    reader prepares the next chunk. The pseudonyms of each row go to
//!    one of [`BUCKETS`] temporary files, picked at random. Nothing raw
//!    leaves the machine or reaches a file other than the rejects file
//!    (which holds line numbers and reasons only).
//! 2. **Shuffle and upload.** Each bucket is read back, shuffled in memory
//!    and sent in batches of [`BATCH_ROWS`] rows (a random bucket per row,
//!    then a shuffle within each bucket: a uniformly random order, with
//!    one bucket in memory at a time). A row is its pseudonyms together,
//!    so the partner counts a person with a phone and an email once.
//! 3. **Complete.** The partner matches the whole upload, deletes the
//!    pseudonyms, and answers the audience's differentially private size
//!    (a large match answers "matching" first; the tool asks until done).
//!
//! Memory is bounded by a chunk, the batches in flight and one bucket
//! (about 1/256 of the rows), never the whole list. If anything fails
//! after the upload started, the upload is discarded whole
//! (`DELETE /v1/uploads/{id}`): the partner never matches half a list.

use crate::error::{CliError, CliResult};
use accord_client::Client;
use accord_crypto::oprf::{input_for_email, input_for_phone, KeyVersion, OprfPurpose};
use accord_domain::audience::{CustomerList, ListError, Row, Summary};
use accord_domain::PseudonymId;
use accord_keyd::{Oprf, OprfClientError};
use rand::seq::SliceRandom;
use reqwest::Method;
use serde_json::{json, Value};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Inputs per OPRF chunk: one evaluation request (the key service's
/// maximum batch).
pub const CHUNK_INPUTS: usize = accord_crypto::oprf::MAX_BATCH;
/// Temporary bucket files of the shuffle.
pub const BUCKETS: usize = 256;
/// Rows per upload batch (the partner's maximum).
pub const BATCH_ROWS: usize = 10_000;
/// Batches in flight at once.
const IN_FLIGHT: usize = 4;

/// What to upload, and where.
pub struct UploadJob {
    pub file: PathBuf,
    pub region: Option<String>,
    pub rejects: PathBuf,
    pub audience: String,
    /// The partner, with the advertiser's token.
    pub partner: Client,
    /// The key service, with the business's token.
    pub oprf: Arc<dyn Oprf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What happened, with each stage's time.
#[derive(Debug)]
pub struct UploadReport {
    pub summary: Summary,
    /// Rows sent (customers with at least one valid identifier).
    pub rows: u64,
    /// Pseudonyms computed and sent.
    pub pseudonyms: u64,
    /// Busy time of the reader thread (reading and normalising).
    pub parse: Duration,
    /// Time from the first chunk's evaluation to the last's.
    pub oprf: Duration,
    pub upload: Duration,
    /// The partner's match (the `complete` call).
    pub matched: Duration,
    /// The partner's answer: the audience with its released size.
    pub answer: Value,
}

/// A chunk's evaluation, running.
type OprfTask = tokio::task::JoinHandle<Result<Vec<accord_keyd::Pseudonym>, OprfClientError>>;

/// OPRF chunks in flight at once (see `run`).
const OPRF_IN_FLIGHT: usize = 2;

/// Writes each row's pseudonyms (`widths[i]` of `out`, in order) to a
/// random bucket: a width byte, then the pseudonyms.
fn write_rows(
    buckets: &mut [BufWriter<std::fs::File>],
    widths: &[u8],
    out: &[accord_keyd::Pseudonym],
    rng: &mut impl rand::Rng,
) -> Result<(), CliError> {
    let mut it = out.iter();
    for w in widths {
        let b = &mut buckets[rng.gen_range(0..BUCKETS)];
        let mut rec = Vec::with_capacity(1 + 32 * usize::from(*w));
        rec.push(*w);
        for _ in 0..*w {
            let p = it.next().ok_or_else(|| {
                CliError::Internal(anyhow::anyhow!("fewer pseudonyms than inputs"))
            })?;
            rec.extend_from_slice(p.as_bytes());
        }
        b.write_all(&rec).map_err(io_err("temporary file"))?;
    }
    Ok(())
}

/// A chunk of customers' OPRF inputs: per row, 1 or 2 inputs.
struct Chunk {
    inputs: Vec<Vec<u8>>,
    /// Inputs per row, in order.
    widths: Vec<u8>,
}

/// Inputs of one row at most: a phone and an email.
const MAX_ROW_INPUTS: usize = 2;

impl Chunk {
    fn new() -> Self {
        Chunk {
            inputs: Vec::with_capacity(CHUNK_INPUTS),
            widths: Vec::with_capacity(CHUNK_INPUTS),
        }
    }
}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A one-line progress bar on stderr, redrawn at most twice a second.
struct Bar {
    on: bool,
    label: &'static str,
    total: u64,
    started: Instant,
    drawn: Instant,
}

impl Bar {
    fn new(on: bool, label: &'static str, total: u64) -> Self {
        let now = Instant::now();
        Bar {
            on,
            label,
            total: total.max(1),
            started: now,
            drawn: now - Duration::from_secs(1),
        }
    }

    fn draw(&mut self, done: u64, rows: u64, force: bool) {
        if !self.on || (!force && self.drawn.elapsed() < Duration::from_millis(500)) {
            return;
        }
        self.drawn = Instant::now();
        let frac = (done as f64 / self.total as f64).clamp(0.0, 1.0);
        let width = 30;
        let full = (frac * width as f64).round() as usize;
        let rate = rows as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        eprint!(
            "\r{:<8} [{}{}] {:>3.0}%  {} rows  {:.0} rows/s   ",
            self.label,
            "#".repeat(full),
            "-".repeat(width - full),
            frac * 100.0,
            rows,
            rate
        );
        if force {
            eprintln!();
        }
    }
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |e| CliError::Input(format!("{what}: {e}"))
}

fn oprf_err(e: OprfClientError) -> CliError {
    match e {
        OprfClientError::QuotaExceeded { retry_after_s } => CliError::Input(format!(
            "the key-service quota of this business is spent; nothing was uploaded. \
             Retry in {retry_after_s} s, or ask the operator for a larger quota"
        )),
        OprfClientError::Rejected { status, .. } if (400..500).contains(&status) => {
            CliError::Input(format!("the key service refused the evaluation: {e}"))
        }
        e => CliError::Internal(anyhow::anyhow!("key service: {e}")),
    }
}

/// Runs the whole upload (see the module docs).
pub async fn run(job: UploadJob) -> CliResult<UploadReport> {
    // An unknown audience fails before any quota is spent.
    let path = format!("/v1/audiences/{}", encode(&job.audience));
    job.partner.request_raw(Method::GET, &path, None).await?;

    let size = std::fs::metadata(&job.file)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", job.file.display())))?
        .len();
    let read = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(2);
    let reader = {
        let (file, region, rejects, read) = (
            job.file.clone(),
            job.region.clone(),
            job.rejects.clone(),
            read.clone(),
        );
        tokio::task::spawn_blocking(move || read_list(&file, region.as_deref(), &rejects, read, tx))
    };

    // Stage 1: pseudonyms, into random buckets.
    let dir = tempfile::tempdir().map_err(io_err("temporary directory"))?;
    let mut buckets: Vec<BufWriter<std::fs::File>> = (0..BUCKETS)
        .map(|i| std::fs::File::create(dir.path().join(format!("{i}.bin"))).map(BufWriter::new))
        .collect::<Result<_, _>>()
        .map_err(io_err("temporary file"))?;
    let mut bar = Bar::new(job.progress, "oprf", size);
    let mut version: Option<KeyVersion> = None;
    let (mut rows, mut pseudonyms) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    let mut rng = rand::rngs::OsRng;
    // Two chunks in flight once the key version is pinned by the first:
    // one chunk's single-threaded parts (its request's encoding, the
    // answer's decoding, the bucket writes) overlap the other's blinding
    // and evaluation on all cores.
    let mut flight: std::collections::VecDeque<(Vec<u8>, OprfTask)> = Default::default();
    let mut next = rx.recv().await;
    while let Some(chunk) = next.take() {
        first.get_or_insert_with(Instant::now);
        let oprf = Arc::clone(&job.oprf);
        let Chunk { inputs, widths } = chunk;
        pseudonyms += inputs.len() as u64;
        let pinned = version;
        flight.push_back((
            widths,
            tokio::spawn(async move {
                oprf.pseudonyms(OprfPurpose::Coordination, pinned, &inputs)
                    .await
            }),
        ));
        let room = if version.is_some() { OPRF_IN_FLIGHT } else { 1 };
        next = rx.recv().await;
        while flight.len() >= room || (next.is_none() && !flight.is_empty()) {
            let Some((widths, task)) = flight.pop_front() else {
                break;
            };
            let out = task
                .await
                .map_err(|_| CliError::Internal(anyhow::anyhow!("an OPRF task panicked")))?
                .map_err(oprf_err)?;
            let v = out.first().map(|p| p.key_version());
            if version.is_some() && v.is_some() && v != version {
                return Err(CliError::Internal(anyhow::anyhow!(
                    "the key service answered under another key version mid-upload"
                )));
            }
            version = v.or(version);
            write_rows(&mut buckets, &widths, &out, &mut rng)?;
            rows += widths.len() as u64;
            bar.draw(read.load(Ordering::Relaxed), rows, false);
        }
    }
    let (summary, parse) = reader
        .await
        .map_err(|_| CliError::Internal(anyhow::anyhow!("the list reader panicked")))??;
    let oprf = first.map_or(Duration::ZERO, |t| t.elapsed());
    bar.draw(size, rows, true);
    for b in &mut buckets {
        b.flush().map_err(io_err("temporary file"))?;
    }
    drop(buckets);
    if rows == 0 {
        return Err(CliError::Input(format!(
            "{}: no row has a valid phone number or email; nothing to upload",
            job.file.display()
        )));
    }

    // Stage 2: shuffle and upload.
    let started = Instant::now();
    let batches = rows.div_ceil(BATCH_ROWS as u64);
    let path = format!("/v1/audiences/{}/uploads", encode(&job.audience));
    let answer: Value = job
        .partner
        .request_raw(Method::POST, &path, Some(&json!({ "batches": batches })))
        .await?;
    let upload = answer["upload_id"]
        .as_str()
        .ok_or_else(|| CliError::Internal(anyhow::anyhow!("no upload id in the answer")))?
        .to_owned();
    let sent = send_all(&job, dir.path(), &upload, rows).await;
    let upload_time = started.elapsed();
    if let Err(e) = sent {
        let _ = job
            .partner
            .request_raw(Method::DELETE, &format!("/v1/uploads/{upload}"), None)
            .await;
        eprintln!("the upload was discarded whole; nothing of it was matched");
        return Err(e);
    }

    // Stage 3: the match.
    let started = Instant::now();
    let matched = job
        .partner
        .request_raw(
            Method::POST,
            &format!("/v1/uploads/{upload}/complete"),
            None,
        )
        .await;
    let mut answer = match matched {
        Ok(a) => a,
        Err(e) => {
            let _ = job
                .partner
                .request_raw(Method::DELETE, &format!("/v1/uploads/{upload}"), None)
                .await;
            return Err(e.into());
        }
    };
    // A large match goes on in the background: ask until it is done.
    let mut bar = Bar::new(job.progress, "match", 1);
    let waited = answer["state"] == "matching";
    while answer["state"] == "matching" {
        bar.draw(0, rows, false);
        tokio::time::sleep(Duration::from_millis(500)).await;
        answer = job
            .partner
            .request_raw(Method::GET, &format!("/v1/uploads/{upload}"), None)
            .await
            .map_err(|e| match e.code() {
                Some("not_found") => CliError::Internal(anyhow::anyhow!(
                    "the partner's match failed and discarded the upload whole; run the upload again"
                )),
                _ => e.into(),
            })?;
    }
    if waited {
        bar.draw(1, rows, true);
    }
    let matched_time = started.elapsed();
    Ok(UploadReport {
        summary,
        rows,
        pseudonyms,
        parse,
        oprf,
        upload: upload_time,
        matched: matched_time,
        answer,
    })
}

/// Sends every bucket, shuffled, in batches of [`BATCH_ROWS`], a few at once.
async fn send_all(job: &UploadJob, dir: &Path, upload: &str, rows: u64) -> CliResult {
    let mut bar = Bar::new(job.progress, "upload", rows);
    let mut pending: Vec<Vec<String>> = Vec::with_capacity(BATCH_ROWS);
    let mut seq = 0u64;
    let mut sent = 0u64;
    let mut flight = tokio::task::JoinSet::new();
    let mut rng = rand::rngs::OsRng;
    for i in 0..BUCKETS {
        let bytes =
            std::fs::read(dir.join(format!("{i}.bin"))).map_err(io_err("temporary file"))?;
        let mut recs: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let w = usize::from(bytes[at]);
            let end = at + 1 + 32 * w;
            if w == 0 || end > bytes.len() {
                return Err(CliError::Internal(anyhow::anyhow!(
                    "a temporary file is corrupt"
                )));
            }
            recs.push(&bytes[at + 1..end]);
            at = end;
        }
        recs.shuffle(&mut rng);
        for r in recs {
            pending.push(
                r.chunks(32)
                    .map(|p| PseudonymId::from_slice(p).map_or_else(String::new, |p| p.to_hex()))
                    .collect(),
            );
            if pending.len() == BATCH_ROWS {
                let batch = std::mem::replace(&mut pending, Vec::with_capacity(BATCH_ROWS));
                sent += batch.len() as u64;
                spawn_batch(&mut flight, job, upload, seq, batch).await?;
                seq += 1;
                bar.draw(sent, sent, false);
            }
        }
    }
    if !pending.is_empty() {
        sent += pending.len() as u64;
        spawn_batch(&mut flight, job, upload, seq, pending).await?;
    }
    while let Some(r) = flight.join_next().await {
        r.map_err(|_| CliError::Internal(anyhow::anyhow!("an upload task panicked")))??;
    }
    bar.draw(sent, sent, true);
    Ok(())
}

async fn spawn_batch(
    flight: &mut tokio::task::JoinSet<CliResult>,
    job: &UploadJob,
    upload: &str,
    seq: u64,
    batch: Vec<Vec<String>>,
) -> CliResult {
    while flight.len() >= IN_FLIGHT {
        if let Some(r) = flight.join_next().await {
            r.map_err(|_| CliError::Internal(anyhow::anyhow!("an upload task panicked")))??;
        }
    }
    let client = job.partner.clone();
    let path = format!("/v1/uploads/{upload}/batches/{seq}");
    flight.spawn(async move {
        // A batch is idempotent: a send that failed in transit, timed out
        // or met a busy server is sent again, with backoff, a few times.
        let body = json!({ "rows": batch });
        let (mut tries, mut warming) = (0, 0);
        loop {
            match client.request_raw(Method::PUT, &path, Some(&body)).await {
                Ok(_) => return Ok(()),
                // A partner just started reads its eligible users first
                // (a minute for ten million); it says so, and the batch
                // waits for it, up to 15 minutes.
                Err(e) if e.code() == Some("warming_up") && warming < WARMING_WAITS => {
                    warming += 1;
                    if warming == 1 && seq == 0 {
                        eprintln!("the partner is reading its eligible users into memory; waiting");
                    }
                    tokio::time::sleep(WARMING_WAIT).await;
                }
                Err(e) if tries < 5 && retryable(&e) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200 << tries)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    });
    Ok(())
}

/// How long a batch waits for a partner that is warming up, a time.
const WARMING_WAIT: Duration = Duration::from_secs(5);
/// How many times (15 minutes in all).
const WARMING_WAITS: u32 = 180;

/// Whether a failed batch may be sent again: in transit, a timeout, a
/// busy or failing server (never a refusal of the batch itself).
fn retryable(e: &accord_client::ClientError) -> bool {
    match e {
        accord_client::ClientError::Transport(_) => true,
        e => matches!(e.status(), Some(408 | 429 | 500..=599)),
    }
}

/// Percent-encodes an audience name for a path segment.
pub fn encode(name: &str) -> String {
    let mut s = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The reader thread: streams the list, writes the rejects, sends chunks.
fn read_list(
    file: &Path,
    region: Option<&str>,
    rejects: &Path,
    read: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::Sender<Chunk>,
) -> CliResult<(Summary, Duration)> {
    let mut busy = Duration::ZERO;
    let t = Instant::now();
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::Input(format!("cannot open {}: {e}", file.display())))?;
    let bad = |e: ListError| CliError::Input(format!("{}: {e}", file.display()));
    let (mut list, mut out) = open_list(
        file,
        BufReader::with_capacity(1 << 20, Counting { inner: input, read }),
        region,
        rejects,
    )?;
    let io = |e: std::io::Error| CliError::Internal(e.into());
    let mut summary = Summary::default();
    let mut chunk = Chunk::new();
    busy += t.elapsed();
    let mut t = Instant::now();
    while let Some(row) = list.next_row() {
        let row = row.map_err(bad)?;
        summary.add(&row);
        match row {
            Row::Rejected(r) => {
                write_reject(&mut out, &r)?;
            }
            Row::Customer(c) => {
                let before = chunk.inputs.len();
                if let Some(p) = &c.phone {
                    chunk.inputs.push(input_for_phone(p));
                }
                if let Some(e) = &c.email {
                    chunk.inputs.push(input_for_email(e));
                }
                let w = chunk.inputs.len() - before;
                if w > 0 {
                    chunk.widths.push(w as u8);
                }
            }
        }
        // Full when another row (two inputs at most) might not fit.
        if chunk.inputs.len() + MAX_ROW_INPUTS > CHUNK_INPUTS {
            let full = std::mem::replace(&mut chunk, Chunk::new());
            busy += t.elapsed();
            if tx.blocking_send(full).is_err() {
                // The uploader stopped (it failed); its error is reported.
                return Ok((summary, busy));
            }
            t = Instant::now();
        }
    }
    out.flush().map_err(io)?;
    busy += t.elapsed();
    if !chunk.widths.is_empty() {
        let _ = tx.blocking_send(chunk);
    }
    say_rejected(&summary, rejects);
    Ok((summary, busy))
}

/// Opens a customer list for reading (warning about unused columns) and
/// its rejects file, written whole on every run (a header alone when
/// nothing is rejected), so that a file left by an earlier run never
/// misleads. Shared with `accord audience check`.
pub fn open_list<R: Read>(
    file: &Path,
    input: R,
    region: Option<&str>,
    rejects: &Path,
) -> CliResult<(CustomerList<R>, BufWriter<std::fs::File>)> {
    let list = CustomerList::new(input, region)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    for name in &list.ignored {
        eprintln!("warning: column {name:?} is not used (phone, email, fn, ln, country are)");
    }
    let f = std::fs::File::create(rejects)
        .map_err(|e| CliError::Input(format!("cannot write {}: {e}", rejects.display())))?;
    let mut out = BufWriter::new(f);
    writeln!(out, "line,reason").map_err(|e| CliError::Internal(e.into()))?;
    Ok((list, out))
}

/// One rejected row: its line and reason, never its content.
pub fn write_reject(out: &mut impl Write, r: &accord_domain::audience::Rejected) -> CliResult {
    writeln!(out, "{},\"{}\"", r.line, r.reason.replace('"', "\"\""))
        .map_err(|e| CliError::Internal(e.into()))
}

/// Says where the rejected rows went, if any.
pub fn say_rejected(summary: &Summary, rejects: &Path) {
    if summary.rejected > 0 {
        eprintln!(
            "{} rejected rows, with their reasons, in {}",
            summary.rejected,
            rejects.display()
        );
    }
}
