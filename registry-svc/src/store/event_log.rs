//! Reading the event log: a tenant's log entries in either order, and the
//! stored events they name (both written by the publish steps), and the
//! jobs a replay adds.

use herald_common::event_index::EventIndexEntry;
use herald_common::model::Job;
use herald_common::stored_event;

use super::Store;
use crate::error::Result;

/// Adds a delivery id to its stored event's ids, if the event is of the
/// layout that keeps them (see [`stored_event`]).
const LIST_DELIVERY: &str = r"
if redis.call('GETRANGE', KEYS[1], 0, 2) == 'h2 ' then return redis.call('APPEND', KEYS[1], ARGV[1]) end
return 0
";

/// Which way a read of the event log goes.
#[derive(Clone, Copy, Debug)]
pub enum LogOrder {
    NewestFirst,
    OldestFirst,
}

impl Store {
    /// Up to `count` log entries between two stream range bounds, in
    /// `order` (newest first from `upper` down to `lower`, or oldest first
    /// up); entries that do not read as the publish step writes them are
    /// left out.
    pub async fn event_log_entries(
        &self,
        tenant: &str,
        order: LogOrder,
        (lower, upper): (&str, &str),
        count: usize,
    ) -> Result<Vec<EventIndexEntry>> {
        let (read, from, to) = match order {
            LogOrder::NewestFirst => ("XREVRANGE", upper, lower),
            LogOrder::OldestFirst => ("XRANGE", lower, upper),
        };
        let mut command = redis::cmd(read);
        command.arg(self.keys.tenant_events(tenant)).arg(from).arg(to).arg("COUNT").arg(count);
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = command.query_async(&mut conn).await?;
        Ok(entries.iter().filter_map(|(id, fields)| EventIndexEntry::from_stream(id, fields)).collect())
    }

    /// Appends jobs to their partition streams (replays; publishing has its
    /// own atomic step), each after its delivery id joined its stored
    /// event's ids, so it is listed with the event's others. A crash in
    /// between leaves an id with no delivery, which listings skip.
    pub async fn append_jobs(&self, jobs: &[(u32, Job)]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (_, job) in jobs {
            let Some(id) = stored_event::delivery_id_bytes(&job.delivery_id) else { continue };
            // Sent whole each time (replays are rare), so a Redis that
            // lost its script cache needs no second round trip.
            pipe.cmd("EVAL")
                .arg(LIST_DELIVERY)
                .arg(1)
                .arg(self.keys.event(&job.tenant, &job.event_id))
                .arg(id.as_slice());
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await?;
        let mut pipe = redis::pipe();
        for (partition, job) in jobs {
            let mut fields: Vec<(&str, String)> = Vec::with_capacity(job.field_count());
            job.visit_fields(|name, value| fields.push((name, value.to_owned())));
            pipe.xadd(self.keys.partition_stream(*partition), "*", &fields).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// Stored events (header line and body), `None` where one expired. One
    /// `GET` each in a pipeline, as events sit in many slots on a cluster.
    pub async fn stored_events(&self, tenant: &str, ids: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.get(self.keys.event(tenant, id));
        }
        let mut conn = self.conn.clone();
        Ok(pipe.query_async(&mut conn).await?)
    }
}
