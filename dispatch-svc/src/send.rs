//! Sending one attempt: everything between a queued job and the endpoint's
//! answer, and nothing about what follows it (that is `delivery`'s).
//!
//! `attempt` prepares an endpoint for delivery and makes the request,
//! `outcome` says what its answer means, `render` and `envelope` turn
//! events into the endpoint's body, `signing` signs it (Standard Webhooks),
//! `oauth` holds an endpoint's token cache, `http_client` is the shared
//! client with its SSRF-checking resolver, `host_limit` bounds the requests
//! in flight to one host, and `recorded` is what the delivery history keeps
//! of each request.

pub mod attempt;
pub mod envelope;
pub mod host_limit;
pub mod http_client;
pub mod oauth;
pub mod outcome;
pub mod recorded;
pub mod render;
pub mod signing;
