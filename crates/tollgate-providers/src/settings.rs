//! What an adapter is built from: the provider's kind, base URL, credential and HTTP client.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tollgate_types::ports::{ProviderError, ProviderErrorKind};

/// The provider kinds the gateway speaks (`kind:` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    #[serde(rename = "openai")]
    OpenAi,
    Azure,
    #[serde(rename = "openai_compatible")]
    OpenAiCompatible,
    Anthropic,
    Gemini,
    Cohere,
    Echo,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 7] = [
        ProviderKind::OpenAi,
        ProviderKind::Azure,
        ProviderKind::OpenAiCompatible,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
        ProviderKind::Cohere,
        ProviderKind::Echo,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::OpenAi => "openai",
            ProviderKind::Azure => "azure",
            ProviderKind::OpenAiCompatible => "openai_compatible",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Gemini => "gemini",
            ProviderKind::Cohere => "cohere",
            ProviderKind::Echo => "echo",
        }
    }

    /// The public API base URL used when the config gives none (`None`: a base URL is required).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            ProviderKind::OpenAi => Some("https://api.openai.com/v1"),
            ProviderKind::Anthropic => Some("https://api.anthropic.com"),
            ProviderKind::Gemini => Some("https://generativelanguage.googleapis.com"),
            ProviderKind::Cohere => Some("https://api.cohere.com"),
            ProviderKind::Azure | ProviderKind::OpenAiCompatible => None,
            ProviderKind::Echo => Some("echo:"),
        }
    }

    /// Whether calls need an API key (self-hosted OpenAI-compatible servers often need none).
    pub fn requires_key(self) -> bool {
        !matches!(self, ProviderKind::OpenAiCompatible | ProviderKind::Echo)
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider credential as resolved from the config.
#[derive(Clone)]
pub enum Credential {
    Key(SecretString),
    /// The config names an environment variable that is not set: calls fail with a message
    /// naming it.
    Missing {
        env_var: String,
    },
    /// No key is configured and none is needed.
    None,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Key(_) => f.write_str("Key(<redacted>)"),
            Credential::Missing { env_var } => write!(f, "Missing({env_var})"),
            Credential::None => f.write_str("None"),
        }
    }
}

impl Credential {
    /// The key to send, `None` if there is none to send, or the error a call must return when
    /// the key's variable is not set.
    pub fn key(&self, provider: &'static str) -> Result<Option<&str>, ProviderError> {
        match self {
            Credential::Key(k) => Ok(Some(k.expose_secret())),
            Credential::Missing { env_var } => Err(ProviderError::new(
                provider,
                ProviderErrorKind::MissingCredential { env_var: env_var.clone() },
                format!("environment variable {env_var} is not set"),
            )),
            Credential::None => Ok(None),
        }
    }
}

/// Everything an adapter is built from.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Base URL without a trailing slash, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub credential: Credential,
    /// Extra headers sent on every call (organisation ids, proxies' auth, ...).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Azure's `api-version` query parameter; Anthropic's `anthropic-version` header.
    pub api_version: Option<String>,
    /// The shared, pooled client (one per connect timeout).
    pub http: reqwest::Client,
}

impl ProviderSettings {
    /// `base_url` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        let mut url = String::with_capacity(self.base_url.len() + path.len());
        url.push_str(self.base_url.trim_end_matches('/'));
        url.push_str(path);
        url
    }
}
