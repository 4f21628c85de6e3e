//! Queuing deliveries again by request (`RetryDelivery`, `RecoverEndpoint`).
//!
//! A delivery waiting in a retry set is moved, never copied or dropped: the
//! check that it is still as it was read (same status and attempt count,
//! its retry still waiting), the new job's `XADD`, the `ZREM` of the
//! waiting member and the new state are one script, so Redis refusing
//! writes (`maxmemory`), a dropped connection or a caller's deadline leaves
//! the delivery either untouched or queued. The first write of the script
//! is the one that may grow memory (`XADD`): a Redis that is full refuses
//! it before anything has changed, and the caller is answered
//! `UNAVAILABLE` with the delivery still waiting.

use std::sync::LazyLock;

use herald_common::keys::partition_of;
use herald_common::model::Job;
use herald_common::time_fmt;
use redis::Script;

use super::codec::{State, Waiting, attempt_field, encode_attempt, encode_state, status_code};
use super::{DeliveryRecord, DeliveryStatus, Records, bucket_of};
use crate::error::DispatchError;

/// The state's status and attempt count are read in either stored layout
/// (see `codec`): the first layout's JSON, or the compact one's flags byte
/// and varint.
/// KEYS: the partition's retry set, the delivery's hour bucket, the
/// partition stream, and the hour's delivered bucket (read when the main
/// one has no state, and left without it: the queued state replaces it).
/// ARGV: the delivery id, the status code and attempt
/// count the caller read, the waiting retry member (`''` when none waits),
/// the new state, the latest attempt's own field and value (`''` when
/// none), then the job's stream fields as name/value pairs. Answers 1
/// queued, 0 changed since it was read (the pump already moved the retry,
/// or another request queued it).
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then raw = redis.call('HGET', KEYS[4], ARGV[1]) end
if not raw then return 0 end
local status, count
if string.sub(raw, 1, 1) == '[' then
  local ok, state = pcall(cjson.decode, raw)
  if not ok then return 0 end
  status, count = state[2], state[3]
else
  status, count = (string.byte(raw, 2) or 0) % 4, 0
  local shift, i, byte = 1, 3, 128
  while byte >= 128 do
    byte = string.byte(raw, i) or 0
    count = count + (byte % 128) * shift
    shift, i = shift * 128, i + 1
  end
end
if tostring(status) ~= ARGV[2] or tostring(count) ~= ARGV[3] then return 0 end
local member = ARGV[4]
if member ~= '' and not redis.call('ZSCORE', KEYS[1], member) then return 0 end
local job = {KEYS[3], '*'}
for i = 8, #ARGV do job[#job + 1] = ARGV[i] end
redis.call('XADD', unpack(job))
if member ~= '' then redis.call('ZREM', KEYS[1], member) end
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], ARGV[6], ARGV[7]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('HDEL', KEYS[4], ARGV[1])
return 1
",
    )
});

impl Records {
    /// Queues a new attempt of each delivery now, as `attemptCount + 1` on
    /// the same delivery id and endpoint incarnation: a waiting retry is
    /// taken out of its retry set, the status becomes `pending`, and the job
    /// is appended to the stream of the endpoint's partition, in one atomic
    /// step per delivery. Answers the jobs queued; a delivery whose waiting
    /// retry the pump has already moved to the stream, or that another
    /// request queued first, is skipped, as its attempt is queued already.
    pub async fn requeue(&self, records: &[DeliveryRecord], partitions: u32) -> Result<Vec<Job>, DispatchError> {
        let mut queued = Vec::with_capacity(records.len());
        let mut conn = self.conn.clone();
        for record in records {
            if bucket_of(&record.id).is_none() {
                continue;
            }
            let partition = partition_of(&record.endpoint_id, partitions);
            let job = record.next_job();
            let now = time_fmt::now_millis();
            let state = State {
                status: DeliveryStatus::Pending,
                attempt_count: record.attempt_count,
                updated_at: now,
                next_attempt_at: Some(now),
                waiting: Waiting::Nothing,
                event_type: &record.event_type,
                last_attempt: None,
            };
            let latest = record.attempts.last();
            let mut invocation = REQUEUE.prepare_invoke();
            invocation
                .key(self.keys.retry_set(partition))
                .key(self.bucket_key(&record.id))
                .key(self.keys.partition_stream(partition))
                .key(self.delivered_bucket_key(&record.id))
                .arg(&record.id)
                .arg(status_code(record.status))
                .arg(record.attempt_count)
                .arg(record.retry_member().unwrap_or_default())
                .arg(encode_state(&job, &state))
                .arg(latest.map(|a| attempt_field(&record.id, a.n)).unwrap_or_default())
                .arg(latest.map(|a| encode_attempt(&record.id, a)).unwrap_or_default());
            job.visit_fields(|name, value| {
                invocation.arg(name).arg(value);
            });
            let moved: i64 = invocation.invoke_async(&mut conn).await?;
            if moved == 1 {
                queued.push(job);
            }
        }
        Ok(queued)
    }
}
