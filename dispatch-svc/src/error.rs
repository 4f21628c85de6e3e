//! The dispatcher's one error type.
//!
//! Delivery failures are not errors: an attempt always ends in an
//! [`AttemptOutcome`](crate::send::outcome::AttemptOutcome) that the retry logic
//! reads. `DispatchError` is for what stops the dispatcher from doing its work
//! at all: Redis, corrupt stored records, an endpoint whose stored
//! configuration cannot be turned into requests, a client that cannot be built.

use herald_common::CommonError;
use herald_common::url_policy::UrlRejection;

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Common(#[from] CommonError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("endpoint url refused: {0}")]
    Url(#[from] UrlRejection),
    #[error("cannot render the body: {0}")]
    Render(String),
    #[error("endpoint template: {0}")]
    Template(String),
    #[error("signing secret: {0}")]
    SigningSecret(String),
    #[error("endpoint header {name}: {reason}")]
    Header { name: String, reason: String },
    #[error("http client cannot be built: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Storing outcomes failed (the writer shares one error among the
    /// outcomes it stored together).
    #[error("storing outcomes: {0}")]
    Unstored(String),
    #[error("registry: {0}")]
    Registry(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The request does not fit the resource's current state.
    #[error("{0}")]
    Conflict(String),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("actor system: {0}")]
    Actors(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("grpc reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// A Redis answer of an unexpected shape is a Redis error like any other.
impl From<redis::ParsingError> for DispatchError {
    fn from(err: redis::ParsingError) -> Self {
        DispatchError::Redis(err.into())
    }
}
