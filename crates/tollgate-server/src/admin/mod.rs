//! The admin API under `/admin/v1` (being written).

use axum::Router;

use crate::app::AppState;

/// The admin routes, merged into the app by `build_app`.
pub fn router() -> Router<AppState> {
    Router::new()
}
