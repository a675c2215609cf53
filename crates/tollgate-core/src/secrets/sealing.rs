//! Provider credentials sealed with AES-256-GCM.
//!
//! - The master key comes from `TOLLGATE_ENCRYPTION_KEY`: `<id>:<64 hex chars>` entries
//!   separated by commas; the first is current (seals), all of them open. Rotation: put the new
//!   key first, run `tollgate rotate-encryption-key`, then drop the old entry.
//! - Each secret gets a random 96-bit nonce (aws-lc-rs `RandomizedNonceKey` generates it, so it
//!   cannot be reused by mistake). Stored layout: `nonce (12) || ciphertext || tag (16)`.
//! - Additional authenticated data binds the ciphertext to its row (tenant, provider,
//!   credential id): a ciphertext copied onto another row fails to open.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use secrecy::SecretString;
use tollgate_types::tenancy::{CredentialId, SealedSecret, TenantId};

/// Why sealing or opening failed. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    #[error("TOLLGATE_ENCRYPTION_KEY is invalid: {0}")]
    BadMasterKey(String),
    #[error("no master key is configured: set TOLLGATE_ENCRYPTION_KEY to store provider credentials")]
    NoMasterKey,
    #[error("the secret was sealed with master key {0:?}, which is not configured")]
    UnknownKeyId(String),
    #[error("the secret could not be decrypted (wrong key, or the ciphertext was moved or altered)")]
    Open,
    #[error("encryption failed")]
    Seal,
}

/// The configured master keys.
pub struct MasterKeys {
    current: Option<String>,
    keys: HashMap<String, RandomizedNonceKey>,
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys").field("current", &self.current).field("ids", &self.keys.keys()).finish()
    }
}

impl MasterKeys {
    /// No keys: credentials cannot be stored or used (the gateway still runs).
    pub fn none() -> Self {
        Self { current: None, keys: HashMap::new() }
    }

    /// Parses `TOLLGATE_ENCRYPTION_KEY` (`id:hex64[,id:hex64...]`).
    pub fn parse(spec: &str) -> Result<Self, SealingError> {
        let mut keys = HashMap::new();
        let mut current = None;
        for (i, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (id, hex_key) = entry.split_once(':').ok_or_else(|| {
                SealingError::BadMasterKey(format!("entry {} is not <id>:<64 hex characters>", i + 1))
            })?;
            if id.is_empty()
                || id.len() > 32
                || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(SealingError::BadMasterKey(format!(
                    "entry {}: key id must be 1-32 of [A-Za-z0-9_-]",
                    i + 1
                )));
            }
            let bytes = hex::decode(hex_key).ok().filter(|b| b.len() == 32).ok_or_else(|| {
                SealingError::BadMasterKey(format!("key {id:?} must be 64 hex characters (32 bytes)"))
            })?;
            let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| SealingError::BadMasterKey(format!("key {id:?} was rejected")))?;
            if keys.insert(id.to_owned(), key).is_some() {
                return Err(SealingError::BadMasterKey(format!("key id {id:?} appears twice")));
            }
            current.get_or_insert_with(|| id.to_owned());
        }
        if current.is_none() {
            return Err(SealingError::BadMasterKey("no key given".to_owned()));
        }
        Ok(Self { current, keys })
    }

    /// The id of the key new secrets are sealed with.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Seals `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &str, aad: &[u8]) -> Result<SealedSecret, SealingError> {
        let id = self.current.as_ref().ok_or(SealingError::NoMasterKey)?;
        let key = self.keys.get(id).ok_or(SealingError::NoMasterKey)?;
        let mut buf = plaintext.as_bytes().to_vec();
        let nonce = key.seal_in_place_append_tag(Aad::from(aad), &mut buf).map_err(|_| SealingError::Seal)?;
        let mut ciphertext = Vec::with_capacity(NONCE_LEN + buf.len());
        ciphertext.extend_from_slice(nonce.as_ref());
        ciphertext.extend_from_slice(&buf);
        Ok(SealedSecret { key_id: id.clone(), ciphertext })
    }

    /// Opens a sealed secret; fails if the key is unknown, or `aad` is not the one it was
    /// sealed with, or the bytes were altered.
    pub fn open(&self, sealed: &SealedSecret, aad: &[u8]) -> Result<SecretString, SealingError> {
        let key =
            self.keys.get(&sealed.key_id).ok_or_else(|| SealingError::UnknownKeyId(sealed.key_id.clone()))?;
        let (nonce, body) = sealed.ciphertext.split_at_checked(NONCE_LEN).ok_or(SealingError::Open)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::Open)?;
        let mut buf = body.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| SealingError::Open)?;
        let text = std::str::from_utf8(plain).map_err(|_| SealingError::Open)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// Whether `sealed` is under the current key (rotation skips those).
    pub fn is_current(&self, sealed: &SealedSecret) -> bool {
        self.current.as_deref() == Some(sealed.key_id.as_str())
    }
}

/// The additional authenticated data of a provider credential: its row's identity.
pub fn credential_aad(tenant: TenantId, provider: &str, id: CredentialId) -> Vec<u8> {
    format!("tollgate:credential:v1|{tenant}|{provider}|{id}").into_bytes()
}

/// `...` plus the last four characters, for display (`...x9Qz`); short secrets show nothing.
pub fn mask_secret(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "...".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("...{tail}")
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const K1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "k2:1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn seal_and_open_round_trip_with_fresh_nonces() {
        let keys = MasterKeys::parse(K1).unwrap();
        let aad = credential_aad(TenantId::new(), "openai", CredentialId::new());
        let a = keys.seal("sk-secret-value", &aad).unwrap();
        let b = keys.seal("sk-secret-value", &aad).unwrap();
        assert_ne!(a.ciphertext, b.ciphertext, "nonces must differ");
        assert!(!a.ciphertext.windows(9).any(|w| w == b"sk-secret"), "plaintext visible");
        assert_eq!(keys.open(&a, &aad).unwrap().expose_secret(), "sk-secret-value");
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_or_altered_fails() {
        let keys = MasterKeys::parse(K1).unwrap();
        let (tenant, id) = (TenantId::new(), CredentialId::new());
        let sealed = keys.seal("sk-x", &credential_aad(tenant, "openai", id)).unwrap();
        assert_eq!(
            keys.open(&sealed, &credential_aad(TenantId::new(), "openai", id)).unwrap_err(),
            SealingError::Open
        );
        assert!(keys.open(&sealed, &credential_aad(tenant, "anthropic", id)).is_err());
        assert!(keys.open(&sealed, &credential_aad(tenant, "openai", CredentialId::new())).is_err());
        let mut altered = sealed.clone();
        if let Some(last) = altered.ciphertext.last_mut() {
            *last ^= 1;
        }
        assert!(keys.open(&altered, &credential_aad(tenant, "openai", id)).is_err());
        let truncated = SealedSecret { key_id: "k1".into(), ciphertext: vec![1, 2, 3] };
        assert!(keys.open(&truncated, &credential_aad(tenant, "openai", id)).is_err());
    }

    #[test]
    fn rotation_opens_old_secrets_and_seals_with_the_new_key() {
        let old = MasterKeys::parse(K1).unwrap();
        let aad = b"row";
        let sealed = old.seal("sk-old", aad).unwrap();
        let both = MasterKeys::parse(&format!("{K2},{K1}")).unwrap();
        assert_eq!(both.current_id(), Some("k2"));
        assert!(!both.is_current(&sealed));
        let resealed = both.seal(both.open(&sealed, aad).unwrap().expose_secret(), aad).unwrap();
        assert_eq!(resealed.key_id, "k2");
        let only_new = MasterKeys::parse(K2).unwrap();
        assert_eq!(only_new.open(&sealed, aad).unwrap_err(), SealingError::UnknownKeyId("k1".into()));
        assert_eq!(only_new.open(&resealed, aad).unwrap().expose_secret(), "sk-old");
    }

    #[test]
    fn bad_master_keys_are_rejected_without_echoing_them() {
        for spec in [
            "",
            "nokey",
            "k1:abcd",
            "k1:zz02030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            &format!("{K1},{K1}"),
        ] {
            let err = MasterKeys::parse(spec).unwrap_err();
            assert!(!err.to_string().contains("0102030405"), "{err}");
        }
        assert_eq!(MasterKeys::none().seal("x", b"").unwrap_err(), SealingError::NoMasterKey);
    }

    #[test]
    fn masks_show_only_the_tail() {
        assert_eq!(mask_secret("sk-proj-abcdefgh1234"), "...1234");
        assert_eq!(mask_secret("short"), "...");
    }
}
