//! Input validation shared by both stores: every admin input is checked and normalised here
//! before it reaches SQL, so SQLite and PostgreSQL accept and reject exactly the same values.
//!
//! Each `new_*` / `*_patch` function takes the port's input by value and returns it normalised
//! (names trimmed, timestamps cut to microseconds) or [`StoreError::Invalid`] naming the field.
//! Uniqueness is not checked here: the database's unique constraints decide, so two concurrent
//! creates cannot both pass a racy pre-check.

use serde::Serialize;
use time::OffsetDateTime;
use tollgate_types::JsonMap;
use tollgate_types::limits::LimitPolicy;
use tollgate_types::ports::store::{
    KeyPatch, MemberPatch, NewCredential, NewKey, NewMember, NewProject, NewTenant, ProjectPatch, StoreError,
    TenantPatch,
};
use tollgate_types::ports::usage::MIN_RETENTION_AGE;
use tollgate_types::tenancy::{KeyScope, SealedSecret};

/// Longest accepted name (tenant, project, member, key, credential), in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted provider name, in characters.
pub const MAX_PROVIDER_CHARS: usize = 64;
/// Longest accepted key prefix, in characters.
pub const MAX_PREFIX_CHARS: usize = 64;
/// Longest accepted masked credential tail, in characters.
pub const MAX_MASKED_CHARS: usize = 64;
/// Longest accepted model alias in `allowed_models`, in characters.
pub const MAX_MODEL_CHARS: usize = 200;
/// Most entries in `allowed_models`.
pub const MAX_MODELS: usize = 1000;
/// Longest accepted deployment tag in a key's `allowed_tags`, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Most entries in a key's `allowed_tags`.
pub const MAX_TAGS: usize = 256;
/// Largest accepted key metadata, serialized as JSON, in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Largest accepted limits or pricing policy, serialized as JSON, in bytes (the admin API's own
/// bounds keep real policies far smaller).
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Largest accepted credential ciphertext, in bytes (a provider key plus nonce and tag is far smaller).
pub const MAX_CIPHERTEXT_BYTES: usize = 64 * 1024;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::Invalid(msg.into())
}

/// A trimmed name of 1..=200 characters without control characters.
pub fn name(field: &str, value: &str) -> Result<String, StoreError> {
    bounded_text(field, value, 1, MAX_NAME_CHARS)
}

/// Trimmed text of `min..=max` characters without control characters.
fn bounded_text(field: &str, value: &str, min: usize, max: usize) -> Result<String, StoreError> {
    let trimmed = value.trim();
    let chars = trimmed.chars().count();
    if chars < min || chars > max || trimmed.chars().any(char::is_control) {
        return Err(invalid(format!("{field}: must be {min}-{max} characters without control characters")));
    }
    Ok(trimmed.to_owned())
}

/// A provider name as the gateway config spells it: 1..=64 of `[a-z0-9_-]`.
pub fn provider(value: &str) -> Result<String, StoreError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_PROVIDER_CHARS
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(invalid(format!("provider: must be 1-{MAX_PROVIDER_CHARS} characters of a-z, 0-9, '_' and '-'")))
    }
}

/// At least one scope; duplicates are dropped (order kept).
pub fn scopes(value: Vec<KeyScope>) -> Result<Vec<KeyScope>, StoreError> {
    if value.is_empty() {
        return Err(invalid("scopes: at least one scope is required (inference, admin)"));
    }
    let mut out = Vec::with_capacity(value.len());
    for scope in value {
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

/// Model aliases: each non-empty and at most 200 characters, at most 1000 of them.
pub fn allowed_models(value: Option<Vec<String>>) -> Result<Option<Vec<String>>, StoreError> {
    let Some(models) = value else { return Ok(None) };
    if models.len() > MAX_MODELS {
        return Err(invalid(format!("allowed_models: at most {MAX_MODELS} entries")));
    }
    models
        .into_iter()
        .map(|m| bounded_text("allowed_models", &m, 1, MAX_MODEL_CHARS))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Deployment tags: each 1-64 characters without control characters, at most 256 of them;
/// returned sorted and without duplicates (the order carries no meaning). The tag alphabet is
/// the admin service's to check.
pub fn allowed_tags(value: Vec<String>) -> Result<Vec<String>, StoreError> {
    if value.len() > MAX_TAGS {
        return Err(invalid(format!("allowed_tags: at most {MAX_TAGS} entries")));
    }
    let mut tags = value
        .into_iter()
        .map(|t| bounded_text("allowed_tags", &t, 1, MAX_TAG_CHARS))
        .collect::<Result<Vec<_>, _>>()?;
    tags.sort_unstable();
    tags.dedup();
    Ok(tags)
}

/// Key metadata: at most 16 KiB once serialized.
pub fn metadata(value: JsonMap) -> Result<JsonMap, StoreError> {
    let size = serde_json::to_vec(&value).map_err(|e| StoreError::Internal(e.to_string()))?.len();
    if size > MAX_METADATA_BYTES {
        return Err(invalid(format!(
            "metadata: must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})"
        )));
    }
    Ok(value)
}

/// A limits or pricing policy: storable (at most 1 MiB as JSON). What the values mean is the
/// admin service's to check; the store only keeps them.
pub fn policy<T: Serialize>(field: &str, value: T) -> Result<T, StoreError> {
    let size = serde_json::to_vec(&value).map_err(|e| StoreError::Internal(e.to_string()))?.len();
    if size > MAX_POLICY_BYTES {
        return Err(invalid(format!(
            "{field}: must be at most {MAX_POLICY_BYTES} bytes as JSON (got {size})"
        )));
    }
    Ok(value)
}

fn optional_limits(value: Option<LimitPolicy>) -> Result<Option<LimitPolicy>, StoreError> {
    value.map(|l| policy("limits", l)).transpose()
}

/// A sealed secret: a key id (1..=200 characters) and a non-empty ciphertext of at most 64 KiB.
pub fn sealed(value: SealedSecret) -> Result<SealedSecret, StoreError> {
    let key_id = bounded_text("sealed.key_id", &value.key_id, 1, MAX_NAME_CHARS)?;
    if value.ciphertext.is_empty() || value.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(invalid(format!("sealed.ciphertext: must be 1-{MAX_CIPHERTEXT_BYTES} bytes")));
    }
    Ok(SealedSecret { key_id, ciphertext: value.ciphertext })
}

/// Cuts a timestamp to whole microseconds, the precision PostgreSQL keeps, so both stores
/// return the same value that was given.
pub fn micros(t: OffsetDateTime) -> OffsetDateTime {
    let nanos = t.nanosecond();
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

/// The current time in UTC at microsecond precision (see [`micros`]).
pub fn now() -> OffsetDateTime {
    micros(OffsetDateTime::now_utc())
}

/// A retention cutoff in UTC at microsecond precision, refused unless it is at least
/// [`MIN_RETENTION_AGE`] in the past (see `UsageStore::enforce_retention`).
pub fn retention_cutoff(cutoff: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
    if cutoff > OffsetDateTime::now_utc() - MIN_RETENTION_AGE {
        return Err(invalid(format!(
            "retention cutoff {cutoff}: must be at least {MIN_RETENTION_AGE} in the past"
        )));
    }
    Ok(micros(cutoff.to_offset(time::UtcOffset::UTC)))
}

// === per-input normalisers ===

pub fn new_tenant(new: NewTenant) -> Result<NewTenant, StoreError> {
    Ok(NewTenant { name: name("name", &new.name)?, policy: new.policy })
}

pub fn tenant_patch(patch: TenantPatch) -> Result<TenantPatch, StoreError> {
    Ok(TenantPatch { name: patch.name.map(|n| name("name", &n)).transpose()?, policy: patch.policy })
}

pub fn new_project(new: NewProject) -> Result<NewProject, StoreError> {
    Ok(NewProject { name: name("name", &new.name)?, limits: optional_limits(new.limits)?, cache: new.cache })
}

pub fn project_patch(patch: ProjectPatch) -> Result<ProjectPatch, StoreError> {
    Ok(ProjectPatch { name: patch.name.map(|n| name("name", &n)).transpose()?, cache: patch.cache })
}

pub fn new_member(new: NewMember) -> Result<NewMember, StoreError> {
    Ok(NewMember { name: name("name", &new.name)?, role: new.role })
}

pub fn member_patch(patch: MemberPatch) -> Result<MemberPatch, StoreError> {
    Ok(MemberPatch { name: patch.name.map(|n| name("name", &n)).transpose()?, role: patch.role })
}

pub fn new_key(new: NewKey) -> Result<NewKey, StoreError> {
    Ok(NewKey {
        id: new.id,
        project_id: new.project_id,
        owner_id: new.owner_id,
        name: name("name", &new.name)?,
        prefix: bounded_text("prefix", &new.prefix, 1, MAX_PREFIX_CHARS)?,
        hash: new.hash,
        scopes: scopes(new.scopes)?,
        allowed_models: allowed_models(new.allowed_models)?,
        allowed_tags: allowed_tags(new.allowed_tags)?,
        metadata: metadata(new.metadata)?,
        expires_at: new.expires_at.map(micros),
        limits: optional_limits(new.limits)?,
        cache: new.cache,
    })
}

pub fn key_patch(patch: KeyPatch) -> Result<KeyPatch, StoreError> {
    Ok(KeyPatch {
        name: patch.name.map(|n| name("name", &n)).transpose()?,
        allowed_models: patch.allowed_models.map(allowed_models).transpose()?,
        allowed_tags: patch.allowed_tags.map(allowed_tags).transpose()?,
        metadata: patch.metadata.map(metadata).transpose()?,
        expires_at: patch.expires_at.map(|e| e.map(micros)),
        cache: patch.cache,
    })
}

pub fn new_credential(new: NewCredential) -> Result<NewCredential, StoreError> {
    Ok(NewCredential {
        id: new.id,
        provider: provider(&new.provider)?,
        name: name("name", &new.name)?,
        masked: bounded_text("masked", &new.masked, 0, MAX_MASKED_CHARS)?,
        sealed: sealed(new.sealed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("name", "  acme ").unwrap(), "acme");
        assert!(name("name", "   ").is_err());
        assert!(name("name", "a\u{0}b").is_err());
        assert!(name("name", &"x".repeat(201)).is_err());
        assert_eq!(name("name", &"é".repeat(200)).unwrap().chars().count(), 200);
        assert_eq!(
            name("name", "").unwrap_err(),
            StoreError::Invalid("name: must be 1-200 characters without control characters".into())
        );
    }

    #[test]
    fn providers_are_config_names() {
        assert!(provider("openai").is_ok());
        assert!(provider("my-vllm_2").is_ok());
        assert!(provider("OpenAI").is_err());
        assert!(provider("").is_err());
        assert!(provider(&"a".repeat(65)).is_err());
    }

    #[test]
    fn metadata_and_models_are_bounded() {
        let mut big = JsonMap::new();
        big.insert("k".into(), serde_json::Value::String("x".repeat(MAX_METADATA_BYTES)));
        assert!(metadata(big).is_err());
        assert!(allowed_models(Some(vec![String::new()])).is_err());
        assert!(allowed_models(Some(vec!["x".repeat(201)])).is_err());
        assert_eq!(allowed_models(None).unwrap(), None);
        assert!(scopes(vec![]).is_err());
        assert_eq!(scopes(vec![KeyScope::Admin, KeyScope::Admin]).unwrap(), vec![KeyScope::Admin]);
    }

    #[test]
    fn tags_are_bounded_sorted_and_deduplicated() {
        assert!(allowed_tags(vec![String::new()]).is_err());
        assert!(allowed_tags(vec!["x".repeat(65)]).is_err());
        assert!(allowed_tags(vec!["t".into(); MAX_TAGS + 1]).is_err());
        assert_eq!(allowed_tags(vec![]).unwrap(), Vec::<String>::new());
        assert_eq!(allowed_tags(vec!["us".into(), "eu".into(), "us".into()]).unwrap(), ["eu", "us"]);
    }
}
