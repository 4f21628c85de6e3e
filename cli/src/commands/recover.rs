//! `herald endpoints recover` and `replay`: ask the gateway to send an
//! endpoint's deliveries again, then follow them with a progress bar until
//! none is pending.
//!
//! Re-queued deliveries are listed as `pending` until an attempt settles
//! them, so progress is the count asked for less the endpoint's pending
//! deliveries created since the same time.

use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Ctx;
use crate::error::CliError;
use crate::input;
use crate::options::Output;
use crate::output::cell;

const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub struct RecoverArgs {
    pub id: String,
    /// Failed deliveries since this long ago (30m, 1h, 2d) or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    pub id: String,
    /// Events since this long ago (30m, 1h, 2d) or an RFC 3339 time.
    #[arg(long)]
    pub since: String,
    /// Events up to this long ago or this RFC 3339 time (default: now).
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Return once the gateway accepted, without following the deliveries.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop following after this long (e.g. 10m); the deliveries go on regardless.
    #[arg(long, default_value = "10m")]
    pub wait_timeout: String,
}

pub async fn recover(ctx: &Ctx, args: RecoverArgs) -> Result<(), CliError> {
    let RecoverArgs { id, since, wait } = args;
    let since = input::time_arg("--since", &since, OffsetDateTime::now_utc())?;
    let call = ctx.client.call(Method::POST, ["v1", "endpoints", &id, "recover"]).scoped();
    let answer = call.json(&json!({"since": since})).send().await?.unwrap_or_default();
    let count = answer.get("recovered").and_then(Value::as_u64).unwrap_or(0);
    report(ctx, &answer, &format!("{count} failed deliveries of {id} since {since} queued again"));
    follow(ctx, &id, &since, count, &wait).await
}

pub async fn replay(ctx: &Ctx, args: ReplayArgs) -> Result<(), CliError> {
    let ReplayArgs { id, since, until, wait } = args;
    let now = OffsetDateTime::now_utc();
    let since = input::time_arg("--since", &since, now)?;
    let mut body = json!({"since": since});
    if let Some(until) = until {
        body["until"] = Value::String(input::time_arg("--until", &until, now)?);
    }
    let call = ctx.client.call(Method::POST, ["v1", "endpoints", &id, "replay"]).scoped();
    let answer = match call.json(&body).send().await {
        Err(CliError::Api { status, detail, fields }) if status == 405 || detail == "no such route" => {
            let detail = format!("{detail}: this gateway does not serve replay (POST /v1/endpoints/{{id}}/replay)");
            return Err(CliError::Api { status, detail, fields });
        }
        other => other?.unwrap_or_default(),
    };
    let count = answer.get("count").and_then(Value::as_u64).unwrap_or(0);
    report(ctx, &answer, &format!("{count} deliveries of {id} since {since} queued again"));
    follow(ctx, &id, &since, count, &wait).await
}

fn report(ctx: &Ctx, answer: &Value, message: &str) {
    match ctx.output {
        Output::Json => crate::output::json(answer),
        Output::Table => crate::output::line(message),
    }
}

/// Shows a progress bar until none of the `total` re-sent deliveries is pending.
async fn follow(ctx: &Ctx, id: &str, since: &str, total: u64, wait: &WaitArgs) -> Result<(), CliError> {
    if total == 0 || wait.no_wait {
        return Ok(());
    }
    let limit = input::duration(&wait.wait_timeout)
        .and_then(|d| Duration::try_from(d).ok())
        .ok_or_else(|| CliError::usage(format!("--wait-timeout {:?} is not a duration like 10m", wait.wait_timeout)))?;
    let since = input::parse_time(since);
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} sent {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    loop {
        let pending = pending_since(ctx, id, since, total).await?;
        bar.set_position(total.saturating_sub(pending));
        if pending == 0 {
            bar.finish_with_message("— none pending");
            break;
        }
        if started.elapsed() >= limit {
            bar.abandon_with_message(format!(
                "— {pending} still pending; `herald deliveries tail --endpoint {id}` follows them"
            ));
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = tokio::signal::ctrl_c() => {
                bar.abandon_with_message("— stopped following; the deliveries go on");
                break;
            }
        }
    }
    Ok(())
}

/// The endpoint's pending deliveries created since `since` (at most `cap`).
async fn pending_since(ctx: &Ctx, id: &str, since: Option<OffsetDateTime>, cap: u64) -> Result<u64, CliError> {
    let client = &ctx.client;
    let call =
        client.call(Method::GET, ["v1", "deliveries"]).scoped().query("endpointId", id).query("status", "pending");
    // A few more than asked for: other new deliveries may be pending beside them.
    let limit = u32::try_from(cap.saturating_add(100)).unwrap_or(u32::MAX);
    let items = client.list(call, limit).await?;
    let counted = items
        .iter()
        .filter(|item| match (since, input::parse_time(&cell(item, "createdAt"))) {
            (Some(since), Some(created)) => created >= since,
            _ => true,
        })
        .count() as u64;
    Ok(counted.min(cap))
}
