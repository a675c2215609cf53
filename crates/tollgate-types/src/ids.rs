//! Small helpers for the ids and timestamps that appear in OpenAI-shaped bodies.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as OpenAI's `created` field carries it.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
