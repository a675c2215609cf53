//! The batching worker behind [`RedisRateLimiter::reserve`](crate::RedisRateLimiter): callers
//! queue their reservations and wait; the worker sends every request queued at that moment in
//! one `tollgate_reserve_v3` call and answers each caller, with a few calls in flight at once.
//!
//! It also gives back what Redis admitted for callers that stopped waiting (timed out or were
//! cancelled), since nobody would ever settle those reservations otherwise.

use crate::FastMap;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, oneshot};
use tollgate_types::ports::{Admission, LimitError, LimitKind, LimitStatus, Reservation};

use crate::wire::{ReserveArgs, ReserveOutcome};
use crate::{Backend, RESERVE_FN, fcall_cmd, opt_us};

/// Queue bound between callers and the worker; a full queue answers `Unavailable` at once
/// (Redis is far behind: waiting in line would only time out later).
pub(crate) const QUEUE: usize = 4096;
/// Requests per `tollgate_reserve_v3` call: bounds the Lua call's run time (Redis serves no one
/// else meanwhile) and its argument count.
const MAX_BATCH: usize = 128;
/// `tollgate_reserve_v3` calls in flight at once, so one slow round trip does not hold back
/// the requests queued behind it. More would not help: Redis runs one script at a time.
const MAX_IN_FLIGHT: usize = 4;

/// What a caller gets back: its reservations (so a caller that gives up after the answer was
/// sent can still hand them back for release) and the answer.
pub(crate) type Answer = (Vec<Reservation>, Result<Admission, LimitError>);

/// What callers queue for the worker.
pub(crate) enum Work {
    Reserve(Job),
    /// Admitted reservations nobody will settle: give them back.
    Release(Vec<Reservation>),
}

/// One caller's request: reserve `reqs` (all or nothing) and answer on `reply`.
pub(crate) struct Job {
    pub(crate) reqs: Vec<Reservation>,
    pub(crate) reply: oneshot::Sender<Answer>,
}

/// One Redis call the worker makes.
enum Call {
    Reserve(Vec<Job>),
    Release(Vec<Reservation>),
}

/// Runs until every sender of `rx` is gone (the last clone of the limiter was dropped), then
/// finishes the calls in flight.
pub(crate) async fn run(backend: Arc<Backend>, mut rx: mpsc::Receiver<Work>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            // Finished calls free their place first; `next()` is only polled while there is one.
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
            work = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(first) = work else { break };
                let (reserve, release) = take_batch(first, &mut rx);
                if !reserve.is_empty() {
                    in_flight.push(backend.call(Call::Reserve(reserve)));
                }
                if !release.is_empty() {
                    in_flight.push(backend.call(Call::Release(release)));
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
}

/// `first` plus whatever else is queued right now, up to [`MAX_BATCH`] requests. No waiting
/// for more: under load the queue fills while calls are in flight, so batches grow by
/// themselves, and when idle a request goes out at once.
fn take_batch(first: Work, rx: &mut mpsc::Receiver<Work>) -> (Vec<Job>, Vec<Reservation>) {
    let mut reserve = Vec::new();
    let mut release = Vec::new();
    let mut next = Some(first);
    while let Some(work) = next.take() {
        match work {
            // A caller that already gave up while queued is not sent at all.
            Work::Reserve(job) if job.reply.is_closed() => {}
            Work::Reserve(job) => reserve.push(job),
            Work::Release(reqs) => release.extend(reqs),
        }
        if reserve.len() < MAX_BATCH {
            next = rx.try_recv().ok();
        }
    }
    (reserve, release)
}

// === impl Backend ===

impl Backend {
    async fn call(&self, call: Call) {
        match call {
            Call::Reserve(jobs) => self.reserve_batch(jobs).await,
            Call::Release(reqs) => self.release(&reqs, self.clock.now_utc()).await,
        }
    }

    /// One `tollgate_reserve_v3` call for `jobs`, then one answer per caller.
    async fn reserve_batch(&self, jobs: Vec<Job>) {
        let now = self.clock.now_utc();
        // Distinct counters of the batch, in KEYS order, and each one's 1-based KEYS index.
        let reservations = jobs.iter().map(|j| j.reqs.len()).sum();
        let mut index: FastMap<(&Arc<str>, LimitKind), usize> =
            FastMap::with_capacity_and_hasher(8, foldhash::fast::RandomState::default());
        let mut distinct: Vec<(&Arc<str>, LimitKind)> = Vec::with_capacity(8);
        let mut args = ReserveArgs::with_capacity(8, reservations);
        for job in &jobs {
            args.request(job.reqs.len());
            for r in &job.reqs {
                let at = *index.entry((&r.key, r.kind)).or_insert_with(|| {
                    distinct.push((&r.key, r.kind));
                    distinct.len()
                });
                args.reservation(at, r.limit, r.amount);
            }
        }
        let mut cmd = fcall_cmd(RESERVE_FN, distinct.len());
        {
            let mut names = self.names.lock();
            for &(key, kind) in &distinct {
                let c = names.counter(key, kind, now);
                cmd.arg(c.name);
                args.counter(c.kind, c.param);
            }
        }
        cmd.arg(uuid::Uuid::now_v7().simple().to_string()).arg(&args.counters).arg(&args.requests);

        let outcomes: Vec<Result<ReserveOutcome, LimitError>> =
            match self.fcall(&cmd, self.patience()).await.and_then(|raw| {
                let ints: Vec<i64> =
                    redis::from_redis_value(raw).map_err(|e| LimitError::Unavailable(e.to_string()))?;
                ReserveOutcome::parse_all(&ints, jobs.iter().map(|j| j.reqs.len()))
            }) {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(e) => jobs.iter().map(|_| Err(e.clone())).collect(),
            };

        let mut abandoned = Vec::new();
        for (Job { reqs, reply }, outcome) in jobs.into_iter().zip(outcomes) {
            let answer = outcome.and_then(|o| to_answer(&reqs, o));
            if let Err((reqs, Ok(_))) = reply.send((reqs, answer)) {
                abandoned.extend(reqs);
            }
        }
        if !abandoned.is_empty() {
            tracing::debug!(
                reservations = abandoned.len(),
                "giving back reservations of callers that gave up"
            );
            self.release(&abandoned, now).await;
        }
    }

    /// Gives back admitted reservations nobody will settle: `-amount` on every counter (for a
    /// concurrency counter that pops `amount` slots). `now` picks the calendar period, so a
    /// batch's own releases go to the period it charged.
    async fn release(&self, reqs: &[Reservation], now: time::OffsetDateTime) {
        let deltas = reqs.iter().map(|r| (&r.key, r.kind, i64::try_from(r.amount).map_or(i64::MIN, |a| -a)));
        if let Err(e) = self.settle_at(deltas, now, self.patience()).await {
            tracing::warn!(
                error = %e,
                reservations = reqs.len(),
                "could not give back reservations of callers that gave up"
            );
        }
    }
}

/// The caller's answer for one outcome of its reservations.
fn to_answer(reqs: &[Reservation], outcome: ReserveOutcome) -> Result<Admission, LimitError> {
    match outcome {
        ReserveOutcome::Admitted(statuses) => Ok(Admission {
            limits: reqs
                .iter()
                .zip(statuses)
                .map(|(r, (remaining, reset_us))| LimitStatus {
                    name: r.name.clone(),
                    limit: r.limit,
                    remaining: u64::try_from(remaining).unwrap_or(0),
                    reset_after: opt_us(reset_us),
                })
                .collect(),
            degraded: false,
        }),
        ReserveOutcome::Refused { failed, retry_after_us } => match reqs.get(failed) {
            Some(r) => Err(LimitError::Exceeded {
                name: r.name.clone(),
                limit: r.limit,
                retry_after: opt_us(retry_after_us),
            }),
            None => Err(LimitError::Unavailable(format!(
                "{RESERVE_FN} refused reservation {failed} of {}",
                reqs.len()
            ))),
        },
    }
}
