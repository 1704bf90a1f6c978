//! Upstream TLS with a certificate authority of the operator's own, over real sockets: an
//! HTTPS upstream whose certificate a throwaway CA signed is refused (502) until the CA's
//! PEM bundle is given (`AIOHTTP_CLIENT_SSL_CERT_FILE`, or a path in
//! `AIOHTTP_CLIENT_SESSION_SSL`); a bundle that does not exist stops start-up, naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{answer, post_json, start_with, temp_dir};
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use openai_gateway::{Args, GatewayConfig};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio_rustls::rustls;

/// An HTTPS upstream on 127.0.0.1 with a certificate signed by a CA of its own: its URL,
/// the CA's PEM, and how many requests it answered.
async fn tls_upstream() -> (String, String, Arc<AtomicUsize>) {
    let (url, pem, served, _) = tls_upstream_with(std::time::Duration::ZERO).await;
    (url, pem, served)
}

/// The same, a chat answered after `delay`; also the most chats it had in flight at once.
async fn tls_upstream_with(
    delay: std::time::Duration,
) -> (String, String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let most_seen = most.clone();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, count) = (acceptor.clone(), count.clone());
            let (in_flight, most) = (in_flight.clone(), most.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: http::Request<hyper::body::Incoming>| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let chat = !req.uri().path().ends_with("/models");
                        let (in_flight, most) = (in_flight.clone(), most.clone());
                        let body = if !chat {
                            r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#
                        } else {
                            r#"{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"over tls"},"finish_reason":"stop"}]}"#
                        };
                        async move {
                            if chat {
                                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                                most.fetch_max(now, Ordering::SeqCst);
                                tokio::time::sleep(delay).await;
                                in_flight.fetch_sub(1, Ordering::SeqCst);
                            }
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        format!("https://{addr}/v1"),
        ca_cert.pem(),
        served,
        most_seen,
    )
}

/// `AIOHTTP_POOL_CONNECTIONS_PER_HOST`: however many callers, at most that many chats reach
/// the (TLS) upstream at once; all are answered.
#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_to_one_host_are_capped() {
    let (url, ca_pem, served, most) =
        tls_upstream_with(std::time::Duration::from_millis(200)).await;
    let bundle = temp_dir().join("ca.pem");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &url),
            ("OPENAI_API_CONFIGS", r#"{"0": {"model_ids": ["m"]}}"#),
            ("AIOHTTP_CLIENT_SSL_CERT_FILE", bundle.to_str().unwrap()),
            ("AIOHTTP_POOL_CONNECTIONS_PER_HOST", "2"),
        ],
    )
    .await;
    let chats = (0..6).map(|_| {
        let url = format!("{}/chat/completions", gw.url());
        tokio::spawn(async move { answer(post_json(&url, r#"{"model":"m","messages":[]}"#)).await })
    });
    for chat in chats.collect::<Vec<_>>() {
        let res = chat.await.unwrap();
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
    assert_eq!(served.load(Ordering::SeqCst), 6);
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upstream_signed_by_the_operators_ca_is_trusted_once_its_bundle_is_given() {
    let (url, ca_pem, served) = tls_upstream().await;
    let bundle = temp_dir().join("ca.pem");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let bundle = bundle.to_str().unwrap().to_owned();
    let chat = r#"{"model":"m","messages":[]}"#;
    let connection = r#"{"0": {"model_ids": ["m"]}}"#;

    // Without the CA: the certificate is unknown, nothing is served.
    let gw = start_with(
        Args::default(),
        &[
            ("OPENAI_API_BASE_URLS", &url),
            ("OPENAI_API_CONFIGS", connection),
        ],
    )
    .await;
    let res = answer(post_json(&format!("{}/chat/completions", gw.url()), chat)).await;
    assert_eq!(res.status, StatusCode::BAD_GATEWAY, "{}", res.text());
    assert_eq!(served.load(Ordering::SeqCst), 0);

    // With the bundle, through either variable.
    for var in ["AIOHTTP_CLIENT_SSL_CERT_FILE", "AIOHTTP_CLIENT_SESSION_SSL"] {
        let gw = start_with(
            Args::default(),
            &[
                ("OPENAI_API_BASE_URLS", &url),
                ("OPENAI_API_CONFIGS", connection),
                (var, &bundle),
            ],
        )
        .await;
        let res = answer(post_json(&format!("{}/chat/completions", gw.url()), chat)).await;
        assert_eq!(res.status, StatusCode::OK, "{var}: {}", res.text());
        assert_eq!(res.json()["choices"][0]["message"]["content"], "over tls");
    }
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // A bundle that is not there stops start-up, naming its variable.
    for var in ["AIOHTTP_CLIENT_SSL_CERT_FILE", "AIOHTTP_CLIENT_SESSION_SSL"] {
        let env = common::env(&[("OPENAI_API_BASE_URLS", &url), (var, "/nonexistent/ca.pem")]);
        let args = Args {
            data_dir: Some(temp_dir()),
            ..Args::default()
        };
        let message = GatewayConfig::load(&args, &env).unwrap_err().to_string();
        assert!(message.contains(var), "{message}");
    }
    // A file with no certificate in it too.
    let empty = temp_dir().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let env = common::env(&[
        ("OPENAI_API_BASE_URLS", &url),
        ("AIOHTTP_CLIENT_SSL_CERT_FILE", empty.to_str().unwrap()),
    ]);
    let args = Args {
        data_dir: Some(temp_dir()),
        ..Args::default()
    };
    let config = GatewayConfig::load(&args, &env).unwrap();
    let message = openai_gateway::Gateway::new(config)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("AIOHTTP_CLIENT_SSL_CERT_FILE"),
        "{message}"
    );
}
