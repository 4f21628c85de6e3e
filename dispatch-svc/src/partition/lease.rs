//! Partition leases: heartbeats into the dispatcher set, the fair share,
//! taking free partitions, renewing, losing and handing back.

use std::sync::Arc;
use std::time::Duration;

use herald_common::redis_conn::RedisConn;
use herald_common::time_fmt;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::Shared;
use crate::actor::Actors;
use crate::error::DispatchError;
use crate::records::leases;

/// A partition free for this many ticks is taken regardless of fair share.
const FREE_TICKS_BEFORE_TAKING: u32 = 3;
/// A partition handed back is not taken again for this many ticks.
const HANDBACK_COOL_DOWN_TICKS: u32 = 10;
/// A dispatcher missing heartbeats this long no longer counts.
const MEMBER_EXPIRY: Duration = Duration::from_secs(30);

/// A partition this dispatcher owns.
struct Owned {
    stop: CancellationToken,
    live: Arc<LiveSet>,
    tasks: Vec<JoinHandle<()>>,
    renewed_at: Instant,
}

#[derive(Default)]
struct Slot {
    owned: Option<Owned>,
    free_ticks: u32,
    cool_down: u32,
}

/// Owns partitions until `shutdown`, then drains and releases them.
pub async fn run_leases(shared: Arc<Shared>, actors: Arc<Actors>, shutdown: CancellationToken) {
    let partitions = shared.config.partitions;
    let mut slots: Vec<Slot> = (0..partitions).map(|_| Slot::default()).collect();
    let mut conn = shared.records.conn();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = tick(&shared, &actors, &mut conn, &mut slots).await {
            tracing::warn!(error = %e, "partition lease round failed");
        }
        let owned = slots.iter().filter(|s| s.owned.is_some()).count();
        metrics::gauge!("herald_partitions_owned").set(owned as f64);
    }

    // Drain: stop reading everywhere, drop queued jobs (they stay pending),
    // let running attempts finish, then hand the partitions back.
    let mut held = Vec::new();
    for (p, slot) in slots.iter_mut().enumerate() {
        if let Some(owned) = slot.owned.take() {
            owned.stop.cancel();
            held.push((p as u32, owned));
        }
    }
    actors.evict_all();
    // One grace period for the whole drain, however many partitions are held.
    let deadline = Instant::now() + shared.config.delivery_timeout + Duration::from_secs(2);
    for (_, owned) in &held {
        if !owned.live.drained(deadline.saturating_duration_since(Instant::now())).await {
            tracing::warn!(left = owned.live.len(), "attempts still running at shutdown; they will be claimed again");
        }
    }
    for (p, owned) in held {
        for task in owned.tasks {
            task.abort();
        }
        if let Err(e) = release(&shared, &mut conn, p).await {
            tracing::warn!(partition = p, error = %e, "could not release the lease");
        }
    }
    let _: Result<(), _> = leases::leave(&mut conn, &shared.keys, &shared.id).await;
    metrics::gauge!("herald_partitions_owned").set(0.0);
}

async fn tick(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    conn: &mut RedisConn,
    slots: &mut [Slot],
) -> Result<(), DispatchError> {
    let now_ms = time_fmt::now_millis();
    let members = leases::heartbeat(conn, &shared.keys, &shared.id, now_ms, MEMBER_EXPIRY).await?;
    let partitions = slots.len() as u32;
    let fair = partitions.div_ceil(members.max(1)) as usize;

    // Renew what we own; whatever cannot be renewed is lost.
    let renew_every = LEASE_TTL / 3;
    let now = Instant::now();
    let due: Vec<u32> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.owned.as_ref().is_some_and(|o| now.duration_since(o.renewed_at) >= renew_every))
        .map(|(p, _)| p as u32)
        .collect();
    if !due.is_empty() {
        match leases::renew_all(conn, &shared.keys, &due, &shared.id, LEASE_TTL).await? {
            Ok(answers) => {
                for (p, ok) in due.iter().zip(answers) {
                    let slot = &mut slots[*p as usize];
                    if ok {
                        if let Some(owned) = slot.owned.as_mut() {
                            owned.renewed_at = now;
                        }
                    } else {
                        tracing::warn!(partition = p, "partition lease lost");
                        lose(actors, slot, *p, partitions);
                    }
                }
            }
            Err(e) => {
                // Not known to be lost; give up only once it surely expired.
                tracing::warn!(error = %e, "lease renewal failed");
                for p in &due {
                    let slot = &mut slots[*p as usize];
                    if slot.owned.as_ref().is_some_and(|o| now.duration_since(o.renewed_at) >= LEASE_TTL) {
                        lose(actors, slot, *p, partitions);
                    }
                }
            }
        }
    }

    // Hand back partitions above the fair share (highest numbers first).
    let mut owned: Vec<u32> =
        slots.iter().enumerate().filter(|(_, s)| s.owned.is_some()).map(|(p, _)| p as u32).collect();
    while owned.len() > fair {
        let Some(p) = owned.pop() else { break };
        let slot = &mut slots[p as usize];
        if let Some(owned) = slot.owned.take() {
            slot.cool_down = HANDBACK_COOL_DOWN_TICKS;
            tracing::info!(partition = p, fair, "handing a partition back");
            hand_back(shared.clone(), actors.clone(), owned, p);
        }
    }

    // Try to take free partitions.
    let mut count = owned.len();
    let candidates: Vec<u32> = slots
        .iter_mut()
        .enumerate()
        .filter_map(|(p, s)| {
            if s.owned.is_some() {
                return None;
            }
            if s.cool_down > 0 {
                s.cool_down -= 1;
                return None;
            }
            Some(p as u32)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    // Only partitions the rules allow are asked for: see which are free first.
    let taken = leases::held(conn, &shared.keys, &candidates).await?;
    let mut chosen = Vec::new();
    for (p, is_taken) in candidates.iter().zip(taken) {
        let slot = &mut slots[*p as usize];
        if is_taken {
            slot.free_ticks = 0;
            continue;
        }
        slot.free_ticks = slot.free_ticks.saturating_add(1);
        if count < fair || slot.free_ticks > FREE_TICKS_BEFORE_TAKING {
            chosen.push(*p);
            count += 1;
        }
    }
    if chosen.is_empty() {
        return Ok(());
    }
    let acquired = leases::acquire(conn, &shared.keys, &chosen, &shared.id, LEASE_TTL).await?;
    for (p, acquired) in chosen.into_iter().zip(acquired) {
        if !acquired {
            continue;
        }
        tracing::info!(partition = p, "partition acquired");
        let slot = &mut slots[p as usize];
        slot.free_ticks = 0;
        slot.owned = Some(start_partition(shared.clone(), actors.clone(), p));
    }
    Ok(())
}

fn lose(actors: &Actors, slot: &mut Slot, p: u32, partitions: u32) {
    if let Some(owned) = slot.owned.take() {
        owned.stop.cancel();
        actors.evict_partition(p, partitions);
    }
}

/// Stops reading a partition, waits for its running attempts, then releases
/// the lease so another dispatcher can take it without waiting for a claim.
fn hand_back(shared: Arc<Shared>, actors: Arc<Actors>, owned: Owned, p: u32) {
    owned.stop.cancel();
    actors.evict_partition(p, shared.config.partitions);
    tokio::spawn(async move {
        let grace = shared.config.delivery_timeout + Duration::from_secs(2);
        // Keep the lease alive while attempts finish.
        let mut conn = shared.records.conn();
        let deadline = Instant::now() + grace;
        while !owned.live.is_empty() && Instant::now() < deadline {
            let _: Result<bool, _> = leases::renew(&mut conn, &shared.keys, p, &shared.id, LEASE_TTL).await;
            owned.live.drained(Duration::from_secs(2)).await;
        }
        if let Err(e) = release(&shared, &mut conn, p).await {
            tracing::warn!(partition = p, error = %e, "could not release the lease");
        }
    });
}

async fn release(shared: &Shared, conn: &mut RedisConn, p: u32) -> Result<(), DispatchError> {
    leases::release(conn, &shared.keys, p, &shared.id).await
}

fn start_partition(shared: Arc<Shared>, actors: Arc<Actors>, p: u32) -> Owned {
    let stop = CancellationToken::new();
    let live = Arc::new(LiveSet::default());
    let reader = tokio::spawn(super::reader::read_partition(shared.clone(), actors, p, live.clone(), stop.clone()));
    let pump = tokio::spawn(super::pump::run(shared, p, stop.clone()));
    Owned { stop, live, tasks: vec![reader, pump], renewed_at: Instant::now() }
}
