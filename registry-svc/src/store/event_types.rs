//! The event type catalogue's records: each type under its name, its
//! integer code claimed by a key of its own, and the catalogue's index.

use std::sync::LazyLock;

use redis::Script;

use herald_common::model::EventTypeRecord;

use super::{EventTypeWrite, Store};
use crate::error::Result;
use crate::validate::Page;

/// Creates or replaces an event type and moves its integer code claim.
/// KEYS: record, index, new code key, old code key (an absent code's key is
/// the record's own, so every key stays in the caller's slot on a cluster).
/// ARGV: json, name, 'create'|'update', expected current json (update),
/// '1' when there is a new code, '1' when there was an old code.
/// Answers 0 written, 1 exists (create), 2 code taken, 3 missing (update),
/// 4 changed since read (update).
static PUT_EVENT_TYPE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if ARGV[3] == 'create' then
  if current then return 1 end
else
  if not current then return 3 end
  if current ~= ARGV[4] then return 4 end
end
local has_new, has_old = ARGV[5] == '1', ARGV[6] == '1'
if has_new then
  local owner = redis.call('GET', KEYS[3])
  if owner and owner ~= ARGV[2] then return 2 end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
if has_old and (not has_new or KEYS[4] ~= KEYS[3]) and redis.call('GET', KEYS[4]) == ARGV[2] then
  redis.call('DEL', KEYS[4])
end
if has_new then redis.call('SET', KEYS[3], ARGV[2]) end
return 0
",
    )
});

impl Store {
    pub async fn event_type(&self, name: &str) -> Result<Option<(EventTypeRecord, String)>> {
        self.get_json_with_raw(&self.keys.event_type(name)).await
    }

    pub async fn event_type_by_code(&self, code: i64) -> Result<Option<String>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(self.keys.event_type_code(code)).query_async(&mut conn).await?)
    }

    /// Writes an event type; `expected` is the JSON read before an update.
    pub async fn put_event_type(
        &self,
        record: &EventTypeRecord,
        previous: Option<(&EventTypeRecord, &str)>,
    ) -> Result<EventTypeWrite> {
        let record_key = self.keys.event_type(&record.name);
        let new_code = record.code.map(|c| self.keys.event_type_code(c));
        let old_code = previous.and_then(|(p, _)| p.code).map(|c| self.keys.event_type_code(c));
        let flag = |code: &Option<String>| if code.is_some() { "1" } else { "0" };
        let mut conn = self.conn.clone();
        let answer: i64 = PUT_EVENT_TYPE
            .key(&record_key)
            .key(self.keys.event_types())
            .key(new_code.as_deref().unwrap_or(&record_key))
            .key(old_code.as_deref().unwrap_or(&record_key))
            .arg(serde_json::to_string(record)?)
            .arg(&record.name)
            .arg(if previous.is_some() { "update" } else { "create" })
            .arg(previous.map(|(_, raw)| raw).unwrap_or_default())
            .arg(flag(&new_code))
            .arg(flag(&old_code))
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer {
            0 => EventTypeWrite::Written,
            1 => EventTypeWrite::Exists,
            2 => EventTypeWrite::CodeTaken,
            3 => EventTypeWrite::Missing,
            _ => EventTypeWrite::Changed,
        })
    }

    pub async fn delete_event_type(&self, record: &EventTypeRecord) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.keys.event_type(&record.name))
            .ignore()
            .zrem(self.keys.event_types(), &record.name)
            .ignore();
        if let Some(code) = record.code {
            pipe.del(self.keys.event_type_code(code)).ignore();
        }
        self.run_atomic(&pipe).await
    }

    pub async fn list_event_types(&self, page: &Page) -> Result<(Vec<EventTypeRecord>, Option<String>)> {
        self.page_records(&self.keys.event_types(), page, |name| self.keys.event_type(name)).await
    }

    /// Which of `names` are in the catalogue.
    pub async fn event_types_exist(&self, names: &[String]) -> Result<Vec<bool>> {
        let mut pipe = redis::pipe();
        for name in names {
            pipe.exists(self.keys.event_type(name));
        }
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }
}
