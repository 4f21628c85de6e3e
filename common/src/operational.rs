//! Operational webhooks: the system event types Herald publishes about a
//! tenant's own endpoints and deliveries, which the tenant subscribes to
//! like any other type. The registry keeps them in every catalogue and
//! publishes `herald.endpoint.disabled`; the dispatcher publishes the other
//! two. Their ids are made from what they report, so a publish retried
//! after a failure is the same event (the idempotency window answers it).

/// An endpoint was disabled automatically: `{"endpointId", "reason"}`.
pub const ENDPOINT_DISABLED: &str = "herald.endpoint.disabled";
/// A delivery's last attempt failed: `{"deliveryId", "endpointId",
/// "eventId", "eventType", "attempts", "lastStatusCode"?, "lastError"?}`.
pub const DELIVERY_FAILED: &str = "herald.delivery.failed";
/// An endpoint's OAuth token endpoint started failing (once per change of
/// its error): `{"endpointId", "error"}`.
pub const TOKEN_FAILED: &str = "herald.endpoint.token_failed";

/// Whether an event type is one of Herald's own. A delivery of one that
/// fails publishes nothing more, so operational events never feed back.
pub fn is_operational(event_type: &str) -> bool {
    event_type.starts_with("herald.")
}

/// The id of the `herald.endpoint.disabled` event of one disable: the
/// endpoint and the activation it ends.
pub fn disabled_event_id(endpoint_id: &str, active_since_ms: i64) -> String {
    format!("herald.disabled.{endpoint_id}.{active_since_ms}")
}

/// The id of the `herald.delivery.failed` event of a delivery's last attempt.
pub fn failed_event_id(delivery_id: &str, attempt: u32) -> String {
    format!("herald.failed.{delivery_id}.{attempt}")
}

/// The id of the `herald.endpoint.token_failed` event of one change.
pub fn token_failed_event_id(endpoint_id: &str, at_ms: i64) -> String {
    format!("herald.token.{endpoint_id}.{at_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_valid_event_ids() {
        for id in [
            disabled_event_id("ep_01h0000000000000000000000", 1_700_000_000_000),
            failed_event_id("dlv_01h0000000000000000000000", 3),
            token_failed_event_id("s003.orders.acme", 1_700_000_000_000),
        ] {
            assert!(crate::ids::is_valid_external_id(&id, 128), "{id}");
        }
        assert!(is_operational(DELIVERY_FAILED) && !is_operational("order.created"));
    }
}
