//! [`ResponsesLayer`] and its service.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_openai_core::{ApiRoute, ErrorResponse, Payload, SelectedConnection};
use tower_openai_util::body::media_type;
use tower_openai_util::body::{self, ConvertWhole, ReframedBody, Whole};
use tower_openai_util::future::Rejectable;
use tower_service::Service;

use crate::options::{ApiType, ResponsesOptions};
use crate::stream::ChatStream;
use crate::{chat_to_responses, responses_to_chat};

/// The largest JSON answer converted (a larger one ends the body with an error).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Sends Chat Completions requests routed to an `api_type: "responses"` connection as
/// Responses requests, and turns their answers (JSON and streams) back into Chat
/// Completions. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct ResponsesLayer;

impl ResponsesLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for ResponsesLayer {
    type Service = Responses<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Responses { inner }
    }
}

/// The service of [`ResponsesLayer`].
#[derive(Clone, Debug)]
pub struct Responses<S> {
    inner: S,
}

impl<S> Responses<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The layer.
    pub fn layer() -> ResponsesLayer {
        ResponsesLayer
    }

    tower_openai_util::define_inner_service_accessors!();
}

/// What the answer of a converted request is turned back into.
#[derive(Clone, Copy, Debug)]
struct Converted {
    include_usage: bool,
}

impl<S, B, ResBody> Service<Request<B>> for Responses<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<tower_openai_core::ResponseBody<ResBody>>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let responses = req.extensions().get::<ApiRoute>() == Some(&ApiRoute::ChatCompletions)
            && req
                .extensions()
                .get::<SelectedConnection>()
                .and_then(|c| c.0.options::<ResponsesOptions>().ok())
                .is_some_and(|o| o.api_type == ApiType::Responses);
        if !responses {
            return ResponseFuture {
                inner: Rejectable::inner(self.inner.call(req)),
                converted: None,
            };
        }
        match convert_request(&mut req) {
            Ok(converted) => ResponseFuture {
                inner: Rejectable::inner(self.inner.call(req)),
                converted: Some(converted),
            },
            Err(refusal) => ResponseFuture {
                inner: Rejectable::rejected(refusal),
                converted: None,
            },
        }
    }
}

/// The payload converted, the path pointed at `responses`.
fn convert_request<B>(req: &mut Request<B>) -> Result<Converted, ErrorResponse> {
    let Some(payload) = req.extensions_mut().get_mut::<Payload>() else {
        return Err(
            ErrorResponse::bad_request("A chat request needs a JSON body")
                .with_code("invalid_body"),
        );
    };
    let chat: Map<String, Value> = serde_json::from_slice(&payload.to_bytes()).map_err(|_| {
        ErrorResponse::bad_request("The body is not a JSON object").with_code("invalid_body")
    })?;
    let include_usage = chat
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        == Some(&Value::Bool(true));
    let converted = chat_to_responses(&chat).map_err(|e| {
        ErrorResponse::bad_request(format!(
            "Cannot send this chat to a Responses upstream: {e}"
        ))
        .with_code("invalid_value")
    })?;
    let bytes = serde_json::to_vec(&converted)
        .map_err(|_| ErrorResponse::internal("could not write the converted request"))?;
    *payload = Payload::new(Bytes::from(bytes));
    let path = req.uri().path();
    let new_path = match path.strip_suffix("chat/completions") {
        Some(base) => format!("{base}responses"),
        None => "/responses".to_owned(),
    };
    let new = match req.uri().query() {
        Some(q) => format!("{new_path}?{q}"),
        None => new_path,
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(
        new.parse()
            .map_err(|_| ErrorResponse::bad_request("Bad path").with_code("invalid_request"))?,
    );
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|_| ErrorResponse::bad_request("Bad path").with_code("invalid_request"))?;
    Ok(Converted { include_usage })
}

/// Response future of [`Responses`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: Rejectable<F>,
    converted: Option<Converted>,
}

impl<F, B, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<tower_openai_core::ResponseBody<B>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let Some(converted) = this.converted.take().filter(|_| res.status().is_success()) else {
            return Poll::Ready(Ok(res.map(ResponseBody::Passed)));
        };
        let essence = media_type(res.headers()).map(str::to_ascii_lowercase);
        // The answer's length changes.
        res.headers_mut().remove(header::CONTENT_LENGTH);
        Poll::Ready(Ok(match essence.as_deref() {
            Some("text/event-stream") => res.map(|inner| {
                let stream = ChatStream::new(converted.include_usage);
                ResponseBody::Converted(ReframedBody::new(inner, body::Converted::Events(stream)))
            }),
            Some("application/json") => res.map(|inner| {
                let json = Whole::new(MAX_ANSWER_BYTES, JsonAnswer);
                ResponseBody::Converted(ReframedBody::new(inner, body::Converted::Json(json)))
            }),
            _ => res.map(ResponseBody::Passed),
        }))
    }
}

/// The response body of [`Responses`]: passed, or converted back to Chat Completions.
#[pin_project(project = BodyProj)]
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// Not converted.
    Passed(#[pin] B),
    /// Converted.
    Converted(#[pin] ReframedBody<B, Conversion>),
}

/// How an answer is converted back to Chat Completions.
pub type Conversion = body::Converted<JsonAnswer, ChatStream>;

/// A whole Responses JSON answer as a chat completion.
#[derive(Clone, Copy, Debug)]
pub struct JsonAnswer;

impl ConvertWhole for JsonAnswer {
    fn convert(&mut self, body: Option<&[u8]>) -> Bytes {
        match body.and_then(|b| serde_json::from_slice::<Value>(b).ok()) {
            Some(response) => Bytes::from(responses_to_chat(&response).to_string()),
            None => ErrorResponse::bad_gateway("The upstream's answer is not a Responses object")
                .to_bytes(),
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project() {
            BodyProj::Passed(inner) => inner.poll_frame(cx),
            BodyProj::Converted(inner) => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Passed(inner) => inner.is_end_stream(),
            Self::Converted(inner) => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Passed(inner) => inner.size_hint(),
            Self::Converted(inner) => inner.size_hint(),
        }
    }
}
