//! The command line's grammar, in one place: completions and the man page
//! are generated from these same definitions, so they cannot drift from
//! what the parser accepts.

use clap::{Parser, Subcommand};

use crate::commands::deliveries::DeliveryCommand;
use crate::commands::endpoints::EndpointCommand;
use crate::commands::event_types::EventTypeCommand;
use crate::commands::subscriptions::SubscriptionCommand;
use crate::commands::tenants::TenantCommand;
use crate::options::{EventCommand, Global, ListenArgs, LoginArgs, VerifyArgs};

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
        assert_eq!(cli.global.output, crate::options::Output::Json);
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));
    }
}
