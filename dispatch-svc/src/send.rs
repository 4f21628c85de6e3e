//! Sending one attempt: everything between a queued job and the endpoint's
//! answer, and nothing about what follows it (that is `delivery`'s).
//!
//! `attempt` prepares an endpoint for delivery and makes the request,
//! `render` and `envelope` turn events into the endpoint's body, `signing`
//! signs it (Standard Webhooks), `oauth` holds an endpoint's token cache,
//! and `http_client` is the shared client with its SSRF-checking resolver.

pub mod attempt;
pub mod envelope;
pub mod http_client;
pub mod oauth;
pub mod render;
pub mod signing;
