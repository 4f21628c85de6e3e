//! Herald's black-box tests: one integration binary, a module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backlog;
mod catalog;
mod cli;
mod cluster;
mod control;
mod dispatch;
mod event_log;
mod faults;
mod formats;
mod gateway;
mod incarnations;
mod limits;
mod manual_retry;
mod observability;
mod observe;
mod operational;
mod payloads;
mod policies;
mod portal;
mod profile_rules;
mod profiles;
mod registry;
mod republish;
mod rights;
mod security;
mod slow_clients;
mod smoke;
mod support;
