//! The one mapping from [`DispatchError`] to `tonic::Status`.
//!
//! Invalid input names its field in a `BadRequest` detail (the gateway turns
//! it into problem+json `errors`); a delivery or endpoint of another tenant
//! is `NOT_FOUND` like a missing one; Redis being away is `UNAVAILABLE`;
//! anything else is logged and answered `INTERNAL` without its details.

use tonic::Code;
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::DispatchError;
use herald_common::CommonError;

fn redis_code(err: &redis::RedisError) -> Code {
    if herald_common::redis_conn::is_transient(err) { Code::Unavailable } else { Code::Internal }
}

impl From<DispatchError> for tonic::Status {
    fn from(err: DispatchError) -> Self {
        let message = err.to_string();
        match err {
            DispatchError::Invalid { field, message: reason } => {
                let mut details = ErrorDetails::new();
                details.add_bad_request_violation(field, reason);
                tonic::Status::with_error_details(Code::InvalidArgument, message, details)
            }
            DispatchError::NotFound(_) => tonic::Status::not_found(message),
            DispatchError::Conflict(_) => tonic::Status::failed_precondition(message),
            DispatchError::Redis(ref e) | DispatchError::Common(CommonError::Redis(ref e)) => {
                tracing::warn!(error = %message, "dispatch request failed on redis");
                if redis_code(e) == Code::Unavailable {
                    tonic::Status::unavailable("redis is unavailable")
                } else {
                    tonic::Status::internal("redis command failed")
                }
            }
            DispatchError::Unstored(_) => {
                tracing::warn!(error = %message, "dispatch request failed on redis");
                tonic::Status::unavailable("redis is unavailable")
            }
            DispatchError::Registry(_) => {
                tracing::warn!(error = %message, "dispatch request failed on the registry");
                tonic::Status::unavailable("registry is unavailable")
            }
            _ => {
                tracing::error!(error = %message, "dispatch request failed");
                tonic::Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        let status = tonic::Status::from(DispatchError::NotFound("delivery dlv_1".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "delivery dlv_1 not found");
        let status =
            tonic::Status::from(DispatchError::Invalid { field: "tenant".into(), message: "is required".into() });
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!((violations[0].field.as_str(), violations[0].description.as_str()), ("tenant", "is required"));
        let refused = redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(tonic::Status::from(DispatchError::Redis(refused)).code(), Code::Unavailable);
        // A Redis at `maxmemory` refusing writes: the write may succeed later.
        let full = redis::make_extension_error("OOM".into(), Some("command not allowed".into()));
        assert_eq!(tonic::Status::from(DispatchError::Redis(full)).code(), Code::Unavailable);
        assert_eq!(tonic::Status::from(DispatchError::Actors("x".into())).code(), Code::Internal);
    }
}
