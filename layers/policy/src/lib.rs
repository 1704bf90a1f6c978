//! The route policy: which requests the stack admits, and as what.
//!
//! A request is one of a fixed set of **model routes**, routed by the model its body names
//! and access-checked, or the **passthrough**, which is off unless turned on:
//!
//! | route | kind |
//! |---|---|
//! | `POST chat/completions`, `completions`, `embeddings`, `responses`, `audio/speech`, `images/generations`, `moderations` | JSON body, `model` member ([`RouteKind::ModelJson`]) |
//! | `POST audio/transcriptions`, `audio/translations`, `images/edits`, `images/variations` | multipart form, `model` field ([`RouteKind::ModelForm`]) |
//! | `GET models`, `GET models/{url_idx}`, `GET models/{id}` | answered from the model list ([`RouteKind::Models`]) |
//! | anything else (`GET chat/completions`, `files`, `batches`, …) | the passthrough ([`RouteKind::Passthrough`]) |
//!
//! The layer:
//!
//! - refuses, before anything else reads the request, a path that servers could read
//!   differently (an empty or dot segment, `%2e`, `%2f`, `%5c`, `\`, `;`, an encoded
//!   unreserved character, a model route spelt in another case): 400 `invalid_path`;
//! - refuses the passthrough with 403 `passthrough_disabled` unless
//!   [`PolicyLayer::passthrough`] turned it on;
//! - refuses a non-admin's passthrough path with a `deployments` segment (an Azure
//!   deployment the caller names, instead of the one the checked model selects): 403
//!   `forbidden_path`;
//! - writes the [`ApiRoute`] the layers below read: the payload collector reads a model
//!   route's body as JSON whatever its content type says (or as a form) and refuses what it
//!   cannot read, the select layer refuses a model route without a model.
//!
//! Paths are matched below the API prefix (`/chat/completions`, not `/v1/chat/completions`):
//! stack it under the router that strips the prefix (axum's `nest("/v1", …)` does).
//!
//! A model route's query string is never forwarded (an upstream such as LiteLLM would take
//! `?model=` over the checked body); the passthrough keeps it.
//!
//! # Extensions
//! - reads [`User`](tower_openai_core::User) (an absent user is not an admin);
//! - writes [`ApiRoute`] in the request, and in the response (every answer, the policy's own
//!   refusals and the layers' below included, so that layers above know its route; a
//!   refusal of the policy's own counts as the passthrough).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::ApiRoute;
//! use tower_openai_policy::PolicyLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(PolicyLayer::new())
//!     .service_fn(|req: Request<()>| async move {
//!         let route = req.extensions().get::<ApiRoute>().unwrap().as_str();
//!         Ok::<_, Infallible>(Response::new(Bytes::from(route)))
//!     });
//!
//! let chat = Request::post("/chat/completions").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(chat).await.unwrap().status(), StatusCode::OK);
//!
//! // Not a model route, and the passthrough is off.
//! let files = Request::get("/files").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(files).await.unwrap().status(), StatusCode::FORBIDDEN);
//!
//! // A path the upstream would read as /chat/completions.
//! let odd = Request::post("//chat/completions").body(()).unwrap();
//! assert_eq!(svc.oneshot(odd).await.unwrap().status(), StatusCode::BAD_REQUEST);
//! # }
//! ```
//!
//! [`ApiRoute`]: tower_openai_core::ApiRoute
//! [`RouteKind::ModelJson`]: tower_openai_core::RouteKind::ModelJson
//! [`RouteKind::ModelForm`]: tower_openai_core::RouteKind::ModelForm
//! [`RouteKind::Models`]: tower_openai_core::RouteKind::Models
//! [`RouteKind::Passthrough`]: tower_openai_core::RouteKind::Passthrough

mod layer;
mod path;
mod service;

pub use self::layer::PolicyLayer;
pub use self::path::{InvalidPath, classify, names_deployment};
pub use self::service::{Policy, ResponseFuture};
