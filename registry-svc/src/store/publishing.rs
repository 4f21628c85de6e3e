//! The publish path's Redis steps: one pipelined read of what a batch
//! needs to know, the routing inputs of a (tenant, event type), and the
//! atomic publish script.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use herald_common::model::{EndpointRecord, EndpointStatus, Job, SubscriptionRecord};
use redis::{Script, Value as RedisValue};

use super::Store;
use crate::error::Result;

/// The publish step, atomic: remember the id, store the payload once, append
/// one job per endpoint. A repeated id answers the first publish's count.
/// Past the idempotency window, an id whose event is still stored is a
/// duplicate too (answering 0 deliveries): its deliveries may still be
/// retried under that id as `webhook-id`, and must carry the data they were
/// published with, so a stored payload is never replaced.
/// KEYS: idempotency, event, then one partition stream per job.
/// ARGV: payload, retention ms, idempotency ms, job count, then per job its
/// field count followed by field/value pairs.
/// Answers {duplicate (0|1), deliveries}.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local seen = redis.call('GET', KEYS[1])
if seen then return {1, tonumber(seen) or 0} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, 0} end
local jobs = tonumber(ARGV[4])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[1], jobs, 'PX', ARGV[3])
local a = 5
for i = 1, jobs do
  local n = tonumber(ARGV[a])
  local args = {KEYS[2 + i], '*'}
  for j = 1, n * 2 do args[2 + j] = ARGV[a + j] end
  redis.call('XADD', unpack(args))
  a = a + 1 + n * 2
end
return {0, jobs}
",
    )
});

/// What one publish asks the atomic step to do.
pub struct Enqueue<'a> {
    pub tenant: &'a str,
    pub event_id: &'a str,
    pub payload: &'a [u8],
    /// Partition and job, one per endpoint.
    pub jobs: &'a [(u32, Job)],
}

/// Answer of the atomic publish step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub duplicate: bool,
    pub deliveries: u32,
}

/// What publishing learns about tenants and event types in one round trip.
pub struct Lookup {
    /// Per tenant: exists, routing generation.
    pub tenants: HashMap<String, (bool, u64)>,
    /// Per event type: the raw stored record.
    pub event_types: HashMap<String, Option<Vec<u8>>>,
}

impl Store {
    /// Loads the publish script so the first publish (and pipelined
    /// `EVALSHA`s) need no `NOSCRIPT` round trip.
    pub async fn load_scripts(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        PUBLISH.prepare_invoke().load_async(&mut conn).await?;
        Ok(())
    }

    /// Tenant existence, routing generations and event type records for a
    /// whole batch, in one round trip.
    pub async fn publish_lookup(&self, tenants: &[&str], event_types: &[&str]) -> Result<Lookup> {
        let mut pipe = redis::pipe();
        for tenant in tenants {
            pipe.exists(self.keys.tenant(tenant)).get(self.keys.routing_generation(tenant));
        }
        for name in event_types {
            pipe.get(self.keys.event_type(name));
        }
        let mut conn = self.conn.clone();
        let values: Vec<RedisValue> = pipe.query_async(&mut conn).await?;
        let mut values = values.into_iter();
        let mut lookup = Lookup { tenants: HashMap::new(), event_types: HashMap::new() };
        for tenant in tenants {
            let exists = redis::from_redis_value::<bool>(values.next().unwrap_or(RedisValue::Nil))?;
            let generation = redis::from_redis_value::<Option<u64>>(values.next().unwrap_or(RedisValue::Nil))?;
            lookup.tenants.insert((*tenant).to_owned(), (exists, generation.unwrap_or(0)));
        }
        for name in event_types {
            let raw = redis::from_redis_value::<Option<Vec<u8>>>(values.next().unwrap_or(RedisValue::Nil))?;
            lookup.event_types.insert((*name).to_owned(), raw);
        }
        Ok(lookup)
    }

    /// The subscriptions that name `event_type` or `*`, and the status of
    /// every endpoint they point at (endpoints that vanished are absent).
    pub async fn routing_inputs(
        &self,
        tenant: &str,
        event_type: &str,
    ) -> Result<(Vec<SubscriptionRecord>, HashMap<String, (EndpointStatus, String)>)> {
        let mut conn = self.conn.clone();
        let sub_ids: Vec<String> = redis::cmd("SUNION")
            .arg(self.keys.subscription_index(tenant, event_type))
            .arg(self.keys.subscription_index(tenant, "*"))
            .query_async(&mut conn)
            .await?;
        let subs: Vec<SubscriptionRecord> =
            self.mget_json(&sub_ids.iter().map(|s| self.keys.subscription(s)).collect::<Vec<_>>()).await?;
        let endpoint_ids: BTreeSet<&str> =
            subs.iter().filter(|s| s.tenant == tenant).map(|s| s.endpoint_id.as_str()).collect();
        let endpoint_keys: Vec<String> = endpoint_ids.iter().map(|id| self.keys.endpoint(id)).collect();
        let endpoints: Vec<EndpointRecord> = self.mget_json(&endpoint_keys).await?;
        let statuses = endpoints
            .into_iter()
            .filter(|e| e.tenant == tenant)
            .map(|e| (e.id, (e.status, e.generation)))
            .collect::<HashMap<_, _>>();
        Ok((subs, statuses))
    }

    /// Runs the atomic publish step for each event, all in one round trip.
    pub async fn enqueue(
        &self,
        calls: &[Enqueue<'_>],
        retention_ms: u64,
        idempotency_ms: u64,
    ) -> Result<Vec<Enqueued>> {
        let keys = &self.keys;
        let invocations: Vec<_> = calls
            .iter()
            .map(|call| {
                let mut inv = PUBLISH.prepare_invoke();
                inv.key(keys.idempotency(call.tenant, call.event_id)).key(keys.event(call.tenant, call.event_id));
                for (partition, _) in call.jobs {
                    inv.key(keys.partition_stream(*partition));
                }
                inv.arg(call.payload).arg(retention_ms.max(1)).arg(idempotency_ms.max(1)).arg(call.jobs.len());
                for (_, job) in call.jobs {
                    let fields = job.fields();
                    inv.arg(fields.len());
                    for (name, value) in fields {
                        inv.arg(name).arg(value);
                    }
                }
                inv
            })
            .collect();
        let mut pipe = redis::pipe();
        for inv in &invocations {
            pipe.invoke_script(inv);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<(u8, u32)> = match pipe.query_async(&mut conn).await {
            Ok(answers) => answers,
            // Redis lost its script cache (restart, failover, SCRIPT FLUSH).
            // Re-running is safe: an event that did go through answers as a
            // duplicate with its original count and adds no second job.
            Err(e) if herald_common::redis_conn::is_no_script(&e) => {
                PUBLISH.prepare_invoke().load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(answers.into_iter().map(|(dup, deliveries)| Enqueued { duplicate: dup == 1, deliveries }).collect())
    }
}
