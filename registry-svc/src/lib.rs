//! Herald registry: tenants, API keys, event types, endpoints and
//! subscriptions, and publishing with fan-out to the partition streams.
//!
//! [`run`] serves `herald.v1.Registry`, `grpc.health.v1` and server
//! reflection (v1 and v1alpha) on one listener, and `/healthz` `/readyz`
//! `/metrics` on another, until the shutdown token is cancelled.
//!
//! Code map: [`service`] is the gRPC surface; the domain is [`Registry`],
//! whose operations live in [`tenants`], [`event_types`], [`endpoints`],
//! [`subscriptions`] and [`publish`]; [`validate`], [`schema`],
//! [`filter`] (subscription filters, parsed and matched) and
//! [`retry_policy`] hold the input rules; [`store`] sends every Redis command; [`error`] maps errors
//! to gRPC codes in one place.

use std::sync::Arc;

use herald_common::admin::{self, Serving};
use herald_common::config::HeraldConfig;
use herald_proto::server::GrpcAuth;
use herald_proto::v1::registry_server::{RegistryServer, SERVICE_NAME};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;

pub mod catalog;
pub mod endpoints;
pub mod error;
pub mod event_input;
pub mod event_log;
pub mod event_types;
pub mod filter;
pub mod operational;
pub mod publish;
pub mod replay;
pub mod retry_policy;
pub mod routing;
pub mod schema;
pub mod service;
pub mod store;
pub mod subscriptions;
pub mod tenants;
pub mod validate;

pub use error::{FieldError, RegistryError};

use crate::routing::RouteCache;
use crate::schema::SchemaCache;
use crate::service::RegistryService;
use crate::store::Store;

/// Largest gRPC message accepted: a full `PublishBatch` of large events.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The registry's domain: configuration, the store and the in-memory caches
/// that make publishing cheap.
pub struct Registry {
    config: HeraldConfig,
    store: Store,
    schemas: SchemaCache,
    routes: RouteCache,
}

impl Registry {
    pub fn new(config: HeraldConfig, store: Store) -> Self {
        Registry { config, store, schemas: SchemaCache::default(), routes: RouteCache::default() }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Describes the registry's series and starts its counters at zero, so a
/// scrape shows them before the first publish.
fn describe_metrics() {
    admin::prometheus();
    herald_common::grpc_metrics::describe();
    metrics::describe_counter!("herald_events_published_total", "events stored and fanned out (duplicates excluded)");
    metrics::describe_counter!("herald_events_duplicate_total", "publishes answered from the idempotency window");
    metrics::describe_counter!("herald_jobs_enqueued_total", "deliveries appended to the partition streams");
    for name in ["herald_events_published_total", "herald_events_duplicate_total", "herald_jobs_enqueued_total"] {
        metrics::counter!(name).increment(0);
    }
    metrics::describe_gauge!(admin::REDIS_UP, "1 when Redis answered this process's last check, else 0");
    metrics::gauge!(admin::REDIS_UP).set(0.0);
}

/// Serves the registry on `grpc` and the admin routes on `admin` until
/// `shutdown` is cancelled (or one of the two servers fails).
pub async fn run(
    config: HeraldConfig,
    grpc: TcpListener,
    admin: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RegistryError> {
    describe_metrics();
    admin::serve_alongside(admin, &shutdown, |serving| serve_grpc(config, grpc, serving)).await?;
    tracing::info!("herald-registry stopped");
    Ok(())
}

/// Connects to Redis (waiting for it), then serves gRPC until `stop`.
async fn serve_grpc(
    config: HeraldConfig,
    grpc: TcpListener,
    Serving { readiness, stop, admin_addr }: Serving,
) -> Result<(), RegistryError> {
    let Some(conn) = herald_common::redis_conn::connect_until_ready(&config.redis, &stop).await? else {
        return Ok(());
    };
    let store = Store::new(conn, config.keys());
    if let Err(e) = store.load_scripts().await {
        // Not fatal: scripts are loaded again on first use.
        tracing::warn!(error = %e, "could not preload the publish script");
    }
    let registry = Arc::new(Registry::new(config.clone(), store.clone()));
    let report = registry.load_operational_types().await?;
    tracing::info!(created = report.created, updated = report.updated, "operational event types loaded");
    if let Some(dir) = &config.catalog_dir {
        let report = registry.load_catalog(dir).await?;
        tracing::info!(dir = %dir.display(), created = report.created, updated = report.updated, unchanged = report.unchanged, "event type catalogue loaded");
    }

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
    let registry_service = GrpcAuth::new(config.grpc_token.as_deref(), &config.grpc_publish_tokens).guard(
        RegistryServer::new(RegistryService::new(registry))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );

    let grpc_addr = grpc.local_addr()?;
    let grpc_server = Server::builder()
        .trace_fn(herald_proto::server::request_span)
        .layer(herald_common::grpc_metrics::GrpcMetricsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(registry_service)
        .serve_with_incoming_shutdown(herald_proto::server::incoming(grpc), stop.cancelled_owned());
    readiness.install(Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { admin::check_redis(store.ping()).await })
    }));
    tracing::info!(grpc = %grpc_addr, admin = %admin_addr, "herald-registry serving");
    grpc_server.await?;
    Ok(())
}
