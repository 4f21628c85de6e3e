//! The command line's grammar, in one place: completions and the man page
//! are generated from these same definitions, so they cannot drift from
//! what the parser accepts.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::deliveries::DeliveryCommand;
use crate::commands::endpoints::EndpointCommand;
use crate::commands::event_types::EventTypeCommand;
use crate::commands::subscriptions::SubscriptionCommand;
use crate::commands::tenants::TenantCommand;

const AFTER_HELP: &str = "\
Connection settings come from the flags, then HERALD_URL / HERALD_TOKEN / HERALD_TENANT, \
then the profile `herald login` wrote.

Exit status: 0 success; 1 the API refused (its problem detail is printed) or a check failed; \
2 a usage error; 3 the gateway could not be reached.";

/// Herald from the command line: manage tenants, endpoints and
/// subscriptions, publish events, follow deliveries, and receive and verify
/// webhooks locally.
#[derive(Debug, Parser)]
#[command(name = "herald", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Save the URL and token (and tenant) as a profile (file mode 0600).
    Login(LoginArgs),
    /// Tenants and their API keys (admin).
    #[command(subcommand)]
    Tenants(TenantCommand),
    /// The event type catalogue.
    #[command(subcommand, name = "event-types")]
    EventTypes(EventTypeCommand),
    /// Where a tenant's webhooks are delivered.
    #[command(subcommand)]
    Endpoints(EndpointCommand),
    /// Which events go to which endpoint.
    #[command(subcommand)]
    Subscriptions(SubscriptionCommand),
    /// Delivery history, retries, and following deliveries live.
    #[command(subcommand)]
    Deliveries(DeliveryCommand),
    /// Publishing events (admin).
    #[command(subcommand)]
    Events(EventCommand),
    /// Receive webhooks on this machine: print each one and check its signature.
    Listen(ListenArgs),
    /// Check a Standard Webhooks signature over a body read from standard input.
    Verify(VerifyArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn url_after_a_command_is_that_command_s() {
        let cli = Cli::try_parse_from(["herald", "--url", "http://gw", "endpoints", "create", "--url", "https://x/h"]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.url.as_deref(), Some("http://gw"));
        match cli.command {
            Command::Endpoints(crate::commands::endpoints::EndpointCommand::Create(fields)) => {
                assert_eq!(fields.url.as_deref(), Some("https://x/h"))
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["herald", "login", "--url", "http://gw", "--token", "t"]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.token.as_deref(), Some("t"));
        assert!(matches!(cli.command, Command::Login(LoginArgs { url: Some(_), .. })));
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["herald", "endpoints", "list", "--output", "json", "--tenant", "acme"]);
        let cli = cli.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.global.output, Output::Json);
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));
    }
}
