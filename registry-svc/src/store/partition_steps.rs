//! Publishing on a Redis Cluster, where an event's payload and the streams
//! of the partitions it goes to sit in different slots: one step that
//! stores each payload (`SET … NX GET` in its home partition's slot), then
//! one atomic step per partition touched that appends that partition's
//! jobs of every event in the batch.
//!
//! A publish can stop between steps (a registry killed, a shard refusing
//! writes). So each partition step first sets a marker for (partition,
//! event) for the idempotency window and appends only when it set it, and a
//! publish of a stored id within the window runs the partition steps again:
//! the missing ones append their jobs, the done ones append nothing. No
//! delivery is lost or doubled, and the answer is the first publish's count.
//! The event log entry (in the registry's slot) is written with the steps
//! of a new event.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use herald_common::event_index;
use herald_common::stored_event::EventHeader;
use herald_common::time_fmt;
use redis::Script;

use super::Store;
use super::publishing::{Enqueue, Enqueued, oldest_logged, push_job};
use crate::error::Result;

/// One partition's step, atomic. KEYS: the partition stream, then one
/// marker per event. ARGV: idempotency ms, event count, then per event its
/// job count and per job its field count followed by field/value pairs.
/// The shebang makes a Redis at `maxmemory` refuse it before any write.
static PARTITION_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
local a = 3
for e = 1, tonumber(ARGV[2]) do
  local jobs = tonumber(ARGV[a])
  local fresh = redis.call('SET', KEYS[1 + e], '1', 'NX', 'PX', ARGV[1])
  a = a + 1
  for i = 1, jobs do
    local n = tonumber(ARGV[a])
    if fresh then
      local args = {KEYS[1], '*'}
      for j = 1, n * 2 do args[2 + j] = ARGV[a + j] end
      redis.call('XADD', unpack(args))
    end
    a = a + 1 + n * 2
  end
end
return 1
",
    )
});

impl Store {
    /// [`Store::enqueue`] on a cluster: the payload step, then the
    /// partition steps of every event that is new or published again within
    /// the window, all partitions in one pipeline.
    pub(super) async fn enqueue_by_partition(
        &self,
        calls: &[Enqueue<'_>],
        retention_ms: u64,
        idempotency_ms: u64,
    ) -> Result<Vec<Enqueued>> {
        let now = time_fmt::now_millis();
        let mut pipe = redis::pipe();
        for call in calls {
            pipe.cmd("SET")
                .arg(self.keys.event(call.tenant, &call.event.id))
                .arg(call.stored(now)?)
                .arg("NX")
                .arg("PX")
                .arg(retention_ms.max(1))
                .arg("GET");
        }
        let mut conn = self.conn.clone();
        let stored: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
        let window = i64::try_from(idempotency_ms).unwrap_or(i64::MAX);
        let mut answers = Vec::with_capacity(calls.len());
        let mut steps: BTreeMap<u32, Vec<(&Enqueue<'_>, usize)>> = BTreeMap::new();
        let mut pipe = redis::pipe();
        let oldest = oldest_logged(now, retention_ms);
        for (call, before) in calls.iter().zip(stored) {
            let (answer, complete) = match before {
                None => {
                    // Logged once, with the partition steps. (A publish cut
                    // short before this write is delivered when published
                    // again, but not listed in the log.)
                    pipe.cmd("XADD")
                        .arg(self.keys.tenant_events(call.tenant))
                        .arg("MINID")
                        .arg("~")
                        .arg(oldest)
                        .arg("*")
                        .arg(event_index::TYPE)
                        .arg(&call.event.event_type)
                        .arg(event_index::ID)
                        .arg(&call.event.id)
                        .ignore();
                    (Enqueued { duplicate: false, deliveries: call.jobs.len() as u32 }, true)
                }
                Some(before) => match EventHeader::read(&before) {
                    Some(header) if now.saturating_sub(header.published_ms) < window => {
                        (Enqueued { duplicate: true, deliveries: header.deliveries }, true)
                    }
                    _ => (Enqueued { duplicate: true, deliveries: 0 }, false),
                },
            };
            answers.push(answer);
            if complete {
                for (i, (partition, _)) in call.jobs.iter().enumerate() {
                    steps.entry(*partition).or_default().push((call, i));
                }
            }
        }
        for (partition, jobs) in &steps {
            let mut inv = PARTITION_STEP.prepare_invoke();
            inv.key(self.keys.partition_stream(*partition));
            // The jobs of one event sit together: `jobs` was filled event by event.
            let mut events: Vec<(&Enqueue<'_>, Vec<usize>)> = Vec::new();
            for (call, i) in jobs {
                match events.last_mut() {
                    Some((last, list)) if std::ptr::eq(*last, *call) => list.push(*i),
                    _ => events.push((call, vec![*i])),
                }
            }
            inv.arg(idempotency_ms.max(1)).arg(events.len());
            for (call, indexes) in &events {
                inv.key(self.keys.publish_marker(*partition, call.tenant, &call.event.id));
                inv.arg(indexes.len());
                for i in indexes {
                    push_job(&mut inv, &call.jobs[*i].1);
                }
            }
            pipe.invoke_script(&inv);
        }
        if pipe.is_empty() {
            return Ok(answers);
        }
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            if !herald_common::redis_conn::is_no_script(&e) {
                return Err(e.into());
            }
            // A node lost its script cache: load it where it is missing
            // and run the steps again (they are idempotent).
            PARTITION_STEP.prepare_invoke().load_async(&mut conn).await?;
            pipe.query_async::<()>(&mut conn).await?;
        }
        Ok(answers)
    }
}
