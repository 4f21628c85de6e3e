//! What the three Herald services share.
//!
//! This crate is deliberately small and has no service logic: the stored data
//! model that the registry writes and the dispatcher reads ([`model`]), the
//! one place Redis key names are spelled ([`keys`]), configuration from the
//! environment ([`config`]), sealing of stored secrets ([`crypto`]) and
//! which of an endpoint's values are sealed for what ([`endpoint_secrets`]), the
//! endpoint URL policy and SSRF address classifier ([`url_policy`]), logging
//! and tracing ([`telemetry`]), the `/healthz` `/readyz` `/metrics`
//! surface every process serves ([`admin`]), how an event is stored
//! ([`stored_event`]), the operational event types
//! ([`operational`]), the request metrics of the
//! gRPC servers ([`grpc_metrics`]), and the origin webhooks announce ([`origin`]).

pub mod admin;
pub mod backoff;
pub mod config;
pub mod crypto;
pub mod endpoint_secrets;
pub mod env;
pub mod error;
pub mod event_index;
pub mod grpc_metrics;
pub mod ids;
pub mod keys;
pub mod model;
pub mod operational;
pub mod origin;
pub mod redis_conn;
pub mod retry_schedule;
pub mod shutdown;
pub mod startup;
pub mod stored_event;
pub mod telemetry;
pub mod time_fmt;
pub mod url_policy;

pub use error::{CommonError, Result};

/// `user-agent` sent on every webhook request.
pub const USER_AGENT: &str = concat!("Herald/", env!("CARGO_PKG_VERSION"));
