//! A scripted fetch service for the catalog tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::{Value, json};
use tower::service_fn;
use tower_openai_core::{Body, SelectedConnection};
use tower_openai_models::Catalog;
use tower_openai_settings::{Settings, SettingsSource};

/// How each connection answers `GET /models`.
#[derive(Clone)]
pub enum Behaviour {
    /// These ids; the version (number of fetches so far) is appended when `versioned`.
    Ids(Vec<&'static str>, bool),
    /// Never answers.
    Hang,
    /// 500.
    Fail,
}

#[derive(Clone, Default)]
pub struct Script {
    behaviour: Arc<Mutex<HashMap<usize, Behaviour>>>,
    calls: Arc<Mutex<HashMap<usize, usize>>>,
}

impl Script {
    pub fn set(&self, conn: usize, b: Behaviour) {
        self.behaviour.lock().unwrap().insert(conn, b);
    }

    pub fn calls(&self, conn: usize) -> usize {
        self.calls.lock().unwrap().get(&conn).copied().unwrap_or(0)
    }

    pub fn catalog(&self, grace: Duration) -> Catalog {
        let script = self.clone();
        // A scripted stand-in for the endpoint stack.
        Catalog::builder(tower_openai_models::AppliesCredentials(service_fn(move |req: Request<Body>| {
            let script = script.clone();
            async move {
                let conn = req.extensions().get::<SelectedConnection>().unwrap().connection().index();
                assert_eq!(req.uri().path(), "/models");
                let n = {
                    let mut calls = script.calls.lock().unwrap();
                    let n = calls.entry(conn).or_default();
                    *n += 1;
                    *n
                };
                let behaviour = script.behaviour.lock().unwrap().get(&conn).cloned().unwrap_or(Behaviour::Fail);
                match behaviour {
                    Behaviour::Ids(ids, versioned) => {
                        let data: Vec<Value> = ids
                            .iter()
                            .map(|id| json!({"id": if versioned { format!("{id}-v{n}") } else { (*id).to_owned() }}))
                            .collect();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::from(json!({"data": data}).to_string()))
                                .unwrap(),
                        )
                    }
                    Behaviour::Hang => std::future::pending().await,
                    Behaviour::Fail => Ok(Response::builder()
                        .status(500)
                        .header("content-type", "application/json")
                        .body(Full::<Bytes>::from("{}"))
                        .unwrap()),
                }
            }
        })))
        .grace(grace)
        .build()
    }
}

pub fn settings(urls: usize, ttl: Option<u64>, timeout: u64, configs: Value) -> Settings {
    SettingsSource {
        base_urls: Some((0..urls).map(|i| format!("http://conn{i}/v1")).collect()),
        configs: configs.as_object().cloned(),
        models_cache_ttl: Some(ttl.map(Duration::from_secs)),
        timeout_model_list: Some(Some(Duration::from_secs(timeout))),
        ..Default::default()
    }
    .build()
    .unwrap()
}

pub async fn ids(catalog: &Catalog, settings: &Arc<Settings>) -> Vec<String> {
    catalog
        .snapshot(settings)
        .await
        .ids()
        .map(str::to_owned)
        .collect()
}
