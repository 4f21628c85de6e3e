//! Reading deliveries back in pages from a tenant's listing index: newest
//! first for the API, oldest first from a time for recovery.
//!
//! A tenant's index is one per record shard (one in all on a single Redis,
//! one per partition on a cluster): each chunk reads every shard's next ids
//! and merges them, keeping only what is certain to be in order, so the
//! cursor (the last id answered) stays stable across shards.
//!
//! The index holds delivery ids only, so a filtered page reads states
//! chunk by chunk until it is full; a page that took too many chunks
//! answers what it found and a cursor to carry on from. A list by event
//! reads only the id range its deliveries were made in (the stored event's
//! header, see [`herald_common::stored_event`]).

use herald_common::ids;
use herald_common::model::Millis;
use herald_common::stored_event::EventHeader;

use super::{DeliveryRecord, DeliveryStatus, Records};
use crate::error::DispatchError;

/// Most index members read per round trip while filling a page.
const LIST_CHUNK: usize = 200;
/// Most chunks scanned for one filtered page; the cursor then resumes.
const LIST_MAX_CHUNKS: usize = 25;
/// Bytes read from a stored event to find its header.
const HEADER_BYTES: isize = 64;

#[derive(Clone, Copy)]
enum Order {
    NewestFirst,
    OldestFirst,
}

/// Which deliveries of a tenant a list shows.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub tenant: String,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Created at or after / before these times.
    pub created_from: Option<Millis>,
    pub created_before: Option<Millis>,
}

impl ListFilter {
    fn keeps(&self, record: &DeliveryRecord) -> bool {
        record.tenant == self.tenant
            && self.endpoint_id.as_ref().is_none_or(|e| *e == record.endpoint_id)
            && self.event_id.as_ref().is_none_or(|e| *e == record.event_id)
            && self.event_type.as_ref().is_none_or(|t| *t == record.event_type)
            && self.status.is_none_or(|s| s == record.status)
    }
}

impl Records {
    /// One page of deliveries, newest first, and the cursor of the next page.
    pub async fn list(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let span = match &filter.event_id {
            Some(event_id) => self.event_span(&filter.tenant, event_id).await?,
            None => None,
        };
        // Bounds in `ZREVRANGEBYLEX` syntax: below the cursor, the event's
        // last delivery and the time asked for, down to the event's first
        // delivery and the time asked for.
        let uppers = [span.map(|(_, last)| last.saturating_add(1)), filter.created_before]
            .into_iter()
            .flatten()
            .map(|ms| ids::floor_id(ids::DELIVERY, ms));
        let upper = cursor.map(str::to_owned).into_iter().chain(uppers).min();
        let mut max = upper.map_or_else(|| "+".to_owned(), |u| format!("({u}"));
        let lower = [span.map(|(first, _)| first), filter.created_from].into_iter().flatten().max();
        let min = lower.map_or_else(|| "-".to_owned(), |ms| format!("[{}", ids::floor_id(ids::DELIVERY, ms)));
        // An endpoint's deliveries are all in its partition's shard.
        let shard = filter.endpoint_id.as_deref().map(|e| self.keys.endpoint_shard(e));
        let mut page: Vec<DeliveryRecord> = Vec::with_capacity(limit);
        for _ in 0..LIST_MAX_CHUNKS {
            let (ids, exhausted) = self.index_chunk(&filter.tenant, shard, Order::NewestFirst, &max, &min).await?;
            let Some(last) = ids.last() else { return Ok((page, None)) };
            max = format!("({last}");
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            for mut record in self.load_many(&refs).await? {
                if !filter.keeps(&record) {
                    continue;
                }
                // Attempts are for a delivery read alone.
                record.attempts.clear();
                // A match beyond a full page: only now is there a next page.
                if page.len() == limit {
                    let cursor = page.last().map(|r| r.id.clone());
                    return Ok((page, cursor));
                }
                page.push(record);
            }
            if exhausted {
                return Ok((page, None));
            }
        }
        let resume = max.trim_start_matches('(').to_owned();
        Ok((page, Some(resume)))
    }

    /// An endpoint's deliveries created at or after `since`, oldest first,
    /// one chunk of the tenant's index at a time: `after` is the cursor the
    /// previous chunk answered. Answers the chunk's deliveries to the
    /// endpoint and its cursor (`None` at the end).
    pub async fn endpoint_deliveries_since(
        &self,
        tenant: &str,
        endpoint_id: &str,
        since: Millis,
        after: Option<&str>,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let min = match after {
            Some(after) => format!("({after}"),
            None => format!("[{}", ids::floor_id(ids::DELIVERY, since)),
        };
        let shard = self.keys.endpoint_shard(endpoint_id);
        let (ids, exhausted) = self.index_chunk(tenant, Some(shard), Order::OldestFirst, &min, "+").await?;
        let cursor = if exhausted { None } else { ids.last().cloned() };
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let records = self.load_many(&refs).await?;
        Ok((records.into_iter().filter(|r| r.tenant == tenant && r.endpoint_id == endpoint_id).collect(), cursor))
    }

    /// The next chunk of a tenant's index from `from` towards `to` (bounds
    /// in `ZRANGEBYLEX` syntax), over one shard or all of them, and whether
    /// nothing lies beyond it. Each shard answers up to a chunk; past the
    /// nearest last id of a shard that had more, another shard's ids could
    /// be missing, so the merge stops there.
    async fn index_chunk(
        &self,
        tenant: &str,
        shard: Option<u32>,
        order: Order,
        from: &str,
        to: &str,
    ) -> Result<(Vec<String>, bool), DispatchError> {
        let shards: Vec<u32> = match shard {
            Some(shard) => vec![shard],
            None => (0..self.keys.record_shards()).collect(),
        };
        let mut pipe = redis::pipe();
        for shard in &shards {
            let command = match order {
                Order::NewestFirst => "ZREVRANGEBYLEX",
                Order::OldestFirst => "ZRANGEBYLEX",
            };
            pipe.cmd(command)
                .arg(self.keys.tenant_deliveries(*shard, tenant))
                .arg(from)
                .arg(to)
                .arg("LIMIT")
                .arg(0)
                .arg(LIST_CHUNK);
        }
        let mut conn = self.conn.clone();
        let answers: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let exhausted = answers.iter().all(|ids| ids.len() < LIST_CHUNK);
        // The nearest of the last ids of the shards that had more.
        let cut = answers.iter().filter(|ids| ids.len() == LIST_CHUNK).filter_map(|ids| ids.last()).cloned();
        let cut = match order {
            Order::NewestFirst => cut.max(),
            Order::OldestFirst => cut.min(),
        };
        let mut ids: Vec<String> = answers.into_iter().flatten().collect();
        match order {
            Order::NewestFirst => {
                ids.sort_unstable_by(|a, b| b.cmp(a));
                if let Some(cut) = &cut {
                    ids.retain(|id| id >= cut);
                }
            }
            Order::OldestFirst => {
                ids.sort_unstable();
                if let Some(cut) = &cut {
                    ids.retain(|id| id <= cut);
                }
            }
        }
        Ok((ids, exhausted))
    }

    /// The creation times (first, last) of an event's deliveries, from its
    /// stored header; `None` when the event is gone or has no header, and
    /// the whole index is read.
    async fn event_span(&self, tenant: &str, event_id: &str) -> Result<Option<(Millis, Millis)>, DispatchError> {
        let mut conn = self.conn.clone();
        let head: Vec<u8> = redis::cmd("GETRANGE")
            .arg(self.keys.event(tenant, event_id))
            .arg(0)
            .arg(HEADER_BYTES - 1)
            .query_async(&mut conn)
            .await?;
        Ok(EventHeader::read(&head).map(|h| (h.published_ms, h.published_ms.saturating_add(h.span_ms))))
    }
}
