//! The store against real databases: a SQLite file, and a throwaway Postgres cluster (the
//! Postgres tests fail rather than skip when `TOWER_OPENAI_REQUIRE_POSTGRES` is set, as in
//! CI). Each scenario runs on both.

#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tower_openai_acl::{AccessControl, AccessRecords};
use tower_openai_core::Role;
use tower_openai_identity::{KeyStore, digest};
use tower_openai_store::{
    Access, Budget, CreateKey, CreateUser, Group, LiveDirectory, ModelRecord, Period, Price,
    PutModel, PutPrice, SeedUser, SqlStore, StoreError, UpdateUser,
};
use tower_openai_test_util::postgres::{Postgres, postgres_or_skip};

fn sqlite_url() -> String {
    let dir = tower_openai_test_util::scratch_dir("store");
    format!("sqlite://{}", dir.join("gateway.db").display())
}

/// Each scenario on a fresh SQLite file and a fresh Postgres cluster.
async fn on_both<F, Fut>(scenario: F)
where
    F: Fn(SqlStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    scenario(SqlStore::open(&sqlite_url()).await.unwrap()).await;
    let pg: Option<Postgres> = postgres_or_skip();
    if let Some(pg) = &pg {
        scenario(SqlStore::open(&pg.url()).await.unwrap()).await;
    }
}

fn admin(id: &str) -> CreateUser {
    CreateUser {
        id: id.into(),
        role: "admin".into(),
        ..CreateUser::default()
    }
}

fn code(e: StoreError) -> String {
    let r = e.to_response();
    format!("{} {}", r.status().as_u16(), r.code().unwrap_or_default())
}

#[tokio::test]
async fn the_first_user_is_an_admin_and_gets_a_key() {
    on_both(|store| async move {
        let refused = store
            .create_user(
                "op",
                CreateUser {
                    id: "bob".into(),
                    role: "user".into(),
                    ..CreateUser::default()
                },
            )
            .await
            .unwrap_err();
        assert_eq!(code(refused), "400 admin_required");
        let (user, key) = store.create_user("op", admin("root")).await.unwrap();
        assert_eq!(user.role, "admin");
        let key = key.expect("the first user gets a key");
        assert!(
            key.key.starts_with("sk-gw-") && key.key.len() >= 6 + 43,
            "{}",
            key.key.len()
        );
        assert_eq!(&key.key[..10], key.prefix);
        // The directory identifies them by that key.
        let live = LiveDirectory::new(Default::default());
        store.reload(&live).await.unwrap();
        assert_eq!(
            live.user(&digest(key.key.as_bytes())).unwrap().role,
            Role::Admin
        );
        // The key is stored as its digest only: no listing shows it.
        let listed = serde_json::to_string(&store.keys(None).await.unwrap()).unwrap();
        assert!(!listed.contains(&key.key[10..]), "{listed}");
    })
    .await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_written() {
    on_both(|store| async move {
        store.create_user("op", admin("root")).await.unwrap();
        let before = store.version().await.unwrap();
        let cases: Vec<(CreateUser, &str)> = vec![
            (admin("root"), "409 conflict"),
            (
                CreateUser {
                    id: "x".into(),
                    role: "owner".into(),
                    ..CreateUser::default()
                },
                "400 invalid_body",
            ),
            (
                CreateUser {
                    id: "".into(),
                    role: "user".into(),
                    ..CreateUser::default()
                },
                "400 invalid_body",
            ),
            (
                CreateUser {
                    id: "a/b".into(),
                    role: "user".into(),
                    ..CreateUser::default()
                },
                "400 invalid_body",
            ),
            (
                CreateUser {
                    id: "x".into(),
                    role: "user".into(),
                    groups: vec!["nope".into()],
                    ..CreateUser::default()
                },
                "400 unknown_group",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                code(store.create_user("op", input).await.unwrap_err()),
                want
            );
        }
        assert_eq!(
            code(
                store
                    .update_user("op", "ghost", UpdateUser::default())
                    .await
                    .unwrap_err()
            ),
            "404 not_found"
        );
        assert_eq!(
            code(store.revoke_key("op", "ghost").await.unwrap_err()),
            "404 not_found"
        );
        assert_eq!(
            code(store.delete_group("op", "ghost").await.unwrap_err()),
            "404 not_found"
        );
        assert_eq!(
            code(
                store
                    .create_key(
                        "op",
                        CreateKey {
                            user: "ghost".into(),
                            ..CreateKey::default()
                        }
                    )
                    .await
                    .unwrap_err()
            ),
            "404 not_found"
        );
        // Refused writes left no trace: not in the users, not in the version, not in the audit.
        assert_eq!(store.version().await.unwrap(), before);
        assert_eq!(store.users().await.unwrap().len(), 1);
        assert_eq!(store.audit(100).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_last_admin_stays() {
    on_both(|store| async move {
        store.create_user("op", admin("root")).await.unwrap();
        let demote = UpdateUser {
            role: Some("user".into()),
            ..UpdateUser::default()
        };
        assert_eq!(
            code(
                store
                    .update_user("op", "root", demote.clone())
                    .await
                    .unwrap_err()
            ),
            "409 last_admin"
        );
        assert_eq!(
            code(store.delete_user("op", "root").await.unwrap_err()),
            "409 last_admin"
        );
        store.create_user("root", admin("second")).await.unwrap();
        store.update_user("second", "root", demote).await.unwrap();
        assert_eq!(
            code(store.delete_user("op", "second").await.unwrap_err()),
            "409 last_admin"
        );
        store.delete_user("second", "root").await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_revoked_or_deleted_users_key_identifies_nobody() {
    on_both(|store| async move {
        store.create_user("op", admin("root")).await.unwrap();
        let (_, key) = store
            .create_user(
                "root",
                CreateUser {
                    id: "bob".into(),
                    role: "user".into(),
                    create_key: true,
                    ..CreateUser::default()
                },
            )
            .await
            .unwrap();
        let key = key.unwrap();
        let second = store
            .create_key(
                "root",
                CreateKey {
                    user: "bob".into(),
                    name: Some("ci".into()),
                    expires_at: None,
                    budget: Some(Budget {
                        usd: 5.0,
                        period: Period::Month,
                    }),
                },
            )
            .await
            .unwrap();
        let live = LiveDirectory::new(Default::default());
        store.reload(&live).await.unwrap();
        assert!(live.user(&digest(key.key.as_bytes())).is_some());
        store.revoke_key("root", &key.id).await.unwrap();
        store.reload(&live).await.unwrap();
        assert!(live.user(&digest(key.key.as_bytes())).is_none());
        assert!(live.user(&digest(second.key.as_bytes())).is_some());
        let listed = store.keys(Some("bob")).await.unwrap();
        assert_eq!(listed.iter().filter(|k| k.revoked).count(), 1);
        store.delete_user("root", "bob").await.unwrap();
        store.reload(&live).await.unwrap();
        assert!(live.user(&digest(second.key.as_bytes())).is_none());
        assert!(
            store
                .keys(Some("bob"))
                .await
                .unwrap()
                .iter()
                .all(|k| k.revoked)
        );
        let actions: Vec<String> = store
            .audit(10)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        assert_eq!(
            actions,
            [
                "user.delete",
                "key.revoke",
                "key.create",
                "user.create",
                "user.create"
            ]
        );
    })
    .await;
}

#[tokio::test]
async fn groups_and_records_decide_access() {
    on_both(|store| async move {
        store.create_user("op", admin("root")).await.unwrap();
        store
            .create_group(
                "root",
                Group {
                    id: "research".into(),
                    name: String::new(),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            code(
                store
                    .create_group(
                        "root",
                        Group {
                            id: "research".into(),
                            name: String::new()
                        }
                    )
                    .await
                    .unwrap_err()
            ),
            "409 conflict"
        );
        store
            .create_user(
                "root",
                CreateUser {
                    id: "ann".into(),
                    role: "user".into(),
                    groups: vec!["research".into()],
                    ..CreateUser::default()
                },
            )
            .await
            .unwrap();
        let access = Access(AccessControl::Read {
            groups: vec!["research".into()],
            users: vec![],
        });
        store
            .put_model(
                "root",
                "m",
                PutModel {
                    owner: None,
                    access,
                },
            )
            .await
            .unwrap();
        let live = LiveDirectory::new(Default::default());
        store.reload(&live).await.unwrap();
        let ann = live.load().member("ann").unwrap().user.clone();
        assert_eq!(ann.groups.as_ref(), ["research".to_owned()]);
        assert_eq!(live.allows("m", &ann), Some(true));
        // Deleting the group takes it from the user and from the record.
        store.delete_group("root", "research").await.unwrap();
        store.reload(&live).await.unwrap();
        let ann = live.load().member("ann").unwrap().user.clone();
        assert!(ann.groups.is_empty());
        assert_eq!(live.allows("m", &ann), Some(false));
        let records = store.models().await.unwrap();
        assert_eq!(
            records[0].access,
            Access(AccessControl::Read {
                groups: vec![],
                users: vec![]
            })
        );
        assert_eq!(records[0].owner, "root");
        store.delete_model("root", "m").await.unwrap();
        store.reload(&live).await.unwrap();
        assert_eq!(live.allows("m", &ann), None);
    })
    .await;
}

#[tokio::test]
async fn seeding_inserts_what_is_missing_and_leaves_the_rest() {
    on_both(|store| async move {
        let seed = |name: &str| SeedUser {
            id: "alice".into(),
            name: name.into(),
            email: String::new(),
            role: Role::Admin,
            groups: vec!["ops".into()],
            rate_limit: None,
            budget: None,
            keys: vec![digest(b"sk-alice")],
        };
        let record = ModelRecord {
            id: "m".into(),
            owner: "alice".into(),
            access: Access(AccessControl::Public),
        };
        assert!(
            store
                .seed(&[seed("Alice")], std::slice::from_ref(&record))
                .await
                .unwrap()
                .is_empty()
        );
        store
            .update_user(
                "alice",
                "alice",
                UpdateUser {
                    name: Some("Changed".into()),
                    ..UpdateUser::default()
                },
            )
            .await
            .unwrap();
        // A second start with the same file: the database wins.
        let kept = store.seed(&[seed("Alice")], &[record]).await.unwrap();
        assert_eq!(kept, ["alice", "m"]);
        assert_eq!(store.user("alice").await.unwrap().name, "Changed");
        let keys = store.keys(Some("alice")).await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "config");
        let live = LiveDirectory::new(Default::default());
        store.reload(&live).await.unwrap();
        assert_eq!(
            live.user(&digest(b"sk-alice")).unwrap().groups.as_ref(),
            ["ops".to_owned()]
        );
    })
    .await;
}

#[tokio::test]
async fn a_change_by_one_process_reaches_anothers_watch() {
    on_both(|store| async move {
        // Two handles on one database, as two processes would have.
        let other = store.clone();
        let live = LiveDirectory::new(Default::default());
        let version = other.reload(&live).await.unwrap();
        let watch = tokio::spawn(other.watch(
            live.clone(),
            version,
            Duration::from_millis(100),
            Duration::from_secs(60),
        ));
        let (_, key) = store.create_user("op", admin("root")).await.unwrap();
        let digest = digest(key.unwrap().key.as_bytes());
        let mut seen = false;
        for _ in 0..40 {
            if live.user(&digest).is_some() {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        watch.abort();
        assert!(seen, "the watch did not pick the new user up");
    })
    .await;
}

#[tokio::test]
async fn last_used_at_is_written_in_batches() {
    on_both(|store| async move {
        let (_, key) = store.create_user("op", admin("root")).await.unwrap();
        let key = key.unwrap();
        let live = LiveDirectory::new(Default::default());
        let version = store.reload(&live).await.unwrap();
        assert_eq!(store.keys(None).await.unwrap()[0].last_used_at, None);
        let before = store.audit(100).await.unwrap().len();
        let watch = tokio::spawn(store.clone().watch(
            live.clone(),
            version,
            Duration::from_millis(100),
            Duration::from_secs(1),
        ));
        assert!(live.user(&digest(key.key.as_bytes())).is_some());
        let mut used = None;
        for _ in 0..50 {
            used = store.keys(None).await.unwrap()[0].last_used_at;
            if used.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        watch.abort();
        let used = used.expect("last_used_at was written");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - 5..=now).contains(&used), "{used} vs {now}");
        // Not an admin write: no audit entry, no new version for the others to reload.
        assert_eq!(store.audit(100).await.unwrap().len(), before);
        assert_eq!(store.version().await.unwrap(), version);
    })
    .await;
}

#[tokio::test]
async fn a_database_that_went_away_refuses_writes_and_keeps_serving() {
    let Some(mut pg) = postgres_or_skip() else {
        return;
    };
    let store = SqlStore::open(&pg.url()).await.unwrap();
    let (_, key) = store.create_user("op", admin("root")).await.unwrap();
    let key = key.unwrap();
    let live = LiveDirectory::new(Default::default());
    let version = store.reload(&live).await.unwrap();
    let watch = tokio::spawn(store.clone().watch(
        live.clone(),
        version,
        Duration::from_millis(100),
        Duration::from_secs(60),
    ));
    pg.stop();
    let refused = store
        .create_group(
            "root",
            Group {
                id: "g".into(),
                name: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(refused), "503 identity_store_unavailable");
    // The poll fails too, and what was loaded is still served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(live.user(&digest(key.key.as_bytes())).is_some());
    watch.abort();
}

#[tokio::test]
async fn prices_are_set_served_seeded_and_removed() {
    on_both(|store| async move {
        let put = |input: f64| PutPrice {
            input,
            output: 4.0 * input,
            cached_input: None,
        };
        store.put_price("op", "gpt-4o*", put(2.5)).await.unwrap();
        store
            .put_price(
                "op",
                "gpt-4o-mini",
                PutPrice {
                    cached_input: Some(0.075),
                    ..put(0.15)
                },
            )
            .await
            .unwrap();
        for bad in ["", "gpt*4o", "**"] {
            assert_eq!(
                code(store.put_price("op", bad, put(1.0)).await.unwrap_err()),
                "400 invalid_body",
                "{bad:?}"
            );
        }
        assert_eq!(
            code(store.put_price("op", "m", put(-1.0)).await.unwrap_err()),
            "400 invalid_body"
        );
        assert_eq!(
            code(store.put_price("op", "m", put(f64::NAN)).await.unwrap_err()),
            "400 invalid_body"
        );
        let live = LiveDirectory::new(Default::default());
        store.reload(&live).await.unwrap();
        assert_eq!(live.price("gpt-4o-mini").unwrap().cached_input, Some(0.075));
        assert_eq!(live.price("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert!(live.price("o3").is_none());
        // Seeding leaves a price the store has, and adds one it has not.
        let kept = store
            .seed_prices(&[
                Price {
                    model: "gpt-4o*".into(),
                    input: 99.0,
                    output: 99.0,
                    cached_input: None,
                },
                Price {
                    model: "o3".into(),
                    input: 2.0,
                    output: 8.0,
                    cached_input: None,
                },
            ])
            .await
            .unwrap();
        assert_eq!(kept, ["gpt-4o*"]);
        store.reload(&live).await.unwrap();
        assert_eq!(live.price("gpt-4o").unwrap().input, 2.5);
        assert_eq!(live.price("o3").unwrap().output, 8.0);
        assert_eq!(store.prices().await.unwrap().len(), 3);
        store.delete_price("op", "o3").await.unwrap();
        assert_eq!(
            code(store.delete_price("op", "o3").await.unwrap_err()),
            "404 not_found"
        );
        store.reload(&live).await.unwrap();
        assert!(live.price("o3").is_none());
    })
    .await;
}

#[tokio::test]
async fn spend_batches_add_up_and_report_four_ways() {
    use tower_openai_store::{SpendGroup, SpendRow, SpendTotals};
    on_both(|store| async move {
        let row = |day: &str, user: &str, key: &str, model: &str, cost: f64| SpendRow {
            day: day.into(),
            user: user.into(),
            key: key.into(),
            model: model.into(),
            totals: SpendTotals {
                requests: 1,
                input_tokens: 100,
                output_tokens: 10,
                cached_tokens: 40,
                estimated_requests: u64::from(model == "m2"),
                cost_usd: cost,
            },
        };
        store
            .add_spend(&[
                row("2026-12-05", "alice", "k1", "m1", 0.25),
                row("2026-12-06", "alice", "k2", "m1", 0.5),
                row("2026-12-06", "bob", "k3", "m2", 1.0),
            ])
            .await
            .unwrap();
        // A second batch adds to the row that is there.
        store
            .add_spend(&[row("2026-12-06", "alice", "k2", "m1", 0.125)])
            .await
            .unwrap();
        let report = |group| {
            let store = store.clone();
            async move {
                store
                    .spend("2026-12-01", "2026-12-31", group)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|g| (g.group, g.totals.requests, g.totals.cost_usd))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            report(SpendGroup::User).await,
            [("alice".into(), 3, 0.875), ("bob".into(), 1, 1.0)]
        );
        assert_eq!(
            report(SpendGroup::Key).await,
            [
                ("k1".into(), 1, 0.25),
                ("k2".into(), 2, 0.625),
                ("k3".into(), 1, 1.0)
            ]
        );
        assert_eq!(
            report(SpendGroup::Model).await,
            [("m1".into(), 3, 0.875), ("m2".into(), 1, 1.0)]
        );
        assert_eq!(
            report(SpendGroup::Day).await,
            [
                ("2026-12-05".into(), 1, 0.25),
                ("2026-12-06".into(), 3, 1.625)
            ]
        );
        let bob = store
            .spend("2026-12-06", "2026-12-06", SpendGroup::User)
            .await
            .unwrap();
        assert_eq!(
            bob[1].totals,
            SpendTotals {
                requests: 1,
                input_tokens: 100,
                output_tokens: 10,
                cached_tokens: 40,
                estimated_requests: 1,
                cost_usd: 1.0,
            }
        );
        // `from` and `to` are inclusive; nothing outside them.
        assert!(
            store
                .spend("2026-11-01", "2026-12-04", SpendGroup::Day)
                .await
                .unwrap()
                .is_empty()
        );
        let (users, keys) = store.spent_since("2026-12-06").await.unwrap();
        assert_eq!(users["alice"], 0.625);
        assert_eq!(keys["k3"], 1.0);
        assert!(!keys.contains_key("k1"));
        let (users, _) = store.spent_since("").await.unwrap();
        assert_eq!(users["alice"], 0.875);
    })
    .await;
}
