//! [`UsageLayer`] and its [`Usage`] service: token usage from answers and streams, into the
//! response's [`UsageReport`]. Stack it below [`ObserveLayer`](crate::ObserveLayer) (which
//! reads the report when the body ends) and above the upstream.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;
use serde_json::{Map, Value};
use tower_layer::Layer;
use tower_openai_core::extensions::{ApiRoute, MeterUsage};
use tower_openai_core::{
    Payload, PriceList, RequestedModel, SelectedConnection, TokenPrices, TokenUsage, UsageReport,
};
use tower_openai_util::body::media_type;
use tower_service::Service;

use crate::events::Events;
use crate::scan::UsageScanner;
use crate::text::{INPUT_KEYS, OUTPUT_KEYS, TextMeter};

/// The largest event held while looking for the usage chunk to remove (only with
/// [`UsageLayer::ask_streams`], for a caller that did not ask for usage). A longer event is
/// passed on as it is: a usage chunk is a few hundred bytes.
pub const MAX_HELD_EVENT_BYTES: usize = 1 << 20;

/// Reads the token usage of each answer (model routes and the passthrough) into a
/// [`UsageReport`] in its response extensions, for the layers above to read when the body
/// ends.
///
/// - A JSON answer's `usage` and a stream's usage chunk are found as the bytes pass
///   (frames are passed on as they come, unchanged, nothing is held).
/// - It also copies what the layers above report from the request into the response:
///   [`RequestedModel`] and [`SelectedConnection`]; so stack it below select (and below a
///   group layer: the connection is each attempt's). (The route comes up from the policy
///   layer, which puts [`ApiRoute`] on every answer.)
/// - With [`MeterUsage`] in the request (the caller's tokens are counted), a streamed chat
///   is asked for its usage and an answer that ends without usage is charged an estimate
///   ([`UsageReport::is_estimate`]): 4 bytes of the request's and the answer's text a token.
///
/// With [`ask_streams`](Self::ask_streams), a streamed chat that did not ask for usage is sent
/// with `stream_options.include_usage: true`, and the usage chunk that adds is removed from
/// what the caller receives, so token counts exist for every stream. That re-frames the stream
/// on event boundaries (an event is held until it is complete, at most
/// [`MAX_HELD_EVENT_BYTES`]). Off by default: the payload stays what the caller sent.
///
/// With [`prices`](Self::prices), each report also knows what its answer's tokens cost
/// ([`UsageReport::cost`]), the prices looked up once per request by the model the caller
/// named.
#[derive(Clone)]
pub struct UsageLayer {
    ask_streams: bool,
    response_model: bool,
    prices: Option<Arc<dyn PriceList>>,
}

impl std::fmt::Debug for UsageLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLayer")
            .field("ask_streams", &self.ask_streams)
            .field("response_model", &self.response_model)
            .field("prices", &self.prices.is_some())
            .finish()
    }
}

impl Default for UsageLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl UsageLayer {
    /// Read usage; change nothing.
    pub fn new() -> Self {
        Self {
            ask_streams: false,
            response_model: true,
            prices: None,
        }
    }

    /// Price each answer from `prices` ([`UsageReport::cost`]).
    pub fn prices(mut self, prices: impl PriceList) -> Self {
        self.prices = Some(Arc::new(prices));
        self
    }

    /// Also read the model the answer names ([`UsageReport::response_model`], on by default),
    /// which only traces report (`gen_ai.response.model`): off, the answer is searched for
    /// its usage alone.
    pub fn response_model(mut self, read: bool) -> Self {
        self.response_model = read;
        self
    }

    /// Ask streamed chats for usage (`GATEWAY_STREAM_USAGE`).
    pub fn ask_streams(mut self, ask: bool) -> Self {
        self.ask_streams = ask;
        self
    }
}

impl<S> Layer<S> for UsageLayer {
    type Service = Usage<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Usage {
            inner,
            ask_streams: self.ask_streams,
            response_model: self.response_model,
            prices: self.prices.clone(),
        }
    }
}

/// The service of [`UsageLayer`].
#[derive(Clone)]
pub struct Usage<S> {
    inner: S,
    ask_streams: bool,
    response_model: bool,
    prices: Option<Arc<dyn PriceList>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Usage<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Usage")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Usage<S> {
    tower_openai_util::define_inner_service_accessors!();
}

impl<S, B, ResBody> Service<Request<B>> for Usage<S>
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
        let ext = req.extensions();
        // What the layers above learn from the answer: the route, the model and the
        // connection (known here, below select), copied into the response.
        let facts = Facts {
            route: ext.get::<ApiRoute>().copied(),
            model: ext.get::<RequestedModel>().cloned(),
            connection: ext.get::<SelectedConnection>().cloned(),
        };
        let route = facts.route;
        let watched = route.is_some_and(|r| r != ApiRoute::Models);
        let metered = ext.get::<MeterUsage>().is_some();
        let watch = watched.then(|| {
            let strip = (self.ask_streams || metered)
                && matches!(
                    route,
                    Some(ApiRoute::ChatCompletions | ApiRoute::Completions)
                )
                && ask_for_usage(&mut req);
            // A metered answer that ends without usage is charged an estimate from the
            // request's text (read only then) and the answer's.
            let request = metered.then(|| {
                req.extensions()
                    .get::<Payload>()
                    .map(|p| p.original().clone())
                    .unwrap_or_default()
            });
            // The prices of the model the caller named, looked up once.
            let prices = match (&self.prices, &facts.model) {
                (Some(list), Some(model)) if !list.is_empty() => {
                    Some(list.prices(&model.requested))
                }
                _ => None,
            };
            Pending {
                strip,
                response_model: self.response_model,
                estimate: request,
                prices,
            }
        });
        ResponseFuture {
            inner: self.inner.call(req),
            facts: Some(facts),
            watch,
        }
    }
}

/// What the answer's extensions are given for the layers above.
#[derive(Debug)]
struct Facts {
    route: Option<ApiRoute>,
    model: Option<RequestedModel>,
    connection: Option<SelectedConnection>,
}

/// What a request's answer will be watched for.
#[derive(Debug)]
struct Pending {
    /// Remove the usage chunk the gateway asked for.
    strip: bool,
    /// Read the answer's model too.
    response_model: bool,
    /// Estimate the usage if the answer has none: the request's body.
    estimate: Option<Bytes>,
    /// What the answer's tokens cost, when prices are in use.
    prices: Option<Option<TokenPrices>>,
}

/// Turn on `stream_options.include_usage` for a streamed chat that did not ask for usage;
/// whether it did (so the usage chunk is removed from the caller's stream).
fn ask_for_usage<B>(req: &mut Request<B>) -> bool {
    let Some(payload) = req.extensions_mut().get_mut::<Payload>() else {
        return false;
    };
    if !matches!(payload.get::<bool>("stream"), Ok(Some(true))) {
        return false;
    }
    let mut options = match payload.get::<Option<Value>>("stream_options") {
        Ok(None | Some(None)) => Map::new(),
        Ok(Some(Some(Value::Object(options)))) => options,
        // Not an object: the upstream will refuse it as the caller sent it.
        _ => return false,
    };
    if options.get("include_usage") == Some(&Value::Bool(true)) {
        return false;
    }
    options.insert("include_usage".to_owned(), Value::Bool(true));
    payload.set("stream_options", &options).is_ok()
}

/// Response future of [`Usage`].
#[pin_project]
#[derive(Debug)]
pub struct ResponseFuture<F> {
    #[pin]
    inner: F,
    facts: Option<Facts>,
    watch: Option<Pending>,
}

impl<F, ResBody, E> std::future::Future for ResponseFuture<F>
where
    F: std::future::Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut res = ready!(this.inner.poll(cx))?;
        let kind = content_kind(&res);
        let watch = this.watch.take().and_then(|pending| {
            (kind != Kind::Other).then(|| {
                let report = match pending.prices {
                    None => UsageReport::new(),
                    Some(Some(prices)) => UsageReport::priced(prices),
                    Some(None) => UsageReport::unpriced(),
                };
                res.extensions_mut().insert(report.clone());
                Box::new(Watch {
                    scanner: UsageScanner::new(pending.response_model),
                    events: (pending.strip && kind == Kind::Events).then(Events::default),
                    estimate: pending.estimate.map(|request| Estimate {
                        request,
                        output: TextMeter::new(OUTPUT_KEYS),
                    }),
                    report,
                })
            })
        });
        if let Some(facts) = this.facts.take() {
            let ext = res.extensions_mut();
            if let Some(model) = facts.model {
                ext.insert(model);
            }
            if let Some(connection) = facts.connection {
                ext.insert(connection);
            }
        }
        Poll::Ready(Ok(res.map(|inner| ResponseBody { inner, watch })))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Json,
    Events,
    Other,
}

fn content_kind<B>(res: &Response<B>) -> Kind {
    let Some(essence) = media_type(res.headers()) else {
        return Kind::Other;
    };
    if essence.eq_ignore_ascii_case("text/event-stream") {
        Kind::Events
    } else if essence.eq_ignore_ascii_case("application/json") {
        Kind::Json
    } else {
        Kind::Other
    }
}

#[derive(Debug)]
struct Watch {
    scanner: UsageScanner,
    /// Where the usage goes, for the layers above (in the response extensions).
    report: UsageReport,
    /// Present when the usage chunk the gateway asked for is removed.
    events: Option<Events>,
    /// Present when the answer must be charged even without usage.
    estimate: Option<Estimate>,
}

/// What an estimate is made of: the request's text and the answer's, at 4 bytes a token.
#[derive(Debug)]
struct Estimate {
    request: Bytes,
    output: TextMeter,
}

impl Watch {
    /// The answer ended (or was dropped): without reported usage, charge the estimate.
    fn settle(&mut self) {
        let Some(estimate) = self.estimate.take() else {
            return;
        };
        if self.scanner.usage().is_some() {
            return;
        }
        let mut input = TextMeter::new(INPUT_KEYS);
        input.feed(&estimate.request);
        self.report.set_estimate(TokenUsage {
            input_tokens: TextMeter::tokens(input.bytes()),
            output_tokens: TextMeter::tokens(estimate.output.bytes()),
            cached_tokens: 0,
        });
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.settle();
    }
}

/// The response body of [`Usage`]: the inner body, watched.
#[pin_project]
#[derive(Debug)]
pub struct ResponseBody<B> {
    #[pin]
    inner: B,
    watch: Option<Box<Watch>>,
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
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        let Some(watch) = this.watch.as_deref_mut() else {
            return this.inner.poll_frame(cx);
        };
        loop {
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(data) => {
                            if watch.scanner.feed(&data)
                                && let Some(usage) = watch.scanner.usage()
                            {
                                watch.report.set(usage);
                            }
                            if let Some(estimate) = watch.estimate.as_mut() {
                                estimate.output.feed(&data);
                            }
                            if let Some(model) = watch.scanner.take_response_model() {
                                watch.report.set_response_model(&model);
                            }
                            match watch.events.as_mut() {
                                None => Frame::data(data),
                                Some(events) => match events.push(data) {
                                    Some(out) => Frame::data(out),
                                    None => continue,
                                },
                            }
                        }
                        Err(frame) => frame,
                    };
                    // The layers above may end their watch on this frame (the inner body
                    // says it is the last): charge the answer now.
                    if this.inner.is_end_stream() {
                        watch.settle();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                None => {
                    watch.settle();
                    let rest = watch.events.as_mut().and_then(Events::rest);
                    return Poll::Ready(rest.map(|r| Ok(Frame::data(r))));
                }
                Some(Err(e)) => {
                    // The layers above account for the answer when they see this error: it
                    // is charged now, not when the body is dropped.
                    watch.settle();
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let held = self
            .watch
            .as_ref()
            .and_then(|w| w.events.as_ref())
            .is_some_and(|e| !e.held.is_empty());
        !held && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.watch.as_ref().and_then(|w| w.events.as_ref()) {
            Some(_) => SizeHint::default(),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::events::{Events, event_end, is_usage_chunk};

    #[test]
    fn events_end_on_a_blank_line() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some(11));
        assert_eq!(event_end(b"data: 1\n"), None);
    }

    #[test]
    fn only_the_usage_chunk_is_removed_however_the_stream_is_cut() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
            "data: [DONE]\n\n",
        );
        let expected = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: [DONE]\n\n",
        );
        for cut in 1..stream.len() {
            let mut events = Events::default();
            let mut out = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                if let Some(b) = events.push(Bytes::copy_from_slice(part.as_bytes())) {
                    out.extend_from_slice(&b);
                }
            }
            if let Some(b) = events.rest() {
                out.extend_from_slice(&b);
            }
            assert_eq!(String::from_utf8(out).unwrap(), expected, "cut at {cut}");
        }
        assert!(!is_usage_chunk(
            b"data: {\"choices\":[{}],\"usage\":{}}\n\n"
        ));
    }
}
