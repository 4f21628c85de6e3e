//! `herald`: Herald's command line. Talks only to the gateway's REST API;
//! `listen` and `verify` work without any gateway at all.

mod args;
mod client;
mod commands;
mod config;
mod error;
mod input;
mod listen;
mod options;
mod output;
mod signature;

use clap::{CommandFactory, Parser};

use crate::args::{Cli, Command};
use crate::client::Client;
use crate::commands::Ctx;
use crate::error::CliError;

fn main() {
    // Usage errors exit 2 with clap's message; --help and --version exit 0.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("{}", e.report());
        std::process::exit(e.exit_code());
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let Cli { global, command } = cli;
    match command {
        Command::Listen(args) => return listen::run(args).await,
        Command::Verify(args) => return commands::verify::run(args),
        Command::Completions { shell } => {
            // Rendered whole first: the generator panics on a closed pipe.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "herald", &mut script);
            output::bytes(&script);
            return Ok(());
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page).map_err(CliError::io("rendering the man page"))?;
            output::bytes(&page);
            return Ok(());
        }
        _ => {}
    }
    let settings = config::resolve(&global, config::load_profile(&global)?);
    if let Command::Login(args) = command {
        return commands::login::run(&global, settings, args).await;
    }
    let ctx = Ctx { client: Client::new(settings)?, output: global.output };
    match command {
        Command::Tenants(c) => commands::tenants::run(&ctx, c).await,
        Command::EventTypes(c) => commands::event_types::run(&ctx, c).await,
        Command::Endpoints(c) => commands::endpoints::run(&ctx, c).await,
        Command::Subscriptions(c) => commands::subscriptions::run(&ctx, c).await,
        Command::Deliveries(c) => commands::deliveries::run(&ctx, c).await,
        Command::Events(c) => commands::events::run(&ctx, c).await,
        Command::Login(_) | Command::Listen(_) | Command::Verify(_) | Command::Completions { .. } | Command::Man => {
            Ok(())
        }
    }
}
