//! The PostgreSQL change feed: `NOTIFY` on commit, `LISTEN` on every node.
//!
//! Mutating methods queue `pg_notify('tollgate_changes', payload)` inside their transaction, so
//! a notification is delivered only if the change committed. Each store runs one listener task on
//! its own connection and fans notifications out to subscribers through a broadcast channel.
//! Payloads are `key:<uuid>`, `tenant:<uuid>` and `credentials:<uuid>`; anything else is
//! ignored. When the listener's connection drops (notifications may have been missed in
//! between) or a subscriber lags, subscribers get [`ChangeEvent::Resync`].

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tollgate_types::ports::store::{Change, ChangeEvent, ChangeFeed, StoreError};
use tollgate_types::tenancy::{KeyId, TenantId};
use uuid::Uuid;

use super::CHANGE_CHANNEL;
use crate::db_error;

/// How many events a slow subscriber may fall behind before it is told to resync.
const BUFFER: usize = 1024;

/// The feed shared by every clone of one [`super::PostgresStore`]. Dropping it stops the
/// listener task.
#[derive(Debug)]
pub struct PgChangeFeed {
    tx: broadcast::Sender<ChangeEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl PgChangeFeed {
    /// Connects a listener and issues `LISTEN` before returning, then hands the connection to a
    /// background task.
    pub(super) async fn start(app_url: &str) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect(app_url).await.map_err(db_error)?;
        listener.listen(CHANGE_CHANNEL).await.map_err(db_error)?;
        let (tx, _) = broadcast::channel(BUFFER);
        #[expect(
            clippy::disallowed_methods,
            reason = "the listener only reads notifications into a channel: it has no side effects for \
                      shutdown to drain, and it is aborted when the feed is dropped"
        )]
        let task = tokio::spawn(listen(listener, tx.clone()));
        Ok(Self { tx, task })
    }
}

impl Drop for PgChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChangeFeed for PgChangeFeed {
    fn subscribe(&self) -> BoxStream<'static, ChangeEvent> {
        futures::stream::unfold(self.tx.subscribe(), |mut rx| async move {
            match rx.recv().await {
                Ok(event) => Some((event, rx)),
                // Missed events: the subscriber must drop everything it cached.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((ChangeEvent::Resync, rx)),
                // The feed (and its sender) is gone: the stream ends.
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }
}

async fn listen(mut listener: PgListener, tx: broadcast::Sender<ChangeEvent>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if let Some(change) = decode(notification.payload()) {
                    // No subscriber is not an error: nobody has anything cached yet.
                    let _ = tx.send(ChangeEvent::Changed(change));
                } else {
                    tracing::warn!(
                        payload = notification.payload(),
                        "ignoring an unknown change notification"
                    );
                }
            }
            // The connection dropped and was re-established (LISTEN re-issued): whatever was
            // sent in between is lost.
            Ok(None) => {
                tracing::warn!("change listener reconnected; subscribers resync");
                let _ = tx.send(ChangeEvent::Resync);
            }
            Err(error) => {
                tracing::warn!(%error, "change listener failed; retrying");
                let _ = tx.send(ChangeEvent::Resync);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The `NOTIFY` payload for a change.
pub(super) fn encode(change: Change) -> String {
    match change {
        Change::Key(id) => format!("key:{id}"),
        Change::Tenant(id) => format!("tenant:{id}"),
        Change::Credentials(id) => format!("credentials:{id}"),
    }
}

fn decode(payload: &str) -> Option<Change> {
    let (kind, id) = payload.split_once(':')?;
    let id = Uuid::parse_str(id).ok()?;
    match kind {
        "key" => Some(Change::Key(KeyId(id))),
        "tenant" => Some(Change::Tenant(TenantId(id))),
        "credentials" => Some(Change::Credentials(TenantId(id))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        for change in
            [Change::Key(KeyId::new()), Change::Tenant(TenantId::new()), Change::Credentials(TenantId::new())]
        {
            assert_eq!(decode(&encode(change)), Some(change));
        }
        assert_eq!(decode("bogus"), None);
        assert_eq!(decode("key:not-a-uuid"), None);
        assert_eq!(decode("other:0190a000-0000-7000-8000-000000000001"), None);
    }
}
