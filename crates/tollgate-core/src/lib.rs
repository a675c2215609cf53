//! The Tollgate pipeline and its stages, free of HTTP-server, database and Redis code.
//!
//! - [`config`]: the YAML file → validated [`config::Config`];
//! - [`registry`]: model aliases → deployments (adapter + upstream model + timeouts);
//! - [`pipeline`]: one request, top to bottom: admit → route → call with fallback → settle;
//! - [`metrics`]: the metric names and the helpers that record them;
//! - [`retention`]: the background job removing usage records past `usage.retention_days`.

pub mod admin;
pub mod alerts;
pub mod auth;
pub mod byok;
pub mod cache;
pub mod config;
pub mod env;
pub mod limits;
pub mod metering;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod retention;
pub mod routing;
pub mod secrets;
pub mod usage_sink;

pub use pipeline::{Gateway, RequestCtx};
