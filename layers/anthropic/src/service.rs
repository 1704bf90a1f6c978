//! [`AnthropicLayer`] and its service.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;
use serde_json::{Map, Value, json};
use tower_layer::Layer;
use tower_openai_core::{ApiRoute, Payload, SelectedConnection};
use tower_openai_util::body::media_type;
use tower_openai_util::body::{ConvertWhole, Converted, ReframedBody, Whole};
use tower_service::Service;

use crate::errors::anthropic_error;
use crate::stream::MessagesStream;
use crate::{chat_to_message, estimate_input_tokens, messages_to_chat};

/// The largest JSON answer converted (a larger one ends the body with an error).
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Serves Anthropic's Messages API on every connection: sent as it is to Anthropic
/// connections, translated to and from Chat Completions for the others, `count_tokens`
/// answered locally for them. See the [crate docs](crate).
#[derive(Clone, Copy, Debug, Default)]
pub struct AnthropicLayer;

impl AnthropicLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl<S> Layer<S> for AnthropicLayer {
    type Service = Anthropic<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Anthropic { inner }
    }
}

/// The service of [`AnthropicLayer`].
#[derive(Clone, Debug)]
pub struct Anthropic<S> {
    inner: S,
}

impl<S> Anthropic<S> {
    /// Wrap `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The layer.
    pub fn layer() -> AnthropicLayer {
        AnthropicLayer
    }

    tower_openai_util::define_inner_service_accessors!();
}

/// What a request became.
enum Plan {
    /// Sent as it is (not a Messages request, or an Anthropic connection).
    Pass,
    /// Sent as Chat Completions; the answer converted back.
    Translated { input_estimate: u64 },
    /// Answered here.
    Answer(Response<Full<Bytes>>),
}

impl<S, B, ResBody> Service<Request<B>> for Anthropic<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        match plan(&mut req).unwrap_or_else(|answer| Plan::Answer(*answer)) {
            Plan::Answer(res) => ResponseFuture {
                kind: Kind::Answer(Some(res)),
            },
            Plan::Pass => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                    translated: None,
                },
            },
            Plan::Translated { input_estimate } => ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                    translated: Some(input_estimate),
                },
            },
        }
    }
}

fn refusal(status: StatusCode, message: String) -> Box<Response<Full<Bytes>>> {
    let mut res = Response::new(Full::new(anthropic_error(
        status,
        json!({"error": {"message": message}})
            .to_string()
            .as_bytes(),
    )));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Box::new(res)
}

/// What to do with `req`; `Err` is an answer made here (boxed: it is the rare case).
fn plan<B>(req: &mut Request<B>) -> Result<Plan, Box<Response<Full<Bytes>>>> {
    let route = req.extensions().get::<ApiRoute>().copied();
    if !matches!(
        route,
        Some(ApiRoute::Messages | ApiRoute::MessagesCountTokens)
    ) {
        return Ok(Plan::Pass);
    }
    match req.extensions().get::<SelectedConnection>() {
        Some(SelectedConnection(c)) if !c.is_anthropic() => {}
        // Anthropic's own API, or no connection chosen: as it is.
        _ => return Ok(Plan::Pass),
    }
    let Some(payload) = req.extensions_mut().get_mut::<Payload>() else {
        return Err(refusal(
            StatusCode::BAD_REQUEST,
            "A Messages request needs a JSON body".into(),
        ));
    };
    let request: Map<String, Value> =
        serde_json::from_slice(&payload.to_bytes()).map_err(|_| {
            refusal(
                StatusCode::BAD_REQUEST,
                "The body is not a JSON object".into(),
            )
        })?;
    let input_estimate = estimate_input_tokens(&request);
    if route == Some(ApiRoute::MessagesCountTokens) {
        let mut res = Response::new(Full::new(Bytes::from(
            json!({"input_tokens": input_estimate}).to_string(),
        )));
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Err(Box::new(res));
    }
    let chat = messages_to_chat(&request).map_err(|e| {
        refusal(
            StatusCode::BAD_REQUEST,
            format!("Cannot send this request to a Chat Completions upstream: {e}"),
        )
    })?;
    let bytes = serde_json::to_vec(&chat).map_err(|_| {
        refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not write the translated request".into(),
        )
    })?;
    *payload = Payload::new(Bytes::from(bytes));
    req.extensions_mut().insert(ApiRoute::ChatCompletions);
    let path = req.uri().path();
    let new_path = match path.strip_suffix("messages") {
        Some(base) => format!("{base}chat/completions"),
        None => "/chat/completions".to_owned(),
    };
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = new_path.parse().ok();
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| refusal(StatusCode::BAD_REQUEST, "Bad path".into()))?;
    Ok(Plan::Translated { input_estimate })
}

/// Response future of [`Anthropic`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    kind: Kind<F>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<F> {
    Inner {
        #[pin]
        future: F,
        translated: Option<u64>,
    },
    Answer(Option<Response<Full<Bytes>>>),
}

impl<F, B, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (future, translated) = match self.project().kind.project() {
            KindProj::Answer(res) => {
                let res = res.take().unwrap_or_else(|| {
                    *refusal(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "polled after completion".into(),
                    )
                });
                return Poll::Ready(Ok(res.map(|body| ResponseBody::Local { body })));
            }
            KindProj::Inner { future, translated } => (future, translated),
        };
        let mut res = ready!(future.poll(cx))?;
        let Some(input_estimate) = translated.take().filter(|_| res.status().is_success()) else {
            return Poll::Ready(Ok(res.map(|inner| ResponseBody::Passed { inner })));
        };
        let essence = media_type(res.headers()).map(str::to_ascii_lowercase);
        res.headers_mut().remove(header::CONTENT_LENGTH);
        Poll::Ready(Ok(match essence.as_deref() {
            Some("text/event-stream") => res.map(|inner| {
                let stream = MessagesStream::new(input_estimate);
                ResponseBody::Converted {
                    inner: ReframedBody::new(inner, Converted::Events(stream)),
                }
            }),
            _ => {
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                res.map(|inner| {
                    let json = Whole::new(MAX_ANSWER_BYTES, JsonAnswer { input_estimate });
                    ResponseBody::Converted {
                        inner: ReframedBody::new(inner, Converted::Json(json)),
                    }
                })
            }
        }))
    }
}

/// The response body of [`Anthropic`]: passed, answered here, or converted back to Messages.
#[pin_project(project = BodyProj)]
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// Not converted.
    Passed {
        /// The inner body.
        #[pin]
        inner: B,
    },
    /// Answered by the layer (`count_tokens`, a refusal).
    Local {
        /// The answer.
        #[pin]
        body: Full<Bytes>,
    },
    /// Converted back to Messages.
    Converted {
        /// The upstream's body, converted.
        #[pin]
        inner: ReframedBody<B, Conversion>,
    },
}

/// How an answer is converted back to Messages.
pub type Conversion = Converted<JsonAnswer, MessagesStream>;

/// A whole chat completion as a Message.
#[derive(Clone, Copy, Debug)]
pub struct JsonAnswer {
    /// The input tokens counted here, for an answer without usage.
    pub input_estimate: u64,
}

impl ConvertWhole for JsonAnswer {
    fn convert(&mut self, body: Option<&[u8]>) -> Bytes {
        let Some(body) = body else {
            return anthropic_error(
                StatusCode::BAD_GATEWAY,
                b"The upstream's answer is too large to translate",
            );
        };
        match serde_json::from_slice::<Value>(body) {
            Ok(chat) if chat.get("choices").is_some() => {
                Bytes::from(chat_to_message(&chat, self.input_estimate).to_string())
            }
            _ => anthropic_error(
                StatusCode::BAD_GATEWAY,
                b"The upstream's answer is not a Chat Completions object",
            ),
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
            BodyProj::Passed { inner } => inner.poll_frame(cx),
            BodyProj::Local { body } => body
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(|never| match never {}))),
            BodyProj::Converted { inner } => inner.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Passed { inner } => inner.is_end_stream(),
            Self::Local { body } => body.is_end_stream(),
            Self::Converted { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Passed { inner } => inner.size_hint(),
            Self::Local { body } => body.size_hint(),
            Self::Converted { inner } => inner.size_hint(),
        }
    }
}
