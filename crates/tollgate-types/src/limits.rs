//! What limits and prices a tenant, project or key has, as stored with it and set through the
//! admin API: rate limits (requests and tokens per minute, in-flight requests, also per model
//! alias), spend budgets over calendar periods, and a tenant's negotiated prices and markup.
//!
//! These are plain data; enforcing them is the pipeline's job (`tollgate_core::limits`), pricing
//! is `tollgate_core::metering`. Amounts of money are exact: [`Usd`] is an integer number of
//! nano-dollars written as a decimal string, never a float.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ports::BudgetPeriod;

/// Rate limits on one scope (a key, a project, a tenant, or a model alias within one of them).
/// `None` means no limit of that kind at this scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u64>,
}

impl RateLimits {
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none() && self.tpm.is_none() && self.max_concurrent.is_none()
    }

    /// Each field from `self`, or from `fallback` where `self` has none.
    pub fn or(self, fallback: RateLimits) -> RateLimits {
        RateLimits {
            rpm: self.rpm.or(fallback.rpm),
            tpm: self.tpm.or(fallback.tpm),
            max_concurrent: self.max_concurrent.or(fallback.max_concurrent),
        }
    }
}

/// A spend cap over a period that resets automatically (UTC calendar day, ISO week, month) or
/// never (`total`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    pub period: BudgetPeriod,
    /// The cap, in USD (`"25.00"`).
    pub limit_usd: Usd,
    /// Percentages of the cap at which an alert is sent (once per threshold per period); `None`
    /// uses the gateway's configured thresholds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_at_percent: Option<Vec<u8>>,
}

/// Everything limited at one scope (a tenant, a project or a key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitPolicy {
    /// Limits on all the scope's requests together.
    #[serde(default, skip_serializing_if = "RateLimits::is_empty")]
    pub rate: RateLimits,
    /// Limits per model alias (the name clients send), on top of `rate`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, RateLimits>,
    /// Spend caps; at most one per period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetSpec>,
}

impl LimitPolicy {
    pub fn is_empty(&self) -> bool {
        self.rate.is_empty() && self.models.is_empty() && self.budgets.is_empty()
    }
}

/// A tenant's negotiated prices and markup. Price entries have the same shape as the built-in
/// table's (see `tollgate_core::metering::prices`) and take precedence over it for this tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingPolicy {
    /// Added to every computed cost, in basis points (100 = 1%, 10 000 = +100%).
    #[serde(default)]
    pub markup_bps: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<PriceEntry>,
}

impl PricingPolicy {
    pub fn is_empty(&self) -> bool {
        self.markup_bps == 0 && self.prices.is_empty()
    }
}

/// One price version as written in YAML or JSON (built-in table, config file, admin API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    /// Defaults to `{provider}/{model}@{effective_from}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub provider: String,
    pub model: String,
    /// `YYYY-MM-DD`.
    pub effective_from: String,
    /// USD per million tokens, as a decimal (`"0.15"`, at most 6 decimals).
    pub input: PriceAmount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<PriceAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<PriceAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<PriceAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<PriceAmount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A USD amount as written by a person. Write it as a string (`"0.15"`) to keep it exact; a bare
/// number is accepted and read through its shortest decimal form (`0.15` → `"0.15"`), which is
/// exact for every amount with up to 15 significant digits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PriceAmount {
    Text(String),
    Int(u64),
    Float(f64),
}

impl PriceAmount {
    /// The amount as a decimal string.
    pub fn as_decimal(&self) -> String {
        match self {
            PriceAmount::Text(s) => s.trim().to_owned(),
            PriceAmount::Int(n) => n.to_string(),
            PriceAmount::Float(f) => f.to_string(),
        }
    }
}

/// An exact amount of US dollars: an integer number of nano-dollars (1e-9 USD), written and
/// read as a decimal string with up to 9 decimals (`"12.50"`). Integers are accepted too; floats
/// are refused so no amount is ever rounded on its way in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd {
    pub nanodollars: u64,
}

impl Usd {
    pub const fn from_nanodollars(nanodollars: u64) -> Self {
        Self { nanodollars }
    }

    /// Parses `"12.5"`, `"0.000000001"`, `"3"`; refuses signs other than `+`, more than 9
    /// decimals, and amounts above u64 nano-dollars (~18.4 billion USD).
    pub fn parse(text: &str) -> Result<Usd, &'static str> {
        let text = text.trim();
        let text = text.strip_prefix('+').unwrap_or(text);
        if text.starts_with('-') {
            return Err("negative amounts are not allowed");
        }
        let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
        if (whole.is_empty() && frac.is_empty())
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("expected a decimal amount of USD such as \"12.50\"");
        }
        if frac.len() > 9 {
            return Err("more than 9 decimals (the unit is one nano-dollar)");
        }
        let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| "amount too large")? };
        let mut nanos: u64 = 0;
        for b in frac.bytes().chain(std::iter::repeat(b'0')).take(9) {
            nanos = nanos * 10 + u64::from(b - b'0');
        }
        let nanodollars =
            whole.checked_mul(1_000_000_000).and_then(|w| w.checked_add(nanos)).ok_or("amount too large")?;
        Ok(Usd { nanodollars })
    }
}

impl fmt::Display for Usd {
    /// The shortest exact decimal: `12.5`, `0.000000001`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.nanodollars / 1_000_000_000;
        let frac = self.nanodollars % 1_000_000_000;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:09}");
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Int(u64),
            Float(#[expect(dead_code, reason = "only refused")] f64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(s) => Usd::parse(&s).map_err(serde::de::Error::custom),
            Raw::Int(n) => n
                .checked_mul(1_000_000_000)
                .map(Usd::from_nanodollars)
                .ok_or_else(|| serde::de::Error::custom("amount too large")),
            Raw::Float(_) => Err(serde::de::Error::custom(
                "write USD amounts as a decimal string (\"12.50\") so they stay exact",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_parses_and_prints_exactly() {
        assert_eq!(Usd::parse("12.5").unwrap().nanodollars, 12_500_000_000);
        assert_eq!(Usd::parse("0.000000001").unwrap().nanodollars, 1);
        assert_eq!(Usd::parse(".5").unwrap().nanodollars, 500_000_000);
        assert_eq!(Usd::parse("3").unwrap().to_string(), "3");
        assert_eq!(Usd::parse("12.50").unwrap().to_string(), "12.5");
        assert_eq!(Usd::from_nanodollars(1).to_string(), "0.000000001");
        for bad in ["", ".", "-1", "1.0000000001", "1e3", "abc", "99999999999999999999"] {
            assert!(Usd::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn usd_json_refuses_floats_accepts_strings_and_integers() {
        assert_eq!(serde_json::from_str::<Usd>("\"0.10\"").unwrap().nanodollars, 100_000_000);
        assert_eq!(serde_json::from_str::<Usd>("7").unwrap().nanodollars, 7_000_000_000);
        let err = serde_json::from_str::<Usd>("0.1").unwrap_err().to_string();
        assert!(err.contains("decimal string"), "{err}");
        assert_eq!(serde_json::to_string(&Usd::parse("0.10").unwrap()).unwrap(), "\"0.1\"");
    }

    #[test]
    fn limit_policy_round_trips_and_refuses_unknown_fields() {
        let json = r#"{"rate":{"rpm":60,"tpm":10000},"models":{"gpt-4o":{"rpm":10}},
            "budgets":[{"period":"month","limit_usd":"100.00","alert_at_percent":[50,80,100]}]}"#;
        let p: LimitPolicy = serde_json::from_str(json).unwrap();
        assert_eq!(p.rate.rpm, Some(60));
        assert_eq!(p.models["gpt-4o"].rpm, Some(10));
        assert_eq!(p.budgets[0].period, BudgetPeriod::Month);
        assert_eq!(p.budgets[0].limit_usd.nanodollars, 100_000_000_000);
        let back: LimitPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        assert_eq!(serde_json::to_string(&LimitPolicy::default()).unwrap(), "{}");
        assert!(serde_json::from_str::<LimitPolicy>(r#"{"rpm":5}"#).is_err());
    }

    #[test]
    fn rate_limits_fall_back_field_by_field() {
        let own = RateLimits { rpm: Some(5), ..RateLimits::default() };
        let default = RateLimits { rpm: Some(100), tpm: Some(1000), max_concurrent: None };
        assert_eq!(own.or(default), RateLimits { rpm: Some(5), tpm: Some(1000), max_concurrent: None });
    }
}
