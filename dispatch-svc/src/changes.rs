//! Follows the registry's `changes` stream so endpoint actors reload.
//!
//! Entries carry `kind` (`endpoint`), `id`, `tenant` and `op`
//! (`upsert`|`delete`). The follower reads with `XREAD BLOCK` on its own
//! connection, starting after its newest entry (only what happens from now on matters:
//! actors made later read the current record when they start), and for an
//! endpoint with a live actor reads the record and hands it over. A change
//! missed while Redis was away is caught by the actors' periodic refresh.

use std::sync::Arc;
use std::time::Duration;

use herald_common::backoff::{Backoff, retry_until_stopped};
use herald_common::model::{CHANGE_ENDPOINT, EndpointRecord};
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::actor::Actors;
use crate::records::changes_stream;

const BLOCK: Duration = Duration::from_millis(1000);
const COUNT: usize = 100;

pub async fn follow(shared: Arc<Shared>, actors: Arc<Actors>, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let connect = || herald_common::redis_conn::connect(&shared.config.redis);
    let on_failure = |e: &_, _| tracing::warn!(error = %e, "changes follower cannot connect to redis");
    let Some(mut conn) = retry_until_stopped(backoff, &stop, connect, on_failure).await else { return };
    let stream = shared.keys.changes();
    // Start after the newest entry (not `$` on every read, which would skip
    // what arrives between two reads).
    let mut last = match changes_stream::newest_id(&mut conn, &stream).await {
        Ok(newest) => newest.unwrap_or_else(|| "0-0".to_owned()),
        Err(_) => "$".to_owned(),
    };
    while !stop.is_cancelled() {
        let read = changes_stream::read_after(&mut conn, &stream, &last, COUNT, BLOCK).await;
        let entries = match read {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(error = %e, "reading endpoint changes failed");
                if !backoff.wait(&stop).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        for (id, fields) in entries {
            last = id;
            let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
            if field("kind") != Some(CHANGE_ENDPOINT) {
                continue;
            }
            let Some(endpoint_id) = field("id") else { continue };
            if !actors.contains(endpoint_id) {
                continue;
            }
            let record = match shared.records.endpoint_raw(endpoint_id).await {
                Ok(raw) => match raw.map(|raw| serde_json::from_slice::<EndpointRecord>(&raw)).transpose() {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::error!(endpoint = endpoint_id, error = %e, "stored endpoint is corrupt");
                        None
                    }
                },
                Err(e) => {
                    tracing::warn!(endpoint = endpoint_id, error = %e, "cannot read a changed endpoint");
                    continue;
                }
            };
            tracing::debug!(endpoint = endpoint_id, op = field("op").unwrap_or_default(), "endpoint changed");
            actors.reload(endpoint_id, record);
        }
    }
}
