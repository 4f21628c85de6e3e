//! Connecting to Redis.
//!
//! Services hold a [`RedisConn`]. Against one Redis it is a
//! [`redis::aio::ConnectionManager`]: one multiplexed connection that
//! pipelines concurrent commands and reconnects by itself after Redis
//! restarts, so no process needs a restart when Redis comes back. Against a
//! Redis Cluster (`HERALD_REDIS_CLUSTER_URLS`) it is a cluster connection
//! that follows the slot map; keys then follow the cluster layout
//! ([`crate::keys::Keys::sharded`]): every atomic step (a script, a
//! `MULTI`) names keys of one slot, and a plain pipeline over several
//! slots is split per slot here.
//! `rediss://` URLs speak TLS (rustls), verified against the Mozilla root
//! certificates or, when `HERALD_REDIS_CA_FILE` names one, a private CA.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{Backoff, retry_until_stopped};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::Result;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where Redis is: one URL, or the seed nodes of a cluster; and, for TLS
/// with a private CA, that CA (PEM).
#[derive(Clone, Debug)]
pub struct RedisTarget {
    pub url: String,
    /// Seed nodes of a Redis Cluster; empty for one Redis at `url`.
    pub cluster: Vec<String>,
    pub root_ca: Option<Arc<[u8]>>,
}

impl RedisTarget {
    /// A URL verified, if `rediss://`, against the public roots.
    pub fn url(url: impl Into<String>) -> Self {
        RedisTarget { url: url.into(), cluster: Vec::new(), root_ca: None }
    }

    /// A Redis Cluster reached through these seed nodes.
    pub fn cluster(nodes: Vec<String>) -> Self {
        RedisTarget { url: String::new(), cluster: nodes, root_ca: None }
    }

    pub fn is_cluster(&self) -> bool {
        !self.cluster.is_empty()
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.root_ca.as_ref().map(|ca| redis::TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) })
    }

    fn client(&self) -> Result<redis::Client> {
        Ok(match self.certificates() {
            Some(certs) => redis::Client::build_with_tls(self.url.as_str(), certs)?,
            None => redis::Client::open(self.url.as_str())?,
        })
    }

    fn cluster_client(&self) -> Result<redis::cluster::ClusterClient> {
        let mut builder = redis::cluster::ClusterClient::builder(self.cluster.iter().map(String::as_str))
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3);
        if let Some(certs) = self.certificates() {
            builder = builder.certs(certs);
        }
        Ok(builder.build()?)
    }

    /// Checks what can be checked without a network: URLs and CA.
    fn validate(&self) -> Result<()> {
        if self.is_cluster() {
            self.cluster_client()?;
        } else {
            self.client()?;
        }
        Ok(())
    }
}

/// A connection to Herald's Redis, cheap to clone (clones share it).
// Not boxed: callers clone the connection for every command they send, and a
// boxed variant would allocate on each clone.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_command(cmd),
            RedisConn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            RedisConn::Cluster(conn) if !cmd.is_transaction() && offset == 0 && count == cmd.len() => {
                Box::pin(spread_by_slot(conn.clone(), cmd))
            }
            RedisConn::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(conn) => conn.get_db(),
            RedisConn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// Runs a (non-atomic) pipeline on a cluster whose commands may name keys
/// of several slots: the cluster client sends a pipeline to one slot's node
/// only, so the commands are split into one pipeline per slot (in their
/// order, so a command still runs after the ones before it on the same
/// key), sent at once, and their answers put back in order.
async fn spread_by_slot(conn: ClusterConnection, pipeline: &Pipeline) -> redis::RedisResult<Vec<Value>> {
    let mut groups: Vec<(Option<Slot>, Vec<usize>, Pipeline)> = Vec::new();
    for (i, cmd) in pipeline.cmd_iter().enumerate() {
        let slot = first_key(cmd).map(Slot::for_key);
        match groups.iter_mut().find(|(s, _, _)| *s == slot) {
            Some((_, indexes, group)) => {
                indexes.push(i);
                group.add_command(cmd.clone());
            }
            None => {
                let mut group = redis::pipe();
                group.add_command(cmd.clone());
                groups.push((slot, vec![i], group));
            }
        }
    }
    let sent = groups.iter().map(|(_, _, group)| {
        let mut conn = conn.clone();
        async move { conn.req_packed_commands(group, 0, group.len()).await }
    });
    let answers = futures::future::join_all(sent).await;
    let mut values = vec![Value::Nil; pipeline.len()];
    for ((_, indexes, _), answer) in groups.iter().zip(answers) {
        for (i, value) in indexes.iter().zip(answer?) {
            values[*i] = value;
        }
    }
    Ok(values)
}

/// The first key a command names: after the name, or after the script and
/// key count of `EVAL`/`EVALSHA`/`FCALL`.
fn first_key(cmd: &Cmd) -> Option<&[u8]> {
    let simple = |arg| match arg {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    };
    let mut args = cmd.args_iter().filter_map(simple);
    let name = args.next()?;
    let scripted = [&b"EVALSHA"[..], b"EVAL", b"FCALL", b"EVALSHA_RO", b"EVAL_RO", b"FCALL_RO"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n));
    if scripted {
        let _script = args.next()?;
        let keys = std::str::from_utf8(args.next()?).ok()?.parse::<usize>().ok()?;
        return if keys > 0 { args.next() } else { None };
    }
    args.next()
}

pub async fn connect(target: &RedisTarget) -> Result<RedisConn> {
    if target.is_cluster() {
        let conn = target.cluster_client()?.get_async_connection().await?;
        return Ok(RedisConn::Cluster(conn));
    }
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    Ok(RedisConn::Single(ConnectionManager::new_with_config(target.client()?, config).await?))
}

/// Whether a Redis error is worth retrying: the connection failed, the
/// server is loading, failing over or resharding, or it refuses writes
/// because it is full (`OOM` at `maxmemory`), which frees up as keys
/// expire. Anything else is a bug or bad data and retrying would only
/// repeat it.
pub fn is_transient(err: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.code() == Some("OOM")
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
}

/// Whether Redis lost its script cache (restart, failover, `SCRIPT FLUSH`),
/// for any command of a pipeline: on a cluster, one node refusing a write
/// must not hide that another node needs the script loaded.
pub fn is_no_script(err: &redis::RedisError) -> bool {
    let no_script = redis::ServerErrorKind::NoScript;
    err.kind() == redis::ErrorKind::Server(no_script)
        || err.clone().into_server_errors().is_some_and(|items| items.iter().any(|(_, e)| e.kind() == Some(no_script)))
}

/// `PING`, for readiness checks.
pub async fn ping(conn: &mut RedisConn) -> std::result::Result<(), String> {
    redis::cmd("PING").query_async::<String>(conn).await.map(|_| ()).map_err(|e| format!("redis: {e}"))
}

/// Connects, retrying with backoff until Redis answers, so a service started
/// before Redis waits instead of exiting. `None` when shutdown came first.
pub async fn connect_until_ready(
    target: &RedisTarget,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<RedisConn>> {
    // A malformed URL or CA will not get better by waiting.
    target.validate()?;
    let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    Ok(retry_until_stopped(
        backoff,
        shutdown,
        || connect(target),
        |e, delay| tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "redis is not reachable yet"),
    )
    .await)
}
