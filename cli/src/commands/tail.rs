//! `herald deliveries tail`: follows deliveries as they settle by polling
//! the deliveries list, newest first.
//!
//! The first poll only learns what is there (unless `--since` asks for
//! recent history), so nothing already settled is printed as news; later
//! polls print a line whenever a delivery reaches a settled status or makes
//! another attempt. No clock is compared with the gateway's except for
//! `--since`. Each poll reads pages until one holds nothing new, at most
//! [`MAX_PAGES`], so a busy tenant costs a bounded number of requests; a
//! retry of a delivery older than that window is not seen.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use super::Ctx;
use super::delivery_filter::DeliveryFilter;
use crate::error::CliError;
use crate::input;
use crate::options::Output;
use crate::output::cell;

const PAGE: u32 = 100;
const MAX_PAGES: usize = 10;
/// Deliveries remembered; the oldest are forgotten first.
const MEMORY: usize = 10_000;

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Only this endpoint's deliveries.
    #[arg(long, value_name = "ENDPOINT_ID")]
    pub endpoint: Option<String>,
    /// Only deliveries that settle with this status.
    #[arg(long, value_parser = ["delivered", "retrying", "failed"])]
    pub status: Option<String>,
    /// Seconds between polls (0.2 to 60).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// Also print what settled this long before starting (e.g. 10m) or since an RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    /// Stop after this many lines (default: until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// What was last seen of each delivery: its status and attempt count.
#[derive(Default)]
struct Seen {
    states: HashMap<String, (String, u64)>,
    order: VecDeque<String>,
}

fn state(item: &Value) -> (String, u64) {
    (cell(item, "status"), item.get("attemptCount").and_then(Value::as_u64).unwrap_or(0))
}

impl Seen {
    /// Whether `item` is new or changed since it was last seen.
    fn differs(&self, item: &Value) -> bool {
        self.states.get(&cell(item, "id")) != Some(&state(item))
    }

    /// Records `item`; answers whether it changed since it was last seen.
    fn update(&mut self, item: &Value) -> bool {
        let id = cell(item, "id");
        let state = state(item);
        match self.states.insert(id.clone(), state.clone()) {
            Some(previous) => previous != state,
            None => {
                self.order.push_back(id);
                if self.order.len() > MEMORY
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.states.remove(&oldest);
                }
                true
            }
        }
    }
}

fn line(output: Output, item: &Value) -> String {
    match output {
        Output::Json => item.to_string(),
        Output::Table => format!(
            "{}  {:<9}  {}  {}  {}  {}  attempt {}",
            cell(item, "updatedAt"),
            cell(item, "status"),
            cell(item, "id"),
            cell(item, "endpointId"),
            cell(item, "eventType"),
            cell(item, "eventId"),
            cell(item, "attemptCount"),
        ),
    }
}

pub async fn run(ctx: &Ctx, args: TailArgs) -> Result<(), CliError> {
    let TailArgs { endpoint, status, interval, since, count } = args;
    let interval = Duration::from_secs_f64(if interval.is_finite() { interval.clamp(0.2, 60.0) } else { 1.0 });
    let since = match since {
        Some(raw) => input::parse_time(&input::time_arg("--since", &raw, time::OffsetDateTime::now_utc())?),
        None => None,
    };
    let filter = DeliveryFilter { endpoint, event: None, status };
    let mut seen = Seen::default();
    let mut printed = 0u64;
    let mut first = true;
    let mut unreachable_reported = false;
    eprintln!("following deliveries (Ctrl-C stops)");
    loop {
        let polled = tokio::select! {
            polled = poll(ctx, &filter, &seen) => polled,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match polled {
            Ok(items) => {
                unreachable_reported = false;
                // Oldest first, so lines come out in the order things happened.
                for item in items.iter().rev() {
                    let changed = seen.update(item);
                    let settled = item.get("status").and_then(Value::as_str).is_some_and(|s| s != "pending");
                    let recent = since.is_some_and(|since| {
                        input::parse_time(&cell(item, "updatedAt")).is_some_and(|updated| updated >= since)
                    });
                    if changed && settled && (!first || recent) {
                        crate::output::line(line(ctx.output, item));
                        printed += 1;
                        if count.is_some_and(|count| printed >= count) {
                            return Ok(());
                        }
                    }
                }
                first = false;
            }
            // A gateway restart should not end a tail: say so once and keep polling.
            Err(e @ CliError::Unreachable { .. }) => {
                if !unreachable_reported {
                    eprintln!("{} (still trying)", e.report());
                    unreachable_reported = true;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// The newest deliveries, page by page, until a page brings nothing new.
async fn poll(ctx: &Ctx, filter: &DeliveryFilter, seen: &Seen) -> Result<Vec<Value>, CliError> {
    let client = &ctx.client;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let call =
            filter.apply(client.call(Method::GET, ["v1", "deliveries"]).scoped()).query("limit", PAGE.to_string());
        let answer = call.query_opt("cursor", cursor.as_deref()).send().await?.unwrap_or_default();
        let Some(Value::Array(data)) = answer.get("data") else {
            return Err(CliError::Answer(format!("a list without `data`: {answer}")));
        };
        items.extend(data.iter().cloned());
        cursor = answer.get("nextCursor").and_then(Value::as_str).map(str::to_owned);
        // Older pages only hold news while this one did.
        if cursor.is_none() || !data.iter().any(|item| seen.differs(item)) {
            break;
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_are_news_once() {
        let mut seen = Seen::default();
        let pending = json!({"id": "dlv_1", "status": "pending", "attemptCount": 0});
        let delivered = json!({"id": "dlv_1", "status": "delivered", "attemptCount": 1});
        assert!(seen.update(&pending));
        assert!(seen.update(&delivered));
        assert!(!seen.update(&delivered));
        let retried = json!({"id": "dlv_1", "status": "delivered", "attemptCount": 2});
        assert!(seen.update(&retried));
    }
}
