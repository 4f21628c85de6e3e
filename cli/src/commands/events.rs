//! `herald events publish`: the REST twin of gRPC `Registry.Publish`
//! (`POST /v1/events`, admin token).

use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use crate::error::CliError;
use crate::input;
use crate::options::{EventCommand, Output, PublishArgs};

pub async fn run(ctx: &Ctx, command: EventCommand) -> Result<(), CliError> {
    match command {
        EventCommand::Publish(args) => publish(ctx, args).await,
    }
}

async fn publish(ctx: &Ctx, args: PublishArgs) -> Result<(), CliError> {
    let PublishArgs { kind, data, resource, id, time } = args;
    let tenant = ctx
        .client
        .settings()
        .tenant
        .clone()
        .ok_or_else(|| CliError::usage("events publish needs --tenant (or HERALD_TENANT)"))?;
    if resource.as_deref() == Some("-") && data == "-" {
        return Err(CliError::usage("--data and --resource cannot both read standard input"));
    }
    let mut body = json!({"tenant": tenant, "type": kind, "data": input::json_arg("--data", &data)?});
    if let Some(resource) = resource {
        body["resource"] = input::json_arg("--resource", &resource)?;
    }
    if let Some(id) = id {
        body["id"] = Value::String(id);
    }
    if let Some(time) = time {
        body["time"] = Value::String(input::time_arg("--time", &time, ::time::OffsetDateTime::now_utc())?);
    }
    let answer = ctx.client.call(Method::POST, ["v1", "events"]).json(&body).send().await?.unwrap_or_default();
    match ctx.output {
        Output::Json => crate::output::json(&answer),
        Output::Table => {
            let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
            let deliveries = answer.get("deliveries").and_then(Value::as_u64).unwrap_or(0);
            if answer.get("duplicate").and_then(Value::as_bool).unwrap_or(false) {
                crate::output::line(format!("{id} was published before: nothing new delivered"));
            } else {
                crate::output::line(format!("published {id}: {deliveries} deliveries"));
            }
        }
    }
    Ok(())
}
