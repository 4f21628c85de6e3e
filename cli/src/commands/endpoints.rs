//! `herald endpoints`: where a tenant's webhooks go, their secrets, test
//! sends, health, and sending failed deliveries again.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::Ctx;
use super::recover::{self, RecoverArgs, ReplayArgs};
use crate::error::CliError;
use crate::input;
use crate::options::ListArgs;
use crate::output::{self, Column};

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List endpoints.
    List(ListArgs),
    /// Show one endpoint.
    Get { id: String },
    /// Register an endpoint; the answer holds its signing secret.
    Create(EndpointFields),
    /// Change some of an endpoint's fields (the others are kept; given one
    /// of --retry-schedule and --max-attempts, the policy's other part is
    /// kept too).
    Update {
        id: String,
        #[command(flatten)]
        fields: EndpointFields,
    },
    /// Delete an endpoint and its subscriptions.
    Delete { id: String },
    /// Stop deliveries to an endpoint until it is activated again.
    Deactivate { id: String },
    /// Resume deliveries to a deactivated or disabled endpoint.
    Activate { id: String },
    /// Show the endpoint's signing secret (whsec_…).
    Secret { id: String },
    /// Rotate the signing secret (both sign for a while).
    RotateSecret { id: String },
    /// Send one event to the endpoint now and show the attempt's outcome.
    Test {
        id: String,
        /// The event type to send.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// The event's data: JSON, @file or - (default {}).
        #[arg(long)]
        data: Option<String>,
    },
    /// The live delivery state: circuit breaker, in-flight sends, OAuth token errors.
    Health { id: String },
    /// Send every failed delivery of the endpoint since a time again.
    Recover(RecoverArgs),
    /// Send every event of the endpoint since a time again, whatever its outcome.
    #[command(long_about = "Send every event of the endpoint since a time again, whatever its outcome.\n\n\
        Calls POST /v1/endpoints/{id}/replay {\"since\",\"until\"} and expects 202 {\"count\":N}: \
        it needs a gateway that serves replay (one that does not answers 404 or 405).")]
    Replay(ReplayArgs),
}

/// The endpoint's fields, as flags; `--body` gives any of them as JSON.
#[derive(Debug, Args)]
pub struct EndpointFields {
    /// Where deliveries are POSTed (https:// in production).
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Body format of deliveries.
    #[arg(long, value_parser = ["json", "cloudevents", "cloudevents-binary", "envelope", "template"])]
    pub format: Option<String>,
    /// For --format template: the JSON template (JSON, @file or -).
    #[arg(long)]
    pub template: Option<String>,
    /// Extra header sent with every delivery, as name=value (repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE")]
    pub headers: Vec<String>,
    /// Most requests started in any second.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// Most requests at once.
    #[arg(long)]
    pub max_in_flight: Option<u32>,
    /// `fifo` sends one at a time in publish order.
    #[arg(long, value_parser = ["none", "fifo"])]
    pub ordering: Option<String>,
    /// A label, as key=value (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub metadata: Vec<String>,
    /// For --format envelope: most events per POST.
    #[arg(long)]
    pub max_batch_size: Option<u32>,
    /// CloudEvents abuse-protection handshake before the first delivery.
    #[arg(long)]
    pub handshake: Option<bool>,
    /// How Herald authenticates to the endpoint, as JSON (@file, -), e.g.
    /// {"type":"bearer","token":"…"}.
    #[arg(long)]
    pub auth: Option<String>,
    /// The endpoint's own retry waits before the 2nd, 3rd, … attempt, in
    /// place of the installation's, e.g. 5s,1m,10m (retry.schedule).
    #[arg(long, value_name = "WAITS")]
    pub retry_schedule: Option<String>,
    /// Most attempts, the first included; 1 never retries (retry.maxAttempts).
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// The request body as JSON (@file, -); the flags above override its fields.
    #[arg(long)]
    pub body: Option<String>,
}

impl EndpointFields {
    fn into_body(self) -> Result<Value, CliError> {
        let EndpointFields {
            url,
            description,
            format,
            template,
            headers,
            rate_limit,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            auth,
            retry_schedule,
            max_attempts,
            body,
        } = self;
        let mut map = match body.map(|b| input::json_arg("--body", &b)).transpose()? {
            None => Map::new(),
            Some(Value::Object(map)) => map,
            Some(_) => return Err(CliError::usage("--body must be a JSON object")),
        };
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        };
        set("url", url.map(Value::String));
        set("description", description.map(Value::String));
        set("format", format.map(Value::String));
        set("template", template.map(|t| input::json_arg("--template", &t)).transpose()?);
        set("headers", (!headers.is_empty()).then(|| input::pairs("--header", &headers)).transpose()?);
        set("rateLimitPerSecond", rate_limit.map(Value::from));
        set("maxInFlight", max_in_flight.map(Value::from));
        set("ordering", ordering.map(Value::String));
        set("metadata", (!metadata.is_empty()).then(|| input::pairs("--metadata", &metadata)).transpose()?);
        set("maxBatchSize", max_batch_size.map(Value::from));
        set("handshake", handshake.map(Value::Bool));
        set("auth", auth.map(|a| input::json_arg("--auth", &a)).transpose()?);
        if retry_schedule.is_some() || max_attempts.is_some() {
            // The flags override the fields of a `retry` in --body, not all of it.
            let mut retry = match map.remove("retry") {
                Some(Value::Object(retry)) => retry,
                _ => Map::new(),
            };
            if let Some(raw) = retry_schedule {
                retry.insert("schedule".into(), schedule(&raw)?);
            }
            if let Some(n) = max_attempts {
                retry.insert("maxAttempts".into(), Value::from(n));
            }
            map.insert("retry".into(), Value::Object(retry));
        }
        Ok(Value::Object(map))
    }

    /// Only one of the retry flags: an update keeps the policy's other part.
    fn sets_part_of_retry(&self) -> bool {
        self.retry_schedule.is_some() != self.max_attempts.is_some()
    }
}

/// `5s,1m,10m` as the list of waits `retry.schedule` takes; the API judges
/// each wait and names the one it refuses (`retry.schedule[2]`).
fn schedule(raw: &str) -> Result<Value, CliError> {
    let waits: Vec<&str> = raw.split(',').map(str::trim).collect();
    if waits.iter().any(|w| w.is_empty()) {
        return Err(CliError::usage(format!("--retry-schedule {raw:?} must list waits like 5s,1m,10m")));
    }
    Ok(Value::from(waits))
}

/// Fills in the part of `body`'s retry policy that the flags left out from
/// the endpoint's current one, so `--max-attempts` alone keeps the schedule.
async fn keep_rest_of_retry(ctx: &Ctx, id: &str, body: &mut Value) -> Result<(), CliError> {
    let current = ctx.client.call(Method::GET, ["v1", "endpoints", id]).scoped().send().await?.unwrap_or_default();
    let (Some(Value::Object(current)), Some(Value::Object(retry))) = (current.get("retry"), body.get_mut("retry"))
    else {
        return Ok(());
    };
    for key in ["schedule", "maxAttempts"] {
        if let (false, Some(value)) = (retry.contains_key(key), current.get(key)) {
            retry.insert(key.to_owned(), value.clone());
        }
    }
    Ok(())
}

const COLUMNS: &[Column] =
    &[("ID", "id"), ("URL", "url"), ("STATUS", "status"), ("FORMAT", "format"), ("DESCRIPTION", "description")];

pub async fn run(ctx: &Ctx, command: EndpointCommand) -> Result<(), CliError> {
    let client = &ctx.client;
    let one = |answer: Option<Value>| output::one(ctx.output, &answer.unwrap_or_default());
    match command {
        EndpointCommand::List(ListArgs { limit }) => {
            let items = client.list(client.call(Method::GET, ["v1", "endpoints"]).scoped(), limit).await?;
            output::list(ctx.output, &items, COLUMNS);
        }
        EndpointCommand::Get { id } => one(client.call(Method::GET, ["v1", "endpoints", &id]).scoped().send().await?),
        EndpointCommand::Create(fields) => {
            let body = fields.into_body()?;
            if body.get("url").is_none() {
                return Err(CliError::usage("endpoints create needs --url (or a url in --body)"));
            }
            one(client.call(Method::POST, ["v1", "endpoints"]).scoped().json(&body).send().await?)
        }
        EndpointCommand::Update { id, fields } => {
            let partial_retry = fields.sets_part_of_retry();
            let mut body = fields.into_body()?;
            if body.as_object().is_some_and(Map::is_empty) {
                return Err(CliError::usage("endpoints update needs at least one field to change"));
            }
            if partial_retry {
                keep_rest_of_retry(ctx, &id, &mut body).await?;
            }
            one(client.call(Method::PATCH, ["v1", "endpoints", &id]).scoped().json(&body).send().await?)
        }
        EndpointCommand::Delete { id } => {
            client.call(Method::DELETE, ["v1", "endpoints", &id]).scoped().send().await?;
            output::done(ctx.output, &format!("deleted endpoint {id}"));
        }
        EndpointCommand::Deactivate { id } => {
            one(client.call(Method::POST, ["v1", "endpoints", &id, "deactivate"]).scoped().send().await?)
        }
        EndpointCommand::Activate { id } => {
            one(client.call(Method::POST, ["v1", "endpoints", &id, "activate"]).scoped().send().await?)
        }
        EndpointCommand::Secret { id } => {
            one(client.call(Method::GET, ["v1", "endpoints", &id, "secret"]).scoped().send().await?)
        }
        EndpointCommand::RotateSecret { id } => {
            one(client.call(Method::POST, ["v1", "endpoints", &id, "secret", "rotate"]).scoped().send().await?)
        }
        EndpointCommand::Test { id, kind, data } => {
            let mut body = json!({"eventType": kind});
            if let Some(data) = data {
                body["data"] = input::json_arg("--data", &data)?;
            }
            one(client.call(Method::POST, ["v1", "endpoints", &id, "test"]).scoped().json(&body).send().await?)
        }
        EndpointCommand::Health { id } => {
            one(client.call(Method::GET, ["v1", "endpoints", &id, "health"]).scoped().send().await?)
        }
        EndpointCommand::Recover(args) => recover::recover(ctx, args).await?,
        EndpointCommand::Replay(args) => recover::replay(ctx, args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::args::{Cli, Command};
    use clap::Parser;

    fn fields(args: &[&str]) -> Value {
        let mut argv = vec!["herald", "endpoints", "create"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Endpoints(EndpointCommand::Create(fields)) => fields.into_body().unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_api_fields() {
        let body = fields(&[
            "--url",
            "https://x/hook",
            "--header",
            "x-a=1",
            "--rate-limit",
            "5",
            "--ordering",
            "fifo",
            "--auth",
            r#"{"type":"bearer","token":"t"}"#,
        ]);
        assert_eq!(
            body,
            json!({"url": "https://x/hook", "headers": {"x-a": "1"}, "rateLimitPerSecond": 5,
                   "ordering": "fifo", "auth": {"type": "bearer", "token": "t"}})
        );
        let body = fields(&["--body", r#"{"url":"https://a","description":"d"}"#, "--url", "https://b"]);
        assert_eq!(body, json!({"url": "https://b", "description": "d"}));
    }

    #[test]
    fn retry_flags_make_the_retry_policy() {
        let body = fields(&["--url", "https://x", "--retry-schedule", "5s, 1m,10m", "--max-attempts", "4"]);
        assert_eq!(body["retry"], json!({"schedule": ["5s", "1m", "10m"], "maxAttempts": 4}));
        let body = fields(&["--body", r#"{"url":"https://x","retry":{"schedule":["1s"]}}"#, "--max-attempts", "2"]);
        assert_eq!(body["retry"], json!({"schedule": ["1s"], "maxAttempts": 2}));
        assert!(fields(&["--url", "https://x"]).get("retry").is_none());
        for bad in ["", "5s,,1m", "5s,"] {
            let argv = ["herald", "endpoints", "create", "--url", "https://x", "--retry-schedule", bad];
            match Cli::try_parse_from(argv).unwrap().command {
                Command::Endpoints(EndpointCommand::Create(fields)) => assert!(fields.into_body().is_err(), "{bad:?}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
