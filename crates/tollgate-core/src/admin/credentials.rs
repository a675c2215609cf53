//! Provider credentials a tenant brings (bring-your-own-key). The secret is sealed here with
//! the master key, bound to its row (tenant, provider, credential id), and from then on only
//! its masked tail is ever shown; it never appears in a response, an error or a log.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use tollgate_types::ports::store::{Change, NewCredential};
use tollgate_types::tenancy::{CredentialId, MemberRole, Page, PageRequest, ProviderCredential, TenantId};
use tollgate_types::{ErrorKind, GatewayError};

use super::errors::StoreResultExt;
use super::{AdminService, Caller, validate};
use crate::secrets::{SealingError, credential_aad, mask_secret};

/// A credential to register. `Debug` leaves the secret out.
#[derive(Clone)]
pub struct CreateCredential {
    /// A provider name of the gateway's config.
    pub provider: String,
    pub name: String,
    pub secret: SecretString,
}

impl fmt::Debug for CreateCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateCredential")
            .field("provider", &self.provider)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AdminService {
    pub async fn create_credential(
        &self,
        caller: &Caller,
        tenant: TenantId,
        req: CreateCredential,
    ) -> Result<ProviderCredential, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "manage provider credentials")?;
        if !self.providers.contains(&req.provider) {
            let mut known: Vec<&str> = self.providers.iter().map(String::as_str).collect();
            known.sort_unstable();
            return Err(GatewayError::invalid_field(
                "provider",
                format!(
                    "{:?} is not a provider of this gateway (configured: {})",
                    req.provider,
                    if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                ),
            ));
        }
        let name = validate::name("name", &req.name)?;
        let secret = req.secret.expose_secret();
        validate::secret(secret)?;
        let id = CredentialId::new();
        let sealed = self
            .master_keys
            .seal(secret, &credential_aad(tenant, &req.provider, id))
            .map_err(sealing_error)?;
        let new = NewCredential { id, provider: req.provider, name, masked: mask_secret(secret), sealed };
        let created = self.store.create_credential(tenant, new, &caller.actor).await.client()?;
        self.changed(Change::Credentials(tenant));
        Ok(created)
    }

    pub async fn list_credentials(
        &self,
        caller: &Caller,
        tenant: TenantId,
        page: PageRequest,
    ) -> Result<Page<ProviderCredential>, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "read provider credentials")?;
        let mut page = self.store.list_credentials(tenant, page).await.client()?;
        // Belt and braces: the store lists without ciphertexts; never hand one on.
        page.data.iter_mut().for_each(|c| c.sealed = None);
        Ok(page)
    }

    pub async fn get_credential(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: CredentialId,
    ) -> Result<ProviderCredential, GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "read provider credentials")?;
        let mut credential = self.store.get_credential(tenant, id).await.or_not_found("credential", id)?;
        credential.sealed = None;
        Ok(credential)
    }

    pub async fn delete_credential(
        &self,
        caller: &Caller,
        tenant: TenantId,
        id: CredentialId,
    ) -> Result<(), GatewayError> {
        self.access(caller, tenant).await?.require(MemberRole::Admin, "manage provider credentials")?;
        self.store.delete_credential(tenant, id, &caller.actor).await.or_not_found("credential", id)?;
        self.changed(Change::Credentials(tenant));
        Ok(())
    }
}

fn sealing_error(e: SealingError) -> GatewayError {
    match e {
        // The operator's fix, said plainly: the gateway runs, but cannot store secrets.
        SealingError::NoMasterKey => GatewayError::new(
            ErrorKind::ProviderNotConfigured,
            "Provider credentials cannot be stored: this gateway has no master key. The operator must set TOLLGATE_ENCRYPTION_KEY (<id>:<64 hex characters>) and restart it.",
        ),
        other => {
            tracing::error!(error = %other, "sealing a provider credential failed");
            GatewayError::internal("The credential could not be encrypted.")
        }
    }
}
