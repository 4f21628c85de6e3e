//! `herald subscriptions`: which event types (and, by filter, which events)
//! go to which endpoint.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::error::CliError;
use crate::input;
use crate::options::ListArgs;
use crate::output::{self, Column};

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// List subscriptions, optionally of one endpoint.
    List {
        #[arg(long, value_name = "ENDPOINT_ID")]
        endpoint: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one subscription.
    Get { id: String },
    /// Subscribe an endpoint to event types.
    Create {
        #[arg(long, value_name = "ENDPOINT_ID")]
        endpoint: String,
        /// An event type name, or * for all (repeatable).
        #[arg(long = "type", visible_alias = "event-type", value_name = "TYPE", required = true)]
        types: Vec<String>,
        /// Dotted event paths to values that must all be equal, as JSON (@file, -),
        /// e.g. {"resource.orgShortName":"tfoinc"}.
        #[arg(long)]
        filter: Option<String>,
        /// A label, as key=value (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
    },
    /// Change a subscription's event types and/or filter (what is not given
    /// is kept); the next event published is routed by the new values.
    Update {
        id: String,
        /// The event types, replacing the old ones: a name, or * for all
        /// (repeatable).
        #[arg(long = "event-type", visible_alias = "type", value_name = "TYPE")]
        types: Vec<String>,
        /// The filter, replacing the old one, as JSON (@file, -); null removes it.
        #[arg(long)]
        filter: Option<String>,
    },
    /// Delete a subscription.
    Delete { id: String },
}

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("ENDPOINT", "endpointId"),
    ("EVENT TYPES", "eventTypes"),
    ("FILTER", "filter"),
    ("CREATED", "createdAt"),
];

pub async fn run(ctx: &Ctx, command: SubscriptionCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match command {
        SubscriptionCommand::List { endpoint, list } => {
            let call =
                client.call(Method::GET, ["v1", "subscriptions"]).scoped().query_opt("endpointId", endpoint.as_deref());
            let items = client.list(call, list.limit).await?;
            output::list(ctx.output, &items, COLUMNS);
        }
        SubscriptionCommand::Get { id } => {
            let answer = client.call(Method::GET, ["v1", "subscriptions", &id]).scoped().send().await?;
            output::one(ctx.output, &answer.unwrap_or_default());
        }
        SubscriptionCommand::Create { endpoint, types, filter, metadata } => {
            let mut body = json!({"endpointId": endpoint, "eventTypes": types});
            if let Some(filter) = filter {
                body["filter"] = input::json_arg("--filter", &filter)?;
            }
            if !metadata.is_empty() {
                body["metadata"] = input::pairs("--metadata", &metadata)?;
            }
            let answer = client.call(Method::POST, ["v1", "subscriptions"]).scoped().json(&body).send().await?;
            output::one(ctx.output, &answer.unwrap_or(Value::Null));
        }
        SubscriptionCommand::Update { id, types, filter } => {
            let body = update_body(types, filter.as_deref())?;
            let answer = client.call(Method::PATCH, ["v1", "subscriptions", &id]).scoped().json(&body).send().await?;
            output::one(ctx.output, &answer.unwrap_or(Value::Null));
        }
        SubscriptionCommand::Delete { id } => {
            client.call(Method::DELETE, ["v1", "subscriptions", &id]).scoped().send().await?;
            output::done(ctx.output, &format!("deleted subscription {id}"));
        }
    }
    Ok(())
}

/// The `PATCH` body: only what was given, `"filter": null` to remove it.
fn update_body(types: Vec<String>, filter: Option<&str>) -> Result<Value, CliError> {
    let mut body = Map::new();
    if !types.is_empty() {
        body.insert("eventTypes".into(), Value::from(types));
    }
    if let Some(filter) = filter {
        body.insert("filter".into(), input::json_arg("--filter", filter)?);
    }
    if body.is_empty() {
        return Err(CliError::usage("subscriptions update needs --event-type or --filter"));
    }
    Ok(Value::Object(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_update_sends_only_what_was_given() {
        let body = update_body(vec!["a.b".into(), "c.d".into()], None).unwrap();
        assert_eq!(body, json!({"eventTypes": ["a.b", "c.d"]}));
        let body = update_body(Vec::new(), Some("null")).unwrap();
        assert_eq!(body, json!({"filter": null}));
        let body = update_body(vec!["*".into()], Some(r#"{"data.n":{"$gt":1}}"#)).unwrap();
        assert_eq!(body, json!({"eventTypes": ["*"], "filter": {"data.n": {"$gt": 1}}}));
        assert!(update_body(Vec::new(), None).is_err());
        assert!(update_body(Vec::new(), Some("{")).is_err());
    }
}
