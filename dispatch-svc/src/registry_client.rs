//! The dispatcher's calls to `herald.v1.Registry`.
//!
//! Only the registry writes endpoint records, so disabling an endpoint (on
//! `410 Gone`, or after failing for too long) is a `DisableEndpoint` call,
//! and operational events are published through it like any event;
//! the registry then announces the change and every dispatcher's actor for
//! the endpoint stops delivering. The channel connects lazily and
//! reconnects by itself, so a registry that restarts needs nothing here.

use std::time::Duration;

use herald_proto::v1::registry_client::RegistryClient as Rpc;
use herald_proto::v1::{DisableEndpointRequest, PublishRequest};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::error::DispatchError;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct RegistryClient {
    channel: Channel,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl RegistryClient {
    pub fn new(url: &str, grpc_token: Option<&str>) -> Result<Self, DispatchError> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|_| DispatchError::Registry(format!("HERALD_REGISTRY_URL {url:?} is not a valid url")))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true);
        let authorization = match grpc_token {
            Some(token) => Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| DispatchError::Registry("HERALD_GRPC_TOKEN is not a valid header value".into()))?,
            ),
            None => None,
        };
        Ok(RegistryClient { channel: endpoint.connect_lazy(), authorization })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
    }

    /// Disables an endpoint with `reason` as its `disabledReason`.
    pub async fn disable_endpoint(&self, tenant: &str, id: &str, reason: &str) -> Result<(), DispatchError> {
        let message =
            DisableEndpointRequest { tenant: tenant.to_owned(), id: id.to_owned(), reason: reason.to_owned() };
        match Rpc::new(self.channel.clone()).disable_endpoint(self.request(message)).await {
            // Deleted meanwhile: nothing is left to disable.
            Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(status) => Err(DispatchError::Registry(format!("disable endpoint: {}", status.message()))),
            Ok(_) => Ok(()),
        }
    }

    /// Publishes one event (an operational event, see `crate::operational`).
    pub async fn publish(&self, message: PublishRequest) -> Result<(), DispatchError> {
        match Rpc::new(self.channel.clone()).publish(self.request(message)).await {
            Ok(_) => Ok(()),
            Err(status) => Err(DispatchError::Registry(format!("publish: {}", status.message()))),
        }
    }

    /// Readiness: the registry answers its health check.
    pub async fn check(&self) -> Result<(), String> {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            HealthClient::new(self.channel.clone()).check(HealthCheckRequest { service: String::new() }),
        )
        .await;
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!("registry: {}", status.message())),
            Err(_) => Err("registry: health check timed out".to_owned()),
        }
    }
}
