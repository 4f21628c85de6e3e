//! The publish path's Redis steps: one pipelined read of what a batch
//! needs to know, the routing inputs of a (tenant, event type), and the
//! atomic publish script (one per batch).

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use herald_common::event_index;
use herald_common::model::{EndpointRecord, EndpointStatus, Job, Millis, StoredEvent, SubscriptionRecord};
use herald_common::stored_event::EventHeader;
use herald_common::{ids, time_fmt};
use redis::{Script, ScriptInvocation, Value as RedisValue};

use super::Store;
use crate::error::Result;

/// The publish step for a whole batch, atomic: per event, store it under a
/// free id (`SET … NX GET`, which also answers what is stored there), and
/// only then append one job per endpoint. A stored id is a duplicate: within
/// the idempotency window it answers the first publish's count (read from
/// the stored header, see [`EventHeader`]), past it `0`. Its deliveries may
/// still be retried under that id as `webhook-id` and must carry the data
/// they were published with, so a stored payload is never replaced.
/// The shebang makes a Redis at `maxmemory` refuse the script before its
/// first write rather than stop it halfway.
/// A new event also joins its tenant's event log, which trims entries past
/// the retention as it grows.
/// KEYS: per event, its key, its tenant's event log, then one partition
/// stream per job.
/// ARGV: now ms, retention ms, idempotency ms, event count, the oldest
/// publish time the log keeps, the log's type and id field names, then per
/// event the stored value, its type, its id, the job count and per job its
/// field count followed by field/value pairs. Answers per event
/// {duplicate (0|1), deliveries}.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
local now, retention, window = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local a, k = 8, 1
local answers = {}
for e = 1, tonumber(ARGV[4]) do
  local jobs = tonumber(ARGV[a + 3])
  local old = redis.call('SET', KEYS[k], ARGV[a], 'NX', 'PX', retention, 'GET')
  if old then
    local n, at = string.match(old, '^h%d (%d+) (%d+)')
    if n and now - tonumber(at) < window then answers[e] = {1, tonumber(n)} else answers[e] = {1, 0} end
  else
    answers[e] = {0, jobs}
    redis.call('XADD', KEYS[k + 1], 'MINID', '~', ARGV[5], '*', ARGV[6], ARGV[a + 1], ARGV[7], ARGV[a + 2])
  end
  a = a + 4
  for i = 1, jobs do
    local n = tonumber(ARGV[a])
    if not old then
      local args = {KEYS[k + 1 + i], '*'}
      for j = 1, n * 2 do args[2 + j] = ARGV[a + j] end
      redis.call('XADD', unpack(args))
    end
    a = a + 1 + n * 2
  end
  k = k + 2 + jobs
end
return answers
",
    )
});

/// A job's field count and its fields, as the publish scripts read them.
pub(super) fn push_job(inv: &mut ScriptInvocation<'_>, job: &Job) {
    inv.arg(job.field_count());
    job.visit_fields(|name, value| {
        inv.arg(name).arg(value);
    });
}

/// What one publish asks the atomic step to do.
pub struct Enqueue<'a> {
    pub tenant: &'a str,
    pub event: &'a StoredEvent,
    /// The event's time (its `timestamp`), in ms.
    pub time_ms: Millis,
    /// Partition and job, one per endpoint.
    pub jobs: &'a [(u32, Job)],
}

impl Enqueue<'_> {
    /// The stored header: the delivery count, and the time span the
    /// delivery ids were made in (their ULID times).
    fn header(&self, now: Millis) -> EventHeader {
        let times = self.jobs.iter().filter_map(|(_, job)| ids::created_millis(&job.delivery_id));
        let (first, last) = times.fold((now, now), |(lo, hi), t| (lo.min(t), hi.max(t)));
        EventHeader {
            deliveries: self.jobs.len() as u32,
            published_ms: first,
            span_ms: last - first,
            publish_call: None,
        }
    }

    /// The value stored for the event (see [`herald_common::stored_event`]).
    pub(super) fn stored(&self, now: Millis) -> Result<Vec<u8>> {
        self.stored_under(self.header(now))
    }

    /// [`Enqueue::stored`] on a cluster, naming the publish call `call`
    /// whose partition steps append the event's jobs.
    pub(super) fn stored_in_call(&self, now: Millis, call: u64) -> Result<Vec<u8>> {
        self.stored_under(EventHeader { publish_call: Some(call), ..self.header(now) })
    }

    fn stored_under(&self, header: EventHeader) -> Result<Vec<u8>> {
        let delivery_ids: Vec<&str> = self.jobs.iter().map(|(_, job)| job.delivery_id.as_str()).collect();
        Ok(header.store(self.event, self.time_ms, &delivery_ids)?)
    }
}

/// The oldest publish time a tenant's event log keeps (an `XADD MINID`).
pub(super) fn oldest_logged(now: Millis, retention_ms: u64) -> i64 {
    now.saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX)).max(0)
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

    /// Runs the atomic publish step for the whole batch in one round trip
    /// (on a cluster, one step per partition, see `partition_steps`).
    pub async fn enqueue(
        &self,
        calls: &[Enqueue<'_>],
        retention_ms: u64,
        idempotency_ms: u64,
    ) -> Result<Vec<Enqueued>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        if self.keys.is_sharded() {
            return self.enqueue_by_partition(calls, retention_ms, idempotency_ms).await;
        }
        let keys = &self.keys;
        let now = time_fmt::now_millis();
        let mut inv = PUBLISH.prepare_invoke();
        inv.arg(now).arg(retention_ms.max(1)).arg(idempotency_ms.max(1)).arg(calls.len());
        inv.arg(oldest_logged(now, retention_ms)).arg(event_index::TYPE).arg(event_index::ID);
        for call in calls {
            inv.key(keys.event(call.tenant, &call.event.id)).key(keys.tenant_events(call.tenant));
            for (partition, _) in call.jobs {
                inv.key(keys.partition_stream(*partition));
            }
            inv.arg(call.stored(now)?).arg(&call.event.event_type).arg(&call.event.id).arg(call.jobs.len());
            for (_, job) in call.jobs {
                push_job(&mut inv, job);
            }
        }
        let mut conn = self.conn.clone();
        // `invoke_async` loads the script again when Redis lost it (restart,
        // failover, `SCRIPT FLUSH`) and re-runs it.
        let answers: Vec<(u8, u32)> = inv.invoke_async(&mut conn).await?;
        Ok(answers.into_iter().map(|(dup, deliveries)| Enqueued { duplicate: dup == 1, deliveries }).collect())
    }
}
