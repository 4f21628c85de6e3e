//! Feeding an owned partition's parked jobs back into its stream as their
//! endpoints' queues drain (see `records::parking`): the read loop looks at
//! the partition's parked endpoints every [`SWEEP_EVERY`] and moves back as
//! many jobs as each endpoint's actor has room for (a chunk, when no actor
//! holds the endpoint here, which starts one).

use std::time::Duration;

use crate::Shared;
use crate::actor::Actors;

/// How often the parked endpoints of a partition are looked at.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Most jobs moved back for one endpoint per sweep.
const CHUNK: usize = 1024;

pub(super) async fn sweep(shared: &Shared, actors: &Actors, p: u32) {
    let endpoints = match shared.records.parked_endpoints(p).await {
        Ok(endpoints) => endpoints,
        Err(e) => {
            tracing::warn!(partition = p, error = %e, "reading parked endpoints failed");
            return;
        }
    };
    for endpoint in endpoints {
        let room = actors.room_for_parked(&endpoint).map_or(CHUNK, |room| room.min(CHUNK));
        if room == 0 {
            continue;
        }
        match shared.records.unpark(p, &endpoint, room).await {
            Ok((moved, left)) if moved > 0 => {
                tracing::debug!(partition = p, endpoint = %endpoint, moved, left, "parked jobs fed back");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(partition = p, endpoint = %endpoint, error = %e, "feeding parked jobs back failed")
            }
        }
    }
}
