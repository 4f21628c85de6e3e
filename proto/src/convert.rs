//! Conversions between wire messages and the stored model.
//!
//! Stored records become wire messages with every secret left empty: the
//! only secret that ever crosses the wire is a signing secret, in the
//! dedicated `EndpointSecret` and `CreateEndpointResponse` messages.

use std::collections::BTreeMap;

use herald_common::model::{
    ClientAuth, EndpointRecord, EndpointStatus, EventTypeRecord, Format, Millis, Ordering, RetryPolicy, StoredAuth,
    SubscriptionRecord, TenantRecord,
};
use prost_types::Timestamp;

use crate::v1;

pub fn timestamp(ms: Millis) -> Option<Timestamp> {
    Some(Timestamp { seconds: ms.div_euclid(1000), nanos: (ms.rem_euclid(1000) * 1_000_000) as i32 })
}

pub fn millis(ts: &Timestamp) -> Millis {
    ts.seconds.saturating_mul(1000).saturating_add(i64::from(ts.nanos) / 1_000_000)
}

pub fn format_to_wire(format: Format) -> v1::EndpointFormat {
    match format {
        Format::Json => v1::EndpointFormat::Json,
        Format::Cloudevents => v1::EndpointFormat::Cloudevents,
        Format::CloudeventsBinary => v1::EndpointFormat::CloudeventsBinary,
        Format::Envelope => v1::EndpointFormat::Envelope,
        Format::Template => v1::EndpointFormat::Template,
    }
}

/// Unspecified means the default, `json`.
pub fn format_from_wire(format: v1::EndpointFormat) -> Format {
    match format {
        v1::EndpointFormat::Unspecified | v1::EndpointFormat::Json => Format::Json,
        v1::EndpointFormat::Cloudevents => Format::Cloudevents,
        v1::EndpointFormat::CloudeventsBinary => Format::CloudeventsBinary,
        v1::EndpointFormat::Envelope => Format::Envelope,
        v1::EndpointFormat::Template => Format::Template,
    }
}

pub fn ordering_to_wire(ordering: Ordering) -> v1::EndpointOrdering {
    match ordering {
        Ordering::None => v1::EndpointOrdering::None,
        Ordering::Fifo => v1::EndpointOrdering::Fifo,
    }
}

pub fn ordering_from_wire(ordering: v1::EndpointOrdering) -> Ordering {
    match ordering {
        v1::EndpointOrdering::Unspecified | v1::EndpointOrdering::None => Ordering::None,
        v1::EndpointOrdering::Fifo => Ordering::Fifo,
    }
}

pub fn status_to_wire(status: EndpointStatus) -> v1::EndpointStatus {
    match status {
        EndpointStatus::Active => v1::EndpointStatus::Active,
        EndpointStatus::Deactivated => v1::EndpointStatus::Deactivated,
        EndpointStatus::Disabled => v1::EndpointStatus::Disabled,
    }
}

pub fn client_auth_name(client_auth: ClientAuth) -> &'static str {
    match client_auth {
        ClientAuth::Basic => "basic",
        ClientAuth::Post => "post",
    }
}

/// The auth configuration without its secrets.
pub fn redacted_auth(auth: &StoredAuth) -> Option<v1::EndpointAuth> {
    use v1::endpoint_auth::{Basic, Bearer, Kind, OAuth2ClientCredentials};
    let kind = match auth {
        StoredAuth::None => return None,
        StoredAuth::Basic { username, password: _ } => {
            Kind::Basic(Basic { username: username.clone(), password: String::new() })
        }
        StoredAuth::Bearer { token: _ } => Kind::Bearer(Bearer { token: String::new() }),
        StoredAuth::Oauth2ClientCredentials {
            token_url,
            client_id,
            client_secret: _,
            scope,
            audience,
            client_auth,
        } => Kind::Oauth2ClientCredentials(OAuth2ClientCredentials {
            token_url: token_url.clone(),
            client_id: client_id.clone(),
            client_secret: String::new(),
            scope: scope.clone().unwrap_or_default(),
            audience: audience.clone().unwrap_or_default(),
            client_auth: client_auth_name(*client_auth).to_owned(),
        }),
    };
    Some(v1::EndpointAuth { kind: Some(kind) })
}

pub fn retry_to_wire(retry: &RetryPolicy) -> v1::RetryPolicy {
    let RetryPolicy { schedule, max_attempts } = retry;
    v1::RetryPolicy { schedule: schedule.clone(), max_attempts: *max_attempts }
}

impl From<&TenantRecord> for v1::Tenant {
    fn from(t: &TenantRecord) -> Self {
        let TenantRecord { id, name, created_at, metadata } = t;
        v1::Tenant {
            id: id.clone(),
            name: name.clone(),
            created_at: timestamp(*created_at),
            metadata: metadata.clone().into_iter().collect(),
        }
    }
}

impl From<&EventTypeRecord> for v1::EventType {
    fn from(t: &EventTypeRecord) -> Self {
        let EventTypeRecord { name, description, schema, code, created_at, updated_at } = t;
        v1::EventType {
            name: name.clone(),
            description: description.clone(),
            schema: schema.as_ref().map(|s| s.to_string().into_bytes()).unwrap_or_default(),
            code: *code,
            created_at: timestamp(*created_at),
            updated_at: timestamp(*updated_at),
        }
    }
}

/// The wire form of an endpoint. Its header values are sealed in the
/// record, so the caller opens them (`open_headers`) and passes them in.
pub fn endpoint_to_wire(e: &EndpointRecord, open_headers: BTreeMap<String, String>) -> v1::Endpoint {
    let EndpointRecord {
        id,
        tenant,
        url,
        description,
        auth,
        format,
        template,
        headers: _,
        rate_limit_per_second,
        max_in_flight,
        ordering,
        metadata,
        max_batch_size,
        handshake,
        retry,
        status,
        disabled_reason,
        signing_secrets: _,
        created_at,
        updated_at,
        // Delivery bookkeeping of the dispatcher, not part of the contract.
        generation: _,
        activated_at: _,
    } = e;
    v1::Endpoint {
        id: id.clone(),
        tenant: tenant.clone(),
        spec: Some(v1::EndpointSpec {
            url: url.clone(),
            description: description.clone(),
            auth: redacted_auth(auth),
            format: format_to_wire(*format) as i32,
            template: template.as_ref().map(|t| t.to_string().into_bytes()).unwrap_or_default(),
            headers: open_headers.into_iter().collect(),
            rate_limit_per_second: *rate_limit_per_second,
            max_in_flight: *max_in_flight,
            ordering: ordering_to_wire(*ordering) as i32,
            metadata: metadata.clone().into_iter().collect(),
            max_batch_size: *max_batch_size,
            handshake: *handshake,
            retry: retry.as_ref().map(retry_to_wire),
        }),
        status: status_to_wire(*status) as i32,
        disabled_reason: disabled_reason.clone().unwrap_or_default(),
        created_at: timestamp(*created_at),
        updated_at: timestamp(*updated_at),
    }
}

impl From<&SubscriptionRecord> for v1::Subscription {
    fn from(s: &SubscriptionRecord) -> Self {
        let SubscriptionRecord { id, tenant, endpoint_id, event_types, filter, metadata, created_at } = s;
        v1::Subscription {
            id: id.clone(),
            tenant: tenant.clone(),
            endpoint_id: endpoint_id.clone(),
            event_types: event_types.clone(),
            filter: filter.as_ref().map(herald_common::model::filter_to_bytes).unwrap_or_default(),
            metadata: metadata.clone().into_iter().collect(),
            created_at: timestamp(*created_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_common::model::Sealed;

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_607_368_712_076, -1] {
            assert_eq!(millis(&timestamp(ms).unwrap()), ms);
        }
    }

    #[test]
    fn auth_secrets_never_cross_the_wire() {
        let auth = StoredAuth::Basic { username: "u".into(), password: Sealed("k1:cipher".into()) };
        let wire = redacted_auth(&auth).unwrap();
        match wire.kind.unwrap() {
            v1::endpoint_auth::Kind::Basic(b) => {
                assert_eq!(b.username, "u");
                assert!(b.password.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
