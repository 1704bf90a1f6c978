//! The floor any proxy pays: a bare hyper pass-through proxy with a pooled client and no
//! layers. Also serves any tower service the same way (for the select + auth stack).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use openai_gateway::serving::RepollSelfWakes;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower::util::BoxCloneSyncService;
use tower_openai::core::{Body, BoxBody};

pub(crate) type App = BoxCloneSyncService<Request<Body>, Response<BoxBody>, Infallible>;

/// Serve a tower app over hyper (HTTP/1.1 and HTTP/2), as the gateway does.
pub(crate) async fn serve(app: App) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            tokio::spawn(RepollSelfWakes::new(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    app.clone().oneshot(req.map(Body::new))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            }));
        }
    });
    addr
}

/// Forward every request to `upstream`, headers and body as they are.
pub(crate) async fn bare(upstream: SocketAddr) -> SocketAddr {
    bare_on(upstream, 0).await
}

/// [`bare`] on a given port (0: any).
pub(crate) async fn bare_on(upstream: SocketAddr, port: u16) -> SocketAddr {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let client = client.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let client = client.clone();
                    async move {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_owned();
                        *req.uri_mut() =
                            Uri::try_from(format!("http://{upstream}{pq}")).expect("uri");
                        req.headers_mut().remove(http::header::HOST);
                        match client.request(req).await {
                            Ok(res) => Ok::<_, Infallible>(res.map(|b| {
                                b.map_err(|e| -> tower_openai::core::BoxError { Box::new(e) })
                                    .boxed_unsync()
                            })),
                            Err(_) => Ok(Response::builder()
                                .status(502)
                                .body(UnsyncBoxBody::new(
                                    http_body_util::Empty::<Bytes>::new().map_err(
                                        |never| -> tower_openai::core::BoxError { match never {} },
                                    ),
                                ))
                                .expect("static")),
                        }
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}
