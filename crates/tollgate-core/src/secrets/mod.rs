//! Secrets: gateway API keys (generated, shown once, stored as SHA-256) and provider
//! credentials sealed with AES-256-GCM under a master key from the environment.

pub mod api_key;
pub mod sealing;

pub use api_key::{GeneratedKey, generate_key, hash_key};
pub use sealing::{MasterKeys, SealingError, credential_aad, mask_secret};
