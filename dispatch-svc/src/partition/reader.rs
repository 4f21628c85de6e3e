//! The read loop of an owned partition: its own connection, the consumer
//! group, `XREADGROUP` batches, and the periodic claim of pending entries.

use std::sync::Arc;
use std::time::Duration;

use herald_common::backoff::{Backoff, retry_until_stopped};
use herald_common::redis_conn::RedisConn;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::Shared;
use crate::actor::Actors;
use crate::error::DispatchError;
use crate::records::partition_stream::{self, is_nogroup};

/// How often the owner claims entries it let go of.
const RECLAIM_EVERY: Duration = Duration::from_secs(10);
/// How often the claim runs while the partition is not settled.
const SETTLING_CLAIM_EVERY: Duration = Duration::from_secs(1);

/// A connection of the reader's own, made again until it works or `stop`.
async fn dedicated_connection(shared: &Shared, stop: &CancellationToken) -> Option<RedisConn> {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let connect = || herald_common::redis_conn::connect(&shared.config.redis);
    retry_until_stopped(backoff, stop, connect, |e, _| tracing::warn!(error = %e, "reader cannot connect to redis"))
        .await
}

pub(super) async fn read_partition(
    shared: Arc<Shared>,
    actors: Arc<Actors>,
    p: u32,
    live: Arc<LiveSet>,
    stop: CancellationToken,
) {
    let _gauges = crate::observe::PartitionGauges::new(p);
    let Some(mut conn) = dedicated_connection(&shared, &stop).await else { return };
    let stream = shared.keys.partition_stream(p);
    let min_idle = shared.config.delivery_timeout + Duration::from_secs(5);
    let mut group_ready = false;
    let mut next_claim = Instant::now();
    let mut next_sweep = Instant::now();
    let settle_by = Instant::now() + min_idle + RECLAIM_EVERY * 2;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !stop.is_cancelled() {
        if !group_ready {
            match partition_stream::ensure_group(&mut conn, &stream).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "cannot create the consumer group");
                    backoff.wait(&stop).await;
                    continue;
                }
            }
        }
        if Instant::now() >= next_claim {
            match claim(&shared, &actors, &mut conn, p, &live, min_idle).await {
                Ok(()) if live.is_settled() => next_claim = Instant::now() + RECLAIM_EVERY,
                Ok(()) if Instant::now() >= settle_by => {
                    tracing::warn!(partition = p, "entries of a previous owner are still pending; not waiting longer");
                    live.mark_settled();
                    next_claim = Instant::now() + RECLAIM_EVERY;
                }
                Ok(()) => next_claim = Instant::now() + SETTLING_CLAIM_EVERY,
                Err(e) if is_nogroup(&e) => {
                    group_ready = false;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "claiming pending entries failed");
                    next_claim = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        if Instant::now() >= next_sweep {
            super::parked::sweep(&shared, &actors, p).await;
            next_sweep = Instant::now() + super::parked::SWEEP_EVERY;
        }
        let read = partition_stream::read_new(&mut conn, &stream, &shared.id, READ_COUNT, READ_BLOCK).await;
        match read {
            Ok(entries) => {
                backoff.reset();
                if !entries.is_empty() {
                    // Read before the lease was lost: still handled, the
                    // next owner's claim waits longer than any attempt.
                    super::batch::handle_entries(&shared, &actors, p, &live, entries, false).await;
                }
            }
            Err(e) if is_nogroup(&e) => {
                tracing::warn!(partition = p, "consumer group vanished; creating it again");
                group_ready = false;
            }
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "reading the partition failed");
                backoff.wait(&stop).await;
            }
        }
    }
}

/// Claims entries pending longer than `min_idle` (a previous owner's, or
/// ones this process let go of) and handles those not held here.
async fn claim(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    conn: &mut RedisConn,
    p: u32,
    live: &Arc<LiveSet>,
    min_idle: Duration,
) -> Result<(), DispatchError> {
    let stream = shared.keys.partition_stream(p);
    let mut cursor = "0-0".to_owned();
    let mut total = 0usize;
    // Bounded per round; the next round carries on.
    for _ in 0..64 {
        let Some(claimed) = partition_stream::claim(conn, &stream, &shared.id, min_idle, &cursor, READ_COUNT).await?
        else {
            break;
        };
        let partition_stream::Claimed { next, entries, deleted } = claimed;
        // Entries deleted from the stream while pending: nothing to deliver.
        if !deleted.is_empty() {
            partition_stream::ack_deleted(conn, &stream, &deleted).await?;
        }
        total += entries.len();
        if !entries.is_empty() {
            super::batch::handle_entries(shared, actors, p, live, entries, true).await;
        }
        if next == "0-0" {
            break;
        }
        cursor = next;
    }
    if total > 0 {
        tracing::info!(partition = p, claimed = total, "claimed pending entries");
    }
    crate::observe::sample_stream(conn, &stream, &shared.keys.retry_set(p), p).await;
    if !live.is_settled() {
        let pending = partition_stream::pending_consumers(conn, &stream).await?;
        if pending.iter().all(|c| *c == shared.id) {
            live.mark_settled();
        }
    }
    Ok(())
}
