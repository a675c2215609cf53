//! Exact cost arithmetic: token counts × a [`Price`] → integer nano-dollars, with the id of the
//! price version used (and the markup) so any bill can be recomputed. Runs in `settle`, once per
//! request, after the usage is known; also for the budget reservation (worst case) in `admit`.
//!
//! Units: prices are micro-dollars per million tokens, which is exactly one pico-dollar
//! (1e-12 USD) per token; products and sums are taken in `u128` pico-dollars (saturating, so an
//! absurd count cannot wrap), the markup is applied to that exact sum, and the result is rounded
//! once, half-up, to whole nano-dollars (1e-9 USD). Rounding per request, never per token kind,
//! keeps the error under half a nano-dollar per request.

use serde::{Deserialize, Serialize};
use tollgate_types::Usage;

use super::prices::Price;

/// Pico-dollars per nano-dollar.
const PICO_PER_NANO: u128 = 1_000;
/// Basis points in 100%.
const BPS_ONE: u128 = 10_000;

/// The cost of one request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cost {
    /// Integer nano-USD (1e-9 $), markup included.
    pub nanodollars: u64,
    /// [`Price::id`] of the price version used.
    pub price_id: String,
    /// The markup applied, in basis points (0: none).
    #[serde(default)]
    pub markup_bps: u32,
}

/// The token counts a cost is computed from, in OpenAI's convention: `prompt` is the whole
/// input and *includes* `cached_input` and `cache_write`; `completion` is the whole output and
/// *includes* `reasoning` (OpenAI reports `completion_tokens_details.reasoning_tokens` as a part
/// of `completion_tokens`, and adapters of other providers normalise to the same convention).
/// A part larger than its whole is clamped to the whole, so nothing is billed twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillableTokens {
    pub prompt: u64,
    pub cached_input: u64,
    /// Tokens written to the provider's prompt cache (Anthropic `cache_creation_input_tokens`).
    /// [`Usage`] has no field for it yet, so [`BillableTokens::from`] sets 0; the adapter that
    /// sees it fills it in.
    pub cache_write: u64,
    pub completion: u64,
    pub reasoning: u64,
}

impl From<&Usage> for BillableTokens {
    fn from(usage: &Usage) -> Self {
        Self {
            prompt: usage.prompt_tokens,
            cached_input: usage.cached_tokens(),
            cache_write: 0,
            completion: usage.completion_tokens,
            reasoning: usage.completion_tokens_details.map_or(0, |d| d.reasoning_tokens),
        }
    }
}

impl BillableTokens {
    /// The exact cost in pico-dollars, before markup.
    fn picodollars(&self, price: &Price) -> u128 {
        let cached = self.cached_input.min(self.prompt);
        let written = self.cache_write.min(self.prompt - cached);
        let uncached = self.prompt - cached - written;
        let reasoning = self.reasoning.min(self.completion);
        let visible_output = self.completion - reasoning;
        let term = |tokens: u64, rate: u64| u128::from(tokens).saturating_mul(u128::from(rate));
        term(uncached, price.input)
            .saturating_add(term(cached, price.cached_input.unwrap_or(price.input)))
            .saturating_add(term(written, price.cache_write.unwrap_or(price.input)))
            .saturating_add(term(visible_output, price.output))
            .saturating_add(term(reasoning, price.reasoning.unwrap_or(price.output)))
    }
}

/// `pico × (10000 + markup) / (10000 × 1000)`, rounded half-up, saturating at `u64::MAX`.
fn to_nanodollars(pico: u128, markup_bps: u32) -> u64 {
    let numerator = pico.saturating_mul(BPS_ONE + u128::from(markup_bps));
    let denominator = BPS_ONE * PICO_PER_NANO;
    let rounded = numerator.saturating_add(denominator / 2) / denominator;
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// The cost of `usage` at `price`, without markup. See [`cost_tokens`] for the rules.
pub fn cost(usage: &Usage, price: &Price) -> Cost {
    cost_tokens(&BillableTokens::from(usage), price, 0)
}

/// The cost of `usage` at `price` with a tenant's markup (basis points) applied exactly.
pub fn cost_with_markup(usage: &Usage, price: &Price, markup_bps: u32) -> Cost {
    cost_tokens(&BillableTokens::from(usage), price, markup_bps)
}

/// The cost of `tokens` at `price`:
/// - uncached input (`prompt − cached_input − cache_write`) at `input`;
/// - cached input at `cached_input`, or `input` when the price has none;
/// - cache writes at `cache_write`, or `input` when the price has none;
/// - output other than reasoning at `output`;
/// - reasoning at `reasoning`, or `output` when the price has none (so with OpenAI prices a
///   reasoning model costs exactly `completion_tokens × output`);
///
/// summed exactly, marked up by `markup_bps`, rounded once half-up to nano-dollars.
pub fn cost_tokens(tokens: &BillableTokens, price: &Price, markup_bps: u32) -> Cost {
    Cost {
        nanodollars: to_nanodollars(tokens.picodollars(price), markup_bps),
        price_id: price.id.clone(),
        markup_bps,
    }
}

/// The worst-case cost of a request before it runs, for the budget reservation in `admit`:
/// every prompt token at the uncached input price (the cache may miss) and the whole output cap
/// at the higher of the output and reasoning prices, marked up. `settle` then charges the real
/// [`cost`] and releases the difference.
pub fn max_cost(prompt_tokens: u64, max_output_tokens: u64, price: &Price, markup_bps: u32) -> Cost {
    let output_rate = price.output.max(price.reasoning.unwrap_or(0));
    let pico = u128::from(prompt_tokens)
        .saturating_mul(u128::from(price.input))
        .saturating_add(u128::from(max_output_tokens).saturating_mul(u128::from(output_rate)));
    Cost { nanodollars: to_nanodollars(pico, markup_bps), price_id: price.id.clone(), markup_bps }
}

// === impl Cost ===

impl Cost {
    /// What a request answered from the gateway's response cache would have cost had it gone
    /// upstream: the cached response's usage priced at today's price (and the tenant's markup).
    /// Recorded as the cache saving; the request itself is billed at zero (or a cache fee).
    pub fn saved(usage: &Usage, price: &Price, markup_bps: u32) -> Cost {
        cost_with_markup(usage, price, markup_bps)
    }

    /// What the provider's prompt cache saved on this request: the cost had the cached input
    /// been billed as uncached input, minus the actual cost (nano-dollars, markup included).
    pub fn prompt_cache_saving(tokens: &BillableTokens, price: &Price, markup_bps: u32) -> u64 {
        let uncached = BillableTokens { cached_input: 0, ..*tokens };
        let full = cost_tokens(&uncached, price, markup_bps).nanodollars;
        full.saturating_sub(cost_tokens(tokens, price, markup_bps).nanodollars)
    }

    /// The amount in USD as an exact decimal string with 9 decimals (`"0.000270000"`), for CSV
    /// exports and logs; never parse it back through a float.
    pub fn usd(&self) -> String {
        format!("{}.{:09}", self.nanodollars / 1_000_000_000, self.nanodollars % 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;
    use tollgate_types::{CompletionTokensDetails, PromptTokensDetails};

    fn price(input: u64, output: u64) -> Price {
        Price {
            id: "test/model@2024-01-01".into(),
            provider: "test".into(),
            model: "model".into(),
            effective_from: date!(2024 - 01 - 01),
            input,
            output,
            cached_input: None,
            cache_write: None,
            reasoning: None,
            source: None,
        }
    }

    fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: Some(PromptTokensDetails { cached_tokens: cached }),
            completion_tokens_details: Some(CompletionTokensDetails { reasoning_tokens: reasoning }),
        }
    }

    #[test]
    fn plain_input_and_output() {
        // gpt-4o-mini: $0.15 / $0.60 per M. 1000 × 0.15e-6 + 200 × 0.60e-6 = $0.00027.
        let c = cost(&Usage::new(1000, 200, None), &price(150_000, 600_000));
        assert_eq!(c.nanodollars, 270_000);
        assert_eq!(c.price_id, "test/model@2024-01-01");
        assert_eq!(c.usd(), "0.000270000");
        assert_eq!(cost(&Usage::default(), &price(150_000, 600_000)).nanodollars, 0);
    }

    #[test]
    fn cached_input_is_not_billed_twice() {
        // gpt-4o: $2.50 / $10 / cached $1.25. 500 uncached + 1500 cached + 100 out:
        // 500 × 2.5 + 1500 × 1.25 + 100 × 10 = 1250 + 1875 + 1000 µ$ = $0.004125.
        let mut p = price(2_500_000, 10_000_000);
        p.cached_input = Some(1_250_000);
        assert_eq!(cost(&usage(2000, 100, 1500, 0), &p).nanodollars, 4_125_000);
        // Without a cached price, cached tokens cost the input price.
        p.cached_input = None;
        assert_eq!(cost(&usage(2000, 100, 1500, 0), &p).nanodollars, 6_000_000);
        // A cached count above the prompt is clamped (never negative uncached input).
        assert_eq!(cost(&usage(10, 0, 50, 0), &p).nanodollars, 25_000);
    }

    #[test]
    fn reasoning_is_part_of_completion() {
        // OpenAI convention, no reasoning price (o3 at $2 / $8): 100 completion tokens of which
        // 80 reasoning cost 100 × $8 / M, not 180.
        let o3 = price(2_000_000, 8_000_000);
        assert_eq!(cost(&usage(0, 100, 0, 80), &o3).nanodollars, 800_000);
        // Separate reasoning price (gemini-2.5-flash-preview: $0.15 / $0.60 / thinking $3.50):
        // 10 × 0.15 + 20 × 0.60 + 80 × 3.50 = 1.5 + 12 + 280 µ$ = 293.5 µ$.
        let mut g = price(150_000, 600_000);
        g.reasoning = Some(3_500_000);
        assert_eq!(cost(&usage(10, 100, 0, 80), &g).nanodollars, 293_500);
        // Reasoning above completion is clamped to it.
        assert_eq!(cost(&usage(0, 10, 0, 50), &g).nanodollars, 35_000);
    }

    #[test]
    fn cache_writes_when_reported() {
        // claude-sonnet-4: $3 / $15, write $3.75, read $0.30. 10k prompt = 2k uncached + 3k
        // written + 5k read; 500 out: 6000 + 11250 + 1500 + 7500 µ$ = $0.02625.
        let mut p = price(3_000_000, 15_000_000);
        p.cache_write = Some(3_750_000);
        p.cached_input = Some(300_000);
        let tokens = BillableTokens {
            prompt: 10_000,
            cached_input: 5_000,
            cache_write: 3_000,
            completion: 500,
            reasoning: 0,
        };
        assert_eq!(cost_tokens(&tokens, &p, 0).nanodollars, 26_250_000);
        // Saved by the prompt cache: 5k × (3 − 0.30) µ$ = 13.5 m$.
        assert_eq!(Cost::prompt_cache_saving(&tokens, &p, 0), 13_500_000);
    }

    #[test]
    fn rounding_is_half_up_once_per_request() {
        // $1 per million = 1 pico-dollar per token.
        let p = price(1, 1);
        assert_eq!(cost(&Usage::new(499, 0, None), &p).nanodollars, 0);
        assert_eq!(cost(&Usage::new(500, 0, None), &p).nanodollars, 1);
        assert_eq!(cost(&Usage::new(1499, 0, None), &p).nanodollars, 1);
        assert_eq!(cost(&Usage::new(1500, 0, None), &p).nanodollars, 2);
        // Input and output are summed before rounding: 300 + 300 pico = 0.6 nano → 1, where
        // rounding each part would give 0.
        assert_eq!(cost(&Usage::new(300, 300, None), &p).nanodollars, 1);
    }

    #[test]
    fn markup_is_applied_exactly() {
        let p = price(150_000, 600_000);
        let c = cost_with_markup(&Usage::new(1000, 200, None), &p, 1_000); // +10%
        assert_eq!((c.nanodollars, c.markup_bps), (297_000, 1_000));
        assert_eq!(cost_with_markup(&Usage::new(1000, 200, None), &p, 10_000).nanodollars, 540_000);
        // Applied to the exact sum: 455 pico × 1.1 = 500.5 pico → 0.5005 nano → 1 (rounding
        // first would give 0).
        assert_eq!(cost_with_markup(&Usage::new(455, 0, None), &price(1, 1), 1_000).nanodollars, 1);
        // 25 bps on $0.00027 = 270675 nano exactly.
        assert_eq!(cost_with_markup(&Usage::new(1000, 200, None), &p, 25).nanodollars, 270_675);
    }

    #[test]
    fn max_cost_bounds_every_outcome() {
        let mut p = price(150_000, 600_000);
        p.cached_input = Some(75_000);
        p.reasoning = Some(3_500_000);
        // 1000 × 0.15 + 500 × 3.50 µ$ = 1900 µ$.
        assert_eq!(max_cost(1000, 500, &p, 0).nanodollars, 1_900_000);
        for (cached, completion, reasoning) in [(0, 500, 0), (1000, 500, 500), (500, 100, 100), (0, 0, 0)] {
            let actual = cost(&usage(1000, completion, cached, reasoning), &p);
            assert!(actual.nanodollars <= max_cost(1000, 500, &p, 0).nanodollars);
        }
        assert_eq!(max_cost(1000, 500, &p, 1_000).nanodollars, 2_090_000);
    }

    #[test]
    fn saved_is_what_the_request_would_have_cost() {
        let p = price(150_000, 600_000);
        let u = Usage::new(1000, 200, None);
        assert_eq!(Cost::saved(&u, &p, 0), cost(&u, &p));
        assert_eq!(Cost::saved(&u, &p, 1_000).nanodollars, 297_000);
    }

    #[test]
    fn huge_counts_saturate_instead_of_wrapping() {
        let tokens = BillableTokens { prompt: u64::MAX, completion: u64::MAX, ..BillableTokens::default() };
        let c = cost_tokens(&tokens, &price(u64::MAX, u64::MAX), u32::MAX);
        assert_eq!(c.nanodollars, u64::MAX);
        assert_eq!(
            Cost { nanodollars: 1_234_567_891, price_id: String::new(), markup_bps: 0 }.usd(),
            "1.234567891"
        );
    }
}
