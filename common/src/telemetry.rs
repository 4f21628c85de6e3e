//! Logs and traces.
//!
//! Logs are JSON lines on stdout filtered by `RUST_LOG` (default `info`).
//! Every process runs an OpenTelemetry tracer so that trace context exists
//! even without an exporter: a webhook always carries a valid `traceparent`.
//! When `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-specific variable) is
//! set, spans are also exported over OTLP/gRPC.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Set once an OTLP exporter is installed: before that, a span is only
/// bookkeeping nobody reads.
static EXPORTING: AtomicBool = AtomicBool::new(false);

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
        EXPORTING.store(true, Ordering::Relaxed);
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
    traceparent_of(&tracing::Span::current())
}

/// Whether a span that joins `parent` (a W3C `traceparent`, or none for a
/// new trace) would be exported: spans are exported at all, and the parent's
/// sampled flag is set. Hot paths make a span only then; the trace context
/// travels on without one.
pub fn recorded(parent: Option<&str>) -> bool {
    EXPORTING.load(Ordering::Relaxed) && parent.is_none_or(sampled)
}

fn sampled(traceparent: &str) -> bool {
    let flags = trace_id_and_flags(traceparent).and_then(|(_, flags)| u8::from_str_radix(flags, 16).ok());
    flags.is_some_and(|flags| flags & 1 == 1)
}

/// The `traceparent` that what this process sends on carries, given the
/// one it was called with: the current span's when spans are exported and
/// the caller's trace is sampled, so the trace shows this hop; otherwise
/// the caller's as it came (or none), since an unexported span would only
/// put a hop in the chain that nobody can see.
pub fn onward_traceparent(incoming: Option<String>) -> Option<String> {
    if recorded(incoming.as_deref()) { current_traceparent().or(incoming) } else { incoming }
}

/// The W3C `traceparent` of `span`, if it has a trace context.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::with_capacity(1);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by a W3C `traceparent`.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    // Fails only when the span is disabled, and then there is no trace to join.
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The `traceparent` of an attempt sent without a span of its own: a span
/// id made from the delivery id and attempt number, in the publisher's
/// trace (its trace id and flags) when it sent one, else in a trace whose
/// id is the delivery id's ULID. Made again from the delivery alone when
/// there was no publisher trace, it need not be stored with the attempt's
/// record; and a receiver that logs it can find the delivery from it.
/// `None` when the delivery id is not a ULID id.
pub fn attempt_traceparent(publisher: Option<&str>, delivery_id: &str, attempt: u32) -> Option<String> {
    let ulid = crate::ids::ulid_bits(delivery_id).filter(|bits| *bits != 0)?;
    // SplitMix64 of the id's low bits and the attempt: distinct per attempt,
    // never zero (a zero span id is invalid).
    let mut span = (ulid as u64) ^ u64::from(attempt).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    span = (span ^ (span >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    span = (span ^ (span >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    span = (span ^ (span >> 31)).max(1);
    // Spelled digit by digit: `format!` with padded hex costs more than the
    // rest of the attempt's headers together.
    let mut out = String::with_capacity(55);
    out.push_str("00-");
    match publisher.and_then(trace_id_and_flags) {
        Some((trace, flags)) => {
            out.push_str(trace);
            out.push('-');
            push_hex(&mut out, u128::from(span), 16);
            out.push('-');
            out.push_str(flags);
        }
        None => {
            push_hex(&mut out, ulid, 32);
            out.push('-');
            push_hex(&mut out, u128::from(span), 16);
            out.push_str("-01");
        }
    }
    Some(out)
}

/// The low `digits` hex digits of `value`, lowercase, zero-padded.
fn push_hex(out: &mut String, value: u128, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..digits).rev().map(|d| d * 4) {
        out.push(char::from(HEX[((value >> shift) & 0xf) as usize]));
    }
}

/// The trace id and flags of a well-formed version-00 `traceparent`.
fn trace_id_and_flags(traceparent: &str) -> Option<(&str, &str)> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = version == "00" && parts.next().is_none() && hex(trace, 32) && hex(parent, 16) && hex(flags, 2);
    (valid && trace.bytes().any(|b| b != b'0')).then_some((trace, flags))
}

#[cfg(test)]
mod tests {
    use super::{attempt_traceparent, sampled};

    #[test]
    fn an_attempt_traceparent_is_made_from_its_delivery_and_attempt() {
        let id = crate::ids::new_delivery_id(3);
        let first = attempt_traceparent(None, &id, 1).unwrap();
        assert_eq!(Some(first.clone()), attempt_traceparent(None, &id, 1));
        assert_ne!(Some(first.clone()), attempt_traceparent(None, &id, 2));
        let trace = format!("{:032x}", crate::ids::ulid_bits(&id).unwrap());
        assert!(first.starts_with(&format!("00-{trace}-")) && first.ends_with("-01") && first.len() == 55);
        assert_eq!(attempt_traceparent(None, "dlv_not-a-ulid", 1), None);

        let publisher = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
        let joined = attempt_traceparent(Some(publisher), &id, 1).unwrap();
        assert!(joined.starts_with("00-0af7651916cd43dd8448eb211c80319c-") && joined.ends_with("-00"), "{joined}");
        assert_eq!(joined[36..52], first[36..52], "the span id is the attempt's either way");
        let malformed = attempt_traceparent(Some("00-xyz-b7ad6b7169203331-01"), &id, 1);
        assert_eq!(malformed, Some(first));
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        for value in [0u128, 1, 0xabc, u128::from(u64::MAX), u128::MAX, 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210] {
            let mut wide = String::new();
            super::push_hex(&mut wide, value, 32);
            assert_eq!(wide, format!("{value:032x}"));
            let mut narrow = String::new();
            super::push_hex(&mut narrow, value, 16);
            assert_eq!(narrow, format!("{:016x}", value as u64));
        }
    }

    #[test]
    fn the_sampled_flag_is_the_lowest_bit_of_the_flags() {
        assert!(sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        assert!(!sampled("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"));
        assert!(!sampled(""));
    }
}
