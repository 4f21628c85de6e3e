//! What Redis spends on a scenario: commands by name (`INFO commandstats`)
//! and `used_memory`, read before the first publish and again once the
//! dispatcher has stored every outcome, so the figures are per settled
//! delivery and include everything amortized over them (reads, leases,
//! claims, health writes). The benchmark's own `INFO` calls are left out.
//! On a cluster every figure is the sum over its masters, and settlement is
//! counted over every dispatcher.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use redis::aio::MultiplexedConnection;

/// One reading of Redis's counters.
#[derive(Clone, Debug, Default)]
pub struct RedisReading {
    calls: BTreeMap<String, u64>,
    used_memory: u64,
}

/// One reading summed over `nodes` (one connection per server).
pub async fn read(nodes: &mut [MultiplexedConnection]) -> Result<RedisReading> {
    let mut sum = RedisReading::default();
    for conn in nodes {
        let stats: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
        let memory: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
        for (name, calls) in parse_commandstats(&stats) {
            *sum.calls.entry(name).or_insert(0) += calls;
        }
        sum.used_memory += info_field(&memory, "used_memory").unwrap_or(0);
    }
    Ok(sum)
}

/// Every command a server has run since it started, its benchmark's
/// `INFO` calls left out.
pub async fn total_calls(conn: &mut MultiplexedConnection) -> Result<u64> {
    let stats: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await?;
    Ok(parse_commandstats(&stats).values().sum())
}

/// `cmdstat_xack:calls=12,usec=…` → `xack` → 12. Subcommands (`xinfo|groups`) keep their name.
fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| name != "info")
        .collect()
}

fn info_field(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().parse().ok())
}

/// Redis's cost between two readings, spread over `deliveries`.
#[derive(Clone, Debug, Default)]
pub struct RedisCost {
    pub deliveries: u64,
    /// Commands by name, most frequent first.
    pub by_command: Vec<(String, u64)>,
    pub memory_bytes: i64,
}

impl RedisCost {
    pub fn between(before: &RedisReading, after: &RedisReading, deliveries: u64) -> Self {
        let mut by_command: Vec<(String, u64)> = after
            .calls
            .iter()
            .map(|(name, &n)| (name.clone(), n.saturating_sub(before.calls.get(name).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        by_command.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        RedisCost { deliveries, by_command, memory_bytes: after.used_memory as i64 - before.used_memory as i64 }
    }

    pub fn commands_per_delivery(&self) -> f64 {
        self.by_command.iter().map(|(_, n)| *n).sum::<u64>() as f64 / self.deliveries.max(1) as f64
    }

    pub fn bytes_per_delivery(&self) -> f64 {
        self.memory_bytes as f64 / self.deliveries.max(1) as f64
    }

    /// `4.02 (evalsha 1.00, xack 1.00, …)`: the total and its largest parts.
    pub fn breakdown(&self) -> String {
        let per = |n: u64| n as f64 / self.deliveries.max(1) as f64;
        let parts: Vec<String> = self
            .by_command
            .iter()
            .filter(|(_, n)| per(*n) >= 0.005)
            .map(|(name, n)| format!("{name} {:.2}", per(*n)))
            .collect();
        format!("{:.2} ({})", self.commands_per_delivery(), parts.join(", "))
    }
}

/// Waits until the dispatchers together have counted `expected` more
/// settled attempts than `before` (their `herald_deliveries_total`), so the
/// outcome writes are in the reading; at most `limit`.
pub async fn wait_settled(
    http: &reqwest::Client,
    dispatch_admins: &[String],
    before: f64,
    expected: u64,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if settled_attempts(http, dispatch_admins).await - before >= expected as f64 {
            // Settlements are acknowledged in the same step; a beat for the
            // last index trims that follow them.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("the dispatchers had not counted every settlement after {}s", limit.as_secs());
}

/// `herald_deliveries_total`, all outcomes, summed over the dispatchers (a
/// dispatcher that does not answer counts 0).
pub async fn settled_attempts(http: &reqwest::Client, dispatch_admins: &[String]) -> f64 {
    let mut total = 0.0;
    for admin in dispatch_admins {
        let Ok(answer) = http.get(format!("{admin}/metrics")).send().await else { continue };
        let text = answer.text().await.unwrap_or_default();
        total += text
            .lines()
            .filter(|l| l.starts_with("herald_deliveries_total"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum::<f64>();
    }
    total
}
