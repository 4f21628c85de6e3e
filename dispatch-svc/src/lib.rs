//! Herald dispatcher: partition stream consumers, one actor per endpoint,
//! signed webhook delivery with retries, and the `herald.v1.Dispatch` API.
//!
//! [`run`] connects to Redis, starts the actor system ([`actor`]), the
//! partition lease manager with its readers and retry pumps ([`partition`],
//! [`retry`]) and the endpoint change follower ([`changes`]), and serves
//! `herald.v1.Dispatch` ([`service`]), `grpc.health.v1` and server reflection
//! (v1 and v1alpha) on one listener and `/healthz` `/readyz` `/metrics` on
//! another, until the shutdown token is cancelled; then it drains.
//!
//! Code map: [`partition`] owns partitions and reads them; [`endpoint`]
//! decides when an endpoint's next attempt may start; [`actor`] (the only
//! actix code) holds one actor per endpoint, a shell around its gate;
//! [`delivery`] runs an attempt and settles it; [`send`] renders, signs,
//! authenticates and sends one attempt; [`retry`] is when the next attempt
//! is due; [`records`] is the store layer, the only code that speaks Redis
//! (outcomes, lists, parking, the retry set, partition streams and leases,
//! stored events and endpoints, the changes stream);
//! [`operational`] publishes the operational events;
//! [`lifecycle`] tells which endpoint incarnation a job belongs to;
//! [`health`] the circuit breaker; [`observe`] the gauges that follow
//! partitions and breakers; [`registry_client`] the calls to the
//! registry; [`status`] maps errors to gRPC codes in one place.
//!
//! The invariant everything here serves: a stream entry is acknowledged only
//! in the same `MULTI` that stores its outcome ([`records::Records::settle`],
//! group-committed by `records::writer`).

use std::sync::Arc;

use herald_common::admin::{self, Serving};
use herald_common::config::HeraldConfig;
use herald_common::ids;
use herald_common::keys::Keys;
use herald_proto::server::GrpcAuth;
use herald_proto::v1::dispatch_server::{DispatchServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub mod actor;
pub mod changes;
pub mod delivery;
pub mod endpoint;
pub mod error;
pub mod event;
pub mod health;
pub mod lifecycle;
pub mod observe;
pub mod operational;
pub mod partition;
pub mod records;
pub mod registry_client;
pub mod retry;
pub mod send;
pub mod service;
pub mod status;

pub use error::DispatchError;

use crate::actor::{ActorSystem, Actors};
use crate::records::{Records, Retention};
use crate::registry_client::RegistryClient;
use crate::service::DispatchService;

/// Most actor threads. Each runs its actors' attempts (rendering, signing,
/// HTTP) as well as their books, so there is one per core.
const MAX_ACTOR_THREADS: usize = 64;

/// What every part of the dispatcher shares.
pub struct Shared {
    /// This dispatcher's unique id: its lease value and consumer name.
    pub id: String,
    pub config: HeraldConfig,
    pub keys: Keys,
    pub records: Records,
    /// The HTTP client for test sends (attempts use their arbiter's).
    pub client: reqwest::Client,
    pub registry: RegistryClient,
    /// The runtime Redis work runs on (the one `run` was called on).
    pub rt: tokio::runtime::Handle,
}

/// Runs the dispatcher until `shutdown` is cancelled, then stops reading,
/// lets running attempts finish (within the delivery timeout), releases its
/// partitions and returns.
pub async fn run(
    config: HeraldConfig,
    grpc: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), DispatchError> {
    observe::describe();
    admin::serve_alongside(admin, &shutdown, |serving| dispatch(config, grpc, serving)).await?;
    tracing::info!("herald-dispatch stopped");
    Ok(())
}

/// Connects to Redis (waiting for it), then reads partitions and serves gRPC
/// until `stop`, then drains.
async fn dispatch(
    config: HeraldConfig,
    grpc: TcpListener,
    Serving { readiness, stop, admin_addr }: Serving,
) -> Result<(), DispatchError> {
    let Some(conn) = herald_common::redis_conn::connect_until_ready(&config.redis, &stop).await? else {
        return Ok(());
    };
    let keys = config.keys();
    let retention = Retention::new(config.event_retention, config.success_retention);
    let records = Records::start(conn.clone(), keys.clone(), retention).await?;
    let client = send::http_client::build(config.url_policy.clone(), config.delivery_timeout)?;
    let registry = RegistryClient::new(&config.registry_url, config.grpc_token.as_deref())?;
    let shared = Arc::new(Shared {
        id: ids::new_id("dsp_"),
        config,
        keys,
        records,
        client,
        registry,
        rt: tokio::runtime::Handle::current(),
    });

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, MAX_ACTOR_THREADS);
    let system = ActorSystem::start(threads)?;
    let actors = Arc::new(Actors::new(shared.clone(), &system)?);

    let changes = tokio::spawn(changes::follow(shared.clone(), actors.clone(), stop.clone()));
    let leases = tokio::spawn(partition::run_leases(shared.clone(), actors.clone(), stop.clone()));

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status(SERVICE_NAME, tonic_health::ServingStatus::Serving).await;
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(herald_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(herald_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    let dispatch_service = GrpcAuth::new(shared.config.grpc_token.as_deref(), &shared.config.grpc_publish_tokens)
        .guard(DispatchServer::new(DispatchService::new(shared.clone(), actors.clone())));

    let grpc_addr = grpc.local_addr()?;
    let grpc_server = Server::builder()
        .trace_fn(herald_proto::server::request_span)
        .layer(herald_common::grpc_metrics::GrpcMetricsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(dispatch_service)
        .serve_with_incoming_shutdown(herald_proto::server::incoming(grpc), stop.clone().cancelled_owned());
    let ready = shared.clone();
    readiness.install(Arc::new(move || {
        let shared = ready.clone();
        Box::pin(async move {
            let mut conn = shared.records.conn();
            herald_common::admin::check_redis(herald_common::redis_conn::ping(&mut conn)).await?;
            shared.registry.check().await
        })
    }));
    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, id = %shared.id, "herald-dispatch serving");
    let grpc_result = grpc_server.await;
    // Readiness and the gRPC server are down: drain deliveries and hand
    // partitions back.
    stop.cancel();
    if let Err(e) = leases.await {
        tracing::error!(error = %e, "partition manager ended abnormally");
    }
    let _ = changes.await;
    drop(actors);
    let _ = tokio::task::spawn_blocking(move || system.shutdown()).await;
    grpc_result?;
    Ok(())
}
