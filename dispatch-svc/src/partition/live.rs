//! The stream entries of a partition that this process holds (queued in an
//! actor, being attempted, or a `fifo` job held for its retry), so the
//! periodic claim leaves them alone, and whether the partition has settled.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Stream entries of one partition that this process holds (queued in an
/// actor or being attempted), so a periodic claim does not start them twice.
#[derive(Debug, Default)]
pub struct LiveSet {
    ids: Mutex<HashSet<String>>,
    emptied: Notify,
    /// Every entry a previous owner left pending has been claimed.
    settled: AtomicBool,
}

impl LiveSet {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `id` as held; `None` if it already is.
    pub fn hold(self: &Arc<Self>, id: &str) -> Option<LiveGuard> {
        if self.lock().insert(id.to_owned()) { Some(LiveGuard { set: self.clone(), id: id.to_owned() }) } else { None }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(AtomicOrdering::Acquire)
    }

    pub fn mark_settled(&self) {
        self.settled.store(true, AtomicOrdering::Release);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Waits until nothing is held, or `timeout`.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.emptied.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

/// Releases its entry from the [`LiveSet`] when dropped, whichever way the
/// job ends: settled, or dropped with a stopping actor.
#[derive(Debug)]
pub struct LiveGuard {
    set: Arc<LiveSet>,
    id: String,
}

impl LiveGuard {
    /// Whether the entry's partition is settled (see the module header).
    pub fn partition_settled(&self) -> bool {
        self.set.is_settled()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut ids = self.set.lock();
        ids.remove(&self.id);
        if ids.is_empty() {
            self.set.emptied.notify_waiters();
        }
    }
}
