//! Gateway API keys: `tg_live_` followed by 43 random base-62 characters (≈256 bits). A key is
//! high-entropy, so one SHA-256 is the right lookup index (no per-request bcrypt); the store only
//! ever sees the hash and a display prefix.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use tollgate_types::tenancy::KeyHash;

/// Every key starts with this, so leaked keys are easy to recognise (secret scanners).
pub const KEY_PREFIX: &str = "tg_live_";
/// Random characters after the prefix.
const RANDOM_LEN: usize = 43;
/// Characters of the random part shown in lists (`tg_live_AbCd`).
const DISPLAY_LEN: usize = 4;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A freshly generated key: the secret (shown to the caller once), its hash and display prefix.
pub struct GeneratedKey {
    pub secret: String,
    pub hash: KeyHash,
    pub prefix: String,
}

/// Generates a key from the system CSPRNG.
pub fn generate_key() -> Result<GeneratedKey, aws_lc_rs::error::Unspecified> {
    let rng = SystemRandom::new();
    let mut secret = String::with_capacity(KEY_PREFIX.len() + RANDOM_LEN);
    secret.push_str(KEY_PREFIX);
    // Rejection sampling keeps every character uniform (256 is not a multiple of 62).
    let mut buf = [0u8; 64];
    while secret.len() < KEY_PREFIX.len() + RANDOM_LEN {
        rng.fill(&mut buf)?;
        for b in buf {
            if b < 248 && secret.len() < KEY_PREFIX.len() + RANDOM_LEN {
                secret.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    let prefix = secret[..KEY_PREFIX.len() + DISPLAY_LEN].to_owned();
    Ok(GeneratedKey { hash: hash_key(&secret), prefix, secret })
}

/// The stored form of a key.
pub fn hash_key(secret: &str) -> KeyHash {
    KeyHash(Sha256::digest(secret.as_bytes()).into())
}

/// Whether a presented string can be a Tollgate key at all (cheap check before any lookup).
pub fn is_well_formed(presented: &str) -> bool {
    presented
        .strip_prefix(KEY_PREFIX)
        .is_some_and(|rest| rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_well_formed_distinct_and_hash_stably() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(is_well_formed(&a.secret), "{}", a.secret);
        assert_eq!(a.prefix, a.secret[..12]);
        assert_eq!(hash_key(&a.secret), a.hash);
        assert_ne!(a.hash, b.hash);
        assert!(!is_well_formed("tg_live_short"));
        assert!(!is_well_formed(&format!("sk-{}", &a.secret[3..])));
        assert!(!is_well_formed(&format!("{}!", &a.secret[..a.secret.len() - 1])));
    }

    #[test]
    fn hash_is_sha256_of_the_whole_key() {
        // echo -n 'tg_live_test' | sha256sum
        let h = hash_key("tg_live_test");
        assert_eq!(h.0[..4], [0x7a, 0xa8, 0x48, 0xf1][..]);
    }
}
