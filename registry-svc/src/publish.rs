//! Publishing: validate an event, find the endpoints it must reach, and in
//! one atomic Redis step store it once and enqueue one job per endpoint.
//!
//! The hot path costs two round trips per request, however many events a
//! batch holds and however many endpoints they fan out to:
//!
//! 1. one pipeline reading, for every tenant and event type in the request,
//!    whether the tenant exists, its routing generation, and the stored
//!    event type (whose compiled schema is cached, see [`crate::schema`]);
//! 2. one `EVALSHA` of the publish script for the whole batch, which per
//!    event stores the payload under a free id with the retention TTL
//!    (`SET … NX GET`: the same command is the idempotency check, see
//!    [`herald_common::stored_event`]) and `XADD`s its jobs to their
//!    partition streams.
//!
//! Routing tables (which endpoints a (tenant, event type) reaches, with
//! their filters, see [`crate::routing`]) are cached in memory and
//! revalidated against the tenant's routing generation, which every
//! endpoint and subscription write bumps. Only a stale or missing table
//! costs extra reads.
//!
//! Jobs carry ids only; the payload is serialised once and stored once.

use std::collections::HashSet;
use std::sync::Arc;

use herald_common::ids;
use herald_common::keys::partition_of;
use herald_common::model::{EndpointStatus, Job, StoredEvent};
use herald_common::telemetry;
use herald_common::time_fmt;
use herald_proto::v1::PublishRequest;

use crate::Registry;
use crate::error::{FieldError, RegistryError, Result};
use crate::event_input::{Parsed, parse};
use crate::routing::{Route, RouteTable};
use crate::schema;
use crate::store::{Enqueue, Enqueued};
use crate::validate;

/// The answer for one published event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub id: String,
    pub deliveries: u32,
    pub duplicate: bool,
}

/// An event ready for the atomic step.
struct Prepared {
    tenant: String,
    event: StoredEvent,
    time_ms: i64,
    jobs: Vec<(u32, Job)>,
}

impl Registry {
    /// `traceparent` is the caller's, used for the jobs when this process
    /// records no span of its own (e.g. tracing filtered off by `RUST_LOG`).
    pub async fn publish(&self, request: PublishRequest, traceparent: Option<String>) -> Result<Published> {
        let mut answers = self.publish_events(vec![request], false, traceparent).await?;
        answers.pop().ok_or_else(|| RegistryError::invalid("events", "no event was published"))
    }

    pub async fn publish_batch(
        &self,
        requests: Vec<PublishRequest>,
        traceparent: Option<String>,
    ) -> Result<Vec<Published>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        if requests.len() > validate::MAX_BATCH_EVENTS {
            return Err(RegistryError::invalid(
                "events",
                format!("at most {} events per batch", validate::MAX_BATCH_EVENTS),
            ));
        }
        self.publish_events(requests, true, traceparent).await
    }

    /// Validates every event first (nothing is published unless all are
    /// valid), then routes and enqueues them all in one round trip.
    async fn publish_events(
        &self,
        requests: Vec<PublishRequest>,
        batch: bool,
        caller_traceparent: Option<String>,
    ) -> Result<Vec<Published>> {
        let field = |i: usize| if batch { format!("events[{i}].") } else { String::new() };
        let mut errors: Vec<FieldError> = Vec::new();
        let mut parsed: Vec<Parsed> = Vec::with_capacity(requests.len());
        for (i, request) in requests.into_iter().enumerate() {
            match parse(request, self.config.max_event_bytes) {
                Ok(p) => parsed.push(p),
                Err(e) => match e.within(&field(i)) {
                    RegistryError::Invalid(list) => errors.extend(list),
                    other => return Err(other),
                },
            }
        }
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(errors));
        }

        let tenants: Vec<&str> = parsed.iter().map(|p| p.tenant.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let types: Vec<&str> =
            parsed.iter().map(|p| p.event_type.as_str()).collect::<HashSet<_>>().into_iter().collect();
        let lookup = self.store.publish_lookup(&tenants, &types).await?;

        for (i, p) in parsed.iter().enumerate() {
            let prefix = field(i);
            if !lookup.tenants.get(&p.tenant).is_some_and(|(exists, _)| *exists) {
                errors.push(FieldError::new(format!("{prefix}tenant"), format!("tenant {} not found", p.tenant)));
                continue;
            }
            let Some(Some(raw)) = lookup.event_types.get(&p.event_type) else {
                errors.push(FieldError::new(format!("{prefix}type"), format!("unknown event type {}", p.event_type)));
                continue;
            };
            let event_type = self.schemas.get(&p.event_type, raw)?;
            if let Some(validator) = &event_type.validator
                && let Err(list) = schema::check(validator, &p.data)
            {
                errors.extend(list.into_iter().map(|e| FieldError::new(format!("{prefix}{}", e.field), e.message)));
                continue;
            }
        }
        if !errors.is_empty() {
            return Err(RegistryError::Invalid(errors));
        }

        // Without one, each delivery makes its own from its id.
        let traceparent = telemetry::onward_traceparent(caller_traceparent);
        let mut prepared: Vec<Prepared> = Vec::with_capacity(parsed.len());
        for p in parsed {
            let generation = lookup.tenants.get(&p.tenant).map_or(0, |(_, g)| *g);
            let routes = self.routes(&p.tenant, &p.event_type, generation).await?;
            let event = StoredEvent {
                id: p.id,
                event_type: p.event_type,
                timestamp: time_fmt::rfc3339(p.time),
                resource: p.resource,
                data: p.data,
            };
            let jobs: Vec<(u32, Job)> = routes
                .select(&event)
                .into_iter()
                .map(|route| {
                    let job = Job {
                        delivery_id: ids::new_delivery_id(route.partition),
                        tenant: p.tenant.clone(),
                        endpoint_id: route.endpoint_id.clone(),
                        event_id: event.id.clone(),
                        attempt: 1,
                        traceparent: traceparent.clone(),
                        generation: Some(route.generation.clone()).filter(|g| !g.is_empty()),
                    };
                    (route.partition, job)
                })
                .collect();
            prepared.push(Prepared { tenant: p.tenant, event, time_ms: time_fmt::to_millis(p.time), jobs });
        }
        let calls: Vec<Enqueue<'_>> = prepared
            .iter()
            .map(|p| Enqueue { tenant: &p.tenant, event: &p.event, time_ms: p.time_ms, jobs: &p.jobs })
            .collect();
        let retention = u64::try_from(self.config.event_retention.as_millis()).unwrap_or(u64::MAX);
        let window = u64::try_from(self.config.idempotency_window.as_millis()).unwrap_or(u64::MAX);
        let answers = self.store.enqueue(&calls, retention, window).await?;
        let mut published = Vec::with_capacity(answers.len());
        for (p, Enqueued { duplicate, deliveries }) in prepared.into_iter().zip(answers) {
            if !duplicate {
                metrics::counter!("herald_events_published_total").increment(1);
                metrics::counter!("herald_jobs_enqueued_total").increment(u64::from(deliveries));
            } else {
                metrics::counter!("herald_events_duplicate_total").increment(1);
            }
            tracing::debug!(tenant = %p.tenant, event = %p.event.id, deliveries, duplicate, "event published");
            published.push(Published { id: p.event.id, deliveries, duplicate });
        }
        Ok(published)
    }

    /// The routing table of (tenant, event type), from the cache when its
    /// generation is current.
    async fn routes(&self, tenant: &str, event_type: &str, generation: u64) -> Result<Arc<RouteTable>> {
        self.routes.get_or_load(tenant, event_type, generation, || self.load_routes(tenant, event_type)).await
    }

    async fn load_routes(&self, tenant: &str, event_type: &str) -> Result<RouteTable> {
        let (subs, statuses) = self.store.routing_inputs(tenant, event_type).await?;
        let routes: Vec<Route> = subs
            .into_iter()
            .filter(|s| s.tenant == tenant)
            .filter_map(|s| match statuses.get(&s.endpoint_id) {
                Some((EndpointStatus::Active, generation)) => Some(Route {
                    partition: partition_of(&s.endpoint_id, self.config.partitions),
                    generation: generation.clone(),
                    endpoint_id: s.endpoint_id,
                    filter: s.filter,
                }),
                _ => None,
            })
            .collect();
        Ok(RouteTable::new(routes))
    }
}
