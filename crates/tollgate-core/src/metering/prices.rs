//! The effective-dated price table: what one million tokens of each kind cost for a model at a
//! given time, as exact integers (micro-dollars per million tokens), never floats.
//!
//! Built-in prices come from `prices.yaml` (embedded; one comment per provider names the source
//! page and the date it was checked). Config-level overrides and a tenant's negotiated prices
//! are layered on top with [`PriceTable::with_overrides`]; a tenant's markup travels in
//! [`TenantPricing`] and is applied by [`crate::metering::cost::cost_with_markup`]. `settle` looks
//! the price up at the request's start time, so a price change never re-prices requests that
//! were already running.

use serde::Serialize;
use time::{Date, OffsetDateTime, macros::format_description};
use tollgate_providers::ProviderKind;

/// The built-in price table, in the same shape as config overrides.
const BUILTIN_PRICES: &str = include_str!("prices.yaml");

/// Micro-dollars (1e-6 USD) per one million tokens, i.e. pico-dollars per token.
pub type MicroUsdPerMTok = u64;

/// One price version of a model (or model family).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Price {
    /// Stable id recorded with every cost, e.g. `openai/gpt-4o-mini@2024-07-18`.
    pub id: String,
    /// Price namespace: `openai`, `anthropic`, `gemini`, `cohere`, `mistral`, … (see
    /// [`PriceTable::lookup`] for how provider kinds map onto namespaces).
    pub provider: String,
    /// Model name or pattern: an exact upstream model name, which also matches dated snapshots
    /// (`gpt-4o` matches `gpt-4o-2024-08-06`: the name followed by `-`, `@` or `:`), or a prefix
    /// ending in `*` (`claude-3-5-sonnet*`).
    pub model: String,
    /// First day (UTC) this price applies.
    pub effective_from: Date,
    /// Uncached input tokens.
    pub input: MicroUsdPerMTok,
    /// Output tokens (including reasoning tokens unless `reasoning` is set).
    pub output: MicroUsdPerMTok,
    /// Input tokens read from the provider's prompt cache; `None`: billed as `input`.
    pub cached_input: Option<MicroUsdPerMTok>,
    /// Input tokens written to the provider's prompt cache; `None`: billed as `input`.
    pub cache_write: Option<MicroUsdPerMTok>,
    /// Reasoning tokens; `None`: billed as `output`.
    pub reasoning: Option<MicroUsdPerMTok>,
    /// Where the price was taken from (URL and date); required for built-in entries.
    pub source: Option<String>,
}

pub use tollgate_types::limits::PriceAmount as RawAmount;
/// A price entry as written in YAML or JSON (built-in table, config file, admin API).
pub use tollgate_types::limits::PriceEntry as RawPrice;

/// A price entry that cannot be used; names the entry and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    #[error("price entry `{entry}`: `{field}` = {value:?}: {reason}")]
    Amount { entry: String, field: &'static str, value: String, reason: &'static str },
    #[error("price entry `{entry}`: effective_from = {value:?} is not a YYYY-MM-DD date")]
    Date { entry: String, value: String },
    #[error("price entry `{entry}`: {reason}")]
    Entry { entry: String, reason: &'static str },
    #[error("price table: {0}")]
    Yaml(String),
}

/// Parses a non-negative decimal USD amount into micro-dollars (`"0.15"` → `150_000`).
pub fn parse_usd_micros(text: &str) -> Result<u64, &'static str> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err("negative prices are not allowed");
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return Err("expected a decimal number such as \"0.15\"");
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a decimal number such as \"0.15\"");
    }
    if frac.len() > 6 {
        return Err("more than 6 decimals (the unit is one micro-dollar per million tokens)");
    }
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| "amount too large")? };
    let mut frac_micros: u64 = 0;
    for b in frac.bytes().chain(std::iter::repeat(b'0')).take(6) {
        frac_micros = frac_micros * 10 + u64::from(b - b'0');
    }
    whole.checked_mul(1_000_000).and_then(|w| w.checked_add(frac_micros)).ok_or("amount too large")
}

impl Price {
    /// Validates and converts one entry as written.
    pub fn from_entry(entry: &RawPrice) -> Result<Price, PriceError> {
        let label = entry
            .id
            .clone()
            .unwrap_or_else(|| format!("{}/{}@{}", entry.provider, entry.model, entry.effective_from));
        if entry.provider.trim().is_empty() || entry.model.trim().is_empty() {
            return Err(PriceError::Entry { entry: label, reason: "provider and model must not be empty" });
        }
        if entry.model.trim_end_matches('*').is_empty() {
            return Err(PriceError::Entry { entry: label, reason: "a `*` pattern needs a prefix" });
        }
        let effective_from =
            Date::parse(entry.effective_from.trim(), format_description!("[year]-[month]-[day]")).map_err(
                |_| PriceError::Date { entry: label.clone(), value: entry.effective_from.clone() },
            )?;
        let amount = |field: &'static str, raw: &RawAmount| {
            let value = raw.as_decimal();
            parse_usd_micros(&value).map_err(|reason| PriceError::Amount {
                entry: label.clone(),
                field,
                value,
                reason,
            })
        };
        let optional =
            |field: &'static str, raw: &Option<RawAmount>| raw.as_ref().map(|r| amount(field, r)).transpose();
        Ok(Price {
            id: entry
                .id
                .clone()
                .unwrap_or_else(|| format!("{}/{}@{}", entry.provider, entry.model, effective_from)),
            provider: entry.provider.clone(),
            model: entry.model.clone(),
            effective_from,
            input: amount("input", &entry.input)?,
            output: optional("output", &entry.output)?.unwrap_or(0),
            cached_input: optional("cached_input", &entry.cached_input)?,
            cache_write: optional("cache_write", &entry.cache_write)?,
            reasoning: optional("reasoning", &entry.reasoning)?,
            source: entry.source.clone(),
        })
    }
}

/// Parses a YAML list of price entries, reporting every bad entry (not just the first).
pub fn parse_price_list(yaml: &str) -> Result<Vec<Price>, Vec<PriceError>> {
    let raw: Vec<RawPrice> = yaml_serde::from_str(yaml).map_err(|e| vec![PriceError::Yaml(e.to_string())])?;
    let mut prices = Vec::with_capacity(raw.len());
    let mut errors = Vec::new();
    for entry in &raw {
        match Price::from_entry(entry) {
            Ok(price) => prices.push(price),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(prices) } else { Err(errors) }
}

// === impl Price ===

impl Price {
    /// How specifically this entry matches `model` (already normalised): `None` when it does not
    /// match; higher is more specific. Exact names beat every pattern; among patterns, longer
    /// prefixes win.
    fn specificity(&self, model: &str) -> Option<usize> {
        if let Some(prefix) = self.model.strip_suffix('*') {
            return model.starts_with(prefix).then_some(prefix.len());
        }
        if model == self.model {
            return Some(usize::MAX);
        }
        let rest = model.strip_prefix(self.model.as_str())?;
        rest.starts_with(['-', '@', ':']).then_some(self.model.len())
    }
}

/// Per-tenant pricing, as the admin API and config will store it: negotiated price entries that
/// win over the gateway's table, and a markup on top of the computed cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantPricing {
    /// Entries with the same shape as the built-in ones; they take precedence for this tenant.
    pub overrides: Vec<Price>,
    /// Markup in basis points (100 = 1%, 10_000 = +100%), applied exactly to the summed cost.
    pub markup_bps: u32,
}

/// Price entries in precedence layers: the last [`with_overrides`](Self::with_overrides) layer
/// first, the built-in table last.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    /// `layers[0]` is the base table; later layers win.
    layers: Vec<Vec<Price>>,
}

impl PriceTable {
    /// The embedded built-in table.
    pub fn builtin() -> Result<Self, Vec<PriceError>> {
        Ok(Self::new(parse_price_list(BUILTIN_PRICES)?))
    }

    /// A table from explicit entries (tests, or a deployment that ships its own table).
    pub fn new(entries: Vec<Price>) -> Self {
        Self { layers: vec![entries] }
    }

    /// A new table where `entries` (config overrides, or a tenant's negotiated prices) take
    /// precedence: a lookup consults them first and falls back to this table only for models
    /// they do not cover (at that time). An override with the same id as an existing entry
    /// replaces it outright.
    pub fn with_overrides(&self, entries: Vec<Price>) -> Self {
        let mut layers: Vec<Vec<Price>> = self
            .layers
            .iter()
            .map(|layer| layer.iter().filter(|p| !entries.iter().any(|o| o.id == p.id)).cloned().collect())
            .collect();
        layers.push(entries);
        Self { layers }
    }

    /// The table a tenant's requests are priced with.
    pub fn for_tenant(&self, tenant: &TenantPricing) -> Self {
        if tenant.overrides.is_empty() { self.clone() } else { self.with_overrides(tenant.overrides.clone()) }
    }

    /// Every entry, base layer first.
    pub fn entries(&self) -> impl Iterator<Item = &Price> {
        self.layers.iter().flatten()
    }

    /// The price of `upstream_model` served by a provider of `provider_kind` at `at`.
    ///
    /// Namespaces: `openai` and `azure` use `openai` prices; `openai_compatible` (Mistral,
    /// Gemini's compatible endpoint, self-hosted models…) searches every namespace, the model
    /// name deciding; each other kind uses its own name. Within the first layer (overrides
    /// first) that has a match: the most specific model match (exact name, then longest prefix)
    /// whose latest `effective_from ≤ at` exists; a less specific match is used only when the
    /// more specific one is not yet effective. Matching is case-insensitive and ignores a
    /// `models/` or `provider/` prefix on the upstream name.
    pub fn lookup(
        &self,
        provider_kind: ProviderKind,
        upstream_model: &str,
        at: OffsetDateTime,
    ) -> Option<&Price> {
        self.layers.iter().rev().find_map(|layer| lookup_in(layer, provider_kind, upstream_model, at))
    }
}

/// [`PriceTable::lookup`] within one layer of entries (a tenant's negotiated prices are looked
/// up this way before the gateway's table).
pub fn lookup_in<'a>(
    entries: &'a [Price],
    provider_kind: ProviderKind,
    upstream_model: &str,
    at: OffsetDateTime,
) -> Option<&'a Price> {
    let namespace = match provider_kind {
        ProviderKind::OpenAi | ProviderKind::Azure => Some("openai"),
        ProviderKind::OpenAiCompatible => None,
        other => Some(other.as_str()),
    };
    let lower = upstream_model.trim().to_ascii_lowercase();
    let model = lower.rsplit('/').next().unwrap_or(&lower);
    let day = at.to_offset(time::UtcOffset::UTC).date();
    entries
        .iter()
        .filter(|p| namespace.is_none_or(|ns| p.provider.eq_ignore_ascii_case(ns)))
        .filter(|p| p.effective_from <= day)
        .filter_map(|p| p.specificity(model).map(|s| (s, p)))
        .max_by(|(sa, pa), (sb, pb)| sa.cmp(sb).then(pa.effective_from.cmp(&pb.effective_from)))
        .map(|(_, price)| price)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn table() -> PriceTable {
        PriceTable::builtin().unwrap()
    }

    fn price(provider: &str, model: &str, from: Date, input: u64, output: u64) -> Price {
        Price {
            id: format!("{provider}/{model}@{from}"),
            provider: provider.into(),
            model: model.into(),
            effective_from: from,
            input,
            output,
            cached_input: None,
            cache_write: None,
            reasoning: None,
            source: None,
        }
    }

    #[test]
    fn decimal_amounts_parse_exactly() {
        assert_eq!(parse_usd_micros("0.15"), Ok(150_000));
        assert_eq!(parse_usd_micros("2.5"), Ok(2_500_000));
        assert_eq!(parse_usd_micros("10"), Ok(10_000_000));
        assert_eq!(parse_usd_micros("0.000001"), Ok(1));
        assert_eq!(parse_usd_micros(".5"), Ok(500_000));
        assert_eq!(parse_usd_micros("0"), Ok(0));
        assert_eq!(parse_usd_micros("0.0375"), Ok(37_500));
        assert!(parse_usd_micros("0.0000001").is_err());
        assert!(parse_usd_micros("-1").is_err());
        assert!(parse_usd_micros("1e3").is_err());
        assert!(parse_usd_micros("").is_err());
        assert!(parse_usd_micros(".").is_err());
        assert!(parse_usd_micros("99999999999999999999").is_err());
    }

    #[test]
    fn bad_entries_are_rejected_naming_the_entry() {
        let yaml = r#"
- provider: openai
  model: ok
  effective_from: "2024-01-01"
  input: 0.15
  output: "0.60"
- provider: openai
  model: too-precise
  effective_from: "2024-01-01"
  input: "0.0000001"
- id: custom/neg
  provider: openai
  model: neg
  effective_from: "2024-01-01"
  input: "1"
  output: "-2"
- provider: openai
  model: bad-date
  effective_from: "2024-13-01"
  input: "1"
"#;
        let errors = parse_price_list(yaml).unwrap_err();
        assert_eq!(errors.len(), 3);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("openai/too-precise@2024-01-01") && text[0].contains("6 decimals"),
            "{}",
            text[0]
        );
        assert!(text[1].contains("custom/neg") && text[1].contains("output") && text[1].contains("negative"));
        assert!(text[2].contains("bad-date") && text[2].contains("YYYY-MM-DD"));

        let ok = parse_price_list(&yaml[..yaml.find("- provider: openai\n  model: too").unwrap()]).unwrap();
        assert_eq!(ok[0].input, 150_000);
        assert_eq!(ok[0].output, 600_000);
        assert_eq!(ok[0].id, "openai/ok@2024-01-01");
        assert!(
            parse_price_list(
                "- provider: openai\n  model: x\n  effective_from: 2024-01-01\n  input: 1\n  typo: 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn every_builtin_entry_parses_and_has_a_source() {
        let table = table();
        let entries: Vec<&Price> = table.entries().collect();
        assert!(entries.len() > 40, "{}", entries.len());
        let mut ids = std::collections::HashSet::new();
        for p in &entries {
            assert!(p.source.as_deref().is_some_and(|s| s.starts_with("https://")), "{} has no source", p.id);
            assert!(ids.insert(p.id.clone()), "duplicate id {}", p.id);
            assert!(p.input > 0 || p.output > 0, "{} is free", p.id);
        }
        for ns in ["openai", "anthropic", "gemini", "cohere", "mistral"] {
            assert!(entries.iter().any(|p| p.provider == ns), "no {ns} prices");
        }
        for model in ["text-embedding-3-small", "embed-v4.0", "mistral-embed", "gemini-embedding-001"] {
            assert!(entries.iter().any(|p| p.model == model), "no {model}");
        }
    }

    #[test]
    fn lookup_prefers_exact_then_longest_prefix() {
        let t = table();
        let at = datetime!(2025-06-01 12:00 UTC);
        let mini = t.lookup(ProviderKind::OpenAi, "gpt-4o-mini", at).unwrap();
        assert_eq!((mini.model.as_str(), mini.input, mini.output), ("gpt-4o-mini", 150_000, 600_000));
        // Dated snapshots resolve to their family, the longest prefix winning.
        let snap = t.lookup(ProviderKind::OpenAi, "gpt-4o-mini-2024-07-18", at).unwrap();
        assert_eq!(snap.model, "gpt-4o-mini");
        assert_eq!(t.lookup(ProviderKind::Azure, "gpt-4o-2024-11-20", at).unwrap().model, "gpt-4o");
        // An exact snapshot entry beats the family.
        let old = t.lookup(ProviderKind::OpenAi, "gpt-4o-2024-05-13", at).unwrap();
        assert_eq!((old.model.as_str(), old.input), ("gpt-4o-2024-05-13", 5_000_000));
        // `gpt-4` must not catch `gpt-4o`, nor `o1` catch `o1-mini`.
        assert_eq!(t.lookup(ProviderKind::OpenAi, "gpt-4-0613", at).unwrap().model, "gpt-4");
        assert_eq!(t.lookup(ProviderKind::OpenAi, "o1-mini-2024-09-12", at).unwrap().model, "o1-mini");
        let sonnet = t.lookup(ProviderKind::Anthropic, "claude-sonnet-4-20250514", at).unwrap();
        assert_eq!((sonnet.model.as_str(), sonnet.cache_write), ("claude-sonnet-4", Some(3_750_000)));
        let july = datetime!(2025-07-01 00:00 UTC);
        assert_eq!(
            t.lookup(ProviderKind::Gemini, "models/gemini-2.5-flash", july).unwrap().model,
            "gemini-2.5-flash"
        );
        // The preview's own exact entry, with its separate thinking price.
        let preview = t.lookup(ProviderKind::Gemini, "gemini-2.5-flash-preview-04-17", july).unwrap();
        assert_eq!(preview.reasoning, Some(3_500_000));
        // Namespaces: Anthropic prices are not used for an OpenAI upstream; the compatible kind
        // searches all of them.
        assert!(t.lookup(ProviderKind::OpenAi, "claude-sonnet-4", at).is_none());
        assert_eq!(
            t.lookup(ProviderKind::OpenAiCompatible, "mistral-large-latest", at).unwrap().provider,
            "mistral"
        );
        assert!(t.lookup(ProviderKind::OpenAi, "unknown-model", at).is_none());
        // Cohere: `command-r` catches neither `command-r7b` nor the 08-2024 refreshes.
        let cohere = |m| t.lookup(ProviderKind::Cohere, m, at).unwrap().model.as_str();
        assert_eq!(cohere("command-r7b-12-2024"), "command-r7b");
        assert_eq!(cohere("command-r-08-2024"), "command-r-08-2024");
        assert_eq!(cohere("command-r-plus-04-2024"), "command-r-plus");
        assert_eq!(cohere("command-a-03-2025"), "command-a");
        let small = t.lookup(ProviderKind::OpenAiCompatible, "mistral-small-2501", at).unwrap();
        assert_eq!((small.input, small.output), (100_000, 300_000));
        assert!(t.lookup(ProviderKind::Echo, "echo", at).is_none());
    }

    #[test]
    fn lookup_follows_effective_dates() {
        let t = table();
        // o3 was cut by 80% on 2025-06-10.
        let before = t.lookup(ProviderKind::OpenAi, "o3", datetime!(2025-06-09 23:59:59 UTC)).unwrap();
        let after = t.lookup(ProviderKind::OpenAi, "o3-2025-04-16", datetime!(2025-06-10 00:00 UTC)).unwrap();
        assert_eq!((before.input, before.output), (10_000_000, 40_000_000));
        assert_eq!((after.input, after.output), (2_000_000, 8_000_000));
        assert_ne!(before.id, after.id);
        // Not yet released: no price.
        assert!(t.lookup(ProviderKind::OpenAi, "o3", datetime!(2024-01-01 00:00 UTC)).is_none());
        // Offsets are normalised to UTC days.
        let late = datetime!(2025-06-09 23:30 -02:00);
        assert_eq!(t.lookup(ProviderKind::OpenAi, "o3", late).unwrap().id, after.id);
        // gemini-1.5-flash price cut of 2024-08-12.
        let g = |at| t.lookup(ProviderKind::Gemini, "gemini-1.5-flash-002", at).unwrap().input;
        assert_eq!(g(datetime!(2024-08-11 00:00 UTC)), 350_000);
        assert_eq!(g(datetime!(2024-08-12 00:00 UTC)), 75_000);
    }

    #[test]
    fn overrides_win_and_replace() {
        let base = PriceTable::new(vec![
            price("openai", "gpt-4o", date!(2024 - 05 - 13), 5_000_000, 15_000_000),
            price("openai", "gpt-4o", date!(2024 - 10 - 02), 2_500_000, 10_000_000),
            price("openai", "gpt-4o-mini", date!(2024 - 07 - 18), 150_000, 600_000),
        ]);
        let at = datetime!(2025-01-01 00:00 UTC);
        assert_eq!(base.lookup(ProviderKind::OpenAi, "gpt-4o", at).unwrap().input, 2_500_000);

        // A negotiated family price, dated before the built-in change, still wins.
        let mut negotiated = price("openai", "gpt-4o*", date!(2024 - 01 - 01), 2_000_000, 8_000_000);
        negotiated.id = "tenant-acme/gpt-4o".into();
        let tenant = TenantPricing { overrides: vec![negotiated], markup_bps: 0 };
        let t = base.for_tenant(&tenant);
        assert_eq!(t.lookup(ProviderKind::OpenAi, "gpt-4o-2024-08-06", at).unwrap().id, "tenant-acme/gpt-4o");
        // Models the override does not cover still resolve to the base table.
        assert_eq!(t.lookup(ProviderKind::OpenAi, "o1", at), None);
        let t2 = t.with_overrides(vec![]);
        assert_eq!(t2.lookup(ProviderKind::OpenAi, "gpt-4o", at).unwrap().id, "tenant-acme/gpt-4o");

        // Same id: replaced outright.
        let replacement = price("openai", "gpt-4o-mini", date!(2024 - 07 - 18), 100_000, 400_000);
        let r = base.with_overrides(vec![replacement]);
        assert_eq!(r.lookup(ProviderKind::OpenAi, "gpt-4o-mini", at).unwrap().input, 100_000);
        assert_eq!(r.entries().filter(|p| p.model == "gpt-4o-mini").count(), 1);
        // An override that is not yet effective falls through to the base.
        let future = price("openai", "gpt-4o-mini", date!(2030 - 01 - 01), 1, 1);
        let f = base.with_overrides(vec![future]);
        assert_eq!(f.lookup(ProviderKind::OpenAi, "gpt-4o-mini", at).unwrap().input, 150_000);
    }
}
