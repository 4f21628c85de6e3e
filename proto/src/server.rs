//! What the registry and dispatcher gRPC servers share: the token check
//! with its per-method rights (`HERALD_GRPC_TOKEN`,
//! `HERALD_GRPC_PUBLISH_TOKENS`), the per-call span that continues the
//! caller's trace, and the accepted connections.

use std::sync::Arc;

use herald_common::crypto::constant_time_eq;
use herald_common::telemetry;
use std::convert::Infallible;
use std::task::{Context, Poll};
use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// Methods a publish token (`HERALD_GRPC_PUBLISH_TOKENS`) may call. Health
/// and reflection are separate services, served without a token.
pub const PUBLISH_METHODS: &[&str] = &["/herald.v1.Registry/Publish", "/herald.v1.Registry/PublishBatch"];

/// Who may call what. With no token configured every call passes; with
/// tokens, a call must carry `authorization: Bearer <token>`: the full token
/// (`HERALD_GRPC_TOKEN`, what the gateway and dispatchers send) may call
/// anything, a publish token only [`PUBLISH_METHODS`].
#[derive(Clone, Default)]
pub struct GrpcAuth {
    full: Option<Arc<str>>,
    publish: Arc<[Arc<str>]>,
}

impl GrpcAuth {
    pub fn new(full: Option<&str>, publish: &[String]) -> Self {
        GrpcAuth { full: full.map(Arc::from), publish: publish.iter().map(|t| Arc::from(t.as_str())).collect() }
    }

    /// `service` behind this check; refused calls never reach it.
    pub fn guard<S>(&self, service: S) -> Guarded<S> {
        Guarded { inner: service, auth: self.clone() }
    }

    #[allow(clippy::result_large_err)] // `Status` is what a refusal is
    fn admit(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        if self.full.is_none() && self.publish.is_empty() {
            return Ok(());
        }
        let unauthenticated = || Status::unauthenticated("missing or invalid grpc token");
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(unauthenticated)?;
        if self.full.as_deref().is_some_and(|full| constant_time_eq(presented, full)) {
            return Ok(());
        }
        // Every publish token is compared, so timing does not tell which one matched.
        let publisher = self.publish.iter().fold(false, |hit, token| constant_time_eq(presented, token) | hit);
        match publisher {
            false => Err(unauthenticated()),
            true if PUBLISH_METHODS.contains(&path) => Ok(()),
            true => Err(Status::permission_denied("this grpc token may only publish")),
        }
    }
}

/// A gRPC service behind [`GrpcAuth`]. It sees the method's path, which an
/// interceptor does not, so rights are granted per method.
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    auth: GrpcAuth,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.auth.admit(request.uri().path(), request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
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

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(auth) = auth {
            headers.insert("authorization", auth.parse().unwrap());
        }
        headers
    }

    const PUBLISH: &str = "/herald.v1.Registry/Publish";
    const CREATE: &str = "/herald.v1.Registry/CreateTenant";
    const DELIVERIES: &str = "/herald.v1.Dispatch/ListDeliveries";

    fn code(auth: &GrpcAuth, path: &str, token: Option<&str>) -> tonic::Code {
        auth.admit(path, &headers(token)).err().map_or(tonic::Code::Ok, |s| s.code())
    }

    #[test]
    fn without_tokens_everything_passes() {
        let open = GrpcAuth::new(None, &[]);
        assert_eq!(code(&open, CREATE, None), tonic::Code::Ok);
        assert_eq!(code(&open, CREATE, Some("Bearer anything")), tonic::Code::Ok);
    }

    #[test]
    fn the_full_token_may_call_anything() {
        let auth = GrpcAuth::new(Some("s3cret"), &["pub-1".into(), "pub-2".into()]);
        for path in [PUBLISH, CREATE, DELIVERIES] {
            assert_eq!(code(&auth, path, Some("Bearer s3cret")), tonic::Code::Ok, "{path}");
            assert_eq!(code(&auth, path, Some("bearer s3cret")), tonic::Code::Ok, "{path}");
        }
    }

    #[test]
    fn a_publish_token_may_only_publish() {
        let auth = GrpcAuth::new(Some("s3cret"), &["pub-1".into(), "pub-2".into()]);
        for token in ["Bearer pub-1", "Bearer pub-2"] {
            assert_eq!(code(&auth, PUBLISH, Some(token)), tonic::Code::Ok);
            assert_eq!(code(&auth, "/herald.v1.Registry/PublishBatch", Some(token)), tonic::Code::Ok);
            assert_eq!(code(&auth, CREATE, Some(token)), tonic::Code::PermissionDenied);
            assert_eq!(code(&auth, DELIVERIES, Some(token)), tonic::Code::PermissionDenied);
            assert_eq!(code(&auth, "/herald.v1.Registry/Publish/x", Some(token)), tonic::Code::PermissionDenied);
        }
    }

    #[test]
    fn a_missing_or_wrong_token_is_unauthenticated() {
        let auth = GrpcAuth::new(Some("s3cret"), &["pub-1".into()]);
        for token in [None, Some("Bearer wrong"), Some("s3cret"), Some("Basic s3cret"), Some("Bearer pub-")] {
            assert_eq!(code(&auth, PUBLISH, token), tonic::Code::Unauthenticated, "{token:?}");
            assert_eq!(code(&auth, CREATE, token), tonic::Code::Unauthenticated, "{token:?}");
        }
    }
}
