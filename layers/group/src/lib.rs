//! Model groups: one model served by several connections.
//!
//! With model groups on (the catalog's [`groups`](https://docs.rs/tower-openai-models) option),
//! a model id that several enabled connections list is one model: select routes it to the
//! group ([`ConnectionGroup`](tower_openai_core::ConnectionGroup)) and [`GroupLayer`], stacked
//! right below select, chooses the connection of each attempt:
//!
//! - **Priority tiers.** The connections with the lowest `priority` (a per-connection config
//!   key, default 0) are used; the next tier only while every connection of the better one is
//!   cooling down.
//! - **Weighted, load-aware choice** within a tier: two connections drawn at random in
//!   proportion to their `weight` (default 1), the one with the lower cost kept, the cost
//!   being the peak-EWMA time to the response head × (requests in flight + 1).
//!   That is `tower::balance::p2c` with `tower::load::PeakEwma`, which this layer does not use
//!   as such: a tower balancer owns a fixed set of endpoint services and picks one when it
//!   becomes ready, before it sees the request, while here the endpoints are connections
//!   inside one shared stack, and the set differs per request (per model). The latency
//!   estimate decays with time (over about a second), and costs within a factor of 2 count
//!   as equal, so at rest the shares follow the weights.
//! - **Failover before the first byte**: a connect error, a timeout before the response head,
//!   or a 429, 500, 502, 503 or 504 sends the request to the next connection (the best tier
//!   first), at most [`GroupPolicy::max_attempts`] attempts in all. Only a JSON payload the
//!   stack holds whole is sent again (rewritten per connection: prefix, Azure deployment,
//!   credentials, by the layers below); a form or a streamed body goes out once. A response
//!   whose head was returned is never retried. The attempts are tower's own
//!   [`Retry`](tower::retry::Retry) with a failover [`Policy`](tower::retry::Policy) that binds
//!   the next attempt to its connection (linkerd's outbound retries have the same shape); each
//!   attempt is sent through a clone of the stack below, readied first, and gives its
//!   connection's load back when it ends, answered or abandoned.
//! - **Cooldown**: after [`GroupPolicy::cooldown_failures`] failures in a row, or a 429/503
//!   with `Retry-After`, a connection is skipped for [`GroupPolicy::cooldown`] (or the
//!   `Retry-After`), then gets one probe request; a failed probe cools it down again. If every
//!   connection cools down, the one whose cooldown ends first is used: a group never refuses
//!   on its own.
//! - **A retry budget**, tower's own [`TpsBudget`](tower::retry::budget::TpsBudget): retries
//!   may add at most [`GroupPolicy::retry_ratio`] of the first attempts (over 10 s, and at
//!   least [`GroupPolicy::retry_min_per_sec`] a second), so a failing group cannot multiply
//!   the load on its upstreams.
//!
//! `weight` and `priority` are this layer's section of a connection's config,
//! [`GroupOptions`], read through [`Connection::options`](tower_openai_settings::Connection::options);
//! check them when the settings load with `settings.check::<GroupOptions>()` (an unchecked bad
//! section counts as the defaults, and logs an error).
//!
//! The state (load, latency, failures, cooldowns) is shared by every request of the process
//! through [`Groups`], lock-free on the request path. Metrics: [`names`].
//!
//! # Extensions
//! - reads [`ConnectionGroup`](tower_openai_core::ConnectionGroup) (the connections and the
//!   model as the caller named it; requests without one pass through untouched),
//!   [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot),
//!   [`ApiRoute`](tower_openai_core::ApiRoute) and the
//!   [`Payload`](tower_openai_core::Payload) (only a JSON model route's payload is sent
//!   again), and [`User`](tower_openai_core::User) (a cooldown needs failures from two
//!   callers);
//! - writes, per attempt, [`SelectedConnection`](tower_openai_core::SelectedConnection),
//!   [`RequestedModel`](tower_openai_core::RequestedModel) and the payload's `model`.
//!
//! # Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Empty;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{ApiRoute, ConnectionGroup, Payload, SelectedConnection};
//! use tower_openai_settings::{Settings, SettingsSnapshot};
//! use tower_openai_group::{GroupPolicy, Groups};
//!
//! // Two connections serve the model; the first answers 503.
//! let settings = Arc::new(Settings::for_urls(["http://a/v1", "http://b/v1"]).unwrap());
//! let upstream = service_fn(|req: Request<Empty<Bytes>>| async move {
//!     let SelectedConnection(c) = req.extensions().get().unwrap();
//!     let status = if c.index() == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!     Ok::<_, std::convert::Infallible>(Response::builder().status(status).body(Empty::<Bytes>::new()).unwrap())
//! });
//! let groups = Groups::new(GroupPolicy::default());
//! let svc = ServiceBuilder::new().layer(groups.layer()).service(upstream);
//!
//! for _ in 0..4 {
//!     // What select and the payload collector leave for the layer.
//!     let mut req = Request::post("/chat/completions").body(Empty::new()).unwrap();
//!     let ext = req.extensions_mut();
//!     ext.insert(SettingsSnapshot(settings.clone()));
//!     ext.insert(ApiRoute::ChatCompletions);
//!     ext.insert(Payload::new(Bytes::from_static(br#"{"model":"m"}"#)));
//!     ext.insert(ConnectionGroup { connections: Arc::from([0, 1]), model: "m".into() });
//!     // Whichever connection is tried first, the caller gets the working one's answer.
//!     assert_eq!(svc.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//! }
//! # }
//! ```

mod attempt;
mod failover;
mod health;
pub mod names;
mod options;
mod service;

pub use crate::options::GroupOptions;
pub use crate::service::{Group, GroupLayer, GroupPolicy, Groups, ResponseFuture};
