//! `tollgate tenants|projects|members|keys|limits|pricing ...`: the admin operations from the command line,
//! against the store the config names. They run through the same `AdminService` as the HTTP
//! API (same validation, same audit trail, recorded with the `cli` actor). Results are JSON on
//! stdout, so scripts can read them.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use serde::Serialize;
use tollgate_core::admin::{AdminService, Caller, CreateKey};
use tollgate_core::env::ProcessEnv;
use tollgate_types::JsonMap;
use tollgate_types::cache_rule::{CacheAllow, CacheRule, CacheRuleMode};
use tollgate_types::limits::{LimitPolicy, PricingPolicy};
use tollgate_types::ports::store::{
    KeyFilter, KeyPatch, MemberPatch, NewMember, NewProject, NewTenant, ProjectPatch, TenantPatch,
};
use tollgate_types::ports::usage::{UsageGroupBy, UsageQuery};
use tollgate_types::tenancy::{
    KeyId, KeyScope, MemberId, MemberRole, PageRequest, ProjectId, TenantId, TenantPolicy,
};

use crate::commands::{master_keys, open_store};
use crate::load_config;

/// Paging flags shared by every `list`.
#[derive(Args, Clone, Copy)]
pub struct PageArgs {
    /// Items per page (1-500).
    #[arg(long, default_value_t = PageRequest::DEFAULT_LIMIT)]
    limit: u32,
    /// Cursor: the `next` value of the previous page.
    #[arg(long)]
    after: Option<uuid::Uuid>,
}

impl From<PageArgs> for PageRequest {
    fn from(p: PageArgs) -> Self {
        PageRequest { limit: p.limit, after: p.after }
    }
}

/// A response-cache rule from flags (docs/caching.md). A flag left out leaves that part unset:
/// it is inherited (a key's from its project, a project's from its tenant).
#[derive(Args, Clone, Copy, Default)]
pub struct CacheArgs {
    /// What requests without an `x-tollgate-cache` header do: on, off, read-only or write-only.
    #[arg(long = "cache-mode", value_name = "MODE", value_parser = kebab::<CacheRuleMode>)]
    mode: Option<CacheRuleMode>,
    /// The most any request may do with the cache: read-write, read-only or none.
    #[arg(long = "cache-allow", value_name = "ALLOW", value_parser = kebab::<CacheAllow>)]
    allow: Option<CacheAllow>,
    /// How long stored answers live, in seconds (1 to 31536000).
    #[arg(long = "cache-ttl", value_name = "SECONDS")]
    ttl: Option<u64>,
    /// Whether requests missing the exact cache are also matched by meaning: true or false.
    #[arg(long = "cache-semantic", value_name = "BOOL")]
    semantic: Option<bool>,
}

impl From<CacheArgs> for CacheRule {
    fn from(a: CacheArgs) -> Self {
        CacheRule { mode: a.mode, allow: a.allow, ttl_seconds: a.ttl, semantic: a.semantic }
    }
}

/// Parses a flag value by the type's serde (kebab-case) name, so the CLI spells values as the
/// admin API and the config do.
fn kebab<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown value {s:?}"))
}

/// The rule a `set-cache` command stores: its flags, or nothing with `--clear`; refuses a call
/// with neither (it would clear the rule by accident).
fn cache_to_set(args: CacheArgs, clear: bool) -> anyhow::Result<CacheRule> {
    let rule = CacheRule::from(args);
    if rule.is_empty() && !clear {
        anyhow::bail!("give --cache-mode, --cache-allow or --cache-ttl, or --clear to remove the rule");
    }
    Ok(rule)
}

#[derive(Subcommand)]
pub enum TenantsCmd {
    /// Create a tenant.
    Create {
        #[arg(long)]
        name: String,
        /// Never use the gateway's own provider keys for this tenant.
        #[arg(long)]
        byok_only: bool,
    },
    List(PageArgs),
    Get {
        id: TenantId,
    },
    /// Rename a tenant or change its policy.
    Update {
        id: TenantId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        byok_only: Option<bool>,
    },
    /// Delete a tenant and everything it owns.
    Delete {
        id: TenantId,
    },
}

#[derive(Subcommand)]
pub enum ProjectsCmd {
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
    List {
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        page: PageArgs,
    },
    Rename {
        #[arg(long)]
        tenant: TenantId,
        id: ProjectId,
        #[arg(long)]
        name: String,
    },
    /// Replace a project's response-cache rule (the flags given make the whole new rule);
    /// `--clear` removes it, so the tenant's applies.
    SetCache {
        #[arg(long)]
        tenant: TenantId,
        id: ProjectId,
        #[command(flatten)]
        cache: CacheArgs,
        #[arg(long, conflicts_with_all = ["mode", "allow", "ttl"])]
        clear: bool,
    },
    Delete {
        #[arg(long)]
        tenant: TenantId,
        id: ProjectId,
    },
}

#[derive(Subcommand)]
pub enum MembersCmd {
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        name: String,
        /// owner, admin, developer or viewer.
        #[arg(long)]
        role: MemberRole,
    },
    List {
        #[arg(long)]
        tenant: TenantId,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Change a member's role.
    SetRole {
        #[arg(long)]
        tenant: TenantId,
        id: MemberId,
        #[arg(long)]
        role: MemberRole,
    },
    /// Delete a member (revokes their keys).
    Delete {
        #[arg(long)]
        tenant: TenantId,
        id: MemberId,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        project: ProjectId,
        /// The member whose role the key carries.
        #[arg(long)]
        owner: MemberId,
        #[arg(long)]
        name: String,
        /// Scopes: inference, admin (repeatable; default inference).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Model aliases the key may call (repeatable; default all).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Deployment tags the key is restricted to, e.g. eu (repeatable; default none: any
        /// deployment the tenant may use).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Expiry, RFC 3339 (e.g. 2027-01-01T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    List {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        project: Option<ProjectId>,
        #[arg(long)]
        include_revoked: bool,
        #[command(flatten)]
        page: PageArgs,
    },
    Get {
        #[arg(long)]
        tenant: TenantId,
        id: KeyId,
    },
    Revoke {
        #[arg(long)]
        tenant: TenantId,
        id: KeyId,
    },
    /// Replace a key's secret (the old key is revoked); the new secret is printed once.
    Rotate {
        #[arg(long)]
        tenant: TenantId,
        id: KeyId,
    },
    /// Replace a key's response-cache rule (the flags given make the whole new rule); `--clear`
    /// removes it, so the project's applies.
    SetCache {
        #[arg(long)]
        tenant: TenantId,
        id: KeyId,
        #[command(flatten)]
        cache: CacheArgs,
        #[arg(long, conflicts_with_all = ["mode", "allow", "ttl"])]
        clear: bool,
    },
}

/// Which limits a `limits` command reads or replaces: the tenant's, or one of its projects' or
/// keys'.
#[derive(Args)]
pub struct LimitsTarget {
    #[arg(long)]
    tenant: TenantId,
    /// A project of the tenant.
    #[arg(long, conflicts_with = "key")]
    project: Option<ProjectId>,
    /// A key of the tenant.
    #[arg(long)]
    key: Option<KeyId>,
}

#[derive(Subcommand)]
pub enum LimitsCmd {
    /// Print the limits of a tenant, project or key (JSON).
    Get {
        #[command(flatten)]
        target: LimitsTarget,
    },
    /// Replace the limits of a tenant, project or key; `--json '{}'` clears them.
    Set {
        #[command(flatten)]
        target: LimitsTarget,
        /// The whole policy, e.g. '{"rate":{"rpm":60},"budgets":[{"period":"month","limit_usd":"100"}]}'.
        #[arg(long)]
        json: String,
    },
}

#[derive(Subcommand)]
pub enum PricingCmd {
    /// Print a tenant's negotiated prices and markup (JSON).
    Get {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Replace a tenant's prices and markup; `--json '{}'` clears them.
    Set {
        #[arg(long)]
        tenant: TenantId,
        /// The whole policy, e.g. '{"markup_bps":1000,"prices":[{"provider":"openai","model":"gpt-4o",
        /// "effective_from":"2025-01-01","input":"2","output":"8"}]}'.
        #[arg(long)]
        json: String,
    },
}

/// A tenant's usage report (what `GET /admin/v1/tenants/{id}/usage` answers).
#[derive(Args)]
pub struct UsageArgs {
    #[arg(long)]
    tenant: TenantId,
    /// Start, RFC 3339 (default: 30 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// End, RFC 3339, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    /// day, hour, model, project, key or provider.
    #[arg(long, default_value = "day")]
    group_by: String,
}

/// One admin command.
pub enum AdminCmd {
    Usage(UsageArgs),
    Tenants(TenantsCmd),
    Projects(ProjectsCmd),
    Members(MembersCmd),
    Keys(KeysCmd),
    Limits(LimitsCmd),
    Pricing(PricingCmd),
}

pub async fn run(config_path: &Path, cmd: AdminCmd) -> anyhow::Result<()> {
    let (config, _) = load_config(config_path)?;
    let store = open_store(config_path, &config).await?;
    let providers: HashSet<String> = config.providers.keys().cloned().collect();
    let service =
        AdminService::new(store.admin.clone(), Arc::new(master_keys(&ProcessEnv)?), Arc::new(providers));
    let service = service.with_usage(store.usage.clone());
    let caller = Caller::cli();
    let c = &caller;
    match cmd {
        AdminCmd::Usage(u) => {
            let time = |flag: &str, v: Option<String>| {
                v.map(|s| {
                    time::OffsetDateTime::parse(&s, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--{flag} must be RFC 3339, e.g. 2026-11-01T00:00:00Z"))
                })
                .transpose()
            };
            let to = time("to", u.to)?.unwrap_or_else(time::OffsetDateTime::now_utc);
            let from = time("from", u.from)?.unwrap_or(to - time::Duration::days(30));
            let group_by: UsageGroupBy =
                serde_json::from_value(serde_json::Value::String(u.group_by.clone())).map_err(|_| {
                    anyhow::anyhow!(
                        "--group-by {:?}: use day, hour, model, project, key or provider",
                        u.group_by
                    )
                })?;
            let report = service.usage_report(c, u.tenant, UsageQuery { from, to, group_by }).await?;
            print(&serde_json::json!({"totals": report.totals, "groups": report.groups}))
        }
        AdminCmd::Tenants(cmd) => match cmd {
            TenantsCmd::Create { name, byok_only } => print(
                &service
                    .create_tenant(
                        c,
                        NewTenant { name, policy: TenantPolicy { byok_only, ..TenantPolicy::default() } },
                    )
                    .await?,
            ),
            TenantsCmd::List(page) => print(&service.list_tenants(c, page.into()).await?),
            TenantsCmd::Get { id } => print(&service.get_tenant(c, id).await?),
            TenantsCmd::Update { id, name, byok_only } => {
                // The rest of the policy (allowed tags, cache rule) stays as it is.
                let policy = match byok_only {
                    Some(byok_only) => {
                        Some(TenantPolicy { byok_only, ..service.get_tenant(c, id).await?.policy })
                    }
                    None => None,
                };
                print(&service.update_tenant(c, id, TenantPatch { name, policy }).await?)
            }
            TenantsCmd::Delete { id } => {
                service.delete_tenant(c, id).await?;
                print(&serde_json::json!({"deleted": id}))
            }
        },
        AdminCmd::Projects(cmd) => match cmd {
            ProjectsCmd::Create { tenant, name, cache } => print(
                &service
                    .create_project(c, tenant, NewProject { name, limits: None, cache: cache.into() })
                    .await?,
            ),
            ProjectsCmd::List { tenant, page } => {
                print(&service.list_projects(c, tenant, page.into()).await?)
            }
            ProjectsCmd::Rename { tenant, id, name } => print(
                &service
                    .update_project(c, tenant, id, ProjectPatch { name: Some(name), cache: None })
                    .await?,
            ),
            ProjectsCmd::SetCache { tenant, id, cache, clear } => {
                let patch = ProjectPatch { name: None, cache: Some(cache_to_set(cache, clear)?) };
                print(&service.update_project(c, tenant, id, patch).await?)
            }
            ProjectsCmd::Delete { tenant, id } => {
                service.delete_project(c, tenant, id).await?;
                print(&serde_json::json!({"deleted": id}))
            }
        },
        AdminCmd::Members(cmd) => match cmd {
            MembersCmd::Create { tenant, name, role } => {
                print(&service.create_member(c, tenant, NewMember { name, role }).await?)
            }
            MembersCmd::List { tenant, page } => print(&service.list_members(c, tenant, page.into()).await?),
            MembersCmd::SetRole { tenant, id, role } => print(
                &service.update_member(c, tenant, id, MemberPatch { name: None, role: Some(role) }).await?,
            ),
            MembersCmd::Delete { tenant, id } => {
                service.delete_member(c, tenant, id).await?;
                print(&serde_json::json!({"deleted": id}))
            }
        },
        AdminCmd::Keys(cmd) => match cmd {
            KeysCmd::Create { tenant, project, owner, name, scopes, models, tags, expires_at, cache } => {
                let scopes = scopes.iter().map(|s| parse_scope(s)).collect::<anyhow::Result<Vec<_>>>()?;
                let expires_at = expires_at
                    .map(|e| time::OffsetDateTime::parse(&e, &time::format_description::well_known::Rfc3339))
                    .transpose()
                    .context("--expires-at must be RFC 3339, e.g. 2027-01-01T00:00:00Z")?;
                let new = CreateKey {
                    project_id: project,
                    owner_id: Some(owner),
                    name,
                    scopes: (!scopes.is_empty()).then_some(scopes),
                    allowed_models: (!models.is_empty()).then_some(models),
                    allowed_tags: tags,
                    metadata: JsonMap::new(),
                    expires_at,
                    limits: None,
                    cache: cache.into(),
                };
                let created = service.create_key(c, tenant, new).await?;
                print(&serde_json::json!({"key": created.key, "secret": created.secret.expose_secret()}))
            }
            KeysCmd::List { tenant, project, include_revoked, page } => {
                let filter = KeyFilter { project_id: project, include_revoked };
                print(&service.list_keys(c, tenant, filter, page.into()).await?)
            }
            KeysCmd::Get { tenant, id } => print(&service.get_key(c, tenant, id).await?),
            KeysCmd::Revoke { tenant, id } => print(&service.revoke_key(c, tenant, id).await?),
            KeysCmd::Rotate { tenant, id } => {
                let created = service.rotate_key(c, tenant, id).await?;
                print(&serde_json::json!({"key": created.key, "secret": created.secret.expose_secret()}))
            }
            KeysCmd::SetCache { tenant, id, cache, clear } => {
                let patch = KeyPatch { cache: Some(cache_to_set(cache, clear)?), ..KeyPatch::default() };
                print(&service.update_key(c, tenant, id, patch).await?)
            }
        },
        AdminCmd::Limits(cmd) => match cmd {
            LimitsCmd::Get { target } => {
                let limits = match (target.project, target.key) {
                    (Some(p), _) => service.get_project(c, target.tenant, p).await?.limits,
                    (None, Some(k)) => service.get_key(c, target.tenant, k).await?.limits,
                    (None, None) => service.get_tenant(c, target.tenant).await?.limits,
                };
                print(&limits)
            }
            LimitsCmd::Set { target, json } => {
                let policy: LimitPolicy = serde_json::from_str(&json)
                    .context("--json must be a limits policy such as '{\"rate\":{\"rpm\":60}}'")?;
                let limits = match (target.project, target.key) {
                    (Some(p), _) => service.set_project_limits(c, target.tenant, p, policy).await?.limits,
                    (None, Some(k)) => service.set_key_limits(c, target.tenant, k, policy).await?.limits,
                    (None, None) => service.set_tenant_limits(c, target.tenant, policy).await?.limits,
                };
                print(&limits)
            }
        },
        AdminCmd::Pricing(cmd) => match cmd {
            PricingCmd::Get { tenant } => print(&service.get_tenant(c, tenant).await?.pricing),
            PricingCmd::Set { tenant, json } => {
                let policy: PricingPolicy = serde_json::from_str(&json)
                    .context("--json must be a pricing policy such as '{\"markup_bps\":1000}'")?;
                print(&service.set_tenant_pricing(c, tenant, policy).await?.pricing)
            }
        },
    }
}

fn parse_scope(s: &str) -> anyhow::Result<KeyScope> {
    match s {
        "inference" => Ok(KeyScope::Inference),
        "admin" => Ok(KeyScope::Admin),
        other => anyhow::bail!("unknown scope {other:?} (inference, admin)"),
    }
}

fn print<T: Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    writeln!(std::io::stdout(), "{text}").context("writing to stdout")
}
