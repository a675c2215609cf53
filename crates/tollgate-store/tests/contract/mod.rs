//! The store contract: one suite every store (SQLite, PostgreSQL) must pass, exercising only the
//! ports (`AuthStore`, `AdminStore`, `ChangeFeed`) through `tollgate_store::Store`.
//!
//! Use: `#[macro_use] mod contract;` then `store_contract!(factory())`, where `factory()` is a
//! future yielding `(Store, guard)`: a fresh, isolated store per test and a guard that cleans it
//! up when dropped. The macro expands to one `#[tokio::test]` per function below, so a failure
//! names the rule that broke.
//!
//! Rules pinned here beyond the port docs (both stores follow them):
//! - Another tenant's record is `NotFound`, exactly like a missing one; creating anything in a
//!   missing tenant is `NotFound` too.
//! - "Live" means not revoked (an expired key is still live for lists, delete_project and rotate).
//! - Rotating a revoked key is `Conflict` and creates nothing.
//! - Deleting a member revokes its keys and keeps them as revoked records: they stay listable with
//!   `include_revoked` and `authenticate_key` still returns them (revoked; role `viewer` since the
//!   owner is gone).
//! - Revoking a revoked key changes nothing: no audit record, no change published.
//! - `get_credential` and `list_credentials` never carry the sealed secret; `sealed_credentials`
//!   and `all_sealed_credentials` do.
//! - Limits are clamped to `1..=PageRequest::MAX_LIMIT`.
//! - Limits and pricing are replaced whole (an empty policy clears them); their audit records
//!   (`tenant.limits`, `tenant.pricing`, `project.limits`, `key.limits`) hold the policies
//!   before and after; project limits announce `Change::Tenant`, key limits `Change::Key`.
//! - Cache rules of projects and keys are replaced whole by a patch that carries one (an empty
//!   rule clears it) and kept by every other change; a project's new rule announces
//!   `Change::Tenant` (keys carry their project's rule), a key's `Change::Key`.
//! - Usage totals count `cache_status = 'hit'` and `'miss'` records and sum the savings; a
//!   `bypass` or absent status counts as neither.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use time::macros::datetime;
use tollgate_store::Store;
use tollgate_types::JsonMap;
use tollgate_types::cache_rule::{CacheAllow, CacheRule, CacheRuleMode};
use tollgate_types::limits::{
    BudgetSpec, LimitPolicy, PriceAmount, PriceEntry, PricingPolicy, RateLimits, Usd,
};
use tollgate_types::ports::BudgetPeriod;
use tollgate_types::ports::store::{
    Change, ChangeEvent, KeyFilter, KeyPatch, MemberPatch, NewCredential, NewKey, NewMember, NewProject,
    NewTenant, ProjectPatch, StoreError, TenantPatch,
};
use tollgate_types::tenancy::{
    Actor, ApiKey, CredentialId, KeyHash, KeyId, KeyScope, Member, MemberId, MemberRole, PageRequest,
    Project, ProjectId, ProviderCredential, SealedSecret, Tenant, TenantId, TenantPolicy,
};
use uuid::Uuid;

/// Asserts that `$e` (a store call's result) is `Err(StoreError::$variant(_))`.
macro_rules! assert_err {
    ($e:expr, $variant:ident) => {{
        let r = $e;
        assert!(
            matches!(r, Err(StoreError::$variant(_))),
            "expected {} from `{}`, got {:?}",
            stringify!($variant),
            stringify!($e),
            r
        );
    }};
}

/// Expands to one `#[tokio::test]` per contract function, each on a fresh store from `$factory`
/// (an expression evaluating to a future of `(Store, guard)`).
macro_rules! store_contract {
    ($factory:expr) => {
        store_contract!(@tests $factory;
            ping_ok,
            usage_records_round_trip_and_paginate,
            usage_records_are_tenant_scoped,
            usage_retention_removes_only_older_records_of_every_tenant,
            usage_retention_refuses_a_recent_cutoff,
            tenant_crud_round_trip,
            tenant_duplicate_name_conflicts,
            names_are_validated_and_trimmed,
            sql_injection_shaped_names_are_stored_verbatim,
            tenants_paginate,
            page_limits_are_clamped,
            project_crud_round_trip,
            project_duplicate_name_conflicts,
            concurrent_duplicate_creates_conflict,
            projects_paginate,
            missing_ids_are_not_found,
            creating_in_a_missing_tenant_is_not_found,
            member_crud_round_trip,
            member_duplicate_name_conflicts,
            members_paginate,
            key_crud_round_trip,
            key_create_checks_project_owner_and_hash,
            key_inputs_are_validated,
            keys_filter_and_paginate,
            revoke_is_idempotent,
            rotate_is_atomic,
            rotating_a_revoked_key_conflicts_and_creates_nothing,
            delete_project_conflicts_while_keys_are_live,
            delete_member_revokes_its_keys,
            authenticate_key_returns_what_auth_needs,
            authenticate_key_returns_expired_and_revoked_keys,
            touch_keys_records_last_use_and_ignores_unknown_ids,
            delete_tenant_cascades,
            tenant_isolation_of_records,
            tenant_isolation_of_lists_and_audit,
            credential_crud_round_trip,
            credential_inputs_are_validated,
            credentials_paginate,
            reseal_replaces_the_ciphertext,
            audit_records_every_change,
            audit_paginates_newest_first,
            recorded_actions_join_the_audit_trail,
            change_feed_tenant_and_members,
            change_feed_keys,
            change_feed_credentials,
            limits_and_pricing_round_trip,
            limits_can_be_given_at_creation,
            limits_changes_are_audited,
            authenticate_key_returns_limits_and_pricing,
            change_feed_limits,
            limits_of_another_tenant_are_not_found,
            cache_rules_round_trip,
            cache_rules_of_another_tenant_are_not_found,
            change_feed_cache_rules,
            usage_totals_count_cache_hits_misses_and_savings,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $factory.await;
                crate::contract::$name(&store).await;
            }
        )*
    };
}

// === helpers ===

fn actor() -> Actor {
    Actor::Cli
}

fn key_actor() -> Actor {
    Actor::Key { key_id: KeyId::new(), member_id: MemberId::new() }
}

fn page(limit: u32) -> PageRequest {
    PageRequest::first(limit)
}

fn all() -> PageRequest {
    PageRequest::first(PageRequest::MAX_LIMIT)
}

fn hash() -> KeyHash {
    let mut h = [0u8; 32];
    h[..16].copy_from_slice(Uuid::now_v7().as_bytes());
    h[16..].copy_from_slice(Uuid::now_v7().as_bytes());
    KeyHash(h)
}

async fn tenant(store: &Store, name: &str) -> Tenant {
    store
        .admin
        .create_tenant(NewTenant { name: name.into(), policy: TenantPolicy::default() }, &actor())
        .await
        .unwrap()
}

async fn project(store: &Store, tenant: TenantId, name: &str) -> Project {
    store.admin.create_project(tenant, new_project(name), &actor()).await.unwrap()
}

async fn member(store: &Store, tenant: TenantId, name: &str, role: MemberRole) -> Member {
    store.admin.create_member(tenant, NewMember { name: name.into(), role }, &actor()).await.unwrap()
}

fn new_project(name: &str) -> NewProject {
    NewProject { name: name.into(), limits: None, cache: CacheRule::default() }
}

/// A patch renaming a project (and nothing else).
fn rename(name: &str) -> ProjectPatch {
    ProjectPatch { name: Some(name.into()), ..ProjectPatch::default() }
}

fn new_key(project: ProjectId, owner: MemberId, name: &str) -> NewKey {
    NewKey {
        id: KeyId::new(),
        project_id: project,
        owner_id: owner,
        name: name.into(),
        prefix: "tg_live_AbCd".into(),
        hash: hash(),
        scopes: vec![KeyScope::Inference],
        allowed_models: None,
        allowed_tags: Vec::new(),
        metadata: JsonMap::new(),
        expires_at: None,
        limits: None,
        cache: CacheRule::default(),
    }
}

async fn key(
    store: &Store,
    tenant: TenantId,
    project: ProjectId,
    owner: MemberId,
    name: &str,
) -> (ApiKey, KeyHash) {
    let new = new_key(project, owner, name);
    let hash = new.hash;
    (store.admin.create_key(tenant, new, &actor()).await.unwrap(), hash)
}

fn new_credential(provider: &str, name: &str) -> NewCredential {
    NewCredential {
        id: CredentialId::new(),
        provider: provider.into(),
        name: name.into(),
        masked: "...x9Qz".into(),
        sealed: SealedSecret { key_id: "master-1".into(), ciphertext: vec![1, 2, 3, 4, 5] },
    }
}

/// A tenant with one project, one admin member, one live key and one credential.
struct World {
    tenant: Tenant,
    project: Project,
    member: Member,
    key: ApiKey,
    hash: KeyHash,
    credential: ProviderCredential,
}

async fn world(store: &Store, name: &str) -> World {
    let tenant = tenant(store, name).await;
    let project = project(store, tenant.id, "default").await;
    let member = member(store, tenant.id, "alice@example.com", MemberRole::Admin).await;
    let (key, hash) = key(store, tenant.id, project.id, member.id, "ci").await;
    let credential =
        store.admin.create_credential(tenant.id, new_credential("openai", "main"), &actor()).await.unwrap();
    World { tenant, project, member, key, hash, credential }
}

/// Subscribes, then gives a feed that connects to something (PostgreSQL `LISTEN`) a moment to
/// start listening, so a change made right after is not missed.
async fn subscribe(store: &Store) -> BoxStream<'static, ChangeEvent> {
    let feed = store.changes.subscribe();
    tokio::time::sleep(Duration::from_millis(200)).await;
    feed
}

/// Waits up to 1 s for `expected`, skipping other changes and resyncs.
async fn expect_change(feed: &mut BoxStream<'static, ChangeEvent>, expected: Change) {
    let found = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(event) = feed.next().await {
            if event == ChangeEvent::Changed(expected) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "change {expected:?} was not delivered within 1 s");
}

// === contract ===

pub async fn ping_ok(store: &Store) {
    store.auth.ping().await.unwrap();
}

pub async fn tenant_crud_round_trip(store: &Store) {
    let created = store
        .admin
        .create_tenant(
            NewTenant {
                name: "acme".into(),
                policy: TenantPolicy { byok_only: true, ..TenantPolicy::default() },
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(created.name, "acme");
    assert!(created.policy.byok_only);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(store.admin.get_tenant(created.id).await.unwrap(), created);

    let updated = store
        .admin
        .update_tenant(
            created.id,
            TenantPatch {
                name: Some("acme-corp".into()),
                policy: Some(TenantPolicy { byok_only: false, ..TenantPolicy::default() }),
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.name, "acme-corp");
    assert!(!updated.policy.byok_only);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(store.admin.get_tenant(created.id).await.unwrap(), updated);

    // An empty patch changes nothing but the timestamp.
    let same = store.admin.update_tenant(created.id, TenantPatch::default(), &actor()).await.unwrap();
    assert_eq!(
        (same.name.as_str(), same.policy.clone()),
        ("acme-corp", TenantPolicy { byok_only: false, ..TenantPolicy::default() })
    );

    let listed = store.admin.list_tenants(all()).await.unwrap();
    assert_eq!(listed.data.len(), 1);
    assert_eq!(listed.next, None);

    store.admin.delete_tenant(created.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_tenant(created.id).await, NotFound);
    assert_err!(store.admin.delete_tenant(created.id, &actor()).await, NotFound);
    assert!(store.admin.list_tenants(all()).await.unwrap().data.is_empty());
}

pub async fn tenant_duplicate_name_conflicts(store: &Store) {
    let a = tenant(store, "acme").await;
    let b = tenant(store, "globex").await;
    assert_err!(
        store
            .admin
            .create_tenant(NewTenant { name: "acme".into(), policy: TenantPolicy::default() }, &actor())
            .await,
        Conflict
    );
    // Trimmed before the uniqueness check.
    assert_err!(
        store
            .admin
            .create_tenant(NewTenant { name: " acme ".into(), policy: TenantPolicy::default() }, &actor())
            .await,
        Conflict
    );
    let err = store
        .admin
        .update_tenant(b.id, TenantPatch { name: Some("acme".into()), ..TenantPatch::default() }, &actor())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(msg) if msg.contains("name") && msg.contains("acme")),
        "{err:?}"
    );
    assert_eq!(store.admin.get_tenant(b.id).await.unwrap().name, "globex");
    assert_eq!(store.admin.get_tenant(a.id).await.unwrap().name, "acme");
}

pub async fn names_are_validated_and_trimmed(store: &Store) {
    let bad = ["", "   ", "a\u{0}b", "line\nbreak", "tab\there", &"x".repeat(201)];
    for name in bad {
        let r = store
            .admin
            .create_tenant(NewTenant { name: name.into(), policy: TenantPolicy::default() }, &actor())
            .await;
        assert_eq!(
            r,
            Err(StoreError::Invalid("name: must be 1-200 characters without control characters".into())),
            "{name:?}"
        );
    }
    assert!(store.admin.list_tenants(all()).await.unwrap().data.is_empty());

    let t = tenant(store, "  spaced  ").await;
    assert_eq!(t.name, "spaced");
    let long = "é".repeat(200);
    assert_eq!(tenant(store, &long).await.name, long);

    assert_err!(store.admin.create_project(t.id, new_project(" "), &actor()).await, Invalid);
    assert_err!(
        store
            .admin
            .create_member(t.id, NewMember { name: "\u{7}".into(), role: MemberRole::Viewer }, &actor())
            .await,
        Invalid
    );
    let p = project(store, t.id, "  web  ").await;
    assert_eq!(p.name, "web");
    assert_err!(store.admin.update_project(t.id, p.id, rename(""), &actor()).await, Invalid);
    let m = member(store, t.id, "bob", MemberRole::Viewer).await;
    assert_err!(
        store
            .admin
            .update_member(t.id, m.id, MemberPatch { name: Some("x".repeat(201)), role: None }, &actor())
            .await,
        Invalid
    );
    assert_err!(
        store
            .admin
            .update_tenant(t.id, TenantPatch { name: Some("\r".into()), policy: None }, &actor())
            .await,
        Invalid
    );
}

pub async fn sql_injection_shaped_names_are_stored_verbatim(store: &Store) {
    let evil = "'; DROP TABLE tenants; --";
    let other = tenant(store, "bystander").await;
    let t = tenant(store, evil).await;
    assert_eq!(t.name, evil);
    assert_eq!(store.admin.get_tenant(t.id).await.unwrap().name, evil);

    let p = project(store, t.id, "Robert'); DROP TABLE projects;--").await;
    let m = member(store, t.id, "\" OR 1=1 --", MemberRole::Viewer).await;
    let (k, _) = key(store, t.id, p.id, m.id, "x' OR '1'='1").await;
    let c = store
        .admin
        .create_credential(
            t.id,
            new_credential("openai", "'); DELETE FROM provider_credentials; --"),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap().name, "Robert'); DROP TABLE projects;--");
    assert_eq!(store.admin.get_member(t.id, m.id).await.unwrap().name, "\" OR 1=1 --");
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap().name, "x' OR '1'='1");
    assert_eq!(
        store.admin.get_credential(t.id, c.id).await.unwrap().name,
        "'); DELETE FROM provider_credentials; --"
    );

    // Everything is still there.
    assert_eq!(store.admin.list_tenants(all()).await.unwrap().data.len(), 2);
    assert_eq!(store.admin.get_tenant(other.id).await.unwrap().name, "bystander");
    assert_eq!(store.admin.list_projects(t.id, all()).await.unwrap().data.len(), 1);
    assert_eq!(store.admin.list_credentials(t.id, all()).await.unwrap().data.len(), 1);
}

pub async fn tenants_paginate(store: &Store) {
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(tenant(store, &format!("t{i}")).await.id);
    }
    let p1 = store.admin.list_tenants(page(3)).await.unwrap();
    assert_eq!(p1.data.iter().map(|t| t.id).collect::<Vec<_>>(), made[0..3]);
    let p2 = store.admin.list_tenants(PageRequest { limit: 3, after: p1.next }).await.unwrap();
    assert_eq!(p2.data.iter().map(|t| t.id).collect::<Vec<_>>(), made[3..6]);
    assert_eq!(p2.next, Some(made[5].0));
    let p3 = store.admin.list_tenants(PageRequest { limit: 3, after: p2.next }).await.unwrap();
    assert_eq!(p3.data.iter().map(|t| t.id).collect::<Vec<_>>(), made[6..7]);
    assert_eq!(p3.next, None);
    // Exactly a full last page: no next.
    let exact = store.admin.list_tenants(PageRequest { limit: 4, after: p1.next }).await.unwrap();
    assert_eq!(exact.data.len(), 4);
    assert_eq!(exact.next, None);
}

pub async fn page_limits_are_clamped(store: &Store) {
    let t = tenant(store, "acme").await;
    for i in 0..3 {
        project(store, t.id, &format!("p{i}")).await;
    }
    let zero = store.admin.list_projects(t.id, page(0)).await.unwrap();
    assert_eq!(zero.data.len(), 1);
    assert!(zero.next.is_some());
    let huge = store.admin.list_projects(t.id, page(u32::MAX)).await.unwrap();
    assert_eq!(huge.data.len(), 3);
    assert_eq!(huge.next, None);
}

pub async fn project_crud_round_trip(store: &Store) {
    let t = tenant(store, "acme").await;
    let p = project(store, t.id, "web").await;
    assert_eq!(p.tenant_id, t.id);
    assert_eq!(p.name, "web");
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap(), p);

    let renamed = store.admin.update_project(t.id, p.id, rename("site"), &actor()).await.unwrap();
    assert_eq!(renamed.name, "site");
    assert_eq!(renamed.created_at, p.created_at);
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap(), renamed);
    assert_eq!(store.admin.list_projects(t.id, all()).await.unwrap().data, vec![renamed]);

    store.admin.delete_project(t.id, p.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_project(t.id, p.id).await, NotFound);
    assert_err!(store.admin.delete_project(t.id, p.id, &actor()).await, NotFound);
    assert!(store.admin.list_projects(t.id, all()).await.unwrap().data.is_empty());
}

pub async fn project_duplicate_name_conflicts(store: &Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    project(store, a.id, "web").await;
    let api = project(store, a.id, "api").await;
    assert_err!(store.admin.create_project(a.id, new_project("web"), &actor()).await, Conflict);
    assert_err!(store.admin.update_project(a.id, api.id, rename("web"), &actor()).await, Conflict);
    // Names are unique per tenant only.
    project(store, b.id, "web").await;
    assert_eq!(store.admin.get_project(a.id, api.id).await.unwrap().name, "api");
}

pub async fn concurrent_duplicate_creates_conflict(store: &Store) {
    let t = tenant(store, "acme").await;
    let who = actor();
    // Eight creates of one name at once: the database's unique constraint, not a racy
    // pre-check, decides, so exactly one wins and the rest are conflicts.
    let attempts = (0..8).map(|_| store.admin.create_project(t.id, new_project("web"), &who));
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict(_)))), "{results:?}");
    let tenants = (0..8).map(|_| {
        store.admin.create_tenant(NewTenant { name: "same".into(), policy: TenantPolicy::default() }, &who)
    });
    let results = futures::future::join_all(tenants).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().all(|r| matches!(r, Ok(_) | Err(StoreError::Conflict(_)))), "{results:?}");
    assert_eq!(store.admin.list_projects(t.id, all()).await.unwrap().data.len(), 1);
}

pub async fn projects_paginate(store: &Store) {
    let t = tenant(store, "acme").await;
    let other = tenant(store, "other").await;
    project(store, other.id, "noise").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(project(store, t.id, &format!("p{i}")).await.id);
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after = None;
    loop {
        let p = store.admin.list_projects(t.id, PageRequest { limit: 3, after }).await.unwrap();
        sizes.push(p.data.len());
        seen.extend(p.data.iter().map(|p| p.id));
        match p.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(sizes, vec![3, 3, 1]);
    assert_eq!(seen, made);
}

pub async fn missing_ids_are_not_found(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let a = actor();
    assert_err!(store.admin.get_tenant(TenantId::new()).await, NotFound);
    assert_err!(store.admin.update_tenant(TenantId::new(), TenantPatch::default(), &a).await, NotFound);
    assert_err!(store.admin.delete_tenant(TenantId::new(), &a).await, NotFound);
    assert_err!(store.admin.get_project(t, ProjectId::new()).await, NotFound);
    assert_err!(store.admin.update_project(t, ProjectId::new(), ProjectPatch::default(), &a).await, NotFound);
    assert_err!(store.admin.delete_project(t, ProjectId::new(), &a).await, NotFound);
    assert_err!(store.admin.get_member(t, MemberId::new()).await, NotFound);
    assert_err!(store.admin.update_member(t, MemberId::new(), MemberPatch::default(), &a).await, NotFound);
    assert_err!(store.admin.delete_member(t, MemberId::new(), &a).await, NotFound);
    assert_err!(store.admin.get_key(t, KeyId::new()).await, NotFound);
    assert_err!(store.admin.update_key(t, KeyId::new(), KeyPatch::default(), &a).await, NotFound);
    assert_err!(store.admin.revoke_key(t, KeyId::new(), &a).await, NotFound);
    assert_err!(
        store.admin.rotate_key(t, KeyId::new(), new_key(w.project.id, w.member.id, "n"), &a).await,
        NotFound
    );
    assert_err!(store.admin.get_credential(t, CredentialId::new()).await, NotFound);
    assert_err!(store.admin.delete_credential(t, CredentialId::new(), &a).await, NotFound);
    assert_err!(
        store
            .admin
            .reseal_credential(
                t,
                CredentialId::new(),
                SealedSecret { key_id: "k".into(), ciphertext: vec![1] },
                &a
            )
            .await,
        NotFound
    );
    // Keys need an existing project and owner in the tenant.
    assert_err!(store.admin.create_key(t, new_key(ProjectId::new(), w.member.id, "k"), &a).await, NotFound);
    assert_err!(store.admin.create_key(t, new_key(w.project.id, MemberId::new(), "k"), &a).await, NotFound);
    // Nothing above created anything.
    assert_eq!(
        store
            .admin
            .list_keys(t, KeyFilter { include_revoked: true, ..KeyFilter::default() }, all())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
}

pub async fn creating_in_a_missing_tenant_is_not_found(store: &Store) {
    let ghost = TenantId::new();
    let a = actor();
    assert_err!(store.admin.create_project(ghost, new_project("p"), &a).await, NotFound);
    assert_err!(
        store.admin.create_member(ghost, NewMember { name: "m".into(), role: MemberRole::Owner }, &a).await,
        NotFound
    );
    assert_err!(store.admin.create_credential(ghost, new_credential("openai", "c"), &a).await, NotFound);
    assert_err!(
        store.admin.create_key(ghost, new_key(ProjectId::new(), MemberId::new(), "k"), &a).await,
        NotFound
    );
}

pub async fn member_crud_round_trip(store: &Store) {
    let t = tenant(store, "acme").await;
    let m = member(store, t.id, "alice@example.com", MemberRole::Developer).await;
    assert_eq!((m.name.as_str(), m.role, m.tenant_id), ("alice@example.com", MemberRole::Developer, t.id));
    assert_eq!(store.admin.get_member(t.id, m.id).await.unwrap(), m);

    let promoted = store
        .admin
        .update_member(t.id, m.id, MemberPatch { name: None, role: Some(MemberRole::Owner) }, &actor())
        .await
        .unwrap();
    assert_eq!((promoted.name.as_str(), promoted.role), ("alice@example.com", MemberRole::Owner));
    let renamed = store
        .admin
        .update_member(t.id, m.id, MemberPatch { name: Some("alice@acme.test".into()), role: None }, &actor())
        .await
        .unwrap();
    assert_eq!((renamed.name.as_str(), renamed.role), ("alice@acme.test", MemberRole::Owner));
    assert_eq!(store.admin.get_member(t.id, m.id).await.unwrap(), renamed);

    for role in [MemberRole::Viewer, MemberRole::Developer, MemberRole::Admin, MemberRole::Owner] {
        let m = member(store, t.id, &format!("{role:?}"), role).await;
        assert_eq!(store.admin.get_member(t.id, m.id).await.unwrap().role, role);
    }
    assert_eq!(store.admin.list_members(t.id, all()).await.unwrap().data.len(), 5);

    store.admin.delete_member(t.id, m.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_member(t.id, m.id).await, NotFound);
    assert_err!(store.admin.delete_member(t.id, m.id, &actor()).await, NotFound);
    assert_eq!(store.admin.list_members(t.id, all()).await.unwrap().data.len(), 4);
}

pub async fn member_duplicate_name_conflicts(store: &Store) {
    let a = tenant(store, "a").await;
    let b = tenant(store, "b").await;
    member(store, a.id, "alice", MemberRole::Admin).await;
    let bob = member(store, a.id, "bob", MemberRole::Admin).await;
    assert_err!(
        store
            .admin
            .create_member(a.id, NewMember { name: "alice".into(), role: MemberRole::Viewer }, &actor())
            .await,
        Conflict
    );
    assert_err!(
        store
            .admin
            .update_member(a.id, bob.id, MemberPatch { name: Some("alice".into()), role: None }, &actor())
            .await,
        Conflict
    );
    member(store, b.id, "alice", MemberRole::Admin).await;
}

pub async fn members_paginate(store: &Store) {
    let t = tenant(store, "acme").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(member(store, t.id, &format!("m{i}"), MemberRole::Viewer).await.id);
    }
    let p1 = store.admin.list_members(t.id, page(3)).await.unwrap();
    let p2 = store.admin.list_members(t.id, PageRequest { limit: 3, after: p1.next }).await.unwrap();
    let p3 = store.admin.list_members(t.id, PageRequest { limit: 3, after: p2.next }).await.unwrap();
    assert_eq!((p1.data.len(), p2.data.len(), p3.data.len()), (3, 3, 1));
    assert_eq!(p3.next, None);
    let seen: Vec<_> = p1.data.iter().chain(&p2.data).chain(&p3.data).map(|m| m.id).collect();
    assert_eq!(seen, made);
}

pub async fn key_crud_round_trip(store: &Store) {
    let t = tenant(store, "acme").await;
    let p = project(store, t.id, "web").await;
    let m = member(store, t.id, "alice", MemberRole::Developer).await;
    let mut metadata = JsonMap::new();
    metadata.insert("team".into(), serde_json::json!("search"));
    metadata.insert("nested".into(), serde_json::json!({"a": [1, 2, {"b": null}]}));
    let expires = datetime!(2030-01-01 00:00:00.123456 UTC);
    let new = NewKey {
        scopes: vec![KeyScope::Inference, KeyScope::Admin],
        allowed_models: Some(vec!["gpt-4o".into(), "claude-sonnet".into()]),
        allowed_tags: vec!["us-east-1".into(), "eu".into(), "eu".into()],
        metadata: metadata.clone(),
        expires_at: Some(expires),
        ..new_key(p.id, m.id, "ci")
    };
    let id = new.id;
    let k = store.admin.create_key(t.id, new, &actor()).await.unwrap();
    assert_eq!(k.id, id);
    assert_eq!((k.tenant_id, k.project_id, k.owner_id), (t.id, p.id, m.id));
    assert_eq!((k.name.as_str(), k.prefix.as_str()), ("ci", "tg_live_AbCd"));
    assert_eq!(k.scopes, vec![KeyScope::Inference, KeyScope::Admin]);
    assert_eq!(k.allowed_models, Some(vec!["gpt-4o".to_owned(), "claude-sonnet".to_owned()]));
    // Tags come back sorted and without duplicates, on both stores.
    assert_eq!(k.allowed_tags, ["eu", "us-east-1"]);
    assert_eq!(k.metadata, metadata);
    assert_eq!(k.expires_at, Some(expires));
    assert_eq!((k.revoked_at, k.last_used_at), (None, None));
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap(), k);

    let mut meta2 = JsonMap::new();
    meta2.insert("team".into(), serde_json::json!("infra"));
    let updated = store
        .admin
        .update_key(
            t.id,
            k.id,
            KeyPatch {
                name: Some("deploy".into()),
                allowed_models: Some(None),
                allowed_tags: Some(vec!["apac".into()]),
                metadata: Some(meta2.clone()),
                expires_at: Some(None),
                cache: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "deploy");
    assert_eq!(updated.allowed_models, None);
    assert_eq!(updated.allowed_tags, ["apac"]);
    assert_eq!(updated.metadata, meta2);
    assert_eq!(updated.expires_at, None);
    assert_eq!(updated.scopes, k.scopes);
    assert_eq!(updated.created_at, k.created_at);
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap(), updated);

    // An empty patch keeps every field; Some(Some(..)) sets an optional one again.
    let same = store.admin.update_key(t.id, k.id, KeyPatch::default(), &actor()).await.unwrap();
    assert_eq!((same.name.as_str(), &same.metadata, same.allowed_models.clone()), ("deploy", &meta2, None));
    assert_eq!(same.allowed_tags, ["apac"]);
    let again = store
        .admin
        .update_key(
            t.id,
            k.id,
            KeyPatch {
                allowed_models: Some(Some(vec!["m".into()])),
                allowed_tags: Some(vec![]),
                expires_at: Some(Some(expires)),
                ..KeyPatch::default()
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((again.allowed_models, again.expires_at), (Some(vec!["m".to_owned()]), Some(expires)));
    assert!(again.allowed_tags.is_empty(), "an empty list lifts the key's tag restriction");
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap().allowed_tags, Vec::<String>::new());

    let listed = store.admin.list_keys(t.id, KeyFilter::default(), all()).await.unwrap();
    assert_eq!(listed.data.iter().map(|k| k.id).collect::<Vec<_>>(), vec![k.id]);
}

pub async fn key_create_checks_project_owner_and_hash(store: &Store) {
    let a = world(store, "a").await;
    let b = world(store, "b").await;
    // B's project or member with A's tenant: NotFound, even though the ids exist.
    assert_err!(
        store.admin.create_key(a.tenant.id, new_key(b.project.id, a.member.id, "x"), &actor()).await,
        NotFound
    );
    assert_err!(
        store.admin.create_key(a.tenant.id, new_key(a.project.id, b.member.id, "x"), &actor()).await,
        NotFound
    );
    // The hash is globally unique (it is the authentication lookup).
    let dup = NewKey { hash: b.hash, ..new_key(a.project.id, a.member.id, "dup") };
    assert_err!(store.admin.create_key(a.tenant.id, dup, &actor()).await, Conflict);
    let dup_id = NewKey { id: a.key.id, ..new_key(a.project.id, a.member.id, "dup") };
    assert_err!(store.admin.create_key(a.tenant.id, dup_id, &actor()).await, Conflict);
    // Key names may repeat.
    key(store, a.tenant.id, a.project.id, a.member.id, "ci").await;
    assert_eq!(store.admin.list_keys(a.tenant.id, KeyFilter::default(), all()).await.unwrap().data.len(), 2);
    assert_eq!(store.admin.list_keys(b.tenant.id, KeyFilter::default(), all()).await.unwrap().data.len(), 1);
}

pub async fn key_inputs_are_validated(store: &Store) {
    let w = world(store, "acme").await;
    let (t, p, m) = (w.tenant.id, w.project.id, w.member.id);
    let mut big = JsonMap::new();
    big.insert("blob".into(), serde_json::Value::String("x".repeat(17 * 1024)));
    let cases = [
        NewKey { scopes: vec![], ..new_key(p, m, "k") },
        NewKey { metadata: big.clone(), ..new_key(p, m, "k") },
        NewKey { allowed_models: Some(vec![String::new()]), ..new_key(p, m, "k") },
        NewKey { allowed_models: Some(vec!["m".repeat(201)]), ..new_key(p, m, "k") },
        NewKey { allowed_tags: vec!["eu".into(), String::new()], ..new_key(p, m, "k") },
        NewKey { allowed_tags: vec!["t".repeat(65)], ..new_key(p, m, "k") },
        NewKey { name: "  ".into(), ..new_key(p, m, "k") },
        NewKey { name: "x".repeat(201), ..new_key(p, m, "k") },
    ];
    for new in cases {
        let shown = format!("{new:?}");
        let r = store.admin.create_key(t, new, &actor()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{shown}: {r:?}");
    }
    assert_err!(
        store
            .admin
            .update_key(t, w.key.id, KeyPatch { metadata: Some(big), ..KeyPatch::default() }, &actor())
            .await,
        Invalid
    );
    assert_err!(
        store
            .admin
            .update_key(
                t,
                w.key.id,
                KeyPatch { allowed_models: Some(Some(vec![String::new()])), ..KeyPatch::default() },
                &actor()
            )
            .await,
        Invalid
    );
    assert_err!(
        store
            .admin
            .update_key(
                t,
                w.key.id,
                KeyPatch { name: Some("\u{1b}[31m".into()), ..KeyPatch::default() },
                &actor()
            )
            .await,
        Invalid
    );
    assert_err!(
        store
            .admin
            .update_key(
                t,
                w.key.id,
                KeyPatch { allowed_tags: Some(vec![" ".into()]), ..KeyPatch::default() },
                &actor()
            )
            .await,
        Invalid
    );
    assert_eq!(
        store
            .admin
            .list_keys(t, KeyFilter { include_revoked: true, project_id: None }, all())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap(), w.key);
}

pub async fn keys_filter_and_paginate(store: &Store) {
    let t = tenant(store, "acme").await;
    let web = project(store, t.id, "web").await;
    let api = project(store, t.id, "api").await;
    let m = member(store, t.id, "alice", MemberRole::Admin).await;
    let mut web_keys = Vec::new();
    for i in 0..7 {
        web_keys.push(key(store, t.id, web.id, m.id, &format!("w{i}")).await.0.id);
    }
    let (api_key, _) = key(store, t.id, api.id, m.id, "a0").await;
    let (revoked, _) = key(store, t.id, api.id, m.id, "a1").await;
    store.admin.revoke_key(t.id, revoked.id, &actor()).await.unwrap();

    let filter = KeyFilter { project_id: Some(web.id), include_revoked: false };
    let p1 = store.admin.list_keys(t.id, filter.clone(), page(3)).await.unwrap();
    let p2 =
        store.admin.list_keys(t.id, filter.clone(), PageRequest { limit: 3, after: p1.next }).await.unwrap();
    let p3 =
        store.admin.list_keys(t.id, filter.clone(), PageRequest { limit: 3, after: p2.next }).await.unwrap();
    assert_eq!((p1.data.len(), p2.data.len(), p3.data.len()), (3, 3, 1));
    assert_eq!(p3.next, None);
    let seen: Vec<_> = p1.data.iter().chain(&p2.data).chain(&p3.data).map(|k| k.id).collect();
    assert_eq!(seen, web_keys);

    let api_live = store
        .admin
        .list_keys(t.id, KeyFilter { project_id: Some(api.id), include_revoked: false }, all())
        .await
        .unwrap();
    assert_eq!(api_live.data.iter().map(|k| k.id).collect::<Vec<_>>(), vec![api_key.id]);
    let api_all = store
        .admin
        .list_keys(t.id, KeyFilter { project_id: Some(api.id), include_revoked: true }, all())
        .await
        .unwrap();
    assert_eq!(api_all.data.iter().map(|k| k.id).collect::<Vec<_>>(), vec![api_key.id, revoked.id]);
    assert!(api_all.data[1].revoked_at.is_some());
    assert_eq!(store.admin.list_keys(t.id, KeyFilter::default(), all()).await.unwrap().data.len(), 8);
    assert_eq!(
        store
            .admin
            .list_keys(t.id, KeyFilter { project_id: None, include_revoked: true }, all())
            .await
            .unwrap()
            .data
            .len(),
        9
    );
    // A project of nobody's: empty, not an error.
    assert!(
        store
            .admin
            .list_keys(t.id, KeyFilter { project_id: Some(ProjectId::new()), include_revoked: true }, all())
            .await
            .unwrap()
            .data
            .is_empty()
    );
}

pub async fn revoke_is_idempotent(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let first = store.admin.revoke_key(t, w.key.id, &actor()).await.unwrap();
    let at = first.revoked_at.unwrap();
    assert!(at >= w.key.created_at);
    let second = store.admin.revoke_key(t, w.key.id, &actor()).await.unwrap();
    assert_eq!(second, first);
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap(), first);
    let audit = store.admin.list_audit(t, all()).await.unwrap();
    assert_eq!(audit.data.iter().filter(|a| a.action == "key.revoke").count(), 1);
    assert!(store.admin.list_keys(t, KeyFilter::default(), all()).await.unwrap().data.is_empty());
}

pub async fn rotate_is_atomic(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    // A failing rotate (the new key's hash is taken) leaves the old key live and adds nothing.
    let other = world(store, "other").await;
    let clash = NewKey { hash: other.hash, ..new_key(w.project.id, w.member.id, "next") };
    assert_err!(store.admin.rotate_key(t, w.key.id, clash, &actor()).await, Conflict);
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap().revoked_at, None);
    assert_eq!(
        store
            .admin
            .list_keys(t, KeyFilter { include_revoked: true, project_id: None }, all())
            .await
            .unwrap()
            .data
            .len(),
        1
    );

    let next = new_key(w.project.id, w.member.id, "ci (rotated)");
    let next_hash = next.hash;
    let created = store.admin.rotate_key(t, w.key.id, next, &actor()).await.unwrap();
    assert_eq!(created.revoked_at, None);
    assert_eq!(created.name, "ci (rotated)");
    assert!(store.admin.get_key(t, w.key.id).await.unwrap().revoked_at.is_some());
    assert_eq!(store.admin.get_key(t, created.id).await.unwrap(), created);
    let live = store.admin.list_keys(t, KeyFilter::default(), all()).await.unwrap();
    assert_eq!(live.data.iter().map(|k| k.id).collect::<Vec<_>>(), vec![created.id]);
    let auth = store.auth.authenticate_key(&next_hash).await.unwrap().unwrap();
    assert_eq!((auth.key_id, auth.revoked_at), (created.id, None));
    assert!(store.auth.authenticate_key(&w.hash).await.unwrap().unwrap().revoked_at.is_some());
    let audit = store.admin.list_audit(t, all()).await.unwrap();
    assert_eq!(audit.data.iter().filter(|a| a.action == "key.rotate").count(), 1);
}

pub async fn rotating_a_revoked_key_conflicts_and_creates_nothing(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    store.admin.revoke_key(t, w.key.id, &actor()).await.unwrap();
    let next = new_key(w.project.id, w.member.id, "next");
    let (next_id, next_hash) = (next.id, next.hash);
    assert_err!(store.admin.rotate_key(t, w.key.id, next, &actor()).await, Conflict);
    assert_err!(store.admin.get_key(t, next_id).await, NotFound);
    assert_eq!(store.auth.authenticate_key(&next_hash).await.unwrap(), None);
    assert_eq!(
        store
            .admin
            .list_keys(t, KeyFilter { include_revoked: true, project_id: None }, all())
            .await
            .unwrap()
            .data
            .len(),
        1
    );
}

pub async fn delete_project_conflicts_while_keys_are_live(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    // An expired key still counts as live (only revocation ends a key's life).
    let expired = NewKey {
        expires_at: Some(datetime!(2001-01-01 00:00 UTC)),
        ..new_key(w.project.id, w.member.id, "old")
    };
    let expired = store.admin.create_key(t, expired, &actor()).await.unwrap();
    assert_err!(store.admin.delete_project(t, w.project.id, &actor()).await, Conflict);
    store.admin.revoke_key(t, w.key.id, &actor()).await.unwrap();
    assert_err!(store.admin.delete_project(t, w.project.id, &actor()).await, Conflict);
    store.admin.revoke_key(t, expired.id, &actor()).await.unwrap();
    store.admin.delete_project(t, w.project.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_project(t, w.project.id).await, NotFound);
}

pub async fn delete_member_revokes_its_keys(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let (second, second_hash) = key(store, t, w.project.id, w.member.id, "second").await;
    let bob = member(store, t, "bob", MemberRole::Developer).await;
    let (bobs, _) = key(store, t, w.project.id, bob.id, "bob's").await;

    store.admin.delete_member(t, w.member.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_member(t, w.member.id).await, NotFound);
    for id in [w.key.id, second.id] {
        assert!(store.admin.get_key(t, id).await.unwrap().revoked_at.is_some(), "{id} not revoked");
    }
    assert_eq!(store.admin.get_key(t, bobs.id).await.unwrap().revoked_at, None);
    let live = store.admin.list_keys(t, KeyFilter::default(), all()).await.unwrap();
    assert_eq!(live.data.iter().map(|k| k.id).collect::<Vec<_>>(), vec![bobs.id]);
    let with_revoked =
        store.admin.list_keys(t, KeyFilter { include_revoked: true, project_id: None }, all()).await.unwrap();
    assert_eq!(with_revoked.data.len(), 3);
    let auth = store.auth.authenticate_key(&second_hash).await.unwrap().unwrap();
    assert!(auth.revoked_at.is_some());
    assert_eq!(auth.role, MemberRole::Viewer);
    let audit = store.admin.list_audit(t, all()).await.unwrap();
    assert_eq!(audit.data.iter().filter(|a| a.action == "key.revoke").count(), 2);
    assert_eq!(audit.data.iter().filter(|a| a.action == "member.delete").count(), 1);
    // Bob's key is still live, so the project still cannot go.
    assert_err!(store.admin.delete_project(t, w.project.id, &actor()).await, Conflict);
}

pub async fn authenticate_key_returns_what_auth_needs(store: &Store) {
    let t = store
        .admin
        .create_tenant(
            NewTenant {
                name: "acme".into(),
                policy: TenantPolicy { byok_only: true, ..TenantPolicy::default() },
            },
            &actor(),
        )
        .await
        .unwrap();
    let p = project(store, t.id, "web").await;
    let m = member(store, t.id, "alice", MemberRole::Admin).await;
    let new = NewKey {
        scopes: vec![KeyScope::Admin, KeyScope::Inference],
        allowed_models: Some(vec!["gpt-4o".into()]),
        allowed_tags: vec!["eu".into()],
        ..new_key(p.id, m.id, "ci")
    };
    let hash = new.hash;
    let k = store.admin.create_key(t.id, new, &actor()).await.unwrap();
    let auth = store.auth.authenticate_key(&hash).await.unwrap().unwrap();
    assert_eq!((auth.key_id, auth.tenant_id, auth.project_id, auth.owner_id), (k.id, t.id, p.id, m.id));
    assert_eq!(auth.role, MemberRole::Admin);
    assert_eq!(auth.scopes, vec![KeyScope::Admin, KeyScope::Inference]);
    assert_eq!(auth.allowed_models, Some(vec!["gpt-4o".to_owned()]));
    assert_eq!(auth.allowed_tags, ["eu"]);
    assert_eq!((auth.expires_at, auth.revoked_at), (None, None));
    assert_eq!(auth.tenant_policy, TenantPolicy { byok_only: true, ..TenantPolicy::default() });
    assert_eq!(store.auth.authenticate_key(&self::hash()).await.unwrap(), None);

    // Role and policy changes show on the next lookup.
    store
        .admin
        .update_member(t.id, m.id, MemberPatch { name: None, role: Some(MemberRole::Viewer) }, &actor())
        .await
        .unwrap();
    store
        .admin
        .update_tenant(t.id, TenantPatch { name: None, policy: Some(TenantPolicy::default()) }, &actor())
        .await
        .unwrap();
    store
        .admin
        .update_key(
            t.id,
            k.id,
            KeyPatch { allowed_tags: Some(vec!["us".into()]), ..KeyPatch::default() },
            &actor(),
        )
        .await
        .unwrap();
    let auth = store.auth.authenticate_key(&hash).await.unwrap().unwrap();
    assert_eq!((auth.role, auth.tenant_policy), (MemberRole::Viewer, TenantPolicy::default()));
    assert_eq!(auth.allowed_tags, ["us"]);
}

pub async fn authenticate_key_returns_expired_and_revoked_keys(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let past = datetime!(2001-01-01 00:00 UTC);
    let expired = NewKey { expires_at: Some(past), ..new_key(w.project.id, w.member.id, "old") };
    let expired_hash = expired.hash;
    store.admin.create_key(t, expired, &actor()).await.unwrap();
    let auth = store.auth.authenticate_key(&expired_hash).await.unwrap().unwrap();
    assert_eq!(auth.expires_at, Some(past));

    let revoked = store.admin.revoke_key(t, w.key.id, &actor()).await.unwrap();
    let auth = store.auth.authenticate_key(&w.hash).await.unwrap().unwrap();
    assert_eq!(auth.revoked_at, revoked.revoked_at);
    assert_eq!(auth.role, MemberRole::Admin);
}

pub async fn touch_keys_records_last_use_and_ignores_unknown_ids(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let (other, _) = key(store, t, w.project.id, w.member.id, "other").await;
    let used = datetime!(2026-11-21 10:30:00.5 UTC);
    store.auth.touch_keys(&[(w.key.id, used), (KeyId::new(), used)]).await.unwrap();
    store.auth.touch_keys(&[]).await.unwrap();
    let touched = store.admin.get_key(t, w.key.id).await.unwrap();
    assert_eq!(touched.last_used_at, Some(used));
    // Touching is not an admin change: updated_at stays, nothing is audited.
    assert_eq!(touched.updated_at, w.key.updated_at);
    assert_eq!(store.admin.get_key(t, other.id).await.unwrap().last_used_at, None);
    let later = datetime!(2026-11-21 11:00 UTC);
    store.auth.touch_keys(&[(w.key.id, later), (other.id, later)]).await.unwrap();
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap().last_used_at, Some(later));
    assert_eq!(store.admin.get_key(t, other.id).await.unwrap().last_used_at, Some(later));
    assert!(!store.admin.list_audit(t, all()).await.unwrap().data.iter().any(|a| a.action.contains("touch")));
}

pub async fn delete_tenant_cascades(store: &Store) {
    let doomed = world(store, "doomed").await;
    let kept = world(store, "kept").await;
    let t = doomed.tenant.id;
    store.admin.delete_tenant(t, &actor()).await.unwrap();
    assert_eq!(store.auth.authenticate_key(&doomed.hash).await.unwrap(), None);
    assert_err!(store.admin.get_tenant(t).await, NotFound);
    assert_err!(store.admin.get_project(t, doomed.project.id).await, NotFound);
    assert_err!(store.admin.get_member(t, doomed.member.id).await, NotFound);
    assert_err!(store.admin.get_key(t, doomed.key.id).await, NotFound);
    assert_err!(store.admin.get_credential(t, doomed.credential.id).await, NotFound);
    assert!(store.admin.list_projects(t, all()).await.unwrap().data.is_empty());
    assert!(
        store
            .admin
            .list_keys(t, KeyFilter { include_revoked: true, project_id: None }, all())
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert!(store.admin.list_audit(t, all()).await.unwrap().data.is_empty());
    assert!(store.admin.sealed_credentials(t).await.unwrap().is_empty());
    let sealed = store.admin.all_sealed_credentials().await.unwrap();
    assert_eq!(sealed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![kept.credential.id]);
    // The other tenant is untouched.
    assert!(store.auth.authenticate_key(&kept.hash).await.unwrap().is_some());
    assert_eq!(store.admin.list_tenants(all()).await.unwrap().data.len(), 1);
    assert_eq!(store.admin.get_key(kept.tenant.id, kept.key.id).await.unwrap(), kept.key);
}

pub async fn tenant_isolation_of_records(store: &Store) {
    let a = world(store, "a").await;
    let b = world(store, "b").await;
    let (bt, act) = (b.tenant.id, actor());
    // B's tenant id with A's record ids: NotFound every time, and A's records are unchanged.
    assert_err!(store.admin.get_project(bt, a.project.id).await, NotFound);
    assert_err!(store.admin.update_project(bt, a.project.id, rename("pwned"), &act).await, NotFound);
    assert_err!(store.admin.delete_project(bt, a.project.id, &act).await, NotFound);
    assert_err!(store.admin.get_member(bt, a.member.id).await, NotFound);
    assert_err!(
        store
            .admin
            .update_member(bt, a.member.id, MemberPatch { name: None, role: Some(MemberRole::Owner) }, &act)
            .await,
        NotFound
    );
    assert_err!(store.admin.delete_member(bt, a.member.id, &act).await, NotFound);
    assert_err!(store.admin.get_key(bt, a.key.id).await, NotFound);
    assert_err!(
        store
            .admin
            .update_key(bt, a.key.id, KeyPatch { name: Some("pwned".into()), ..KeyPatch::default() }, &act)
            .await,
        NotFound
    );
    assert_err!(store.admin.revoke_key(bt, a.key.id, &act).await, NotFound);
    assert_err!(
        store.admin.rotate_key(bt, a.key.id, new_key(b.project.id, b.member.id, "n"), &act).await,
        NotFound
    );
    assert_err!(store.admin.get_credential(bt, a.credential.id).await, NotFound);
    assert_err!(store.admin.delete_credential(bt, a.credential.id, &act).await, NotFound);
    assert_err!(
        store
            .admin
            .reseal_credential(
                bt,
                a.credential.id,
                SealedSecret { key_id: "evil".into(), ciphertext: vec![0] },
                &act
            )
            .await,
        NotFound
    );

    let at = a.tenant.id;
    assert_eq!(store.admin.get_project(at, a.project.id).await.unwrap(), a.project);
    assert_eq!(store.admin.get_member(at, a.member.id).await.unwrap(), a.member);
    assert_eq!(store.admin.get_key(at, a.key.id).await.unwrap(), a.key);
    assert_eq!(store.admin.get_credential(at, a.credential.id).await.unwrap(), a.credential);
    let sealed = store.admin.sealed_credentials(at).await.unwrap();
    assert_eq!(sealed[0].sealed.as_ref().unwrap().key_id, "master-1");
}

pub async fn tenant_isolation_of_lists_and_audit(store: &Store) {
    let a = world(store, "a").await;
    let b = world(store, "b").await;
    let (at, bt) = (a.tenant.id, b.tenant.id);
    let ids = |v: Vec<Project>| v.into_iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(ids(store.admin.list_projects(bt, all()).await.unwrap().data), vec![b.project.id]);
    assert_eq!(
        store.admin.list_members(bt, all()).await.unwrap().data.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![b.member.id]
    );
    // Filtering B's keys by A's project finds nothing.
    let filter = KeyFilter { project_id: Some(a.project.id), include_revoked: true };
    assert!(store.admin.list_keys(bt, filter, all()).await.unwrap().data.is_empty());
    assert_eq!(
        store
            .admin
            .list_keys(bt, KeyFilter { include_revoked: true, project_id: None }, all())
            .await
            .unwrap()
            .data
            .iter()
            .map(|k| k.id)
            .collect::<Vec<_>>(),
        vec![b.key.id]
    );
    assert_eq!(
        store.admin.list_credentials(bt, all()).await.unwrap().data.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![b.credential.id]
    );
    assert_eq!(
        store.admin.sealed_credentials(bt).await.unwrap().iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![b.credential.id]
    );
    let audit_b = store.admin.list_audit(bt, all()).await.unwrap();
    assert!(!audit_b.data.is_empty());
    assert!(audit_b.data.iter().all(|r| r.tenant_id == bt), "{audit_b:?}");
    let audit_a = store.admin.list_audit(at, all()).await.unwrap();
    assert!(audit_a.data.iter().all(|r| r.tenant_id == at));
    assert_eq!(audit_a.data.len(), audit_b.data.len());
    // A cursor taken from A's audit does not reveal A's records to B.
    let cursor = PageRequest { limit: 100, after: audit_a.data.first().map(|r| r.id.0) };
    assert!(store.admin.list_audit(bt, cursor).await.unwrap().data.iter().all(|r| r.tenant_id == bt));
}

pub async fn credential_crud_round_trip(store: &Store) {
    let t = tenant(store, "acme").await;
    let new = new_credential("anthropic", "prod");
    let id = new.id;
    let c = store.admin.create_credential(t.id, new, &actor()).await.unwrap();
    assert_eq!(c.id, id);
    assert_eq!(
        (c.tenant_id, c.provider.as_str(), c.name.as_str(), c.masked.as_str()),
        (t.id, "anthropic", "prod", "...x9Qz")
    );
    assert_eq!(c.sealed, None);
    assert_eq!(store.admin.get_credential(t.id, c.id).await.unwrap(), c);
    let listed = store.admin.list_credentials(t.id, all()).await.unwrap();
    assert_eq!(listed.data, vec![c.clone()]);
    assert!(listed.data.iter().all(|c| c.sealed.is_none()));
    let sealed = store.admin.sealed_credentials(t.id).await.unwrap();
    assert_eq!(
        sealed[0].sealed,
        Some(SealedSecret { key_id: "master-1".into(), ciphertext: vec![1, 2, 3, 4, 5] })
    );
    assert_eq!(ProviderCredential { sealed: None, ..sealed[0].clone() }, c);
    let everything = store.admin.all_sealed_credentials().await.unwrap();
    assert_eq!(everything.len(), 1);
    assert_eq!(
        (everything[0].tenant_id, everything[0].id, everything[0].provider.as_str()),
        (t.id, c.id, "anthropic")
    );
    assert_eq!(everything[0].sealed.ciphertext, vec![1, 2, 3, 4, 5]);

    // Names are unique per tenant; a duplicate id is a conflict too.
    assert_err!(
        store.admin.create_credential(t.id, new_credential("openai", "prod"), &actor()).await,
        Conflict
    );
    let dup_id = NewCredential { id: c.id, ..new_credential("openai", "other") };
    assert_err!(store.admin.create_credential(t.id, dup_id, &actor()).await, Conflict);
    let u = tenant(store, "other").await;
    store.admin.create_credential(u.id, new_credential("openai", "prod"), &actor()).await.unwrap();

    store.admin.delete_credential(t.id, c.id, &actor()).await.unwrap();
    assert_err!(store.admin.get_credential(t.id, c.id).await, NotFound);
    assert_err!(store.admin.delete_credential(t.id, c.id, &actor()).await, NotFound);
    assert!(store.admin.sealed_credentials(t.id).await.unwrap().is_empty());
}

pub async fn credential_inputs_are_validated(store: &Store) {
    let t = tenant(store, "acme").await;
    let cases = [
        new_credential("OpenAI", "c"),
        new_credential("", "c"),
        new_credential("open ai", "c"),
        new_credential("'; DROP TABLE x; --", "c"),
        new_credential(&"a".repeat(65), "c"),
        new_credential("openai", ""),
        new_credential("openai", &"n".repeat(201)),
        NewCredential {
            sealed: SealedSecret { key_id: "k".into(), ciphertext: vec![] },
            ..new_credential("openai", "c")
        },
        NewCredential {
            sealed: SealedSecret { key_id: String::new(), ciphertext: vec![1] },
            ..new_credential("openai", "c")
        },
    ];
    for new in cases {
        let shown = format!("{:?}/{:?}", new.provider, new.name);
        let r = store.admin.create_credential(t.id, new, &actor()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{shown}: {r:?}");
    }
    assert!(store.admin.list_credentials(t.id, all()).await.unwrap().data.is_empty());
    store.admin.create_credential(t.id, new_credential(&"a".repeat(64), "ok"), &actor()).await.unwrap();
    store.admin.create_credential(t.id, new_credential("my-vllm_2", "ok2"), &actor()).await.unwrap();
}

pub async fn credentials_paginate(store: &Store) {
    let t = tenant(store, "acme").await;
    let mut made = Vec::new();
    for i in 0..7 {
        made.push(
            store
                .admin
                .create_credential(t.id, new_credential("openai", &format!("c{i}")), &actor())
                .await
                .unwrap()
                .id,
        );
    }
    let p1 = store.admin.list_credentials(t.id, page(3)).await.unwrap();
    let p2 = store.admin.list_credentials(t.id, PageRequest { limit: 3, after: p1.next }).await.unwrap();
    let p3 = store.admin.list_credentials(t.id, PageRequest { limit: 3, after: p2.next }).await.unwrap();
    assert_eq!((p1.data.len(), p2.data.len(), p3.data.len()), (3, 3, 1));
    assert_eq!(p3.next, None);
    let seen: Vec<_> = p1.data.iter().chain(&p2.data).chain(&p3.data).map(|c| c.id).collect();
    assert_eq!(seen, made);
}

pub async fn reseal_replaces_the_ciphertext(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let fresh = SealedSecret { key_id: "master-2".into(), ciphertext: vec![9; 60] };
    store.admin.reseal_credential(t, w.credential.id, fresh.clone(), &actor()).await.unwrap();
    let sealed = store.admin.sealed_credentials(t).await.unwrap();
    assert_eq!(sealed[0].sealed, Some(fresh.clone()));
    let all_sealed = store.admin.all_sealed_credentials().await.unwrap();
    assert_eq!(all_sealed[0].sealed, fresh);
    let got = store.admin.get_credential(t, w.credential.id).await.unwrap();
    assert_eq!((got.name, got.masked, got.sealed), (w.credential.name, w.credential.masked, None));
    assert_err!(
        store
            .admin
            .reseal_credential(
                t,
                w.credential.id,
                SealedSecret { key_id: "k".into(), ciphertext: vec![] },
                &actor()
            )
            .await,
        Invalid
    );
    let audit = store.admin.list_audit(t, page(1)).await.unwrap();
    assert_eq!(audit.data[0].action, "credential.reseal");
}

pub async fn audit_records_every_change(store: &Store) {
    let who = key_actor();
    let t = store
        .admin
        .create_tenant(NewTenant { name: "acme".into(), policy: TenantPolicy::default() }, &who)
        .await
        .unwrap();
    let tid = t.id;
    store
        .admin
        .update_tenant(tid, TenantPatch { name: Some("acme2".into()), policy: None }, &who)
        .await
        .unwrap();
    let p = store.admin.create_project(tid, new_project("web"), &who).await.unwrap();
    store.admin.update_project(tid, p.id, rename("site"), &who).await.unwrap();
    let m = store
        .admin
        .create_member(tid, NewMember { name: "al".into(), role: MemberRole::Admin }, &who)
        .await
        .unwrap();
    store
        .admin
        .update_member(tid, m.id, MemberPatch { name: None, role: Some(MemberRole::Owner) }, &who)
        .await
        .unwrap();
    let k = store.admin.create_key(tid, new_key(p.id, m.id, "ci"), &who).await.unwrap();
    store
        .admin
        .update_key(tid, k.id, KeyPatch { name: Some("cd".into()), ..KeyPatch::default() }, &who)
        .await
        .unwrap();
    let k2 = store.admin.rotate_key(tid, k.id, new_key(p.id, m.id, "ci2"), &who).await.unwrap();
    store.admin.revoke_key(tid, k2.id, &who).await.unwrap();
    let c = store.admin.create_credential(tid, new_credential("openai", "main"), &who).await.unwrap();
    store
        .admin
        .reseal_credential(tid, c.id, SealedSecret { key_id: "m2".into(), ciphertext: vec![7] }, &who)
        .await
        .unwrap();
    store.admin.delete_credential(tid, c.id, &who).await.unwrap();
    let p2 = store.admin.create_project(tid, new_project("tmp"), &who).await.unwrap();
    store.admin.delete_project(tid, p2.id, &who).await.unwrap();
    let m2 = store
        .admin
        .create_member(tid, NewMember { name: "bo".into(), role: MemberRole::Viewer }, &who)
        .await
        .unwrap();
    store.admin.delete_member(tid, m2.id, &who).await.unwrap();

    let audit = store.admin.list_audit(tid, all()).await.unwrap();
    assert_eq!(audit.next, None);
    let mut actions: Vec<_> = audit.data.iter().map(|a| a.action.as_str()).collect();
    actions.reverse();
    assert_eq!(
        actions,
        vec![
            "tenant.create",
            "tenant.update",
            "project.create",
            "project.update",
            "member.create",
            "member.update",
            "key.create",
            "key.update",
            "key.rotate",
            "key.revoke",
            "credential.create",
            "credential.reseal",
            "credential.delete",
            "project.create",
            "project.delete",
            "member.create",
            "member.delete",
        ]
    );
    for record in &audit.data {
        assert_eq!(record.actor, who);
        assert_eq!(record.tenant_id, tid);
        let kind = record.action.split('.').next().unwrap();
        assert_eq!(record.resource_type, kind, "{}", record.action);
        // Nothing secret in any record.
        let text = serde_json::to_string(record).unwrap();
        assert!(
            !text.contains("ciphertext") && !text.contains("\"hash\"") && !text.contains("sealed"),
            "{text}"
        );
    }
    // Newest first, strictly.
    assert!(audit.data.windows(2).all(|w| w[0].id > w[1].id && w[0].at >= w[1].at));

    let by_action = |action: &str| audit.data.iter().find(|a| a.action == action).unwrap().clone();
    let created = by_action("tenant.create");
    assert_eq!((created.resource_id, created.before), (tid.to_string(), None));
    assert_eq!(created.after.unwrap()["name"], "acme");
    let updated = by_action("tenant.update");
    assert_eq!(updated.before.unwrap()["name"], "acme");
    assert_eq!(updated.after.unwrap()["name"], "acme2");
    let key_update = by_action("key.update");
    assert_eq!(key_update.resource_id, k.id.to_string());
    assert_eq!(key_update.before.unwrap()["name"], "ci");
    assert_eq!(key_update.after.unwrap()["name"], "cd");
    let revoke = by_action("key.revoke");
    assert_eq!(revoke.resource_id, k2.id.to_string());
    assert!(revoke.before.unwrap()["revoked_at"].is_null());
    assert!(revoke.after.unwrap()["revoked_at"].is_string());
    let rotate = by_action("key.rotate");
    assert_eq!(rotate.resource_id, k.id.to_string());
    let member_update = by_action("member.update");
    assert_eq!(member_update.after.unwrap()["role"], "owner");
    let deleted = by_action("credential.delete");
    assert_eq!((deleted.resource_type.as_str(), deleted.after), ("credential", None));
    assert_eq!(deleted.before.unwrap()["name"], "main");
    let project_delete = by_action("project.delete");
    assert_eq!((project_delete.resource_id, project_delete.after), (p2.id.to_string(), None));
}

pub async fn recorded_actions_join_the_audit_trail(store: &Store) {
    let t = tenant(store, "acme").await;
    let details = serde_json::json!({"model": "gpt", "purged": 3});
    store
        .admin
        .record_action(t.id, &actor(), "cache.purge", &t.id.to_string(), details.clone())
        .await
        .unwrap();
    let newest = &store.admin.list_audit(t.id, all()).await.unwrap().data[0];
    assert_eq!((newest.action.as_str(), newest.resource_type.as_str()), ("cache.purge", "cache"));
    assert_eq!((newest.before.as_ref(), newest.after.as_ref()), (None, Some(&details)));
    assert_eq!(newest.resource_id, t.id.to_string());
    let missing = TenantId::new();
    assert_err!(store.admin.record_action(missing, &actor(), "cache.purge", "x", details).await, NotFound);
}

pub async fn audit_paginates_newest_first(store: &Store) {
    let t = tenant(store, "acme").await; // record 1
    for i in 0..6 {
        project(store, t.id, &format!("p{i}")).await; // records 2..=7
    }
    let p1 = store.admin.list_audit(t.id, page(3)).await.unwrap();
    let p2 = store.admin.list_audit(t.id, PageRequest { limit: 3, after: p1.next }).await.unwrap();
    let p3 = store.admin.list_audit(t.id, PageRequest { limit: 3, after: p2.next }).await.unwrap();
    assert_eq!((p1.data.len(), p2.data.len(), p3.data.len()), (3, 3, 1));
    assert_eq!(p3.next, None);
    let all: Vec<_> = p1.data.iter().chain(&p2.data).chain(&p3.data).collect();
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[0].after.as_ref().unwrap()["name"], "p5");
    assert_eq!(all[6].action, "tenant.create");
}

pub async fn change_feed_tenant_and_members(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let mut feed = subscribe(store).await;
    store
        .admin
        .update_tenant(
            t,
            TenantPatch {
                name: None,
                policy: Some(TenantPolicy { byok_only: true, ..TenantPolicy::default() }),
            },
            &actor(),
        )
        .await
        .unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    store
        .admin
        .update_member(t, w.member.id, MemberPatch { name: None, role: Some(MemberRole::Viewer) }, &actor())
        .await
        .unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    store.admin.delete_member(t, w.member.id, &actor()).await.unwrap();
    expect_change(&mut feed, Change::Key(w.key.id)).await;
    expect_change(&mut feed, Change::Tenant(t)).await;
    store.admin.delete_tenant(t, &actor()).await.unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
}

pub async fn change_feed_keys(store: &Store) {
    let w = world(store, "acme").await;
    let t = w.tenant.id;
    let mut feed = subscribe(store).await;
    store
        .admin
        .update_key(t, w.key.id, KeyPatch { name: Some("renamed".into()), ..KeyPatch::default() }, &actor())
        .await
        .unwrap();
    expect_change(&mut feed, Change::Key(w.key.id)).await;
    let next = store
        .admin
        .rotate_key(t, w.key.id, new_key(w.project.id, w.member.id, "next"), &actor())
        .await
        .unwrap();
    expect_change(&mut feed, Change::Key(w.key.id)).await;
    store.admin.revoke_key(t, next.id, &actor()).await.unwrap();
    expect_change(&mut feed, Change::Key(next.id)).await;
}

pub async fn change_feed_credentials(store: &Store) {
    let t = tenant(store, "acme").await;
    let mut feed = subscribe(store).await;
    let c = store.admin.create_credential(t.id, new_credential("openai", "main"), &actor()).await.unwrap();
    expect_change(&mut feed, Change::Credentials(t.id)).await;
    store
        .admin
        .reseal_credential(t.id, c.id, SealedSecret { key_id: "m2".into(), ciphertext: vec![1] }, &actor())
        .await
        .unwrap();
    expect_change(&mut feed, Change::Credentials(t.id)).await;
    store.admin.delete_credential(t.id, c.id, &actor()).await.unwrap();
    expect_change(&mut feed, Change::Credentials(t.id)).await;
    // Every subscriber gets every change.
    let mut second = subscribe(store).await;
    store.admin.create_credential(t.id, new_credential("openai", "again"), &actor()).await.unwrap();
    expect_change(&mut feed, Change::Credentials(t.id)).await;
    expect_change(&mut second, Change::Credentials(t.id)).await;
}

// === usage ===

fn usage(tenant: Option<TenantId>, n: u64) -> tollgate_types::ports::usage::UsageRecord {
    use tollgate_types::ports::usage::{TokenSource, UsageRecord};
    let mut metadata = JsonMap::new();
    metadata.insert("team".into(), serde_json::json!("search"));
    UsageRecord {
        id: Uuid::now_v7(),
        request_id: format!("req-{n}"),
        at: datetime!(2026-11-21 12:34:56.123456 UTC),
        tenant_id: tenant,
        project_id: Some(ProjectId::new()),
        key_id: Some(KeyId::new()),
        endpoint: "chat".into(),
        model: "gpt-4o-mini".into(),
        provider: Some("openai".into()),
        deployment: Some("openai/gpt-4o-mini".into()),
        status: if n.is_multiple_of(2) { 200 } else { 502 },
        error_code: (!n.is_multiple_of(2)).then(|| "upstream_unavailable".into()),
        input_tokens: 100 + n,
        output_tokens: 20,
        cached_input_tokens: 64,
        reasoning_tokens: 3,
        token_source: if n == 0 { TokenSource::Partial } else { TokenSource::Provider },
        cost_nanodollars: Some(123_456_789),
        price_id: Some("openai/gpt-4o-mini@2024-07-18".into()),
        latency_ms: 850,
        ttft_ms: Some(120),
        // Every cache outcome, and a saving on the hits only (as the pipeline records them).
        cache_status: match n % 4 {
            // Every other hit was matched by meaning.
            0 if n % 8 == 4 => Some("semantic-hit".into()),
            0 => Some("hit".into()),
            1 => Some("miss".into()),
            2 => Some("bypass".into()),
            _ => None,
        },
        cost_saved_nanodollars: n.is_multiple_of(4).then_some(1_000 + n),
        user: Some("user-7".into()),
        metadata,
        // Every shape of the routing fields: a fallback alias served (after retries), the
        // requested alias served, nothing served (refused before any attempt); hedged set
        // once so the column round-trips both values.
        served_model: match n % 3 {
            1 => Some("gpt-4o".into()),
            _ => None,
        },
        attempts: match n % 3 {
            0 => 0,
            1 => 2 + u32::try_from(n).unwrap(),
            _ => 1,
        },
        hedged: n == 5,
    }
}

pub async fn usage_records_round_trip_and_paginate(store: &Store) {
    let t = tenant(store, "usage-a").await;
    let records: Vec<_> = (0..7).map(|n| usage(Some(t.id), n)).collect();
    store.usage.insert_usage(&records[..4]).await.unwrap();
    store.usage.insert_usage(&records[4..]).await.unwrap();
    store.usage.insert_usage(&[]).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.usage.list_usage(t.id, PageRequest { limit: 3, after }).await.unwrap();
        assert!(page.data.len() <= 3);
        seen.extend(page.data);
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, records, "every field survives the round trip, in creation order");
}

pub async fn usage_records_are_tenant_scoped(store: &Store) {
    let (a, b) = (tenant(store, "usage-b1").await, tenant(store, "usage-b2").await);
    // One batch with both tenants' records and a super-admin call's (no tenant).
    let batch = vec![usage(Some(a.id), 1), usage(Some(b.id), 2), usage(None, 3), usage(Some(a.id), 4)];
    store.usage.insert_usage(&batch).await.unwrap();
    let of_a = store.usage.list_usage(a.id, PageRequest::first(100)).await.unwrap();
    assert_eq!(of_a.data.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["req-1", "req-4"]);
    let of_b = store.usage.list_usage(b.id, PageRequest::first(100)).await.unwrap();
    assert_eq!(of_b.data.len(), 1);
    assert_eq!(of_b.data[0].tenant_id, Some(b.id));
    // A deleted tenant's records stay (bills outlive tenants) but nobody else sees them.
    store.admin.delete_tenant(a.id, &actor()).await.unwrap();
    assert_eq!(store.usage.list_usage(b.id, PageRequest::first(100)).await.unwrap().data.len(), 1);
}

/// Every visible record's request id, over all pages.
async fn usage_ids(store: &Store, tenant: TenantId) -> Vec<String> {
    let page = store.usage.list_usage(tenant, PageRequest::first(100)).await.unwrap();
    assert!(page.next.is_none());
    page.data.into_iter().map(|r| r.request_id).collect()
}

pub async fn usage_retention_removes_only_older_records_of_every_tenant(store: &Store) {
    use time::Duration as D;
    let (a, b) = (tenant(store, "retention-a").await, tenant(store, "retention-b").await);
    let now = time::OffsetDateTime::now_utc();
    let cutoff = now - D::days(30);
    let at = |tenant: Option<TenantId>, n: u64, at: time::OffsetDateTime| {
        tollgate_types::ports::usage::UsageRecord { at, ..usage(tenant, n) }
    };
    // Older than the cutoff: 400 days (PostgreSQL: the DEFAULT partition, or a dropped one), 40
    // days, and just before it. Newer: just after it, 10 days, now. Tenants a, b and none
    // (the bootstrap key's requests).
    let batch = vec![
        at(Some(a.id), 1, now - D::days(400)),
        at(Some(b.id), 2, now - D::days(400)),
        at(None, 3, now - D::days(400)),
        at(Some(a.id), 4, now - D::days(40)),
        at(Some(b.id), 5, cutoff - D::minutes(1)),
        at(Some(a.id), 6, cutoff + D::minutes(1)),
        at(Some(b.id), 7, now - D::days(10)),
        at(Some(a.id), 8, now - D::days(10)),
        at(Some(b.id), 9, now),
        at(None, 10, now),
    ];
    store.usage.insert_usage(&batch).await.unwrap();

    let report = store.usage.enforce_retention(cutoff).await.unwrap();
    assert_eq!(report.deleted_rows, 5, "{report:?}");
    assert_eq!(usage_ids(store, a.id).await, ["req-6", "req-8"]);
    assert_eq!(usage_ids(store, b.id).await, ["req-7", "req-9"]);

    // Nothing left to remove: a second run is a no-op, and so is preparing storage.
    store.usage.prepare_usage_storage(now).await.unwrap();
    let again = store.usage.enforce_retention(cutoff).await.unwrap();
    assert_eq!(again, tollgate_types::ports::usage::RetentionReport::default());
    assert_eq!(usage_ids(store, a.id).await, ["req-6", "req-8"]);
    assert_eq!(usage_ids(store, b.id).await, ["req-7", "req-9"]);

    // A deleted tenant's records go with everyone else's once they are old enough.
    store.admin.delete_tenant(a.id, &actor()).await.unwrap();
    let report = store.usage.enforce_retention(now - D::days(5)).await.unwrap();
    assert_eq!(report.deleted_rows, 3, "{report:?}");
    assert_eq!(usage_ids(store, b.id).await, ["req-9"]);
}

pub async fn usage_retention_refuses_a_recent_cutoff(store: &Store) {
    let t = tenant(store, "retention-guard").await;
    let now = time::OffsetDateTime::now_utc();
    let record = tollgate_types::ports::usage::UsageRecord {
        at: now - time::Duration::hours(2),
        ..usage(Some(t.id), 1)
    };
    store.usage.insert_usage(&[record]).await.unwrap();
    for cutoff in [now, now - time::Duration::hours(1), now + time::Duration::days(365)] {
        assert_err!(store.usage.enforce_retention(cutoff).await, Invalid);
    }
    assert_eq!(usage_ids(store, t.id).await, ["req-1"]);
}

// === limits and pricing ===

/// A policy using every field, distinct per `rpm`.
fn limit_policy(rpm: u64) -> LimitPolicy {
    LimitPolicy {
        rate: RateLimits { rpm: Some(rpm), tpm: Some(10_000), max_concurrent: Some(4) },
        models: [("gpt-4o".to_owned(), RateLimits { rpm: Some(5), ..RateLimits::default() })].into(),
        budgets: vec![
            BudgetSpec {
                period: BudgetPeriod::Month,
                limit_usd: Usd::parse("100.5").unwrap(),
                alert_at_percent: Some(vec![50, 80, 100]),
            },
            BudgetSpec {
                period: BudgetPeriod::Day,
                limit_usd: Usd::from_nanodollars(1),
                alert_at_percent: None,
            },
        ],
    }
}

fn pricing_policy() -> PricingPolicy {
    PricingPolicy {
        markup_bps: 1_500,
        prices: vec![PriceEntry {
            id: Some("acme/gpt-4o".into()),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            effective_from: "2025-01-01".into(),
            input: PriceAmount::Text("1.25".into()),
            output: Some(PriceAmount::Text("5".into())),
            cached_input: None,
            cache_write: None,
            reasoning: None,
            source: Some("contract 2025".into()),
        }],
    }
}

pub async fn limits_and_pricing_round_trip(store: &Store) {
    let w = world(store, "acme").await;
    let (t, a) = (w.tenant.id, actor());
    assert_eq!((&w.tenant.limits, &w.tenant.pricing), (&LimitPolicy::default(), &PricingPolicy::default()));
    assert_eq!((&w.project.limits, &w.key.limits), (&LimitPolicy::default(), &LimitPolicy::default()));

    let set = store.admin.set_tenant_limits(t, limit_policy(100), &a).await.unwrap();
    assert_eq!((set.limits.clone(), set.name.as_str()), (limit_policy(100), "acme"));
    let set = store.admin.set_tenant_pricing(t, pricing_policy(), &a).await.unwrap();
    assert_eq!((set.limits.clone(), set.pricing.clone()), (limit_policy(100), pricing_policy()));
    let read = store.admin.get_tenant(t).await.unwrap();
    assert_eq!(read, set);
    assert_eq!(store.admin.list_tenants(all()).await.unwrap().data, vec![read]);

    let p = store.admin.set_project_limits(t, w.project.id, limit_policy(50), &a).await.unwrap();
    assert_eq!((p.limits.clone(), p.name.as_str()), (limit_policy(50), "default"));
    assert_eq!(store.admin.get_project(t, w.project.id).await.unwrap(), p);
    assert_eq!(store.admin.list_projects(t, all()).await.unwrap().data, vec![p]);

    let k = store.admin.set_key_limits(t, w.key.id, limit_policy(10), &a).await.unwrap();
    assert_eq!((k.limits.clone(), k.name.as_str()), (limit_policy(10), "ci"));
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap(), k);
    assert_eq!(store.admin.list_keys(t, KeyFilter::default(), all()).await.unwrap().data, vec![k.clone()]);
    // Other changes keep the limits.
    let renamed = store
        .admin
        .update_key(t, w.key.id, KeyPatch { name: Some("cd".into()), ..KeyPatch::default() }, &a)
        .await
        .unwrap();
    assert_eq!(renamed.limits, limit_policy(10));
    let renamed = store
        .admin
        .update_tenant(t, TenantPatch { name: Some("acme2".into()), policy: None }, &a)
        .await
        .unwrap();
    assert_eq!((renamed.limits, renamed.pricing), (limit_policy(100), pricing_policy()));

    // An empty policy clears.
    store.admin.set_tenant_limits(t, LimitPolicy::default(), &a).await.unwrap();
    store.admin.set_tenant_pricing(t, PricingPolicy::default(), &a).await.unwrap();
    store.admin.set_project_limits(t, w.project.id, LimitPolicy::default(), &a).await.unwrap();
    store.admin.set_key_limits(t, w.key.id, LimitPolicy::default(), &a).await.unwrap();
    let tenant = store.admin.get_tenant(t).await.unwrap();
    assert_eq!((tenant.limits, tenant.pricing), (LimitPolicy::default(), PricingPolicy::default()));
    assert_eq!(store.admin.get_project(t, w.project.id).await.unwrap().limits, LimitPolicy::default());
    assert_eq!(store.admin.get_key(t, w.key.id).await.unwrap().limits, LimitPolicy::default());
}

pub async fn limits_can_be_given_at_creation(store: &Store) {
    let t = tenant(store, "acme").await;
    let a = actor();
    let p = store
        .admin
        .create_project(
            t.id,
            NewProject { name: "web".into(), limits: Some(limit_policy(7)), cache: CacheRule::default() },
            &a,
        )
        .await
        .unwrap();
    assert_eq!(p.limits, limit_policy(7));
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap(), p);
    let m = member(store, t.id, "alice", MemberRole::Admin).await;
    let new = NewKey { limits: Some(limit_policy(3)), ..new_key(p.id, m.id, "ci") };
    let hash = new.hash;
    let k = store.admin.create_key(t.id, new, &a).await.unwrap();
    assert_eq!(k.limits, limit_policy(3));
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap(), k);
    let auth = store.auth.authenticate_key(&hash).await.unwrap().unwrap();
    assert_eq!((auth.key_limits, auth.project_limits), (limit_policy(3), limit_policy(7)));
    // The creation's audit record shows them.
    let audit = store.admin.list_audit(t.id, page(1)).await.unwrap();
    assert_eq!(audit.data[0].action, "key.create");
    assert_eq!(audit.data[0].after.as_ref().unwrap()["limits"]["rate"]["rpm"], 3);
    // A rotation given the old key's limits keeps them.
    let next = store.admin.rotate_key(
        t.id,
        k.id,
        NewKey { limits: Some(k.limits.clone()), ..new_key(p.id, m.id, "ci") },
        &a,
    );
    assert_eq!(next.await.unwrap().limits, limit_policy(3));
}

pub async fn limits_changes_are_audited(store: &Store) {
    let w = world(store, "acme").await;
    let (t, who) = (w.tenant.id, key_actor());
    store.admin.set_tenant_limits(t, limit_policy(100), &who).await.unwrap();
    store.admin.set_tenant_pricing(t, pricing_policy(), &who).await.unwrap();
    store.admin.set_project_limits(t, w.project.id, limit_policy(50), &who).await.unwrap();
    store.admin.set_key_limits(t, w.key.id, limit_policy(10), &who).await.unwrap();
    store.admin.set_key_limits(t, w.key.id, LimitPolicy::default(), &who).await.unwrap();

    let audit = store.admin.list_audit(t, page(5)).await.unwrap().data;
    let summary: Vec<(&str, &str, String)> =
        audit.iter().map(|r| (r.action.as_str(), r.resource_type.as_str(), r.resource_id.clone())).collect();
    assert_eq!(
        summary,
        vec![
            ("key.limits", "key", w.key.id.to_string()),
            ("key.limits", "key", w.key.id.to_string()),
            ("project.limits", "project", w.project.id.to_string()),
            ("tenant.pricing", "tenant", t.to_string()),
            ("tenant.limits", "tenant", t.to_string()),
        ]
    );
    assert!(audit.iter().all(|r| r.actor == who && r.tenant_id == t));
    let json = |v: &LimitPolicy| serde_json::to_value(v).unwrap();
    // Before and after are the policies themselves.
    assert_eq!(audit[0].before, Some(json(&limit_policy(10))));
    assert_eq!(audit[0].after, Some(serde_json::json!({})));
    assert_eq!(audit[1].before, Some(serde_json::json!({})));
    assert_eq!(audit[1].after, Some(json(&limit_policy(10))));
    assert_eq!(audit[2].after, Some(json(&limit_policy(50))));
    assert_eq!(audit[3].after, Some(serde_json::to_value(pricing_policy()).unwrap()));
    assert_eq!(audit[3].after.as_ref().unwrap()["prices"][0]["input"], "1.25");
    assert_eq!(audit[4].after, Some(json(&limit_policy(100))));
    assert_eq!(audit[4].after.as_ref().unwrap()["budgets"][0]["limit_usd"], "100.5");
}

pub async fn authenticate_key_returns_limits_and_pricing(store: &Store) {
    let w = world(store, "acme").await;
    let other = world(store, "other").await;
    let (t, a) = (w.tenant.id, actor());
    let auth = store.auth.authenticate_key(&w.hash).await.unwrap().unwrap();
    assert_eq!(
        (auth.key_limits, auth.project_limits, auth.tenant_limits, auth.tenant_pricing),
        (LimitPolicy::default(), LimitPolicy::default(), LimitPolicy::default(), PricingPolicy::default())
    );
    store.admin.set_tenant_limits(t, limit_policy(100), &a).await.unwrap();
    store.admin.set_tenant_pricing(t, pricing_policy(), &a).await.unwrap();
    store.admin.set_project_limits(t, w.project.id, limit_policy(50), &a).await.unwrap();
    store.admin.set_key_limits(t, w.key.id, limit_policy(10), &a).await.unwrap();
    let auth = store.auth.authenticate_key(&w.hash).await.unwrap().unwrap();
    assert_eq!(auth.key_limits, limit_policy(10));
    assert_eq!(auth.project_limits, limit_policy(50));
    assert_eq!(auth.tenant_limits, limit_policy(100));
    assert_eq!(auth.tenant_pricing, pricing_policy());
    // Another tenant's key carries its own (empty) policies.
    let theirs = store.auth.authenticate_key(&other.hash).await.unwrap().unwrap();
    assert_eq!(
        (theirs.key_limits, theirs.project_limits, theirs.tenant_limits, theirs.tenant_pricing),
        (LimitPolicy::default(), LimitPolicy::default(), LimitPolicy::default(), PricingPolicy::default())
    );
}

pub async fn change_feed_limits(store: &Store) {
    let w = world(store, "acme").await;
    let (t, a) = (w.tenant.id, actor());
    let mut feed = subscribe(store).await;
    store.admin.set_tenant_limits(t, limit_policy(1), &a).await.unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    store.admin.set_tenant_pricing(t, pricing_policy(), &a).await.unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    store.admin.set_project_limits(t, w.project.id, limit_policy(1), &a).await.unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    store.admin.set_key_limits(t, w.key.id, limit_policy(1), &a).await.unwrap();
    expect_change(&mut feed, Change::Key(w.key.id)).await;
}

pub async fn limits_of_another_tenant_are_not_found(store: &Store) {
    let a = world(store, "a").await;
    let b = world(store, "b").await;
    let (bt, act) = (b.tenant.id, actor());
    assert_err!(store.admin.set_project_limits(bt, a.project.id, limit_policy(1), &act).await, NotFound);
    assert_err!(store.admin.set_key_limits(bt, a.key.id, limit_policy(1), &act).await, NotFound);
    let ghost = TenantId::new();
    assert_err!(store.admin.set_tenant_limits(ghost, limit_policy(1), &act).await, NotFound);
    assert_err!(store.admin.set_tenant_pricing(ghost, pricing_policy(), &act).await, NotFound);
    assert_err!(store.admin.set_project_limits(bt, ProjectId::new(), limit_policy(1), &act).await, NotFound);
    assert_err!(store.admin.set_key_limits(bt, KeyId::new(), limit_policy(1), &act).await, NotFound);
    // A's records are unchanged, and nothing was audited in A.
    let at = a.tenant.id;
    assert_eq!(store.admin.get_project(at, a.project.id).await.unwrap(), a.project);
    assert_eq!(store.admin.get_key(at, a.key.id).await.unwrap(), a.key);
    let audit = store.admin.list_audit(at, all()).await.unwrap().data;
    assert!(audit.iter().all(|r| !r.action.ends_with(".limits")), "{audit:?}");
    // Nor in B: a refused change leaves no record.
    let audit = store.admin.list_audit(bt, all()).await.unwrap().data;
    assert!(audit.iter().all(|r| !r.action.ends_with(".limits")), "{audit:?}");
}

// === cache rules ===

fn cache_rule(ttl_seconds: u64) -> CacheRule {
    CacheRule {
        mode: Some(CacheRuleMode::On),
        allow: Some(CacheAllow::ReadOnly),
        ttl_seconds: Some(ttl_seconds),
        semantic: Some(true),
    }
}

pub async fn cache_rules_round_trip(store: &Store) {
    let t = tenant(store, "acme").await;
    let a = actor();
    let plain = project(store, t.id, "plain").await;
    assert!(plain.cache.is_empty(), "no rule unless one is given");
    let p = store
        .admin
        .create_project(t.id, NewProject { name: "web".into(), limits: None, cache: cache_rule(60) }, &a)
        .await
        .unwrap();
    assert_eq!(p.cache, cache_rule(60));
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap(), p);
    assert_eq!(store.admin.list_projects(t.id, all()).await.unwrap().data, vec![plain, p.clone()]);

    // A rename keeps the rule; a new rule replaces the old one whole.
    let patch = rename("site");
    let renamed = store.admin.update_project(t.id, p.id, patch, &a).await.unwrap();
    assert_eq!((renamed.name.as_str(), renamed.cache), ("site", cache_rule(60)));
    let closed = CacheRule { allow: Some(CacheAllow::None), ..CacheRule::default() };
    let patch = ProjectPatch { name: None, cache: Some(closed) };
    let replaced = store.admin.update_project(t.id, p.id, patch, &a).await.unwrap();
    assert_eq!((replaced.name.as_str(), replaced.cache), ("site", closed));
    assert_eq!(store.admin.get_project(t.id, p.id).await.unwrap(), replaced);
    // Limits changes keep it.
    let limited = store.admin.set_project_limits(t.id, p.id, limit_policy(5), &a).await.unwrap();
    assert_eq!(limited.cache, closed);

    let m = member(store, t.id, "alice", MemberRole::Admin).await;
    let key_rule = CacheRule { mode: Some(CacheRuleMode::WriteOnly), ..CacheRule::default() };
    let new = NewKey { cache: key_rule, ..new_key(p.id, m.id, "ci") };
    let hash = new.hash;
    let k = store.admin.create_key(t.id, new, &a).await.unwrap();
    assert_eq!(k.cache, key_rule);
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap(), k);
    assert_eq!(store.admin.list_keys(t.id, KeyFilter::default(), all()).await.unwrap().data, vec![k.clone()]);
    let auth = store.auth.authenticate_key(&hash).await.unwrap().unwrap();
    assert_eq!((auth.key_cache, auth.project_cache), (key_rule, closed));
    assert!(auth.tenant_policy.cache.is_empty());

    // Other changes keep the key's rule; a patch with one replaces it; an empty one clears it.
    let patch = KeyPatch { name: Some("cd".into()), ..KeyPatch::default() };
    assert_eq!(store.admin.update_key(t.id, k.id, patch, &a).await.unwrap().cache, key_rule);
    assert_eq!(store.admin.set_key_limits(t.id, k.id, limit_policy(3), &a).await.unwrap().cache, key_rule);
    let patch = KeyPatch { cache: Some(CacheRule::default()), ..KeyPatch::default() };
    let cleared = store.admin.update_key(t.id, k.id, patch, &a).await.unwrap();
    assert!(cleared.cache.is_empty());
    assert_eq!((cleared.name.as_str(), &cleared.limits), ("cd", &limit_policy(3)));
    assert_eq!(store.admin.get_key(t.id, k.id).await.unwrap(), cleared);
    let patch = KeyPatch { cache: Some(cache_rule(5)), ..KeyPatch::default() };
    let set = store.admin.update_key(t.id, k.id, patch, &a).await.unwrap();
    assert_eq!(set.cache, cache_rule(5));
    assert_eq!(store.auth.authenticate_key(&hash).await.unwrap().unwrap().key_cache, cache_rule(5));

    // A rotation given the old key's rule keeps it.
    let next = NewKey { cache: set.cache, ..new_key(p.id, m.id, "cd") };
    let next_hash = next.hash;
    let rotated = store.admin.rotate_key(t.id, k.id, next, &a).await.unwrap();
    assert_eq!(rotated.cache, cache_rule(5));
    assert_eq!(store.admin.get_key(t.id, rotated.id).await.unwrap(), rotated);
    let auth = store.auth.authenticate_key(&next_hash).await.unwrap().unwrap();
    assert_eq!((auth.key_cache, auth.project_cache), (cache_rule(5), closed));

    // The tenant's rule travels inside its policy.
    let policy = TenantPolicy { cache: cache_rule(30), ..TenantPolicy::default() };
    let patch = TenantPatch { name: None, policy: Some(policy.clone()) };
    assert_eq!(store.admin.update_tenant(t.id, patch, &a).await.unwrap().policy, policy);
    assert_eq!(store.admin.get_tenant(t.id).await.unwrap().policy, policy);
    assert_eq!(store.auth.authenticate_key(&next_hash).await.unwrap().unwrap().tenant_policy, policy);

    // Audit records carry the rules, before and after.
    let audit = store.admin.list_audit(t.id, all()).await.unwrap().data;
    let update = audit
        .iter()
        .find(|r| {
            r.action == "project.update" && r.after.as_ref().is_some_and(|v| v["cache"]["allow"] == "none")
        })
        .unwrap();
    assert_eq!(update.before.as_ref().unwrap()["cache"]["ttl_seconds"], 60);
    let created = audit.iter().find(|r| r.action == "key.create").unwrap();
    assert_eq!(created.after.as_ref().unwrap()["cache"]["mode"], "write-only");
}

pub async fn cache_rules_of_another_tenant_are_not_found(store: &Store) {
    let a = world(store, "a").await;
    let b = world(store, "b").await;
    let (bt, act) = (b.tenant.id, actor());
    let patch = ProjectPatch { name: None, cache: Some(cache_rule(1)) };
    assert_err!(store.admin.update_project(bt, a.project.id, patch, &act).await, NotFound);
    let patch = KeyPatch { cache: Some(cache_rule(1)), ..KeyPatch::default() };
    assert_err!(store.admin.update_key(bt, a.key.id, patch, &act).await, NotFound);
    let at = a.tenant.id;
    assert_eq!(store.admin.get_project(at, a.project.id).await.unwrap(), a.project);
    assert_eq!(store.admin.get_key(at, a.key.id).await.unwrap(), a.key);
    let auth = store.auth.authenticate_key(&a.hash).await.unwrap().unwrap();
    assert!(auth.key_cache.is_empty() && auth.project_cache.is_empty());
}

pub async fn change_feed_cache_rules(store: &Store) {
    let w = world(store, "acme").await;
    let (t, a) = (w.tenant.id, actor());
    let mut feed = subscribe(store).await;
    let patch = ProjectPatch { name: None, cache: Some(cache_rule(1)) };
    store.admin.update_project(t, w.project.id, patch, &a).await.unwrap();
    expect_change(&mut feed, Change::Tenant(t)).await;
    let patch = KeyPatch { cache: Some(cache_rule(1)), ..KeyPatch::default() };
    store.admin.update_key(t, w.key.id, patch, &a).await.unwrap();
    expect_change(&mut feed, Change::Key(w.key.id)).await;
}

pub async fn usage_totals_count_cache_hits_misses_and_savings(store: &Store) {
    use tollgate_types::ports::usage::{UsageGroupBy, UsageQuery, UsageTotals};
    let (t, other) = (tenant(store, "usage-c1").await, tenant(store, "usage-c2").await);
    // n % 4: 0 hit (saving 1000 + n; n = 4 a semantic hit), 1 miss, 2 bypass, 3 none; odd n
    // failed.
    let mut records: Vec<_> = (0..8).map(|n| usage(Some(t.id), n)).collect();
    records.push(usage(Some(other.id), 8));
    store.usage.insert_usage(&records).await.unwrap();

    let query = |group_by| UsageQuery {
        from: datetime!(2026-11-21 00:00 UTC),
        to: datetime!(2026-11-22 00:00 UTC),
        group_by,
    };
    let expected = UsageTotals {
        group: "gpt-4o-mini".into(),
        requests: 8,
        errors: 4,
        input_tokens: (0..8).map(|n| 100 + n).sum(),
        output_tokens: 8 * 20,
        cached_input_tokens: 8 * 64,
        cost_nanodollars: 8 * 123_456_789,
        cache_hits: 2,
        semantic_hits: 1,
        cache_misses: 2,
        cost_saved_nanodollars: 1_000 + 1_004,
    };
    let by_model = store.usage.aggregate_usage(t.id, &query(UsageGroupBy::Model)).await.unwrap();
    assert_eq!(by_model, vec![expected.clone()]);
    let by_day = store.usage.aggregate_usage(t.id, &query(UsageGroupBy::Day)).await.unwrap();
    assert_eq!(by_day, vec![UsageTotals { group: "2026-11-21".into(), ..expected }]);
    // The other tenant's hit is its own.
    let theirs = store.usage.aggregate_usage(other.id, &query(UsageGroupBy::Model)).await.unwrap();
    assert_eq!(
        theirs.iter().map(|g| (g.requests, g.cache_hits, g.cost_saved_nanodollars)).collect::<Vec<_>>(),
        [(1, 1, 1_008)]
    );
}
