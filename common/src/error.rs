//! The error type of the shared crate.

use crate::url_policy::UrlRejection;

pub type Result<T, E = CommonError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum CommonError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("secret could not be decrypted with any configured key")]
    Decrypt,
    #[error("endpoint url refused: {0}")]
    Url(#[from] UrlRejection),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("telemetry: {0}")]
    Telemetry(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}
