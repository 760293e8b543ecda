//! Documents the Redis backend keeps beside the queue: subscriptions
//! created through the API (with the change counter and the announcement
//! channel every replica follows, SPEC §12) and small state documents (a
//! subscription's verification handshake).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{RedisQueue, Result, corrupt, unavailable};

/// The channel (under the prefix) a change of the API-created subscriptions
/// is announced on.
pub const SUBSCRIPTION_CHANNEL: &str = "subs-changed";

/// Store a subscription unless its id exists; count and announce the change.
const PUT: &str = r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1
";

/// Delete a subscription if it exists; count and announce the change.
const DELETE: &str = r"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('INCR', KEYS[2])
redis.call('PUBLISH', KEYS[3], ARGV[1])
return 1
";

impl RedisQueue {
    /// A document key. On a cluster they share one hash tag, so a change
    /// script can touch the set, its counter and its channel together.
    fn doc_key(&self, name: &str) -> String {
        if self.on_cluster() {
            format!("{{{}}}:{name}", self.inner.prefix)
        } else {
            self.key(name)
        }
    }

    /// Store an API-created subscription; false if the id already exists.
    /// In the same transaction the change counter moves and the change is
    /// announced, so every replica reloads the set: at once on the
    /// announcement, or within a second from the counter
    /// (`subscriptions_version`) if it missed the announcement.
    pub async fn put_subscription(&self, id: &str, doc: &Json) -> Result<bool> {
        let doc = serde_json::to_string(doc).map_err(|e| corrupt("subscription", e))?;
        self.change_subscription(PUT, id, Some(&doc)).await
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<bool> {
        self.change_subscription(DELETE, id, None).await
    }

    /// Run a change script: true when it changed something (only then do
    /// the counter and the announcement move, so a refused create or a
    /// delete of nothing makes no replica reload).
    async fn change_subscription(&self, script: &str, id: &str, doc: Option<&str>) -> Result<bool> {
        let script = redis::Script::new(script);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.doc_key("subs"))
            .key(self.doc_key("subsver"))
            .key(self.doc_key(SUBSCRIPTION_CHANNEL))
            .arg(id);
        if let Some(doc) = doc {
            invocation.arg(doc);
        }
        let changed: i64 = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(changed == 1)
    }

    /// How many times the API-created subscriptions changed (0 before the
    /// first change): one GET, cheap enough to ask every second.
    pub async fn subscriptions_version(&self) -> Result<u64> {
        let v: Option<u64> = redis::cmd("GET")
            .arg(self.doc_key("subsver"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(v.unwrap_or(0))
    }

    /// A connection that hears every announced change of the API-created
    /// subscriptions (a Redis pub/sub channel under the prefix). It ends
    /// when the connection is lost; subscribe again then.
    pub async fn subscription_changes(&self) -> Result<redis::aio::PubSubStream> {
        let mut pubsub = self
            .client()
            .get_async_pubsub()
            .await
            .map_err(unavailable)?;
        pubsub
            .subscribe(self.doc_key(SUBSCRIPTION_CHANNEL))
            .await
            .map_err(unavailable)?;
        Ok(pubsub.into_on_message())
    }

    /// All API-created subscriptions, ordered by id.
    pub async fn subscriptions(&self) -> Result<Vec<Json>> {
        let all: BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(self.doc_key("subs"))
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        all.values()
            .map(|d| serde_json::from_str(d).map_err(|e| corrupt("subscription", e)))
            .collect()
    }

    pub async fn put_state(&self, key: &str, value: &Json) -> Result<()> {
        let value = serde_json::to_string(value).map_err(|e| corrupt("state", e))?;
        let _: redis::Value = redis::cmd("HSET")
            .arg(self.doc_key("state"))
            .arg(key)
            .arg(value)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn state(&self, key: &str) -> Result<Option<Json>> {
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.doc_key("state"))
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        v.map(|v| serde_json::from_str(&v).map_err(|e| corrupt("state", e)))
            .transpose()
    }
}
