//! Composable tower layers that proxy any OpenAI-compatible API. The `openai-gateway`
//! application built from them is a crate of its own (`openai-gateway`, in this repository's
//! `gateway/` folder).
//!
//! Every concern is its own [`Layer`](tower::Layer), stacked on one generic upstream HTTP
//! service; put them in front of OpenAI, Azure OpenAI, OpenRouter, vLLM or llama.cpp, inside
//! your own hyper or axum service, and turn them on feature by feature.
//!
//! | module | feature | what it does |
//! |---|---|---|
//! | [`core`] | always | extensions, the payload, errors, bodies |
//! | [`settings`] | always | connections' settings, snapshots, the per-request snapshot step |
//! | [`time`] | always | timers reused between requests, body deadlines, the shutdown signal |
//! | [`rescue`] | always | transport failures turned into OpenAI-shaped 502/504 responses |
//! | [`collect`] | always | the payload collector: the body read once, under a cap and a deadline |
//! | [`upstream`] | `upstream` | the pooled upstream HTTP service at the bottom of a stack |
//! | [`models`] | `models` | the aggregated, cached model list and the catalog routing uses |
//! | [`select`] | `select` | routes each request to the connection that serves its model |
//! | [`auth`] | `auth` | upstream credentials: bearer, none, session, system OAuth, Entra ID |
//! | [`headers`] | `headers` | OpenRouter attribution, user-info and custom upstream headers |
//! | [`reasoning`] | `reasoning` | payload rewrites for reasoning models, `logit_bias` |
//! | [`azure`] | `azure` | Azure OpenAI deployment URLs, `api-version`, payload allowlist |
//! | [`responses`] | `responses` | Chat Completions on a Responses-only upstream (`api_type: "responses"`), converted both ways |
//! | [`anthropic`] | `anthropic` | Anthropic's Messages API: as it is to Anthropic connections, translated to Chat Completions for the others |
//! | [`identity`] | `identity` | who is calling: an API key to a user, through a key store |
//! | [`store`] | `store` (`sqlite`, `postgres`) | users, groups, keys and access records from memory, kept in a database |
//! | [`policy`] | `policy` | model routes vs the passthrough (off by default), path rules |
//! | [`acl`] | `acl` | per-user model access, one evaluator for listing and use |
//! | [`speech_cache`] | `speech-cache` | a disk cache for `POST /audio/speech` |
//! | [`observe`] | `observe` | access log and metrics when each body ends; token usage |
//! | [`group`] | `group` | model groups: balance, fail over before the head, cool down |
//! | [`ratelimit`] | `ratelimit` | requests and tokens per minute per caller |
//!
//! # The stack
//!
//! In a [`ServiceBuilder`](tower::ServiceBuilder), the first layer added is the outermost: a
//! request walks the layers top to bottom, the response walks back up. The gateway's order,
//! and the reason for each position:
//!
//! ```text
//! observe          one access line and the metrics per request, when its body ends
//! rescue           transport errors below → 502/504 JSON; above it, everything is a response
//! policy           model route or passthrough (off by default); odd paths refused
//! ratelimit        requests and tokens per user and minute (429 past them)
//! load_settings    one settings snapshot per request, before anything reads settings
//! collect_payload  the body of a model route read once, under the cap, and refused
//!                  unless it can be read whole (JSON object, or a form with one model)
//! acl              refuses a model the user may not use; hands models its list filter
//! models           GET /models from the shared catalog (no connection needed)
//! select           model → connection, prefix stripped; no model → connection 0
//! group            a grouped model: each attempt's connection, failover, cooldown
//! anthropic        Messages as they are to Anthropic connections, else as Chat Completions
//! usage            token usage of the answer (JSON or stream), a response extension
//! speech_cache     POST /audio/speech from disk; a hit costs nothing below
//! reasoning        reasoning-model rewrites (needs the outgoing model and the URL)
//! responses        chat sent to a Responses-only connection, its answer converted back
//! azure            deployment URL, api-version, payload allowlist
//! auth             the connection's credentials
//! headers          attribution, user info, custom headers
//! upstream         the pooled HTTP client; streams back
//! ```
//!
//! Layers pass data to each other as typed extensions ([`core::extensions`]): down in the
//! request's, up in the response's; each layer's docs say what it reads and writes. The
//! [`guide`] has the library guide (`guide::library`, with `full`), the [error
//! model](guide::errors) and [streaming semantics](guide::streaming); the `openai-gateway`
//! crate's docs have the operator's guides (configuration, security, limits, observability).
//! Comments and tests cite Open WebUI's rules by id (`C-4`, `M-6`, `CC-12`): [the
//! table](guide::rules).
//!
//! # With `ServiceBuilderExt`
//!
//! ```no_run
//! # #[cfg(feature = "full")] {
//! use tower::ServiceBuilder;
//! use tower_openai::ServiceBuilderExt;
//! use tower_openai::acl::StaticRecords;
//! use tower_openai::settings::{Settings, SettingsHandle};
//! use tower_openai::endpoint::Endpoint;
//! use tower_openai::models::Catalog;
//! use tower_openai::upstream::Upstream;
//!
//! let settings = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:8000/v1"]).unwrap());
//! let endpoint = Endpoint::builder(Upstream::new()).build();
//! let catalog = Catalog::new(endpoint.clone());
//! let stack = ServiceBuilder::new()
//!     .rescue()
//!     .policy()
//!     .load_settings(settings)
//!     .collect_payload(64 << 20)
//!     .acl(StaticRecords::default())
//!     .models(catalog.clone())
//!     .select(catalog)
//!     .reasoning()
//!     .service(endpoint);
//! # let _ = stack;
//! # }
//! ```
//!
//! Your own authentication inserts a [`core::User`] into the request extensions before the
//! stack (see `examples/axum_app.rs`).
//!
//! # A minimal stack
//! ```no_run
//! # #[cfg(feature = "upstream")] {
//! use tower::ServiceBuilder;
//! use tower_openai::settings::{LoadSettingsLayer, Settings, SettingsHandle};
//! use tower_openai::rescue::RescueLayer;
//! use tower_openai::collect::CollectPayloadLayer;
//! use tower_openai::upstream::Upstream;
//!
//! let settings = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:8000/v1"]).unwrap());
//! let stack = ServiceBuilder::new()
//!     .layer(RescueLayer::new())                  // transport errors → 502/504 JSON
//!     .layer(LoadSettingsLayer::new(settings))    // one settings snapshot per request
//!     .layer(CollectPayloadLayer::default())      // read the JSON body once, under a cap
//!     // … a layer that selects the connection (select, or your own) goes here …
//!     .service(Upstream::new());
//! # let _ = stack;
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

/// The README's Rust snippets, compiled as doctests.
#[cfg(all(doctest, feature = "full"))]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

mod builder;
pub use crate::builder::ServiceBuilderExt;

#[cfg(all(
    feature = "upstream",
    feature = "auth",
    feature = "headers",
    feature = "azure"
))]
pub mod endpoint;

/// Longer topics for library users. (The gateway's operator guides are in the
/// `openai-gateway` crate's docs.)
pub mod guide {
    #[cfg(feature = "full")]
    #[doc = include_str!("../docs/library.md")]
    pub mod library {}
    #[doc = include_str!("../docs/errors.md")]
    pub mod errors {}
    #[doc = include_str!("../docs/streaming.md")]
    pub mod streaming {}
    #[doc = include_str!("../docs/rules.md")]
    pub mod rules {}
}

/// The shared vocabulary (`tower-openai-core`).
pub mod core {
    pub use tower_openai_core::*;
}

/// What the layers are written with (`tower-openai-util`): the request-step futures, the
/// end-of-body hook, the converting body, the event-stream splitter. For a layer of your own.
pub mod util {
    pub use tower_openai_util::*;
}

/// Connection settings, their snapshots and the step that loads one per request
/// (`tower-openai-settings`).
pub mod settings {
    pub use tower_openai_settings::*;
}

/// Timers reused between requests, request-body deadlines, the shutdown signal
/// (`tower-openai-time`).
pub mod time {
    pub use tower_openai_time::*;
}

/// The payload collector (`tower-openai-collect`): the request body read once, under a cap.
pub mod collect {
    pub use tower_openai_collect::*;
}

/// Transport failures turned into 502/504/500 responses (`tower-openai-rescue`).
pub mod rescue {
    pub use tower_openai_rescue::*;
}

/// Users, groups, keys and model access records (`tower-openai-store`); `SqlStore` with the
/// `sqlite` or `postgres` feature.
#[cfg(feature = "store")]
pub mod store {
    pub use tower_openai_store::*;
}

/// Who is calling: API key → user (`tower-openai-identity`).
#[cfg(feature = "identity")]
pub mod identity {
    pub use tower_openai_identity::*;
}

/// The upstream HTTP service (`tower-openai-upstream`).
#[cfg(feature = "upstream")]
pub mod upstream {
    pub use tower_openai_upstream::*;
}

/// The model catalog and `GET /models` (`tower-openai-models`).
#[cfg(feature = "models")]
pub mod models {
    pub use tower_openai_models::*;
}

/// Routing by model (`tower-openai-select`).
#[cfg(feature = "select")]
pub mod select {
    pub use tower_openai_select::*;
}

/// Upstream credentials (`tower-openai-auth`).
#[cfg(feature = "auth")]
pub mod auth {
    pub use tower_openai_auth::*;
}

/// Upstream request headers (`tower-openai-headers`).
#[cfg(feature = "headers")]
pub mod headers {
    pub use tower_openai_headers::*;
}

/// Reasoning-model rewrites (`tower-openai-reasoning`).
#[cfg(feature = "reasoning")]
pub mod reasoning {
    pub use tower_openai_reasoning::*;
}

/// Azure OpenAI (`tower-openai-azure`).
#[cfg(feature = "azure")]
pub mod azure {
    pub use tower_openai_azure::*;
}

/// Chat Completions on a Responses-only upstream (`tower-openai-responses`).
#[cfg(feature = "responses")]
pub mod responses {
    pub use tower_openai_responses::*;
}

/// Anthropic's Messages API (`tower-openai-anthropic`).
#[cfg(feature = "anthropic")]
pub mod anthropic {
    pub use tower_openai_anthropic::*;
}

/// The route policy (`tower-openai-policy`).
#[cfg(feature = "policy")]
pub mod policy {
    pub use tower_openai_policy::*;
}

/// Per-user model access (`tower-openai-acl`).
#[cfg(feature = "acl")]
pub mod acl {
    pub use tower_openai_acl::*;
}

/// The text-to-speech cache (`tower-openai-speech-cache`).
#[cfg(feature = "speech-cache")]
pub mod speech_cache {
    pub use tower_openai_speech_cache::*;
}

/// Rate limits per caller (`tower-openai-ratelimit`).
#[cfg(feature = "ratelimit")]
pub mod ratelimit {
    pub use tower_openai_ratelimit::*;
}

/// Model groups (`tower-openai-group`).
#[cfg(feature = "group")]
pub mod group {
    pub use tower_openai_group::*;
}

/// The access log, metrics and token usage (`tower-openai-observe`).
#[cfg(feature = "observe")]
pub mod observe {
    pub use tower_openai_observe::*;
}
