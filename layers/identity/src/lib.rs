//! Who is calling: a request's API key → [`User`].
//!
//! The key is `Authorization: Bearer <key>`, or, when there is no `Authorization`, the value
//! of the key header ([`DEFAULT_KEY_HEADER`] `x-api-key`, as Anthropic clients send it;
//! [`IdentifyLayer::key_header`] names another). Both headers with different keys, or either
//! header twice, are refused: which key would count cannot be told. The key header is removed
//! from every request, so the caller's key goes no further. A user whose role is
//! [`Pending`](tower_openai_core::Role::Pending) is identified (the access line names them)
//! and refused with 403 `pending_user`.
//!
//! [`IdentifyLayer`] sits at the edge, above the layers that report requests. It puts the
//! caller ([`User`]) in the request extensions or, when the caller cannot be identified, the
//! answer they are owed ([`Unidentified`]: a 401 `invalid_api_key`), for the routes that need
//! a caller to give. So every request, refused or not, is reported with its caller when
//! known, and a route that needs none (a health check) is not refused here.
//!
//! Callers come from a [`KeyStore`]: keys are looked up by their SHA-256 digest
//! ([`digest`]), never kept in the clear. [`MemoryKeys`] is the in-memory store (the
//! gateway's TOML users); a database-backed store implements the same trait and serves from
//! memory too (the request path never waits on a database). [`Everyone`] identifies every
//! caller as one user, without a key (a single-user deployment).
//!
//! A kept-alive connection usually presents the same key on every request: each
//! [`Identify`] (one per connection behind a server) remembers the last key that identified a
//! caller, and the store's [`generation`](KeyStore::generation) it was found in, and compares
//! the next request's key with it in constant time instead of hashing it. A store that
//! changes (a key revoked) moves its generation, and the next request is looked up again.
//!
//! A request that already carries a [`User`] or an [`Unidentified`] (your own
//! authentication, or a guard above this layer) is left as it is.
//!
//! # Extensions
//! - writes [`User`] or [`Unidentified`] in the request (reads them, to leave a request a
//!   step above decided on).
//!
//! [`User`]: tower_openai_core::User
//!
//! # Example
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::{Role, User};
//! use tower_openai_identity::{IdentifyLayer, MemoryKeys, Unidentified, digest};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let alice = User { id: "alice".into(), role: Role::User, ..User::default() };
//! let keys = MemoryKeys::new([(digest(b"sk-alice"), alice)]);
//! let svc = ServiceBuilder::new()
//!     .layer(IdentifyLayer::new(keys))
//!     .service_fn(|req: Request<()>| async move {
//!         let who = match req.extensions().get::<User>() {
//!             Some(user) => user.id.to_string(),
//!             None => req.extensions().get::<Unidentified>().unwrap().refusal().status().to_string(),
//!         };
//!         Ok::<_, std::convert::Infallible>(Response::new(who))
//!     });
//!
//! let req = Request::get("/v1/models").header("authorization", "Bearer sk-alice").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap().into_body(), "alice");
//! let req = Request::get("/v1/models").header("authorization", "Bearer sk-mallory").body(()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap().into_body(), "401 Unauthorized");
//! # }
//! ```

mod service;
mod store;

pub use crate::service::{DEFAULT_KEY_HEADER, Identify, IdentifyLayer, Unidentified};
pub use crate::store::{Everyone, KeyStore, MemoryKeys, digest};
