//! Who may use which model (Open WebUI rules AC-1 … AC-6).
//!
//! One evaluator, [`may_use`], decides both questions — "is this model in the user's list?"
//! and "may this request use this model?" — so they can never disagree:
//!
//! - An admin, or any user while `BYPASS_MODEL_ACCESS_CONTROL` is on: every model.
//! - Otherwise a model needs an access record ([`AccessRecords`]) that the user owns or may
//!   read: `access_control` null is public, `{}` is owner-only, and read lists grant by user
//!   id or group (AC-1). Base models with no record are neither listed nor usable for plain
//!   users (AC-2, AC-3).
//!
//! The layer:
//!
//! - refuses a request whose `model` (JSON member or multipart field) the caller may not use
//!   with 403 `model_not_found` and Open WebUI's wording, which does not say whether the
//!   model exists: unknown and forbidden models get the same answer;
//! - fails closed: a JSON body whose `model` cannot be read (not a string, repeated) is
//!   refused with 400, and a model route ([`ApiRoute`](tower_openai_core::ApiRoute)) without
//!   a model with 400 `missing_model`, for every non-admin caller;
//! - hands the models layer a [`ListFilter`](tower_openai_core::ListFilter) for `GET /models`
//!   (the cached list is shared; the filtered view is built per request, with no JSON parse);
//! - refuses a request without a [`User`](tower_openai_core::User) with 401 (fail closed),
//!   and every request of a [`Pending`](tower_openai_core::Role::Pending) user with 403
//!   `pending_user`, whatever the records or the bypass say;
//! - has no bypass but the setting: no query parameter or header turns it off (Open WebUI's
//!   `?bypass_filter=true`, AC-6, is a hole not copied).
//!
//! Requests without a model (a `GET`, a passthrough without a JSON body) are not checked
//! here: the policy layer decides whether they may pass at all.
//!
//! # Extensions
//! - reads [`User`](tower_openai_core::User) (required),
//!   [`SettingsSnapshot`](tower_openai_settings::SettingsSnapshot),
//!   [`Payload`](tower_openai_core::Payload), [`Form`](tower_openai_core::payload::Form) and
//!   [`ApiRoute`](tower_openai_core::ApiRoute);
//! - writes [`ListFilter`](tower_openai_core::ListFilter) on `GET /models…`.
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_acl::{AccessControl, AclLayer, ModelAccess, StaticRecords};
//! use tower_openai_core::{Payload, Role, User};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let records = StaticRecords::new([(
//!     "team-model".to_owned(),
//!     ModelAccess { owner: "admin".into(), access: AccessControl::Read { groups: vec!["research".into()], users: vec![] } },
//! )]);
//! let svc = ServiceBuilder::new()
//!     .layer(AclLayer::new(records))
//!     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(Bytes::new())) });
//!
//! let request = |groups: Vec<String>| {
//!     let mut req = Request::post("/chat/completions").body(()).unwrap();
//!     req.extensions_mut().insert(User { id: "carol".into(), role: Role::User, groups: groups.into(), ..User::default() });
//!     req.extensions_mut().insert(Payload::new(Bytes::from_static(br#"{"model":"team-model"}"#)));
//!     req
//! };
//! let member = svc.clone().oneshot(request(vec!["research".into()])).await.unwrap();
//! assert_eq!(member.status(), StatusCode::OK);
//! let outsider = svc.oneshot(request(vec![])).await.unwrap();
//! assert_eq!(outsider.status(), StatusCode::FORBIDDEN);
//! # }
//! ```

mod records;
mod service;

pub use crate::records::{AccessControl, AccessRecords, ModelAccess, StaticRecords, may_use};
pub use crate::service::{Acl, AclLayer, ResponseFuture};
