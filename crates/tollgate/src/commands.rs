//! Store-backed commands: opening the store the config names, migrations, bootstrap, and
//! master-key rotation.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};
use tollgate_core::admin::{AdminService, Caller, CreateKey};
use tollgate_core::config::Config;
use tollgate_core::env::{EnvSource, ProcessEnv};
use tollgate_core::secrets::{MasterKeys, credential_aad};
use tollgate_types::JsonMap;
use tollgate_types::ports::store::{NewMember, NewProject, NewTenant, Store};
use tollgate_types::tenancy::{Actor, KeyScope, MemberRole, TenantPolicy};

use crate::load_config;

/// The store URL: the configured one, or `tollgate.db` next to the config file. Relative
/// SQLite paths are taken relative to the config file's directory.
pub fn store_url(config_path: &Path, config: &Config) -> SecretString {
    let dir = config_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let url = match &config.store.url {
        Some(u) => u.expose_secret().to_owned(),
        None => return SecretString::from(format!("sqlite://{}", dir.join("tollgate.db").display())),
    };
    match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
        Some(path) if !path.starts_with('/') && !path.starts_with(":memory:") => {
            SecretString::from(format!("sqlite://{}", dir.join(path).display()))
        }
        _ => SecretString::from(url),
    }
}

pub async fn open_store(config_path: &Path, config: &Config) -> anyhow::Result<Store> {
    let url = store_url(config_path, config);
    let owner = config.store.owner_url.as_ref().map(|u| u.expose_secret().to_owned());
    tollgate_store::open(url.expose_secret(), owner.as_deref(), config.store.migrate)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))
}

/// The master keys from `TOLLGATE_ENCRYPTION_KEY`; without it, tenants cannot register
/// provider credentials (everything else works).
pub fn master_keys(env: &dyn EnvSource) -> anyhow::Result<MasterKeys> {
    match env.var("TOLLGATE_ENCRYPTION_KEY") {
        Some(spec) => Ok(MasterKeys::parse(&spec)?),
        None => {
            tracing::warn!(
                "TOLLGATE_ENCRYPTION_KEY is not set: tenants cannot register their own provider keys \
                 (set it to <id>:<64 hex characters>, e.g. k1:$(openssl rand -hex 32))"
            );
            Ok(MasterKeys::none())
        }
    }
}

pub async fn migrate(config_path: &Path) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let url = store_url(config_path, &config);
    let owner = config.store.owner_url.as_ref().map(|u| u.expose_secret().to_owned());
    tollgate_store::migrate(url.expose_secret(), owner.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("migration failed: {e}"))?;
    crate::semantic::migrate(&config, owner.as_deref().unwrap_or(url.expose_secret())).await?;
    eprintln!("migrations applied");
    Ok(())
}

pub async fn bootstrap(
    config_path: &Path,
    tenant: String,
    owner: String,
    project: String,
) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let store = open_store(config_path, &config).await?;
    let providers = config.providers.keys().cloned().collect();
    let service =
        AdminService::new(store.admin.clone(), Arc::new(master_keys(&ProcessEnv)?), Arc::new(providers));
    let c = &Caller::cli();
    let t = service.create_tenant(c, NewTenant { name: tenant, policy: TenantPolicy::default() }).await?;
    let m = service.create_member(c, t.id, NewMember { name: owner, role: MemberRole::Owner }).await?;
    let p = service
        .create_project(c, t.id, NewProject { name: project, limits: None, cache: Default::default() })
        .await?;
    let key = CreateKey {
        project_id: p.id,
        owner_id: Some(m.id),
        name: "bootstrap".to_owned(),
        scopes: Some(vec![KeyScope::Inference, KeyScope::Admin]),
        allowed_models: None,
        allowed_tags: Vec::new(),
        metadata: JsonMap::new(),
        expires_at: None,
        limits: None,
        cache: Default::default(),
    };
    let created = service.create_key(c, t.id, key).await?;
    eprintln!("tenant {} ({}), owner {}, project {}", t.name, t.id, m.name, p.name);
    eprintln!("the owner's key (inference + admin), shown once:");
    writeln!(std::io::stdout(), "{}", created.secret.expose_secret()).context("writing the key")?;
    Ok(())
}

pub async fn rotate_encryption_key(config_path: &Path) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let keys = master_keys(&ProcessEnv)?;
    let current = keys.current_id().context("TOLLGATE_ENCRYPTION_KEY must be set to rotate")?.to_owned();
    let store = open_store(config_path, &config).await?;
    let (mut resealed, mut kept) = (0usize, 0usize);
    for c in store.admin.all_sealed_credentials().await? {
        if keys.is_current(&c.sealed) {
            kept += 1;
            continue;
        }
        let aad = credential_aad(c.tenant_id, &c.provider, c.id);
        let secret = keys
            .open(&c.sealed, &aad)
            .with_context(|| format!("credential {} of tenant {} cannot be opened", c.id, c.tenant_id))?;
        let sealed = keys.seal(secret.expose_secret(), &aad)?;
        store.admin.reseal_credential(c.tenant_id, c.id, sealed, &Actor::Cli).await?;
        resealed += 1;
    }
    eprintln!("re-encrypted {resealed} credentials under key {current:?}; {kept} were already under it");
    Ok(())
}
