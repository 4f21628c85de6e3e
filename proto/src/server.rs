//! What the registry and dispatcher gRPC servers share: the
//! `HERALD_GRPC_TOKEN` check, the per-call span that continues the
//! caller's trace, and the accepted connections.

use std::sync::Arc;

use herald_common::crypto::constant_time_eq;
use herald_common::telemetry;
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::http;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Refuses calls without `authorization: Bearer <token>` when a token is
/// configured; health and reflection are served without it.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
}

impl TokenCheck {
    pub fn new(token: Option<&str>) -> Self {
        TokenCheck { token: token.map(Arc::from) }
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        check_token(self.token.as_deref(), &request).map(|()| request)
    }
}

#[allow(clippy::result_large_err)] // the interceptor signature is tonic's
fn check_token(expected: Option<&str>, request: &Request<()>) -> Result<(), Status> {
    let Some(expected) = expected else { return Ok(()) };
    let presented = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match presented {
        Some(token) if constant_time_eq(token, expected) => Ok(()),
        _ => Err(Status::unauthenticated("missing or invalid grpc token")),
    }
}

/// One span per call, continuing the caller's trace when it sent a `traceparent`.
pub fn request_span(request: &http::Request<()>) -> tracing::Span {
    let span = tracing::info_span!("grpc.request", rpc = %request.uri().path(), otel.kind = "server");
    if let Some(parent) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        telemetry::set_parent(&span, parent);
    }
    span
}

/// The connections a gRPC server accepts, with Nagle's algorithm off:
/// small request/answer exchanges must not wait for more bytes.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(auth: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(auth) = auth {
            request.metadata_mut().insert("authorization", auth.parse().unwrap());
        }
        request
    }

    #[test]
    fn grpc_token_is_checked_when_configured() {
        assert!(check_token(None, &request(None)).is_ok());
        assert!(check_token(Some("s3cret"), &request(Some("Bearer s3cret"))).is_ok());
        assert!(check_token(Some("s3cret"), &request(Some("bearer s3cret"))).is_ok());
        assert!(check_token(Some("s3cret"), &request(Some("Bearer wrong"))).is_err());
        assert!(check_token(Some("s3cret"), &request(Some("s3cret"))).is_err());
        assert!(check_token(Some("s3cret"), &request(None)).is_err());
        assert_eq!(check_token(Some("s"), &request(None)).unwrap_err().code(), tonic::Code::Unauthenticated);
    }
}
