//! The retry set's members and the Lua that moves them back into a stream.
//!
//! A member is a job's stream fields as a JSON object of strings
//! ([`encode_job`]), so a script can `XADD` it back without knowing what a
//! job is ([`ADD_JOB_LUA`]); park lists hold the same members. The pump
//! ([`PUMP`]) moves up to [`PUMP_BATCH`] due members into the stream and
//! removes them from the set, atomically, so a job is never both waiting
//! and queued, and answers the score of the next member so the caller
//! sleeps until then.

use std::sync::LazyLock;

use herald_common::model::{Job, Millis};
use herald_common::redis_conn::RedisConn;
use redis::Script;
use serde_json::{Map, Value};

use crate::error::DispatchError;

/// Most jobs moved by one pump step.
pub const PUMP_BATCH: usize = 256;

/// The retry-set member of a job: its stream fields as a JSON object.
pub fn encode_job(job: &Job) -> String {
    let map: Map<String, Value> = job.fields().into_iter().map(|(k, v)| (k.to_owned(), Value::String(v))).collect();
    Value::Object(map).to_string()
}

/// Reads a retry-set member back; `None` if it is not a job.
pub fn decode_job(member: &str) -> Option<Job> {
    let value: Value = serde_json::from_str(member).ok()?;
    let map = value.as_object()?;
    Job::from_fields(map.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))))
}

/// Lua: `add_job(stream, member)` appends a retry-set member (the JSON of a
/// job's stream fields, [`encode_job`]) to a stream; a member that is not a
/// job is skipped. Shared by every script that moves jobs back to a stream.
pub const ADD_JOB_LUA: &str = r"
local function add_job(stream, member)
  local ok, job = pcall(cjson.decode, member)
  if not ok or type(job) ~= 'table' then return 0 end
  local args = {stream, '*'}
  for k, v in pairs(job) do
    args[#args + 1] = k
    args[#args + 1] = tostring(v)
  end
  redis.call('XADD', unpack(args))
  return 1
end
";

/// Moves due members of a retry set into the stream.
/// KEYS: retry set, stream. ARGV: now ms, batch size.
/// Answers {moved, score of the next member or ''}.
static PUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{ADD_JOB_LUA}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  add_job(KEYS[2], member)
  redis.call('ZREM', KEYS[1], member)
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {{#due, head[2] or ''}}
"
    ))
});

/// Moves up to [`PUMP_BATCH`] members of `retry_set` due at `now` into
/// `stream`. Answers how many moved and the score of the next member
/// (empty when none is left).
pub async fn pump_due(
    conn: &mut RedisConn,
    retry_set: &str,
    stream: &str,
    now: Millis,
) -> Result<(usize, String), DispatchError> {
    Ok(PUMP.key(retry_set).key(stream).arg(now).arg(PUMP_BATCH).invoke_async(conn).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_through_the_retry_set() {
        let job = Job {
            delivery_id: "dlv_1".into(),
            tenant: "acme".into(),
            endpoint_id: "ep_1".into(),
            event_id: "evt_\"quoted\"".into(),
            attempt: 4,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            generation: Some("gen_01".into()),
        };
        let member = encode_job(&job);
        assert_eq!(decode_job(&member), Some(job.clone()));
        let plain = Job { traceparent: None, generation: None, ..job };
        assert_eq!(decode_job(&encode_job(&plain)), Some(plain));
        assert_eq!(decode_job("not json"), None);
        assert_eq!(decode_job("{\"d\":\"x\"}"), None);
    }
}
