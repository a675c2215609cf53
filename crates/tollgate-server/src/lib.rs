//! The HTTP front of Tollgate: the axum app, the OpenAI-compatible ingress, errors in the
//! caller's dialect, authentication and metrics. The pipeline itself lives in `tollgate-core`.

pub mod admin;
pub mod app;
pub mod auth;
pub mod errors;
pub mod extract;
pub mod ingress;
pub mod observe;
pub mod prometheus;
pub mod sse;

pub use app::{AppState, build_app};
