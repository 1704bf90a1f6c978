//! Outbound proxies (Open WebUI's X-3: `HTTP(S)_PROXY` and `NO_PROXY` are honoured), over
//! real sockets: a stand-in forward proxy records what it is sent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_openai_core::SelectedConnection;
use tower_openai_rescue::RescueLayer;
use tower_openai_settings::Settings;
use tower_openai_test_util::{MockUpstream, RecordingProxy};
use tower_openai_upstream::Upstream;

fn env(vars: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

async fn post(upstream: Upstream, base_url: &str) -> (StatusCode, String) {
    let settings = Settings::for_urls([base_url]).unwrap();
    let mut req = Request::post("/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap();
    req.extensions_mut()
        .insert(SelectedConnection(settings.connection(0).unwrap().clone()));
    let res = ServiceBuilder::new()
        .layer(RescueLayer::new())
        .service(upstream)
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn x3_a_plain_http_upstream_is_reached_through_http_proxy_in_absolute_form() {
    let proxy = RecordingProxy::start().await;
    let upstream = Upstream::builder()
        .proxies_from(env(vec![(
            "http_proxy",
            format!("http://u:p@{}", proxy.addr()),
        )]))
        .build();
    // The upstream's name is never resolved: the connection goes to the proxy.
    let (status, body) = post(upstream, "http://upstream.invalid:8080/v1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, r#"{"via":"proxy"}"#);
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("POST http://upstream.invalid:8080/v1/chat/completions HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    // `u:p` in base64.
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic dtpw\r\n"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn x3_no_proxy_and_loopback_hosts_are_connected_to_directly() {
    let proxy = RecordingProxy::start().await;
    let mock = MockUpstream::start().await;
    // `models.internal` stands for a host on the network, here resolved to the mock.
    let upstream = Upstream::builder()
        .resolve("models.internal", std::net::Ipv4Addr::LOCALHOST.into())
        .proxies_from(env(vec![
            ("HTTP_PROXY", format!("http://{}", proxy.addr())),
            ("NO_PROXY", "example.com,models.internal".to_owned()),
        ]))
        .build();
    let internal = format!("http://models.internal:{}/v1", mock.addr().port());
    let (status, _) = post(upstream.clone(), &internal).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.requests().len(), 1, "the mock was reached directly");
    // A model server on this machine is never sent to the proxy, NO_PROXY or not.
    let (status, _) = post(upstream, &mock.url()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.requests().len(), 2);
    assert!(proxy.heads().is_empty(), "the proxy saw nothing");
    // Without any proxy variable, nothing changes either.
    let (status, _) = post(
        Upstream::builder().proxies_from(env(vec![])).build(),
        &mock.url(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn x3_an_https_upstream_is_tunnelled_with_connect_and_a_refused_tunnel_is_a_502() {
    let proxy = RecordingProxy::start().await;
    let upstream = Upstream::builder()
        .proxies_from(env(vec![(
            "HTTPS_PROXY",
            format!("http://u:s3cret@{}", proxy.addr()),
        )]))
        .build();
    let (status, body) = post(upstream, "https://secure.invalid/v1").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        !body.contains("s3cret") && !body.contains("dTpzM2NyZXQ"),
        "{body}"
    );
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    assert!(
        heads[0].starts_with("CONNECT secure.invalid:443 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    // The tunnel carries the proxy's credentials; the request inside it never would.
    assert!(
        heads[0]
            .to_ascii_lowercase()
            .contains("proxy-authorization: basic dtpzm2nyzxq="),
        "{}",
        heads[0]
    );
}
