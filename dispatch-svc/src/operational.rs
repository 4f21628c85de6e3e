//! The operational events a dispatcher publishes about a tenant's own
//! endpoints (`herald_common::operational`): `herald.delivery.failed` when a
//! delivery's last attempt failed, `herald.endpoint.token_failed` when an
//! endpoint's token endpoint starts failing (or fails otherwise than
//! before). They go through the registry's `Publish` like any event, so
//! they are routed by the tenant's subscriptions, signed and retried.
//!
//! Publishing runs apart from the attempt, retried with backoff for about
//! a minute while the registry is away, then given up with an error log:
//! an operational event reports on a delivery, it is never what one waits
//! for. A delivery of an operational event that fails publishes nothing.

use std::sync::Arc;
use std::time::Duration;

use herald_common::backoff::{Backoff, retry};
use herald_common::operational::{
    DELIVERY_FAILED, TOKEN_FAILED, failed_event_id, is_operational, token_failed_event_id,
};
use herald_common::time_fmt;
use herald_proto::v1::PublishRequest;
use serde_json::{Value, json};

use crate::Shared;
use crate::records::AttemptRecord;

/// How often publishing an operational event is tried.
const TRIES: u32 = 6;

/// A delivery whose last attempt failed, as `herald.delivery.failed` says it.
pub struct FailedDelivery<'a> {
    pub tenant: &'a str,
    pub delivery_id: &'a str,
    pub endpoint_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub last: &'a AttemptRecord,
}

/// Publishes `herald.delivery.failed`, unless the delivery was itself an
/// operational event.
pub fn delivery_failed(shared: &Arc<Shared>, failed: &FailedDelivery<'_>) {
    if is_operational(failed.event_type) {
        return;
    }
    let mut data = json!({
        "deliveryId": failed.delivery_id,
        "endpointId": failed.endpoint_id,
        "eventId": failed.event_id,
        "eventType": failed.event_type,
        "attempts": failed.last.n,
    });
    if let Some(code) = failed.last.status_code {
        data["lastStatusCode"] = json!(code);
    }
    if let Some(error) = &failed.last.error {
        data["lastError"] = json!(error);
    }
    let id = failed_event_id(failed.delivery_id, failed.last.n);
    spawn_publish(shared, failed.tenant, id, DELIVERY_FAILED, data);
}

/// Publishes `herald.endpoint.token_failed`.
pub fn token_failed(shared: &Arc<Shared>, tenant: &str, endpoint_id: &str, error: &str) {
    let data = json!({"endpointId": endpoint_id, "error": error});
    let id = token_failed_event_id(endpoint_id, time_fmt::now_millis());
    spawn_publish(shared, tenant, id, TOKEN_FAILED, data);
}

fn spawn_publish(shared: &Arc<Shared>, tenant: &str, id: String, event_type: &'static str, data: Value) {
    let request = PublishRequest {
        tenant: tenant.to_owned(),
        id,
        r#type: event_type.to_owned(),
        data: data.to_string().into_bytes(),
        ..Default::default()
    };
    let shared = shared.clone();
    shared.rt.clone().spawn(async move {
        let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
        let publish = || shared.registry.publish(request.clone());
        let on_failure = |e: &_, _| tracing::warn!(event_type, error = %e, "operational event not published yet");
        if let Err(e) = retry(backoff, TRIES, publish, on_failure).await {
            tracing::error!(event_type, error = %e, "operational event given up");
        }
    });
}
