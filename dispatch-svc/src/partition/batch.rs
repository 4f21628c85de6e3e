//! A read batch on its way to the actors: each distinct payload and every
//! endpoint without an actor loaded in one round trip, first attempts
//! listed as pending, and each job handed to its endpoint's actor.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use herald_common::keys::partition_of;
use herald_common::model::{EndpointRecord, Job};

use super::*;
use crate::Shared;
use crate::actor::{Actors, Loaded, Refused};
use crate::delivery::{Taken, Work, fail_unsent, park};
use crate::error::DispatchError;
use crate::records::events::{self, BatchLoad, StoredEndpoint, StoredEndpoints};
use crate::records::{Entry, StreamEntry, partition_stream};
use crate::send::render::LoadedEvent;

/// Loads what a batch of entries needs and routes each job to its actor.
/// `reclaimed`: the entries come from the pending-entry claim.
pub(super) async fn handle_entries(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    p: u32,
    live: &Arc<LiveSet>,
    entries: Vec<StreamEntry>,
    reclaimed: bool,
) {
    let mut malformed = Vec::new();
    let mut taken = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let Some(guard) = live.hold(&id) else { continue };
        match Job::from_fields(fields) {
            Some(job) => taken.push(Taken { job, entry: Entry { partition: p, id }, guard, reclaimed }),
            None => malformed.push(id),
        }
    }
    if !malformed.is_empty() {
        tracing::warn!(partition = p, count = malformed.len(), "dropping stream entries that are not jobs");
        let stream = shared.keys.partition_stream(p);
        let mut conn = shared.records.conn();
        let _: Result<(), _> = partition_stream::drop_entries(&mut conn, &stream, &malformed).await;
    }
    if taken.is_empty() {
        return;
    }

    let (job_events, endpoints) = match load(shared, actors, &taken).await {
        Ok(loaded) => loaded,
        Err(e) => {
            // Left pending: the periodic claim picks them up again.
            tracing::warn!(partition = p, error = %e, "loading events failed");
            return;
        }
    };

    list_pending(shared, &taken, &job_events).await;

    let mut missing_event = Vec::new();
    let mut no_endpoint = Vec::new();
    let mut full = Vec::new();
    let mut unloaded = Vec::new();
    let partitions = shared.config.partitions;
    for (t, event) in taken.into_iter().zip(job_events) {
        if partition_of(&t.job.endpoint_id, partitions) != p {
            tracing::warn!(partition = p, endpoint = %t.job.endpoint_id, "job in the wrong partition; delivering anyway");
        }
        let Some(event) = event else {
            missing_event.push(t);
            continue;
        };
        let work = Work { taken: t, event };
        let loaded = endpoints.get(&work.taken.job.endpoint_id).map(Option::as_ref);
        match actors.dispatch(work, loaded) {
            Ok(()) => {}
            Err(Refused::Later(work)) => full.push(*work),
            Err(Refused::NeedEndpoint(work)) => unloaded.push(*work),
            Err(Refused::NoEndpoint(work)) => {
                let event_type = Some(work.event.event_type.clone());
                no_endpoint.push((work.taken, event_type));
            }
        }
    }
    // Their actor stopped between loading and dispatching: load them now
    // rather than put them off, which would reorder a fifo endpoint.
    if !unloaded.is_empty() {
        let ids: Vec<String> = {
            let mut seen = HashSet::new();
            unloaded.iter().map(|w| &w.taken.job.endpoint_id).filter(|id| seen.insert(*id)).cloned().collect()
        };
        match load_endpoints(shared, ids).await {
            Ok(endpoints) => {
                for work in unloaded {
                    let loaded = endpoints.get(&work.taken.job.endpoint_id).map(Option::as_ref);
                    match actors.dispatch(work, loaded) {
                        Ok(()) => {}
                        Err(Refused::NoEndpoint(work)) => {
                            let event_type = Some(work.event.event_type.clone());
                            no_endpoint.push((work.taken, event_type));
                        }
                        Err(Refused::Later(work) | Refused::NeedEndpoint(work)) => full.push(*work),
                    }
                }
            }
            // Left pending: the periodic claim picks them up again.
            Err(e) => tracing::warn!(partition = p, error = %e, "loading endpoints failed"),
        }
    }
    let shared = shared.clone();
    if !missing_event.is_empty() {
        fail_unsent(shared.clone(), missing_event, Vec::new(), "event payload expired or missing".to_owned()).await;
    }
    if !no_endpoint.is_empty() {
        let (taken, types): (Vec<_>, Vec<_>) = no_endpoint.into_iter().unzip();
        fail_unsent(shared.clone(), taken, types, "endpoint deleted".to_owned()).await;
    }
    if !full.is_empty() {
        park(shared, full).await;
    }
}

/// Each job's event, in job order (`None`: missing or corrupt).
type JobEvents = Vec<Option<Arc<LoadedEvent>>>;
type Endpoints = HashMap<String, Option<Loaded>>;

/// One round trip: every distinct payload, and the records and stored
/// health of endpoints without an actor.
async fn load(shared: &Shared, actors: &Actors, taken: &[Taken]) -> Result<(JobEvents, Endpoints), DispatchError> {
    // Each distinct event once, and each job's place among them.
    let mut event_keys: Vec<(&str, &str)> = Vec::new();
    let mut places: HashMap<(&str, &str), usize> = HashMap::new();
    let mut job_places = Vec::with_capacity(taken.len());
    let mut endpoint_ids: Vec<String> = Vec::new();
    let mut seen_ep = HashSet::new();
    for t in taken {
        let key = (t.job.tenant.as_str(), t.job.event_id.as_str());
        let place = *places.entry(key).or_insert_with(|| {
            event_keys.push(key);
            event_keys.len() - 1
        });
        job_places.push(place);
        if seen_ep.insert(t.job.endpoint_id.as_str()) && !actors.contains(&t.job.endpoint_id) {
            endpoint_ids.push(t.job.endpoint_id.clone());
        }
    }
    let mut conn = shared.records.conn();
    let BatchLoad { events: event_raw, endpoints: stored } =
        events::load_batch(&mut conn, &shared.keys, &event_keys, &endpoint_ids).await?;
    let endpoints = endpoints_of(shared, endpoint_ids, stored).await?;

    let events: Vec<Option<Arc<LoadedEvent>>> = event_keys
        .iter()
        .zip(event_raw.into_iter().chain(std::iter::repeat(None)))
        .map(|((_, event_id), raw)| {
            raw.and_then(|raw| match LoadedEvent::parse(event_id, raw.into()) {
                Ok(event) => Some(Arc::new(event)),
                Err(e) => {
                    tracing::error!(event = %event_id, error = %e, "stored event is corrupt");
                    None
                }
            })
        })
        .collect();
    Ok((job_places.into_iter().map(|place| events.get(place).cloned().flatten()).collect(), endpoints))
}

/// Records the batch's first attempts as `pending`
/// ([`crate::records::Records::record_pending`]) before they are handed to
/// actors, so a delivery held back (rate limit, in-flight cap, open circuit,
/// `fifo` order) is listed before it is tried. On failure the jobs go on,
/// listed once settled.
async fn list_pending(shared: &Shared, taken: &[Taken], job_events: &[Option<Arc<LoadedEvent>>]) {
    let mut waiting = Vec::with_capacity(taken.len());
    for (t, event) in taken.iter().zip(job_events) {
        // A claimed entry may have had an outcome stored by its previous
        // owner (a `fifo` job held for its retry): only new reads are
        // certain to have none, and a pending state must never replace one.
        if t.job.attempt != 1 || t.reclaimed {
            continue;
        }
        let Some(event) = event else { continue };
        waiting.push((&t.job, event.event_type.as_str()));
    }
    if let Err(e) = shared.records.record_pending(&waiting).await {
        tracing::warn!(error = %e, deliveries = waiting.len(), "recording pending deliveries failed");
    }
}

/// The records and stored health of `ids`, in one round trip.
async fn load_endpoints(shared: &Shared, ids: Vec<String>) -> Result<Endpoints, DispatchError> {
    let mut conn = shared.records.conn();
    let stored = events::load_endpoints(&mut conn, &shared.keys, &ids).await?;
    endpoints_of(shared, ids, stored).await
}

/// Parses the stored endpoints of `ids` (a corrupt record counts as none),
/// with their health: packed, else from the first layout where an older
/// epoch may have left it, else clean.
async fn endpoints_of(shared: &Shared, ids: Vec<String>, stored: StoredEndpoints) -> Result<Endpoints, DispatchError> {
    let mut parsed = Vec::with_capacity(ids.len());
    for (id, StoredEndpoint { record, health }) in ids.into_iter().zip(stored) {
        let record = record.and_then(|raw| match serde_json::from_slice::<EndpointRecord>(&raw) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::error!(endpoint = %id, error = %e, "stored endpoint is corrupt");
                None
            }
        });
        parsed.push((id, record, health));
    }
    let unpacked = parsed.iter().filter(|(_, _, health)| health.is_none()).filter_map(|(_, record, _)| record.as_ref());
    let mut first_layout = shared.records.first_layout_health(unpacked).await?;
    let endpoints = parsed.into_iter().map(|(id, record, health)| {
        let health = health.or_else(|| first_layout.remove(&id)).unwrap_or_default();
        (id, record.map(|record| Loaded { record, health }))
    });
    Ok(endpoints.collect())
}
