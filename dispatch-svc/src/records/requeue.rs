//! Queuing deliveries again by request (`RetryDelivery`, `RecoverEndpoint`).
//!
//! A delivery waiting in a retry set is moved, never copied or dropped: the
//! check that it is still waiting (or still settled), the new job's `XADD`,
//! the `ZREM` of the waiting member and the record's new status are one
//! script, so Redis refusing writes (`maxmemory`), a dropped connection or
//! a caller's deadline leaves the delivery either untouched or queued. The
//! first write of the script is the one that may grow memory (`XADD`): a
//! Redis that is full refuses it before anything has changed, and the
//! caller is answered `UNAVAILABLE` with the delivery still waiting.

use std::sync::LazyLock;

use herald_common::keys::partition_of;
use herald_common::model::Job;
use herald_common::time_fmt;
use redis::Script;

use super::{DeliveryRecord, Records};
use crate::error::DispatchError;

/// KEYS: the partition's retry set, the delivery record, the partition
/// stream. ARGV: the waiting retry member (`''` when none waits), the
/// status the caller read, now (ms), then the job's stream fields as
/// name/value pairs. Answers 1 queued, 0 changed since it was read (the
/// pump already moved the retry, or another request queued it).
static REQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local member = ARGV[1]
if member ~= '' then
  if not redis.call('ZSCORE', KEYS[1], member) then return 0 end
elseif redis.call('HGET', KEYS[2], 'status') ~= ARGV[2] then
  return 0
end
local job = {KEYS[3], '*'}
for i = 4, #ARGV do job[#job + 1] = ARGV[i] end
redis.call('XADD', unpack(job))
if member ~= '' then redis.call('ZREM', KEYS[1], member) end
redis.call('HSET', KEYS[2], 'status', 'pending', 'nextAttemptAt', ARGV[3], 'updatedAt', ARGV[3])
redis.call('HDEL', KEYS[2], 'retryMember')
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
            let partition = partition_of(&record.endpoint_id, partitions);
            let job = Job {
                delivery_id: record.id.clone(),
                tenant: record.tenant.clone(),
                endpoint_id: record.endpoint_id.clone(),
                event_id: record.event_id.clone(),
                attempt: record.attempt_count.saturating_add(1),
                traceparent: record.traceparent.clone(),
                generation: record.generation.clone(),
            };
            let now = time_fmt::now_millis();
            let mut invocation = REQUEUE.prepare_invoke();
            invocation
                .key(self.keys.retry_set(partition))
                .key(self.keys.delivery(&record.id))
                .key(self.keys.partition_stream(partition))
                .arg(record.retry_member.as_deref().unwrap_or_default())
                .arg(record.status.as_str())
                .arg(now);
            for (name, value) in job.fields() {
                invocation.arg(name).arg(value);
            }
            let moved: i64 = invocation.invoke_async(&mut conn).await?;
            if moved == 1 {
                queued.push(job);
            }
        }
        Ok(queued)
    }
}
