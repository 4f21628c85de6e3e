//! Request metrics of a gRPC server: `herald_grpc_requests_total{service,method,code}`
//! and `herald_grpc_request_duration_seconds{service,method}`, as a tower
//! layer for `tonic::transport::Server::builder().layer(...)`.
//!
//! The code is the `grpc-status` of a trailers-only answer (how tonic sends
//! every error of a unary call), else `0`. Calls to methods the server does
//! not have (`UNIMPLEMENTED`) are labelled `unknown`, so a caller cannot grow
//! the series count by inventing paths.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

pub const GRPC_REQUESTS: &str = "herald_grpc_requests_total";
pub const GRPC_DURATION: &str = "herald_grpc_request_duration_seconds";

/// `grpc-status` of `UNIMPLEMENTED`.
const UNIMPLEMENTED: &str = "12";

/// Describes the two series (their HELP lines).
pub fn describe() {
    metrics::describe_counter!(GRPC_REQUESTS, "gRPC calls answered, by service, method and status code");
    metrics::describe_histogram!(
        GRPC_DURATION,
        metrics::Unit::Seconds,
        "time to answer a gRPC call, by service and method"
    );
}

#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path().to_owned();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            if let Ok(response) = &answer {
                let code = response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).unwrap_or("0");
                record(&path, code, started.elapsed().as_secs_f64());
            }
            answer
        })
    }
}

/// `(service, method)` of a gRPC path `/package.Service/Method`.
fn split_path(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

fn record(path: &str, code: &str, seconds: f64) {
    let (service, method) = match split_path(path) {
        Some(known) if code != UNIMPLEMENTED => known,
        _ => ("unknown", "unknown"),
    };
    let (service, method) = (service.to_owned(), method.to_owned());
    metrics::counter!(GRPC_REQUESTS, "service" => service.clone(), "method" => method.clone(), "code" => code.to_owned())
        .increment(1);
    metrics::histogram!(GRPC_DURATION, "service" => service, "method" => method).record(seconds);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(split_path("/herald.v1.Registry/Publish"), Some(("herald.v1.Registry", "Publish")));
        assert_eq!(split_path("/grpc.health.v1.Health/Check"), Some(("grpc.health.v1.Health", "Check")));
        assert_eq!(split_path("/"), None);
        assert_eq!(split_path("/a/b/c"), None);
        assert_eq!(split_path("no-slash"), None);
        assert_eq!(split_path("/svc/"), None);
    }
}
