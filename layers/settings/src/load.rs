//! The step that loads the settings snapshot for each request.

use std::task::{Context, Poll};

use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use crate::{SettingsHandle, SettingsSnapshot};

/// Loads the current settings snapshot into each request, once.
///
/// [`LoadSettingsLayer`] puts a [`SettingsSnapshot`] of a [`SettingsHandle`] in the request
/// extensions. Every layer below reads that one snapshot, so a settings update that lands
/// while the request is in flight never mixes old and new values in one request.
///
/// # Example
/// ```
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_openai_settings::{LoadSettingsLayer, Settings, SettingsHandle, SettingsSnapshot};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handle = SettingsHandle::new(Settings::for_urls(["http://127.0.0.1:9001/v1"]).unwrap());
/// let svc = ServiceBuilder::new()
///     .layer(LoadSettingsLayer::new(handle))
///     .service_fn(|req: Request<()>| async move {
///         let settings = &req.extensions().get::<SettingsSnapshot>().unwrap().0;
///         Ok::<_, std::convert::Infallible>(Response::new(settings.base_urls()[0].clone()))
///     });
/// let res = svc.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(res.body(), "http://127.0.0.1:9001/v1");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct LoadSettingsLayer {
    handle: SettingsHandle,
}

impl LoadSettingsLayer {
    /// Load from `handle`.
    pub fn new(handle: SettingsHandle) -> Self {
        Self { handle }
    }
}

impl<S> Layer<S> for LoadSettingsLayer {
    type Service = LoadSettings<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadSettings::new(inner, self.handle.clone())
    }
}

/// Puts the current settings snapshot in each request; see [`LoadSettingsLayer`].
#[derive(Clone, Debug)]
pub struct LoadSettings<S> {
    inner: S,
    handle: SettingsHandle,
}

impl<S> LoadSettings<S> {
    /// Wrap `inner`.
    pub fn new(inner: S, handle: SettingsHandle) -> Self {
        Self { inner, handle }
    }

    /// A layer loading from `handle`.
    pub fn layer(handle: SettingsHandle) -> LoadSettingsLayer {
        LoadSettingsLayer::new(handle)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwrap the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for LoadSettings<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.extensions_mut()
            .insert(SettingsSnapshot(self.handle.load()));
        self.inner.call(req)
    }
}
