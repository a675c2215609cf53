//! Bring-your-own-key: the provider credentials a tenant registered, opened with the master key
//! and cached per tenant (invalidated by the change feed), so routing can use a tenant's own key
//! for a provider without a database read per request.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use secrecy::SecretString;
use tollgate_types::ports::store::{AdminStore, Change, ChangeEvent};
use tollgate_types::tenancy::{CredentialId, TenantId};
use tollgate_types::{ErrorKind, GatewayError};

use crate::secrets::{MasterKeys, credential_aad};

/// One usable credential.
#[derive(Debug, Clone)]
pub struct TenantCredential {
    /// The opaque id adapters and clients are keyed by (never the key material).
    pub id: CredentialId,
    pub secret: SecretString,
}

/// A tenant's credentials by provider name (the newest one when a provider has several).
pub type CredentialSet = Arc<HashMap<String, TenantCredential>>;

pub struct TenantCredentials {
    store: Arc<dyn AdminStore>,
    keys: Arc<MasterKeys>,
    cache: RwLock<HashMap<TenantId, CredentialSet>>,
}

impl TenantCredentials {
    pub fn new(store: Arc<dyn AdminStore>, keys: Arc<MasterKeys>) -> Self {
        Self { store, keys, cache: RwLock::default() }
    }

    /// The tenant's usable credentials. Loaded once, then served from memory. A credential
    /// that cannot be opened (its master key is gone, or the row was tampered with) is left
    /// out and logged: the tenant then falls back to the gateway's key, unless `byok_only`.
    pub async fn for_tenant(&self, tenant: TenantId) -> Result<CredentialSet, GatewayError> {
        if let Some(set) = self.cache.read().get(&tenant) {
            return Ok(set.clone());
        }
        let rows = self.store.sealed_credentials(tenant).await.map_err(|e| {
            tracing::error!(error = %e, %tenant, "loading provider credentials failed");
            GatewayError::new(
                ErrorKind::Overloaded,
                "Provider credentials are temporarily unavailable; retry shortly.",
            )
        })?;
        let mut set: HashMap<String, TenantCredential> = HashMap::new();
        // Oldest first, so a newer credential for the same provider replaces an older one.
        for row in rows {
            let Some(sealed) = &row.sealed else { continue };
            match self.keys.open(sealed, &credential_aad(tenant, &row.provider, row.id)) {
                Ok(secret) => {
                    set.insert(row.provider.clone(), TenantCredential { id: row.id, secret });
                }
                Err(e) => {
                    tracing::error!(%tenant, credential = %row.id, provider = %row.provider, error = %e, "credential unusable");
                }
            }
        }
        let set = Arc::new(set);
        self.cache.write().insert(tenant, set.clone());
        Ok(set)
    }

    pub fn apply(&self, event: ChangeEvent) {
        let mut cache = self.cache.write();
        match event {
            ChangeEvent::Resync => cache.clear(),
            ChangeEvent::Changed(Change::Credentials(t) | Change::Tenant(t)) => {
                cache.remove(&t);
            }
            ChangeEvent::Changed(Change::Key(_)) => {}
        }
    }
}
