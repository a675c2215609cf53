//! The usage report: totals per day / model / project / key / provider over a range, JSON and
//! CSV, for every member of the tenant and nobody else; with what the response cache answered
//! (hits, misses) and saved.

use reqwest::Method;
use serde_json::json;
use time::macros::datetime;
use tollgate_types::ports::usage::{TokenSource, UsageRecord};
use tollgate_types::tenancy::{KeyId, ProjectId, TenantId};

use crate::harness::{Backend, Harness};

on_every_store!(usage_report_groups_and_totals_a_tenants_records);

/// `r` as the cache recorded it: `hit` (with the saving), `miss` or `bypass`.
fn cached(r: UsageRecord, status: &str, saved: Option<u64>) -> UsageRecord {
    UsageRecord { cache_status: Some(status.into()), cost_saved_nanodollars: saved, ..r }
}

fn record(
    tenant: TenantId,
    at: time::OffsetDateTime,
    model: &str,
    status: u16,
    tokens: u64,
    cost: u64,
) -> UsageRecord {
    UsageRecord {
        id: uuid::Uuid::now_v7(),
        request_id: "r".into(),
        at,
        tenant_id: Some(tenant),
        project_id: Some(ProjectId::new()),
        key_id: Some(KeyId::new()),
        endpoint: "chat".into(),
        model: model.into(),
        provider: Some("openai".into()),
        deployment: None,
        status,
        error_code: None,
        input_tokens: tokens,
        output_tokens: tokens / 2,
        cached_input_tokens: 0,
        reasoning_tokens: 0,
        token_source: TokenSource::Provider,
        cost_nanodollars: Some(cost),
        price_id: None,
        latency_ms: 10,
        ttft_ms: None,
        cache_status: None,
        cost_saved_nanodollars: None,
        user: None,
        metadata: Default::default(),
        served_model: None,
        attempts: 1,
        hedged: false,
    }
}

async fn usage_report_groups_and_totals_a_tenants_records(b: Backend) {
    let h = Harness::start(b).await;
    let (a, other) = (h.tenant("acme").await, h.tenant("other").await);
    let ta: TenantId = a.id.parse().unwrap();
    let to: TenantId = other.id.parse().unwrap();
    h.store
        .usage
        .insert_usage(&[
            cached(record(ta, datetime!(2026-11-01 10:00 UTC), "gpt", 200, 100, 1_500_000_000), "miss", None),
            record(ta, datetime!(2026-11-01 23:59 UTC), "claude", 502, 0, 0),
            cached(record(ta, datetime!(2026-11-02 08:00 UTC), "gpt", 200, 40, 250), "bypass", None),
            // Answered from the cache: no tokens, no cost, the first answer's cost saved.
            cached(record(ta, datetime!(2026-11-02 09:00 UTC), "gpt", 200, 0, 0), "hit", Some(1_500_000_007)),
            record(ta, datetime!(2026-12-05 08:00 UTC), "gpt", 200, 1, 1), // outside the range
            record(to, datetime!(2026-11-01 11:00 UTC), "gpt", 200, 999, 999),
        ])
        .await
        .unwrap();
    let range = "from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z";

    let by_day =
        h.ok(&a.owner_key, Method::GET, &a.path(&format!("/usage?{range}&group_by=day")), None).await;
    assert_eq!(by_day["object"], "usage_report");
    let days: Vec<_> = by_day["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["group"].clone(), d["requests"].clone()))
        .collect();
    assert_eq!(days, [(json!("2026-11-01"), json!(2)), (json!("2026-11-02"), json!(2))]);
    assert_eq!(by_day["totals"]["requests"], 4);
    assert_eq!(by_day["totals"]["errors"], 1);
    assert_eq!(by_day["totals"]["input_tokens"], 140);
    assert_eq!(by_day["totals"]["cost_usd"], "1.500000250", "exact, never a float");
    // Cache: a bypass and a refused request count as neither hit nor miss.
    let cache: Vec<_> = by_day["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["cache_hits"].clone(), d["cache_misses"].clone(), d["cost_saved_usd"].clone()))
        .collect();
    assert_eq!(
        cache,
        [(json!(0), json!(1), json!("0.000000000")), (json!(1), json!(0), json!("1.500000007"))]
    );
    assert_eq!(
        (
            &by_day["totals"]["cache_hits"],
            &by_day["totals"]["cache_misses"],
            &by_day["totals"]["cost_saved_usd"]
        ),
        (&json!(1), &json!(1), &json!("1.500000007"))
    );

    let by_model =
        h.ok(&a.owner_key, Method::GET, &a.path(&format!("/usage?{range}&group_by=model")), None).await;
    let models: Vec<_> = by_model["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["group"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(models, ["claude", "gpt"]);
    let by_project =
        h.ok(&a.owner_key, Method::GET, &a.path(&format!("/usage?{range}&group_by=project")), None).await;
    assert_eq!(by_project["data"].as_array().unwrap().len(), 4);
    assert!(
        by_project["data"][0]["group"].as_str().unwrap().parse::<uuid::Uuid>().is_ok(),
        "ids print as UUIDs"
    );

    let csv = h
        .call(&a.owner_key, Method::GET, &a.path(&format!("/usage?{range}&group_by=day&format=csv")), None)
        .await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(
        lines[0],
        "group,requests,errors,input_tokens,output_tokens,cached_input_tokens,cost_usd,cache_hits,semantic_hits,\
         cache_misses,cost_saved_usd"
    );
    assert_eq!(lines[2], "\"2026-11-02\",2,0,40,20,0,0.000000250,1,0,0,1.500000007");
    assert_eq!(lines.last().copied(), Some("\"total\",4,1,140,70,0,1.500000250,1,0,1,1.500000007"));

    // A viewer reads usage; another tenant's key sees nothing of it; bad input names the field.
    let viewer = h.member(&a, "viewer", &["admin"]).await;
    assert_eq!(h.call(&viewer.key, Method::GET, &a.path(&format!("/usage?{range}")), None).await.status, 200);
    assert_eq!(
        h.call(&other.owner_key, Method::GET, &a.path(&format!("/usage?{range}")), None).await.status,
        404
    );
    let theirs = h.ok(&other.owner_key, Method::GET, &other.path(&format!("/usage?{range}")), None).await;
    assert_eq!(theirs["totals"]["requests"], 1);
    for (query, field) in [
        ("group_by=week", "group_by"),
        ("from=yesterday", "from"),
        ("format=xml", "format"),
        ("from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "to"),
        ("from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
    ] {
        let r = h.call(&a.owner_key, Method::GET, &a.path(&format!("/usage?{query}")), None).await;
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some(field)), "{query}: {}", r.text);
    }
}
