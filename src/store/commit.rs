//! Group commit: one writer thread owns the redb file and drains a bounded queue of batches
//! into one write transaction, so N changes made at once cost about one fsync. Each batch is
//! acknowledged only after the transaction holding it is durable. The thread keeps store I/O
//! off the async runtime; the state lock is held only while a batch is encoded and queued.
//!
//! A failed commit leaves the store failed: every later batch is refused with the first
//! failure, because the in-memory state may already hold changes the file does not, and only a
//! restart (which reloads the file) brings the two back together.

use super::StoreError;
use super::db::{self, Batch};
use redb::Database;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Batches waiting for the writer; a producer waits (under the state lock) beyond this.
const QUEUE: usize = 1024;
/// Batches in one transaction at most, so one fsync does not wait for an endless queue.
const MAX_GROUP: usize = 256;

/// The handle to the writer thread.
pub struct Committer {
    tx: Option<mpsc::SyncSender<Request>>,
    generation: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Request {
    batch: Batch,
    ack: Ack,
}

enum Ack {
    Async(tokio::sync::oneshot::Sender<Result<u64, String>>),
    Blocking(mpsc::SyncSender<Result<u64, String>>),
}

/// A batch queued for commit; await [`Pending::durable`] for durability.
#[must_use = "a change is durable only when its commit is awaited"]
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<Result<u64, String>>,
    path: PathBuf,
}

impl Committer {
    /// Starts the writer; it publishes each committed batch's sequence number in `applied`.
    pub fn start(
        db: Arc<Database>,
        path: PathBuf,
        generation: u64,
        applied: Arc<AtomicU64>,
    ) -> Result<Committer, StoreError> {
        let (tx, rx) = mpsc::sync_channel::<Request>(QUEUE);
        let shared = Arc::new(AtomicU64::new(generation));
        let published = Published {
            generation: shared.clone(),
            applied,
        };
        let thread = std::thread::Builder::new()
            .name("byokd-store".into())
            .spawn(move || write_loop(&db, &path, &rx, &published))
            .map_err(|e| StoreError::io("byokd-store thread", e))?;
        Ok(Committer {
            tx: Some(tx),
            generation: shared,
            thread: Some(thread),
        })
    }

    /// The generation of the newest durable commit.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Queues `batch`; the result resolves once it is durable (or failed).
    pub fn submit(&self, batch: Batch, path: PathBuf) -> Pending {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(batch, Ack::Async(tx));
        Pending { rx, path }
    }

    /// Queues `batch` and blocks the calling thread until it is durable (for the commands and
    /// tests that run without an async runtime).
    pub fn commit_blocking(&self, batch: Batch, path: PathBuf) -> Result<u64, StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(batch, Ack::Blocking(tx));
        settle(rx.recv().ok(), path)
    }

    fn send(&self, batch: Batch, ack: Ack) {
        if let Some(tx) = &self.tx {
            // A send fails only when the writer is gone; the dropped ack then reports it.
            let _ = tx.send(Request { batch, ack });
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what it holds; joining it
        // closes the file before the directory lock is released.
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Pending {
    /// Resolves when the batch is durable, with the generation that holds it.
    pub async fn durable(self) -> Result<u64, StoreError> {
        settle(self.rx.await.ok(), self.path)
    }
}

fn settle(got: Option<Result<u64, String>>, path: PathBuf) -> Result<u64, StoreError> {
    match got {
        Some(Ok(generation)) => Ok(generation),
        Some(Err(reason)) => Err(StoreError::Commit { path, reason }),
        None => Err(StoreError::Commit {
            path,
            reason: "the store's writer stopped".into(),
        }),
    }
}

/// What the writer publishes after each commit.
struct Published {
    generation: Arc<AtomicU64>,
    applied: Arc<AtomicU64>,
}

fn write_loop(
    db: &Database,
    path: &std::path::Path,
    rx: &mpsc::Receiver<Request>,
    published: &Published,
) {
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first.batch];
        let mut acks = vec![first.ack];
        while batches.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => {
                    batches.push(r.batch);
                    acks.push(r.ack);
                }
                Err(_) => break,
            }
        }
        let result = match &failed {
            Some(reason) => Err(format!(
                "an earlier commit failed ({reason}); restart byokd to reload the durable state"
            )),
            None => db::apply(db, path, &batches).map_err(|e| e.to_string()),
        };
        match &result {
            Ok(g) => {
                published.generation.store(*g, Ordering::Release);
                // Only now may a read see these batches in the store (redb's commit has
                // returned), so only now may the key overlay let go of them.
                let newest = batches.iter().map(|b| b.seq).max().unwrap_or(0);
                published.applied.fetch_max(newest, Ordering::AcqRel);
            }
            Err(reason) => {
                if failed.is_none() {
                    tracing::error!(
                        event = crate::logs::Event::StateCommitFailed.as_str(),
                        path = %path.display(),
                        error = %reason,
                        "state: a commit failed; no further change is accepted until byokd restarts"
                    );
                    failed = Some(reason.clone());
                }
            }
        }
        for ack in acks {
            // A waiter that went away (its task was cancelled) needs no answer.
            let _ = match ack {
                Ack::Async(tx) => tx.send(result.clone()).map_err(|_| ()),
                Ack::Blocking(tx) => tx.send(result.clone()).map_err(|_| ()),
            };
        }
    }
}
