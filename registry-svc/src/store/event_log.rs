//! Reading the event log: a tenant's index entries newest first, and the
//! stored events they name (written by the publish steps).

use herald_common::event_index;
use herald_common::model::{Job, Millis};

use super::Store;
use crate::error::Result;

impl Store {
    /// Up to `count` index entries below `upper` (a `BYLEX` bound, or `+`)
    /// and at or after `published_from`, newest first.
    pub async fn event_log_entries(
        &self,
        tenant: &str,
        upper: &str,
        published_from: Option<Millis>,
        count: usize,
    ) -> Result<Vec<String>> {
        let lower = published_from.map_or_else(|| "-".to_owned(), event_index::from_time);
        let mut conn = self.conn.clone();
        let entries: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.tenant_events(tenant))
            .arg(upper)
            .arg(lower)
            .arg("BYLEX")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(entries)
    }

    /// Up to `count` index entries from `lower` to `upper` (`BYLEX`
    /// bounds), oldest first.
    pub async fn event_log_entries_oldest_first(
        &self,
        tenant: &str,
        lower: &str,
        upper: &str,
        count: usize,
    ) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let entries: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.keys.tenant_events(tenant))
            .arg(lower)
            .arg(upper)
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut conn)
            .await?;
        Ok(entries)
    }

    /// Appends jobs to their partition streams (replays; publishing has its
    /// own atomic step).
    pub async fn append_jobs(&self, jobs: &[(u32, Job)]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
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
