//! Budget alert delivery: when a budget crosses one of its alert thresholds, the settle worker
//! (see [`crate::limits`]) hands a [`BudgetAlert`] to [`AlertNotifier::notify`], which logs it
//! and queues it for the configured webhook. One background [`AlertWorker`] POSTs the queued
//! alerts, signed with HMAC-SHA256, retrying transient failures with exponential back-off.
//!
//! Deduplication (once per threshold per period, across nodes) is the caller's job: this module
//! delivers what it is given. Nothing here ever blocks or fails a request: a full queue drops the
//! alert and counts it in `tollgate_alerts_dropped_total`; every alert is in the log anyway.
//!
//! # The webhook request
//! `POST <webhook_url>` with the alert as its JSON body ([`BudgetAlert`] is the body's shape) and
//! these headers:
//! - `content-type: application/json`;
//! - `x-tollgate-alert-id`: the alert's id, the same on every retry (receivers dedupe on it);
//! - `x-tollgate-timestamp`: unix seconds when this attempt was sent;
//! - `x-tollgate-signature: sha256=<hex>`: HMAC-SHA256 keyed with the webhook secret over
//!   `"<timestamp>.<body>"`; absent when no secret is configured. Receivers check it with
//!   [`verify_signature`] (or its equivalent) and should refuse stale timestamps (e.g. older
//!   than five minutes) so a captured request cannot be replayed later.
//!
//! Connection errors, timeouts, `429` and `5xx` are retried (back-off doubling from
//! [`AlertSettings::backoff`], or the receiver's `Retry-After` when longer, up to 30 s) until
//! [`AlertSettings::max_attempts`]; other answers fail at once. Redirects are not followed, so a
//! signed alert only ever goes to the configured URL.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tollgate_types::limits::Usd;
use tollgate_types::ports::{BudgetPeriod, parse_retry_after};
use tollgate_types::tenancy::TenantId;
use uuid::Uuid;

use crate::config::BudgetsConfig;

/// Alerts whose webhook delivery ended, by `outcome` (`delivered`, `failed`).
pub const ALERTS_SENT: &str = "tollgate_alerts_sent_total";
/// Alerts not delivered because the queue was full, or still queued when the shutdown drain
/// ran out of time.
pub const ALERTS_DROPPED: &str = "tollgate_alerts_dropped_total";

/// Header carrying `sha256=<hex of HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-tollgate-signature";
/// Header carrying the unix seconds the signature covers.
pub const TIMESTAMP_HEADER: &str = "x-tollgate-timestamp";
/// Header carrying the alert's id.
pub const ALERT_ID_HEADER: &str = "x-tollgate-alert-id";

/// Deliveries the worker runs at once (each with its own retries).
const IN_FLIGHT: usize = 4;
/// Longest wait between two attempts, whatever the back-off or `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How alerts are delivered.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Where alerts are POSTed; `None`: alerts are only logged. Must be `http://` or `https://`.
    pub webhook_url: Option<String>,
    /// Key of the HMAC-SHA256 signature; `None`: alerts are sent unsigned (warned once).
    pub secret: Option<SecretString>,
    /// Per attempt, from connecting to the response headers.
    pub timeout: Duration,
    /// Attempts per alert, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Alerts that may wait for the worker before new ones are dropped.
    pub capacity: usize,
    /// On shutdown, how long the worker keeps delivering what is queued.
    pub drain_timeout: Duration,
}

impl Default for AlertSettings {
    fn default() -> Self {
        Self {
            webhook_url: None,
            secret: None,
            timeout: Duration::from_secs(5),
            max_attempts: 4,
            backoff: Duration::from_millis(200),
            capacity: 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl AlertSettings {
    /// The `budgets:` section's webhook, with the defaults for the rest.
    pub fn from_config(budgets: &BudgetsConfig) -> Self {
        Self {
            webhook_url: budgets.webhook_url.clone(),
            secret: budgets.webhook_secret.clone(),
            timeout: budgets.webhook_timeout,
            ..Self::default()
        }
    }
}

/// A budget crossed one of its alert thresholds. Serialized, this is the webhook's body.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetAlert {
    /// Unique per alert (UUID v7); the same on every delivery attempt, so receivers dedupe on it.
    pub id: Uuid,
    /// Always [`BudgetAlert::KIND`].
    pub kind: &'static str,
    pub tenant_id: TenantId,
    /// What the budget belongs to: `tenant`, `project` or `key`.
    pub scope: String,
    /// The id of that tenant, project or key.
    pub scope_id: String,
    pub period: BudgetPeriod,
    /// The period the spend counts in: `2026-11-30`, `2026-W48`, `2026-11`, `total`.
    pub period_label: String,
    /// The threshold crossed, in percent of `limit_usd`.
    pub threshold_percent: u8,
    /// The budget's cap (a decimal string in JSON).
    pub limit_usd: Usd,
    /// Spent in the period when the threshold was seen crossed (a decimal string in JSON).
    pub spent_usd: Usd,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl BudgetAlert {
    /// The `kind` of budget threshold alerts.
    pub const KIND: &'static str = "budget.threshold";
}

/// Counts of what happened to the alerts given to one notifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertStats {
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Shared {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Queued or being delivered; what the shutdown drain loses if it runs out of time.
    pending: AtomicU64,
}

impl Shared {
    fn drop_alerts(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(ALERTS_DROPPED).increment(n);
    }
}

// === impl AlertNotifier ===

/// The sending side: cheap to clone, [`notify`](Self::notify) never waits.
#[derive(Debug, Clone)]
pub struct AlertNotifier {
    /// `None` when no usable webhook is configured: alerts are only logged.
    tx: Option<mpsc::Sender<BudgetAlert>>,
    shared: Arc<Shared>,
}

impl AlertNotifier {
    /// Creates the notifier and the worker that delivers its alerts; run the worker on the
    /// tracked task set. Never fails: a webhook URL that is not `http(s)` or a client that cannot
    /// be built is logged as an error and alerts are then only logged (the config validation
    /// refuses such URLs first).
    pub fn new(settings: AlertSettings) -> (Self, AlertWorker) {
        let shared = Arc::new(Shared::default());
        let webhook = settings.webhook_url.as_deref().and_then(|url| Webhook::build(url, &settings, &shared));
        let Some(webhook) = webhook else {
            return (Self { tx: None, shared }, AlertWorker { inner: None });
        };
        let (tx, rx) = mpsc::channel(settings.capacity.max(1));
        let worker = AlertWorker {
            inner: Some(WorkerInner {
                rx,
                webhook,
                drain_timeout: settings.drain_timeout,
                shared: shared.clone(),
            }),
        };
        (Self { tx: Some(tx), shared }, worker)
    }

    /// Logs the alert at warn level and, when a webhook is configured, queues it for delivery.
    /// Never blocks and never fails: a full queue (or a stopped worker) drops the alert and
    /// counts it in `tollgate_alerts_dropped_total`.
    pub fn notify(&self, alert: BudgetAlert) {
        tracing::warn!(
            alert_id = %alert.id,
            tenant_id = %alert.tenant_id,
            scope = %alert.scope,
            scope_id = %alert.scope_id,
            period = alert.period.as_str(),
            period_label = %alert.period_label,
            threshold_percent = alert.threshold_percent,
            limit_usd = %alert.limit_usd,
            spent_usd = %alert.spent_usd,
            "budget alert threshold reached"
        );
        let Some(tx) = &self.tx else { return };
        // Counted before sending so the worker's decrement can never come first.
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = tx.try_send(alert) {
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            self.shared.drop_alerts(1);
            let (reason, alert) = match e {
                mpsc::error::TrySendError::Full(a) => ("the queue is full", a),
                mpsc::error::TrySendError::Closed(a) => ("the worker has stopped", a),
            };
            tracing::error!(alert_id = %alert.id, reason, "budget alert dropped before its webhook delivery");
        }
    }

    /// What happened to the alerts so far.
    pub fn stats(&self) -> AlertStats {
        AlertStats {
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

// === impl AlertWorker ===

/// The delivering side: [`run`](Self::run) it on the tracked task set.
pub struct AlertWorker {
    /// `None` when there is no webhook: `run` returns at once.
    inner: Option<WorkerInner>,
}

struct WorkerInner {
    rx: mpsc::Receiver<BudgetAlert>,
    webhook: Webhook,
    drain_timeout: Duration,
    shared: Arc<Shared>,
}

impl AlertWorker {
    /// Delivers queued alerts (a few at a time) until `shutdown` fires; then stops taking new
    /// ones and delivers what is queued, for at most the settings' `drain_timeout`. Alerts still
    /// queued or in flight when that runs out are counted as dropped and logged. Returns at once
    /// when no webhook is configured.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(WorkerInner { mut rx, webhook, drain_timeout, shared }) = self.inner else { return };
        let mut closing = Box::pin(shutdown.clone().cancelled_owned());
        let mut closed = false;
        // Closing the receiver on shutdown makes later `notify` calls fail fast (counted drops)
        // and ends the stream once what was queued has been taken.
        let alerts = futures::stream::poll_fn(move |cx| {
            if !closed && closing.as_mut().poll(cx).is_ready() {
                rx.close();
                closed = true;
            }
            rx.poll_recv(cx)
        });
        let webhook = &webhook;
        let work = alerts.for_each_concurrent(IN_FLIGHT, |alert| webhook.deliver(alert));
        let mut work = std::pin::pin!(work);
        tokio::select! {
            () = &mut work => return,
            () = shutdown.cancelled() => {}
        }
        if tokio::time::timeout(drain_timeout, work).await.is_err() {
            let lost = shared.pending.load(Ordering::Relaxed);
            shared.drop_alerts(lost);
            tracing::error!(alerts = lost, "budget alerts not delivered before shutdown");
        }
    }
}

// === impl Webhook ===

struct Webhook {
    client: reqwest::Client,
    url: url::Url,
    key: Option<hmac::Key>,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    shared: Arc<Shared>,
}

/// Why one attempt failed. Its Display never includes the URL, which may hold a token.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("the alert could not be encoded: {0}")]
    Encode(serde_json::Error),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("the receiver answered {status}")]
    Status { status: u16, retry_after: Option<Duration> },
}

impl DeliveryError {
    fn retryable(&self) -> bool {
        match self {
            Self::Encode(_) => false,
            Self::Timeout(_) | Self::Transport(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Encode(_) | Self::Timeout(_) | Self::Transport(_) => None,
        }
    }
}

impl Webhook {
    fn build(url: &str, settings: &AlertSettings, shared: &Arc<Shared>) -> Option<Self> {
        let url = match url::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            // The URL itself stays out of the log: it may carry a token.
            Ok(_) | Err(_) => {
                tracing::error!("the budget alert webhook URL is not an http(s) URL; alerts are only logged");
                return None;
            }
        };
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build();
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "the budget alert webhook client could not be built; alerts are only logged");
                return None;
            }
        };
        let key =
            settings.secret.as_ref().map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose_secret().as_bytes()));
        if key.is_none() {
            tracing::warn!("no budget alert webhook secret is configured: alerts are sent unsigned");
        }
        Some(Self {
            client,
            url,
            key,
            timeout: settings.timeout,
            max_attempts: settings.max_attempts.max(1),
            backoff: settings.backoff,
            shared: shared.clone(),
        })
    }

    /// Delivers one alert with its retries and records the outcome.
    async fn deliver(&self, alert: BudgetAlert) {
        let outcome = self.deliver_with_retries(&alert).await;
        self.shared.pending.fetch_sub(1, Ordering::Relaxed);
        match outcome {
            Ok(attempts) => {
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(ALERTS_SENT, "outcome" => "delivered").increment(1);
                tracing::debug!(alert_id = %alert.id, attempts, "budget alert delivered");
            }
            Err((attempts, error)) => {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                metrics::counter!(ALERTS_SENT, "outcome" => "failed").increment(1);
                tracing::warn!(alert_id = %alert.id, attempts, %error, "budget alert webhook delivery failed");
            }
        }
    }

    /// Returns the attempts made, with the last error on failure.
    async fn deliver_with_retries(&self, alert: &BudgetAlert) -> Result<u32, (u32, DeliveryError)> {
        let body = Bytes::from(serde_json::to_vec(alert).map_err(|e| (0, DeliveryError::Encode(e)))?);
        let mut backoff = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.attempt(alert.id, body.clone()).await {
                Ok(()) => return Ok(attempt),
                Err(e) => e,
            };
            if !error.retryable() || attempt >= self.max_attempts {
                return Err((attempt, error));
            }
            tracing::debug!(alert_id = %alert.id, attempt, %error, "budget alert delivery attempt failed; retrying");
            let wait = error.retry_after().map_or(backoff, |r| r.max(backoff)).min(MAX_BACKOFF);
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn attempt(&self, id: Uuid, body: Bytes) -> Result<(), DeliveryError> {
        let timestamp = OffsetDateTime::now_utc().unix_timestamp().to_string();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(ALERT_ID_HEADER, id.to_string())
            .header(TIMESTAMP_HEADER, &timestamp);
        if let Some(key) = &self.key {
            request = request.header(SIGNATURE_HEADER, sign_with(key, &timestamp, &body));
        }
        // The body of the answer is not read: the status is the whole answer.
        let response = match tokio::time::timeout(self.timeout, request.body(body).send()).await {
            Err(_) => return Err(DeliveryError::Timeout(self.timeout)),
            Ok(Err(e)) => return Err(DeliveryError::Transport(e.without_url())),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        Err(DeliveryError::Status { status: status.as_u16(), retry_after })
    }
}

// === signatures ===

/// The `x-tollgate-signature` value for `body` sent at `timestamp` (unix seconds, as sent in
/// `x-tollgate-timestamp`): `sha256=` and the lowercase hex HMAC-SHA256 of `"<timestamp>.<body>"`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    sign_with(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body)
}

fn sign_with(key: &hmac::Key, timestamp: &str, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(tag(key, timestamp, body).as_ref()))
}

fn tag(key: &hmac::Key, timestamp: &str, body: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    ctx.sign()
}

/// The receiver's check: whether `header` (the `x-tollgate-signature` value) signs `body` with
/// `timestamp` (the `x-tollgate-timestamp` value) under `secret`. The comparison takes the same
/// time whatever the header holds. Receivers should also refuse timestamps far from their clock.
pub fn verify_signature(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else { return false };
    let Ok(given) = hex::decode(given) else { return false };
    let expected = tag(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body);
    expected.as_ref().ct_eq(&given).into()
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use parking_lot::Mutex;
    use tokio::time::Instant;

    use super::*;

    const SECRET: &str = "s3cret";

    /// What the test receiver answers, in order; once the script is empty it answers 200.
    enum Reply {
        Status(u16),
        Hang,
    }

    #[derive(Default)]
    struct Receiver {
        script: Mutex<VecDeque<Reply>>,
        received: Mutex<Vec<(HeaderMap, Bytes)>>,
    }

    impl Receiver {
        fn with(script: impl IntoIterator<Item = Reply>) -> Arc<Self> {
            Arc::new(Self { script: Mutex::new(script.into_iter().collect()), ..Self::default() })
        }

        fn count(&self) -> usize {
            self.received.lock().len()
        }
    }

    async fn hook(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
        r.received.lock().push((headers, body));
        let reply = r.script.lock().pop_front().unwrap_or(Reply::Status(200));
        match reply {
            Reply::Status(s) => StatusCode::from_u16(s).unwrap(),
            Reply::Hang => std::future::pending().await,
        }
    }

    /// Serves `receiver` on 127.0.0.1 (port 0) and returns its webhook URL.
    async fn serve(receiver: Arc<Receiver>) -> String {
        let app = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(receiver);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        #[expect(
            clippy::disallowed_methods,
            reason = "the test receiver lives as long as the test's runtime"
        )]
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/hook")
    }

    fn settings(url: &str) -> AlertSettings {
        AlertSettings {
            webhook_url: Some(url.to_owned()),
            secret: Some(SecretString::from(SECRET)),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_millis(10),
            capacity: 16,
            drain_timeout: Duration::from_secs(5),
        }
    }

    fn alert() -> BudgetAlert {
        BudgetAlert {
            id: Uuid::now_v7(),
            kind: BudgetAlert::KIND,
            tenant_id: TenantId::new(),
            scope: "project".to_owned(),
            scope_id: "proj-1".to_owned(),
            period: BudgetPeriod::Month,
            period_label: "2026-11".to_owned(),
            threshold_percent: 80,
            limit_usd: Usd::parse("100").unwrap(),
            spent_usd: Usd::parse("80.5").unwrap(),
            at: time::macros::datetime!(2026-11-20 10:00:00 UTC),
        }
    }

    struct Running {
        notifier: AlertNotifier,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(settings: AlertSettings) -> Running {
        let (notifier, worker) = AlertNotifier::new(settings);
        let stop = CancellationToken::new();
        #[expect(clippy::disallowed_methods, reason = "a test's own task, awaited at its end")]
        let task = tokio::spawn(worker.run(stop.clone()));
        Running { notifier, stop, task }
    }

    impl Running {
        async fn stop(self) -> AlertStats {
            self.stop.cancel();
            self.task.await.unwrap();
            self.notifier.stats()
        }
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
        headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }

    #[tokio::test]
    async fn delivered_body_parses_back_and_its_signature_verifies() {
        let receiver = Receiver::with([]);
        let running = start(settings(&serve(receiver.clone()).await));
        let sent = alert();
        running.notifier.notify(sent.clone());
        wait_until("delivered", || running.notifier.stats().delivered == 1).await;

        let (headers, body) = receiver.received.lock()[0].clone();
        assert_eq!(header(&headers, "content-type"), "application/json");
        assert_eq!(header(&headers, ALERT_ID_HEADER), sent.id.to_string());
        let timestamp = header(&headers, TIMESTAMP_HEADER);
        let now = OffsetDateTime::now_utc().unix_timestamp();
        assert!((timestamp.parse::<i64>().unwrap() - now).abs() < 60, "timestamp {timestamp} vs {now}");

        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": sent.id.to_string(),
                "kind": "budget.threshold",
                "tenant_id": sent.tenant_id.to_string(),
                "scope": "project",
                "scope_id": "proj-1",
                "period": "month",
                "period_label": "2026-11",
                "threshold_percent": 80,
                "limit_usd": "100",
                "spent_usd": "80.5",
                "at": "2026-11-20T10:00:00Z",
            })
        );

        let signature = header(&headers, SIGNATURE_HEADER);
        assert!(signature.starts_with("sha256="), "{signature}");
        assert!(verify_signature(SECRET.as_bytes(), timestamp, &body, signature));
        assert!(!verify_signature(b"wrong secret", timestamp, &body, signature));
        let mut changed = body.to_vec();
        changed[body.len() - 2] ^= 1;
        assert!(!verify_signature(SECRET.as_bytes(), timestamp, &changed, signature));
        assert!(!verify_signature(SECRET.as_bytes(), "1", &body, signature), "the timestamp is signed too");
        assert!(!verify_signature(SECRET.as_bytes(), timestamp, &body, &signature[7..]), "prefix required");
        assert!(!verify_signature(SECRET.as_bytes(), timestamp, &body, "sha256=zz"));
        assert!(!verify_signature(SECRET.as_bytes(), timestamp, &body, &signature[..signature.len() - 2]));

        assert_eq!(running.stop().await, AlertStats { delivered: 1, failed: 0, dropped: 0 });
    }

    #[test]
    fn the_mac_is_standard_hmac_sha256() {
        // RFC 4231 test case 2 pins the primitive; then the signed message is
        // "<timestamp>.<body>" exactly, with nothing added around it.
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"Jefe");
        assert_eq!(
            hex::encode(hmac::sign(&key, b"what do ya want for nothing?").as_ref()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            sign(b"Jefe", "what do ya want for nothing?", b""),
            format!("sha256={}", hex::encode(hmac::sign(&key, b"what do ya want for nothing?.").as_ref()))
        );
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_delivered() {
        let receiver = Receiver::with([Reply::Status(500), Reply::Status(500)]);
        let running = start(settings(&serve(receiver.clone()).await));
        running.notifier.notify(alert());
        wait_until("delivered", || running.notifier.stats().delivered == 1).await;
        let received = receiver.received.lock().clone();
        assert_eq!(received.len(), 3);
        let ids: Vec<_> = received.iter().map(|(h, _)| header(h, ALERT_ID_HEADER).to_owned()).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "every attempt carries the same id: {ids:?}");
        assert_eq!(running.stop().await, AlertStats { delivered: 1, failed: 0, dropped: 0 });
    }

    #[tokio::test]
    async fn a_429_is_retried_but_other_client_errors_are_not() {
        let receiver = Receiver::with([Reply::Status(429), Reply::Status(400)]);
        let running = start(settings(&serve(receiver.clone()).await));
        running.notifier.notify(alert());
        wait_until("failed", || running.notifier.stats().failed == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.count(), 2, "429 retried once, then the 400 ends it");

        let receiver = Receiver::with([Reply::Status(400)]);
        let running2 = start(settings(&serve(receiver.clone()).await));
        running2.notifier.notify(alert());
        wait_until("failed", || running2.notifier.stats().failed == 1).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(receiver.count(), 1);
        assert_eq!(running.stop().await, AlertStats { delivered: 0, failed: 1, dropped: 0 });
        assert_eq!(running2.stop().await, AlertStats { delivered: 0, failed: 1, dropped: 0 });
    }

    #[tokio::test]
    async fn a_hanging_receiver_never_blocks_notify_and_times_out() {
        let receiver = Receiver::with([Reply::Hang, Reply::Hang]);
        let timeout = Duration::from_millis(300);
        let running =
            start(AlertSettings { timeout, max_attempts: 2, ..settings(&serve(receiver.clone()).await) });
        let started = Instant::now();
        running.notifier.notify(alert());
        assert!(started.elapsed() < Duration::from_millis(50), "notify took {:?}", started.elapsed());
        wait_until("failed", || running.notifier.stats().failed == 1).await;
        assert!(started.elapsed() >= timeout * 2, "two attempts of {timeout:?} took {:?}", started.elapsed());
        assert_eq!(receiver.count(), 2, "timeouts are retried");
        assert_eq!(running.stop().await, AlertStats { delivered: 0, failed: 1, dropped: 0 });
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_blocking() {
        let receiver = Receiver::with([]);
        let url = serve(receiver.clone()).await;
        // The worker is not running yet, so nothing leaves the queue.
        let (notifier, worker) = AlertNotifier::new(AlertSettings { capacity: 2, ..settings(&url) });
        let started = Instant::now();
        for _ in 0..5 {
            notifier.notify(alert());
        }
        assert!(started.elapsed() < Duration::from_millis(50), "notify took {:?}", started.elapsed());
        assert_eq!(notifier.stats(), AlertStats { delivered: 0, failed: 0, dropped: 3 });

        let stop = CancellationToken::new();
        stop.cancel();
        worker.run(stop).await;
        assert_eq!(notifier.stats(), AlertStats { delivered: 2, failed: 0, dropped: 3 });
        assert_eq!(receiver.count(), 2);
    }

    #[tokio::test]
    async fn shutdown_drains_queued_alerts_then_refuses_new_ones() {
        let receiver = Receiver::with([Reply::Status(503)]);
        let (notifier, worker) = AlertNotifier::new(settings(&serve(receiver.clone()).await));
        for _ in 0..3 {
            notifier.notify(alert());
        }
        let stop = CancellationToken::new();
        stop.cancel();
        worker.run(stop).await;
        assert_eq!(notifier.stats(), AlertStats { delivered: 3, failed: 0, dropped: 0 });
        assert_eq!(receiver.count(), 4, "three alerts, one of them retried");

        notifier.notify(alert());
        assert_eq!(notifier.stats().dropped, 1, "after shutdown alerts are only logged");
    }

    #[tokio::test]
    async fn the_shutdown_drain_is_bounded() {
        let receiver = Receiver::with((0..10).map(|_| Reply::Hang));
        let drain_timeout = Duration::from_millis(300);
        let settings = AlertSettings {
            timeout: Duration::from_secs(60),
            drain_timeout,
            ..settings(&serve(receiver.clone()).await)
        };
        let running = start(settings);
        for _ in 0..6 {
            running.notifier.notify(alert());
        }
        wait_until("four deliveries in flight", || receiver.count() == IN_FLIGHT).await;
        let started = Instant::now();
        let stats = running.stop().await;
        assert!(started.elapsed() < drain_timeout + Duration::from_secs(1), "took {:?}", started.elapsed());
        assert_eq!(stats, AlertStats { delivered: 0, failed: 0, dropped: 6 });
    }

    #[tokio::test]
    async fn without_a_secret_alerts_go_unsigned() {
        let receiver = Receiver::with([]);
        let running = start(AlertSettings { secret: None, ..settings(&serve(receiver.clone()).await) });
        running.notifier.notify(alert());
        wait_until("delivered", || running.notifier.stats().delivered == 1).await;
        let (headers, _) = receiver.received.lock()[0].clone();
        assert!(headers.get(SIGNATURE_HEADER).is_none());
        assert!(headers.get(TIMESTAMP_HEADER).is_some());
        running.stop().await;
    }

    #[tokio::test]
    async fn without_a_usable_webhook_alerts_are_only_logged() {
        for url in [None, Some("ftp://example.com/hook"), Some("not a url")] {
            let (notifier, worker) = AlertNotifier::new(AlertSettings {
                webhook_url: url.map(str::to_owned),
                ..AlertSettings::default()
            });
            notifier.notify(alert());
            // Returns at once, not waiting for a shutdown.
            tokio::time::timeout(Duration::from_secs(1), worker.run(CancellationToken::new())).await.unwrap();
            assert_eq!(notifier.stats(), AlertStats::default(), "{url:?}");
        }
    }
}
