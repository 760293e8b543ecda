//! Cluster-wide `rate_limit` (SPEC §5): one GCRA script call per delivery
//! of a rate-limited target, against `<p>:rl:<target label>`, so every
//! replica on this Redis shares one budget per target.

use std::time::Duration;

use super::{RedisQueue, Result, unavailable};

impl RedisQueue {
    /// Admit one request to `key` at `per_second` with `burst`: None = go,
    /// Some(wait) = defer that long. Uses the Redis server's clock.
    pub async fn rate_limit(
        &self,
        key: &str,
        per_second: f64,
        burst: u32,
    ) -> Result<Option<Duration>> {
        let interval_ms = 1000.0 / per_second.max(1e-9);
        let wait_ms: u64 = self
            .inner
            .scripts
            .rate_limit
            .key(self.key(&format!("rl:{key}")))
            .arg(interval_ms)
            .arg(burst)
            .invoke_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }
}
