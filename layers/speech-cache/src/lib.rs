//! A disk cache for text-to-speech (Open WebUI rules S-1 … S-6, with its bugs fixed).
//!
//! `POST /audio/speech` requests are answered from a [`SpeechStore`] when the same request
//! was answered before:
//!
//! - **Key**: the lower-case hex SHA-256 of the raw request body (S-2). Whitespace and key
//!   order matter; the user and connection do not (the acl layer above has already decided
//!   whether the caller may use the model).
//! - **Hit**: the file is served with the content type the upstream gave, without touching
//!   the upstream, its credentials or its headers (`x-speech-cache: hit`).
//! - **Miss**: the upstream's answer streams to the caller while it is written to a
//!   temporary file; only when the body ends cleanly with a 2xx status is the file fsynced
//!   and renamed into the cache (`x-speech-cache: miss`). A failed or cut-off answer is never
//!   cached (S-6 fixed). Concurrent identical misses make one upstream call: the others wait
//!   for it (at most 30 s, then they fetch an uncached copy) and are served its file. The
//!   writer is fed through a bounded channel: a disk slower than the caller loses the entry,
//!   never the caller's time.
//! - **Private**: the files are created afresh with mode 0600 (they are the spoken text's
//!   audio), and the metadata keeps only the content type, not the request.
//! - **Errors** keep the upstream's status and body (S-5 fixed: Open WebUI always answers
//!   500).
//! - **Bounded**: at most `max_bytes` on disk, audio and metadata together; the least
//!   recently used entries are deleted first. Entries survive restarts (the index is rebuilt
//!   from the folder), and [`SpeechStore::flush`] waits for the writes in progress, so a
//!   clean shutdown keeps the answers its callers received.
//!
//! Routed like any other model request (not only to `api.openai.com`, S-1 fixed).
//!
//! # Extensions
//! - reads [`ApiRoute`](tower_openai_core::ApiRoute) and
//!   [`Payload`](tower_openai_core::Payload) (requests other than `POST audio/speech` with
//!   one pass through).
//!
//! # Example
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_openai_core::Payload;
//! use tower_openai_speech_cache::{SpeechCacheLayer, SpeechStore};
//!
//! # #[tokio::main] async fn main() {
//! let dir = std::env::temp_dir().join(format!("speech-doc-{}", std::process::id()));
//! let store = SpeechStore::open(&dir, 10 << 20).unwrap();
//! let svc = ServiceBuilder::new()
//!     .layer(SpeechCacheLayer::new(store.clone()))
//!     .service_fn(|_: Request<()>| async {
//!         Ok::<_, Infallible>(Response::builder().header("content-type", "audio/mpeg").body(Full::from("ID3…")).unwrap())
//!     });
//! let speech = || {
//!     let mut req = Request::post("/audio/speech").body(()).unwrap();
//!     req.extensions_mut().insert(Payload::new(Bytes::from_static(br#"{"model":"tts-1","input":"hi","voice":"alloy"}"#)));
//!     req
//! };
//! let miss = svc.clone().oneshot(speech()).await.unwrap();
//! assert_eq!(miss.headers()["x-speech-cache"], "miss");
//! miss.into_body().collect().await.unwrap(); // the cache commits at the end of the body
//! # for _ in 0..100 { if store.len() == 1 { break } tokio::time::sleep(std::time::Duration::from_millis(10)).await; }
//! let hit = svc.oneshot(speech()).await.unwrap();
//! assert_eq!(hit.headers()["x-speech-cache"], "hit");
//! # std::fs::remove_dir_all(&dir).ok();
//! # }
//! ```

mod body;
mod future;
mod layer;
mod service;
mod store;

pub use crate::body::{ResponseBody, Tee};
pub use crate::future::ResponseFuture;
pub use crate::layer::SpeechCacheLayer;
pub use crate::service::SpeechCache;
pub use crate::store::{SpeechStore, cache_key};
