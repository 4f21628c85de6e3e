//! `herald tenants`: tenants and their API keys (admin token only).

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;

use super::Ctx;
use crate::error::CliError;
use crate::options::ListArgs;
use crate::output::{self, Column};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// List tenants.
    List(ListArgs),
    /// Show one tenant.
    Get { id: String },
    /// Create a tenant.
    Create {
        /// Letters, digits, `-`, `_`, `.`, `~`.
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
    },
    /// Delete a tenant with everything it owns.
    Delete { id: String },
    /// A tenant's API keys.
    #[command(subcommand)]
    Keys(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// List a tenant's API keys (without the keys themselves).
    List {
        #[arg(value_name = "TENANT")]
        tenant_id: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Create an API key; the key (hk_…) is shown only in this answer.
    Create {
        #[arg(value_name = "TENANT")]
        tenant_id: String,
        /// A label for people; not secret.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Revoke an API key.
    Revoke {
        #[arg(value_name = "TENANT")]
        tenant_id: String,
        key_id: String,
    },
}

const TENANT_COLUMNS: &[Column] = &[("ID", "id"), ("NAME", "name"), ("CREATED", "createdAt")];
const KEY_COLUMNS: &[Column] = &[("ID", "id"), ("NAME", "name"), ("CREATED", "createdAt")];

pub async fn run(ctx: &Ctx, command: TenantCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    match command {
        TenantCommand::List(ListArgs { limit }) => {
            let items = client.list(client.call(Method::GET, ["v1", "tenants"]), limit).await?;
            output::list(ctx.output, &items, TENANT_COLUMNS);
        }
        TenantCommand::Get { id } => {
            let tenant = client.call(Method::GET, ["v1", "tenants", &id]).send().await?;
            output::one(ctx.output, &tenant.unwrap_or_default());
        }
        TenantCommand::Create { id, name } => {
            let body = json!({"id": id, "name": name});
            let tenant = client.call(Method::POST, ["v1", "tenants"]).json(&body).send().await?;
            output::one(ctx.output, &tenant.unwrap_or_default());
        }
        TenantCommand::Delete { id } => {
            client.call(Method::DELETE, ["v1", "tenants", &id]).send().await?;
            output::done(ctx.output, &format!("deleted tenant {id}"));
        }
        TenantCommand::Keys(KeyCommand::List { tenant_id, list }) => {
            let call = client.call(Method::GET, ["v1", "tenants", &tenant_id, "api-keys"]);
            let items = client.list(call, list.limit).await?;
            output::list(ctx.output, &items, KEY_COLUMNS);
        }
        TenantCommand::Keys(KeyCommand::Create { tenant_id, name }) => {
            let call = client.call(Method::POST, ["v1", "tenants", &tenant_id, "api-keys"]);
            let key = call.json(&json!({"name": name})).send().await?;
            output::one(ctx.output, &key.unwrap_or_default());
        }
        TenantCommand::Keys(KeyCommand::Revoke { tenant_id, key_id }) => {
            client.call(Method::DELETE, ["v1", "tenants", &tenant_id, "api-keys", &key_id]).send().await?;
            output::done(ctx.output, &format!("revoked API key {key_id} of tenant {tenant_id}"));
        }
    }
    Ok(())
}
