//! The catalog's caching on paused time, with a scripted fetch service.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tower_openai_core::ListFilter;
use tower_openai_settings::SettingsHandle;

mod common;
use common::*;

#[tokio::test(start_paused = true)]
async fn concurrent_cold_requests_share_one_fetch_per_connection() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["a"], false));
    script.set(1, Behaviour::Ids(vec!["b"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let s = SettingsHandle::new(settings(2, Some(60), 10, json!({})));
    let settings = s.load();
    let lists = futures_util::future::join_all((0..100).map(|_| ids(&catalog, &settings))).await;
    assert!(lists.iter().all(|l| l == &["a", "b"]));
    assert_eq!((script.calls(0), script.calls(1)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_stale_list_is_served_at_once_while_one_refresh_runs() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["m"], true));
    let catalog = script.catalog(Duration::from_secs(60));
    let settings = SettingsHandle::new(settings(1, Some(10), 10, json!({}))).load();
    assert_eq!(ids(&catalog, &settings).await, ["m-v1"]);

    // Fresh: no fetch.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(ids(&catalog, &settings).await, ["m-v1"]);
    assert_eq!(script.calls(0), 1);

    // Stale: the old list comes back without waiting, and exactly one refresh starts.
    tokio::time::advance(Duration::from_secs(6)).await;
    script.set(0, Behaviour::Hang);
    for _ in 0..10 {
        match catalog.lookup(&settings) {
            tower_openai_models::Lookup::Ready(s) => {
                assert_eq!(s.ids().collect::<Vec<_>>(), ["m-v1"])
            }
            tower_openai_models::Lookup::Pending(_) => panic!("a request waited for the refresh"),
        }
    }
    tokio::task::yield_now().await;
    assert_eq!(script.calls(0), 2);

    // The hanging refresh times out; the connection keeps its last good models (grace),
    // and the list counts as fresh again: a failing connection is not retried every request.
    tokio::time::advance(Duration::from_secs(11)).await;
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ids(&catalog, &settings).await, ["m-v1"]);
    assert_eq!(script.calls(0), 2);

    // Stale again: the next refresh succeeds and its list is served from then on.
    script.set(0, Behaviour::Ids(vec!["m"], true));
    tokio::time::advance(Duration::from_secs(11)).await;
    let _ = catalog.lookup(&settings);
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    assert_eq!(ids(&catalog, &settings).await, ["m-v3"]);
    assert_eq!(script.calls(0), 3);
}

#[tokio::test(start_paused = true)]
async fn with_no_ttl_the_list_never_expires() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["m"], true));
    let catalog = script.catalog(Duration::from_secs(60));
    let settings = SettingsHandle::new(settings(1, None, 10, json!({}))).load();
    ids(&catalog, &settings).await;
    tokio::time::advance(Duration::from_secs(86_400)).await;
    assert_eq!(ids(&catalog, &settings).await, ["m-v1"]);
    assert_eq!(script.calls(0), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_connection_costs_its_own_timeout_and_its_own_models_only() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["alive"], false));
    script.set(1, Behaviour::Hang);
    script.set(2, Behaviour::Ids(vec!["also-alive"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let settings = SettingsHandle::new(settings(3, Some(60), 3, json!({}))).load();
    let started = tokio::time::Instant::now();
    assert_eq!(ids(&catalog, &settings).await, ["alive", "also-alive"]);
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_failing_connection_keeps_its_last_good_models_for_the_grace_period() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["x"], false));
    script.set(1, Behaviour::Ids(vec!["y"], false));
    let catalog = script.catalog(Duration::from_secs(30));
    let settings = SettingsHandle::new(settings(2, Some(1), 10, json!({}))).load();
    assert_eq!(ids(&catalog, &settings).await, ["x", "y"]);

    script.set(1, Behaviour::Fail);
    tokio::time::advance(Duration::from_secs(2)).await;
    let _ = catalog.lookup(&settings); // stale: refresh, which fails for connection 1
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        ids(&catalog, &settings).await,
        ["x", "y"],
        "within the grace period"
    );

    tokio::time::advance(Duration::from_secs(40)).await;
    let _ = catalog.lookup(&settings);
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(
        ids(&catalog, &settings).await,
        ["x"],
        "after the grace period"
    );
}

#[tokio::test(start_paused = true)]
async fn static_and_disabled_connections_make_no_call() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["fetched"], false));
    script.set(1, Behaviour::Ids(vec!["never"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let configs =
        json!({"1": {"enable": false}, "2": {"model_ids": ["dep-1", "dep-2"], "prefix_id": "az"}});
    let settings = SettingsHandle::new(settings(3, Some(60), 10, configs)).load();
    assert_eq!(
        ids(&catalog, &settings).await,
        ["fetched", "az.dep-1", "az.dep-2"]
    );
    assert_eq!((script.calls(1), script.calls(2)), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_settings_update_starts_a_new_list() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["old"], false));
    script.set(1, Behaviour::Ids(vec!["new"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let handle = SettingsHandle::new(settings(1, Some(600), 10, json!({})));
    assert_eq!(ids(&catalog, &handle.load()).await, ["old"]);
    handle.store(settings(2, Some(600), 10, json!({"0": {"enable": false}})));
    assert_eq!(ids(&catalog, &handle.load()).await, ["new"]);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_api_lists_nothing_and_fetches_nothing() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["m"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let mut source = settings(1, Some(60), 10, json!({})).to_source();
    source.enable = Some(false);
    let settings = SettingsHandle::new(source.build().unwrap()).load();
    assert!(ids(&catalog, &settings).await.is_empty());
    assert_eq!(script.calls(0), 0);
}

#[tokio::test(start_paused = true)]
async fn m7_the_first_connection_with_an_id_wins() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["shared", "only0", "shared"], false));
    script.set(1, Behaviour::Ids(vec!["shared", "only1"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let settings = SettingsHandle::new(settings(2, Some(60), 10, json!({}))).load();
    let snapshot = catalog.snapshot(&settings).await;
    assert_eq!(
        snapshot.ids().collect::<Vec<_>>(),
        ["shared", "only0", "only1"]
    );
    assert_eq!(snapshot.connection_of("shared"), Some(0));
    assert_eq!(snapshot.connection_of("only1"), Some(1));
    let body: Value = serde_json::from_slice(&snapshot.to_json(None)).unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][2]["urlIdx"], 1);
}

#[tokio::test]
async fn a_filter_that_keeps_every_model_gets_the_list_rendered_once() {
    let script = Script::default();
    script.set(0, Behaviour::Ids(vec!["a", "b", "c"], false));
    let catalog = script.catalog(Duration::from_secs(60));
    let settings = SettingsHandle::new(settings(1, Some(60), 10, json!({}))).load();
    let snapshot = catalog.snapshot(&settings).await;
    let full = snapshot.to_json(None);

    // Everything allowed: the same bytes, shared rather than rendered again.
    let all = snapshot.to_json(Some(&ListFilter::new(|_| true)));
    assert_eq!(all, full);
    assert_eq!(all.as_ptr(), full.as_ptr());

    // Some hidden: rendered for this caller, and only what it may see.
    let some = snapshot.to_json(Some(&ListFilter::new(|id| id != "b")));
    let body: Value = serde_json::from_slice(&some).unwrap();
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c"]);
    assert_eq!(body["object"], "list");
}
