//! The flags and argument groups the commands share or own alone (output
//! form, list limits, connection settings, publish, listen, verify): plain
//! definitions that import nothing of the command line, so every command
//! can use them without depending on the grammar that lists the commands.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Args)]
pub struct Global {
    /// The gateway's base URL [default: http://localhost:8080]. Given before
    /// the command, since `--url` after `endpoints create` is the endpoint's.
    #[arg(long, env = "HERALD_URL")]
    pub url: Option<String>,
    /// The admin token or a tenant API key (hk_…).
    #[arg(long, env = "HERALD_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The tenant the admin token acts for (a tenant key implies its own).
    #[arg(long, env = "HERALD_TENANT", global = true)]
    pub tenant: Option<String>,
    /// Which profile of the profile file to use.
    #[arg(long, env = "HERALD_PROFILE", global = true, default_value = "default")]
    pub profile: String,
    /// The profile file [default: <config dir>/herald/profiles.json].
    #[arg(long, env = "HERALD_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// `table` for people, `json` for the API's own JSON.
    #[arg(long, short, value_enum, global = true, default_value_t = Output::Table)]
    pub output: Output,
    /// Seconds to wait for one answer from the gateway.
    #[arg(long, global = true, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The gateway's base URL to save (overrides HERALD_URL and `herald --url`).
    #[arg(long)]
    pub url: Option<String>,
    /// Save without first checking that the gateway accepts the token.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// Publish an event to every subscribed endpoint of the tenant (needs --tenant).
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The event type, e.g. order.shipped.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: String,
    /// The event's data: JSON text, @file.json, or - for standard input.
    #[arg(long)]
    pub data: String,
    /// What the event is about (subscription filters match it): JSON, @file or -.
    #[arg(long)]
    pub resource: Option<String>,
    /// Idempotency id: publishing the same id again creates nothing new.
    #[arg(long)]
    pub id: Option<String>,
    /// When it happened (RFC 3339); defaults to now.
    #[arg(long)]
    pub time: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Address to bind; loopback unless you mean to accept deliveries from elsewhere.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The endpoint's signing secret (whsec_…): each delivery's signature is checked.
    #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: Option<String>,
    /// The HTTP status to answer every delivery with.
    #[arg(long, default_value_t = 204, value_parser = clap::value_parser!(u16).range(200..=599))]
    pub status: u16,
}

#[derive(Debug, Args)]
#[command(after_help = "Reads the exact request body from standard input. \
Exit status 0 when the signature is valid, 1 otherwise (with the reason).")]
pub struct VerifyArgs {
    /// The endpoint's signing secret (whsec_…).
    #[arg(long, env = "HERALD_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The webhook-id header.
    #[arg(long)]
    pub id: String,
    /// The webhook-timestamp header (Unix seconds).
    #[arg(long)]
    pub timestamp: String,
    /// The webhook-signature header (one or more space-separated `v1,…`).
    #[arg(long)]
    pub signature: String,
}

/// `--limit` of every list command.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Most items to show; further pages are fetched until this many.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}
