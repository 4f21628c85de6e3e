//! Logs and traces.
//!
//! Logs are JSON lines on stdout filtered by `RUST_LOG` (default `info`).
//! Every process runs an OpenTelemetry tracer so that trace context exists
//! even without an exporter: a webhook always carries a valid `traceparent`.
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is
//! set, spans are also exported over OTLP/gRPC.

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::Env;
use crate::{CommonError, Result};

/// Crates whose spans form Herald's traces.
const HERALD_CRATES: [&str; 6] =
    ["herald_common", "herald_proto", "herald_registry", "herald_dispatch", "herald_gateway", "herald_tests"];

/// Flushes pending spans when dropped at the end of `main`.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(err) = self.provider.force_flush() {
            eprintln!("trace flush failed: {err}");
        }
    }
}

/// Builds the tracer provider; exported over OTLP when the environment asks.
pub fn tracer_provider(service: &'static str, env: &Env) -> Result<SdkTracerProvider> {
    let resource = Resource::builder()
        .with_service_name(service)
        .with_attributes([KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() || env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .map_err(|e| CommonError::Telemetry(e.to_string()))?;
        // The batch processor exports from its own thread; the tonic channel
        // built here runs on this process's tokio runtime.
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// Installs JSON logging and tracing for a service binary.
pub fn init(service: &'static str, env: &Env) -> Result<TelemetryGuard> {
    let provider = tracer_provider(service, env)?;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let log_filter = EnvFilter::try_new(env.string("RUST_LOG", "info"))
        .map_err(|e| CommonError::Config(format!("RUST_LOG: {e}")))?;
    // Trace context must not depend on the log level: with RUST_LOG=warn the
    // webhook's traceparent must still carry the publisher's trace id. So the
    // log filter applies to the log layer only, and the tracer sees Herald's
    // own spans (not the chatty ones of hyper or h2) at every log level.
    let trace_filter = HERALD_CRATES.iter().fold(Targets::new(), |t, krate| t.with_target(*krate, Level::INFO));
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_filter(log_filter),
        )
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer(service)).with_filter(trace_filter))
        .try_init()
        .map_err(|e| CommonError::Telemetry(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}

/// The W3C `traceparent` of the current span, if it has a trace context.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let mut carrier = HashMap::with_capacity(1);
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by a W3C `traceparent`.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    // Fails only when the span is disabled, and then there is no trace to join.
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}
