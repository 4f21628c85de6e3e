//! `herald event-types`: the catalogue. Everyone reads it; the admin writes it.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::Ctx;
use crate::error::CliError;
use crate::input;
use crate::options::ListArgs;
use crate::output::{self, Column};

#[derive(Debug, Subcommand)]
pub enum EventTypeCommand {
    /// List the catalogue.
    List(ListArgs),
    /// Show one event type with its schema.
    Get { name: String },
    /// Add an event type.
    Create {
        /// Letters, digits, `.`, `_` and `-`, e.g. order.shipped.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: EventTypeFields,
    },
    /// Change an event type's description, schema or code (the others are kept).
    Update {
        name: String,
        #[command(flatten)]
        fields: EventTypeFields,
    },
    /// Remove an event type.
    Delete { name: String },
}

#[derive(Debug, Args)]
pub struct EventTypeFields {
    #[arg(long)]
    pub description: Option<String>,
    /// JSON Schema (2020-12) that published data must satisfy: JSON, @file or -.
    #[arg(long)]
    pub schema: Option<String>,
    /// An integer alias.
    #[arg(long)]
    pub code: Option<i64>,
}

impl EventTypeFields {
    /// Sets the given fields on `body`.
    fn apply(self, body: &mut Value) -> Result<(), CliError> {
        let EventTypeFields { description, schema, code } = self;
        if let Some(description) = description {
            body["description"] = Value::String(description);
        }
        if let Some(schema) = schema {
            body["schema"] = input::json_arg("--schema", &schema)?;
        }
        if let Some(code) = code {
            body["code"] = code.into();
        }
        Ok(())
    }
}

const COLUMNS: &[Column] =
    &[("NAME", "name"), ("CODE", "code"), ("DESCRIPTION", "description"), ("UPDATED", "updatedAt")];

pub async fn run(ctx: &Ctx, command: EventTypeCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match command {
        EventTypeCommand::List(ListArgs { limit }) => {
            let items = client.list(client.call(Method::GET, ["v1", "event-types"]), limit).await?;
            output::list(ctx.output, &items, COLUMNS);
        }
        EventTypeCommand::Get { name } => {
            let answer = client.call(Method::GET, ["v1", "event-types", &name]).send().await?;
            output::one(ctx.output, &answer.unwrap_or_default());
        }
        EventTypeCommand::Create { name, fields } => {
            let mut body = json!({"name": name});
            fields.apply(&mut body)?;
            let answer = client.call(Method::POST, ["v1", "event-types"]).json(&body).send().await?;
            output::one(ctx.output, &answer.unwrap_or_default());
        }
        EventTypeCommand::Update { name, fields } => {
            // PUT replaces the whole content, so unchanged fields are sent as they are.
            let current = client.call(Method::GET, ["v1", "event-types", &name]).send().await?.unwrap_or_default();
            let mut body = json!({"name": name});
            for key in ["description", "schema", "code"] {
                if let Some(value) = current.get(key).filter(|v| !v.is_null()) {
                    body[key] = value.clone();
                }
            }
            fields.apply(&mut body)?;
            let answer = client.call(Method::PUT, ["v1", "event-types", &name]).json(&body).send().await?;
            output::one(ctx.output, &answer.unwrap_or_default());
        }
        EventTypeCommand::Delete { name } => {
            client.call(Method::DELETE, ["v1", "event-types", &name]).send().await?;
            output::done(ctx.output, &format!("deleted event type {name}"));
        }
    }
    Ok(())
}
