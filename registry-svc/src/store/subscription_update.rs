//! Replacing a subscription in place: its record and its route indexes
//! change together, and only if nobody wrote it since it was read.

use std::sync::LazyLock;

use herald_common::model::SubscriptionRecord;
use redis::Script;

use super::Store;
use crate::error::Result;

/// Replaces a subscription if it is unchanged since it was read, moves it
/// between route indexes and bumps the routing generation.
/// KEYS: subscription, routing generation, then the indexes it leaves,
/// then the indexes it joins. ARGV: new json, expected json, id, number of
/// indexes it leaves. Answers 1 written, 0 changed or gone.
static SWAP_SUBSCRIPTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
local leaving = tonumber(ARGV[4])
for i = 3, 2 + leaving do redis.call('SREM', KEYS[i], ARGV[3]) end
for i = 3 + leaving, #KEYS do redis.call('SADD', KEYS[i], ARGV[3]) end
redis.call('INCR', KEYS[2])
return 1
",
    )
});

impl Store {
    /// The subscription and the exact JSON it was read from (for
    /// [`Self::swap_subscription`]).
    pub async fn subscription_raw(&self, id: &str) -> Result<Option<(SubscriptionRecord, String)>> {
        self.get_json_with_raw(&self.keys.subscription(id)).await
    }

    /// Writes `next` over `current` if the stored JSON is still `expected`;
    /// false otherwise.
    pub async fn swap_subscription(
        &self,
        current: &SubscriptionRecord,
        next: &SubscriptionRecord,
        expected: &str,
    ) -> Result<bool> {
        let keys = &self.keys;
        let leaving: Vec<&String> = current.event_types.iter().filter(|t| !next.event_types.contains(t)).collect();
        let joining: Vec<&String> = next.event_types.iter().filter(|t| !current.event_types.contains(t)).collect();
        let mut invocation = SWAP_SUBSCRIPTION.prepare_invoke();
        invocation.key(keys.subscription(&next.id)).key(keys.routing_generation(&next.tenant));
        for event_type in leaving.iter().chain(&joining) {
            invocation.key(keys.subscription_index(&next.tenant, event_type));
        }
        invocation.arg(serde_json::to_string(next)?).arg(expected).arg(&next.id).arg(leaving.len());
        let mut conn = self.conn.clone();
        let answer: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(answer == 1)
    }
}
