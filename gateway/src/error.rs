//! The gateway's one error type and its two mappings.
//!
//! Every failure a caller can see ends up here: [`From<tonic::Status>`] is
//! the only place an upstream gRPC code becomes an HTTP status, and
//! [`IntoResponse`] is the only place an error becomes an RFC 9457
//! `application/problem+json` answer `{type, title, status, detail, errors?}`.
//! Bad input is always a 4xx; a 500 means Herald itself is at fault.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;
use utoipa::ToSchema;

pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

/// `content-type` of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field, named by its JSON path (`url`, `auth.tokenUrl`, `eventTypes[2]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldProblem { field: field.into(), message: message.into() }
    }
}

/// RFC 9457 problem details, as sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the HTTP status carries the meaning.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Every invalid field, for validation failures.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{detail}")]
    BadRequest { detail: String, errors: Vec<FieldProblem> },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body was not received in time")]
    RequestTimeout,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests")]
    RateLimited { retry_after: Duration },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    NotImplemented(String),
    /// A fault of Herald itself; the detail is logged, never shown.
    #[error("{0}")]
    Internal(String),
    #[error("{name}={url:?} is not a valid upstream url: {source}")]
    UpstreamUrl {
        name: &'static str,
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{0} is not a valid grpc token header value")]
    GrpcToken(&'static str),
    #[error("serving http: {0}")]
    Io(#[from] std::io::Error),
}

impl GatewayError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        GatewayError::BadRequest { detail: detail.into(), errors: Vec::new() }
    }

    /// A validation failure of one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let problem = FieldProblem::new(field, message);
        GatewayError::BadRequest { detail: format!("{}: {}", problem.field, problem.message), errors: vec![problem] }
    }

    /// A validation failure of several fields at once.
    pub fn invalid_fields(errors: Vec<FieldProblem>) -> Self {
        let detail = match errors.as_slice() {
            [] => "invalid request".to_owned(),
            [only] => format!("{}: {}", only.field, only.message),
            [first, rest @ ..] => format!("{}: {} (and {} more)", first.field, first.message, rest.len()),
        };
        GatewayError::BadRequest { detail, errors }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        GatewayError::NotFound(format!("{what} not found"))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::Internal(_)
            | GatewayError::UpstreamUrl { .. }
            | GatewayError::GrpcToken(_)
            | GatewayError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem document of this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            GatewayError::Internal(_)
            | GatewayError::UpstreamUrl { .. }
            | GatewayError::GrpcToken(_)
            | GatewayError::Io(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        let errors = match self {
            GatewayError::BadRequest { errors, .. } => errors.clone(),
            _ => Vec::new(),
        };
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let GatewayError::RateLimited { retry_after } = self {
            // Whole seconds, rounded up, never 0: "retry now" would only be refused again.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// The one mapping from an upstream gRPC answer to the caller's HTTP status.
impl From<tonic::Status> for GatewayError {
    fn from(status: tonic::Status) -> Self {
        let message = status.message().to_owned();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => {
                let errors: Vec<FieldProblem> = status
                    .get_error_details()
                    .bad_request()
                    .map(|b| b.field_violations.iter().map(|v| FieldProblem::new(&v.field, &v.description)).collect())
                    .unwrap_or_default();
                let detail = if message.is_empty() { "invalid request".to_owned() } else { message };
                GatewayError::BadRequest { detail, errors }
            }
            Code::NotFound => GatewayError::NotFound(or(message, "not found")),
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => {
                GatewayError::Conflict(or(message, "conflict"))
            }
            Code::Unauthenticated => GatewayError::Unauthorized(or(message, "invalid credentials")),
            Code::PermissionDenied => GatewayError::Forbidden(or(message, "forbidden")),
            Code::ResourceExhausted => GatewayError::RateLimited { retry_after: Duration::from_secs(1) },
            // Cancelled is what tonic reports when the gateway's own deadline fires.
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => unavailable(&status),
            // A status with a source was made on this side of the wire: a
            // transport failure, not an answer from the service.
            Code::Unknown if std::error::Error::source(&status).is_some() => unavailable(&status),
            Code::Unimplemented => GatewayError::NotImplemented(or(message, "not implemented")),
            Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
                GatewayError::Internal(format!("upstream {:?}: {message}", status.code()))
            }
        }
    }
}

fn or(message: String, fallback: &str) -> String {
    if message.is_empty() { fallback.to_owned() } else { message }
}

fn unavailable(status: &tonic::Status) -> GatewayError {
    tracing::warn!(code = ?status.code(), error = %status.message(), "upstream unavailable");
    GatewayError::Unavailable("a service Herald depends on is unavailable, try again shortly".to_owned())
}

#[cfg(test)]
mod tests {
    use tonic_types::ErrorDetails;

    use super::*;

    fn status_of(status: tonic::Status) -> StatusCode {
        GatewayError::from(status).status()
    }

    #[test]
    fn grpc_codes_map_to_the_contract() {
        assert_eq!(status_of(tonic::Status::invalid_argument("x")), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(tonic::Status::not_found("x")), StatusCode::NOT_FOUND);
        assert_eq!(status_of(tonic::Status::already_exists("x")), StatusCode::CONFLICT);
        assert_eq!(status_of(tonic::Status::aborted("x")), StatusCode::CONFLICT);
        assert_eq!(status_of(tonic::Status::unauthenticated("x")), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(tonic::Status::permission_denied("x")), StatusCode::FORBIDDEN);
        assert_eq!(status_of(tonic::Status::resource_exhausted("x")), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(status_of(tonic::Status::unavailable("x")), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(tonic::Status::deadline_exceeded("x")), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(tonic::Status::cancelled("Timeout expired")), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(tonic::Status::internal("x")), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of(tonic::Status::unknown("x")), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(status_of(tonic::Status::unimplemented("x")), StatusCode::NOT_IMPLEMENTED);
    }

    #[test]
    fn client_side_transport_failures_are_unavailable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = tonic::Status::from_error(Box::new(io));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(status_of(status), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn bad_request_details_become_field_errors() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("url", "scheme must be https");
        details.add_bad_request_violation("headers.host", "is set by Herald and cannot be overridden");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "url: scheme must be https", details);
        let problem = GatewayError::from(status).problem();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.detail, "url: scheme must be https");
        assert_eq!(
            problem.errors,
            vec![
                FieldProblem::new("url", "scheme must be https"),
                FieldProblem::new("headers.host", "is set by Herald and cannot be overridden")
            ]
        );
    }

    #[tokio::test]
    async fn answers_are_problem_json() {
        let response = GatewayError::invalid("limit", "must be between 1 and 1000").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": "about:blank",
                "title": "Bad Request",
                "status": 400,
                "detail": "limit: must be between 1 and 1000",
                "errors": [{"field": "limit", "message": "must be between 1 and 1000"}]
            })
        );
    }

    #[tokio::test]
    async fn internal_details_stay_private_and_rate_limits_say_when() {
        let response = GatewayError::Internal("redis password wrong".into()).into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["detail"], "internal error");
        assert!(json.get("errors").is_none());

        let response = GatewayError::RateLimited { retry_after: Duration::from_millis(1200) }.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
