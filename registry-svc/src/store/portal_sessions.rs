//! Portal sessions: short-lived tenant keys. A session is its key record
//! (found by the token's hash, like an API key) and an id -> hash entry for
//! revoking it; both expire with the session, so nothing needs sweeping.

use std::sync::LazyLock;

use herald_common::model::ApiKeyRecord;
use redis::Script;

use super::Store;
use crate::error::Result;

/// KEYS: key record, session entry, tenant. ARGV: json, key hash, ttl ms.
/// Answers 0 when the tenant does not exist.
static CREATE_PORTAL_SESSION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
",
    )
});

impl Store {
    /// False when the tenant does not exist.
    pub async fn create_portal_session(&self, session: &ApiKeyRecord, ttl_ms: u64) -> Result<bool> {
        let mut conn = self.conn.clone();
        let stored: i64 = CREATE_PORTAL_SESSION
            .key(self.keys.api_key(&session.key_hash))
            .key(self.keys.portal_session(&session.id))
            .key(self.keys.tenant(&session.tenant))
            .arg(serde_json::to_string(session)?)
            .arg(&session.key_hash)
            .arg(ttl_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }

    /// The session's key record, unless it expired or was revoked.
    pub async fn portal_session(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(hash) = self.get_raw(&self.keys.portal_session(id)).await? else { return Ok(None) };
        self.api_key(&String::from_utf8_lossy(&hash)).await
    }

    pub async fn revoke_portal_session(&self, session: &ApiKeyRecord) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(self.keys.api_key(&session.key_hash))
            .ignore()
            .del(self.keys.portal_session(&session.id))
            .ignore();
        self.run_atomic(&pipe).await
    }
}
