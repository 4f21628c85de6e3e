//! The registry's one error type, and its one mapping to `tonic::Status`.
//!
//! Validation failures carry every offending field as a [`FieldError`]; the
//! mapping attaches them as `google.rpc.BadRequest` field violations so the
//! gateway can answer problem+json `errors: [{field, message}]` without
//! parsing messages. Field names are the camelCase names of the REST API
//! (`url`, `eventTypes`, `events[3].data`, `data.orderId`).

use herald_common::CommonError;
use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// One invalid input field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}", summary(.0))]
    Invalid(Vec<FieldError>),
    /// Names what is missing, e.g. `endpoint ep_01h…`.
    #[error("{0} not found")]
    NotFound(String),
    /// Names what collides, e.g. `tenant acme`.
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A tenant has as many of something as its quota allows.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A write lost a race with another writer too many times in a row.
    #[error("{0} was changed concurrently, try again")]
    Conflict(String),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("admin listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("event type catalogue {0}")]
    Catalog(String),
}

/// A Redis answer of an unexpected shape is a Redis error like any other.
impl From<redis::ParsingError> for RegistryError {
    fn from(err: redis::ParsingError) -> Self {
        RegistryError::Redis(err.into())
    }
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid request".to_owned(),
        [only] => format!("{}: {}", only.field, only.message),
        [first, rest @ ..] => format!("{}: {} (and {} more)", first.field, first.message, rest.len()),
    }
}

impl RegistryError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        RegistryError::Invalid(vec![FieldError::new(field, message)])
    }

    /// `what` are e.g. `endpoints`; `variable` names the limit for the operator.
    pub fn quota(tenant: &str, limit: u64, what: &str, variable: &str) -> Self {
        RegistryError::QuotaExceeded(format!("tenant {tenant} has reached its limit of {limit} {what} ({variable})"))
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        RegistryError::NotFound(format!("{what} {id}"))
    }

    /// Prefixes every field of a validation error, e.g. with `events[3].`.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            RegistryError::Invalid(errors) => RegistryError::Invalid(
                errors
                    .into_iter()
                    .map(|e| FieldError { field: format!("{prefix}{}", e.field), message: e.message })
                    .collect(),
            ),
            other => other,
        }
    }
}

fn redis_code(err: &redis::RedisError) -> Code {
    if herald_common::redis_conn::is_transient(err) { Code::Unavailable } else { Code::Internal }
}

impl From<RegistryError> for tonic::Status {
    fn from(err: RegistryError) -> Self {
        let message = err.to_string();
        match err {
            RegistryError::Invalid(errors) => {
                let mut details = ErrorDetails::new();
                for e in &errors {
                    details.add_bad_request_violation(e.field.clone(), e.message.clone());
                }
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            RegistryError::NotFound(_) => tonic::Status::not_found(message),
            RegistryError::AlreadyExists(_) => tonic::Status::already_exists(message),
            RegistryError::Unauthenticated(_) => tonic::Status::unauthenticated(message),
            RegistryError::Conflict(_) => tonic::Status::aborted(message),
            RegistryError::QuotaExceeded(_) => tonic::Status::failed_precondition(message),
            RegistryError::Redis(ref e) | RegistryError::Common(CommonError::Redis(ref e)) => {
                let code = redis_code(e);
                tracing::warn!(error = %message, "registry request failed on redis");
                if code == Code::Unavailable {
                    tonic::Status::unavailable("redis is unavailable")
                } else {
                    tonic::Status::internal("redis command failed")
                }
            }
            RegistryError::Corrupt(_)
            | RegistryError::Common(_)
            | RegistryError::Transport(_)
            | RegistryError::Reflection(_)
            | RegistryError::Io(_)
            | RegistryError::Catalog(_) => {
                tracing::error!(error = %message, "registry request failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_errors_travel_as_bad_request_details() {
        let err = RegistryError::Invalid(vec![
            FieldError::new("url", "scheme must be https"),
            FieldError::new("headers", "too many"),
        ])
        .within("events[3].");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("events[3].url: scheme must be https"), "{}", status.message());
        let details = status.get_error_details();
        let violations = details.bad_request().unwrap().field_violations.clone();
        assert_eq!(violations.len(), 2);
        assert_eq!(violations[1].field, "events[3].headers");
        assert_eq!(violations[1].description, "too many");
    }

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(tonic::Status::from(RegistryError::not_found("endpoint", "ep_1")).code(), Code::NotFound);
        assert_eq!(tonic::Status::from(RegistryError::AlreadyExists("tenant a".into())).code(), Code::AlreadyExists);
        assert_eq!(tonic::Status::from(RegistryError::Unauthenticated("no")).code(), Code::Unauthenticated);
        let quota =
            tonic::Status::from(RegistryError::quota("acme", 2, "endpoints", "HERALD_MAX_ENDPOINTS_PER_TENANT"));
        assert_eq!(quota.code(), Code::FailedPrecondition);
        assert!(quota.message().contains("HERALD_MAX_ENDPOINTS_PER_TENANT"), "{}", quota.message());
        let io = redis::RedisError::from(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(tonic::Status::from(RegistryError::Redis(io)).code(), Code::Unavailable);
    }
}
