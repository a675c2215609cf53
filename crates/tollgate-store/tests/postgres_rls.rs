//! Row-level security in PostgreSQL, proven at the SQL level: raw connections as `tollgate_app`
//! (the gateway's role) against data of two tenants written through the store. Also the
//! role's limits, the SECURITY DEFINER authentication function's shape, a non-superuser owner,
//! and change notifications between two nodes. Needs the PostgreSQL of `pg_support`.

#![expect(clippy::unwrap_used, reason = "test helpers fail the test on any error")]

mod pg_support;

use std::time::Duration;

use futures::StreamExt;
use pg_support::{APP_ROLE, TestDb};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tollgate_store::postgres::PostgresStore;
use tollgate_types::ports::store::{
    AdminStore, AuthStore, Change, ChangeEvent, MemberPatch, NewCredential, NewKey, NewMember, NewProject,
    NewTenant, TenantPatch,
};
use tollgate_types::tenancy::{
    Actor, CredentialId, KeyHash, KeyId, KeyScope, MemberRole, PageRequest, ProjectId, SealedSecret,
    TenantId, TenantPolicy,
};
use uuid::Uuid;

/// Every table row-level security guards, with the column that names the tenant.
const TABLES: [(&str, &str); 6] = [
    ("tenants", "id"),
    ("projects", "tenant_id"),
    ("members", "tenant_id"),
    ("api_keys", "tenant_id"),
    ("provider_credentials", "tenant_id"),
    ("audit_log", "tenant_id"),
];

fn hash() -> KeyHash {
    let mut h = [0u8; 32];
    h[..16].copy_from_slice(Uuid::now_v7().as_bytes());
    h[16..].copy_from_slice(Uuid::now_v7().as_bytes());
    KeyHash(h)
}

/// What one tenant was seeded with.
struct Seeded {
    tenant: TenantId,
    project: ProjectId,
    key: KeyId,
    hash: KeyHash,
}

async fn seed(store: &PostgresStore, name: &str) -> Seeded {
    let actor = Actor::Cli;
    let tenant = store
        .create_tenant(
            NewTenant {
                name: name.to_owned(),
                policy: TenantPolicy { byok_only: true, ..TenantPolicy::default() },
            },
            &actor,
        )
        .await
        .unwrap();
    let project = store
        .create_project(
            tenant.id,
            NewProject { name: "web".into(), limits: None, cache: Default::default() },
            &actor,
        )
        .await
        .unwrap();
    let member = store
        .create_member(
            tenant.id,
            NewMember { name: "ada@example.com".into(), role: MemberRole::Admin },
            &actor,
        )
        .await
        .unwrap();
    let hash = hash();
    let key = store
        .create_key(
            tenant.id,
            NewKey {
                id: KeyId::new(),
                project_id: project.id,
                owner_id: member.id,
                name: "ci".into(),
                prefix: "tg_live_abcd".into(),
                hash,
                scopes: vec![KeyScope::Inference, KeyScope::Admin],
                allowed_models: Some(vec!["gpt-4o".into()]),
                allowed_tags: vec!["eu".into()],
                metadata: Default::default(),
                expires_at: None,
                limits: None,
                cache: Default::default(),
            },
            &actor,
        )
        .await
        .unwrap();
    store
        .create_credential(
            tenant.id,
            NewCredential {
                id: CredentialId::new(),
                provider: "openai".into(),
                name: "main".into(),
                masked: "...x9Qz".into(),
                sealed: SealedSecret { key_id: "k1".into(), ciphertext: vec![1, 2, 3] },
            },
            &actor,
        )
        .await
        .unwrap();
    Seeded { tenant: tenant.id, project: project.id, key: key.id, hash }
}

async fn app_conn(db: &TestDb) -> PgConnection {
    PgConnection::connect(&db.app_url).await.unwrap()
}

async fn set_tenant(conn: &mut PgConnection, tenant: TenantId) {
    sqlx::query("SELECT set_config('tollgate.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn count(conn: &mut PgConnection, table: &str) -> i64 {
    // Table names come from the TABLES constant, never from input.
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(conn).await.unwrap()
}

fn sqlstate(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()).unwrap_or_default(),
        other => format!("not a database error: {other}"),
    }
}

#[tokio::test]
async fn without_the_setting_the_app_role_sees_no_rows() {
    let (store, db) = TestDb::with_store().await;
    seed(&store, "alpha").await;
    seed(&store, "beta").await;

    let mut conn = app_conn(&db).await;
    for (table, _) in TABLES {
        assert_eq!(count(&mut conn, table).await, 0, "{table} without a tenant");
    }
    // Empty or malformed settings match nothing and raise nothing.
    for value in ["", "not-a-uuid", "' OR 1=1 --"] {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SELECT set_config('tollgate.tenant_id', $1, true)")
            .bind(value)
            .execute(&mut *tx)
            .await
            .unwrap();
        for (table, _) in TABLES {
            assert_eq!(count(&mut tx, table).await, 0, "{table} with tenant {value:?}");
        }
        tx.rollback().await.unwrap();
    }
    // The data is there: the (superuser) owner sees it.
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    assert_eq!(count(&mut owner, "api_keys").await, 2);
}

#[tokio::test]
async fn with_a_tenant_set_only_its_rows_are_visible_or_writable() {
    let (store, db) = TestDb::with_store().await;
    let a = seed(&store, "alpha").await;
    let b = seed(&store, "beta").await;

    let mut conn = app_conn(&db).await;
    let mut tx = conn.begin().await.unwrap();
    set_tenant(&mut tx, a.tenant).await;
    for (table, col) in TABLES {
        let sql = format!(
            "SELECT count(*) FILTER (WHERE {col} = $1), count(*) FILTER (WHERE {col} <> $1) FROM {table}"
        );
        let row = sqlx::query(AssertSqlSafe(sql)).bind(a.tenant.0).fetch_one(&mut *tx).await.unwrap();
        let (own, other): (i64, i64) = (row.get(0), row.get(1));
        assert!(own > 0, "{table}: tenant A sees its own rows");
        assert_eq!(other, 0, "{table}: tenant A sees no other rows");
    }

    // UPDATE and DELETE of B's rows find nothing to change.
    for (table, col) in TABLES {
        if table == "audit_log" {
            continue;
        }
        let set = if table == "tenants" { "name = name || 'x'" } else { "updated_at = now()" };
        let sql = format!("UPDATE {table} SET {set} WHERE {col} = $1");
        let done = sqlx::query(AssertSqlSafe(sql)).bind(b.tenant.0).execute(&mut *tx).await.unwrap();
        assert_eq!(done.rows_affected(), 0, "UPDATE {table} of tenant B");
        if table != "tenants" {
            let sql = format!("DELETE FROM {table} WHERE {col} = $1");
            let done = sqlx::query(AssertSqlSafe(sql)).bind(b.tenant.0).execute(&mut *tx).await.unwrap();
            assert_eq!(done.rows_affected(), 0, "DELETE {table} of tenant B");
        }
    }
    tx.commit().await.unwrap();

    // INSERT of a row claiming tenant B fails the policy's WITH CHECK (42501), one table at a
    // time (a failed statement aborts its transaction).
    let inserts: [(&str, &'static str); 5] = [
        (
            "projects",
            "INSERT INTO projects (id, tenant_id, name, created_at, updated_at) VALUES (gen_random_uuid(), $1, 'evil', now(), now())",
        ),
        (
            "members",
            "INSERT INTO members (id, tenant_id, name, role, created_at, updated_at) VALUES (gen_random_uuid(), $1, 'evil', 'owner', now(), now())",
        ),
        (
            "provider_credentials",
            "INSERT INTO provider_credentials (id, tenant_id, provider, name, masked, key_id, ciphertext, created_at, updated_at) VALUES (gen_random_uuid(), $1, 'openai', 'evil', 'x', 'k', '\\x00', now(), now())",
        ),
        (
            "audit_log",
            "INSERT INTO audit_log (id, tenant_id, actor, action, resource_type, resource_id, at) VALUES (gen_random_uuid(), $1, '{}', 'x', 'x', 'x', now())",
        ),
        (
            "api_keys",
            "INSERT INTO api_keys (id, tenant_id, project_id, owner_id, name, prefix, hash, scopes, created_at, updated_at) SELECT gen_random_uuid(), $1, $2, gen_random_uuid(), 'evil', 'p', decode(repeat('ab', 32), 'hex'), ARRAY['inference'], now(), now()",
        ),
    ];
    for (table, sql) in inserts {
        let mut tx = conn.begin().await.unwrap();
        set_tenant(&mut tx, a.tenant).await;
        let mut query = sqlx::query(sql).bind(b.tenant.0);
        if table == "api_keys" {
            query = query.bind(b.project.0);
        }
        let err = query.execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "INSERT into {table} with tenant B: {err}");
        tx.rollback().await.unwrap();
    }

    // The audit log is append-only for the app; tenants are deleted only through the function.
    for sql in ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "DELETE FROM tenants"] {
        let mut tx = conn.begin().await.unwrap();
        set_tenant(&mut tx, a.tenant).await;
        let err = sqlx::query(sql).execute(&mut *tx).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
        tx.rollback().await.unwrap();
    }

    // The setting is transaction-local: the next transaction on the same connection sees nothing.
    assert_eq!(count(&mut conn, "projects").await, 0);
    // And B's data is intact.
    assert_eq!(store.get_key(b.tenant, b.key).await.unwrap().revoked_at, None);
}

#[tokio::test]
async fn the_app_role_cannot_escape_row_level_security() {
    let (_store, db) = TestDb::with_store().await;
    let mut conn = app_conn(&db).await;

    let row = sqlx::query("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!row.get::<bool, _>(0), "tollgate_app is not a superuser");
    assert!(!row.get::<bool, _>(1), "tollgate_app has no BYPASSRLS");

    for (table, _) in TABLES {
        let owner: String = sqlx::query_scalar(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = $1",
        )
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_ne!(owner, APP_ROLE, "{table} is not owned by the app role");
        let flags =
            sqlx::query("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass")
                .bind(table)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert!(flags.get::<bool, _>(0) && flags.get::<bool, _>(1), "{table}: RLS enabled and forced");
        let policies: Vec<String> =
            sqlx::query_scalar("SELECT cmd FROM pg_policies WHERE tablename = $1 AND policyname LIKE '%\\_tenant\\_%' ORDER BY cmd")
                .bind(table)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(policies, ["DELETE", "INSERT", "SELECT", "UPDATE"], "{table}: one policy per command");

        for sql in [
            format!("ALTER TABLE {table} DISABLE ROW LEVEL SECURITY"),
            format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"),
            format!("DROP POLICY {table}_tenant_select ON {table}"),
        ] {
            let err = sqlx::query(AssertSqlSafe(sql.clone())).execute(&mut conn).await.unwrap_err();
            assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
        }
    }
    for sql in
        ["SET ROLE postgres", "SET SESSION AUTHORIZATION postgres", "CREATE TABLE public.sneaky (id int)"]
    {
        let err = sqlx::query(sql).execute(&mut conn).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
    }
}

#[tokio::test]
async fn the_auth_function_returns_only_what_authentication_needs() {
    let (store, db) = TestDb::with_store().await;
    let a = seed(&store, "alpha").await;
    seed(&store, "beta").await;

    let mut conn = app_conn(&db).await;
    let rows = sqlx::query("SELECT * FROM tollgate_authenticate_key($1)")
        .bind(&a.hash.0[..])
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let columns: Vec<&str> = rows[0].columns().iter().map(sqlx::Column::name).collect();
    assert_eq!(
        columns,
        [
            "key_id",
            "tenant_id",
            "project_id",
            "owner_id",
            "role",
            "scopes",
            "allowed_models",
            "allowed_tags",
            "expires_at",
            "revoked_at",
            "tenant_policy",
            "key_limits",
            "project_limits",
            "tenant_limits",
            "tenant_pricing",
            "key_cache",
            "project_cache"
        ]
    );
    assert_eq!(rows[0].get::<Uuid, _>("key_id"), a.key.0);
    assert_eq!(rows[0].get::<Uuid, _>("tenant_id"), a.tenant.0);
    assert_eq!(rows[0].get::<String, _>("role"), "admin");

    let none = sqlx::query("SELECT * FROM tollgate_authenticate_key($1)")
        .bind(&hash().0[..])
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(none.is_empty(), "unknown hash: no row");

    // Through the store: role, scopes and policy come back.
    let auth = store.authenticate_key(&a.hash).await.unwrap().unwrap();
    assert_eq!(auth.role, MemberRole::Admin);
    assert!(auth.tenant_policy.byok_only);

    // The definer functions are the app's only, not PUBLIC's.
    let public_exec: bool = sqlx::query_scalar(
        "SELECT bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) FROM pg_proc p \
         WHERE p.proname LIKE 'tollgate\\_%' AND p.prosecdef",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!public_exec);
}

/// Limits, pricing and cache rules live in the tenant-scoped rows, so row-level security hides
/// another tenant's exactly as it hides the rows: not readable, not writable, with or without a
/// tenant set. Only the authentication function returns them, for the key whose hash it was
/// given.
#[tokio::test]
async fn the_app_role_cannot_read_or_change_another_tenants_limits() {
    use tollgate_types::cache_rule::{CacheAllow, CacheRule};
    use tollgate_types::limits::{LimitPolicy, PricingPolicy, RateLimits};
    use tollgate_types::ports::store::{KeyPatch, ProjectPatch};
    let (store, db) = TestDb::with_store().await;
    let a = seed(&store, "alpha").await;
    let b = seed(&store, "beta").await;
    let actor = Actor::Cli;
    let policy =
        LimitPolicy { rate: RateLimits { rpm: Some(42), ..RateLimits::default() }, ..LimitPolicy::default() };
    let pricing = PricingPolicy { markup_bps: 700, prices: Vec::new() };
    store.set_tenant_limits(b.tenant, policy.clone(), &actor).await.unwrap();
    store.set_tenant_pricing(b.tenant, pricing.clone(), &actor).await.unwrap();
    store.set_project_limits(b.tenant, b.project, policy.clone(), &actor).await.unwrap();
    store.set_key_limits(b.tenant, b.key, policy.clone(), &actor).await.unwrap();
    let rule = CacheRule { allow: Some(CacheAllow::None), ..CacheRule::default() };
    let patch = ProjectPatch { name: None, cache: Some(rule) };
    store.update_project(b.tenant, b.project, patch, &actor).await.unwrap();
    let patch = KeyPatch { cache: Some(rule), ..KeyPatch::default() };
    store.update_key(b.tenant, b.key, patch, &actor).await.unwrap();

    let mut conn = app_conn(&db).await;
    let reads: [&'static str; 6] = [
        "SELECT limits FROM tenants WHERE limits <> '{}'::jsonb",
        "SELECT pricing FROM tenants WHERE pricing <> '{}'::jsonb",
        "SELECT limits FROM projects WHERE limits <> '{}'::jsonb",
        "SELECT limits FROM api_keys WHERE limits <> '{}'::jsonb",
        "SELECT cache FROM projects WHERE cache <> '{}'::jsonb",
        "SELECT cache FROM api_keys WHERE cache <> '{}'::jsonb",
    ];
    // Without a tenant: nothing.
    for sql in reads {
        assert!(sqlx::query(sql).fetch_all(&mut conn).await.unwrap().is_empty(), "{sql} without a tenant");
    }
    // As tenant A: B's policies are invisible, and writing them changes nothing.
    let mut tx = conn.begin().await.unwrap();
    set_tenant(&mut tx, a.tenant).await;
    for sql in reads {
        assert!(sqlx::query(sql).fetch_all(&mut *tx).await.unwrap().is_empty(), "{sql} as tenant A");
    }
    let writes: [(&'static str, Uuid); 6] = [
        ("UPDATE tenants SET limits = '{}'::jsonb WHERE id = $1", b.tenant.0),
        ("UPDATE tenants SET pricing = '{}'::jsonb WHERE id = $1", b.tenant.0),
        ("UPDATE projects SET limits = '{}'::jsonb WHERE id = $1", b.project.0),
        ("UPDATE api_keys SET limits = '{}'::jsonb WHERE id = $1", b.key.0),
        ("UPDATE projects SET cache = '{}'::jsonb WHERE id = $1", b.project.0),
        ("UPDATE api_keys SET cache = '{}'::jsonb WHERE id = $1", b.key.0),
    ];
    for (sql, id) in writes {
        let done = sqlx::query(sql).bind(id).execute(&mut *tx).await.unwrap();
        assert_eq!(done.rows_affected(), 0, "{sql} as tenant A");
    }
    tx.commit().await.unwrap();
    // As tenant B the same reads find B's own policies (the data is there).
    let mut tx = conn.begin().await.unwrap();
    set_tenant(&mut tx, b.tenant).await;
    for sql in reads {
        assert_eq!(sqlx::query(sql).fetch_all(&mut *tx).await.unwrap().len(), 1, "{sql} as tenant B");
    }
    tx.rollback().await.unwrap();

    // Through the store: B's policies are intact, and A's key carries none of them.
    let auth = store.authenticate_key(&b.hash).await.unwrap().unwrap();
    assert_eq!((&auth.key_limits, &auth.project_limits, &auth.tenant_limits), (&policy, &policy, &policy));
    assert_eq!(auth.tenant_pricing, pricing);
    assert_eq!((auth.key_cache, auth.project_cache), (rule, rule));
    let auth = store.authenticate_key(&a.hash).await.unwrap().unwrap();
    assert!(auth.key_limits.is_empty() && auth.project_limits.is_empty() && auth.tenant_limits.is_empty());
    assert!(auth.tenant_pricing.is_empty());
    assert!(auth.key_cache.is_empty() && auth.project_cache.is_empty());
}

#[tokio::test]
async fn a_change_on_one_node_reaches_another_within_a_second() {
    let (node_a, db) = TestDb::with_store().await;
    let node_b = PostgresStore::connect(&db.app_url).await.unwrap();
    let seeded = seed(&node_b, "alpha").await;

    let mut feed = node_a.store().changes.subscribe();
    let actor = Actor::Cli;
    // The seed's own notifications may still be in flight: make a marker change and skip
    // everything up to it.
    node_b.update_tenant(seeded.tenant, TenantPatch::default(), &actor).await.unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(1), feed.next()).await.unwrap().unwrap();
        if event == ChangeEvent::Changed(Change::Tenant(seeded.tenant)) {
            break;
        }
    }
    // A failed change announces nothing (NOTIFY is sent only on commit): the first event seen
    // must be the revoke below.
    node_b
        .update_member(
            seeded.tenant,
            tollgate_types::tenancy::MemberId::new(),
            MemberPatch::default(),
            &actor,
        )
        .await
        .unwrap_err();
    node_b.revoke_key(seeded.tenant, seeded.key, &actor).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(1), feed.next()).await.unwrap().unwrap();
    assert_eq!(event, ChangeEvent::Changed(Change::Key(seeded.key)));

    node_b.delete_tenant(seeded.tenant, &actor).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(1), feed.next()).await.unwrap().unwrap();
    assert_eq!(event, ChangeEvent::Changed(Change::Tenant(seeded.tenant)));
}

#[tokio::test]
async fn migrating_again_is_a_no_op_and_the_app_role_cannot_migrate() {
    let (store, db) = TestDb::with_store().await;
    let a = seed(&store, "alpha").await;
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    assert_eq!(store.get_key(a.tenant, a.key).await.unwrap().id, a.key);
    let err = PostgresStore::migrate(&db.app_url).await.unwrap_err();
    assert!(err.to_string().contains("must run as the role that owns the tables"), "{err}");
}

/// A production owner is usually not a superuser: the SECURITY DEFINER functions must still
/// work (through the owner-only definer policy), and the owner's own ad-hoc queries are filtered
/// like the app's (FORCE).
#[tokio::test]
async fn a_non_superuser_owner_works_and_is_filtered_too() {
    const OWNER: &str = "tollgate_test_owner";
    let admin_url = pg_support::admin_url();
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    // Cluster-wide roles, created once; parallel runs may race (same handling as the migration).
    sqlx::query(
        "DO $$ BEGIN \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tollgate_test_owner') THEN \
             BEGIN CREATE ROLE tollgate_test_owner LOGIN NOSUPERUSER NOBYPASSRLS; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
           END IF; \
           IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tollgate_app') THEN \
             BEGIN CREATE ROLE tollgate_app LOGIN NOSUPERUSER NOBYPASSRLS; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END; \
           END IF; \
         END $$",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let db = TestDb::create().await;
    let sql = format!("ALTER DATABASE \"{}\" OWNER TO {OWNER}", db.name);
    sqlx::query(AssertSqlSafe(sql)).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();

    let owner_url = pg_support::url_for(&admin_url, &db.name, Some(OWNER));
    PostgresStore::migrate(&owner_url).await.unwrap();
    let store = PostgresStore::connect(&db.app_url).await.unwrap();
    let a = seed(&store, "alpha").await;
    let b = seed(&store, "beta").await;

    assert_eq!(store.list_tenants(PageRequest::first(10)).await.unwrap().data.len(), 2);
    assert_eq!(store.authenticate_key(&a.hash).await.unwrap().unwrap().tenant_id, a.tenant);
    assert_eq!(store.all_sealed_credentials().await.unwrap().len(), 2);
    let at = time::OffsetDateTime::now_utc();
    store.touch_keys(&[(b.key, at)]).await.unwrap();
    assert!(store.get_key(b.tenant, b.key).await.unwrap().last_used_at.is_some());

    let mut owner = PgConnection::connect(&owner_url).await.unwrap();
    assert_eq!(count(&mut owner, "api_keys").await, 0, "FORCE: the owner is filtered too");

    store.delete_tenant(a.tenant, &Actor::Cli).await.unwrap();
    assert!(store.authenticate_key(&a.hash).await.unwrap().is_none());
    assert_eq!(store.list_tenants(PageRequest::first(10)).await.unwrap().data.len(), 1);
    drop(owner);
    drop(store);
}

/// The gateway refuses to run as a role that bypasses row-level security (a superuser such as
/// the owner here), so a misconfigured URL cannot silently disable tenant isolation.
#[tokio::test]
async fn connecting_as_a_role_that_bypasses_rls_is_refused() {
    let db = TestDb::create().await;
    PostgresStore::migrate(&db.owner_url).await.unwrap();
    let Err(err) = PostgresStore::connect(&db.owner_url).await else { panic!("a superuser must be refused") };
    assert!(err.to_string().contains("bypasses row-level security"), "{err}");
    assert!(PostgresStore::connect(&db.app_url).await.is_ok());
}

/// Usage records (partitioned by month) are under row-level security like every tenant table:
/// nothing without the setting, only the tenant's own rows with it; the app role cannot write
/// them directly (only through the batch function) nor read a partition directly.
#[tokio::test]
async fn usage_records_are_isolated_and_written_only_through_the_function() {
    use tollgate_types::ports::usage::UsageStore;
    let (store, db) = TestDb::with_store().await;
    let (a, b) = (seed(&store, "usage-a").await, seed(&store, "usage-b").await);
    let record = |tenant: TenantId, n: u32| usage_at(tenant, n, time::OffsetDateTime::now_utc());
    store.insert_usage(&[record(a.tenant, 1), record(b.tenant, 2), record(b.tenant, 3)]).await.unwrap();

    let mut conn = app_conn(&db).await;
    assert_eq!(count(&mut conn, "usage_records").await, 0, "no setting, no rows");
    let mut tx = conn.begin().await.unwrap();
    set_tenant(&mut tx, a.tenant).await;
    assert_eq!(count(&mut tx, "usage_records").await, 1);
    let err = sqlx::query("DELETE FROM usage_records").execute(&mut *tx).await.unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "the app role cannot delete usage");
    tx.rollback().await.unwrap();
    let err = sqlx::query("INSERT INTO usage_records (id, request_id, at, endpoint, model, status, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, token_source, latency_ms, metadata) VALUES (gen_random_uuid(), 'x', now(), 'chat', 'm', 200, 0, 0, 0, 0, 'none', 0, '{}')")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "the app role cannot insert directly");
    let partition = format!(
        "usage_records_{}",
        time::OffsetDateTime::now_utc().format(time::macros::format_description!("[year]_[month]")).unwrap()
    );
    let err = sqlx::query(AssertSqlSafe(format!("SELECT count(*) FROM {partition}")))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err), "42501", "partitions are not readable directly");
}

// === usage retention ===

/// A usage record of `tenant` at `at`.
fn usage_at(tenant: TenantId, n: u32, at: time::OffsetDateTime) -> tollgate_types::ports::usage::UsageRecord {
    tollgate_types::ports::usage::UsageRecord {
        tenant_id: Some(tenant),
        input_tokens: 1,
        output_tokens: 1,
        request_id: format!("r{n}"),
        ..tollgate_types::ports::usage::UsageRecord::sample(1, at)
    }
}

/// The name of the monthly partition holding `at` (`usage_records_YYYY_MM`, UTC).
fn partition_of(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!("usage_records_{:04}_{:02}", at.year(), u8::from(at.month()))
}

/// The partitions of `usage_records`, by name (read as the owner, from the catalog).
async fn usage_partitions(owner: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'usage_records'::regclass ORDER BY 1",
    )
    .fetch_all(owner)
    .await
    .unwrap()
}

/// Whether monthly partition `name` (`usage_records_YYYY_MM`) ends at or before `cutoff`.
fn month_ends_by(name: &str, cutoff: time::OffsetDateTime) -> Option<bool> {
    let (year, month) = name.strip_prefix("usage_records_")?.split_once('_')?;
    let (year, month): (i32, u8) = (year.parse().ok()?, month.parse().ok()?);
    let (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let end = time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, 1).ok()?;
    Some(end.midnight().assume_utc() <= cutoff)
}

/// Retention drops every monthly partition whose range ends by the cutoff (judged by its bound,
/// so a hand-made one in another time zone too), deletes the older rows of the one straddling
/// the cutoff and keeps it, never drops DEFAULT; the app role can only do this through the
/// function: it cannot drop or detach a partition itself, nor pass a recent cutoff.
#[tokio::test]
async fn usage_retention_drops_old_partitions_and_only_through_its_function() {
    use tollgate_types::ports::usage::{RetentionReport, UsageStore};
    let (store, db) = TestDb::with_store().await;
    let (a, b) = (seed(&store, "retention-a").await, seed(&store, "retention-b").await);
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    // Partitions back to 16 months ago (the migration only makes them from last month on), and
    // one made by hand, named freely, with bounds in another time zone.
    sqlx::query("SELECT tollgate_ensure_usage_partitions((now() - interval '16 months')::date, 17)")
        .execute(&mut owner)
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE usage_records_legacy PARTITION OF usage_records \
         FOR VALUES FROM ('2020-01-01 00:00+05') TO ('2020-02-01 00:00+05')",
    )
    .execute(&mut owner)
    .await
    .unwrap();

    let now = time::OffsetDateTime::now_utc();
    let cutoff = now - time::Duration::days(30);
    let old = partition_of(now - time::Duration::days(400));
    store
        .insert_usage(&[
            usage_at(a.tenant, 1, time::macros::datetime!(2020-01-15 12:00 UTC)),
            usage_at(a.tenant, 2, now - time::Duration::days(400)),
            usage_at(b.tenant, 3, now - time::Duration::days(40)),
            usage_at(a.tenant, 4, cutoff - time::Duration::hours(1)),
            usage_at(b.tenant, 5, cutoff + time::Duration::hours(1)),
            usage_at(a.tenant, 6, now),
        ])
        .await
        .unwrap();
    let before = usage_partitions(&mut owner).await;
    assert!(before.contains(&old) && before.contains(&"usage_records_legacy".to_owned()), "{before:?}");

    // The app role: no DROP, no DETACH, no recent cutoff.
    let mut app = app_conn(&db).await;
    for sql in [format!("DROP TABLE {old}"), format!("ALTER TABLE usage_records DETACH PARTITION {old}")] {
        let err = sqlx::query(AssertSqlSafe(sql)).execute(&mut app).await.unwrap_err();
        assert_eq!(sqlstate(&err), "42501", "the app role cannot drop or detach a partition");
    }
    for sql in
        ["SELECT * FROM tollgate_usage_retention(now())", "SELECT * FROM tollgate_usage_retention(NULL)"]
    {
        let err = sqlx::query(sql).execute(&mut app).await.unwrap_err();
        assert_eq!(sqlstate(&err), "22023", "{sql}: the function refuses a cutoff less than a day old");
    }
    assert_eq!(usage_partitions(&mut owner).await, before, "nothing dropped by the refused calls");

    let report = store.enforce_retention(cutoff).await.unwrap();
    let mut expected: Vec<String> =
        before.iter().filter(|name| month_ends_by(name, cutoff) == Some(true)).cloned().collect();
    expected.insert(0, "usage_records_legacy".to_owned());
    expected.sort();
    assert!(expected.len() >= 12, "16 months back, at most 2 are kept: {expected:?}");
    assert_eq!(report.dropped_partitions, expected);
    assert_eq!(report.deleted_rows, 4, "two in dropped partitions, 40 days and an hour before the cutoff");

    let after = usage_partitions(&mut owner).await;
    let kept: Vec<String> = before.iter().filter(|name| !expected.contains(name)).cloned().collect();
    assert_eq!(after, kept);
    for name in [partition_of(cutoff), partition_of(now), "usage_records_default".to_owned()] {
        assert!(after.contains(&name), "{name} is kept: {after:?}");
    }
    let a_left = store.list_usage(a.tenant, PageRequest::first(10)).await.unwrap().data;
    assert_eq!(a_left.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r6"]);
    let b_left = store.list_usage(b.tenant, PageRequest::first(10)).await.unwrap().data;
    assert_eq!(b_left.iter().map(|r| r.request_id.as_str()).collect::<Vec<_>>(), ["r5"]);

    assert_eq!(store.enforce_retention(cutoff).await.unwrap(), RetentionReport::default(), "a no-op now");
    assert_eq!(usage_partitions(&mut owner).await, after);
}

/// Records of a month without a partition land in DEFAULT; preparing storage for that month
/// moves them into its new partition (creating it directly would fail on them).
#[tokio::test]
async fn preparing_usage_storage_moves_a_spilled_month_out_of_default() {
    use tollgate_types::ports::usage::UsageStore;
    let (store, db) = TestDb::with_store().await;
    let a = seed(&store, "spill").await;
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(365 * 3);
    store.insert_usage(&[usage_at(a.tenant, 1, far), usage_at(a.tenant, 2, far)]).await.unwrap();
    let in_default: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_records_default").fetch_one(&mut owner).await.unwrap();
    assert_eq!(in_default, 2);
    assert!(!usage_partitions(&mut owner).await.contains(&partition_of(far)));

    // Through the app role, as the retention job does.
    store.prepare_usage_storage(far).await.unwrap();
    let partitions = usage_partitions(&mut owner).await;
    assert!(partitions.contains(&partition_of(far)), "{partitions:?}");
    assert!(partitions.contains(&partition_of(far + time::Duration::days(366))), "a year ahead too");
    let in_default: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_records_default").fetch_one(&mut owner).await.unwrap();
    assert_eq!(in_default, 0);
    let moved: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {}", partition_of(far))))
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(moved, 2);
    assert_eq!(store.list_usage(a.tenant, PageRequest::first(10)).await.unwrap().data.len(), 2);
    // Idempotent.
    store.prepare_usage_storage(far).await.unwrap();
    assert_eq!(usage_partitions(&mut owner).await, partitions);
}

/// Migrations 0005 and 0007 add the routing and cache-saving columns to the partitioned table:
/// records written before them (in a monthly partition and in DEFAULT) read back with their
/// defaults, and so do records of a batch without the new keys (a node not yet upgraded, during
/// a rolling deploy).
#[tokio::test]
async fn usage_records_from_before_the_routing_columns_get_their_defaults() {
    use tollgate_types::ports::usage::UsageStore;
    let db = TestDb::create().await;
    let mut owner = PgConnection::connect(&db.owner_url).await.unwrap();
    sqlx::migrate!("./migrations/postgres").run_to(20260101000004, &mut owner).await.unwrap();
    let tenant = TenantId::new();
    // The batch shape of the gateway before 0005 (keys as 0002's function reads them).
    let old_batch = |ids: &[(&str, &str)]| {
        serde_json::Value::Array(
            ids.iter()
                .map(|(request_id, at)| {
                    serde_json::json!({
                        "id": Uuid::now_v7(), "request_id": request_id, "at": at, "tenant_id": tenant,
                        "endpoint": "chat", "model": "m", "status": 200, "input_tokens": 1,
                        "output_tokens": 1, "cached_input_tokens": 0, "reasoning_tokens": 0,
                        "token_source": "provider", "latency_ms": 5, "metadata": {},
                    })
                })
                .collect(),
        )
    };
    let now = time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap();
    sqlx::query("SELECT tollgate_insert_usage($1)")
        .bind(old_batch(&[("old-month", &now), ("old-default", "2001-01-01T00:00:00Z")]))
        .execute(&mut owner)
        .await
        .unwrap();

    PostgresStore::migrate(&db.owner_url).await.unwrap();
    sqlx::query("SELECT tollgate_insert_usage($1)")
        .bind(old_batch(&[("old-node", &now)]))
        .execute(&mut owner)
        .await
        .unwrap();
    let store = PostgresStore::connect(&db.app_url).await.unwrap();
    let new = tollgate_types::ports::usage::UsageRecord {
        served_model: Some("backup".into()),
        attempts: 2,
        hedged: true,
        cache_status: Some("hit".into()),
        cost_saved_nanodollars: Some(42),
        ..usage_at(tenant, 4, time::OffsetDateTime::now_utc())
    };
    store.insert_usage(std::slice::from_ref(&new)).await.unwrap();

    let records = store.list_usage(tenant, PageRequest::first(10)).await.unwrap().data;
    let routing = |r: &tollgate_types::ports::usage::UsageRecord| {
        (r.request_id.clone(), r.served_model.clone(), r.attempts, r.hedged, r.cost_saved_nanodollars)
    };
    let mut seen: Vec<_> = records.iter().map(routing).collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("old-default".to_owned(), None, 0, false, None),
            ("old-month".to_owned(), None, 0, false, None),
            ("old-node".to_owned(), None, 0, false, None),
            ("r4".to_owned(), Some("backup".to_owned()), 2, true, Some(42)),
        ]
    );
}
