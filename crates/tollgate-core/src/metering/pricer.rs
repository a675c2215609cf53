//! Prices requests at run time: a tenant's negotiated prices first, then the gateway's table
//! (built-in + config), with the tenant's markup. Lookups in the gateway's table are cached per
//! (provider kind, upstream model) for the UTC day they were made, since a price can only change
//! at a day boundary (`effective_from` is a date).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use time::{Date, OffsetDateTime};
use tollgate_providers::ProviderKind;
use tollgate_types::Usage;
use tollgate_types::limits::PricingPolicy;

use super::prices::lookup_in;
use super::{Cost, Price, PriceError, PriceTable, TenantPricing, cost_with_markup, max_cost};

/// Bound on cached lookups; when full the cache is cleared (cheap, rare, self-healing).
const CACHE_MAX: usize = 10_000;

/// A cached lookup: the UTC day it was made and its result.
type CacheEntry = (Date, Option<Arc<Price>>);

/// The gateway's prices plus a lookup cache.
pub struct Pricer {
    table: PriceTable,
    /// By provider kind, then upstream model (two levels so a lookup needs no allocation).
    cache: RwLock<HashMap<ProviderKind, HashMap<String, CacheEntry>>>,
}

impl Pricer {
    pub fn new(table: PriceTable) -> Self {
        Self { table, cache: RwLock::new(HashMap::new()) }
    }

    /// Applies `f` to the price of `upstream_model` on a `kind` provider at `at` and the markup
    /// to apply; `None` when the model has no price. (A callback rather than a returned price:
    /// a tenant's own price is borrowed from its pricing, never copied per request.)
    pub fn with_price<R>(
        &self,
        tenant: Option<&TenantPricing>,
        kind: ProviderKind,
        upstream_model: &str,
        at: OffsetDateTime,
        f: impl FnOnce(&Price, u32) -> R,
    ) -> Option<R> {
        let markup = tenant.map_or(0, |t| t.markup_bps);
        if let Some(t) = tenant
            && let Some(p) = lookup_in(&t.overrides, kind, upstream_model, at)
        {
            return Some(f(p, markup));
        }
        self.gateway_price(kind, upstream_model, at).map(|p| f(&p, markup))
    }

    /// What `usage` cost; `None` when the model has no price.
    pub fn cost(
        &self,
        tenant: Option<&TenantPricing>,
        kind: ProviderKind,
        upstream_model: &str,
        usage: &Usage,
        at: OffsetDateTime,
    ) -> Option<Cost> {
        self.with_price(tenant, kind, upstream_model, at, |price, markup| {
            cost_with_markup(usage, price, markup)
        })
    }

    /// The most a request can cost (nano-dollars): `prompt_tokens` in and `max_output_tokens` out
    /// at the price of the model; 0 when the model has no price.
    pub fn worst_case(
        &self,
        tenant: Option<&TenantPricing>,
        kind: ProviderKind,
        upstream_model: &str,
        prompt_tokens: u64,
        max_output_tokens: u64,
        at: OffsetDateTime,
    ) -> u64 {
        self.with_price(tenant, kind, upstream_model, at, |p, markup| {
            max_cost(prompt_tokens, max_output_tokens, p, markup).nanodollars
        })
        .unwrap_or(0)
    }

    fn gateway_price(
        &self,
        kind: ProviderKind,
        upstream_model: &str,
        at: OffsetDateTime,
    ) -> Option<Arc<Price>> {
        let day = at.to_offset(time::UtcOffset::UTC).date();
        if let Some((cached_day, price)) = self.cache.read().get(&kind).and_then(|m| m.get(upstream_model))
            && *cached_day == day
        {
            return price.clone();
        }
        let price = self.table.lookup(kind, upstream_model, at).cloned().map(Arc::new);
        let mut cache = self.cache.write();
        let models = cache.entry(kind).or_default();
        if models.len() >= CACHE_MAX {
            models.clear();
        }
        models.insert(upstream_model.to_owned(), (day, price.clone()));
        price
    }
}

/// A tenant's stored pricing, parsed; entries that no longer parse (they were validated when
/// set, so only after a format change) are skipped with the error returned for logging.
pub fn tenant_pricing(policy: &PricingPolicy) -> (TenantPricing, Vec<PriceError>) {
    let mut overrides = Vec::with_capacity(policy.prices.len());
    let mut errors = Vec::new();
    for entry in &policy.prices {
        match Price::from_entry(entry) {
            Ok(p) => overrides.push(p),
            Err(e) => errors.push(e),
        }
    }
    (TenantPricing { overrides, markup_bps: policy.markup_bps }, errors)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use tollgate_types::limits::{PriceAmount, PriceEntry};

    use super::*;

    fn entry(model: &str, input: &str, output: &str) -> PriceEntry {
        PriceEntry {
            id: None,
            provider: "openai".into(),
            model: model.into(),
            effective_from: "2024-01-01".into(),
            input: PriceAmount::Text(input.into()),
            output: Some(PriceAmount::Text(output.into())),
            cached_input: None,
            cache_write: None,
            reasoning: None,
            source: None,
        }
    }

    #[test]
    fn tenant_prices_win_then_gateway_prices_with_markup() {
        let at = datetime!(2026-11-21 12:00 UTC);
        let gateway = PriceTable::new(vec![Price::from_entry(&entry("gpt-4o", "2", "8")).unwrap()]);
        let pricer = Pricer::new(gateway);
        let usage = Usage::new(1_000_000, 1_000_000, None);

        let plain = pricer.cost(None, ProviderKind::OpenAi, "gpt-4o-2024-08-06", &usage, at).unwrap();
        assert_eq!(plain.nanodollars, 10_000_000_000);
        assert_eq!(plain.price_id, "openai/gpt-4o@2024-01-01");

        let (negotiated, errors) = tenant_pricing(&PricingPolicy {
            markup_bps: 1_000,
            prices: vec![PriceEntry { id: Some("acme/gpt-4o".into()), ..entry("gpt-4o", "1", "4") }],
        });
        assert!(errors.is_empty());
        let theirs = pricer.cost(Some(&negotiated), ProviderKind::OpenAi, "gpt-4o", &usage, at).unwrap();
        assert_eq!((theirs.nanodollars, theirs.price_id.as_str()), (5_500_000_000, "acme/gpt-4o"));

        // A model the tenant has no price for: the gateway's price, with the tenant's markup.
        let markup_only = TenantPricing { overrides: Vec::new(), markup_bps: 10_000 };
        let c = pricer.cost(Some(&markup_only), ProviderKind::OpenAi, "gpt-4o", &usage, at).unwrap();
        assert_eq!(c.nanodollars, 20_000_000_000);

        assert!(pricer.cost(None, ProviderKind::OpenAi, "unknown-model", &usage, at).is_none());
        assert_eq!(pricer.worst_case(None, ProviderKind::OpenAi, "unknown-model", 10, 10, at), 0);
        // 1M in at $2 + 1M out at $8.
        assert_eq!(
            pricer.worst_case(None, ProviderKind::OpenAi, "gpt-4o", 1_000_000, 1_000_000, at),
            10_000_000_000
        );
    }

    #[test]
    fn cached_lookups_are_per_day() {
        let table = PriceTable::new(vec![
            Price::from_entry(&entry("m", "1", "1")).unwrap(),
            Price::from_entry(&PriceEntry { effective_from: "2026-11-22".into(), ..entry("m", "2", "2") })
                .unwrap(),
        ]);
        let pricer = Pricer::new(table);
        let input = |at| pricer.with_price(None, ProviderKind::OpenAi, "m", at, |p, _| p.input).unwrap();
        assert_eq!(input(datetime!(2026-11-21 23:59 UTC)), 1_000_000);
        assert_eq!(input(datetime!(2026-11-22 00:01 UTC)), 2_000_000);
    }
}
