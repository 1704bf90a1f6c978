use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_openai_core::ApiRoute;
use tower_openai_core::extensions::ReasoningModel;
use tower_openai_core::{ErrorResponse, Payload, ResponseBody, SelectedConnection};
use tower_service::Service;

use crate::layer::ReasoningLayer;
use crate::rewrite::{
    logit_bias, stream_options, system_role_for, tokens_and_roles, tool_messages,
};
use crate::strategy::{DefaultReasoningModels, ReasoningModels};

/// Rewrites chat completions for reasoning models. See the [crate docs](crate).
pub struct Reasoning<S, R = DefaultReasoningModels> {
    inner: S,
    rule: Arc<R>,
}

impl<S> Reasoning<S> {
    /// Wrap `inner` with the default rule.
    pub fn new(inner: S) -> Self {
        Self::from_shared(inner, Arc::new(DefaultReasoningModels))
    }

    /// A layer with the default rule.
    pub fn layer() -> ReasoningLayer {
        ReasoningLayer::new()
    }
}

impl<S, R> Reasoning<S, R> {
    pub(crate) fn from_shared(inner: S, rule: Arc<R>) -> Self {
        Self { inner, rule }
    }

    tower_openai_util::define_inner_service_accessors!();
}

impl<S: Clone, R> Clone for Reasoning<S, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            rule: self.rule.clone(),
        }
    }
}

impl<S: fmt::Debug, R> fmt::Debug for Reasoning<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reasoning")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, R> Reasoning<S, R>
where
    R: ReasoningModels,
{
    fn rewrite<B>(&self, req: &mut Request<B>) -> Result<(), ErrorResponse> {
        if ApiRoute::of(req) != Some(ApiRoute::ChatCompletions) {
            return Ok(());
        }
        let upstream_is_openai = req
            .extensions()
            .get::<SelectedConnection>()
            .is_some_and(|c| c.connection().is_openai());
        let Some(payload) = req.extensions_mut().get_mut::<Payload>() else {
            return Ok(());
        };
        if payload.check().is_err() {
            return Ok(()); // select already answered for bodies that are not objects
        }
        // What the rewrite needs from the model, decided before the payload is edited (a
        // lower-cased copy only for a model that has upper-case letters).
        let (reasoning, system_role) = {
            let model = payload
                .model()
                .map_err(|e| e.to_response())?
                .unwrap_or_default();
            let model = if model.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(model.to_ascii_lowercase())
            } else {
                Cow::Borrowed(model)
            };
            let reasoning = self.rule.is_reasoning(&model);
            (reasoning, reasoning.then(|| system_role_for(&model)))
        };
        logit_bias(payload)?;
        stream_options(payload).map_err(|e| e.to_response())?;
        tool_messages(payload).map_err(|e| e.to_response())?;
        tokens_and_roles(payload, system_role, upstream_is_openai).map_err(|e| e.to_response())?;
        // Written only when it is one: an absent mark reads as "not a reasoning model"
        // below, and most requests then cost no extension.
        if reasoning {
            req.extensions_mut().insert(ReasoningModel(true));
        }
        Ok(())
    }
}

impl<S, R, B, ResBody> Service<Request<B>> for Reasoning<S, R>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    R: ReasoningModels,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match self.rewrite(&mut req) {
            Ok(()) => ResponseFuture::inner(self.inner.call(req)),
            Err(e) => ResponseFuture::rejected(e),
        }
    }
}

tower_openai_util::check_response_future!(
    /// Response future of [`Reasoning`]: the inner service's, or the layer's own refusal.
);
