//! What the Redis test files share: where Redis is, and cleaning up a test's keys.

/// The Redis the tests talk to: `127.0.0.1:6379` unless `TOLLGATE_TEST_REDIS_URL` says otherwise.
pub fn redis_url() -> String {
    std::env::var("TOLLGATE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes every key under a test's prefix when dropped (some keys have no TTL, e.g. `total`
/// budgets, and would otherwise outlive the test).
pub struct DropKeys(pub String);

impl Drop for DropKeys {
    fn drop(&mut self) {
        let Ok(client) = redis::Client::open(redis_url()) else { return };
        let Ok(mut c) = client.get_connection() else { return };
        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{}:*", self.0)).query(&mut c).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("DEL").arg(keys).query(&mut c);
        }
    }
}
