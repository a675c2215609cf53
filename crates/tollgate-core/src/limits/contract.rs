//! The limiter contract: one suite every [`RateLimiter`] (memory, Redis) must pass.
//!
//! Use: `tollgate_core::limiter_contract!(factory())` where `factory()` is a future yielding a
//! [`Fixture`]: the limiter (whose budgets follow the fixture's [`ManualClock`], set to
//! 2026-11-21 12:00 UTC) and a guard dropped at the end of the test. The macro expands to one
//! multi-threaded `#[tokio::test]` per function below, so a failure names the rule that broke.
//! Every test uses its own UUID key namespace, so tests run in parallel on one shared backend.
//! Windows run on real time (short periods), since a remote backend keeps its own clock.
//!
//! Functions return `Err` for an unexpected limiter error and assert everything else.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use time::macros::datetime;
use tokio::task::JoinSet;
use tollgate_types::ports::{
    Adjustment, BudgetPeriod, LimitError, LimitKind, ManualClock, RateLimiter, Reservation,
};
use uuid::Uuid;

/// One test's limiter, clock and clean-up guard.
pub struct Fixture {
    pub limiter: Arc<dyn RateLimiter>,
    pub clock: Arc<ManualClock>,
    pub guard: Box<dyn Any + Send>,
}

/// Expands to one `#[tokio::test]` per contract function, each on a fresh fixture from
/// `$factory` (an expression evaluating to a future of [`Fixture`]).
#[macro_export]
macro_rules! limiter_contract {
    ($factory:expr) => {
        $crate::limiter_contract!(@tests $factory;
            window_limit_enforced_with_name_and_retry_after,
            window_refills_over_its_period,
            all_or_nothing_charges_nothing_when_one_limit_is_full,
            first_limit_hit_is_named,
            same_key_twice_in_one_list_counts_twice,
            amount_over_limit_never_fits,
            settle_corrects_estimates_up_and_down,
            settle_never_goes_below_zero_and_ignores_unknown_keys,
            concurrency_slots_released_on_settle,
            calendar_budget_resets_at_the_month_boundary,
            calendar_week_and_day_reset_at_utc_midnight,
            total_budget_never_resets,
            independent_keys_are_independent,
            race_50_concurrent_reserves_admit_exactly_the_limit,
            race_50_concurrent_budget_reservations_never_overshoot,
            race_concurrency_slots_never_overshoot,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let fixture = $factory.await;
                $crate::limits::contract::$name(fixture).await.unwrap();
            }
        )*
    };
}

const T0: time::OffsetDateTime = datetime!(2026-11-21 12:00 UTC);
const HOUR: Duration = Duration::from_secs(3600);

fn ns() -> String {
    format!("test:{}", Uuid::now_v7())
}

fn window(key: &str, period: Duration, limit: u64, amount: u64, name: &str) -> Reservation {
    Reservation { key: key.into(), kind: LimitKind::Window { period }, limit, amount, name: name.into() }
}

fn budget(key: &str, period: BudgetPeriod, limit: u64, amount: u64) -> Reservation {
    Reservation {
        key: key.into(),
        kind: LimitKind::Calendar { period },
        limit,
        amount,
        name: format!("project {} budget", period.as_str()).into(),
    }
}

fn slot(key: &str, limit: u64) -> Reservation {
    Reservation {
        key: key.into(),
        kind: LimitKind::Concurrency,
        limit,
        amount: 1,
        name: "key concurrent requests".into(),
    }
}

fn adj(r: &Reservation, delta: i64) -> Adjustment {
    Adjustment { key: r.key.clone(), kind: r.kind, delta }
}

/// The `Exceeded` fields, or an error saying what came instead (fails the test).
fn exceeded(
    r: Result<tollgate_types::ports::Admission, LimitError>,
) -> Result<(String, u64, Option<Duration>), LimitError> {
    match r {
        Err(LimitError::Exceeded { name, limit, retry_after }) => Ok((name.to_string(), limit, retry_after)),
        Err(e) => Err(e),
        Ok(a) => Err(LimitError::Unavailable(format!("expected Exceeded, got an admission: {a:?}"))),
    }
}

pub async fn window_limit_enforced_with_name_and_retry_after(f: Fixture) -> Result<(), LimitError> {
    let k = format!("{}:rpm", ns());
    let r = window(&k, Duration::from_secs(60), 3, 1, "key requests per minute");
    for want in [2, 1, 0] {
        let a = f.limiter.reserve(std::slice::from_ref(&r)).await?;
        assert_eq!(a.limits.len(), 1);
        assert_eq!(&*a.limits[0].name, "key requests per minute");
        assert_eq!(a.limits[0].limit, 3);
        assert_eq!(a.limits[0].remaining, want);
        assert!(!a.degraded);
        let reset = a.limits[0].reset_after.unwrap_or_default();
        assert!(reset > Duration::from_secs(15) && reset <= Duration::from_secs(60), "{reset:?}");
    }
    let (name, limit, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&r)).await)?;
    assert_eq!((name.as_str(), limit), ("key requests per minute", 3));
    // One unit comes back every 20 s.
    let retry = retry.unwrap_or_default();
    assert!(retry > Duration::from_secs(19) && retry <= Duration::from_secs(20), "{retry:?}");
    Ok(())
}

pub async fn window_refills_over_its_period(f: Fixture) -> Result<(), LimitError> {
    let k = format!("{}:rps", ns());
    let period = Duration::from_millis(400);
    let one = window(&k, period, 2, 1, "rps");
    f.limiter.reserve(std::slice::from_ref(&one)).await?;
    f.limiter.reserve(std::slice::from_ref(&one)).await?;
    let (_, _, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&one)).await)?;
    assert!(retry.unwrap_or_default() <= Duration::from_millis(200));
    tokio::time::sleep(Duration::from_millis(450)).await;
    // Fully refilled: a burst of the whole limit fits again.
    let a = f.limiter.reserve(&[window(&k, period, 2, 2, "rps")]).await?;
    assert_eq!(a.limits[0].remaining, 0);
    Ok(())
}

pub async fn all_or_nothing_charges_nothing_when_one_limit_is_full(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let (a, b) = (format!("{n}:key:rpm"), format!("{n}:tenant:tpm"));
    let rpm = window(&a, HOUR, 5, 1, "key requests per minute");
    let tpm = window(&b, HOUR, 100, 100, "tenant tokens per minute");
    f.limiter.reserve(std::slice::from_ref(&tpm)).await?;
    let (name, _, _) = exceeded(f.limiter.reserve(&[rpm.clone(), tpm.clone()]).await)?;
    assert_eq!(name, "tenant tokens per minute");
    // The key's counter was not charged: all 5 still fit at once.
    let all = window(&a, HOUR, 5, 5, "key requests per minute");
    assert_eq!(f.limiter.reserve(&[all]).await?.limits[0].remaining, 0);
    // Budgets too.
    let c = format!("{n}:budget");
    let spend = budget(&c, BudgetPeriod::Month, 1_000, 600);
    exceeded(f.limiter.reserve(&[spend.clone(), tpm]).await)?;
    assert_eq!(f.limiter.reserve(&[spend]).await?.limits[0].remaining, 400);
    Ok(())
}

pub async fn first_limit_hit_is_named(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let x = window(&format!("{n}:x"), HOUR, 1, 1, "first");
    let y = window(&format!("{n}:y"), HOUR, 1, 1, "second");
    f.limiter.reserve(&[x.clone(), y.clone()]).await?;
    assert_eq!(exceeded(f.limiter.reserve(&[x.clone(), y.clone()]).await)?.0, "first");
    assert_eq!(exceeded(f.limiter.reserve(&[y, x]).await)?.0, "second");
    Ok(())
}

pub async fn same_key_twice_in_one_list_counts_twice(f: Fixture) -> Result<(), LimitError> {
    let k = format!("{}:dup", ns());
    let r = window(&k, HOUR, 3, 2, "dup");
    exceeded(f.limiter.reserve(&[r.clone(), r.clone()]).await)?;
    let a = f.limiter.reserve(&[window(&k, HOUR, 3, 1, "dup"), window(&k, HOUR, 3, 2, "dup")]).await?;
    assert_eq!((a.limits[0].remaining, a.limits[1].remaining), (2, 0));
    Ok(())
}

pub async fn amount_over_limit_never_fits(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let (_, _, retry) = exceeded(f.limiter.reserve(&[window(&format!("{n}:w"), HOUR, 10, 11, "tpm")]).await)?;
    assert_eq!(retry, None);
    let (_, _, retry) =
        exceeded(f.limiter.reserve(&[budget(&format!("{n}:b"), BudgetPeriod::Day, 10, 11)]).await)?;
    assert_eq!(retry, None);
    Ok(())
}

pub async fn settle_corrects_estimates_up_and_down(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    // Tokens per hour: estimate 800, real 300.
    let est = window(&format!("{n}:tpm"), HOUR, 1_000, 800, "tenant tokens per minute");
    assert_eq!(f.limiter.reserve(std::slice::from_ref(&est)).await?.limits[0].remaining, 200);
    f.limiter.settle(&[adj(&est, -500)]).await?;
    let more = window(&est.key, HOUR, 1_000, 600, "tenant tokens per minute");
    let rem = f.limiter.reserve(std::slice::from_ref(&more)).await?.limits[0].remaining;
    assert!((99..=100).contains(&rem), "{rem}");
    // Real usage above the estimate is charged: now over the limit.
    f.limiter.settle(&[adj(&more, 200)]).await?;
    let (name, _, _) =
        exceeded(f.limiter.reserve(&[window(&est.key, HOUR, 1_000, 1, "tenant tokens per minute")]).await)?;
    assert_eq!(name, "tenant tokens per minute");
    // Budgets (nano-dollars): worst case 900, real 250.
    let b = budget(&format!("{n}:b"), BudgetPeriod::Month, 1_000, 900);
    f.limiter.reserve(std::slice::from_ref(&b)).await?;
    f.limiter.settle(&[adj(&b, -650)]).await?;
    assert_eq!(
        f.limiter.reserve(&[budget(&b.key, BudgetPeriod::Month, 1_000, 750)]).await?.limits[0].remaining,
        0
    );
    f.limiter.settle(&[adj(&b, 5)]).await?; // an overrun past the cap is still recorded
    f.limiter.settle(&[adj(&b, -5)]).await?;
    exceeded(f.limiter.reserve(&[budget(&b.key, BudgetPeriod::Month, 1_000, 1)]).await)?;
    Ok(())
}

pub async fn settle_never_goes_below_zero_and_ignores_unknown_keys(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let b = budget(&format!("{n}:b"), BudgetPeriod::Day, 100, 10);
    f.limiter.reserve(std::slice::from_ref(&b)).await?;
    f.limiter.settle(&[adj(&b, -1_000)]).await?;
    assert_eq!(
        f.limiter.reserve(&[budget(&b.key, BudgetPeriod::Day, 100, 100)]).await?.limits[0].remaining,
        0
    );
    let w = window(&format!("{n}:w"), HOUR, 10, 5, "w");
    f.limiter.reserve(std::slice::from_ref(&w)).await?;
    f.limiter.settle(&[adj(&w, -50)]).await?;
    assert_eq!(f.limiter.reserve(&[window(&w.key, HOUR, 10, 10, "w")]).await?.limits[0].remaining, 0);
    let s = slot(&format!("{n}:s"), 1);
    f.limiter
        .settle(&[
            adj(&window(&format!("{n}:nope"), HOUR, 1, 1, "x"), -3),
            adj(&s, -1),
            Adjustment {
                key: format!("{n}:nope2").into(),
                kind: LimitKind::Calendar { period: BudgetPeriod::Total },
                delta: -7,
            },
        ])
        .await?;
    assert_eq!(f.limiter.reserve(std::slice::from_ref(&s)).await?.limits[0].remaining, 0);
    Ok(())
}

pub async fn concurrency_slots_released_on_settle(f: Fixture) -> Result<(), LimitError> {
    let s = slot(&format!("{}:inflight", ns()), 2);
    assert_eq!(f.limiter.reserve(std::slice::from_ref(&s)).await?.limits[0].remaining, 1);
    assert_eq!(f.limiter.reserve(std::slice::from_ref(&s)).await?.limits[0].remaining, 0);
    let (name, limit, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&s)).await)?;
    assert_eq!((name.as_str(), limit), ("key concurrent requests", 2));
    assert_eq!(retry, Some(super::CONCURRENCY_RETRY_AFTER));
    f.limiter.settle(&[adj(&s, -1)]).await?;
    f.limiter.reserve(std::slice::from_ref(&s)).await?;
    f.limiter.settle(&[adj(&s, -1), adj(&s, -1)]).await?;
    assert_eq!(f.limiter.reserve(std::slice::from_ref(&s)).await?.limits[0].remaining, 1);
    Ok(())
}

pub async fn calendar_budget_resets_at_the_month_boundary(f: Fixture) -> Result<(), LimitError> {
    f.clock.set(datetime!(2026-11-30 23:59:59 UTC));
    let b = budget(&format!("{}:proj", ns()), BudgetPeriod::Month, 1_000, 600);
    let a = f.limiter.reserve(std::slice::from_ref(&b)).await?;
    assert_eq!(a.limits[0].remaining, 400);
    assert_eq!(a.limits[0].reset_after, Some(Duration::from_secs(1)));
    let (name, limit, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&b)).await)?;
    assert_eq!((name.as_str(), limit, retry), ("project month budget", 1_000, Some(Duration::from_secs(1))));
    f.clock.advance(Duration::from_secs(1));
    let a = f.limiter.reserve(std::slice::from_ref(&b)).await?;
    assert_eq!(a.limits[0].remaining, 400);
    assert_eq!(a.limits[0].reset_after, Some(Duration::from_secs(31 * 86_400)));
    Ok(())
}

pub async fn calendar_week_and_day_reset_at_utc_midnight(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    f.clock.set(datetime!(2026-11-22 23:00 UTC)); // a Sunday
    let week = budget(&format!("{n}:w"), BudgetPeriod::Week, 10, 10);
    let day = budget(&format!("{n}:d"), BudgetPeriod::Day, 10, 10);
    f.limiter.reserve(&[week.clone(), day.clone()]).await?;
    f.clock.set(datetime!(2026-11-22 23:59:59.5 UTC));
    exceeded(f.limiter.reserve(std::slice::from_ref(&week)).await)?;
    exceeded(f.limiter.reserve(std::slice::from_ref(&day)).await)?;
    f.clock.set(datetime!(2026-11-23 0:00 UTC)); // Monday: new ISO week and new day
    let a = f.limiter.reserve(&[week.clone(), day.clone()]).await?;
    assert_eq!(a.limits[0].reset_after, Some(Duration::from_secs(7 * 86_400)));
    assert_eq!(a.limits[1].reset_after, Some(Duration::from_secs(86_400)));
    f.clock.set(datetime!(2026-11-24 0:00 UTC)); // Tuesday: new day, same week
    f.limiter.reserve(std::slice::from_ref(&day)).await?;
    exceeded(f.limiter.reserve(std::slice::from_ref(&week)).await)?;
    f.clock.set(T0);
    Ok(())
}

pub async fn total_budget_never_resets(f: Fixture) -> Result<(), LimitError> {
    let b = budget(&format!("{}:total", ns()), BudgetPeriod::Total, 100, 100);
    let a = f.limiter.reserve(std::slice::from_ref(&b)).await?;
    assert_eq!(a.limits[0].reset_after, None);
    f.clock.advance(Duration::from_secs(400 * 86_400));
    let (_, _, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&b)).await)?;
    assert_eq!(retry, None);
    Ok(())
}

pub async fn independent_keys_are_independent(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let a = window(&format!("{n}:a"), HOUR, 1, 1, "a");
    let b = window(&format!("{n}:b"), HOUR, 1, 1, "b");
    f.limiter.reserve(std::slice::from_ref(&a)).await?;
    f.limiter.reserve(std::slice::from_ref(&b)).await?;
    exceeded(f.limiter.reserve(std::slice::from_ref(&a)).await)?;
    // The same key with another kind is another counter.
    f.limiter.reserve(&[slot(&a.key, 1), budget(&a.key, BudgetPeriod::Day, 1, 1)]).await?;
    Ok(())
}

/// Runs `n` reservations of `reqs` at once on worker threads; returns how many were admitted
/// (backend suites race their own limiters with it too).
pub async fn race(
    limiter: &Arc<dyn RateLimiter>,
    n: usize,
    reqs: Vec<Reservation>,
) -> Result<usize, LimitError> {
    let mut set = JoinSet::new();
    let reqs = Arc::new(reqs);
    let start = Arc::new(tokio::sync::Barrier::new(n));
    for _ in 0..n {
        let (limiter, reqs, start) = (limiter.clone(), reqs.clone(), start.clone());
        set.spawn(async move {
            start.wait().await;
            limiter.reserve(&reqs).await
        });
    }
    let mut admitted = 0;
    while let Some(res) = set.join_next().await {
        match res {
            Ok(Ok(_)) => admitted += 1,
            Ok(Err(LimitError::Exceeded { .. })) => {}
            Ok(Err(e)) => return Err(e),
            Err(join) => return Err(LimitError::Unavailable(format!("task failed: {join}"))),
        }
    }
    Ok(admitted)
}

pub async fn race_50_concurrent_reserves_admit_exactly_the_limit(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    let reqs = vec![
        window(&format!("{n}:rpm"), HOUR, 20, 1, "key requests per minute"),
        window(&format!("{n}:tenant"), HOUR, 1_000, 1, "tenant requests per minute"),
    ];
    assert_eq!(race(&f.limiter, 50, reqs).await?, 20);
    Ok(())
}

pub async fn race_50_concurrent_budget_reservations_never_overshoot(f: Fixture) -> Result<(), LimitError> {
    let n = ns();
    // $1 = 1e9 nano-dollars; each request's worst case is 7.5 cents: at most 13 fit.
    let b = budget(&format!("{n}:proj"), BudgetPeriod::Month, 1_000_000_000, 75_000_000);
    let rpm = window(&format!("{n}:rpm"), HOUR, 1_000, 1, "key requests per minute");
    assert_eq!(race(&f.limiter, 50, vec![rpm, b.clone()]).await?, 13);
    let (_, _, retry) = exceeded(f.limiter.reserve(std::slice::from_ref(&b)).await)?;
    assert!(retry.is_some());
    Ok(())
}

pub async fn race_concurrency_slots_never_overshoot(f: Fixture) -> Result<(), LimitError> {
    let s = slot(&format!("{}:inflight", ns()), 7);
    assert_eq!(race(&f.limiter, 50, vec![s]).await?, 7);
    Ok(())
}
