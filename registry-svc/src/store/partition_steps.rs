//! Publishing on a Redis Cluster, where an event's payload and the streams
//! of the partitions it goes to sit in different slots: one step that
//! stores each payload (`SET … NX GET` in its home partition's slot), then
//! one atomic step per partition touched that appends that partition's
//! jobs of every event in the batch.
//!
//! A publish can stop between steps (a registry killed, a shard refusing
//! writes). So each partition step marks itself done for the idempotency
//! window, once per publish call (the call is named in each stored event's
//! header), and appends only when it set the mark; a publish of a stored id
//! within the window runs the partition steps again for that event: where
//! its first call's mark is missing it appends the event's jobs and notes
//! the event as taken over, which that call's step skips should it still
//! run. No delivery is lost or doubled, and the answer is the first
//! publish's count. Events stored without a call (by an earlier version)
//! keep a marker of their own. The event log entry (in the registry's
//! slot) is written with the steps of a new event.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use herald_common::event_index;
use herald_common::stored_event::{self, EventHeader};
use herald_common::{ids, time_fmt};
use redis::Script;

use super::Store;
use super::publishing::{Enqueue, Enqueued, oldest_logged, push_job};
use crate::error::Result;

/// One partition's step, atomic. KEYS: the partition stream, this call's
/// mark and takeovers for the partition, then per event stored by an
/// earlier call that call's mark and takeovers, and per event stored
/// without a call its own marker. ARGV: idempotency ms, event count, then
/// per event how it is guarded (`n` new in this call, `r` stored by an
/// earlier call, `e` stored without one), its takeover member, its job
/// count and per job its field count followed by field/value pairs.
/// Answers one byte per event: 1 where it appended the event's jobs.
/// The shebang makes a Redis at `maxmemory` refuse it before any write.
static PARTITION_STEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"#!lua
local window = ARGV[1]
local a, k = 3, 4
local fresh = {}
local marked, taken
for e = 1, tonumber(ARGV[2]) do
  local guard, member = ARGV[a], ARGV[a + 1]
  local append
  if guard == 'n' then
    if marked == nil then
      marked = redis.call('SET', KEYS[2], '1', 'NX', 'PX', window) ~= false
      taken = {}
      if marked then
        for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do taken[m] = true end
      end
    end
    append = marked and not taken[member]
  elseif guard == 'r' then
    append = redis.call('EXISTS', KEYS[k]) == 0 and redis.call('SADD', KEYS[k + 1], member) == 1
    if append then redis.call('PEXPIRE', KEYS[k + 1], window) end
    k = k + 2
  else
    append = redis.call('SET', KEYS[k], '1', 'NX', 'PX', window) ~= false
    k = k + 1
  end
  fresh[e] = append and '\1' or '\0'
  local jobs = tonumber(ARGV[a + 2])
  a = a + 3
  for i = 1, jobs do
    local n = tonumber(ARGV[a])
    if append then
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

/// What one partition's step is made from: the call's events and how each
/// is guarded, in call order (an event no step appends for, a duplicate
/// past the window, keeps `New`, never read).
struct PartitionStep<'a> {
    partition: u32,
    publish_call: u64,
    calls: &'a [Enqueue<'a>],
    guards: &'a [Guard],
}

/// How a partition step guards one event's jobs against appending twice.
#[derive(Clone, Copy)]
enum Guard {
    /// New in this call: the call's mark for the partition.
    New,
    /// Stored by the earlier call named: that call's mark, or a takeover.
    EarlierCall(u64),
    /// Stored without a call, by an earlier version: a marker per event.
    OwnMarker,
}

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
        let publish_call = ids::new_publish_call();
        let mut pipe = redis::pipe();
        for call in calls {
            pipe.cmd("SET")
                .arg(self.keys.event(call.tenant, &call.event.id))
                .arg(call.stored_in_call(now, publish_call)?)
                .arg("NX")
                .arg("PX")
                .arg(retention_ms.max(1))
                .arg("GET");
        }
        let mut conn = self.conn.clone();
        let stored: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
        let window = i64::try_from(idempotency_ms).unwrap_or(i64::MAX);
        let mut answers = Vec::with_capacity(calls.len());
        let mut guards = Vec::with_capacity(calls.len());
        let mut steps: BTreeMap<u32, Vec<(usize, usize)>> = BTreeMap::new();
        let mut log = redis::pipe();
        let oldest = oldest_logged(now, retention_ms);
        for (c, (call, before)) in calls.iter().zip(&stored).enumerate() {
            let (answer, guard) = match before {
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
                    (Enqueued { duplicate: false, deliveries: call.jobs.len() as u32 }, Some(Guard::New))
                }
                Some(before) => match EventHeader::read(before) {
                    Some(header) if now.saturating_sub(header.published_ms) < window => {
                        let guard = header.publish_call.map_or(Guard::OwnMarker, Guard::EarlierCall);
                        (Enqueued { duplicate: true, deliveries: header.deliveries }, Some(guard))
                    }
                    _ => (Enqueued { duplicate: true, deliveries: 0 }, None),
                },
            };
            answers.push(answer);
            guards.push(guard.unwrap_or(Guard::New));
            if guard.is_some() {
                for (i, (partition, _)) in call.jobs.iter().enumerate() {
                    steps.entry(*partition).or_default().push((c, i));
                }
            }
        }
        let mut pipe = redis::pipe();
        for (partition, jobs) in &steps {
            let step = PartitionStep { partition: *partition, publish_call, calls, guards: &guards };
            pipe.invoke_script(&self.partition_step(&step, jobs, idempotency_ms));
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
    fn partition_step(
        &self,
        step: &PartitionStep<'_>,
        jobs: &[(usize, usize)],
        idempotency_ms: u64,
    ) -> redis::ScriptInvocation<'static> {
        let partition = step.partition;
        let mut inv = PARTITION_STEP.prepare_invoke();
        inv.key(self.keys.partition_stream(partition))
            .key(self.keys.publish_call_marker(partition, step.publish_call))
            .key(self.keys.publish_call_takeovers(partition, step.publish_call));
        let mut events: Vec<(usize, Vec<usize>)> = Vec::new();
        for (c, i) in jobs {
            match events.last_mut() {
                Some((last, list)) if last == c => list.push(*i),
                _ => events.push((*c, vec![*i])),
            }
        }
        inv.arg(idempotency_ms.max(1)).arg(events.len());
        for (c, indexes) in &events {
            let call = &step.calls[*c];
            let guard = match step.guards[*c] {
                Guard::New => "n",
                Guard::EarlierCall(earlier) => {
                    inv.key(self.keys.publish_call_marker(partition, earlier))
                        .key(self.keys.publish_call_takeovers(partition, earlier));
                    "r"
                }
                Guard::OwnMarker => {
                    inv.key(self.keys.publish_marker(partition, call.tenant, &call.event.id));
                    "e"
                }
            };
            inv.arg(guard).arg(format!("{}/{}", call.tenant, call.event.id)).arg(indexes.len());
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
