//! The gRPC channels to the registry and the dispatcher.
//!
//! Channels connect lazily (the gateway starts, and answers `503`, while an
//! upstream is down) with a short connect timeout, so a stopped service is
//! noticed in about a second rather than hanging the caller. Every call
//! carries a deadline (`grpc-timeout`, which the channel also enforces), the
//! configured `authorization: Bearer <HERALD_GRPC_TOKEN>`, and the caller's
//! W3C `traceparent` so one trace spans gateway, registry and dispatcher.

use std::time::Duration;

use herald_common::config::HeraldConfig;
use herald_proto::v1::dispatch_client::DispatchClient;
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{ListEventTypesRequest, PageRequest};
use tonic::GrpcMethod;
use tonic::codegen::InterceptedService;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::error::GatewayError;

pub type Registry = RegistryClient<InterceptedService<Channel, CallContext>>;
pub type Dispatch = DispatchClient<InterceptedService<Channel, CallContext>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadline of an ordinary call: every registry and dispatch read or write is a few Redis round trips.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// The `traceparent` the caller sent, for calls made while serving its request.
    pub static INCOMING_TRACEPARENT: Option<String>;
}

/// Adds deadline, credentials and trace context to every upstream call.
#[derive(Clone)]
pub struct CallContext {
    authorization: Option<MetadataValue<Ascii>>,
    /// Deadline of calls that deliver to an endpoint while the caller waits.
    send_timeout: Duration,
}

impl tonic::service::Interceptor for CallContext {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        // A deadline the caller chose (health checks choose a short one) stands.
        if !request.metadata().contains_key("grpc-timeout") {
            let sends = request.extensions().get::<GrpcMethod>().is_some_and(|m| m.method() == "TestEndpoint");
            request.set_timeout(if sends { self.send_timeout } else { CALL_TIMEOUT });
        }
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        let incoming = INCOMING_TRACEPARENT.try_with(Clone::clone).ok().flatten();
        let traceparent = herald_common::telemetry::onward_traceparent(incoming);
        if let Some(value) = traceparent.and_then(|tp| MetadataValue::try_from(tp).ok()) {
            request.metadata_mut().insert("traceparent", value);
        }
        Ok(request)
    }
}

/// Both upstream services. Clients are cheap clones of one shared channel each.
#[derive(Clone)]
pub struct Upstream {
    registry_channel: Channel,
    dispatch_channel: Channel,
    context: CallContext,
}

fn channel(name: &'static str, url: &str) -> Result<Channel, GatewayError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|source| GatewayError::UpstreamUrl { name, url: url.to_owned(), source })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    Ok(endpoint.connect_lazy())
}

impl Upstream {
    pub fn new(config: &HeraldConfig) -> Result<Self, GatewayError> {
        let authorization = match &config.grpc_token {
            Some(token) => Some(
                MetadataValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| GatewayError::GrpcToken("HERALD_GRPC_TOKEN"))?,
            ),
            None => None,
        };
        // A test send may wait for an OAuth token and then for the endpoint, each bounded by the delivery timeout.
        let send_timeout = config.delivery_timeout.saturating_mul(2).saturating_add(Duration::from_secs(3));
        Ok(Upstream {
            registry_channel: channel("HERALD_REGISTRY_URL", &config.registry_url)?,
            dispatch_channel: channel("HERALD_DISPATCH_URL", &config.dispatch_url)?,
            context: CallContext { authorization, send_timeout },
        })
    }

    pub fn registry(&self) -> Registry {
        RegistryClient::with_interceptor(self.registry_channel.clone(), self.context.clone())
    }

    pub fn dispatch(&self) -> Dispatch {
        DispatchClient::with_interceptor(self.dispatch_channel.clone(), self.context.clone())
    }

    /// Readiness: both services answer `grpc.health.v1` with SERVING, and
    /// the registry can read its store. The gRPC health status says the
    /// process is up; only a real read shows that Redis behind it answers.
    pub async fn check(&self) -> Result<(), String> {
        let registry = async {
            serving(&self.registry_channel, herald_proto::v1::registry_server::SERVICE_NAME).await?;
            self.registry_reads().await
        };
        let (registry, dispatch) =
            tokio::join!(registry, serving(&self.dispatch_channel, herald_proto::v1::dispatch_server::SERVICE_NAME));
        match (registry, dispatch) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(e), Ok(())) => Err(format!("registry: {e}")),
            (Ok(()), Err(e)) => Err(format!("dispatch: {e}")),
            (Err(r), Err(d)) => Err(format!("registry: {r}; dispatch: {d}")),
        }
    }
}

impl Upstream {
    /// One small registry read: the first event type.
    async fn registry_reads(&self) -> Result<(), String> {
        let mut request =
            tonic::Request::new(ListEventTypesRequest { page: Some(PageRequest { limit: 1, cursor: String::new() }) });
        request.set_timeout(HEALTH_TIMEOUT);
        match tokio::time::timeout(HEALTH_TIMEOUT, self.registry().list_event_types(request)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
            Err(_) => Err("registry read timed out".to_owned()),
        }
    }
}

async fn serving(channel: &Channel, service: &str) -> Result<(), String> {
    let mut client = HealthClient::new(channel.clone());
    let ask = |service: &str| {
        let mut request = tonic::Request::new(HealthCheckRequest { service: service.to_owned() });
        request.set_timeout(HEALTH_TIMEOUT);
        request
    };
    let answer = match tokio::time::timeout(HEALTH_TIMEOUT, client.check(ask(service))).await {
        // A server that does not report per service is judged by its overall status.
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
            tokio::time::timeout(HEALTH_TIMEOUT, client.check(ask(""))).await
        }
        other => other,
    };
    match answer {
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(_)) => Err("not serving".to_owned()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => Err("health check timed out".to_owned()),
    }
}
