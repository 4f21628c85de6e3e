//! `herald deliveries`: the history of every delivery and its attempts,
//! manual retries, and `tail` (in its own module).

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::Ctx;
use super::delivery_filter::DeliveryFilter;
use super::tail::{self, TailArgs};
use crate::error::CliError;
use crate::options::{ListArgs, Output};
use crate::output::{self, Column};

#[derive(Debug, Subcommand)]
pub enum DeliveryCommand {
    /// List deliveries, newest first.
    List {
        #[command(flatten)]
        filter: DeliveryFilter,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a delivery with all its attempts.
    Get { id: String },
    /// Send a delivery again now.
    Retry { id: String },
    /// Follow deliveries as they settle, one line each, until interrupted.
    Tail(TailArgs),
}

pub const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("ENDPOINT", "endpointId"),
    ("EVENT", "eventId"),
    ("TYPE", "eventType"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attemptCount"),
    ("UPDATED", "updatedAt"),
];

const ATTEMPT_COLUMNS: &[Column] =
    &[("N", "n"), ("AT", "at"), ("STATUS", "statusCode"), ("LATENCY MS", "latencyMs"), ("ERROR", "error")];

pub async fn run(ctx: &Ctx, command: DeliveryCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match command {
        DeliveryCommand::List { filter, list } => {
            let call = client.call(Method::GET, ["v1", "deliveries"]).scoped();
            let items = client.list(filter.apply(call), list.limit).await?;
            output::list(ctx.output, &items, COLUMNS);
        }
        DeliveryCommand::Get { id } => {
            let answer = client.call(Method::GET, ["v1", "deliveries", &id]).scoped().send().await?;
            let mut delivery = answer.unwrap_or_default();
            if ctx.output == Output::Json {
                output::json(&delivery);
                return Ok(());
            }
            let attempts = delivery.as_object_mut().and_then(|d| d.remove("attempts"));
            output::one(ctx.output, &delivery);
            if let Some(Value::Array(attempts)) = attempts {
                output::line("");
                output::list(ctx.output, &attempts, ATTEMPT_COLUMNS);
            }
        }
        DeliveryCommand::Retry { id } => {
            let answer = client.call(Method::POST, ["v1", "deliveries", &id, "retry"]).scoped().send().await?;
            output::one(ctx.output, &answer.unwrap_or_default());
        }
        DeliveryCommand::Tail(args) => tail::run(ctx, args).await?,
    }
    Ok(())
}
