//! The records Herald keeps in Redis, as JSON strings.
//!
//! The registry writes tenants, keys, event types, endpoints and
//! subscriptions; the dispatcher reads endpoints (to deliver) and writes
//! delivery records. Field names are camelCase so a raw `GET` of a key reads
//! like the REST API. Secrets are stored only as [`Sealed`] ciphertext.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Milliseconds since the Unix epoch; every stored time uses it.
pub type Millis = i64;

/// Ciphertext produced by [`crate::crypto::SecretBox::seal`]; never plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Stored under the SHA-256 of the key; the plaintext `hk_…` is never kept.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub key_hash: String,
    pub created_at: Millis,
    /// Set on portal sessions only: the key stops working then (and its
    /// Redis keys expire with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
    /// A read-only portal session: every call that changes something is refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeRecord {
    pub name: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    #[default]
    Json,
    Cloudevents,
    CloudeventsBinary,
    Envelope,
    Template,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    #[default]
    None,
    Fifo,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    #[default]
    Active,
    Deactivated,
    Disabled,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// RFC 6749 `client_secret_basic`: id and secret in the Authorization header.
    #[default]
    Basic,
    /// RFC 6749 `client_secret_post`: id and secret in the form body.
    Post,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredAuth {
    #[default]
    None,
    Basic {
        username: String,
        password: Sealed,
    },
    Bearer {
        token: Sealed,
    },
    #[serde(rename_all = "camelCase")]
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: Sealed,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<String>,
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

/// A signing secret; after a rotation the previous one stays valid (and is
/// used to sign as well) until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SigningSecret {
    pub secret: Sealed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Millis>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointRecord {
    pub id: String,
    pub tenant: String,
    pub url: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub auth: StoredAuth,
    #[serde(default)]
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<Value>,
    /// Values sealed (see [`crate::endpoint_secrets`]); records written
    /// before that hold plaintext here until their next write.
    #[serde(default)]
    pub headers: BTreeMap<String, Sealed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    #[serde(default)]
    pub ordering: Ordering,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    #[serde(default)]
    pub handshake: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default)]
    pub status: EndpointStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Current secret first; a rotated-out one follows until it expires.
    pub signing_secrets: Vec<SigningSecret>,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Made anew each time an endpoint is created, so a job, a retry or a
    /// health record of an endpoint deleted and created again under the same
    /// id (profiles name endpoints after their tenant) is told apart from
    /// the new one's. Empty in records written before it existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub generation: String,
    /// When the endpoint was last activated after a deactivation or a
    /// disable; its delivery health starts again from then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<Millis>,
}

/// How one endpoint's failed deliveries are retried, in place of the
/// installation's schedule. Durations are kept as given (`"5s"`), validated
/// by the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

/// Dotted event paths (`resource.orgShortName`) to the conditions they must
/// meet (a plain value, or an object of operators), or `$or`/`$and` of such
/// maps; see the registry's filter module.
pub type FilterMap = Map<String, Value>;

pub fn filter_to_bytes(filter: &FilterMap) -> Vec<u8> {
    serde_json::to_vec(filter).unwrap_or_default()
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRecord {
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterMap>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created_at: Millis,
}

/// The event as stored once per publish under [`crate::keys::Keys::event`].
/// Its JSON serialisation is exactly the body of the `json` format, so the
/// common case sends the stored bytes untouched.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Value>,
    pub data: Value,
}

/// One entry of a partition stream: a reference to a stored event and the
/// endpoint it must reach. Field names are short because there is one entry
/// per delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub delivery_id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// W3C `traceparent` of the publish, so the trace crosses the stream.
    pub traceparent: Option<String>,
    /// [`EndpointRecord::generation`] of the endpoint at publish time; a job
    /// of another generation is never sent. `None` for jobs written before
    /// it existed.
    pub generation: Option<String>,
}

impl Job {
    pub const DELIVERY: &'static str = "d";
    pub const TENANT: &'static str = "t";
    pub const ENDPOINT: &'static str = "e";
    pub const EVENT: &'static str = "v";
    pub const ATTEMPT: &'static str = "n";
    pub const TRACEPARENT: &'static str = "tp";
    pub const GENERATION: &'static str = "g";

    /// Stream entry fields, in the order XADD takes them.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = Vec::with_capacity(self.field_count());
        self.visit_fields(|name, value| fields.push((name, value.to_owned())));
        fields
    }

    /// How many fields [`Job::visit_fields`] visits.
    pub fn field_count(&self) -> usize {
        5 + usize::from(self.traceparent.is_some()) + usize::from(self.generation.is_some())
    }

    /// Visits the stream entry fields, in the order XADD takes them,
    /// without copying them: what the publish path writes for every job.
    pub fn visit_fields(&self, mut visit: impl FnMut(&'static str, &str)) {
        visit(Self::DELIVERY, &self.delivery_id);
        visit(Self::TENANT, &self.tenant);
        visit(Self::ENDPOINT, &self.endpoint_id);
        visit(Self::EVENT, &self.event_id);
        visit(Self::ATTEMPT, &self.attempt.to_string());
        if let Some(tp) = &self.traceparent {
            visit(Self::TRACEPARENT, tp);
        }
        if let Some(generation) = &self.generation {
            visit(Self::GENERATION, generation);
        }
    }

    /// Reads a stream entry back; `None` for an entry that is not a job.
    /// Owned values move into the job rather than being copied.
    pub fn from_fields<K: AsRef<str>, V: AsRef<str> + Into<String>>(
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Option<Job> {
        let (mut d, mut t, mut e, mut v, mut n, mut tp, mut g) = (None, None, None, None, None, None, None);
        for (k, val) in fields {
            match k.as_ref() {
                Self::DELIVERY => d = Some(val.into()),
                Self::TENANT => t = Some(val.into()),
                Self::ENDPOINT => e = Some(val.into()),
                Self::EVENT => v = Some(val.into()),
                Self::ATTEMPT => n = val.as_ref().parse().ok(),
                Self::TRACEPARENT => tp = Some(val.into()),
                Self::GENERATION => g = Some(val.into()).filter(|g: &String| !g.is_empty()),
                _ => {}
            }
        }
        Some(Job {
            delivery_id: d?,
            tenant: t?,
            endpoint_id: e?,
            event_id: v?,
            attempt: n.unwrap_or(1),
            traceparent: tp,
            generation: g,
        })
    }
}

/// Announced on the changes stream whenever an endpoint is written, so
/// dispatchers reload or stop that endpoint's actor.
pub const CHANGE_ENDPOINT: &str = "endpoint";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_through_stream_fields() {
        let job = Job {
            delivery_id: "dlv_1".into(),
            tenant: "acme".into(),
            endpoint_id: "ep_1".into(),
            event_id: "evt_1".into(),
            attempt: 3,
            traceparent: Some("00-abc-def-01".into()),
            generation: Some("gen_1".into()),
        };
        let fields = job.fields();
        let back = Job::from_fields(fields.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(back, Some(job));
    }

    #[test]
    fn auth_serialises_with_type_tag() {
        let auth = StoredAuth::Oauth2ClientCredentials {
            token_url: "https://id.example.com/token".into(),
            client_id: "c".into(),
            client_secret: Sealed("k1:xyz".into()),
            scope: None,
            audience: None,
            client_auth: ClientAuth::Post,
        };
        let json = serde_json::to_value(&auth).unwrap();
        assert_eq!(json["type"], "oauth2_client_credentials");
        assert_eq!(json["clientAuth"], "post");
        assert_eq!(json["tokenUrl"], "https://id.example.com/token");
        assert_eq!(serde_json::from_value::<StoredAuth>(json).unwrap(), auth);
    }

    #[test]
    fn formats_use_contract_names() {
        let names: Vec<String> =
            [Format::Json, Format::Cloudevents, Format::CloudeventsBinary, Format::Envelope, Format::Template]
                .iter()
                .map(|f| serde_json::to_value(f).unwrap().as_str().unwrap().to_owned())
                .collect();
        assert_eq!(names, ["json", "cloudevents", "cloudevents-binary", "envelope", "template"]);
    }
}
