//! Field checks of the admin API, done before the store is called so every error names the
//! field (`param`) and nothing is written. The store re-checks its own invariants; these are
//! the API's limits, which may be tighter.

use time::OffsetDateTime;
use tollgate_types::GatewayError;
use tollgate_types::JsonMap;

/// Longest name of any resource, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Largest key metadata, serialized as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most entries in a key's `allowed_models`.
pub const MAX_ALLOWED_MODELS: usize = 100;
/// Longest model alias in `allowed_models`, in characters.
pub const MAX_MODEL_CHARS: usize = 200;
/// Longest provider secret accepted, in characters (real ones are far shorter).
pub const MAX_SECRET_CHARS: usize = 8 * 1024;

/// A name: 1..=200 characters once trimmed, no control characters. Returns it trimmed.
pub fn name(field: &str, value: &str) -> Result<String, GatewayError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        return Err(GatewayError::invalid_field(field, "must not be empty"));
    }
    if chars > MAX_NAME_CHARS {
        return Err(GatewayError::invalid_field(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters (got {chars})"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(GatewayError::invalid_field(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

pub fn optional_name(field: &str, value: Option<String>) -> Result<Option<String>, GatewayError> {
    value.map(|v| name(field, &v)).transpose()
}

/// Key metadata: at most 16 KiB as JSON.
pub fn metadata(value: &JsonMap) -> Result<(), GatewayError> {
    let size = serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(GatewayError::invalid_field(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})"),
        ));
    }
    Ok(())
}

/// Allowed models: 1..=100 non-empty aliases (`None` allows every model).
pub fn allowed_models(value: Option<Vec<String>>) -> Result<Option<Vec<String>>, GatewayError> {
    let Some(models) = value else { return Ok(None) };
    if models.is_empty() {
        return Err(GatewayError::invalid_field(
            "allowed_models",
            "must list at least one model (omit it or send null to allow every model)",
        ));
    }
    if models.len() > MAX_ALLOWED_MODELS {
        return Err(GatewayError::invalid_field(
            "allowed_models",
            format!("at most {MAX_ALLOWED_MODELS} entries (got {})", models.len()),
        ));
    }
    models
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("allowed_models[{i}]");
            let trimmed = m.trim();
            if trimmed.is_empty()
                || trimmed.chars().count() > MAX_MODEL_CHARS
                || trimmed.chars().any(char::is_control)
            {
                return Err(GatewayError::invalid_field(
                    &field,
                    format!("must be a model alias of 1-{MAX_MODEL_CHARS} characters"),
                ));
            }
            Ok(trimmed.to_owned())
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// An expiry must lie in the future.
pub fn expires_at(value: Option<OffsetDateTime>) -> Result<Option<OffsetDateTime>, GatewayError> {
    match value {
        Some(t) if t <= OffsetDateTime::now_utc() => {
            Err(GatewayError::invalid_field("expires_at", "must be in the future"))
        }
        other => Ok(other),
    }
}

/// A provider secret: 1..=8192 characters, no control characters (a pasted newline would
/// break the `Authorization` header later).
pub fn secret(value: &str) -> Result<(), GatewayError> {
    let chars = value.chars().count();
    if chars == 0 || chars > MAX_SECRET_CHARS || value.chars().any(char::is_control) {
        return Err(GatewayError::invalid_field(
            "secret",
            format!("must be 1-{MAX_SECRET_CHARS} characters without control characters or line breaks"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  a ").unwrap(), "a");
        assert_eq!(name("name", "").unwrap_err().param.as_deref(), Some("name"));
        assert!(name("name", &"x".repeat(201)).is_err());
        assert!(name("name", "a\nb").is_err());
        assert!(name("name", "'; DROP TABLE tenants; --").is_ok());
    }

    #[test]
    fn models_metadata_expiry_and_secrets_are_checked() {
        assert!(allowed_models(Some(vec![])).is_err());
        assert_eq!(
            allowed_models(Some(vec![" ".into()])).unwrap_err().param.as_deref(),
            Some("allowed_models[0]")
        );
        assert!(allowed_models(Some(vec!["m".into(); 101])).is_err());
        assert_eq!(allowed_models(Some(vec![" m ".into()])).unwrap(), Some(vec!["m".to_owned()]));
        let mut big = JsonMap::new();
        big.insert("k".into(), serde_json::Value::String("x".repeat(MAX_METADATA_BYTES)));
        assert!(metadata(&big).is_err());
        assert!(expires_at(Some(OffsetDateTime::now_utc() - time::Duration::seconds(1))).is_err());
        assert!(expires_at(Some(OffsetDateTime::now_utc() + time::Duration::hours(1))).is_ok());
        assert!(secret("").is_err());
        assert!(secret("sk-abc\n").is_err());
        assert!(secret("sk-abc").is_ok());
    }
}
