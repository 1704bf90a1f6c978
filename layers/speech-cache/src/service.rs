use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tower_openai_core::{ApiRoute, Payload};
use tower_service::Service;

use crate::body::{Chunk, ResponseBody, Tee};
use crate::future::ResponseFuture;
use crate::layer::SpeechCacheLayer;
use crate::store::{Inner, SpeechStore, cache_key};

/// Answers `POST /audio/speech` from a [`SpeechStore`]. See the [crate docs](crate).
#[derive(Clone, Debug)]
pub struct SpeechCache<S> {
    inner: S,
    store: SpeechStore,
}

impl<S> SpeechCache<S> {
    /// Wrap `inner`, caching in `store`.
    pub fn new(inner: S, store: SpeechStore) -> Self {
        Self { inner, store }
    }

    /// A layer caching in `store`.
    pub fn layer(store: SpeechStore) -> SpeechCacheLayer {
        SpeechCacheLayer::new(store)
    }

    /// The store.
    pub fn store(&self) -> &SpeechStore {
        &self.store
    }

    tower_openai_util::define_inner_service_accessors!();
}

const CACHE_HEADER: &str = "x-speech-cache";

fn mark<B>(res: &mut Response<B>, value: &'static str) {
    res.headers_mut()
        .insert(CACHE_HEADER, HeaderValue::from_static(value));
}

/// Releases the fill of a key if the request that claimed it ends without handing it to a
/// writer (an upstream error, a caller that hung up).
struct Claim {
    store: Arc<Inner>,
    key: Option<String>,
}

impl Claim {
    fn hand_over(mut self) -> String {
        self.key.take().unwrap_or_default()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.store.release(&key);
        }
    }
}

async fn read_hit(store: &Inner, key: &str) -> Option<Response<Full<Bytes>>> {
    let entry = store.lookup(key)?;
    match tokio::fs::read(store.bin_path(key)).await {
        Ok(bytes) => {
            let mut res = Response::new(Full::new(Bytes::from(bytes)));
            if let Ok(ct) = HeaderValue::from_str(&entry.content_type) {
                res.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            mark(&mut res, "hit");
            Some(res)
        }
        Err(e) => {
            tracing::warn!(key, error = %e, "cached speech file is gone; fetching again");
            store.forget(key);
            None
        }
    }
}

/// How many chunks the tee may hold for a writer that lags behind the caller; past that the
/// answer is not cached (the caller's stream never waits for the disk).
pub(crate) const TEE_CHUNKS: usize = 64;

/// How long a request waits for another request filling the same speech before it fetches
/// its own (uncached) copy.
pub(crate) const FILL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A file of this cache's own: created afresh (never through a stale file or a symlink),
/// readable by the gateway's user only (it holds the spoken text's audio).
async fn create_private(path: &std::path::Path) -> std::io::Result<tokio::fs::File> {
    let _ = tokio::fs::remove_file(path).await;
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// Write a streamed answer to a temporary file; commit it only after its clean end.
async fn write(
    store: Arc<Inner>,
    key: String,
    content_type: String,
    mut rx: mpsc::Receiver<Chunk>,
) {
    // Counted until the entry is committed or discarded: a clean shutdown waits for it.
    let _writing = store.writing();
    let temp = store.dir.join(format!("{key}.bin.tmp"));
    let meta_temp = store.dir.join(format!("{key}.json.tmp"));
    let result: std::io::Result<Option<u64>> = async {
        let mut file = create_private(&temp).await?;
        let mut size = 0u64;
        let mut complete = false;
        while let Some(chunk) = rx.recv().await {
            match chunk {
                Chunk::Data(bytes) => {
                    size += bytes.len() as u64;
                    if size > store.max_bytes() {
                        return Ok(None); // larger than the whole cache
                    }
                    file.write_all(&bytes).await?;
                }
                Chunk::End => {
                    complete = true;
                    break;
                }
            }
        }
        if !complete {
            return Ok(None);
        }
        file.sync_all().await?;
        drop(file);
        // The metadata is what a restart needs to serve the audio: its content type. The
        // request (the spoken text) is not kept.
        let meta = serde_json::json!({"content_type": content_type}).to_string();
        let mut meta_file = create_private(&meta_temp).await?;
        meta_file.write_all(meta.as_bytes()).await?;
        meta_file.sync_all().await?;
        drop(meta_file);
        tokio::fs::rename(&meta_temp, store.meta_path(&key)).await?;
        // The audio last: an entry exists once both files are in place.
        tokio::fs::rename(&temp, store.bin_path(&key)).await?;
        // Both files count against the budget.
        Ok(Some(size + meta.len() as u64))
    }
    .await;
    match result {
        Ok(Some(size)) => {
            store.admit(key.clone(), size, content_type);
            tracing::debug!(key, size, "speech cached");
        }
        Ok(None) => {
            let _ = tokio::fs::remove_file(&temp).await;
            tracing::debug!(
                key,
                "speech not cached: the answer was cut off, too large, or outran the disk"
            );
        }
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            let _ = tokio::fs::remove_file(&meta_temp).await;
            tracing::warn!(key, error = %e, "speech cache write failed");
        }
    }
    store.release(&key);
}

impl<S, B, ResBody> Service<Request<B>> for SpeechCache<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = match req.extensions().get::<Payload>() {
            Some(p)
                if self.store.is_enabled() && ApiRoute::of(&req) == Some(ApiRoute::AudioSpeech) =>
            {
                cache_key(p.original())
            }
            _ => return ResponseFuture::inner(self.inner.call(req)),
        };
        let store = self.store.inner().clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let future: BoxFuture<'static, Result<Self::Response, S::Error>> = async move {
            if let Some(hit) = read_hit(&store, &key).await {
                return Ok(hit.map(ResponseBody::Local));
            }
            let claim = match store.claim(&key) {
                Ok(()) => Claim {
                    store: store.clone(),
                    key: Some(key.clone()),
                },
                Err(filling) => {
                    // Another request is fetching the same speech: wait for it, then serve
                    // its file; if it failed, fetch without caching.
                    let notified = filling.notified();
                    if store.is_filling(&key) {
                        // A filler that is slow (or stuck) is waited for only so long.
                        let _ = tokio::time::timeout(FILL_WAIT, notified).await;
                    }
                    if let Some(hit) = read_hit(&store, &key).await {
                        return Ok(hit.map(ResponseBody::Local));
                    }
                    let mut res = inner.call(req).await?;
                    mark(&mut res, "bypass");
                    return Ok(res.map(ResponseBody::Inner));
                }
            };
            let mut res = inner.call(req).await?;
            if !res.status().is_success() {
                // S-5 fixed: the upstream's status and body, and nothing cached.
                return Ok(res.map(ResponseBody::Inner));
            }
            let content_type = res
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("audio/mpeg")
                .to_owned();
            let (tx, rx) = mpsc::channel(TEE_CHUNKS);
            let key = claim.hand_over();
            tokio::spawn(write(store, key, content_type, rx));
            mark(&mut res, "miss");
            Ok(res.map(|b| ResponseBody::Tee(Tee::new(b, tx))))
        }
        .boxed();
        ResponseFuture::boxed(future)
    }
}

#[cfg(test)]
mod readiness {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::{BodyExt, Full};
    use tokio_test::{assert_pending, assert_ready_ok};
    use tower_openai_core::{ApiRoute, Payload};

    use crate::{SpeechCacheLayer, SpeechStore};

    /// A speech request the cache fetches calls the instance `poll_ready` readied (the mock
    /// panics on a call to one that was not).
    #[tokio::test]
    async fn a_fetch_calls_the_service_poll_ready_readied() {
        let dir = std::env::temp_dir().join(format!(
            "speech-readiness-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        let store = SpeechStore::open(&dir, 1 << 20).unwrap();
        let (mut svc, mut handle) =
            tower_test::mock::spawn_layer::<Request<()>, Response<Full<Bytes>>, _>(
                SpeechCacheLayer::new(store),
            );
        handle.allow(0);
        assert_pending!(svc.poll_ready());
        handle.allow(1);
        assert_ready_ok!(svc.poll_ready());
        let mut req = Request::post("/audio/speech").body(()).unwrap();
        req.extensions_mut().insert(ApiRoute::AudioSpeech);
        req.extensions_mut().insert(Payload::new(Bytes::from_static(
            br#"{"model":"tts-1","input":"hi","voice":"alloy"}"#,
        )));
        let mut call = tokio::spawn(svc.call(req));
        let (_, respond) = tokio::select! {
            next = handle.next_request() => next.unwrap(),
            ended = &mut call => panic!("the call ended before reaching the service: {ended:?}"),
        };
        respond.send_response(Response::new(Full::new(Bytes::from_static(b"mp3"))));
        let res = call.await.unwrap().unwrap();
        assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "mp3");
        assert_pending!(svc.poll_ready());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn unique_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}
