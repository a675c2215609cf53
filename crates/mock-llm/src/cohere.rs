//! cohere wire format (stub: to be filled in).

use axum::Router;

use crate::core::State;

pub fn routes() -> Router<State> {
    Router::new()
}
