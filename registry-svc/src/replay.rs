//! Replaying the event log to one endpoint: every retained event published
//! in a time range that the endpoint's subscriptions match now and that it
//! has no delivery of yet (the caller names those) becomes a new delivery,
//! as if it had been published to it. A new endpoint catches up this way.
//!
//! A replayed delivery's id carries its event's publish time, so it is
//! listed and found with the event's other deliveries.

use std::collections::{HashMap, HashSet};

use herald_common::event_index;
use herald_common::ids;
use herald_common::keys::partition_of;
use herald_common::model::{EndpointStatus, Job, Millis};

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::event_log::{LoggedEvent, logged};
use crate::routing::{Route, RouteTable};
use crate::store::LogOrder;
use crate::validate::Page;

/// Most events one replay reads; a longer range is replayed in parts.
pub const MAX_REPLAYED_EVENTS: usize = 10_000;
/// Index entries and events read per round trip.
const CHUNK: usize = 500;

impl Registry {
    /// Queues the replay; answers how many deliveries it made.
    pub async fn replay_endpoint(
        &self,
        tenant: &str,
        endpoint_id: &str,
        since: Millis,
        until: Option<Millis>,
        delivered_events: &HashSet<String>,
    ) -> Result<u32> {
        let (endpoint, _) = self.owned_endpoint(tenant, endpoint_id).await?;
        if endpoint.status != EndpointStatus::Active {
            return Err(RegistryError::Conflict(format!("endpoint {endpoint_id} is not active")));
        }
        let page = Page { limit: crate::validate::MAX_LIMIT, after: None };
        let (subscriptions, _) = self.store.list_subscriptions(tenant, Some(endpoint_id), &page).await?;
        let partition = partition_of(endpoint_id, self.config.partitions);
        let route = |filter| Route {
            endpoint_id: endpoint_id.to_owned(),
            partition,
            filter,
            generation: endpoint.generation.clone(),
        };
        // One table per event type met, as publishing builds them.
        let mut tables: HashMap<String, RouteTable> = HashMap::new();
        let mut lower = event_index::from_time(since);
        let upper = until.map_or_else(|| "+".to_owned(), event_index::before_time);
        let mut scanned = 0;
        let mut queued = 0u32;
        while scanned < MAX_REPLAYED_EVENTS {
            let entries = self.store.event_log_entries(tenant, LogOrder::OldestFirst, (&lower, &upper), CHUNK).await?;
            let Some(last) = entries.last() else { break };
            lower = format!("({}", last.entry_id);
            scanned += entries.len();
            let ids: Vec<&str> =
                entries.iter().map(|e| e.event_id.as_str()).filter(|id| !delivered_events.contains(*id)).collect();
            let stored = self.store.stored_events(tenant, &ids).await?;
            let mut jobs = Vec::new();
            let logged_events = ids.iter().zip(stored).filter_map(|(id, raw)| logged(id, &raw?));
            for LoggedEvent { event, published_ms, .. } in logged_events {
                let table = tables.entry(event.event_type.clone()).or_insert_with(|| {
                    let routes = subscriptions
                        .iter()
                        .filter(|s| s.event_types.iter().any(|t| t == "*" || *t == event.event_type))
                        .map(|s| route(s.filter.clone()))
                        .collect();
                    RouteTable::new(routes)
                });
                if table.select(&event).is_empty() {
                    continue;
                }
                // Events stored before they carried a header have no publish time.
                let published = if published_ms > 0 { published_ms } else { herald_common::time_fmt::now_millis() };
                jobs.push((
                    partition,
                    Job {
                        delivery_id: ids::delivery_id_made_at(partition, published),
                        tenant: tenant.to_owned(),
                        endpoint_id: endpoint_id.to_owned(),
                        event_id: event.id,
                        attempt: 1,
                        traceparent: None,
                        generation: Some(endpoint.generation.clone()).filter(|g| !g.is_empty()),
                    },
                ));
            }
            self.store.append_jobs(&jobs).await?;
            queued += jobs.len() as u32;
            if entries.len() < CHUNK {
                break;
            }
        }
        tracing::info!(tenant = %tenant, endpoint = %endpoint_id, queued, scanned, "events replayed");
        Ok(queued)
    }
}
