//! Metering building blocks: token counting when the provider reports none ([`tokens`]), the
//! effective-dated price table with config and tenant overrides ([`prices`]) and exact cost
//! arithmetic ([`cost`]).
//!
//! Where they run in the pipeline: `admit` estimates prompt tokens with
//! [`tokens::count_prompt_tokens`] for the rate-limit and budget reservation; streams feed a
//! [`tokens::StreamTokenCounter`]; `settle` picks the usage (provider's, counted or partial),
//! looks the price up with [`prices::PriceTable::lookup`] at the request's start time and records
//! [`cost::cost`] — an integer number of nano-dollars plus the id of the price version used, so
//! any bill can be recomputed.

pub mod cost;
pub mod pricer;
pub mod prices;
pub mod tokens;

pub use cost::{BillableTokens, Cost, cost, cost_tokens, cost_with_markup, max_cost};
pub use pricer::{Pricer, tenant_pricing};
pub use prices::{Price, PriceError, PriceTable, TenantPricing};
pub use tokens::{StreamTokenCounter, TokenizerFamily, UsageSource, count_prompt_tokens, count_text_tokens};
