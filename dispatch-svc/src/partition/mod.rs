//! Partition ownership and stream consumption.
//!
//! **Leases.** Partition `p` is owned by the dispatcher whose id is stored in
//! `{pN}:lease` (`SET NX PX`, TTL [`LEASE_TTL`]). The owner renews it every
//! third of the TTL with a compare-and-extend script and releases it
//! (compare-and-delete) when it stops. Every [`TICK`] a dispatcher heartbeats
//! into the `dispatchers` set, works out its fair share
//! (`ceil(partitions / live dispatchers)`), takes free partitions up to that
//! share, takes any partition that has stayed free for a few ticks (its
//! owner died), and hands back partitions above its share so that a newly
//! started dispatcher gets work.
//!
//! **Reading.** The owner reads `{pN}:jobs` through the consumer group
//! [`CONSUMER_GROUP`] with `XREADGROUP ... BLOCK` on a connection of its own
//! (a blocking read must not hold up the shared multiplexed connection). On
//! taking a partition it first claims the entries its previous owners left
//! pending (`XAUTOCLAIM`) with a minimum idle time longer than the delivery
//! timeout, so an attempt still running elsewhere is not sent twice. The same
//! claim runs periodically to pick up entries this process let go of (an
//! actor that stopped with a queue); entries still held in this process
//! (queued in an actor, being attempted, or a `fifo` job held for its retry)
//! are recognised by the partition's [`LiveSet`] and left alone. A `NOGROUP`
//! error (Redis lost its data) recreates the group and reading goes on.
//!
//! **Settling.** Until every entry other consumers left pending has been
//! claimed (`XPENDING` names no other consumer), the partition is not
//! *settled*: the claim then runs every second instead of every
//! [`RECLAIM_EVERY`], and `fifo` actors start nothing, so a new job cannot
//! overtake an older one still waiting for its claim. Other endpoints are
//! not held up. A partition settles at the latest after the claim idle
//! time and two claim rounds, whatever is left.
//!
//! **Loading.** Each read batch fetches every distinct event payload and
//! every endpoint record that has no actor yet in one pipelined round trip;
//! a payload is parsed once into an `Arc` shared by all jobs that need it.
//!
//! **Retry pump.** Per owned partition, moves due retries back into the
//! stream (see [`crate::retry`]).
//!
//! **Parked jobs.** A job whose endpoint's queue is full is parked
//! (`records::parking`); the read loop feeds parked jobs back as queues
//! drain (`parked.rs`).
//!
//! A lost lease stops reading at once and stops the partition's actors
//! (queued jobs stay pending for the next owner); attempts already running
//! finish and their acknowledgement is harmless.
//!
//! Files: `lease.rs` (leases, fair share, hand-back), `reader.rs` (the
//! consumer-group read loop and the pending claim), `batch.rs` (a read
//! batch's payloads and endpoints, handed to the actors), `live.rs` (the
//! entries this process holds), `pump.rs` (due retries back to the stream),
//! `parked.rs` (parked jobs back to the stream). The commands themselves
//! are the store layer's (`records::leases`, `records::partition_stream`,
//! `records::events`, `records::retry_set`).

mod batch;
mod lease;
mod live;
mod parked;
mod pump;
mod reader;

use std::time::Duration;

pub use lease::run_leases;
pub use live::{LiveGuard, LiveSet};

pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often leases are looked at (renewals happen every third of the TTL).
pub const TICK: Duration = Duration::from_secs(1);
pub const READ_COUNT: usize = 256;
pub const READ_BLOCK: Duration = Duration::from_millis(1000);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::live::LiveSet;

    #[tokio::test]
    async fn live_set_releases_on_drop_and_reports_drained() {
        let set = Arc::new(LiveSet::default());
        let a = set.hold("1-0").unwrap();
        assert!(set.hold("1-0").is_none(), "an entry is held once");
        let b = set.hold("2-0").unwrap();
        assert_eq!(set.len(), 2);
        drop(a);
        assert!(!set.drained(Duration::from_millis(10)).await);
        let waiter = {
            let set = set.clone();
            tokio::spawn(async move { set.drained(Duration::from_secs(5)).await })
        };
        drop(b);
        assert!(waiter.await.unwrap());
        assert!(set.is_empty());
    }

    #[test]
    fn live_sets_start_unsettled() {
        let set = Arc::new(LiveSet::default());
        let guard = set.hold("1-0").unwrap();
        assert!(!guard.partition_settled());
        set.mark_settled();
        assert!(guard.partition_settled());
    }
}
