//! One module per resource of the REST API, each holding its subcommands'
//! grammar beside what they do, plus the commands that need no API
//! (`login` aside, which checks the token it saves).

pub mod deliveries;
pub mod delivery_filter;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod login;
pub mod recover;
pub mod subscriptions;
pub mod tail;
pub mod tenants;
pub mod verify;

use crate::client::Client;
use crate::options::Output;

/// What every API command works with.
pub struct Ctx {
    pub client: Client,
    pub output: Output,
}
