//! Parking: the jobs of an endpoint whose actor's queue is full wait in a
//! list of their own (`{pN}:park:{endpoint}`) instead of going round
//! through the retry set every second, which would cost a write, a read and
//! a settlement per job per second and keep the partition's reader busy for
//! every other endpoint. A job is parked once, in the same `MULTI` that
//! acknowledges its stream entry, and fed back into the stream in chunks as
//! the queue drains ([`Records::unpark`]); `{pN}:parked` names the endpoints
//! with parked jobs, so a new owner of the partition finds them.

use std::sync::LazyLock;

use herald_common::model::Job;
use redis::Script;

use super::retry_set::{ADD_JOB_LUA, encode_job};
use super::writer::Write;
use super::{Entry, Records};
use crate::error::DispatchError;

/// KEYS: the park list, the partition's parked set, the partition stream.
/// ARGV: the endpoint id, how many jobs to move. Moves up to that many jobs
/// from the head of the list to the stream; answers {moved, left}.
static UNPARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"#!lua
{ADD_JOB_LUA}
local members = redis.call('LPOP', KEYS[1], tonumber(ARGV[2]))
local moved = 0
if members then
  for _, member in ipairs(members) do moved = moved + add_job(KEYS[3], member) end
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
return {{moved, left}}
"
    ))
});

impl Records {
    /// Parks jobs (all of one endpoint's partition), acknowledging their
    /// stream entries in the same step.
    pub async fn park(&self, jobs: &[(&Job, &Entry)]) -> Result<(), DispatchError> {
        let writes = jobs
            .iter()
            .map(|(job, entry)| Write {
                shard: self.keys.record_shard(entry.partition),
                bucket: 0,
                fields: Vec::new(),
                delivered: None,
                retry: None,
                ack: Some((entry.partition, entry.id.clone())),
                park: Some((entry.partition, job.endpoint_id.clone(), encode_job(job))),
            })
            .collect();
        self.writer.write(writes, None).await
    }

    /// Moves up to `count` parked jobs of an endpoint back into its
    /// partition's stream. Answers how many moved and how many are left.
    pub async fn unpark(&self, partition: u32, endpoint_id: &str, count: usize) -> Result<(u64, u64), DispatchError> {
        let mut conn = self.conn.clone();
        let answer: (u64, u64) = UNPARK
            .key(self.keys.park_list(partition, endpoint_id))
            .key(self.keys.parked_endpoints(partition))
            .key(self.keys.partition_stream(partition))
            .arg(endpoint_id)
            .arg(count.max(1))
            .invoke_async(&mut conn)
            .await?;
        Ok(answer)
    }

    /// The endpoints of a partition with parked jobs.
    pub async fn parked_endpoints(&self, partition: u32) -> Result<Vec<String>, DispatchError> {
        let mut conn = self.conn.clone();
        let endpoints: Vec<String> =
            redis::cmd("SMEMBERS").arg(self.keys.parked_endpoints(partition)).query_async(&mut conn).await?;
        Ok(endpoints)
    }
}
