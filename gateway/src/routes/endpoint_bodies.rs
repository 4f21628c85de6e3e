//! The JSON bodies of `/v1/endpoints`: what a caller sends (create,
//! patch, test, recover) and what it is answered, and how each maps to and
//! from the registry's messages. Answers carry `auth` without its secrets.

use std::collections::{BTreeMap, HashMap};

use herald_proto::v1;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

pub use super::endpoint_auth::{AuthInput, AuthView};
use super::retry_policy::RetryPolicy;
use super::{json_bytes, json_value, rfc3339};
use crate::error::GatewayError;

// ------------------------------------------------------------------ enums

/// Body format of deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Json,
    Cloudevents,
    CloudeventsBinary,
    Envelope,
    Template,
}

impl Format {
    fn to_wire(self) -> v1::EndpointFormat {
        match self {
            Format::Json => v1::EndpointFormat::Json,
            Format::Cloudevents => v1::EndpointFormat::Cloudevents,
            Format::CloudeventsBinary => v1::EndpointFormat::CloudeventsBinary,
            Format::Envelope => v1::EndpointFormat::Envelope,
            Format::Template => v1::EndpointFormat::Template,
        }
    }

    fn from_wire(raw: i32) -> Format {
        match v1::EndpointFormat::try_from(raw).unwrap_or(v1::EndpointFormat::Unspecified) {
            v1::EndpointFormat::Unspecified | v1::EndpointFormat::Json => Format::Json,
            v1::EndpointFormat::Cloudevents => Format::Cloudevents,
            v1::EndpointFormat::CloudeventsBinary => Format::CloudeventsBinary,
            v1::EndpointFormat::Envelope => Format::Envelope,
            v1::EndpointFormat::Template => Format::Template,
        }
    }
}

/// `fifo` delivers strictly one at a time, in publish order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    None,
    Fifo,
}

impl Ordering {
    fn to_wire(self) -> v1::EndpointOrdering {
        match self {
            Ordering::None => v1::EndpointOrdering::None,
            Ordering::Fifo => v1::EndpointOrdering::Fifo,
        }
    }

    fn from_wire(raw: i32) -> Ordering {
        match v1::EndpointOrdering::try_from(raw).unwrap_or(v1::EndpointOrdering::Unspecified) {
            v1::EndpointOrdering::Unspecified | v1::EndpointOrdering::None => Ordering::None,
            v1::EndpointOrdering::Fifo => Ordering::Fifo,
        }
    }
}

/// `disabled` is Herald's doing (see `disabledReason`); `deactivated` the integrator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Active,
    Deactivated,
    Disabled,
}

impl EndpointStatus {
    fn from_wire(raw: i32) -> EndpointStatus {
        match v1::EndpointStatus::try_from(raw).unwrap_or(v1::EndpointStatus::Unspecified) {
            v1::EndpointStatus::Unspecified | v1::EndpointStatus::Active => EndpointStatus::Active,
            v1::EndpointStatus::Deactivated => EndpointStatus::Deactivated,
            v1::EndpointStatus::Disabled => EndpointStatus::Disabled,
        }
    }
}

// ------------------------------------------------------------------ bodies

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointInput {
    pub url: String,
    pub description: Option<String>,
    pub auth: Option<AuthInput>,
    pub format: Option<Format>,
    /// For `format: template`: a JSON template whose string leaves `"$.id"`,
    /// `"$.type"`, `"$.time"`, `"$.resource"`, `"$.data"`, `"$.data.some.path"` are replaced.
    #[schema(value_type = Option<Object>)]
    pub template: Option<serde_json::Value>,
    pub headers: Option<HashMap<String, String>>,
    pub rate_limit_per_second: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub ordering: Option<Ordering>,
    pub metadata: Option<HashMap<String, String>>,
    /// For `format: envelope`: most events per POST.
    pub max_batch_size: Option<u32>,
    /// CloudEvents abuse-protection handshake before the first delivery.
    pub handshake: Option<bool>,
    pub retry: Option<RetryPolicy>,
}

impl EndpointInput {
    pub(super) fn into_spec(self) -> v1::EndpointSpec {
        let EndpointInput {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = self;
        v1::EndpointSpec {
            url,
            description: description.unwrap_or_default(),
            auth: auth.and_then(AuthInput::into_wire),
            format: format.map_or(v1::EndpointFormat::Unspecified, Format::to_wire) as i32,
            template: json_bytes(template.as_ref()),
            headers: headers.unwrap_or_default(),
            rate_limit_per_second,
            max_in_flight,
            ordering: ordering.map_or(v1::EndpointOrdering::Unspecified, Ordering::to_wire) as i32,
            metadata: metadata.unwrap_or_default(),
            max_batch_size,
            handshake: handshake.unwrap_or(false),
            retry: retry.map(RetryPolicy::into_wire),
        }
    }
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in a PATCH body.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Fields to change; absent fields are kept, `null` resets a field to its default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AuthInput>)]
    pub auth: Option<Option<AuthInput>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Format>)]
    pub format: Option<Option<Format>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub template: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub headers: Option<Option<HashMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Ordering>)]
    pub ordering: Option<Option<Ordering>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub metadata: Option<Option<HashMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_batch_size: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub handshake: Option<Option<bool>>,
    /// `null` removes the endpoint's policy (the installation's schedule applies again).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RetryPolicy>)]
    pub retry: Option<Option<RetryPolicy>>,
}

impl EndpointPatch {
    /// The new values and the `EndpointSpec` field names they replace.
    pub(super) fn into_update(self) -> Result<(v1::EndpointSpec, Vec<String>), GatewayError> {
        let EndpointPatch {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = self;
        let mut fields = Vec::new();
        let mut mark = |name: &str, present: bool| {
            if present {
                fields.push(name.to_owned());
            }
        };
        mark("url", url.is_some());
        mark("description", description.is_some());
        mark("auth", auth.is_some());
        mark("format", format.is_some());
        mark("template", template.is_some());
        mark("headers", headers.is_some());
        mark("rate_limit_per_second", rate_limit_per_second.is_some());
        mark("max_in_flight", max_in_flight.is_some());
        mark("ordering", ordering.is_some());
        mark("metadata", metadata.is_some());
        mark("max_batch_size", max_batch_size.is_some());
        mark("handshake", handshake.is_some());
        mark("retry", retry.is_some());
        let url = match url {
            Some(url) => url.ok_or_else(|| GatewayError::invalid("url", "cannot be null"))?,
            None => String::new(),
        };
        // Present values map as on create; absent and null ones give the
        // default, which the registry applies only to the fields named.
        let spec = EndpointInput {
            url,
            description: description.flatten(),
            auth: auth.flatten(),
            format: format.flatten(),
            template: template.flatten(),
            headers: headers.flatten(),
            rate_limit_per_second: rate_limit_per_second.flatten(),
            max_in_flight: max_in_flight.flatten(),
            ordering: ordering.flatten(),
            metadata: metadata.flatten(),
            max_batch_size: max_batch_size.flatten(),
            handshake: handshake.flatten(),
            retry: retry.flatten(),
        }
        .into_spec();
        Ok((spec, fields))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `ep_…`; an endpoint a compatibility profile made keeps its seed's id
    /// (a UUID for seed 002, `s003.{notificationType}.{partner}`,
    /// `s004.{company}`).
    pub id: String,
    pub url: String,
    pub description: String,
    pub auth: AuthView,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub template: Option<serde_json::Value>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    pub ordering: Ordering,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    pub handshake: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    pub status: EndpointStatus,
    /// Why Herald disabled the endpoint, e.g. `gone` or `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<v1::Endpoint> for Endpoint {
    fn from(e: v1::Endpoint) -> Self {
        let v1::Endpoint { id, tenant: _, spec, status, disabled_reason, created_at, updated_at } = e;
        let v1::EndpointSpec {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = spec.unwrap_or_default();
        Endpoint {
            id,
            url,
            description,
            auth: AuthView::from_wire(auth),
            format: Format::from_wire(format),
            template: json_value(&template),
            headers: headers.into_iter().collect(),
            rate_limit_per_second,
            max_in_flight,
            ordering: Ordering::from_wire(ordering),
            metadata: metadata.into_iter().collect(),
            max_batch_size,
            handshake,
            retry: retry.map(RetryPolicy::from_wire),
            status: EndpointStatus::from_wire(status),
            disabled_reason: Some(disabled_reason).filter(|r| !r.is_empty()),
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
        }
    }
}

/// The `201` answer: the endpoint and its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify `webhook-signature` with it.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Secret {
    /// `whsec_…`.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestInput {
    pub event_type: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// The outcome of the one attempt a test send makes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    pub delivered: bool,
    /// `null` when no HTTP answer was received.
    pub status_code: Option<u32>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverInput {
    /// RFC 3339: every `failed` delivery since then is sent again.
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recovered {
    /// Deliveries scheduled again.
    pub recovered: u32,
}

/// The live state of an endpoint's delivery pipeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    pub endpoint_id: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub last_success_at: Option<String>,
    pub failing_since: Option<String>,
    /// The last error from the OAuth token endpoint, e.g. `invalid_client`.
    pub token_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use herald_proto::v1::endpoint_auth::Kind;

    use super::*;
    use crate::json::parse;

    #[test]
    fn create_bodies_map_to_the_spec() {
        let input: EndpointInput = parse(
            br#"{"url":"https://example.com/hook","format":"cloudevents-binary","ordering":"fifo",
                "auth":{"type":"oauth2_client_credentials","tokenUrl":"https://a/token","clientId":"c","clientSecret":"s","clientAuth":"post"},
                "headers":{"x-a":"1"},"rateLimitPerSecond":5,"template":{"k":"$.id"}}"#,
        )
        .unwrap();
        let spec = input.into_spec();
        assert_eq!(spec.format, v1::EndpointFormat::CloudeventsBinary as i32);
        assert_eq!(spec.ordering, v1::EndpointOrdering::Fifo as i32);
        assert_eq!(spec.rate_limit_per_second, Some(5));
        assert_eq!(spec.template, br#"{"k":"$.id"}"#);
        match spec.auth.unwrap().kind.unwrap() {
            Kind::Oauth2ClientCredentials(o) => {
                assert_eq!(
                    (o.token_url.as_str(), o.client_secret.as_str(), o.client_auth.as_str()),
                    ("https://a/token", "s", "post")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_enum_values_and_fields_name_the_field() {
        let err = parse::<EndpointInput>(br#"{"url":"u","format":"xml"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "format");
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"basic","username":"a"}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.password", "{:?}", err.problem());
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"bearer","token":"t","extra":1}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.extra", "{:?}", err.problem());
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"kerberos"}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.type", "{:?}", err.problem());
    }

    #[test]
    fn patches_name_only_present_fields() {
        let patch: EndpointPatch =
            parse(br#"{"description":"d","rateLimitPerSecond":null,"auth":{"type":"none"}}"#).unwrap();
        let (spec, fields) = patch.into_update().unwrap();
        assert_eq!(fields, vec!["description", "auth", "rate_limit_per_second"]);
        assert_eq!(spec.description, "d");
        assert_eq!(spec.rate_limit_per_second, None);
        assert!(spec.auth.is_none());
        let patch: EndpointPatch = parse(br#"{"url":null}"#).unwrap();
        assert_eq!(patch.into_update().unwrap_err().problem().errors[0].field, "url");
    }

    #[test]
    fn answers_never_show_auth_secrets() {
        let wire = v1::Endpoint {
            id: "ep_1".into(),
            spec: Some(v1::EndpointSpec {
                url: "https://x".into(),
                auth: Some(v1::EndpointAuth {
                    kind: Some(Kind::Basic(v1::endpoint_auth::Basic { username: "u".into(), password: "p".into() })),
                }),
                ..Default::default()
            }),
            status: v1::EndpointStatus::Disabled as i32,
            disabled_reason: "gone".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(Endpoint::from(wire)).unwrap();
        assert_eq!(json["auth"], serde_json::json!({"type": "basic", "username": "u"}));
        assert_eq!(json["status"], "disabled");
        assert_eq!(json["disabledReason"], "gone");
        assert_eq!(json["format"], "json");
        assert_eq!(json["ordering"], "none");
        assert!(json.get("rateLimitPerSecond").is_none());
    }
}
