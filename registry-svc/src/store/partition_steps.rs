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
use herald_common::stored_event::{self, EventHeader};
use herald_common::time_fmt;
use redis::Script;

use super::Store;
use super::publishing::{Enqueue, Enqueued, oldest_logged, push_job};
use crate::error::Result;

/// One partition's step, atomic. KEYS: the partition stream, then one
/// marker per event. ARGV: idempotency ms, event count, then per event its
/// job count and per job its field count followed by field/value pairs.
/// Answers one byte per event: 1 where it appended the event's jobs.
/// The shebang makes a Redis at `maxmemory` refuse it before any write.
static PARTITION_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
local a = 3
local fresh = {}
for e = 1, tonumber(ARGV[2]) do
  local jobs = tonumber(ARGV[a])
  local set = redis.call('SET', KEYS[1 + e], '1', 'NX', 'PX', ARGV[1])
  fresh[e] = set and '\1' or '\0'
  a = a + 1
  for i = 1, jobs do
    local n = tonumber(ARGV[a])
    if set then
      local args = {KEYS[1], '*'}
      for j = 1, n * 2 do args[2 + j] = ARGV[a + j] end
      redis.call('XADD', unpack(args))
    end
    a = a + 1 + n * 2
  end
end
return table.concat(fresh)
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
        let mut steps: BTreeMap<u32, Vec<(usize, usize)>> = BTreeMap::new();
        let mut log = redis::pipe();
        let oldest = oldest_logged(now, retention_ms);
        for (c, (call, before)) in calls.iter().zip(&stored).enumerate() {
            let (answer, complete) = match before {
                None => {
                    // Logged once, with the partition steps. (A publish cut
                    // short before this write is delivered when published
                    // again, but not listed in the log.)
                    log.cmd("XADD")
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
                Some(before) => match EventHeader::read(before) {
                    Some(header) if now.saturating_sub(header.published_ms) < window => {
                        (Enqueued { duplicate: true, deliveries: header.deliveries }, true)
                    }
                    _ => (Enqueued { duplicate: true, deliveries: 0 }, false),
                },
            };
            answers.push(answer);
            if complete {
                for (i, (partition, _)) in call.jobs.iter().enumerate() {
                    steps.entry(*partition).or_default().push((c, i));
                }
            }
        }
        let mut pipe = redis::pipe();
        for (partition, jobs) in &steps {
            pipe.invoke_script(&self.partition_step(*partition, calls, jobs, idempotency_ms));
        }
        if pipe.is_empty() && log.is_empty() {
            return Ok(answers);
        }
        // One round trip for the log and the steps, which go to their
        // nodes independently: a node refusing writes stops only its own.
        let mut first = log.clone();
        for command in pipe.cmd_iter() {
            first.add_command(command.clone());
        }
        let fresh: Vec<Vec<u8>> = match first.query_async(&mut conn).await {
            Ok(fresh) => fresh,
            Err(e) if herald_common::redis_conn::is_no_script(&e) => {
                // A node lost its script cache: load it where it is missing
                // and run the steps again (they are idempotent; the log
                // entries went in and are not written twice).
                PARTITION_STEP.prepare_invoke().load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.list_completed(calls, &stored, &steps, &fresh).await?;
        Ok(answers)
    }

    /// One partition's step for its jobs, `(call, job)` indexes in event
    /// order.
    fn partition_step<'a>(
        &self,
        partition: u32,
        calls: &'a [Enqueue<'a>],
        jobs: &[(usize, usize)],
        idempotency_ms: u64,
    ) -> redis::ScriptInvocation<'static> {
        let mut inv = PARTITION_STEP.prepare_invoke();
        inv.key(self.keys.partition_stream(partition));
        let mut events: Vec<(usize, Vec<usize>)> = Vec::new();
        for (c, i) in jobs {
            match events.last_mut() {
                Some((last, list)) if last == c => list.push(*i),
                _ => events.push((*c, vec![*i])),
            }
        }
        inv.arg(idempotency_ms.max(1)).arg(events.len());
        for (c, indexes) in &events {
            let call = &calls[*c];
            inv.key(self.keys.publish_marker(partition, call.tenant, &call.event.id));
            inv.arg(indexes.len());
            for i in indexes {
                push_job(&mut inv, &call.jobs[*i].1);
            }
        }
        inv
    }

    /// A publish of a stored id that completed steps a cut-short publish
    /// left undone made deliveries under ids of its own: they join the
    /// stored event's ids, so they are listed with it. (Not atomic with
    /// the steps: a second crash in between leaves them delivered and
    /// found by id, but not listed.)
    async fn list_completed(
        &self,
        calls: &[Enqueue<'_>],
        stored: &[Option<Vec<u8>>],
        steps: &BTreeMap<u32, Vec<(usize, usize)>>,
        fresh: &[Vec<u8>],
    ) -> Result<()> {
        let mut pipe = redis::pipe();
        for ((_, jobs), fresh) in steps.iter().zip(fresh) {
            let mut events = jobs.iter().map(|(c, _)| *c).collect::<Vec<_>>();
            events.dedup();
            for (c, fresh) in events.into_iter().zip(fresh) {
                let keeps_ids = stored[c].as_deref().and_then(stored_event::delivery_ids_start).is_some();
                if *fresh == 0 || !keeps_ids {
                    continue;
                }
                let call = &calls[c];
                let ids: Vec<u8> = jobs
                    .iter()
                    .filter(|(job_call, _)| *job_call == c)
                    .filter_map(|(_, i)| stored_event::delivery_id_bytes(&call.jobs[*i].1.delivery_id))
                    .flatten()
                    .collect();
                pipe.cmd("APPEND").arg(self.keys.event(call.tenant, &call.event.id)).arg(ids).ignore();
            }
        }
        if !pipe.is_empty() {
            pipe.query_async::<()>(&mut self.conn.clone()).await?;
        }
        Ok(())
    }
}
