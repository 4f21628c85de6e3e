//! The Redis the benchmark runs against: one `redis-server`, or with
//! `--cluster` a Redis Cluster of three masters on loopback
//! (`herald_tests::spawn_redis_cluster`), every server with AOF on and
//! `appendfsync everysec`. Owns the servers' processes, the variable that
//! points the services at them, one plain connection per server (its
//! `INFO` counters are its own, so the report sums them), and on a cluster
//! how the partition streams and the commands spread over the masters.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use redis::aio::MultiplexedConnection;

use crate::redis_cost;
use crate::services::Guarded;

/// The report's setup line for each mode.
pub const CLUSTER_SETUP: &str = "three-master Redis Cluster, two dispatchers";
pub const SINGLE_SETUP: &str = "one redis-server, one dispatcher";

/// Dispatchers started with `--cluster`: more than one, so the partitions
/// are shared out by their leases as in a deployment that scales out.
pub const CLUSTER_DISPATCHERS: usize = 2;

/// Every server's durability, as in production: AOF (on in
/// `herald_tests::spawn_redis`) written out once a second.
const SERVER_ARGS: [&str; 2] = ["--appendfsync", "everysec"];

pub struct RedisNodes {
    /// One URL per server (per master on a cluster).
    urls: Vec<String>,
    /// Each master's slot range, in the order of `urls`; `None` for one Redis.
    slots: Option<Vec<(u16, u16)>>,
    /// The `redis-server` processes' pids (a server whose pid could not be
    /// read is left out of the CPU figures).
    pub pids: Vec<u32>,
    _servers: Vec<Guarded>,
}

impl RedisNodes {
    /// One `redis-server` with its data under `dir`.
    pub fn single(dir: &Path) -> RedisNodes {
        let port = herald_tests::free_port();
        let server = Guarded::new("redis-server", herald_tests::spawn_redis(port, dir, &SERVER_ARGS));
        let url = format!("redis://127.0.0.1:{port}");
        herald_tests::wait_for_redis(&url, Duration::from_secs(10));
        RedisNodes {
            pids: server_pid(&url).into_iter().collect(),
            urls: vec![url],
            slots: None,
            _servers: vec![server],
        }
    }

    /// Three masters with their data under `dir`, the cluster formed.
    pub fn cluster(dir: &Path) -> RedisNodes {
        let cluster = herald_tests::spawn_redis_cluster(dir, &SERVER_ARGS);
        let servers = cluster.servers.into_iter().map(|child| Guarded::new("redis-server", child)).collect();
        let (urls, slots): (Vec<String>, Vec<(u16, u16)>) = cluster.nodes.into_iter().unzip();
        let pids = urls.iter().filter_map(|url| server_pid(url)).collect();
        RedisNodes { urls, slots: Some(slots), pids, _servers: servers }
    }

    pub fn is_cluster(&self) -> bool {
        self.slots.is_some()
    }

    /// The variable that points a service at this Redis.
    pub fn service_env(&self) -> (String, String) {
        if self.is_cluster() {
            ("HERALD_REDIS_CLUSTER_URLS".to_owned(), self.urls.join(","))
        } else {
            ("HERALD_REDIS_URL".to_owned(), self.urls[0].clone())
        }
    }

    /// A plain connection to each server, for its own counters.
    pub async fn connections(&self) -> Result<Vec<MultiplexedConnection>> {
        let mut conns = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            conns.push(redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?);
        }
        Ok(conns)
    }

    /// On a cluster, a markdown table of what each master holds of the
    /// `partitions` partition streams (`<prefix>:{p<n>}:jobs`, found by
    /// `SCAN` on the master itself) and of the commands run since the
    /// servers started; `None` for one Redis.
    pub async fn spread(&self, prefix: &str, partitions: u32) -> Result<Option<String>> {
        let Some(slots) = &self.slots else { return Ok(None) };
        let mut masters = Vec::new();
        for (url, slots) in self.urls.iter().zip(slots) {
            let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            let keys = herald_tests::scan_keys(&mut conn, &format!("{prefix}:{{p*}}:jobs")).await;
            let mut streams: Vec<u32> = keys.iter().filter_map(|key| partition_number(prefix, key)).collect();
            streams.sort_unstable();
            let calls = redis_cost::total_calls(&mut conn).await?;
            masters.push((url, slots, streams, calls));
        }
        let streams_total: usize = masters.iter().map(|m| m.2.len()).sum();
        let calls_total: u64 = masters.iter().map(|m| m.3).sum();
        let share = |part: f64, whole: f64| if whole > 0.0 { 100.0 * part / whole } else { 0.0 };
        let mut out = String::from(
            "| master | slots | partition streams | share of streams | commands since start | share of commands |\n\
             |---|---|---|---|---|---|\n",
        );
        for (url, (first, last), streams, calls) in &masters {
            let names: Vec<String> = streams.iter().map(|n| format!("p{n}")).collect();
            let _ = writeln!(
                out,
                "| {} | {first}–{last} | {} ({}) | {:.0}% | {calls} | {:.0}% |",
                url.trim_start_matches("redis://"),
                streams.len(),
                names.join(" "),
                share(streams.len() as f64, streams_total as f64),
                share(*calls as f64, calls_total as f64),
            );
        }
        let _ = writeln!(
            out,
            "\n{streams_total} partition streams found for {partitions} partitions (`{prefix}:{{pN}}:jobs`, \
             each in the slot of its `{{pN}}` tag); the registry's keys all sit in the slot of `{{{prefix}}}`. \
             Commands are counted over the whole run, set-up included."
        );
        Ok(Some(out))
    }
}

/// `herald:{p12}:jobs` → 12.
fn partition_number(prefix: &str, key: &str) -> Option<u32> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{p")?;
    let (number, tail) = rest.split_once('}')?;
    (tail == ":jobs").then_some(())?;
    number.parse().ok()
}

/// The pid of `redis-server` itself (it runs under a shell watchdog).
fn server_pid(url: &str) -> Option<u32> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_connection().ok()?;
    let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
    info.lines().find_map(|l| l.strip_prefix("process_id:")).and_then(|v| v.trim().parse().ok())
}

/// Waits, at most `limit`, until the dispatchers behind `admins` together
/// own all `partitions` and none owns more than its fair share (their
/// `herald_partitions_owned`), so that no partition changes hands while a
/// scenario runs: a partition handed over mid-run would hold its pending
/// entries until the claim idle time. Answers each dispatcher's count as
/// last read.
pub async fn wait_balanced(http: &reqwest::Client, admins: &[String], partitions: u32, limit: Duration) -> Vec<u64> {
    let fair = u64::from(partitions.div_ceil(admins.len().max(1) as u32));
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut owned = Vec::with_capacity(admins.len());
        for admin in admins {
            owned.push(partitions_owned(http, admin).await.unwrap_or(0));
        }
        let balanced = owned.iter().sum::<u64>() == u64::from(partitions) && owned.iter().all(|n| *n <= fair);
        if balanced || std::time::Instant::now() > deadline {
            return owned;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn partitions_owned(http: &reqwest::Client, admin: &str) -> Option<u64> {
    let text = http.get(format!("{admin}/metrics")).send().await.ok()?.text().await.ok()?;
    let value = text.lines().find_map(|l| l.strip_prefix("herald_partitions_owned "))?;
    value.trim().parse::<f64>().ok().map(|v| v as u64)
}
