//! Admin API tests over real HTTP: the real app on a real store, each test on SQLite and on
//! PostgreSQL (its own temp file or database), plus a mock upstream for inference and BYOK.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers: a failed step must fail the test loudly"
)]

/// Runs each named `async fn(Backend)` as a test on every store: `<module>::sqlite::<name>` and
/// `<module>::postgres::<name>`.
macro_rules! on_every_store {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await;
                }
            )+
        }
    };
}

mod audit;
mod byok;
mod cache;
mod crud;
mod harness;
mod input;
mod isolation;
mod keys;
mod limits;
mod rbac;
mod routing;
mod usage;
