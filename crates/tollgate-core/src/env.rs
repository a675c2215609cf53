//! `${VAR}` interpolation against an injectable environment (the process's, or a map in tests).

use std::collections::HashMap;

/// Where variables come from.
pub trait EnvSource: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment. Empty values count as unset (a `KEY=` line in a `.env` file).
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).filter(|v| !v.is_empty()).cloned()
    }
}

/// Why a value could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterpolationError {
    /// `${NAME}` is not set and has no default.
    Missing(String),
    /// An unterminated `${` or an invalid name.
    Syntax(String),
}

/// Replaces every `${NAME}` (or `${NAME:-default}`) in `input`. `$$` is a literal `$`.
pub fn interpolate(input: &str, env: &dyn EnvSource) -> Result<String, InterpolationError> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r
                .find('}')
                .ok_or_else(|| InterpolationError::Syntax(format!("unterminated \"${{\" in {input:?}")))?;
            let expr = &r[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(InterpolationError::Syntax(format!("invalid variable name {name:?}")));
            }
            match (env.var(name), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(InterpolationError::Missing(name.to_owned())),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([("A".to_owned(), "1".to_owned()), ("EMPTY".to_owned(), String::new())])
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(interpolate("x${A}y", &env()).unwrap(), "x1y");
        assert_eq!(interpolate("${B:-http://d}", &env()).unwrap(), "http://d");
        assert_eq!(interpolate("$$A and $5", &env()).unwrap(), "$A and $5");
    }

    #[test]
    fn missing_and_empty_variables_are_reported_by_name() {
        assert_eq!(interpolate("${B}", &env()), Err(InterpolationError::Missing("B".into())));
        assert_eq!(interpolate("${EMPTY}", &env()), Err(InterpolationError::Missing("EMPTY".into())));
        assert!(matches!(interpolate("${A", &env()), Err(InterpolationError::Syntax(_))));
        assert!(matches!(interpolate("${A-B}", &env()), Err(InterpolationError::Syntax(_))));
    }
}
