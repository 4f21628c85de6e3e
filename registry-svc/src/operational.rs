//! `herald.endpoint.disabled`: published to the endpoint's own tenant when
//! a dispatcher has the registry disable it (`DisableEndpoint`: a `410
//! Gone`, or failing for longer than `HERALD_DISABLE_AFTER`). Its id names
//! the endpoint and the activation the disable ends, so a `DisableEndpoint`
//! retried by the dispatcher publishes nothing twice. Publishing it is best
//! effort: the disable stands whether or not the event could be stored.

use herald_common::model::EndpointRecord;
use herald_common::operational::{ENDPOINT_DISABLED, disabled_event_id};
use herald_proto::v1::PublishRequest;
use serde_json::json;

use crate::Registry;

impl Registry {
    pub async fn announce_disabled(&self, record: &EndpointRecord) {
        let active_since = record.activated_at.unwrap_or(record.created_at);
        let data = json!({
            "endpointId": record.id,
            "reason": record.disabled_reason.as_deref().unwrap_or("disabled"),
        });
        let request = PublishRequest {
            tenant: record.tenant.clone(),
            id: disabled_event_id(&record.id, active_since),
            r#type: ENDPOINT_DISABLED.to_owned(),
            data: data.to_string().into_bytes(),
            ..Default::default()
        };
        if let Err(e) = self.publish(request, None).await {
            tracing::warn!(endpoint = %record.id, error = %e, "could not publish herald.endpoint.disabled");
        }
    }
}
